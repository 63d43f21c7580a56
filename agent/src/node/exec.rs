//! The executor: performs the reconcile core's actions against the real runtime (sandbox
//! holders, shims, the image store) and records their outcomes in the observed state. Nothing
//! here blocks for long: shims and sandboxes are spawned and left to run, stops with a grace
//! period finish on a background thread.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use flotilla_shared::api::{Container, PodSpec, PullPolicy};
use flotilla_shared::wire::{ConfigData, DesiredPod};

use super::events::Recorder;
use super::paths::Paths;
use crate::clock::{boot_ms, now_rfc3339, start_ticks, unix_secs};
use crate::fsutil::{read_json, write_atomic, write_replace};
use crate::image::{ImageStore, RootfsPlan};
use crate::reconcile::{Action, ImageState, ObservedPod, ObservedState, SandboxState};
use crate::runtime::sandbox::SandboxInfo;
use crate::runtime::shim::{Launch, RootfsSource, Running, EXITED_FILE, RUNNING_FILE};
use crate::runtime::spec::{self, ImageFacts, Namespaces, SpecInput};
use crate::runtime::volumes::{self, PodVolumes, VolumeError};

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

/// What a finished pull reports: the image, the fingerprint of the credentials it used, and
/// the outcome.
pub type PullResult = (String, String, Result<(), String>);

/// Pulls in progress, one per image reference and set of credentials, each on its own thread.
#[derive(Default)]
pub struct Pulls {
    #[allow(clippy::type_complexity)]
    inflight: std::sync::Mutex<
        std::collections::BTreeMap<(String, String), std::thread::JoinHandle<Result<(), String>>>,
    >,
    pub config: crate::image::pull::PullConfig,
    /// Told when a pull ends, so the loop does not wait for its next round.
    wake: Option<std::sync::mpsc::Sender<()>>,
}

impl Pulls {
    pub fn new(config: crate::image::pull::PullConfig, wake: Option<std::sync::mpsc::Sender<()>>) -> Self {
        Pulls { inflight: Default::default(), config, wake }
    }

    /// Starts a pull of `image` with `cfg` unless one with the same credentials is running.
    /// Returns whether it started one.
    fn start(
        &self,
        store: &std::sync::Arc<ImageStore>,
        image: &str,
        cfg: crate::image::pull::PullConfig,
    ) -> bool {
        let Ok(mut map) = self.inflight.lock() else { return false };
        let key = (image.to_string(), cfg.fingerprint(image));
        if map.contains_key(&key) {
            return false;
        }
        let (store, image_s) = (store.clone(), image.to_string());
        let wake = self.wake.clone();
        tracing::info!(image, "pulling");
        let handle = std::thread::spawn(move || {
            let result = pull_and_unpack(&store, &image_s, &cfg);
            if let Some(w) = wake {
                let _ = w.send(());
            }
            result
        });
        map.insert(key, handle);
        true
    }

    /// Whether no pull is running.
    pub fn idle(&self) -> bool {
        self.inflight.lock().map(|m| m.is_empty()).unwrap_or(false)
    }

    /// Takes the results of finished pulls.
    pub fn finished(&self) -> Vec<PullResult> {
        let Ok(mut map) = self.inflight.lock() else { return Vec::new() };
        let done: Vec<(String, String)> =
            map.iter().filter(|(_, h)| h.is_finished()).map(|(k, _)| k.clone()).collect();
        done.into_iter()
            .filter_map(|k| {
                let h = map.remove(&k)?;
                let result = h.join().unwrap_or_else(|_| Err("the pull thread panicked".into()));
                Some((k.0, k.1, result))
            })
            .collect()
    }
}

/// Pulls `image`, then unpacks it here, off the agent's loop, so starting the container does
/// not wait for it.
fn pull_and_unpack(
    store: &ImageStore,
    image: &str,
    cfg: &crate::image::pull::PullConfig,
) -> Result<(), String> {
    let platform = crate::image::Platform::host().map_err(|e| e.to_string())?;
    let record =
        crate::image::pull::pull(store, image, &platform, cfg, unix_secs()).map_err(|e| e.to_string())?;
    store.unpack(&record).map(|_| ()).map_err(|e| format!("unpacking {image}: {e}"))
}

fn find_container<'p>(spec: &'p PodSpec, name: &str) -> Option<&'p Container> {
    spec.all_containers().find(|c| c.name == name)
}

impl Executor<'_> {
    /// Performs one action for `pod` (None when the pod is no longer desired).
    /// `config_maps` and `secrets` are those the pods may use (volumes, env, imagePullSecrets).
    pub fn perform(
        &self,
        action: &Action,
        desired: Option<&DesiredPod>,
        obs: &mut ObservedPod,
        wanted: &super::Desired,
    ) {
        let secrets = &wanted.secrets;
        let pod_ref = format!("{}/{}", obs.namespace, obs.name);
        let event = |warning: bool, reason: &str, container: &str, message: String| {
            self.events.borrow_mut().record(warning, reason, &pod_ref, container, message)
        };
        match action {
            Action::CreateSandbox { uid } => {
                obs.sandbox = match self.create_sandbox(uid, desired) {
                    Ok(()) => {
                        if let Some(d) = desired {
                            rerun_init_containers(d, obs);
                        }
                        SandboxState::Ready
                    }
                    Err(e) => {
                        let attempts = match &obs.sandbox {
                            SandboxState::Failed { attempts, .. } => attempts + 1,
                            _ => 1,
                        };
                        tracing::warn!(pod = %obs.name, error = %format!("{e:#}"), "sandbox creation failed");
                        SandboxState::Failed { message: format!("{e:#}"), since_ms: boot_ms(), attempts }
                    }
                };
                if let Some(d) = desired {
                    obs.grace_period_secs = d.spec.termination_grace_period_seconds;
                    obs.start_wall.get_or_insert_with(now_rfc3339);
                }
            }
            Action::PullImage { container, image, policy, .. } => {
                let present = matches!(self.images.resolve(image), Ok(Some(_)));
                let rec = obs.containers.entry(container.clone()).or_default();
                if present && *policy != PullPolicy::Always {
                    rec.image = ImageState::Pulled;
                } else if *policy == PullPolicy::Never {
                    let attempts = match &rec.image {
                        ImageState::PullFailed { attempts, .. } => attempts + 1,
                        _ => 1,
                    };
                    event(
                        true,
                        "ErrImageNeverPull",
                        container,
                        format!("Container image {image:?} is not present with pull policy of Never"),
                    );
                    rec.image = ImageState::PullFailed {
                        message: format!("image {image:?} is not present with pull policy of Never"),
                        since_ms: boot_ms(),
                        attempts,
                    };
                } else {
                    // Runs on its own thread; `finish_pulls` records the outcome.
                    let (cfg, missing) = match desired {
                        Some(d) => self.pulls.config.for_pod(&d.spec, d.metadata.namespace(), secrets),
                        None => (self.pulls.config.clone(), Vec::new()),
                    };
                    if !missing.is_empty() {
                        tracing::warn!(pod = %obs.name, secrets = ?missing, "unable to retrieve some image pull secrets; attempting to pull the image may not succeed");
                    }
                    if self.pulls.start(self.images, image, cfg) {
                        event(false, "Pulling", container, format!("Pulling image {image:?}"));
                    }
                    rec.image = ImageState::Pulling;
                }
            }
            Action::StartContainer { uid, container, backoff_step, .. } => {
                let Some(d) = desired else { return };
                let had_run = {
                    let rec = obs.containers.entry(container.clone()).or_default();
                    rec.last_termination.is_some()
                };
                let started = self.start_container(uid, d, container, wanted);
                let rec = obs.containers.entry(container.clone()).or_default();
                // A new run: its probes start over.
                rec.started = false;
                rec.ready = false;
                if let Ok(digest) = &started {
                    rec.image_digest = Some(digest.to_string());
                }
                rec.backoff_step = *backoff_step;
                if rec.image == ImageState::Pulled {
                    rec.image = ImageState::Present;
                }
                if had_run {
                    rec.restart_count += 1;
                }
                rec.state = match started {
                    Ok(_) => {
                        event(false, "Started", container, format!("Started container {container}"));
                        ObservedState::Creating { since_ms: boot_ms() }
                    }
                    Err(e) => {
                        let attempts = match &rec.state {
                            ObservedState::CreateFailed { attempts, .. } => attempts + 1,
                            _ => 1,
                        };
                        let config = is_config_error(&e);
                        let message = format!("{e:#}");
                        event(true, "Failed", container, format!("Error: {message}"));
                        ObservedState::CreateFailed { message, since_ms: boot_ms(), attempts, config }
                    }
                };
            }
            Action::StopContainer { uid, container, grace_secs } => {
                if self.stop_container(uid, container, *grace_secs) {
                    event(false, "Killing", container, format!("Stopping container {container}"));
                }
            }
            Action::RemoveContainer { uid, container } => {
                let dir = self.paths.container(uid, container);
                remove_container_dir(&dir);
                remove_bundle(&self.paths.bundle(uid, container));
                if let Some(rec) = obs.containers.get_mut(container) {
                    if let ObservedState::Exited(t) = std::mem::take(&mut rec.state) {
                        rec.last_termination = Some(t);
                    }
                    rec.state = ObservedState::NotCreated;
                }
            }
            Action::KillPod { uid, grace_secs } => {
                obs.deleting = true;
                for name in obs.containers.keys() {
                    if self.stop_container(uid, name, *grace_secs) {
                        event(false, "Killing", name, format!("Stopping container {name}"));
                    }
                }
            }
            Action::RemovePod { uid } => {
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

    /// Starts a container's shim; returns the manifest digest of the image it runs.
    fn start_container(
        &self,
        uid: &str,
        d: &DesiredPod,
        name: &str,
        wanted: &super::Desired,
    ) -> anyhow::Result<crate::image::Digest> {
        let (config_maps, secrets) = (&wanted.config_maps, &wanted.secrets);
        let c =
            find_container(&d.spec, name).with_context(|| format!("the pod has no container {name:?}"))?;
        let image_ref = c.image.as_deref().context("the container has no image")?;
        let record = self
            .images
            .resolve(image_ref)
            .context("looking up the image")?
            .with_context(|| format!("image {image_ref:?} is not in the local store"))?;
        // The image's last use orders image GC (least recently used first, by days, not
        // seconds): recorded at most once an hour, since each record rewrites the index.
        if unix_secs().saturating_sub(record.last_used) >= 3600 {
            let _ = self.images.touch(&record.manifest, unix_secs());
        }
        let layers = self.images.unpack(&record).context("unpacking the image")?;
        let facts =
            ImageFacts::from(&self.images.runtime_config(&record).context("reading the image config")?);
        let dir = self.paths.container(uid, name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        let rootfs = match crate::image::plan_rootfs(&layers, true, &upper, &work)? {
            RootfsPlan::Overlay { .. } => {
                RootfsSource::Overlay { lower: layers.iter().map(|l| l.fs.clone()).collect(), upper, work }
            }
            RootfsPlan::Copy { .. } => {
                let copy = dir.join("rootfs-copy");
                crate::image::copy_layers(&layers, &copy, &crate::image::UnpackOptions::for_current_user())?;
                RootfsSource::Bind { path: copy }
            }
        };
        // The image's /etc/passwd and /etc/group, for named users.
        let etc = |f: &str| {
            layers
                .iter()
                .rev()
                .find_map(|l| std::fs::read_to_string(l.fs.join("etc").join(f)).ok())
                .unwrap_or_default()
        };
        let user = spec::resolve_user(c, &d.spec, &facts, &etc("passwd"), &etc("group"))?;
        let non_root = c.security_context.as_ref().and_then(|s| s.run_as_non_root).or(d
            .spec
            .security_context
            .as_ref()
            .and_then(|s| s.run_as_non_root));
        if non_root == Some(true) && user.0 == 0 {
            return Err(ConfigError(format!(
                "container has runAsNonRoot and image will run as root (pod: \"{}_{}({uid})\", container: {name})",
                d.metadata.name(),
                d.metadata.namespace(),
            ))
            .into());
        }
        // Volumes (idempotent: a restart finds them ready), then this container's mounts.
        let prepared = PodVolumes::new(&self.paths.pod(uid)).prepare(
            &d.spec,
            d.metadata.namespace(),
            config_maps,
            secrets,
            &wanted.claims,
        )?;
        let mounts = volumes::mounts_for(c, &d.spec, &prepared)?;
        let psc = d.spec.security_context.as_ref();
        let mut additional_gids: Vec<u32> = psc
            .and_then(|s| s.fs_group)
            .into_iter()
            .chain(psc.and_then(|s| s.supplemental_groups.clone()).into_iter().flatten())
            .filter_map(|g| u32::try_from(g).ok())
            .filter(|g| *g != user.1)
            .collect();
        additional_gids.sort_unstable();
        additional_gids.dedup();
        let sandbox =
            read_json::<SandboxInfo>(&self.paths.sandbox_info(uid)).context("the pod's sandbox is gone")?;
        let namespaces = if sandbox.host_network {
            Namespaces::Host
        } else {
            Namespaces::Sandbox {
                net: sandbox.ns_path("net"),
                ipc: sandbox.ns_path("ipc"),
                uts: sandbox.ns_path("uts"),
            }
        };
        let env = resolve_env(c, d, &self.node_name, self.host_ip.as_deref(), config_maps, secrets)?;
        // The bundle (its config.json holds the environment, Secret values included) lives
        // under the run directory, in memory, never on the disk.
        let bundle = self.paths.bundle(uid, name);
        remove_bundle(&bundle);
        std::fs::create_dir_all(&bundle)?;
        let cgroups_path = format!("/flotilla/{uid}/{name}");
        let config = spec::build(&SpecInput {
            pod: &d.metadata,
            pod_spec: &d.spec,
            container: c,
            image: &facts,
            rootfs: bundle.join("rootfs"),
            cgroups_path: cgroups_path.clone(),
            namespaces,
            env,
            mounts,
            user,
            additional_gids,
            pids_limit: 4096,
            host_caps: spec::own_bounding_caps(),
            swap_accounting: spec::host_swap_accounting(),
        })?;
        write_atomic(&bundle.join("config.json"), &serde_json::to_vec_pretty(&config)?)?;
        let logs = self.log_dir(uid, name)?;
        let launch = Launch {
            id: container_id(uid, name),
            bundle,
            state_root: self.paths.runtime_root(),
            rootfs,
            log: logs.join("current.log"),
            log_max_bytes: self.paths.log_max_bytes(),
            status_dir: dir.join("status"),
            memory_cgroup: Some(PathBuf::from(format!("/sys/fs/cgroup/memory{cgroups_path}"))),
            allow_devices: c.security_context.as_ref().and_then(|s| s.privileged) == Some(true),
        };
        // What the shim reads once at its start, and its own stderr: both beside the bundle,
        // in the run directory.
        let launch_path = launch.bundle.join("launch.json");
        write_replace(&launch_path, &serde_json::to_vec(&launch)?)?;
        let shim_log = std::fs::File::create(launch.bundle.join("shim.log"))?;
        let child = Command::new(&self.agent_bin)
            .arg("shim")
            .arg(&launch_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(shim_log)
            .spawn()
            .context("starting the shim")?;
        // The shim outlives us if we restart; while we live, `reap_children` collects it.
        drop(child);
        Ok(record.manifest)
    }

    /// The container's log directory, created if needed. With logs in memory, the pod's `logs`
    /// directory is a symbolic link into the run directory's tmpfs (made when the pod's first
    /// container starts; after a reboot its target is made again). A pod whose logs were on
    /// the disk before the option was set keeps them there until it is replaced.
    fn log_dir(&self, uid: &str, name: &str) -> anyhow::Result<PathBuf> {
        let link = self.paths.pod(uid).join("logs");
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&link)?;
                std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
            }
            Ok(_) => {}
            Err(_) if self.paths.logs_in_memory.is_some() => {
                let target = self.paths.memory_logs(uid);
                std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
                std::os::unix::fs::symlink(&target, &link)
                    .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
            }
            Err(_) => {}
        }
        let logs = self.paths.logs(uid, name);
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        Ok(logs)
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

/// A new sandbox for a pod whose containers already ran (its old one was lost) is a restart of
/// the pod: its init containers run again, in order, as the kubelet does.
fn rerun_init_containers(d: &DesiredPod, obs: &mut ObservedPod) {
    for c in d.spec.init_containers.iter().flatten() {
        if let Some(rec) = obs.containers.get_mut(&c.name) {
            if let ObservedState::Exited(t) = std::mem::take(&mut rec.state) {
                rec.last_termination = Some(t);
                rec.restart_count += 1;
            }
        }
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

/// The libcontainer id of a container: unique per pod and container name.
pub fn container_id(uid: &str, name: &str) -> String {
    format!("{}-{name}", uid.get(..uid.len().min(40)).unwrap_or(uid))
}

/// The container's environment from the pod spec, as the kubelet builds it: `envFrom` first
/// (each key of the ConfigMap or Secret, with the prefix; keys that are not valid variable names
/// are skipped), then `env` in order (plain values, ConfigMap and Secret keys, fieldRefs), later
/// entries overriding earlier ones. A missing object or key fails the start with the kubelet's
/// message unless the reference is optional (then the variable is left out).
pub fn resolve_env(
    c: &Container,
    d: &DesiredPod,
    node: &str,
    host_ip: Option<&str>,
    config_maps: &[ConfigData],
    secrets: &[ConfigData],
) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = d.metadata.namespace();
    fn find<'p>(pool: &'p [ConfigData], ns: &str, name: &str) -> Option<&'p ConfigData> {
        pool.iter().find(|o| o.namespace == ns && o.name == name)
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |out: &mut Vec<(String, String)>, k: String, v: String| {
        out.retain(|(n, _)| *n != k);
        out.push((k, v));
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let (kind, r, pool) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), _) => ("configmap", r, config_maps),
            (None, Some(r)) => ("secret", r, secrets),
            (None, None) => continue,
        };
        let Some(obj) = find(pool, ns, &r.name) else {
            if r.optional == Some(true) {
                continue;
            }
            return Err(ConfigError(format!("{kind} {:?} not found", r.name)));
        };
        for (k, v) in &obj.data {
            let name = format!("{prefix}{k}");
            if valid_env_name(&name) {
                set(&mut out, name, text(&v.0));
            }
        }
    }
    for e in c.env.iter().flatten() {
        if let Some(v) = &e.value {
            set(&mut out, e.name.clone(), v.clone());
            continue;
        }
        let Some(src) = &e.value_from else {
            set(&mut out, e.name.clone(), String::new());
            continue;
        };
        if let Some(f) = &src.field_ref {
            let host_network = d.spec.host_network == Some(true);
            let label = |map: &Option<std::collections::BTreeMap<String, String>>, key: &str| {
                map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default()
            };
            let path = f.field_path.as_str();
            let v = match path {
                "metadata.name" => d.metadata.name().to_string(),
                "metadata.namespace" => ns.to_string(),
                "metadata.uid" => d.metadata.uid.clone().unwrap_or_default(),
                "spec.nodeName" => node.to_string(),
                "spec.serviceAccountName" => "default".to_string(),
                "status.hostIP" => host_ip.unwrap_or_default().to_string(),
                // Pods have only their loopback for now: a pod IP exists for host-network pods.
                "status.podIP" if host_network => host_ip.unwrap_or_default().to_string(),
                "status.podIP" => String::new(),
                _ => {
                    if let Some(k) = path.strip_prefix("metadata.labels['").and_then(|p| p.strip_suffix("']"))
                    {
                        label(&d.metadata.labels, k)
                    } else if let Some(k) =
                        path.strip_prefix("metadata.annotations['").and_then(|p| p.strip_suffix("']"))
                    {
                        label(&d.metadata.annotations, k)
                    } else {
                        return Err(ConfigError(format!("env {}: unsupported fieldPath {path:?}", e.name)));
                    }
                }
            };
            set(&mut out, e.name.clone(), v);
            continue;
        }
        let (kind, title, r, pool) = match (&src.config_map_key_ref, &src.secret_key_ref) {
            (Some(r), _) => ("configmap", "ConfigMap", r, config_maps),
            (None, Some(r)) => ("secret", "Secret", r, secrets),
            (None, None) => continue,
        };
        let optional = r.optional == Some(true);
        let Some(obj) = find(pool, ns, &r.name) else {
            if optional {
                continue;
            }
            return Err(ConfigError(format!("{kind} {:?} not found", r.name)));
        };
        match obj.data.get(&r.key) {
            Some(v) => set(&mut out, e.name.clone(), text(&v.0)),
            None if optional => {}
            None => {
                return Err(ConfigError(format!("couldn't find key {} in {title} {ns}/{}", r.key, r.name)));
            }
        }
    }
    Ok(out)
}

/// An environment variable name Kubernetes accepts (C identifiers, plus `.` and `-`).
fn valid_env_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value) -> DesiredPod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "apps", "uid": "u1", "labels": {"tier": "web"}},
            "spec": {"containers": containers}
        }))
        .unwrap()
    }

    fn cd(name: &str, pairs: &[(&str, &str)]) -> ConfigData {
        ConfigData {
            namespace: "apps".into(),
            name: name.into(),
            resource_version: "1".into(),
            data: pairs.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect(),
        }
    }

    #[test]
    fn env_comes_from_config_maps_secrets_and_fields() {
        let d = pod(json!([{"name": "c", "image": "x",
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "missing", "optional": true}}],
        "env": [
            {"name": "CFG_a", "value": "overridden"},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": true}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}
        ]}]));
        let cms = [cd("cfg", &[("a", "1"), ("mode", "fast"), ("9bad", "x")])];
        let secrets = [cd("db", &[("password", "s3cret")])];
        let env = resolve_env(&d.spec.containers[0], &d, "n1", Some("10.0.0.5"), &cms, &secrets).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CFG_a"), Some("overridden"));
        assert_eq!(get("CFG_mode"), Some("fast"));
        assert_eq!(get("CFG_9bad"), Some("x"), "the prefix makes it a valid name");
        assert_eq!(get("PASSWORD"), Some("s3cret"));
        assert_eq!(get("MODE"), Some("fast"));
        assert_eq!(get("GONE"), None, "an optional missing key leaves the variable out");
        assert_eq!(get("POD"), Some("p"));
        assert_eq!(get("TIER"), Some("web"));
        assert_eq!(get("HOST"), Some("10.0.0.5"));
    }

    #[test]
    fn missing_references_say_what_is_missing() {
        let one = |env: serde_json::Value| {
            let d = pod(json!([{"name": "c", "image": "x", "env": [env]}]));
            resolve_env(&d.spec.containers[0], &d, "n1", None, &[cd("cfg", &[])], &[])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            one(json!({"name": "A", "valueFrom": {"configMapKeyRef": {"name": "other", "key": "k"}}})),
            "configmap \"other\" not found"
        );
        assert_eq!(
            one(json!({"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}})),
            "couldn't find key k in ConfigMap apps/cfg"
        );
        assert_eq!(
            one(json!({"name": "A", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}})),
            "secret \"db\" not found"
        );
    }
}
