//! The loop's own records and the state directory's upkeep. The observed state (what runs,
//! probe verdicts, back-offs) and the statuses `ps` shows change while nothing happens on the
//! device and mean nothing after a reboot, so they live in the run directory (a tmpfs) and are
//! written only when their bytes change; the flash is never written by a quiet agent. The
//! price: after a reboot the agent starts from an empty observed state, so a pod it ran before
//! and that is no longer desired is found by its directory (`orphans`) and removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::paths::Paths;
use crate::fsutil::{read_json, write_replace};
use crate::reconcile::{Observed, ObservedPod};

/// Writes the loop's records when they change, atomically but without fsync (they live in the
/// run directory and are worthless after a reboot). A write that fails (a full run directory) is
/// logged once and tried again next round, so a full disk never stops the loop.
#[derive(Debug, Default)]
pub struct Records {
    /// What each file holds now.
    written: BTreeMap<PathBuf, Vec<u8>>,
    failing: bool,
}

impl Records {
    /// Writes `value` to `path` unless the file already holds exactly these bytes. Returns
    /// whether it wrote.
    pub fn write(&mut self, path: &Path, value: &impl serde::Serialize) -> bool {
        let bytes = match serde_json::to_vec(value) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot encode a record");
                return false;
            }
        };
        if !changed(self.written.get(path), &bytes) {
            return false;
        }
        match write_replace(path, &bytes) {
            Ok(()) => {
                if self.failing {
                    tracing::info!(path = %path.display(), "the agent's records are writable again");
                }
                self.failing = false;
                self.written.insert(path.to_path_buf(), bytes);
                true
            }
            Err(e) => {
                let _ = std::fs::remove_file(path.with_extension("tmp"));
                if !self.failing {
                    tracing::error!(path = %path.display(), error = %e, "cannot write the agent's records (disk full?); the pods keep running");
                }
                self.failing = true;
                false
            }
        }
    }
}

/// Pure: whether a record must be written: it differs from what the file holds (or nobody knows).
fn changed(held: Option<&Vec<u8>>, now: &[u8]) -> bool {
    held.is_none_or(|h| h.as_slice() != now)
}

/// Gets the directories ready before the loop starts: the status link for readers that know
/// only the state directory, the tmpfs for logs kept in memory, and the leftovers of earlier
/// agents (which kept their records on flash) moved or removed.
pub fn prepare(paths: &Paths) -> anyhow::Result<()> {
    let run =
        std::fs::canonicalize(&paths.run).with_context(|| format!("resolving {}", paths.run.display()))?;
    let target = run.join(paths.statuses().file_name().unwrap_or_default());
    let link = paths.statuses_link();
    if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link)
            .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
    }
    // Earlier agents' per-report sequence file: the link thread counts in memory now.
    let _ = std::fs::remove_file(paths.state.join("status.seq"));
    if let Some(bytes) = paths.logs_in_memory {
        mount_log_tmpfs(&paths.memory_logs_root(), bytes)?;
    }
    Ok(())
}

/// The observed state the last agent of this boot left in the run directory; else what an
/// earlier agent version left in the state directory (moved to the run directory, so an
/// upgrade adopts too); else nothing (the node rebooted).
pub fn load_observed(paths: &Paths) -> Observed {
    if let Some(o) = read_json::<Observed>(&paths.observed()) {
        return o;
    }
    let legacy = paths.legacy_observed();
    let Some(o) = read_json::<Observed>(&legacy) else { return Observed::default() };
    if write_replace(&paths.observed(), &serde_json::to_vec(&o).unwrap_or_default()).is_ok() {
        let _ = std::fs::remove_file(&legacy);
    }
    tracing::info!(pods = o.pods.len(), "adopting the records of an earlier agent version");
    o
}

/// Pure: the pods that have a directory on the device but neither an observed record nor a
/// desired pod (left by a run before a reboot): they get a bare record, which the reconcile
/// core removes like any undesired pod.
pub fn orphans<'a>(on_disk: &'a [String], observed: &Observed, desired: &[&str]) -> Vec<&'a str> {
    on_disk
        .iter()
        .map(String::as_str)
        .filter(|uid| !observed.pods.contains_key(*uid) && !desired.contains(uid))
        .collect()
}

/// Adds a bare record for every orphaned pod directory (see `orphans`). Only called when the
/// desired state is known: before the first snapshot every pod would look orphaned.
pub fn adopt_orphans(paths: &Paths, observed: &mut Observed, desired: &[&str]) {
    let on_disk: Vec<String> = std::fs::read_dir(paths.state.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    for uid in orphans(&on_disk, observed, desired) {
        tracing::info!(uid, "removing a pod left from before a restart of the node");
        observed.pods.insert(uid.to_string(), ObservedPod { uid: uid.to_string(), ..Default::default() });
    }
}

/// Mounts a tmpfs of `bytes` at `dir` for container logs (or resizes the one an earlier agent
/// mounted, keeping its logs). Containers keep logging into it after the agent stops.
fn mount_log_tmpfs(dir: &Path, bytes: u64) -> anyhow::Result<()> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir)?;
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*dir.to_string_lossy()));
    let opts = format!("size={bytes},mode=0700");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let flags = if mounted { flags | MsFlags::MS_REMOUNT } else { flags };
    mount(Some("tmpfs"), &dir, Some("tmpfs"), flags, Some(opts.as_str())).with_context(|| {
        format!("mounting a tmpfs of {bytes} bytes for container logs at {}", dir.display())
    })?;
    tracing::info!(dir = %dir.display(), bytes, "container logs are kept in memory");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_written_only_when_it_changes() {
        let held = |b: &[u8]| Some(b.to_vec());
        let cases = [
            (None, &b"{}"[..], true),
            (held(b"{}"), b"{}", false),
            (held(b"{}"), b"{\"a\":1}", true),
            (held(b""), b"", false),
        ];
        for (held, now, want) in cases {
            assert_eq!(changed(held.as_ref(), now), want, "{held:?} {now:?}");
        }
    }

    #[test]
    fn records_are_rewritten_only_on_change_and_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let mut r = Records::default();
        assert!(r.write(&path, &1));
        assert!(!r.write(&path, &1), "same bytes: no write");
        assert!(r.write(&path, &2));
        let gone = dir.path().join("missing/r.json");
        assert!(!r.write(&gone, &3), "the write fails");
        std::fs::create_dir(dir.path().join("missing")).unwrap();
        assert!(r.write(&gone, &3), "and is tried again");
        assert_eq!(std::fs::read(&gone).unwrap(), b"3");
    }

    #[test]
    fn orphans_are_the_directories_nobody_knows() {
        let mut o = Observed::default();
        o.pods.insert("running".into(), ObservedPod::default());
        let disk: Vec<String> = ["running", "desired", "left"].map(String::from).to_vec();
        let cases: [(&[&str], &[&str]); 3] =
            [(&["desired"], &["left"]), (&[], &["desired", "left"]), (&["desired", "left"], &[])];
        for (desired, want) in cases {
            assert_eq!(orphans(&disk, &o, desired), want, "{desired:?}");
        }
    }

    #[test]
    fn legacy_records_are_moved_to_the_run_directory() {
        let (state, run) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let paths = Paths::new(state.path(), run.path());
        let mut o = Observed::default();
        o.pods.insert("u".into(), ObservedPod { uid: "u".into(), ..Default::default() });
        std::fs::write(paths.legacy_observed(), serde_json::to_vec(&o).unwrap()).unwrap();
        std::fs::write(paths.statuses_link(), b"{}").unwrap();
        std::fs::write(state.path().join("status.seq"), b"7").unwrap();
        prepare(&paths).unwrap();
        assert!(load_observed(&paths).pods.contains_key("u"));
        assert!(!paths.legacy_observed().exists() && paths.observed().exists());
        assert!(!state.path().join("status.seq").exists());
        assert!(std::fs::symlink_metadata(paths.statuses_link()).unwrap().file_type().is_symlink());
        std::fs::write(paths.statuses(), b"{\"pods\":[]}").unwrap();
        assert_eq!(std::fs::read(paths.statuses_link()).unwrap(), b"{\"pods\":[]}", "read through the link");
        prepare(&paths).unwrap();
        assert!(load_observed(&paths).pods.contains_key("u"), "from the run directory now");
    }
}
