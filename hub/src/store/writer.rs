//! The single writer thread. It takes queued writes in groups, runs each in its own savepoint
//! inside one `BEGIN IMMEDIATE` transaction, commits once (one fsync for the group), and only
//! then answers the callers and publishes the changes. A failed write rolls back alone.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, RwLock};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;
use tokio::sync::broadcast;

use flotilla_shared::api::Kind;

use super::cache::Cache;
use super::crypto::KeyRing;
use super::objects::{self, Mode, Outcome, Stamp};
use super::{
    decode_body, encode_body, Change, ChangeOp, EventRecord, Request, StoreError, WriteOp, WriteResult,
};

/// Writes taken into one transaction at most.
const GROUP: usize = 256;

/// What the writer shares with the store's readers.
pub(super) struct Shared {
    pub revision: Arc<AtomicU64>,
    pub feed: broadcast::Sender<Arc<Change>>,
    pub keys: Arc<KeyRing>,
    /// Updated with the revision, before the changes are published.
    pub cache: Arc<RwLock<Cache>>,
}

/// Starts the writer thread on the writer connection; `keep`: changes kept in the log.
pub(super) fn spawn(
    conn: Connection,
    path: PathBuf,
    rx: Receiver<Request>,
    shared: Shared,
    keep: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            let Shared { revision, feed, keys, cache } = shared;
            let mut w = Writer { conn, path, revision, feed, keys, keep, cache, commits: 0 };
            w.run(rx);
        })
        .expect("spawn the store writer thread")
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    revision: Arc<AtomicU64>,
    feed: broadcast::Sender<Arc<Change>>,
    keys: Arc<KeyRing>,
    /// Changes kept in the log for watches.
    keep: u64,
    cache: Arc<RwLock<Cache>>,
    commits: u64,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < GROUP {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.commit_group(batch);
        }
        // Channel closed: leave a compact WAL behind.
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    }

    fn commit_group(&mut self, batch: Vec<Request>) {
        let start_rev = self.revision.load(Ordering::SeqCst);
        let now = now_rfc3339();
        let mut results: Vec<Result<WriteResult, StoreError>> = Vec::with_capacity(batch.len());
        let mut changes: Vec<Change> = Vec::new();
        let outcome = (|| -> Result<u64, StoreError> {
            let keys = self.keys.clone();
            let path = self.path.clone();
            let db = |e| StoreError::Database { path: path.display().to_string(), source: e };
            let mut tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
            let mut rev = start_rev;
            for req in &batch {
                let mut sp = tx.savepoint().map_err(db)?;
                let mut ctx = Ctx { tx: &sp, keys: &keys, rev, now: &now, changes: Vec::new() };
                let r = ctx.execute(&req.op);
                let (new_rev, new_changes) = (ctx.rev, ctx.changes);
                match r {
                    Ok(mut res) if !req.dry_run => {
                        sp.commit().map_err(db)?;
                        rev = new_rev;
                        res.rev = rev;
                        changes.extend(new_changes);
                        results.push(Ok(res));
                    }
                    Ok(mut res) => {
                        sp.rollback().map_err(db)?;
                        res.rev = rev;
                        results.push(Ok(res));
                    }
                    Err(e) => {
                        sp.rollback().map_err(db)?;
                        results.push(Err(e));
                    }
                }
            }
            if rev != start_rev {
                for c in &changes {
                    tx.execute(
                        "INSERT INTO changes (rev, kind, namespace, name, op, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![c.rev as i64, c.kind.info().name, c.namespace, c.name, c.op.as_str(), encode_body(&keys, c.kind, &c.object)],
                    )
                    .map_err(db)?;
                }
                tx.execute("UPDATE meta SET value = ?1 WHERE key = 'revision'", params![rev as i64])
                    .map_err(db)?;
                // Prune now and then: every time the revision crosses a multiple of a tenth of
                // the log's size.
                let step = (self.keep / 10).max(1);
                if rev / step != start_rev / step {
                    let floor = rev.saturating_sub(self.keep);
                    tx.execute("DELETE FROM changes WHERE rev <= ?1", params![floor as i64]).map_err(db)?;
                }
            }
            tx.commit().map_err(db)?;
            Ok(rev)
        })();
        match outcome {
            Ok(rev) => {
                {
                    let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
                    for c in &changes {
                        cache.apply(c);
                    }
                    self.revision.store(rev, Ordering::SeqCst);
                }
                for c in changes {
                    let _ = self.feed.send(Arc::new(c));
                }
                for (req, res) in batch.into_iter().zip(results) {
                    let _ = req.reply.send(res);
                }
                self.commits += 1;
                if self.commits.is_multiple_of(512) {
                    // Auto-checkpoints are passive; a periodic TRUNCATE keeps the WAL small even
                    // while readers come and go.
                    let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; the group's writes are rejected");
                let msg = e.to_string();
                for req in batch {
                    let _ = req.reply.send(Err(StoreError::Backup(format!("commit failed: {msg}"))));
                }
            }
        }
    }
}

/// Per-write context inside a savepoint.
struct Ctx<'a> {
    tx: &'a Connection,
    keys: &'a KeyRing,
    rev: u64,
    now: &'a str,
    changes: Vec<Change>,
}

impl Ctx<'_> {
    fn db(e: rusqlite::Error) -> StoreError {
        StoreError::Database { path: "flotilla.db".into(), source: e }
    }

    fn execute(&mut self, op: &WriteOp) -> Result<WriteResult, StoreError> {
        match op {
            WriteOp::Put { kind, object, mode } => self.put(*kind, object.clone(), mode),
            WriteOp::Delete { kind, namespace, name } => self.delete(*kind, namespace, name),
            WriteOp::Event(ev) => self.event(ev),
        }
    }

    fn load(&self, kind: &str, namespace: &str, name: &str) -> Result<Option<Value>, StoreError> {
        let body: Option<String> = self
            .tx
            .query_row(
                "SELECT body FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                params![kind, namespace, name],
                |r| r.get(0),
            )
            .optional()
            .map_err(Self::db)?;
        body.map(|b| decode_body(self.keys, kind, &b)).transpose()
    }

    fn put(&mut self, kind: Kind, object: Value, mode: &Mode) -> Result<WriteResult, StoreError> {
        let meta = object.get("metadata");
        let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default().to_string();
        let namespace =
            meta.and_then(|m| m.get("namespace")).and_then(Value::as_str).unwrap_or_default().to_string();
        if kind.info().namespaced && self.load("Namespace", "", &namespace)?.is_none() {
            return Err(StoreError::NamespaceNotFound(namespace));
        }
        let existing = self.load(kind.info().name, &namespace, &name)?;
        let uid = uuid::Uuid::new_v4().to_string();
        let stamp = Stamp { rev: self.rev + 1, now: self.now, uid: &uid };
        let (next, outcome) = objects::prepare(kind, existing.as_ref(), object, mode, &stamp)?;
        let Some(next) = next else {
            let current = existing.expect("unchanged implies an existing object");
            return Ok(WriteResult { object: current, outcome, rev: self.rev });
        };
        if outcome == Outcome::Created {
            // A controller's object for an owner deleted meanwhile (its round read the owner
            // before the delete committed) would only be left for the garbage collector:
            // refused here, atomically with the delete, as a conflict the controller drops.
            for owner in owner_uids(&next, true) {
                let exists: Option<i64> = self
                    .tx
                    .query_row("SELECT 1 FROM objects WHERE uid = ?1", params![owner], |r| r.get(0))
                    .optional()
                    .map_err(Self::db)?;
                if exists.is_none() {
                    return Err(StoreError::Conflict {
                        kind,
                        name,
                        message: format!("its controller (uid {owner}) no longer exists"),
                    });
                }
            }
        }
        self.rev += 1;
        let uid = objects::uid(&next).unwrap_or_default().to_string();
        self.tx
            .execute(
                "INSERT INTO objects (kind, namespace, name, uid, rev, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (kind, namespace, name) DO UPDATE SET rev = excluded.rev, body = excluded.body",
                params![
                    kind.info().name,
                    namespace,
                    name,
                    uid,
                    self.rev as i64,
                    encode_body(self.keys, kind, &next)
                ],
            )
            .map_err(Self::db)?;
        self.tx.execute("DELETE FROM owners WHERE uid = ?1", params![uid]).map_err(Self::db)?;
        for owner in owner_uids(&next, false) {
            self.tx
                .execute("INSERT OR IGNORE INTO owners (owner_uid, uid) VALUES (?1, ?2)", params![owner, uid])
                .map_err(Self::db)?;
        }
        let op = if outcome == Outcome::Created { ChangeOp::Added } else { ChangeOp::Modified };
        self.changes.push(Change { rev: self.rev, kind, namespace, name, op, object: next.clone() });
        Ok(WriteResult { object: next, outcome, rev: self.rev })
    }

    fn delete(&mut self, kind: Kind, namespace: &str, name: &str) -> Result<WriteResult, StoreError> {
        let Some(obj) = self.load(kind.info().name, namespace, name)? else {
            return Err(StoreError::NotFound { kind, name: name.to_string() });
        };
        if kind == Kind::Namespace && name == "default" {
            return Err(StoreError::Conflict {
                kind,
                name: name.into(),
                message: "the default namespace cannot be deleted".into(),
            });
        }
        let uid = objects::uid(&obj).unwrap_or_default().to_string();
        // Dependents first (depth-first through ownerReferences), then the namespace's
        // contents, then the object itself.
        let mut dependents: Vec<(String, String, String)> = Vec::new();
        {
            let mut stmt = self
                .tx
                .prepare_cached("SELECT o.kind, o.namespace, o.name FROM owners w JOIN objects o ON o.uid = w.uid WHERE w.owner_uid = ?1")
                .map_err(Self::db)?;
            let rows =
                stmt.query_map(params![uid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(Self::db)?;
            for r in rows {
                dependents.push(r.map_err(Self::db)?);
            }
            if kind == Kind::Namespace {
                let mut stmt = self
                    .tx
                    .prepare_cached("SELECT kind, namespace, name FROM objects WHERE namespace = ?1")
                    .map_err(Self::db)?;
                let rows = stmt
                    .query_map(params![name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(Self::db)?;
                for r in rows {
                    dependents.push(r.map_err(Self::db)?);
                }
            }
        }
        for (k, ns, n) in dependents {
            if let Some(k) = Kind::from_kind_name(&k) {
                match self.delete(k, &ns, &n) {
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.tx
            .execute(
                "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                params![kind.info().name, namespace, name],
            )
            .map_err(Self::db)?;
        self.tx
            .execute("DELETE FROM owners WHERE uid = ?1 OR owner_uid = ?1", params![uid])
            .map_err(Self::db)?;
        if kind == Kind::Namespace {
            self.tx.execute("DELETE FROM events WHERE namespace = ?1", params![name]).map_err(Self::db)?;
        }
        self.rev += 1;
        self.changes.push(Change {
            rev: self.rev,
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            op: ChangeOp::Deleted,
            object: obj.clone(),
        });
        Ok(WriteResult { object: obj, outcome: Outcome::Deleted, rev: self.rev })
    }

    fn event(&mut self, ev: &EventRecord) -> Result<WriteResult, StoreError> {
        // The same reason and message about the same object counts up instead of adding rows.
        let updated = self
            .tx
            .execute(
                "UPDATE events SET count = count + ?1, last_time = ?2
                 WHERE namespace = ?3 AND kind = ?4 AND name = ?5 AND uid = ?6 AND reason = ?7 AND message = ?8",
                params![ev.count.max(1), ev.last_time, ev.namespace, ev.kind, ev.name, ev.uid, ev.reason, ev.message],
            )
            .map_err(Self::db)?;
        if updated == 0 {
            self.tx
                .execute(
                    "INSERT INTO events (namespace, kind, name, uid, type, reason, message, source, count, first_time, last_time)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![ev.namespace, ev.kind, ev.name, ev.uid, ev.type_, ev.reason, ev.message, ev.source, ev.count.max(1), ev.first_time, ev.last_time],
                )
                .map_err(Self::db)?;
            // Keep at most 100 events per object.
            self.tx
                .execute(
                    "DELETE FROM events WHERE namespace = ?1 AND kind = ?2 AND name = ?3 AND id NOT IN
                     (SELECT id FROM events WHERE namespace = ?1 AND kind = ?2 AND name = ?3 ORDER BY id DESC LIMIT 100)",
                    params![ev.namespace, ev.kind, ev.name],
                )
                .map_err(Self::db)?;
        }
        Ok(WriteResult { object: Value::Null, outcome: Outcome::Created, rev: self.rev })
    }
}

/// The uids of the object's owners (only its controller's with `controller_only`).
fn owner_uids(v: &Value, controller_only: bool) -> Vec<String> {
    v.get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter(|r| !controller_only || r.get("controller").and_then(Value::as_bool) == Some(true))
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub use crate::clock::now_rfc3339;
