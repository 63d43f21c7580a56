//! The agent's state and run directories are private (0700), as the systemd unit's
//! `StateDirectoryMode=` and `RuntimeDirectoryMode=` make them: they hold what other local
//! users must not read (the run directory's Secrets and the OCI bundles whose `config.json`
//! carries Secret values, the Secret volumes' files, container logs), also when the agent is
//! started by hand, outside systemd, with a umask that lets new files be read by everyone.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// The mode of the agent's own directories.
const PRIVATE: u32 = 0o700;

/// Creates `dir` (and missing parents) with mode 0700, or takes group and other access away
/// from an existing one, as systemd does for a unit's state directory.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE))
                    .with_context(|| format!("making {} private (mode 0700)", dir.display()))?;
                tracing::warn!(dir = %dir.display(), was = format!("{mode:04o}"), "made the directory private (0700): other users could read it");
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display())),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn new_and_open_directories_end_up_private() {
        let tmp = tempfile::tempdir().unwrap();
        let new = tmp.path().join("a/state");
        ensure_private_dir(&new).unwrap();
        assert_eq!(mode(&new), 0o700);
        let open = tmp.path().join("run");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
        ensure_private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700, "idempotent");
        let file = tmp.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(ensure_private_dir(&file.join("x")).is_err());
    }
}
