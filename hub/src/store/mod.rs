//! The hub's durable store: SQLite in WAL mode with `synchronous=FULL`, one writer thread that
//! commits in groups (every write is acknowledged only after its transaction committed), a
//! pool of read connections, Nodes and Pods served from memory (`cache`), a global revision
//! counter, a change log for watches, and Secrets encrypted at rest. Only this module writes
//! SQL. The write side is `writer`, the read side `read`.

mod cache;
pub mod crypto;
pub mod objects;
mod read;
pub mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::{params, Connection};
use serde_json::Value;
use tokio::sync::{broadcast, oneshot};

use flotilla_shared::api::Kind;

use crypto::KeyRing;
pub use objects::{Mode, Outcome};

/// How many changes the log keeps for watches that resume from a resourceVersion.
pub const CHANGE_LOG_KEEP: u64 = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{} {name:?} not found", kind.info().plural)]
    NotFound { kind: Kind, name: String },
    #[error("{} {name:?} already exists", kind.info().plural)]
    AlreadyExists { kind: Kind, name: String },
    #[error("operation on {} {name:?} conflicts: {message}", kind.info().plural)]
    Conflict { kind: Kind, name: String, message: String },
    #[error("namespace {0:?} not found")]
    NamespaceNotFound(String),
    #[error("resourceVersion {0} is too old: the change log starts later; list again and watch from the new resourceVersion")]
    Gone(u64),
    #[error("database {path}: {source}")]
    Database { path: String, source: rusqlite::Error },
    #[error("database {path} is corrupt ({detail}). Refusing to start: restore the latest backup (flotilla-hub backup, see docs/operations.md) or move the file away to start with an empty store")]
    Corrupt { path: String, detail: String },
    #[error("database {path} has schema version {found}, newer than this hub supports ({supported}); run a newer flotilla-hub")]
    TooNew { path: String, found: usize, supported: usize },
    #[error("stored object is unreadable: {0}")]
    Decode(String),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    #[error("backup failed: {0}")]
    Backup(String),
    #[error("the store is shutting down")]
    Closed,
}

/// One change, as the change feed and watches deliver it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub rev: u64,
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub op: ChangeOp,
    /// The object after the change (before it, for deletions).
    pub object: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Added,
    Modified,
    Deleted,
}

impl ChangeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Added => "ADDED",
            ChangeOp::Modified => "MODIFIED",
            ChangeOp::Deleted => "DELETED",
        }
    }
    fn parse(s: &str) -> ChangeOp {
        match s {
            "ADDED" => ChangeOp::Added,
            "DELETED" => ChangeOp::Deleted,
            _ => ChangeOp::Modified,
        }
    }
}

/// A write request.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Create, update, apply or status update of a validated object.
    Put { kind: Kind, object: Value, mode: Mode },
    /// Delete an object and, through ownerReferences and namespaces, what it owns.
    Delete { kind: Kind, namespace: String, name: String },
    /// Record (or count again) an event about an object.
    Event(EventRecord),
}

/// A Kubernetes-style event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    /// `Normal` or `Warning`.
    pub type_: String,
    pub reason: String,
    pub message: String,
    pub source: String,
    pub count: i64,
    pub first_time: String,
    pub last_time: String,
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct WriteResult {
    pub object: Value,
    pub outcome: Outcome,
    /// The store's revision after the write.
    pub rev: u64,
}

struct Request {
    op: WriteOp,
    dry_run: bool,
    reply: oneshot::Sender<Result<WriteResult, StoreError>>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<std::sync::mpsc::Sender<Request>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    revision: Arc<AtomicU64>,
    feed: broadcast::Sender<Arc<Change>>,
    keys: Arc<KeyRing>,
    /// Nodes and Pods, decoded, as committed (`cache`).
    cache: Arc<RwLock<cache::Cache>>,
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.inner.path.display())
    }
}

impl Store {
    /// Opens the store in `dir` (`flotilla.db`, `secret.keys`), creating both when missing.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Self::open_with(dir, CHANGE_LOG_KEEP)
    }

    /// Like `open`, keeping `change_log_keep` changes for watches (tests use a small log).
    pub fn open_with(dir: &Path, change_log_keep: u64) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backup(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("flotilla.db");
        let keys = Arc::new(KeyRing::load_or_create(&dir.join("secret.keys"))?);
        let conn = schema::open_writer(&path)?;
        reencrypt(&conn, &path, &keys)?;
        let revision: u64 = conn
            .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| r.get::<_, i64>(0))
            .map_err(|e| StoreError::Database { path: path.display().to_string(), source: e })?
            as u64;
        let revision = Arc::new(AtomicU64::new(revision));
        let cache = Arc::new(RwLock::new(load_cache(&conn, &path, &keys)?));
        let (feed, _) = broadcast::channel(16_384);
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = writer::Shared {
            revision: revision.clone(),
            feed: feed.clone(),
            keys: keys.clone(),
            cache: cache.clone(),
        };
        let thread = writer::spawn(conn, path.clone(), rx, shared, change_log_keep);
        let store = Store {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(thread)),
                readers: Mutex::new(Vec::new()),
                revision,
                feed,
                keys,
                cache,
            }),
        };
        store.ensure_default_namespace()?;
        Ok(store)
    }

    fn ensure_default_namespace(&self) -> Result<(), StoreError> {
        // Created by the writer like any object, synchronously, before the API serves.
        let ns =
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        if self.get_blocking(Kind::Namespace, "", "default")?.is_none() {
            let (tx, rx) = oneshot::channel();
            self.send(Request {
                op: WriteOp::Put { kind: Kind::Namespace, object: ns, mode: Mode::Apply },
                dry_run: false,
                reply: tx,
            })?;
            rx.blocking_recv().map_err(|_| StoreError::Closed)??;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The revision of the last committed write.
    pub fn revision(&self) -> u64 {
        self.inner.revision.load(Ordering::SeqCst)
    }

    fn send(&self, req: Request) -> Result<(), StoreError> {
        let guard = self.inner.writer.lock().map_err(|_| StoreError::Closed)?;
        guard.as_ref().ok_or(StoreError::Closed)?.send(req).map_err(|_| StoreError::Closed)
    }

    /// Performs a write; returns once it has committed (or, with `dry_run`, once it has been
    /// checked and rolled back).
    pub async fn write(&self, op: WriteOp, dry_run: bool) -> Result<WriteResult, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Request { op, dry_run, reply: tx })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Subscribes to changes committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.inner.feed.subscribe()
    }

    /// Stops the writer after the queued writes and waits for it (a clean shutdown).
    pub fn close(&self) {
        if let Ok(mut w) = self.inner.writer.lock() {
            w.take();
        }
        if let Some(t) = self.inner.writer_thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

/// The cached kinds' objects as stored (`cache`).
fn load_cache(conn: &Connection, path: &Path, keys: &KeyRing) -> Result<cache::Cache, StoreError> {
    let db = |e| StoreError::Database { path: path.display().to_string(), source: e };
    let mut out = cache::Cache::default();
    let mut stmt = conn.prepare("SELECT namespace, name, body FROM objects WHERE kind = ?1").map_err(db)?;
    for kind in cache::Cache::KINDS {
        let rows = stmt
            .query_map(params![kind.info().name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })
            .map_err(db)?;
        for row in rows {
            let (namespace, name, body) = row.map_err(db)?;
            out.insert(kind, namespace, name, decode_body(keys, kind.info().name, &body)?);
        }
    }
    Ok(out)
}

/// Re-encrypts every stored Secret (objects and change log) that is not sealed with the
/// primary key, in one transaction: the second half of a key rotation.
fn reencrypt(conn: &Connection, path: &Path, keys: &KeyRing) -> Result<(), StoreError> {
    let db = |e| StoreError::Database { path: path.display().to_string(), source: e };
    let tx = conn.unchecked_transaction().map_err(db)?;
    let mut n = 0;
    for (table, key_col) in [("objects", "name"), ("changes", "rev")] {
        let rows: Vec<(String, String, String)> = {
            let sql = format!("SELECT namespace, {key_col}, body FROM {table} WHERE kind = 'Secret'");
            let mut stmt = tx.prepare(&sql).map_err(db)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, rusqlite::types::Value>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (ns, key, body) = row.map_err(db)?;
                let key = match key {
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    _ => continue,
                };
                out.push((ns, key, body));
            }
            out
        };
        for (ns, key, body) in rows {
            if KeyRing::key_of(&body) == Some(keys.primary_id()) {
                continue;
            }
            let plain = if KeyRing::is_encrypted(&body) { keys.decrypt(&body)? } else { body.into_bytes() };
            let sealed = keys.encrypt(&plain);
            let sql = format!(
                "UPDATE {table} SET body = ?1 WHERE kind = 'Secret' AND namespace = ?2 AND {key_col} = ?3"
            );
            tx.execute(&sql, params![sealed, ns, key]).map_err(db)?;
            n += 1;
        }
    }
    tx.commit().map_err(db)?;
    if n > 0 {
        tracing::info!(
            count = n,
            key = keys.primary_id(),
            "re-encrypted stored secrets with the primary key"
        );
    }
    Ok(())
}

/// Labels of a JSON object.
pub fn labels_of(v: &Value) -> flotilla_shared::selector::Labels {
    v.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;

/// Stored body → JSON; Secrets are decrypted.
fn decode_body(keys: &KeyRing, kind: &str, body: &str) -> Result<Value, StoreError> {
    if kind == "Secret" && KeyRing::is_encrypted(body) {
        let plain = keys.decrypt(body)?;
        return serde_json::from_slice(&plain).map_err(|e| StoreError::Decode(e.to_string()));
    }
    serde_json::from_str(body).map_err(|e| StoreError::Decode(e.to_string()))
}

/// JSON → stored body; Secrets are encrypted.
fn encode_body(keys: &KeyRing, kind: Kind, v: &Value) -> String {
    let text = v.to_string();
    if kind == Kind::Secret {
        keys.encrypt(text.as_bytes())
    } else {
        text
    }
}
