//! Opening the database: pragmas, the integrity check that refuses a corrupt file, and schema
//! migrations versioned in code (`PRAGMA user_version`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// Migrations in order; entry `i` takes the schema from version `i` to `i + 1`. Never edit a
/// released entry: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: objects, ownership, the change log, events, counters.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
     INSERT INTO meta (key, value) VALUES ('revision', 0);
     CREATE TABLE objects (
         kind TEXT NOT NULL,
         namespace TEXT NOT NULL,
         name TEXT NOT NULL,
         uid TEXT NOT NULL UNIQUE,
         rev INTEGER NOT NULL,
         body TEXT NOT NULL,
         PRIMARY KEY (kind, namespace, name)
     ) WITHOUT ROWID;
     CREATE INDEX objects_namespace ON objects (namespace);
     CREATE TABLE owners (
         owner_uid TEXT NOT NULL,
         uid TEXT NOT NULL,
         PRIMARY KEY (owner_uid, uid)
     ) WITHOUT ROWID;
     CREATE INDEX owners_uid ON owners (uid);
     CREATE TABLE changes (
         rev INTEGER PRIMARY KEY,
         kind TEXT NOT NULL,
         namespace TEXT NOT NULL,
         name TEXT NOT NULL,
         op TEXT NOT NULL,
         body TEXT NOT NULL
     );
     CREATE TABLE events (
         id INTEGER PRIMARY KEY,
         namespace TEXT NOT NULL,
         kind TEXT NOT NULL,
         name TEXT NOT NULL,
         uid TEXT NOT NULL,
         type TEXT NOT NULL,
         reason TEXT NOT NULL,
         message TEXT NOT NULL,
         source TEXT NOT NULL,
         count INTEGER NOT NULL,
         first_time TEXT NOT NULL,
         last_time TEXT NOT NULL
     );
     CREATE INDEX events_object ON events (namespace, kind, name);",
];

pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Database { path: path.display().to_string(), source: e }
}

/// Sets the pragmas every connection needs.
fn configure(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(10)).map_err(sqlite(path))?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(sqlite(path))?;
    Ok(())
}

/// Opens (creating when missing) the writer connection: checks integrity, sets WAL with
/// `synchronous=FULL`, bounds the WAL, and migrates the schema.
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let existed = path.exists();
    let conn = Connection::open(path).map_err(sqlite(path))?;
    configure(&conn, path)?;
    if existed {
        quick_check(&conn, path)?;
    }
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite(path))?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(sqlite(path))?;
    // Checkpoint every ~4 MiB of WAL and truncate the file back to at most 16 MiB afterwards,
    // so a steady write load cannot grow it without bound.
    conn.pragma_update(None, "wal_autocheckpoint", 1000).map_err(sqlite(path))?;
    conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024).map_err(sqlite(path))?;
    migrate(&conn, path)?;
    Ok(conn)
}

/// Opens a read-only connection for queries.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite(path))?;
    configure(&conn, path)?;
    Ok(conn)
}

fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut stmt = conn.prepare("PRAGMA quick_check").map_err(|e| corrupt(path, e.to_string()))?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| corrupt(path, e.to_string()))?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(corrupt(path, rows.into_iter().take(5).collect::<Vec<_>>().join("; ")))
    }
}

fn corrupt(path: &Path, detail: String) -> StoreError {
    StoreError::Corrupt { path: path.display().to_string(), detail }
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sqlite(path))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.display().to_string(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.unchecked_transaction().map_err(sqlite(path))?;
        tx.execute_batch(sql).map_err(sqlite(path))?;
        tx.pragma_update(None, "user_version", i + 1).map_err(sqlite(path))?;
        tx.commit().map_err(sqlite(path))?;
    }
    Ok(())
}

/// Runs the full `PRAGMA integrity_check` (used by tests and `flotilla-hub backup`).
pub fn integrity_check(path: &Path) -> Result<String, StoreError> {
    let conn = open_reader(path)?;
    let rows: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
        .map_err(sqlite(path))?;
    Ok(rows.join("; "))
}

/// Makes a consistent copy of a live database with SQLite's online backup API, then checks
/// the copy. Safe while the hub runs: the copy is one read snapshot.
pub fn backup(src: &Path, dest: &Path) -> Result<(), StoreError> {
    if dest.exists() {
        return Err(StoreError::Backup(format!("{} already exists; choose a new file", dest.display())));
    }
    let from = open_reader(src)?;
    let mut to = Connection::open(dest).map_err(sqlite(dest))?;
    {
        let backup = rusqlite::backup::Backup::new(&from, &mut to).map_err(sqlite(dest))?;
        backup.step(-1).map_err(sqlite(dest))?;
    }
    to.pragma_update(None, "journal_mode", "DELETE").map_err(sqlite(dest))?;
    drop(to);
    let check = integrity_check(dest)?;
    if check != "ok" {
        return Err(StoreError::Backup(format!("the copy failed its integrity check: {check}")));
    }
    Ok(())
}
