//! The executor's narrow port in front of the OS: create a pod's sandbox, start a container's
//! shim, stop a container, remove a container or a whole pod, and read a sandbox's state. The
//! production [`OsRuntime`] spawns the agent binary as sandbox holder and shim, signals
//! processes and deletes directories, cgroups and mounts; tests use a recording fake
//! (`fake.rs`), as youki tests its rootfs code with a recording `Syscall`. What to create and
//! how to record the outcome is decided before and after the port, not in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::clock::start_ticks;
use crate::fsutil::read_json;
use crate::node::paths::Paths;
use crate::runtime::sandbox::SandboxInfo;
use crate::runtime::shim::{Running, EXITED_FILE, RUNNING_FILE};
use crate::runtime::volumes::PodVolumes;

/// What the executor asks of the OS.
pub trait Runtime {
    /// The pod's sandbox holder as it recorded itself, if it is still that process.
    fn sandbox(&self, uid: &str) -> Option<SandboxInfo>;
    /// Starts the pod's sandbox holder (namespaces, hostname) and waits until it is up.
    fn create_sandbox(&self, uid: &str, hostname: &str, host_network: bool) -> anyhow::Result<()>;
    /// Starts a container's shim on the launch file at `launch`, its stderr into `log`.
    fn start_shim(&self, launch: &Path, log: &Path) -> anyhow::Result<()>;
    /// SIGTERM now, SIGKILL after the grace period if the same process still runs.
    /// Returns whether the container was running (and so was signalled).
    fn stop(&self, uid: &str, name: &str, grace_secs: u64) -> bool;
    /// Deletes an exited container's directory and bundle.
    fn remove_container(&self, uid: &str, name: &str);
    /// Deletes everything of a pod: its sandbox, containers, bundles, volumes, logs in memory
    /// and cgroups.
    fn remove_pod(&self, uid: &str);
}

/// The runtime of the device: the agent binary as sandbox holder and shim.
#[derive(Debug, Clone)]
pub struct OsRuntime {
    pub paths: Paths,
    pub agent_bin: PathBuf,
}

impl Runtime for OsRuntime {
    fn sandbox(&self, uid: &str) -> Option<SandboxInfo> {
        read_json::<SandboxInfo>(&self.paths.sandbox_info(uid)).filter(SandboxInfo::alive)
    }

    fn create_sandbox(&self, uid: &str, hostname: &str, host_network: bool) -> anyhow::Result<()> {
        let info = self.paths.sandbox_info(uid);
        let _ = std::fs::remove_file(&info);
        let mut cmd = Command::new(&self.agent_bin);
        cmd.arg("sandbox").arg("--info").arg(&info).arg("--hostname").arg(hostname);
        if host_network {
            cmd.arg("--host-network");
        }
        // The holder's stderr says why it failed, if it does; in the run directory, so a pod
        // started costs the flash nothing for it.
        let log = self.paths.sandbox_log(uid);
        std::fs::create_dir_all(self.paths.pod(uid))?;
        if let Some(d) = log.parent() {
            std::fs::create_dir_all(d)?;
        }
        let log_file = std::fs::File::create(&log)?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
        let mut child = cmd.spawn().context("starting the sandbox holder")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if read_json::<SandboxInfo>(&info).is_some() {
                // The holder keeps running; `reap_children` collects it when it ends.
                drop(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                let why = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("the sandbox holder exited ({status}): {}", why.trim());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the sandbox holder did not come up within 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn start_shim(&self, launch: &Path, log: &Path) -> anyhow::Result<()> {
        let shim_log = std::fs::File::create(log)?;
        let child = Command::new(&self.agent_bin)
            .arg("shim")
            .arg(launch)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(shim_log)
            .spawn()
            .context("starting the shim")?;
        // The shim outlives us if we restart; while we live, `reap_children` collects it.
        drop(child);
        Ok(())
    }

    fn stop(&self, uid: &str, name: &str, grace_secs: u64) -> bool {
        let status = self.paths.container(uid, name).join("status");
        let Some(running) = read_json::<Running>(&status.join(RUNNING_FILE)) else { return false };
        if status.join(EXITED_FILE).exists() || start_ticks(running.pid) != Some(running.start_ticks) {
            return false;
        }
        let pid = Pid::from_raw(running.pid);
        let _ = kill(pid, Signal::SIGTERM);
        let ticks = running.start_ticks;
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(grace_secs);
            while Instant::now() < deadline {
                if start_ticks(pid.as_raw()) != Some(ticks) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if start_ticks(pid.as_raw()) == Some(ticks) {
                let _ = kill(pid, Signal::SIGKILL);
            }
        });
        true
    }

    fn remove_container(&self, uid: &str, name: &str) {
        remove_container_dir(&self.paths.container(uid, name));
        remove_bundle(&self.paths.bundle(uid, name));
    }

    fn remove_pod(&self, uid: &str) {
        self.stop_sandbox(uid);
        if let Ok(entries) = std::fs::read_dir(self.paths.pod(uid).join("containers")) {
            for e in entries.flatten() {
                remove_container_dir(&e.path());
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.paths.bundles(uid)) {
            for e in entries.flatten() {
                remove_bundle(&e.path());
            }
        }
        let _ = std::fs::remove_dir(self.paths.bundles(uid));
        // Never delete through a mount: the pod's tmpfs volumes go first.
        PodVolumes::new(&self.paths.pod(uid)).unmount_all();
        let _ = std::fs::remove_dir_all(self.paths.pod(uid));
        let _ = std::fs::remove_dir_all(self.paths.memory_logs(uid));
        remove_pod_cgroups(uid);
    }
}

impl OsRuntime {
    fn stop_sandbox(&self, uid: &str) {
        let info = self.paths.sandbox_info(uid);
        if let Some(s) = read_json::<SandboxInfo>(&info) {
            if s.alive() {
                let _ = kill(Pid::from_raw(s.pid), Signal::SIGKILL);
            }
        }
        let _ = std::fs::remove_file(info);
        let _ = std::fs::remove_file(self.paths.sandbox_log(uid));
    }
}

/// Removes the pod's cgroup (`/flotilla/<uid>`) in every hierarchy: libcontainer removes the
/// containers' own cgroups, not their parent. Only empty cgroups can be removed (rmdir), so a
/// straggling process keeps its cgroup rather than losing its limits.
fn remove_pod_cgroups(uid: &str) {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    let mut dirs: Vec<PathBuf> = vec![Path::new("/sys/fs/cgroup/flotilla").join(uid)];
    dirs.extend(entries.flatten().map(|e| e.path().join("flotilla").join(uid)));
    for dir in dirs {
        if let Ok(children) = std::fs::read_dir(&dir) {
            for c in children.flatten().filter(|c| c.file_type().is_ok_and(|t| t.is_dir())) {
                let _ = std::fs::remove_dir(c.path());
            }
            if let Err(e) = std::fs::remove_dir(&dir) {
                tracing::debug!(cgroup = %dir.display(), error = %e, "cannot remove the pod's cgroup");
            }
        }
    }
}

/// Deletes a container's directory, first detaching its root filesystem mount should the
/// shim not have (a shim killed before its cleanup), so no mount leaks and nothing under it is
/// deleted through the mount.
pub(super) fn remove_container_dir(dir: &Path) {
    let _ = nix::mount::umount2(&dir.join("bundle/rootfs"), nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(dir);
}

/// Deletes a container's bundle, its root filesystem mount detached first.
pub(super) fn remove_bundle(bundle: &Path) {
    let _ = nix::mount::umount2(&bundle.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(bundle);
}
