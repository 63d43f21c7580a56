//! The pod sandbox: a tiny holder process (`flotilla-agent sandbox ...`, the agent binary
//! re-executed, like Kubernetes' pause container) that owns the network, IPC and UTS namespaces
//! a pod's containers share. It unshares them, sets the pod's hostname, brings loopback up,
//! records its pid and start time, and sleeps until it is told to stop. Like the shims, it runs
//! in its own session and outlives agent restarts.

use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::sched::{unshare, CloneFlags};
use serde::{Deserialize, Serialize};

use crate::clock::start_ticks;
use crate::fsutil::write_atomic;

/// What the holder records once its namespaces exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxInfo {
    pub pid: i32,
    pub start_ticks: u64,
    pub host_network: bool,
}

impl SandboxInfo {
    /// Path of one of the sandbox's namespaces (`net`, `ipc`, `uts`).
    pub fn ns_path(&self, ns: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{ns}", self.pid))
    }

    /// Whether the recorded process is still the holder (not a later process with its pid).
    pub fn alive(&self) -> bool {
        start_ticks(self.pid) == Some(self.start_ticks)
    }
}

/// Brings the loopback interface of the current network namespace up, over netlink.
fn loopback_up() -> anyhow::Result<()> {
    use libcontainer::network::link::LinkClient;
    use libcontainer::network::wrapper::create_network_client;
    let mut links = LinkClient::new(create_network_client()).context("opening a netlink socket")?;
    let lo = links.get_by_name("lo").context("finding the loopback interface")?;
    links.set_up(lo.header.index).context("bringing loopback up")?;
    Ok(())
}

/// Runs the holder: never returns while the sandbox lives; exits on SIGTERM.
pub fn run(info_file: &Path, hostname: &str, host_network: bool) -> anyhow::Result<()> {
    super::reset_signals();
    let _ = nix::unistd::setsid();
    let mut flags = CloneFlags::CLONE_NEWIPC;
    if !host_network {
        flags |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
    }
    unshare(flags).context("creating the pod's namespaces")?;
    if !host_network {
        nix::unistd::sethostname(hostname).with_context(|| format!("setting the hostname {hostname:?}"))?;
        loopback_up()?;
    }
    let pid = std::process::id() as i32;
    let info = SandboxInfo { pid, start_ticks: start_ticks(pid).unwrap_or(0), host_network };
    if let Some(dir) = info_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(info_file, &serde_json::to_vec(&info)?)?;
    // Sleep until a signal ends us; SIGTERM's default action terminates the process.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
