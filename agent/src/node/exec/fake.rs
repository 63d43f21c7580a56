//! A recording fake of the runtime port for the executor's unit tests: every call is kept in
//! order, sandboxes "exist" once created, and the containers named in `running` count as
//! running when stopped. Nothing touches the OS.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::port::Runtime;
use crate::runtime::sandbox::SandboxInfo;

/// One call to the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    CreateSandbox { uid: String, hostname: String, host_network: bool },
    StartShim { launch: PathBuf },
    Stop { uid: String, name: String, grace_secs: u64 },
    RemoveContainer { uid: String, name: String },
    RemovePod { uid: String },
}

#[derive(Debug, Default)]
pub struct FakeRuntime {
    pub calls: RefCell<Vec<Call>>,
    /// Pods whose sandbox exists.
    pub sandboxes: RefCell<BTreeSet<String>>,
    /// `(uid, container)` that are running.
    pub running: BTreeSet<(String, String)>,
    /// When set, creating a sandbox fails with this message.
    pub sandbox_error: Option<String>,
}

impl Runtime for FakeRuntime {
    fn sandbox(&self, uid: &str) -> Option<SandboxInfo> {
        self.sandboxes.borrow().contains(uid).then_some(SandboxInfo {
            pid: 1,
            start_ticks: 1,
            host_network: false,
        })
    }

    fn create_sandbox(&self, uid: &str, hostname: &str, host_network: bool) -> anyhow::Result<()> {
        self.calls.borrow_mut().push(Call::CreateSandbox {
            uid: uid.into(),
            hostname: hostname.into(),
            host_network,
        });
        if let Some(e) = &self.sandbox_error {
            anyhow::bail!("{e}");
        }
        self.sandboxes.borrow_mut().insert(uid.into());
        Ok(())
    }

    fn start_shim(&self, launch: &Path, _log: &Path) -> anyhow::Result<()> {
        self.calls.borrow_mut().push(Call::StartShim { launch: launch.into() });
        Ok(())
    }

    fn stop(&self, uid: &str, name: &str, grace_secs: u64) -> bool {
        self.calls.borrow_mut().push(Call::Stop { uid: uid.into(), name: name.into(), grace_secs });
        self.running.contains(&(uid.to_string(), name.to_string()))
    }

    fn remove_container(&self, uid: &str, name: &str) {
        self.calls.borrow_mut().push(Call::RemoveContainer { uid: uid.into(), name: name.into() });
    }

    fn remove_pod(&self, uid: &str) {
        self.calls.borrow_mut().push(Call::RemovePod { uid: uid.into() });
        self.sandboxes.borrow_mut().remove(uid);
    }
}
