//! The agent's loop: each round takes the desired state (manifests, the hub's snapshot),
//! observes the runtime, lets the pure reconcile core decide, has the executor act, records the
//! observed state and the statuses in the run directory (only when they change), reports to the
//! hub, and waits until something changes or a back-off or probe falls due. Everything it calls
//! lives in its own room (`wanted`, `observe`, `exec`, `pulls`, `prober`, `records`, `report`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use flotilla_shared::wire::DesiredPod;

use super::paths::Paths;
use super::wanted::{self, Desired};
use super::{
    desired, events,
    exec::{Executor, OsRuntime},
    gc, hub, info, observe, prober, pulls, records, report, watch,
};
use crate::clock::{boot_ms, now_rfc3339};
use crate::image::ImageStore;
use crate::reconcile::{self, Observed, ObservedPod, SandboxState};

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

/// How long to wait for a wake-up before the next round: 50 ms while actions are in flight,
/// 500 ms when idle, less when a back-off or a probe falls due (never under 10 ms).
pub fn wait_ms(idle: bool, wake_at_ms: Option<u64>, probe_due_ms: Option<u64>, now_ms: u64) -> u64 {
    let wait = if idle { 500 } else { 50 };
    let wait = wake_at_ms.map_or(wait, |w| w.saturating_sub(now_ms).clamp(10, wait));
    probe_due_ms.map_or(wait, |w| w.saturating_sub(now_ms).clamp(10, wait))
}

/// Performs the plan's actions in order, each against its pod's observed record (made for a
/// pod acted on for the first time); a removed pod's record goes.
fn perform_plan(
    exec: &Executor,
    actions: &[reconcile::Action],
    by_uid: &BTreeMap<&str, &DesiredPod>,
    observed: &mut Observed,
    wanted: &Desired,
) {
    for action in actions {
        let uid = action_uid(action).to_string();
        let d = by_uid.get(uid.as_str()).copied();
        let obs = observed.pods.entry(uid.clone()).or_insert_with(|| ObservedPod {
            namespace: d.map(|d| d.metadata.namespace().to_string()).unwrap_or_default(),
            name: d.map(|d| d.metadata.name().to_string()).unwrap_or_default(),
            uid: uid.clone(),
            ..Default::default()
        });
        tracing::debug!(?action, "performing");
        exec.perform(action, d, obs, wanted);
        if matches!(action, reconcile::Action::RemovePod { .. }) {
            observed.pods.remove(&uid);
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
    let mut reporter = report::Reporter::new(&opts.node_name, paths.state.clone());
    // The observed state and the statuses, written when they change.
    let mut records = records::Records::default();
    let pulls = pulls::Pulls::new(opts.pull.clone(), Some(wake_tx.clone()));
    let facts = info::gather(&opts.node_name);
    let host_ip = facts.addresses.first().cloned();
    let mut prober = prober::Prober::new(paths.clone(), agent_bin.clone(), wake_tx.clone());
    let runtime = OsRuntime { paths: paths.clone(), agent_bin };
    let exec = Executor {
        paths,
        images: &images,
        runtime: &runtime,
        node_name: opts.node_name.clone(),
        host_ip,
        pulls: &pulls,
        events: Default::default(),
    };
    let mut waiting_before = events::Waiting::new();
    let mut config_key_before: Option<Vec<(String, String, String)>> = None;
    let mut observed = restore_observed(paths);
    let term = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_flag(term.clone(), wake_tx.clone())?;
    let mut last_errors: Vec<String> = Vec::new();
    let mut rounds = 0u64;
    let mut last_gc_ms: Option<u64> = None;
    tracing::info!(manifests = ?opts.manifests, hub = ?opts.hub.as_ref().map(|h| &h.broker), state = %paths.state.display(), pods = observed.pods.len(), "flotilla-agent running");
    while !term.load(std::sync::atomic::Ordering::SeqCst) {
        reap_children();
        let snapshot = hub.as_ref().and_then(|h| h.snapshot());
        let (wanted, errors) =
            wanted::gather(opts.manifests.as_deref(), snapshot.as_ref(), &opts.node_name, &facts.labels);
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
        observe::observe(paths, &mut observed);
        pulls::finish_pulls(&pulls, &mut observed, desired, &wanted.secrets, &exec.events);
        for f in prober.sync(desired, &mut observed) {
            act_on_probe(&exec, &observed, f);
        }
        refresh_projected_volumes(paths, &wanted, &observed, &mut config_key_before);
        let plan = reconcile::reconcile(desired, &observed, boot_ms(), &now_rfc3339());
        let by_uid: BTreeMap<&str, &DesiredPod> =
            desired.iter().filter_map(|d| d.metadata.uid.as_deref().map(|u| (u, d))).collect();
        perform_plan(&exec, &plan.actions, &by_uid, &mut observed, &wanted);
        prober.launch(desired, &observed, boot_ms());
        records.write(&paths.observed(), &observed);
        if last_gc_ms.is_none_or(|t| boot_ms().saturating_sub(t) >= IMAGE_GC_PERIOD_MS) && pulls.idle() {
            image_gc(&images, opts.image_gc, desired, &observed);
            last_gc_ms = Some(boot_ms());
        }
        let status = report::status_file(&plan.statuses, &by_uid, &observed);
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
        notify_systemd(rounds == 1);
        if opts.max_rounds.is_some_and(|m| rounds >= m) {
            break;
        }
        let wait = wait_ms(plan.actions.is_empty(), plan.wake_at_ms, prober.next_due_ms(), boot_ms());
        if wake_rx.recv_timeout(Duration::from_millis(wait)).is_ok() {
            // Let a burst of events (a file being written, an editor's rename dance) settle.
            std::thread::sleep(Duration::from_millis(20));
            while wake_rx.try_recv().is_ok() {}
        }
    }
    tracing::info!("flotilla-agent stopping; containers keep running");
    Ok(())
}

/// The observed state a (re)started agent begins from: the run directory's record, its boot
/// clock times clamped to now (after a reboot), and pulls that were running asked for again.
fn restore_observed(paths: &Paths) -> Observed {
    let mut observed = records::load_observed(paths);
    observe::clamp_times(&mut observed, boot_ms());
    // A pull that was running when the agent stopped is not running now: ask again.
    for rec in observed.pods.values_mut().flat_map(|p| p.containers.values_mut()) {
        if rec.image == reconcile::ImageState::Pulling {
            rec.image = reconcile::ImageState::Unknown;
        }
    }
    observed
}

/// systemd (Type=notify): ready once the first round has adopted and started what it must;
/// then a watchdog ping per round, so a stuck loop gets the agent restarted (its containers
/// keep running: KillMode=process).
fn notify_systemd(first_round: bool) {
    if first_round {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
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

/// Collects exited children (shims and sandboxes we started) so they do not linger as zombies.
fn reap_children() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(s) = waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if s == WaitStatus::StillAlive {
            break;
        }
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

    #[test]
    fn the_loop_waits_for_what_falls_due_first() {
        for (idle, wake, probe, want) in [
            (true, None, None, 500),
            (false, None, None, 50),
            (true, Some(1_200), None, 200),
            (true, Some(1_200), Some(1_100), 100),
            (true, Some(999), None, 10),
            (false, Some(5_000), None, 50),
            (true, None, Some(3_000), 500),
        ] {
            assert_eq!(
                wait_ms(idle, wake, probe, 1_000),
                want,
                "idle {idle}, wake {wake:?}, probe {probe:?}"
            );
        }
    }
}
