//! The executor: performs the reconcile core's actions against the real runtime (sandbox
//! holders, shims, the image store) and hands what came of each to the pure
//! `reconcile::record`, which does the bookkeeping. Nothing here blocks for long: shims and
//! sandboxes are spawned and left to run, stops with a grace period finish on a background
//! thread. Starting a container is `container`; its pure plan is `plan` and `env`.

mod container;
pub mod env;
pub mod plan;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use flotilla_shared::api::{Container, PodSpec};
use flotilla_shared::wire::DesiredPod;

use super::events::Recorder;
use super::paths::Paths;
use super::pulls::Pulls;
use super::Desired;
use crate::clock::{boot_ms, now_rfc3339, start_ticks};
use crate::fsutil::read_json;
use crate::image::ImageStore;
use crate::reconcile::record::{pull_step, record, Outcome, PullOutcome, PullStep, StartFailure};
use crate::reconcile::{Action, ObservedPod};
use crate::runtime::sandbox::SandboxInfo;
use crate::runtime::shim::{Running, EXITED_FILE, RUNNING_FILE};
use crate::runtime::volumes::{PodVolumes, VolumeError};

pub use env::resolve_env;
pub use plan::container_id;

/// A start refused because of the pod's configuration (the kubelet's
/// `CreateContainerConfigError`): a missing ConfigMap, Secret or key, runAsNonRoot with an image
/// that runs as root.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Whether an error is the pod configuration's fault.
fn is_config_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<ConfigError>().is_some()
            || matches!(c.downcast_ref::<VolumeError>(), Some(VolumeError::Config(_)))
    })
}

pub struct Executor<'a> {
    pub paths: &'a Paths,
    pub images: &'a std::sync::Arc<ImageStore>,
    pub agent_bin: PathBuf,
    pub node_name: String,
    /// The node's address (hostIP, and podIP of host-network pods).
    pub host_ip: Option<String>,
    pub pulls: &'a Pulls,
    pub events: std::cell::RefCell<Recorder>,
}

fn find_container<'p>(spec: &'p PodSpec, name: &str) -> Option<&'p Container> {
    spec.all_containers().find(|c| c.name == name)
}

impl Executor<'_> {
    /// Performs one action for `pod` (None when the pod is no longer desired) and records its
    /// outcome ([`record`]). `wanted` holds the ConfigMaps, Secrets and claims the pods may use
    /// (volumes, env, imagePullSecrets).
    pub fn perform(
        &self,
        action: &Action,
        desired: Option<&DesiredPod>,
        obs: &mut ObservedPod,
        wanted: &Desired,
    ) {
        let outcome = match action {
            Action::CreateSandbox { uid } => {
                Outcome::Sandbox(self.create_sandbox(uid, desired).map_err(|e| {
                    tracing::warn!(pod = %obs.name, error = %format!("{e:#}"), "sandbox creation failed");
                    format!("{e:#}")
                }))
            }
            Action::PullImage { image, policy, .. } => {
                let present = matches!(self.images.resolve(image), Ok(Some(_)));
                Outcome::Pull(match pull_step(present, *policy) {
                    PullStep::UsePresent => PullOutcome::Present,
                    PullStep::RefuseNever => PullOutcome::NeverPull,
                    PullStep::Pull => {
                        // Runs on its own thread; `pulls::finish_pulls` records the outcome.
                        let (cfg, missing) = match desired {
                            Some(d) => {
                                self.pulls.config.for_pod(&d.spec, d.metadata.namespace(), &wanted.secrets)
                            }
                            None => (self.pulls.config.clone(), Vec::new()),
                        };
                        if !missing.is_empty() {
                            tracing::warn!(pod = %obs.name, secrets = ?missing, "unable to retrieve some image pull secrets; attempting to pull the image may not succeed");
                        }
                        PullOutcome::Pulling { started: self.pulls.start(self.images, image, cfg) }
                    }
                })
            }
            Action::StartContainer { uid, container, .. } => {
                let Some(d) = desired else { return };
                Outcome::Start(
                    self.start_container(uid, d, container, wanted)
                        .map(|digest| digest.to_string())
                        .map_err(|e| StartFailure { config: is_config_error(&e), message: format!("{e:#}") }),
                )
            }
            Action::StopContainer { uid, container, grace_secs } => Outcome::Stopped(
                self.stop_container(uid, container, *grace_secs)
                    .then(|| container.clone())
                    .into_iter()
                    .collect(),
            ),
            Action::RemoveContainer { uid, container } => {
                remove_container_dir(&self.paths.container(uid, container));
                remove_bundle(&self.paths.bundle(uid, container));
                Outcome::Removed
            }
            Action::KillPod { uid, grace_secs } => Outcome::Stopped(
                obs.containers
                    .keys()
                    .filter(|name| self.stop_container(uid, name, *grace_secs))
                    .cloned()
                    .collect(),
            ),
            Action::RemovePod { uid } => {
                self.remove_pod(uid);
                Outcome::Removed
            }
        };
        let pod_ref = format!("{}/{}", obs.namespace, obs.name);
        for n in record(obs, action, outcome, desired, boot_ms(), &now_rfc3339()) {
            self.events.borrow_mut().record(n.warning, n.reason, &pod_ref, &n.container, n.message);
        }
    }

    /// Deletes everything of a pod: its sandbox, containers, bundles, volumes, logs in memory
    /// and cgroups.
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

    fn create_sandbox(&self, uid: &str, desired: Option<&DesiredPod>) -> anyhow::Result<()> {
        let Some(d) = desired else { bail!("the pod is no longer desired") };
        let info = self.paths.sandbox_info(uid);
        if let Some(existing) = read_json::<SandboxInfo>(&info) {
            if existing.alive() {
                return Ok(());
            }
        }
        let _ = std::fs::remove_file(&info);
        let host_network = d.spec.host_network == Some(true);
        let hostname = d.spec.hostname.clone().unwrap_or_else(|| d.metadata.name().to_string());
        let hostname = if host_network { self.node_name.clone() } else { hostname };
        let mut cmd = Command::new(&self.agent_bin);
        cmd.arg("sandbox").arg("--info").arg(&info).arg("--hostname").arg(&hostname);
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

    /// SIGTERM now, SIGKILL after the grace period if the same process still runs.
    /// Returns whether the container was running (and so was signalled).
    pub fn stop_container(&self, uid: &str, name: &str, grace_secs: u64) -> bool {
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
fn remove_container_dir(dir: &Path) {
    let _ = nix::mount::umount2(&dir.join("bundle/rootfs"), nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(dir);
}

/// Deletes a container's bundle, its root filesystem mount detached first.
fn remove_bundle(bundle: &Path) {
    let _ = nix::mount::umount2(&bundle.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(bundle);
}
