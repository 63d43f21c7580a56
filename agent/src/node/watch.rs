//! Wake-ups for the agent's loop: inotify on the manifest directory (and its subdirectories),
//! so a manifest written is acted on at once rather than at the next poll. The loop still
//! re-reads the directory on every round, so a missed or overflowed event only costs latency.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// Starts a thread that sends on `wake` whenever something under `dir` changes. Fails (and
/// the loop polls) when inotify is unavailable.
pub fn watch_manifests(dir: &Path, wake: Sender<()>) -> anyhow::Result<()> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC)?;
    let flags = AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ATTRIB;
    add_tree(&inotify, dir, flags);
    let dir = dir.to_path_buf();
    std::thread::Builder::new().name("manifest-watch".into()).spawn(move || loop {
        match inotify.read_events() {
            Ok(events) => {
                // New subdirectories need watches of their own; re-adding existing ones is a
                // no-op that returns the same descriptor.
                if events.iter().any(|e| {
                    e.mask.contains(AddWatchFlags::IN_ISDIR) || e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW)
                }) {
                    add_tree(&inotify, &dir, flags);
                }
                if wake.send(()).is_err() {
                    return;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                tracing::warn!(error = %e, "watching the manifest directory failed; polling only");
                return;
            }
        }
    })?;
    Ok(())
}

/// Watches `dir` and every directory below it (not following symlinks to directories).
fn add_tree(inotify: &Inotify, dir: &Path, flags: AddWatchFlags) {
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Err(e) = inotify.add_watch(&d, flags) {
            tracing::debug!(dir = %d.display(), error = %e, "cannot watch");
            continue;
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            stack.extend(
                entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn changes_in_the_directory_and_new_subdirectories_wake_the_loop() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        watch_manifests(dir.path(), tx).unwrap();
        let wait = |what: &str| {
            rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| panic!("no wake-up for {what}"));
            // One change may wake it more than once (a write is a create and a modify).
            std::thread::sleep(Duration::from_millis(300));
            while rx.try_recv().is_ok() {}
        };
        std::fs::write(dir.path().join("a.yaml"), "x").unwrap();
        wait("a new file");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        wait("a new directory");
        std::fs::write(dir.path().join("sub/b.yaml"), "x").unwrap();
        wait("a file in the new directory");
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        wait("a removed file");
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "no wake-up without a change");
    }
}
