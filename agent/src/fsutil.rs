//! The agent's small filesystem helpers: unique temp names, atomic writes (durable ones for what
//! must survive a power cut, cheap ones for the run directory's records), tree removal, and the
//! `O_NOATIME` reader of JSON records the loop polls.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh name under `dir`: `<prefix>-<pid>-<n>`. Callers still create with `create_new`
/// (or `create_dir`) and retry, so a stale leftover of an earlier process cannot be reused.
pub fn temp_path(dir: &Path, prefix: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{prefix}-{}-{n}", std::process::id()))
}

/// Creates a new, empty file under `dir` that no one else has opened.
pub fn create_temp_file(dir: &Path, prefix: &str) -> io::Result<(PathBuf, File)> {
    loop {
        let path = temp_path(dir, prefix);
        match OpenOptions::new().write(true).read(true).create_new(true).mode(0o644).open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Creates a new, empty directory under `dir`.
pub fn create_temp_dir(dir: &Path, prefix: &str) -> io::Result<PathBuf> {
    loop {
        let path = temp_path(dir, prefix);
        match fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// fsyncs a directory so a rename or unlink in it survives a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dest` atomically: temp file in `tmp_dir` (same filesystem), fsync, rename,
/// fsync of the destination's directory. Readers see the old file or the new one, never a mix.
pub fn write_atomic_in(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let (tmp, mut f) = create_temp_file(tmp_dir, "write")?;
    let result = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dest)?;
        sync_dir(dest.parent().unwrap_or(Path::new("/")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes `path` whatever it is, never following symlinks, and succeeds if it is already gone.
/// Directories without write or search permission (an image may ship `0555` ones) are opened
/// up first, so removal also works without root.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    for entry in fs::read_dir(path)? {
        remove_tree(&entry?.path())?;
    }
    fs::remove_dir(path)
}

/// Removes every entry inside `dir`, keeping `dir` itself.
pub fn clear_dir(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        remove_tree(&entry?.path())?;
    }
    Ok(())
}

/// Writes `data` to `path` atomically and durably (temp file `<path>.tmp`, fsync, rename, fsync
/// of the directory): for what must survive a power cut.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Replaces `path` with `data` atomically (temp file, rename) but without fsync: readers never
/// see a half-written file, and a crash of any process loses nothing (the page cache stays),
/// but a power cut may. For records that mean nothing after a reboot (the shims' `running.json`
/// and `exited.json`: every container is gone then), which must not cost a journal commit each.
pub fn write_replace(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path)
}

/// Reads a JSON record. The loop reads the shims' records every round: opened with `O_NOATIME`
/// (the agent owns them, or is root), so the first read after each write does not cost the
/// flash an inode update under `relatime`.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    use std::io::Read;
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOATIME)
        .open(path)
        .or_else(|_| File::open(path))
        .ok()?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}
