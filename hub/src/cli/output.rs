//! Where the CLI's output goes. Standard output: every verb writes through `outln!` and
//! `out!`, whose failures are errors, never panics (`println!` panics), so a closed pipe
//! (`flotilla-hub get pods | head -1`) ends the command quietly with [`BROKEN_PIPE_EXIT`].
//! Files: an [`OutputFile`] is created (mode 0600, beside its final name) before anything
//! irreversible happens, such as issuing credentials, and put in place once written.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The exit status after a write to a closed pipe: 128 + SIGPIPE, what a shell reports for a
/// program that the signal ended (`yes | head` leaves `yes` with 141).
pub const BROKEN_PIPE_EXIT: i32 = 141;

/// Whether `e` is, or was caused by, a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` that returns the write's error (with `?`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

/// `print!` that returns the write's error (with `?`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout(), $($arg)*)?
    }};
}

/// Writes `bytes` to standard output and flushes it.
pub fn stdout_bytes(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// A file the command will write (mode 0600): opened before the work whose result it keeps,
/// so a path that cannot be written fails first; [`OutputFile::commit`] then writes, syncs and
/// renames it into place. Dropped without a commit, it leaves nothing behind.
pub struct OutputFile {
    /// The final name, made absolute against the current directory.
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::fs::File>,
}

impl OutputFile {
    pub fn create(path: &Path) -> anyhow::Result<OutputFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            anyhow::bail!("{} is not a file name", path.display());
        };
        if path.is_dir() {
            anyhow::bail!("{} is a directory", path.display());
        }
        let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(OutputFile { path, tmp, file: Some(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `data`, syncs it and renames it to the final name (replacing what was there).
    pub fn commit(mut self, data: &[u8]) -> anyhow::Result<()> {
        let mut file = self.file.take().context("the output file was committed already")?;
        let written = (|| {
            file.write_all(data)?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&self.tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            std::io::Result::Ok(())
        })();
        written.with_context(|| format!("writing {}", self.path.display()))
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        // Not committed (or the commit failed before the rename): remove the temporary file.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pipes_are_found_through_context() {
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(&anyhow::Error::from(pipe).context("printing the table")));
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(!is_broken_pipe(&anyhow::Error::from(other)));
        assert!(!is_broken_pipe(&anyhow::anyhow!("broken pipe, in words only")));
    }

    #[test]
    fn an_output_file_is_private_and_appears_only_when_committed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("pi-1.json");
        let out = OutputFile::create(&target).unwrap();
        assert!(!target.exists());
        out.commit(b"{}\n").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"{}\n");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        drop(OutputFile::create(&dir.path().join("abandoned.json")).unwrap());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("pi-1.json")], "no temporary file is left");
        assert!(OutputFile::create(&dir.path().join("missing/x.json")).is_err());
        assert!(OutputFile::create(dir.path()).is_err());
    }
}
