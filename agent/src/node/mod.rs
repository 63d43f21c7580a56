//! The node agent's loop: desired pods in (today from a directory of manifests, like the
//! kubelet's static pods; later from the hub), the runtime's real state observed from the
//! files shims and sandboxes keep, the pure reconcile core deciding, the executor acting, and
//! the observed state recorded in the run directory (only when it changes) so a restarted agent
//! adopts what runs.

pub mod desired;
pub mod events;
pub mod exec;
pub mod gc;
pub mod hub;
pub mod hub_logs;
pub mod info;
pub mod logs;
pub mod paths;
pub mod prober;
pub mod records;
pub mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use flotilla_shared::api::{Object, PodStatus};
use flotilla_shared::manifest::load_paths;
use flotilla_shared::volume_binding;
use flotilla_shared::wire::{ClaimVolume, ConfigData, DesiredPod};

use crate::clock::{boot_ms, now_rfc3339, start_ticks};
use crate::fsutil::read_json;
use crate::image::ImageStore;
use crate::reconcile::{self, Observed, ObservedPod, ObservedState, SandboxState, Termination};
use crate::runtime::sandbox::SandboxInfo;
use crate::runtime::shim::{Exited, Running, EXITED_FILE, RUNNING_FILE};
use exec::Executor;
use paths::Paths;

/// What `ps` shows: the statuses of the last reconcile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusFile {
    pub pods: Vec<PodEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodEntry {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub status: PodStatus,
    /// No longer desired; its containers are being stopped.
    #[serde(default)]
    pub terminating: bool,
}

/// What the agent is asked to run: pods, and the ConfigMaps and Secrets they may use (from a
/// manifest directory, or later from the hub's snapshot).
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub pods: Vec<DesiredPod>,
    pub config_maps: Vec<ConfigData>,
    pub secrets: Vec<ConfigData>,
    /// The bound PersistentVolumeClaims the pods may mount.
    pub claims: Vec<ClaimVolume>,
}

/// Reads a directory of manifests. A static pod's uid is derived from its namespace, name
/// and spec, so editing a manifest replaces the pod, as the kubelet does. ConfigMaps and
/// Secrets in the directory serve the pods (a resource version derived from their content);
/// PersistentVolumeClaims bind to the directory's PersistentVolumes that may be used on this
/// node (`node`, `labels`). Other kinds are ignored. Returns the load errors too.
pub fn static_manifests(dir: &Path, node: &str, labels: &BTreeMap<String, String>) -> (Desired, Vec<String>) {
    let loaded = load_paths(&[dir.to_path_buf()]);
    let mut errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
    let mut desired = Desired::default();
    let (mut volumes, mut claims) = (Vec::new(), Vec::new());
    let content_version = |json: Vec<u8>| format!("{:x}", Sha256::digest(json))[..16].to_string();
    for l in loaded.objects {
        match l.object {
            Object::Pod(p) => {
                let mut meta = p.metadata;
                default_namespace(&mut meta);
                let spec_json = serde_json::to_vec(&p.spec).unwrap_or_default();
                let mut h = Sha256::new();
                h.update(meta.namespace().as_bytes());
                h.update([0]);
                h.update(meta.name().as_bytes());
                h.update([0]);
                h.update(&spec_json);
                let digest = format!("{:x}", h.finalize());
                meta.uid = Some(format!("static-{}", &digest[..24]));
                desired.pods.push(DesiredPod { metadata: meta, spec: p.spec });
            }
            Object::ConfigMap(mut cm) => {
                default_namespace(&mut cm.metadata);
                desired.config_maps.push(ConfigData::from_config_map(
                    &cm,
                    &content_version(serde_json::to_vec(&cm).unwrap_or_default()),
                ));
            }
            Object::Secret(mut s) => {
                default_namespace(&mut s.metadata);
                desired.secrets.push(ConfigData::from_secret(
                    &s,
                    &content_version(serde_json::to_vec(&s).unwrap_or_default()),
                ));
            }
            Object::PersistentVolume(v) => volumes.push(v),
            Object::PersistentVolumeClaim(mut c) => {
                default_namespace(&mut c.metadata);
                claims.push(c);
            }
            _ => {}
        }
    }
    let bindings = volume_binding::bind(&volumes, &claims);
    for c in &claims {
        let (ns, name) = (c.metadata.namespace(), c.metadata.name());
        let Some(v) = bindings.get(&(ns.to_string(), name.to_string())) else {
            errors.push(format!(
                "PersistentVolumeClaim {ns}/{name} is pending: {}",
                volume_binding::pending_reason(&volumes, c)
            ));
            continue;
        };
        let Some(volume) = volumes.iter().find(|x| x.metadata.name() == v) else { continue };
        if !volume_binding::fits_node(volume, node, labels) {
            errors.push(format!(
                "PersistentVolume {v} (bound to {ns}/{name}) cannot be used on node {node}: volume node affinity conflict"
            ));
            continue;
        }
        let Some(host_path) = volume_binding::host_source(volume) else {
            errors.push(format!(
                "PersistentVolume {v} (bound to {ns}/{name}) is neither a local nor a hostPath volume"
            ));
            continue;
        };
        desired.claims.push(ClaimVolume {
            namespace: ns.to_string(),
            claim: name.to_string(),
            volume: v.clone(),
            host_path,
        });
    }
    (desired, errors)
}

fn default_namespace(meta: &mut flotilla_shared::api::ObjectMeta) {
    if meta.namespace.as_deref().unwrap_or_default().is_empty() {
        meta.namespace = Some("default".into());
    }
}

/// Refreshes the observed state of running and starting containers from the shims' files,
/// and of sandboxes from their holders.
pub fn observe(paths: &Paths, observed: &mut Observed) {
    let now = boot_ms();
    for (uid, pod) in observed.pods.iter_mut() {
        if pod.sandbox == SandboxState::Ready {
            let alive = read_json::<SandboxInfo>(&paths.sandbox_info(uid)).is_some_and(|s| s.alive());
            if !alive {
                pod.sandbox = SandboxState::Absent;
            }
        }
        for (name, rec) in pod.containers.iter_mut() {
            let status = paths.container(uid, name).join("status");
            match &rec.state {
                ObservedState::Creating { .. } | ObservedState::Running { .. } => {}
                _ => continue,
            }
            if let Some(ex) = read_json::<Exited>(&status.join(EXITED_FILE)) {
                let started_ms = match rec.state {
                    ObservedState::Running { started_ms, .. } => started_ms,
                    _ => now,
                };
                rec.state = ObservedState::Exited(Termination {
                    exit_code: ex.exit_code,
                    signal: ex.signal,
                    oom_killed: ex.oom_killed,
                    error: ex.error,
                    started_wall: ex.started_at,
                    finished_wall: ex.finished_at,
                    finished_ms: now,
                    ran_ms: now.saturating_sub(started_ms),
                });
                continue;
            }
            match read_json::<Running>(&status.join(RUNNING_FILE)) {
                Some(r) if start_ticks(r.pid) == Some(r.start_ticks) => {
                    if matches!(rec.state, ObservedState::Creating { .. }) {
                        rec.state = ObservedState::Running { started_ms: now, started_wall: r.started_at };
                    }
                }
                Some(r) if shim_alive(r.shim_pid) => {
                    // The process has ended and its shim is still writing the exit down.
                }
                Some(r) => {
                    // The process is gone and no shim recorded its end: the node rebooted or
                    // the shim was killed. Report it as lost.
                    rec.state = ObservedState::Exited(Termination {
                        exit_code: 255,
                        signal: None,
                        oom_killed: false,
                        error: Some(
                            "the container's process disappeared (node restart or shim killed)".into(),
                        ),
                        started_wall: r.started_at,
                        finished_wall: now_rfc3339(),
                        finished_ms: now,
                        ran_ms: 0,
                    });
                }
                None => {
                    if let ObservedState::Creating { since_ms } = rec.state {
                        if now.saturating_sub(since_ms) > 60_000 {
                            rec.state = ObservedState::Exited(Termination {
                                exit_code: 128,
                                error: Some("the shim did not start the container within 60 s".into()),
                                finished_wall: now_rfc3339(),
                                finished_ms: now,
                                ..Default::default()
                            });
                        }
                    }
                }
            }
        }
        if pod.deleting
            && pod
                .containers
                .values()
                .all(|c| !matches!(c.state, ObservedState::Running { .. } | ObservedState::Creating { .. }))
        {
            pod.deleting = false;
        }
    }
}

/// Monotonic times persisted before a reboot are larger than any time after it (the boot clock
/// restarts at zero): clamp them to now, so back-offs do not last as long as the old uptime.
pub fn clamp_times(observed: &mut Observed, now: u64) {
    let c = |t: &mut u64| *t = (*t).min(now);
    for pod in observed.pods.values_mut() {
        if let SandboxState::Failed { since_ms, .. } = &mut pod.sandbox {
            c(since_ms);
        }
        for rec in pod.containers.values_mut() {
            match &mut rec.state {
                ObservedState::Creating { since_ms } | ObservedState::CreateFailed { since_ms, .. } => {
                    c(since_ms)
                }
                ObservedState::Running { started_ms, .. } => c(started_ms),
                ObservedState::Exited(t) => c(&mut t.finished_ms),
                ObservedState::NotCreated => {}
            }
            if let Some(t) = &mut rec.last_termination {
                c(&mut t.finished_ms);
            }
            if let reconcile::ImageState::PullFailed { since_ms, .. } = &mut rec.image {
                c(since_ms);
            }
        }
    }
}

/// Whether `pid` is (still) a flotilla shim.
fn shim_alive(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|arg| arg == b"shim") && !zombie(pid))
        .unwrap_or(false)
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// Collects exited children (shims and sandboxes we started) so they do not linger as zombies.
fn reap_children() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(s) = waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if s == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Options of `flotilla-agent run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Static pods (and the ConfigMaps/Secrets they use), if any.
    pub manifests: Option<PathBuf>,
    /// The hub to take this node's desired state from, if any.
    pub hub: Option<flotilla_link::AgentConfig>,
    pub paths: Paths,
    pub node_name: String,
    /// Stop after this many reconcile rounds (tests); `None` runs until SIGTERM.
    pub max_rounds: Option<u64>,
    pub pull: crate::image::pull::PullConfig,
    pub image_gc: gc::ImageGcPolicy,
}

/// How often the image store's disk usage is checked.
const IMAGE_GC_PERIOD_MS: u64 = 60_000;

/// Image GC while no pull runs (a pull's blobs are not in the index until it ends), keeping
/// every image a desired pod names or a container record was started from.
fn image_gc(images: &ImageStore, policy: gc::ImageGcPolicy, desired: &[DesiredPod], observed: &Observed) {
    let mut in_use: Vec<crate::image::Digest> = observed
        .pods
        .values()
        .flat_map(|p| p.containers.values())
        .filter_map(|c| c.image_digest.as_deref()?.parse().ok())
        .collect();
    for d in desired {
        for c in d.spec.all_containers() {
            if let Some(Ok(Some(r))) = c.image.as_deref().map(|i| images.resolve(i)) {
                in_use.push(r.manifest);
            }
        }
    }
    match gc::collect(images, policy, &in_use) {
        Ok(r) if !r.images.is_empty() => {
            tracing::info!(images = r.images.len(), tags = ?r.tags, "image GC deleted unused images")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "image GC failed"),
    }
}

/// Records finished pulls on every container of `desired` waiting for that image whose pod
/// pulls with the same credentials.
fn finish_pulls(
    pulls: &exec::Pulls,
    observed: &mut Observed,
    desired: &[DesiredPod],
    secrets: &[ConfigData],
    events: &std::cell::RefCell<events::Recorder>,
) {
    for (image, fingerprint, result) in pulls.finished() {
        match &result {
            Ok(()) => tracing::info!(image, "pulled"),
            Err(e) => tracing::warn!(image, error = %e, "pull failed"),
        }
        for d in desired {
            let Some(pod) = d.metadata.uid.as_deref().and_then(|u| observed.pods.get_mut(u)) else {
                continue;
            };
            if pulls.config.for_pod(&d.spec, d.metadata.namespace(), secrets).0.fingerprint(&image)
                != fingerprint
            {
                continue;
            }
            for c in d.spec.all_containers().filter(|c| c.image.as_deref() == Some(image.as_str())) {
                let Some(rec) = pod.containers.get_mut(&c.name) else { continue };
                if rec.image != reconcile::ImageState::Pulling {
                    continue;
                }
                let pod_ref = format!("{}/{}", d.metadata.namespace(), d.metadata.name());
                match &result {
                    Ok(()) => events.borrow_mut().record(
                        false,
                        "Pulled",
                        &pod_ref,
                        &c.name,
                        format!("Successfully pulled image {image:?}"),
                    ),
                    Err(e) => events.borrow_mut().record(
                        true,
                        "Failed",
                        &pod_ref,
                        &c.name,
                        format!("Failed to pull image {image:?}: {e}"),
                    ),
                }
                rec.image = match &result {
                    Ok(()) => reconcile::ImageState::Pulled,
                    Err(e) => reconcile::ImageState::PullFailed {
                        message: e.clone(),
                        since_ms: boot_ms(),
                        attempts: 1,
                    },
                };
            }
        }
    }
}

/// The agent's main loop over a manifest directory.
pub fn run(opts: RunOptions) -> anyhow::Result<()> {
    let paths = &opts.paths;
    std::fs::create_dir_all(&paths.state)?;
    std::fs::create_dir_all(&paths.run)?;
    records::prepare(paths)?;
    let images = std::sync::Arc::new(ImageStore::open(&paths.images()).context("opening the image store")?);
    let agent_bin = std::env::current_exe().context("finding the agent binary")?;
    // Anything that should end the loop's wait early: manifest changes, finished pulls, signals.
    let (wake_tx, wake_rx) = std::sync::mpsc::channel::<()>();
    if let Some(dir) = &opts.manifests {
        if let Err(e) = watch::watch_manifests(dir, wake_tx.clone()) {
            tracing::warn!(error = %format!("{e:#}"), "cannot watch the manifest directory; polling it");
        }
    }
    let hub = match &opts.hub {
        Some(cfg) => Some(hub::start(
            cfg.clone(),
            paths.state.clone(),
            desired::SnapshotFiles::new(paths.state.join("desired.cbor"), paths.run.join("secrets.cbor")),
            wake_tx.clone(),
        )?),
        None => None,
    };
    let mut reporter = Reporter::new(&opts.node_name, paths.state.clone());
    // The observed state and the statuses, written when they change.
    let mut records = records::Records::default();
    let pulls = exec::Pulls::new(opts.pull.clone(), Some(wake_tx.clone()));
    let facts = info::gather(&opts.node_name);
    let host_ip = facts.addresses.first().cloned();
    let mut prober = prober::Prober::new(paths.clone(), agent_bin.clone(), wake_tx.clone());
    let exec = Executor {
        paths,
        images: &images,
        agent_bin,
        node_name: opts.node_name.clone(),
        host_ip,
        pulls: &pulls,
        events: Default::default(),
    };
    let mut waiting_before = events::Waiting::new();
    let mut config_key_before: Option<Vec<(String, String, String)>> = None;
    let mut observed: Observed = records::load_observed(paths);
    clamp_times(&mut observed, boot_ms());
    // A pull that was running when the agent stopped is not running now: ask again.
    for rec in observed.pods.values_mut().flat_map(|p| p.containers.values_mut()) {
        if rec.image == reconcile::ImageState::Pulling {
            rec.image = reconcile::ImageState::Unknown;
        }
    }
    let term = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_flag(term.clone(), wake_tx.clone())?;
    let mut last_errors: Vec<String> = Vec::new();
    let mut rounds = 0u64;
    let mut last_gc_ms: Option<u64> = None;
    tracing::info!(manifests = ?opts.manifests, hub = ?opts.hub.as_ref().map(|h| &h.broker), state = %paths.state.display(), pods = observed.pods.len(), "flotilla-agent running");
    while !term.load(std::sync::atomic::Ordering::SeqCst) {
        reap_children();
        let (mut wanted, errors) = match &opts.manifests {
            Some(dir) => static_manifests(dir, &opts.node_name, &facts.labels),
            None => (Desired::default(), Vec::new()),
        };
        let snapshot = hub.as_ref().and_then(|h| h.snapshot());
        if let Some(s) = &snapshot {
            wanted.pods.extend(s.pods.iter().cloned());
            wanted.config_maps.extend(s.config_maps.iter().cloned());
            wanted.secrets.extend(s.secrets.iter().cloned());
            wanted.claims.extend(s.claims.iter().cloned());
        }
        let desired = &wanted.pods;
        // Pods left on the device from before a reboot, once the desired state is known.
        if (hub.is_none() || snapshot.is_some())
            && last_gc_ms.is_none_or(|t| boot_ms().saturating_sub(t) >= IMAGE_GC_PERIOD_MS)
        {
            let uids: Vec<&str> = desired.iter().filter_map(|d| d.metadata.uid.as_deref()).collect();
            records::adopt_orphans(paths, &mut observed, &uids);
        }
        if errors != last_errors {
            for e in &errors {
                tracing::warn!("{e}");
            }
            last_errors = errors;
        }
        observe(paths, &mut observed);
        finish_pulls(&pulls, &mut observed, desired, &wanted.secrets, &exec.events);
        for f in prober.sync(desired, &mut observed) {
            act_on_probe(&exec, &observed, f);
        }
        refresh_projected_volumes(paths, &wanted, &observed, &mut config_key_before);
        let plan = reconcile::reconcile(desired, &observed, boot_ms(), &now_rfc3339());
        let by_uid: BTreeMap<&str, &DesiredPod> =
            desired.iter().filter_map(|d| d.metadata.uid.as_deref().map(|u| (u, d))).collect();
        for action in &plan.actions {
            let uid = action_uid(action).to_string();
            let d = by_uid.get(uid.as_str()).copied();
            let obs = observed.pods.entry(uid.clone()).or_insert_with(|| ObservedPod {
                namespace: d.map(|d| d.metadata.namespace().to_string()).unwrap_or_default(),
                name: d.map(|d| d.metadata.name().to_string()).unwrap_or_default(),
                uid: uid.clone(),
                ..Default::default()
            });
            tracing::debug!(?action, "performing");
            exec.perform(action, d, obs, &wanted);
            if matches!(action, reconcile::Action::RemovePod { .. }) {
                observed.pods.remove(&uid);
            }
        }
        prober.launch(desired, &observed, boot_ms());
        records.write(&paths.observed(), &observed);
        if last_gc_ms.is_none_or(|t| boot_ms().saturating_sub(t) >= IMAGE_GC_PERIOD_MS) && pulls.idle() {
            image_gc(&images, opts.image_gc, desired, &observed);
            last_gc_ms = Some(boot_ms());
        }
        let status = StatusFile {
            pods: plan
                .statuses
                .iter()
                .filter_map(|(uid, st)| {
                    let d = by_uid.get(uid.as_str())?;
                    Some(PodEntry {
                        namespace: d.metadata.namespace().to_string(),
                        name: d.metadata.name().to_string(),
                        uid: uid.clone(),
                        status: st.clone(),
                        terminating: false,
                    })
                })
                .chain(observed.pods.values().filter(|p| !by_uid.contains_key(p.uid.as_str())).map(|p| {
                    PodEntry {
                        namespace: p.namespace.clone(),
                        name: p.name.clone(),
                        uid: p.uid.clone(),
                        status: PodStatus {
                            container_statuses: Some(
                                p.containers
                                    .keys()
                                    .map(|n| flotilla_shared::api::ContainerStatus {
                                        name: n.clone(),
                                        ..Default::default()
                                    })
                                    .collect(),
                            ),
                            ..Default::default()
                        },
                        terminating: true,
                    }
                }))
                .collect(),
        };
        records.write(&paths.statuses(), &status);
        let waiting_now = events::waiting_reasons(plan.statuses.iter().filter_map(|(uid, st)| {
            let d = by_uid.get(uid.as_str())?;
            Some((format!("{}/{}", d.metadata.namespace(), d.metadata.name()), st))
        }));
        for (pod, container, message) in events::backoff_events(&waiting_before, &waiting_now) {
            exec.events.borrow_mut().record(true, "BackOff", &pod, &container, message);
        }
        waiting_before = waiting_now;
        let round_events = exec.events.borrow_mut().take();
        if let Some(link) = &hub {
            reporter.report(link, snapshot.as_ref(), &plan.statuses);
            link.send_events(round_events);
        }
        rounds += 1;
        // systemd (Type=notify): ready once the first round has adopted and started what it
        // must; then a watchdog ping per round, so a stuck loop gets the agent restarted (its
        // containers keep running: KillMode=process).
        if rounds == 1 {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        if opts.max_rounds.is_some_and(|m| rounds >= m) {
            break;
        }
        let wait = if plan.actions.is_empty() { 500 } else { 50 };
        let wait = plan.wake_at_ms.map_or(wait, |w| w.saturating_sub(boot_ms()).clamp(10, wait));
        let wait = prober.next_due_ms().map_or(wait, |w| w.saturating_sub(boot_ms()).clamp(10, wait));
        if wake_rx.recv_timeout(Duration::from_millis(wait)).is_ok() {
            // Let a burst of events (a file being written, an editor's rename dance) settle.
            std::thread::sleep(Duration::from_millis(20));
            while wake_rx.try_recv().is_ok() {}
        }
    }
    tracing::info!("flotilla-agent stopping; containers keep running");
    Ok(())
}

/// A probe's finding: an `Unhealthy` event, and for a failed liveness or startup probe the
/// container is stopped (its restart policy then applies, with back-off), as the kubelet does.
fn act_on_probe(exec: &Executor, observed: &Observed, f: prober::Finding) {
    let pod_ref =
        |uid: &str| observed.pods.get(uid).map(|p| format!("{}/{}", p.namespace, p.name)).unwrap_or_default();
    match f {
        prober::Finding::Unhealthy { uid, container, kind, message } => exec.events.borrow_mut().record(
            true,
            "Unhealthy",
            &pod_ref(&uid),
            &container,
            format!("{} probe failed: {message}", kind.title()),
        ),
        prober::Finding::Kill { uid, container, kind, grace_secs } => {
            exec.events.borrow_mut().record(
                false,
                "Killing",
                &pod_ref(&uid),
                &container,
                format!(
                    "Container {container} failed {} probe, will be restarted",
                    kind.title().to_lowercase()
                ),
            );
            exec.stop_container(&uid, &container, grace_secs);
        }
    }
}

/// Rewrites the ConfigMap and Secret volumes of the pods that run, when the node's ConfigMaps
/// or Secrets changed (their resource versions are compared, not their content).
fn refresh_projected_volumes(
    paths: &Paths,
    wanted: &Desired,
    observed: &Observed,
    before: &mut Option<Vec<(String, String, String)>>,
) {
    let key: Vec<(String, String, String)> = wanted
        .config_maps
        .iter()
        .chain(wanted.secrets.iter())
        .map(|c| (c.namespace.clone(), c.name.clone(), c.resource_version.clone()))
        .collect();
    if before.as_ref() == Some(&key) {
        return;
    }
    for d in &wanted.pods {
        let Some(uid) = d.metadata.uid.as_deref() else { continue };
        if observed.pods.get(uid).is_none_or(|p| p.sandbox != SandboxState::Ready) {
            continue;
        }
        let vols = crate::runtime::volumes::PodVolumes::new(&paths.pod(uid));
        for v in vols.refresh(&d.spec, d.metadata.namespace(), &wanted.config_maps, &wanted.secrets) {
            tracing::info!(pod = d.metadata.name(), volume = v, "projected volume updated");
        }
    }
    *before = Some(key);
}

/// Builds status reports for the hub: sent when anything in them changed, and at least every
/// 5 minutes (heartbeats keep the node Ready in between).
struct Reporter {
    info: flotilla_shared::wire::NodeInfo,
    info_at: std::time::Instant,
    /// The state directory, whose filesystem's free space is the DiskPressure condition.
    state_dir: PathBuf,
    /// What the last report said: generation, pods, disk pressure.
    last: Option<(u64, Vec<flotilla_shared::wire::PodReport>, bool)>,
    sent_at: std::time::Instant,
}

impl Reporter {
    fn new(node: &str, state_dir: PathBuf) -> Self {
        Reporter {
            info: info::gather(node),
            info_at: std::time::Instant::now(),
            state_dir,
            last: None,
            sent_at: std::time::Instant::now(),
        }
    }

    fn report(
        &mut self,
        link: &hub::HubLink,
        snap: Option<&flotilla_shared::wire::DesiredSnapshot>,
        statuses: &[(String, PodStatus)],
    ) {
        // Before the first snapshot: an empty report, which registers the node with the hub.
        let generation = snap.map_or(0, |s| s.generation);
        if self.info_at.elapsed() > Duration::from_secs(300) {
            self.info = info::gather(&link.node);
            self.info_at = std::time::Instant::now();
        }
        let pods: Vec<flotilla_shared::wire::PodReport> = snap
            .iter()
            .flat_map(|s| s.pods.iter())
            .filter_map(|p| {
                let uid = p.metadata.uid.as_deref()?;
                let status = statuses.iter().find(|(u, _)| u == uid)?.1.clone();
                Some(flotilla_shared::wire::PodReport {
                    namespace: p.metadata.namespace().to_string(),
                    name: p.metadata.name().to_string(),
                    uid: uid.to_string(),
                    status,
                })
            })
            .collect();
        let disk = gc::disk_condition(&self.state_dir);
        let unchanged =
            self.last.as_ref().is_some_and(|(g, p, d)| *g == generation && *p == pods && *d == disk.status);
        // Unchanged: heartbeats (every 10 s) say the node lives; a full report only every 5
        // minutes, like the kubelet's nodeStatusReportFrequency.
        if unchanged && self.sent_at.elapsed() < Duration::from_secs(300) {
            return;
        }
        let report = flotilla_shared::wire::StatusReport {
            node: link.node.clone(),
            // Stamped by the link when it publishes (`hub::Counter`).
            seq: 0,
            epoch: 0,
            observed_generation: generation,
            time_ms: crate::clock::unix_ms(),
            info: self.info.clone(),
            conditions: vec![
                flotilla_shared::wire::NodeCondition {
                    kind: "Ready".into(),
                    status: true,
                    reason: "AgentReady".into(),
                    message: "flotilla-agent is running".into(),
                    since_ms: 0,
                },
                disk.clone(),
            ],
            pods: pods.clone(),
        };
        link.send_status(report);
        self.last = Some((generation, pods, disk.status));
        self.sent_at = std::time::Instant::now();
    }
}

fn action_uid(a: &reconcile::Action) -> &str {
    use reconcile::Action::*;
    match a {
        CreateSandbox { uid }
        | PullImage { uid, .. }
        | StartContainer { uid, .. }
        | StopContainer { uid, .. }
        | RemoveContainer { uid, .. }
        | KillPod { uid, .. }
        | RemovePod { uid } => uid,
    }
}

/// Sets `flag` on SIGTERM or SIGINT: the signals are blocked and a watcher thread waits for
/// them, so no (unsafe) signal handler is needed. Children get a clean mask from `Command`.
fn signal_flag(
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    wake: std::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    std::thread::spawn(move || {
        if set.wait().is_ok() {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = wake.send(());
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::ContainerRecord;

    #[test]
    fn times_from_before_a_reboot_are_clamped() {
        let mut o = Observed::default();
        let mut pod = ObservedPod {
            sandbox: SandboxState::Failed { message: String::new(), since_ms: 9_000_000, attempts: 1 },
            ..Default::default()
        };
        pod.containers.insert(
            "c".into(),
            ContainerRecord {
                state: ObservedState::Exited(Termination { finished_ms: 8_000_000, ..Default::default() }),
                ..Default::default()
            },
        );
        o.pods.insert("u".into(), pod);
        clamp_times(&mut o, 5_000);
        let p = &o.pods["u"];
        assert_eq!(p.sandbox, SandboxState::Failed { message: String::new(), since_ms: 5_000, attempts: 1 });
        assert!(matches!(&p.containers["c"].state, ObservedState::Exited(t) if t.finished_ms == 5_000));
    }

    #[test]
    fn static_pod_uids_follow_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let pod = |cmd: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - {{name: c, image: busybox, command: [{cmd}]}}\n")
        };
        std::fs::write(dir.path().join("p.yaml"), pod("a")).unwrap();
        let pods = |dir: &Path| {
            let (d, errs) = static_manifests(dir, "n1", &BTreeMap::new());
            assert!(errs.is_empty(), "{errs:?}");
            d.pods
        };
        let a = pods(dir.path());
        let a2 = pods(dir.path());
        std::fs::write(dir.path().join("p.yaml"), pod("b")).unwrap();
        let b = pods(dir.path());
        assert_eq!(a[0].metadata.uid, a2[0].metadata.uid, "stable");
        assert_ne!(a[0].metadata.uid, b[0].metadata.uid, "a changed spec is a new pod");
        assert_eq!(a[0].metadata.namespace.as_deref(), Some("default"));
    }
}
