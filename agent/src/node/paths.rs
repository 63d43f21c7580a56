//! Where the agent keeps things. The state directory (often an SD card or eMMC) holds only what
//! must survive a reboot: images, the last desired snapshot, the pods' directories (volumes,
//! writable layers, container logs) and the shims' records. Everything that changes while
//! nothing happens, or matters only until the next reboot (the observed state, the statuses
//! `ps` shows, sandbox records, OCI bundles, libcontainer's state), lives in the run directory,
//! a tmpfs on real systems. ARCHITECTURE.md lists every file and when it is written.

use std::path::{Path, PathBuf};

/// Container log files are rotated at this size (one rotated file is kept: at most twice this
/// per container).
pub const LOG_MAX_BYTES: u64 = 10 << 20;

#[derive(Debug, Clone)]
pub struct Paths {
    pub state: PathBuf,
    pub run: PathBuf,
    /// Keep container logs in memory (a tmpfs of this many bytes under the run directory)
    /// instead of the state directory.
    pub logs_in_memory: Option<u64>,
}

impl Paths {
    pub fn new(state: &Path, run: &Path) -> Self {
        Paths { state: state.to_path_buf(), run: run.to_path_buf(), logs_in_memory: None }
    }
    pub fn with_logs_in_memory(mut self, bytes: Option<u64>) -> Self {
        self.logs_in_memory = bytes;
        self
    }
    pub fn images(&self) -> PathBuf {
        self.state.join("images")
    }
    /// The executor's record of every pod (the reconcile core's `Observed`): in the run
    /// directory, since it changes with every probe verdict and means nothing after a reboot.
    pub fn observed(&self) -> PathBuf {
        self.run.join("observed.json")
    }
    /// Where earlier agents kept the observed state (on flash, rewritten every round): read
    /// once, to adopt across an upgrade, then removed.
    pub fn legacy_observed(&self) -> PathBuf {
        self.state.join("observed.json")
    }
    /// The statuses of the last reconcile, for `ps` and `logs` (in the run directory).
    pub fn statuses(&self) -> PathBuf {
        self.run.join("status.json")
    }
    /// A symbolic link to `statuses()`, so readers that know only the state directory
    /// (`ps`, `logs`, the hub's log requests) find it. Created once, never rewritten.
    pub fn statuses_link(&self) -> PathBuf {
        self.state.join("status.json")
    }
    pub fn pod(&self, uid: &str) -> PathBuf {
        self.state.join("pods").join(uid)
    }
    pub fn container(&self, uid: &str, name: &str) -> PathBuf {
        self.pod(uid).join("containers").join(name)
    }
    /// A container's log directory (kept across restarts of the container). With logs in
    /// memory, the pod's `logs` directory is a symbolic link into `memory_logs(uid)`.
    pub fn logs(&self, uid: &str, name: &str) -> PathBuf {
        self.pod(uid).join("logs").join(name)
    }
    /// The tmpfs holding container logs kept in memory.
    pub fn memory_logs_root(&self) -> PathBuf {
        self.run.join("logs")
    }
    pub fn memory_logs(&self, uid: &str) -> PathBuf {
        self.memory_logs_root().join(uid)
    }
    /// The size at which a container's log is rotated: 10 MiB, or with logs in memory a
    /// sixteenth of the tmpfs (so one chatty container cannot take more than an eighth).
    pub fn log_max_bytes(&self) -> u64 {
        self.logs_in_memory.map_or(LOG_MAX_BYTES, |cap| (cap / 16).clamp(4096, LOG_MAX_BYTES))
    }
    /// The pod's OCI bundles (config.json and the rootfs mount point), in the run directory:
    /// a config.json can hold Secret values, which must not reach the disk.
    pub fn bundles(&self, uid: &str) -> PathBuf {
        self.run.join("bundles").join(uid)
    }
    pub fn bundle(&self, uid: &str, name: &str) -> PathBuf {
        self.bundles(uid).join(name)
    }
    pub fn sandbox_info(&self, uid: &str) -> PathBuf {
        self.run.join("sandboxes").join(format!("{uid}.json"))
    }
    /// The sandbox holder's stderr.
    pub fn sandbox_log(&self, uid: &str) -> PathBuf {
        self.run.join("sandboxes").join(format!("{uid}.log"))
    }
    /// libcontainer's state root.
    pub fn runtime_root(&self) -> PathBuf {
        self.run.join("containers")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_records_live_in_the_run_directory() {
        let p = Paths::new(Path::new("/var/lib/a"), Path::new("/run/a"));
        for volatile in
            [p.observed(), p.statuses(), p.sandbox_info("u"), p.sandbox_log("u"), p.bundle("u", "c")]
        {
            assert!(volatile.starts_with("/run/a"), "{}", volatile.display());
        }
        assert!(p.statuses_link().starts_with("/var/lib/a"));
        assert!(p.logs("u", "c").starts_with("/var/lib/a/pods/u"));
    }

    #[test]
    fn log_rotation_size_follows_the_memory_cap() {
        let p = Paths::new(Path::new("/s"), Path::new("/r"));
        let cases =
            [(None, 10 << 20), (Some(64 << 20), 4 << 20), (Some(1 << 30), 10 << 20), (Some(1024), 4096)];
        for (cap, want) in cases {
            assert_eq!(p.clone().with_logs_in_memory(cap).log_max_bytes(), want, "{cap:?}");
        }
    }
}
