//! The store's read side: gets, lists, selections, the change log, events and the health
//! check, from the pool of read-only connections (or, for Nodes and Pods, the in-memory
//! cache), with blocking and async forms.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use flotilla_shared::api::Kind;
use flotilla_shared::selector::LabelSelector;

use super::{cache, decode_body, labels_of, schema, Change, ChangeOp, EventRecord, Store, StoreError};

impl Store {
    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let conn = self.inner.readers.lock().ok().and_then(|mut p| p.pop());
        let conn = match conn {
            Some(c) => c,
            None => schema::open_reader(&self.inner.path)?,
        };
        let result = f(&conn);
        if let Ok(mut pool) = self.inner.readers.lock() {
            if pool.len() < 8 {
                pool.push(conn);
            }
        }
        result
    }

    /// Reads the cache (the writer holds its lock only to apply a committed group).
    fn cached<T>(&self, f: impl FnOnce(&cache::Cache) -> T) -> T {
        f(&self.inner.cache.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn db_err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |e| StoreError::Database { path: self.inner.path.display().to_string(), source: e }
    }

    fn decode(&self, kind: &str, body: &str) -> Result<Value, StoreError> {
        decode_body(&self.inner.keys, kind, body)
    }

    /// Reads one object (blocking; call from a blocking context).
    pub fn get_blocking(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<Value>, StoreError> {
        if cache::Cache::holds(kind) {
            return Ok(self.cached(|c| c.get(kind, namespace, name)).map(|v| (*v).clone()));
        }
        self.with_reader(|c| {
            let body: Option<String> = c
                .query_row(
                    "SELECT body FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                    params![kind.info().name, namespace, name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(self.db_err())?;
            body.map(|b| self.decode(kind.info().name, &b)).transpose()
        })
    }

    /// Whether a Node of this name is registered (from memory, without copying it).
    pub fn node_exists(&self, name: &str) -> bool {
        self.cached(|c| c.get(Kind::Node, "", name).is_some())
    }

    /// Lists objects of a kind (in one namespace, or all with `None`) matching `selector`,
    /// with the revision they were read at.
    pub fn list_blocking(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Result<(Vec<Value>, u64), StoreError> {
        if cache::Cache::holds(kind) {
            let (objects, rev) = self.cached(|c| (c.list(kind, namespace), self.revision()));
            let out = objects
                .iter()
                .filter(|v| selector.is_empty() || selector.matches(&labels_of(v)))
                .map(|v| (**v).clone())
                .collect();
            return Ok((out, rev));
        }
        self.with_reader(|c| {
            let tx = c.unchecked_transaction().map_err(self.db_err())?;
            let rev: i64 =
                tx.query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| r.get(0)).map_err(self.db_err())?;
            let mut out = Vec::new();
            {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT body FROM objects WHERE kind = ?1 AND (?2 IS NULL OR namespace = ?2) ORDER BY namespace, name",
                    )
                    .map_err(self.db_err())?;
                let rows = stmt.query_map(params![kind.info().name, namespace], |r| r.get::<_, String>(0)).map_err(self.db_err())?;
                for row in rows {
                    let v = self.decode(kind.info().name, &row.map_err(self.db_err())?)?;
                    if selector.is_empty() || selector.matches(&labels_of(&v)) {
                        out.push(v);
                    }
                }
            }
            tx.commit().map_err(self.db_err())?;
            Ok((out, rev as u64))
        })
    }

    /// The objects of `kind` for which `keep` holds, cloning only those: from memory for the
    /// cached kinds (Nodes, Pods), else read like `list_blocking` (then blocking).
    pub fn select(&self, kind: Kind, keep: impl Fn(&Value) -> bool) -> Result<Vec<Value>, StoreError> {
        if cache::Cache::holds(kind) {
            let objects = self.cached(|c| c.list(kind, None));
            return Ok(objects.iter().filter(|v| keep(v)).map(|v| (**v).clone()).collect());
        }
        let (all, _) = self.list_blocking(kind, None, &LabelSelector::default())?;
        Ok(all.into_iter().filter(|v| keep(v)).collect())
    }

    /// Changes after `from_rev` still in the log, oldest first, or `Gone` when the log no
    /// longer reaches back that far.
    pub fn changes_since_blocking(&self, from_rev: u64) -> Result<Vec<Change>, StoreError> {
        self.with_reader(|c| {
            let oldest: Option<i64> =
                c.query_row("SELECT MIN(rev) FROM changes", [], |r| r.get(0)).map_err(self.db_err())?;
            let current = self.revision();
            if let Some(oldest) = oldest {
                if from_rev + 1 < oldest as u64 {
                    return Err(StoreError::Gone(from_rev));
                }
            } else if from_rev < current {
                return Err(StoreError::Gone(from_rev));
            }
            if from_rev > current {
                return Ok(Vec::new());
            }
            let mut stmt = c
                .prepare_cached(
                    "SELECT rev, kind, namespace, name, op, body FROM changes WHERE rev > ?1 ORDER BY rev",
                )
                .map_err(self.db_err())?;
            let rows = stmt
                .query_map(params![from_rev as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                })
                .map_err(self.db_err())?;
            let mut out = Vec::new();
            for row in rows {
                let (rev, kind, namespace, name, op, body) = row.map_err(self.db_err())?;
                let Some(k) = Kind::from_kind_name(&kind) else { continue };
                out.push(Change {
                    rev: rev as u64,
                    kind: k,
                    namespace,
                    name,
                    op: ChangeOp::parse(&op),
                    object: self.decode(&kind, &body)?,
                });
            }
            Ok(out)
        })
    }

    /// Events about an object, newest last.
    pub fn events_blocking(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.with_reader(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT namespace, kind, name, uid, type, reason, message, source, count, first_time, last_time
                     FROM events WHERE namespace = ?1 AND kind = ?2 AND name = ?3 ORDER BY last_time, id",
                )
                .map_err(self.db_err())?;
            let rows = stmt
                .query_map(params![namespace, kind, name], |r| {
                    Ok(EventRecord {
                        namespace: r.get(0)?,
                        kind: r.get(1)?,
                        name: r.get(2)?,
                        uid: r.get(3)?,
                        type_: r.get(4)?,
                        reason: r.get(5)?,
                        message: r.get(6)?,
                        source: r.get(7)?,
                        count: r.get(8)?,
                        first_time: r.get(9)?,
                        last_time: r.get(10)?,
                    })
                })
                .map_err(self.db_err())?;
            rows.collect::<Result<Vec<_>, _>>().map_err(self.db_err())
        })
    }

    /// A cheap liveness check of the database: a read on a pooled connection.
    pub fn health_blocking(&self) -> Result<(), StoreError> {
        self.with_reader(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(self.db_err()))
    }

    /// Async wrappers run the blocking reads on tokio's blocking pool (a cached `get` is
    /// answered from memory directly).
    pub async fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<Value>, StoreError> {
        if cache::Cache::holds(kind) {
            // From memory: no blocking thread needed.
            return self.get_blocking(kind, namespace, name);
        }
        let (s, ns, n) = (self.clone(), namespace.to_string(), name.to_string());
        spawn_blocking(move || s.get_blocking(kind, &ns, &n)).await
    }

    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Result<(Vec<Value>, u64), StoreError> {
        let (s, ns, sel) = (self.clone(), namespace.map(str::to_string), selector.clone());
        spawn_blocking(move || s.list_blocking(kind, ns.as_deref(), &sel)).await
    }

    pub async fn changes_since(&self, from_rev: u64) -> Result<Vec<Change>, StoreError> {
        let s = self.clone();
        spawn_blocking(move || s.changes_since_blocking(from_rev)).await
    }

    pub async fn events(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let (s, ns, k, n) = (self.clone(), namespace.to_string(), kind.to_string(), name.to_string());
        spawn_blocking(move || s.events_blocking(&ns, &k, &n)).await
    }

    pub async fn health(&self) -> Result<(), StoreError> {
        let s = self.clone();
        spawn_blocking(move || s.health_blocking()).await
    }
}

async fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| StoreError::Closed)?
}
