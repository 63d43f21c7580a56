//! Where the agent keeps things. Persistent state (images, container records, logs, the last
//! desired pods) lives under the state directory; what must not survive a reboot (sandbox
//! records, libcontainer's state) lives under the run directory, a tmpfs on real systems.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Paths {
    pub state: PathBuf,
    pub run: PathBuf,
}

impl Paths {
    pub fn new(state: &Path, run: &Path) -> Self {
        Paths { state: state.to_path_buf(), run: run.to_path_buf() }
    }
    pub fn images(&self) -> PathBuf {
        self.state.join("images")
    }
    /// The executor's record of every pod (the reconcile core's `Observed`).
    pub fn observed(&self) -> PathBuf {
        self.state.join("observed.json")
    }
    /// The statuses of the last reconcile, for `ps`.
    pub fn statuses(&self) -> PathBuf {
        self.state.join("status.json")
    }
    pub fn pod(&self, uid: &str) -> PathBuf {
        self.state.join("pods").join(uid)
    }
    pub fn container(&self, uid: &str, name: &str) -> PathBuf {
        self.pod(uid).join("containers").join(name)
    }
    /// A container's log directory (kept across restarts of the container).
    pub fn logs(&self, uid: &str, name: &str) -> PathBuf {
        self.pod(uid).join("logs").join(name)
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
    /// libcontainer's state root.
    pub fn runtime_root(&self) -> PathBuf {
        self.run.join("containers")
    }
}
