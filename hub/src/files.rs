//! The hub's data directory as its clients find it: the names of the files the server writes
//! for the CLI on the same machine, and how a private file (a token, a password) is written.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The admin bearer token.
pub const TOKEN_FILE: &str = "admin.token";
/// Where the API listens and with which CA (for the CLI).
pub const CLIENT_FILE: &str = "client.json";

/// Writes a file readable only by its owner (0600), atomically (temp file, fsync, rename,
/// fsync of the directory).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // A bare file name's parent is "": the current directory.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_the_owners_only_also_in_the_current_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let cwd = std::env::current_dir().unwrap();
        let bare = format!("flotilla-files-test-{}", std::process::id());
        write_private(Path::new(&bare), b"x").unwrap();
        std::fs::remove_file(cwd.join(&bare)).unwrap();
    }
}
