//! Controllers: pure decisions (`deployment`, `replicaset`, `daemonset`, `job`, `cronjob`,
//! `statefulset`, `lifecycle`, `volumes`, the `scheduler`) wired to the store's change feed and a
//! periodic resync (`workloads` and the loops below).

pub mod common;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod health;
pub mod job;
pub mod lifecycle;
pub mod pods;
pub mod replicaset;
pub mod statefulset;
pub mod volumes;
mod workloads;

pub use workloads::{Controller, Listed, Lists};

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use flotilla_shared::api::{Condition, Kind, Pod, PodPhase, PodStatus};
use flotilla_shared::selector::LabelSelector;

use crate::scheduler::{self, Cluster, Unschedulable};
use crate::store::objects::Mode;
use crate::store::{EventRecord, Store, WriteOp};

/// Settings of the controllers.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a pod stays on a node that is not Ready before it is replaced elsewhere,
    /// unless its tolerations say otherwise (Kubernetes' default: 300 s).
    pub not_ready_toleration: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { not_ready_toleration: Duration::from_secs(300) }
    }
}

/// What a workload controller wants done, about the object it manages (its owner) or the
/// objects it owns. Objects are full JSON as the store keeps them; `workloads::perform` writes
/// claims first, then creates, updates and deletes together, then the status, then the events.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this object.
    Create { kind: Kind, object: Value },
    /// Write this object (its resourceVersion makes it a compare-and-swap).
    Update { kind: Kind, object: Value },
    /// The owner's new status.
    UpdateStatus(Value),
    /// Delete the object of this kind and name in the owner's namespace (the owner itself
    /// included: its dependents go with it through ownerReferences).
    Delete { kind: Kind, name: String },
    /// Record an event about the owner.
    Event { warning: bool, reason: &'static str, message: String },
}

impl Action {
    pub fn create(kind: Kind, object: Value) -> Action {
        Action::Create { kind, object }
    }

    pub fn update(kind: Kind, object: Value) -> Action {
        Action::Update { kind, object }
    }

    pub fn delete(kind: Kind, name: impl Into<String>) -> Action {
        Action::Delete { kind, name: name.into() }
    }
}

impl From<Event> for Action {
    fn from(Event { warning, reason, message }: Event) -> Action {
        Action::Event { warning, reason, message }
    }
}

/// An event a controller records about the object it manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Event {
    pub fn normal(reason: &'static str, message: String) -> Event {
        Event { warning: false, reason, message }
    }

    pub fn warning(reason: &'static str, message: String) -> Event {
        Event { warning: true, reason, message }
    }
}

/// Starts the controllers and the scheduler on the current runtime.
/// Each loop is watched by `health` (its rounds and whether it runs), for `status`.
pub fn start(store: Store, settings: Settings, health: &health::Health) {
    let secs = Duration::from_secs;
    const CM: &str = "controller-manager";
    use workloads::run;
    tokio::spawn(health.watch(CM, "deployments", secs(5), run::<deployment::Deployments>(store.clone())));
    tokio::spawn(health.watch(CM, "replicasets", secs(5), run::<replicaset::ReplicaSets>(store.clone())));
    tokio::spawn(health.watch(CM, "daemonsets", secs(5), run::<daemonset::DaemonSets>(store.clone())));
    tokio::spawn(health.watch(CM, "jobs", secs(2), run::<job::Jobs>(store.clone())));
    tokio::spawn(health.watch(CM, "cronjobs", secs(5), run::<cronjob::CronJobs>(store.clone())));
    tokio::spawn(health.watch(CM, "statefulsets", secs(5), run::<statefulset::StatefulSets>(store.clone())));
    tokio::spawn(health.watch(
        CM,
        "garbage-collector",
        secs(10),
        workloads::garbage_collector(store.clone()),
    ));
    tokio::spawn(health.watch(CM, "node-lifecycle", secs(5), node_lifecycle(store.clone(), settings)));
    tokio::spawn(health.watch(CM, "volume-binding", secs(10), volume_binding(store.clone())));
    tokio::spawn(health.watch("scheduler", "scheduling", secs(5), scheduling(store)));
}

/// Writes claim-to-volume bindings and releases (`volumes`), on every change of volumes or
/// claims and every 10 s.
async fn volume_binding(store: Store) {
    let kinds = [Kind::PersistentVolume, Kind::PersistentVolumeClaim];
    let mut rounds = Rounds::new(&store, Duration::from_secs(10), &kinds);
    while rounds.next().await {
        let (pvs, pvcs) =
            (list(&store, Kind::PersistentVolume).await, list(&store, Kind::PersistentVolumeClaim).await);
        let pvs: Vec<_> = pvs.iter().filter_map(|v| workloads::parse(Kind::PersistentVolume, v)).collect();
        let pvcs: Vec<_> =
            pvcs.iter().filter_map(|c| workloads::parse(Kind::PersistentVolumeClaim, c)).collect();
        for action in volumes::sync(&pvs, &pvcs) {
            let (kind, spec, object, status) = match action {
                volumes::Action::Claim { object, status } => {
                    (Kind::PersistentVolumeClaim, true, object, status)
                }
                volumes::Action::ClaimStatus { object, status } => {
                    (Kind::PersistentVolumeClaim, false, object, status)
                }
                volumes::Action::Volume { object, status } => (Kind::PersistentVolume, true, object, status),
                volumes::Action::VolumeStatus { object, status } => {
                    (Kind::PersistentVolume, false, object, status)
                }
            };
            // The spec first (compare-and-swap on its resourceVersion), then the status on
            // what the first write returned.
            let mut current = object;
            if spec {
                match store.write(WriteOp::Put { kind, object: current, mode: Mode::Update }, false).await {
                    Ok(w) => current = w.object,
                    Err(e) => {
                        tracing::debug!(error = %e, "binding a claim (retried next round)");
                        continue;
                    }
                }
            }
            current["status"] = status;
            if let Err(e) =
                store.write(WriteOp::Put { kind, object: current, mode: Mode::Status }, false).await
            {
                tracing::debug!(error = %e, "volume status (retried next round)");
            }
        }
    }
}

/// Evicts the pods of nodes that stopped being Ready once their toleration ran out
/// (`lifecycle`), checked on every node change and every 5 s.
async fn node_lifecycle(store: Store, settings: Settings) {
    let default_secs = i64::try_from(settings.not_ready_toleration.as_secs()).unwrap_or(i64::MAX);
    let mut rounds = Rounds::new(&store, Duration::from_secs(5), &[Kind::Node]);
    while rounds.next().await {
        let nodes = list(&store, Kind::Node).await;
        if nodes.iter().all(common::node_ready) {
            continue;
        }
        let (pods, volumes, claims) = (
            list(&store, Kind::Pod).await,
            list(&store, Kind::PersistentVolume).await,
            list(&store, Kind::PersistentVolumeClaim).await,
        );
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for e in lifecycle::evictions(&nodes, &pods, &volumes, &claims, now, default_secs) {
            tracing::warn!(
                namespace = e.namespace,
                pod = e.name,
                node = e.node,
                taint = e.taint,
                "evicting a pod from a node that is not Ready"
            );
            let op =
                WriteOp::Delete { kind: Kind::Pod, namespace: e.namespace.clone(), name: e.name.clone() };
            if let Err(err) = store.write(op, false).await {
                tracing::warn!(pod = e.name, error = %err, "evicting a pod");
                continue;
            }
            let message = format!("Marking for deletion Pod {}/{}", e.namespace, e.name);
            record(
                &store,
                &e.namespace,
                &e.name,
                &e.uid,
                false,
                "TaintManagerEviction",
                message,
                "taint-eviction-controller",
            )
            .await;
        }
    }
}

/// How long a loop lets a burst of changes settle before its next round: as long as its last
/// round took (`busy`), at least `floor`, at most 2 s. Under a stream of changes (a fleet
/// reporting) a loop whose rounds are slow is then busy about half of the time, not all of it.
pub(crate) fn settle(floor: Duration, busy: Duration) -> Duration {
    busy.clamp(floor, Duration::from_secs(2))
}

/// A controller loop's rounds: one after a change of one of its kinds or every resync period,
/// once a burst of changes has settled.
pub(crate) struct Rounds {
    feed: tokio::sync::broadcast::Receiver<std::sync::Arc<crate::store::Change>>,
    resync: tokio::time::Interval,
    kinds: Vec<Kind>,
    /// When the current round started.
    started: Option<std::time::Instant>,
}

impl Rounds {
    pub(crate) fn new(store: &Store, resync: Duration, kinds: &[Kind]) -> Rounds {
        Rounds {
            feed: store.subscribe(),
            resync: {
                let mut i = tokio::time::interval(resync);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            },
            kinds: kinds.to_vec(),
            started: None,
        }
    }

    /// Waits for the next round (after `settle`); false once the store is closed.
    pub(crate) async fn next(&mut self) -> bool {
        if self.started.is_some() {
            health::round_done();
        }
        let busy = self.started.take().map(|s| s.elapsed()).unwrap_or_default();
        loop {
            tokio::select! {
                r = self.feed.recv() => match r {
                    Ok(c) if !self.kinds.contains(&c.kind) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                    _ => {}
                },
                _ = self.resync.tick() => {}
            }
            tokio::time::sleep(settle(Duration::from_millis(50), busy)).await;
            while self.feed.try_recv().is_ok() {}
            self.started = Some(std::time::Instant::now());
            return true;
        }
    }
}

/// The scheduler's loop: binds every pod that has no node (oldest first) to the node the pure
/// scheduler picks, accounting each decision before the next. A pod that fits nowhere gets a
/// FailedScheduling event and the PodScheduled=False condition, once per distinct message, and
/// is tried again on every change of pods, nodes or volumes and every 5 s.
async fn scheduling(store: Store) {
    // uid -> the last unschedulable message recorded.
    let mut reported: HashMap<String, String> = HashMap::new();
    let kinds = [Kind::Pod, Kind::Node, Kind::PersistentVolume, Kind::PersistentVolumeClaim];
    let mut rounds = Rounds::new(&store, Duration::from_secs(5), &kinds);
    while rounds.next().await {
        let pods = list(&store, Kind::Pod).await;
        // Most rounds have nothing to place: the cluster is only built (and pods parsed) when a
        // pod is unbound.
        let unbound = |v: &&Value| common::node_of(v).is_none();
        if !pods.iter().any(|v| unbound(&v)) {
            reported.clear();
            continue;
        }
        let (nodes, volumes, claims) = (
            list(&store, Kind::Node).await,
            list(&store, Kind::PersistentVolume).await,
            list(&store, Kind::PersistentVolumeClaim).await,
        );
        let mut cluster = Cluster::from_objects(&nodes, &pods, &volumes, &claims);
        let mut pending: Vec<Pod> = pods
            .iter()
            .filter(unbound)
            .filter_map(|v| workloads::parse::<Pod>(Kind::Pod, v))
            .filter(scheduler::wants_scheduling)
            .collect();
        pending.sort_by(|a, b| {
            (a.metadata.creation_timestamp.as_deref(), a.metadata.name())
                .cmp(&(b.metadata.creation_timestamp.as_deref(), b.metadata.name()))
        });
        let still: std::collections::HashSet<String> =
            pending.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        reported.retain(|uid, _| still.contains(uid));
        // Decisions are made one after the other (each counted before the next); the bindings
        // are written together, so the store commits them in a few group commits. A binding
        // that fails (the pod changed meanwhile) is decided again next round.
        let mut bindings = Vec::new();
        for pod in pending {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let (ns, name) = (pod.metadata.namespace().to_string(), pod.metadata.name().to_string());
            match scheduler::schedule(&pod, &cluster) {
                Ok(node) => {
                    cluster.place(&pod, &node);
                    reported.remove(&uid);
                    let mut bound = pod.clone();
                    bound.spec.node_name = Some(node.clone());
                    let obj = pods::value(&bound);
                    let store = store.clone();
                    bindings.push(async move {
                        // The resourceVersion it carries makes this a compare-and-swap.
                        let op = WriteOp::Put { kind: Kind::Pod, object: obj, mode: Mode::Update };
                        match store.write(op, false).await {
                            Ok(_) => {
                                let message = format!("Successfully assigned {ns}/{name} to {node}");
                                record(&store, &ns, &name, &uid, false, "Scheduled", message, SCHEDULER)
                                    .await;
                            }
                            Err(e) => {
                                tracing::debug!(pod = name, error = %e, "binding a pod (retried next round)")
                            }
                        }
                    });
                }
                Err(Unschedulable(message)) => {
                    if reported.get(&uid) == Some(&message) {
                        continue;
                    }
                    tracing::info!(namespace = ns, pod = name, reason = message, "pod unschedulable");
                    let mut obj = pod.clone();
                    obj.status = Some(PodStatus {
                        phase: Some(PodPhase::Pending),
                        conditions: Some(vec![Condition {
                            type_: "PodScheduled".into(),
                            status: "False".into(),
                            last_transition_time: Some(crate::clock::now_rfc3339()),
                            last_heartbeat_time: None,
                            reason: Some("Unschedulable".into()),
                            message: Some(message.clone()),
                        }]),
                        ..PodStatus::default()
                    });
                    let obj = pods::value(&obj);
                    let op = WriteOp::Put { kind: Kind::Pod, object: obj, mode: Mode::Status };
                    if store.write(op, false).await.is_ok() {
                        record(
                            &store,
                            &ns,
                            &name,
                            &uid,
                            true,
                            "FailedScheduling",
                            message.clone(),
                            SCHEDULER,
                        )
                        .await;
                        reported.insert(uid, message);
                    }
                }
            }
        }
        futures_util::future::join_all(bindings).await;
    }
}

const SCHEDULER: &str = "default-scheduler";

/// Records an event about a pod.
#[allow(clippy::too_many_arguments)]
async fn record(
    store: &Store,
    ns: &str,
    name: &str,
    uid: &str,
    warning: bool,
    reason: &str,
    message: String,
    source: &str,
) {
    let time = crate::clock::now_rfc3339();
    let ev = EventRecord {
        namespace: ns.to_string(),
        kind: "Pod".into(),
        name: name.to_string(),
        uid: uid.to_string(),
        type_: if warning { "Warning" } else { "Normal" }.into(),
        reason: reason.into(),
        message,
        source: source.into(),
        count: 1,
        first_time: time.clone(),
        last_time: time,
    };
    if let Err(e) = store.write(WriteOp::Event(ev), false).await {
        tracing::warn!(pod = name, error = %e, "recording a scheduler event");
    }
}

async fn list(store: &Store, kind: Kind) -> Vec<Value> {
    store.list(kind, None, &LabelSelector::default()).await.map(|(v, _)| v).unwrap_or_default()
}

/// A random pod-name suffix in Kubernetes' alphabet (no vowels, no look-alikes).
fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    crate::store::crypto::random::<5>()
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}
