//! The hub's side of the MQTT link: the pusher publishes every node's desired snapshot
//! (retained, QoS 1, only when its content changed, under a generation that only grows: the
//! store's revision), the ingest takes status reports, heartbeats, presence and events into
//! the store (stale reports ignored; a node that heartbeats but is not registered gets its
//! snapshot again, or a clear, which makes it repeat its report), and node lifecycle marks
//! silent nodes NotReady after a grace period.
//! The decisions are pure (`pusher`, `ingest`); this module wires them to the store's change
//! feed and the broker link.

mod backlog;
pub mod credentials;
pub mod fleet;
pub mod ingest;
pub mod join;
pub mod logs;
pub mod pusher;
pub mod restrict;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use flotilla_link::{Link, LinkConfig, LinkEvent};
use flotilla_shared::api::Kind;
use flotilla_shared::selector::LabelSelector;
use flotilla_shared::wire::topics::{NodeTopic, Topics};
use flotilla_shared::wire::{self, Heartbeat, MessageKind, Presence, StatusReport};

use self::backlog::{Backlog, Item, Pushed};
use crate::controllers::settle;
use crate::mqtt::budget::{self, Verdict};
use crate::store::objects::Mode;
use crate::store::{ChangeOp, Store, WriteOp};

/// Largest payload decoded from a node (each topic has a smaller cap, `budget::max_size`).
const MAX_INBOUND: usize = 1 << 20;

/// How the hub's node link behaves.
#[derive(Debug, Clone)]
pub struct NodeLinkOptions {
    pub link: LinkConfig,
    pub topics: Topics,
    /// A node that has not reported for this long is NotReady (Kubernetes' default: 40 s).
    pub grace: Duration,
}

/// What the hub remembers about each node between reports (not persisted: after a restart,
/// every node the store has Ready is taken as seen at the start, and the next report
/// restores the rest).
#[derive(Debug, Default)]
struct NodeMemory {
    /// The (epoch, seq) of the last report stored per node.
    last_seq: HashMap<String, (u64, u64)>,
    last_seen: HashMap<String, Instant>,
    /// The session of the agent process that last announced itself online.
    session: HashMap<String, u64>,
    /// Names that reported without credentials (warned about once).
    refused: std::collections::HashSet<String>,
    /// The last restriction warnings recorded per node (`warn_restricted`).
    restricted: HashMap<String, String>,
}

pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Nodes whose snapshot the pusher publishes again even though it did not change: nodes that
/// heartbeat without being registered (their first report went unheard). A snapshot that is
/// not newer makes an agent repeat its whole report.
#[derive(Default)]
struct Nudges {
    nodes: Mutex<std::collections::BTreeSet<String>>,
    wake: Notify,
}

impl Nudges {
    fn add(&self, node: &str) {
        lock(&self.nodes).insert(node.to_string());
        self.wake.notify_one();
    }

    fn take(&self) -> std::collections::BTreeSet<String> {
        std::mem::take(&mut *lock(&self.nodes))
    }
}

/// At most one nudge per node this often.
const NUDGE_EVERY: Duration = Duration::from_secs(30);

/// The running node link, for the API handlers that talk to nodes (logs).
#[derive(Clone)]
pub struct NodeLink {
    pub link: Link,
    pub topics: Topics,
    pub logs: logs::LogRouter,
}

/// Starts the link, the pusher, the ingest and the lifecycle tasks on the current runtime.
pub fn start(store: Store, opts: NodeLinkOptions) -> anyhow::Result<NodeLink> {
    let (tx, rx) = mpsc::channel(4096);
    let link = Link::spawn(opts.link.clone(), tx)?;
    let (republish, republish_fleet) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let memory = Arc::new(Mutex::new(NodeMemory::default()));
    let router = logs::LogRouter::default();
    let nudges = Arc::new(Nudges::default());
    tokio::spawn(pusher_task(
        store.clone(),
        link.clone(),
        opts.topics.clone(),
        republish.clone(),
        nudges.clone(),
    ));
    let liveness = fleet::Liveness::of(memory.clone());
    tokio::spawn(fleet::task(
        store.clone(),
        link.clone(),
        opts.topics.clone(),
        republish_fleet.clone(),
        liveness,
    ));
    tokio::spawn(ingest_task(
        store.clone(),
        rx,
        opts.topics.clone(),
        vec![republish, republish_fleet],
        memory.clone(),
        router.clone(),
        nudges,
    ));
    tokio::spawn(lifecycle_task(store, memory, opts.grace));
    Ok(NodeLink { link, topics: opts.topics, logs: router })
}

async fn list(store: &Store, kind: Kind) -> Vec<Value> {
    match store.list(kind, None, &LabelSelector::default()).await {
        Ok((v, _)) => v,
        Err(e) => {
            tracing::warn!(kind = ?kind, error = %e, "listing for the pusher");
            Vec::new()
        }
    }
}

/// Publishes each node's snapshot when its content changes; everything again after the
/// broker lost its state (a connect without a kept session). A round computes only the
/// snapshots the changes since the last one may alter (`pusher::Dirty`): at thousands of
/// nodes, a pod's status or one node's heartbeat write must not cost a pass over the fleet.
async fn pusher_task(store: Store, link: Link, topics: Topics, republish: Arc<Notify>, nudges: Arc<Nudges>) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let mut feed = store.subscribe();
    let mut published: BTreeMap<String, [u8; 32]> = BTreeMap::new();
    let mut seen = pusher::Seen::default();
    let mut dirty = pusher::Dirty::default();
    // How long the last round took (`controllers::settle`).
    let mut busy = Duration::ZERO;
    loop {
        while dirty.is_empty() {
            tokio::select! {
                r = feed.recv() => match r {
                    Ok(c) => dirty.mark(c.kind, c.op == ChangeOp::Deleted, &c.object, &mut seen),
                    Err(RecvError::Lagged(_)) => dirty.all = true,
                    Err(RecvError::Closed) => return,
                },
                _ = republish.notified() => {
                    published.clear();
                    dirty.all = true;
                }
                _ = nudges.wake.notified() => {}
            }
            nudge(&nudges, &mut published, &mut dirty);
        }
        // Coalesce bursts: take everything that arrives meanwhile.
        tokio::time::sleep(settle(Duration::from_millis(50), busy)).await;
        loop {
            match feed.try_recv() {
                Ok(c) => dirty.mark(c.kind, c.op == ChangeOp::Deleted, &c.object, &mut seen),
                Err(TryRecvError::Lagged(_)) => dirty.all = true,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
        nudge(&nudges, &mut published, &mut dirty);
        let started = Instant::now();
        let round = std::mem::take(&mut dirty);
        let revision = store.revision();
        let inputs = match read_inputs(&store, &round).await {
            Ok(inputs) => inputs,
            Err(e) => {
                // Never publish from a failed read (it would look like every node is gone).
                tracing::warn!(error = %e, "reading the desired state; retried");
                dirty.all = true;
                busy = Duration::MAX;
                continue;
            }
        };
        let [nodes, pods, cms, secrets, volumes, claims] = &inputs;
        if round.all {
            seen.rebuild(nodes, pods);
        }
        let mut snaps =
            pusher::snapshots(&pusher::Inputs { nodes, pods, config_maps: cms, secrets, volumes, claims });
        // A node that no longer exists (and has no pods): its retained snapshot is cleared,
        // so a device set up again under that name does not start from it.
        let gone: Vec<String> = if round.all {
            published.keys().filter(|n| !snaps.contains_key(*n)).cloned().collect()
        } else {
            round
                .nodes
                .iter()
                .filter(|n| !snaps.contains_key(*n) && published.contains_key(*n))
                .cloned()
                .collect()
        };
        for node in gone {
            match link.publish(topics.desired(&node), Vec::new(), true).await {
                Ok(()) => {
                    tracing::info!(
                        node,
                        "cleared the desired state of a node with no Node object and no pods"
                    );
                    published.remove(&node);
                }
                Err(e) => {
                    tracing::warn!(node, error = %e, "clearing the desired state of a deleted node");
                    dirty.nodes.insert(node);
                }
            }
        }
        for (node, snap) in snaps.iter_mut() {
            let digest = pusher::content_digest(snap);
            if published.get(node) == Some(&digest) {
                continue;
            }
            snap.generation = revision;
            let bytes = wire::encode(&*snap);
            match link.publish(topics.desired(node), bytes, true).await {
                Ok(()) => {
                    tracing::info!(
                        node,
                        generation = revision,
                        pods = snap.pods.len(),
                        "published the desired state"
                    );
                    published.insert(node.clone(), digest);
                }
                Err(e) => {
                    tracing::warn!(node, error = %e, "publishing the desired state; retried");
                    dirty.nodes.insert(node.clone());
                }
            }
        }
        busy = started.elapsed();
    }
}

/// Marks nudged nodes for the next round as published with an unknown digest: one with a
/// snapshot gets it again (its agent then repeats its report), one without (neither
/// registered nor with bound pods) gets its retained snapshot cleared, which also makes its
/// agent repeat its report until the hub publishes for it.
fn nudge(nudges: &Nudges, published: &mut BTreeMap<String, [u8; 32]>, dirty: &mut pusher::Dirty) {
    for node in nudges.take() {
        published.insert(node.clone(), [0; 32]);
        dirty.nodes.insert(node);
    }
}

/// Nodes, pods, ConfigMaps, Secrets, volumes and claims for a round: every node and pod, or
/// only the dirty nodes and the pods bound to them.
async fn read_inputs(
    store: &Store,
    round: &pusher::Dirty,
) -> Result<[Vec<Value>; 6], crate::store::StoreError> {
    let all = |kind| async move { store.list(kind, None, &LabelSelector::default()).await.map(|(v, _)| v) };
    let (nodes, pods) = if round.all {
        (all(Kind::Node).await?, all(Kind::Pod).await?)
    } else {
        let wanted = |v: &Value, pointer: &str| {
            v.pointer(pointer).and_then(Value::as_str).is_some_and(|n| round.nodes.contains(n))
        };
        (
            store.select(Kind::Node, |v| wanted(v, "/metadata/name"))?,
            store.select(Kind::Pod, |v| wanted(v, "/spec/nodeName"))?,
        )
    };
    Ok([
        nodes,
        pods,
        all(Kind::ConfigMap).await?,
        all(Kind::Secret).await?,
        all(Kind::PersistentVolume).await?,
        all(Kind::PersistentVolumeClaim).await?,
    ])
}

/// Workers taking status reports, presence and events into the store.
const INGEST_WORKERS: usize = 16;

/// One ingest worker: its backlog and the wake-up the dispatcher gives it.
#[derive(Default)]
struct Worker {
    backlog: Mutex<Backlog>,
    wake: Notify,
}

impl Worker {
    /// Queues what `node` sent; never waits. Says what was dropped (the caller logs it).
    fn push(&self, node: &str, item: Item) -> Pushed {
        let pushed = lock(&self.backlog).push(node, item);
        if pushed == Pushed::DroppedOldest {
            tracing::debug!(node, "an older presence announcement dropped");
        }
        self.wake.notify_one();
        pushed
    }

    async fn run(&self, store: &Store, memory: &Mutex<NodeMemory>) {
        loop {
            let next = lock(&self.backlog).pop();
            let Some((node, items)) = next else {
                // A push between the pop and this wait leaves a permit: nothing is missed.
                self.wake.notified().await;
                continue;
            };
            for item in items {
                match item {
                    Item::Status(r) => take_status(store, memory, *r).await,
                    Item::Presence(p) => take_presence(store, memory, &node, p).await,
                    Item::Events(e) => take_events(store, &node, e).await,
                }
            }
        }
    }
}

/// Takes what nodes publish into the store.
async fn ingest_task(
    store: Store,
    mut rx: mpsc::Receiver<LinkEvent>,
    topics: Topics,
    republish: Vec<Arc<Notify>>,
    memory: Arc<Mutex<NodeMemory>>,
    logs: logs::LogRouter,
    nudges: Arc<Nudges>,
) {
    // Status reports, presence and events go to one of several workers, each node always to
    // the same one (its items stay in order): many nodes' writes are then in flight together
    // and the store's writer commits them as a group, instead of one report waiting for the
    // last. The dispatcher only queues (a node's newest report replacing its waiting one), so a
    // slow store never holds up the link.
    let workers: Vec<Arc<Worker>> = (0..INGEST_WORKERS)
        .map(|_| {
            let worker = Arc::new(Worker::default());
            let (w, store, memory) = (worker.clone(), store.clone(), memory.clone());
            tokio::spawn(async move { w.run(&store, &memory).await });
            worker
        })
        .collect();
    let worker = |node: &str| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        node.hash(&mut h);
        &workers[(h.finish() % INGEST_WORKERS as u64) as usize]
    };
    // Nodes nudged (or heard reporting) while unregistered: when, and how often nudged
    // (forgotten once registered).
    let mut nudged: HashMap<String, (Instant, u32)> = HashMap::new();
    let limits = budget::Limits::default();
    let mut budget = budget::Budget::new(budget::Limits {
        bytes_per_sec: limits.bytes_per_sec * 2.0,
        burst_bytes: limits.burst_bytes * 2.0,
        messages_per_sec: limits.messages_per_sec * 2.0,
        burst_messages: limits.burst_messages * 2.0,
    });
    let mut throttle = budget::Throttle::default();
    let mut pruned = Instant::now();
    while let Some(event) = rx.recv().await {
        let (topic, payload) = match event {
            LinkEvent::Connected { session_present } => {
                if !session_present {
                    // The broker may have restarted and lost every retained message.
                    for r in &republish {
                        r.notify_one();
                    }
                }
                continue;
            }
            LinkEvent::Disconnected { .. } => continue,
            LinkEvent::Message { topic, payload } => (topic, payload),
        };
        let Some((node, leaf)) = topics.parse_node_topic(&topic) else { continue };
        let node = node.to_string();
        let now = Instant::now();
        // Sized and paid for before anything is decoded. The embedded broker has refused what
        // is over a node's budget already; this holds an external broker's nodes to it (with
        // room to spare, so what the embedded broker took is never refused twice).
        if now.saturating_duration_since(pruned) > Duration::from_secs(60) {
            budget.prune(now);
            pruned = now;
        }
        let refusal = match budget.admit(&node, &leaf, payload.len(), now) {
            Verdict::Take => None,
            Verdict::TooLarge { max } => {
                Some(("too large", format!("{} bytes, at most {max}", payload.len())))
            }
            Verdict::OverBudget => Some(("over budget", format!("{} bytes", payload.len()))),
        };
        if let Some((what, detail)) = refusal {
            if let Some(n) = throttle.say(&node, what, now) {
                tracing::warn!(
                    node,
                    topic,
                    refused = n,
                    detail,
                    "a node's message refused ({what}); said at most once a minute"
                );
            }
            continue;
        }
        let mut bad = |what: &'static str, error: String| {
            if let Some(n) = throttle.say(&node, what, now) {
                tracing::warn!(node, topic, refused = n, error, "{what}; said at most once a minute");
            }
        };
        let kind = match wire::peek_header(&payload) {
            Ok((_, k)) => u8::try_from(k).ok().and_then(MessageKind::from_code),
            Err(e) => {
                bad("undecodable message", e.to_string());
                continue;
            }
        };
        match (leaf, kind) {
            (NodeTopic::Status, Some(MessageKind::Status)) => {
                match wire::decode::<StatusReport>(&payload, MAX_INBOUND) {
                    Ok(r) if r.node == node => {
                        // Alive as of now, however long the report waits for its worker.
                        lock(&memory).last_seen.insert(node.clone(), Instant::now());
                        if !store.node_exists(&node) {
                            // It is about to be registered: no nudge for a while (a new
                            // fleet's first reports may wait behind each other).
                            nudged.entry(node.clone()).or_insert((Instant::now(), 0)).0 = Instant::now();
                        }
                        let _ = worker(&node).push(&node, Item::Status(Box::new(r)));
                    }
                    Ok(r) => bad("a status report naming another node", r.node),
                    Err(e) => bad("bad status report", e.to_string()),
                }
            }
            (NodeTopic::Status, Some(MessageKind::Heartbeat)) => {
                if let Ok(h) = wire::decode::<Heartbeat>(&payload, MAX_INBOUND) {
                    if h.node == node {
                        // A node marked NotReady for its silence (or never heard since this hub
                        // started) heartbeats again: its agent may not know it should repeat
                        // its report (its connection never dropped), and a heartbeat alone
                        // restores nothing. Asked for its report like an unregistered node.
                        let was_silent =
                            lock(&memory).last_seen.insert(node.clone(), Instant::now()).is_none();
                        let registered = store.node_exists(&node);
                        if registered && !was_silent {
                            nudged.remove(&node);
                        } else if nudged.get(&node).is_none_or(|(t, _)| t.elapsed() >= NUDGE_EVERY) {
                            // Said once at info: a node whose registration keeps failing is
                            // nudged every 30 s, and the store's error says why.
                            let times = nudged.get(&node).map_or(0, |(_, n)| *n) + 1;
                            if registered {
                                tracing::info!(
                                    node,
                                    "a node that was silent heartbeats again: asking for its report"
                                );
                            } else if times == 1 {
                                tracing::info!(
                                    node,
                                    "a node that is not registered heartbeats: asking for its report"
                                );
                            } else {
                                tracing::debug!(
                                    node,
                                    times,
                                    "a node that is not registered heartbeats again"
                                );
                            }
                            nudged.insert(node.clone(), (Instant::now(), times));
                            nudges.add(&node);
                        }
                    }
                }
            }
            (NodeTopic::LogResponse(id), Some(MessageKind::LogChunk)) => {
                match wire::decode::<wire::LogChunk>(&payload, MAX_INBOUND) {
                    Ok(c) => logs.deliver(&id, c),
                    Err(e) => bad("bad log chunk", e.to_string()),
                }
            }
            (NodeTopic::Events, Some(MessageKind::Events)) => {
                match wire::decode::<wire::Events>(&payload, MAX_INBOUND) {
                    Ok(mut b) if b.node == node => {
                        // Cut to what is kept before it waits: a flood costs little memory.
                        b.events.truncate(MAX_EVENTS_PER_BATCH);
                        for e in &mut b.events {
                            clip(&mut e.reason, MAX_REASON);
                            clip(&mut e.message, MAX_MESSAGE);
                        }
                        if worker(&node).push(&node, Item::Events(b.events)) == Pushed::Dropped {
                            bad("events dropped: too many batches waiting for the store", String::new());
                        }
                    }
                    Ok(b) => bad("events naming another node", b.node),
                    Err(e) => bad("bad events", e.to_string()),
                }
            }
            (NodeTopic::Presence, Some(MessageKind::Presence)) => {
                if let Ok(p) = wire::decode::<Presence>(&payload, MAX_INBOUND) {
                    let _ = worker(&node).push(&node, Item::Presence(p));
                }
            }
            _ => {}
        }
    }
}

/// Locks `m`, also after a panic elsewhere poisoned it (the data is still consistent: every
/// holder only inserts or removes whole entries).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How often a node's unchanged status is written anyway (its `lastHeartbeatTime`).
const HEARTBEAT_WRITE_SECS: i64 = 3600;

/// Whether the write went through (a failure is logged).
async fn write(store: &Store, kind: Kind, object: Value, mode: Mode) -> bool {
    match store.write(WriteOp::Put { kind, object, mode }, false).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(kind = ?kind, error = %e, "writing a node's report");
            false
        }
    }
}

/// Most events taken from one batch: a node cannot flood the store.
const MAX_EVENTS_PER_BATCH: usize = 100;
/// Longest event reason and message kept (characters).
const MAX_REASON: usize = 128;
const MAX_MESSAGE: usize = 1024;

/// Cuts `s` to at most `max` characters (and gives the rest of its memory back).
fn clip(s: &mut String, max: usize) {
    if let Some((at, _)) = s.char_indices().nth(max) {
        s.truncate(at);
        s.shrink_to_fit();
    }
}

/// A node's events about its pods (and itself) become events of those objects, shown by
/// `describe`. Only pods bound to the node may be named: a node cannot write events about
/// another node's pods.
async fn take_events(store: &Store, node: &str, events: Vec<wire::Event>) {
    for ev in events.into_iter().take(MAX_EVENTS_PER_BATCH) {
        let (kind, namespace, name, uid) = if ev.pod.is_empty() {
            // Events of cluster-scoped objects live in `default`, as in Kubernetes (where
            // `describe` looks for them).
            (Kind::Node, "default".to_string(), node.to_string(), String::new())
        } else {
            let Some((ns, name)) = ev.pod.split_once('/') else { continue };
            let Ok(Some(pod)) = store.get(Kind::Pod, ns, name).await else { continue };
            if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node) {
                tracing::warn!(node, pod = ev.pod, "an event about a pod of another node ignored");
                continue;
            }
            let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
            (Kind::Pod, ns.to_string(), name.to_string(), uid)
        };
        // The hub's clock, not the device's: devices without an RTC may not know the time.
        let time = now_rfc3339();
        let message = if ev.container.is_empty() || ev.message.contains(&ev.container) {
            ev.message
        } else {
            format!("{} (container {})", ev.message, ev.container)
        };
        let record = crate::store::EventRecord {
            namespace,
            kind: kind.info().kind.to_string(),
            name,
            uid,
            type_: if ev.warning { "Warning" } else { "Normal" }.into(),
            reason: ev.reason,
            message: {
                let mut m = message;
                clip(&mut m, MAX_MESSAGE);
                m
            },
            source: format!("kubelet, {node}"),
            count: 1,
            first_time: time.clone(),
            last_time: time,
        };
        if let Err(e) = store.write(WriteOp::Event(record), false).await {
            tracing::warn!(node, error = %e, "recording a node's event");
        }
    }
}

async fn take_status(store: &Store, memory: &Mutex<NodeMemory>, r: StatusReport) {
    // The Node object: registered on first report (also again after it was deleted, whatever
    // the report's sequence, as the kubelet registers again), its status refreshed.
    let existing = store.get(Kind::Node, "", &r.node).await.ok().flatten();
    if existing.is_some() && !ingest::is_fresh(lock(memory).last_seq.get(&r.node).copied(), r.epoch, r.seq) {
        tracing::debug!(node = r.node, seq = r.seq, "stale status report ignored");
        return;
    }
    // What the node may say about itself (NodeRestriction): facts bounded, labels its own.
    let (info, mut warnings) = restrict::facts(&r.info);
    // The sequence is recorded only once the report is in the store: a repeat of a report
    // whose write failed is taken, not ignored as stale. (One worker takes a node's reports
    // one after another, so none can slip in between.)
    let mut stored = true;
    if existing.is_none() {
        // Only a node the hub issued credentials to is registered, whatever the broker let
        // through (a misconfigured external broker, a viewer posing as a node).
        if !credentials::issued(store, &r.node).await {
            if lock(memory).refused.insert(r.node.clone()) {
                tracing::warn!(
                    node = r.node,
                    "a status report from a node the hub issued no credentials to; not registered (`flotilla-hub node add` issues them)"
                );
            }
            return;
        }
        let (labels, refused) = restrict::labels(&r.node, &r.info);
        warnings.extend(refused);
        stored &= write(store, Kind::Node, ingest::new_node(&r.node, &labels), Mode::Create).await;
    }
    warn_restricted(store, memory, &r.node, warnings).await;
    let now = now_rfc3339();
    let since = existing
        .as_ref()
        .and_then(ingest::ready_of)
        .filter(|(s, _)| s == "True")
        .map_or_else(|| now.clone(), |(_, t)| t);
    let status = ingest::node_status(
        &info,
        Some(true),
        "AgentReady",
        "flotilla-agent is posting ready status",
        &since,
        &now,
    );
    let mut status = status;
    let reported = ingest::reported_conditions(&r.conditions, existing.as_ref(), &now);
    status.conditions.get_or_insert_with(Vec::new).extend(reported);
    // The Node as read above, or as just registered (one more read only for a new node).
    let current = match existing {
        Some(n) => Some(n),
        None => store.get(Kind::Node, "", &r.node).await.ok().flatten(),
    };
    if let Some(mut node) = current {
        let next = serde_json::to_value(status).unwrap_or_default();
        // A report that changes nothing but heartbeat times is written at most hourly:
        // liveness is kept in memory (and marked NotReady from there), so a quiet fleet costs
        // the disk little; `lastHeartbeatTime` is then at most an hour old.
        let recent = ingest::heartbeat_age_secs(&node["status"], time::OffsetDateTime::now_utc())
            .is_some_and(|age| (0..HEARTBEAT_WRITE_SECS).contains(&age));
        if !(recent && ingest::same_but_heartbeats(&node["status"], &next)) {
            node["status"] = next;
            stored &= write(store, Kind::Node, node, Mode::Status).await;
        }
    } else {
        stored = false;
    }
    // Pod statuses, written concurrently so the store's writer commits them as one group.
    let mut writes = Vec::new();
    for p in r.pods.iter().take(MAX_PODS_PER_REPORT) {
        let Ok(Some(pod)) = store.get(Kind::Pod, &p.namespace, &p.name).await else { continue };
        let host_ip = info.addresses.first().map(String::as_str);
        if let Some(next) = ingest::pod_with_status(&pod, &r.node, p, host_ip) {
            let store = store.clone();
            writes.push(tokio::spawn(async move { write(&store, Kind::Pod, next, Mode::Status).await }));
        }
    }
    for w in writes {
        stored &= w.await.unwrap_or(false);
    }
    if stored {
        lock(memory).last_seq.insert(r.node.clone(), (r.epoch, r.seq));
    }
}

/// Most pod statuses taken from one report (a node runs at most 110 pods).
const MAX_PODS_PER_REPORT: usize = 256;

/// Records what was refused or clamped of a node's report as a Warning event on its Node,
/// once per distinct set of warnings per hub run (a node repeats its report every few
/// minutes; the event says it once).
async fn warn_restricted(store: &Store, memory: &Mutex<NodeMemory>, node: &str, warnings: Vec<String>) {
    if warnings.is_empty() {
        return;
    }
    let message = warnings.join("; ");
    if lock(memory).restricted.get(node) == Some(&message) {
        return;
    }
    tracing::warn!(node, warnings = message, "a node's report restricted");
    let time = now_rfc3339();
    let record = crate::store::EventRecord {
        namespace: "default".into(),
        kind: "Node".into(),
        name: node.to_string(),
        uid: String::new(),
        type_: "Warning".into(),
        reason: "NodeRestriction".into(),
        message: message.clone(),
        source: "flotilla-hub".into(),
        count: 1,
        first_time: time.clone(),
        last_time: time,
    };
    if let Err(e) = store.write(WriteOp::Event(record), false).await {
        tracing::warn!(node, error = %e, "recording a node restriction event");
    }
    lock(memory).restricted.insert(node.to_string(), message);
}

async fn take_presence(store: &Store, memory: &Mutex<NodeMemory>, node: &str, p: Presence) {
    if p.node != node {
        return;
    }
    {
        let mut m = lock(memory);
        if p.online {
            m.session.insert(node.to_string(), p.session);
            m.last_seen.insert(node.to_string(), Instant::now());
            return;
        }
        // A late will of an older agent process must not mark the newer one offline.
        if m.session.get(node).is_some_and(|s| *s != p.session) {
            return;
        }
        m.last_seen.remove(node);
    }
    mark_not_ready(store, node, "NodeOffline", "the agent's connection ended (last will)").await;
}

async fn mark_not_ready(store: &Store, node: &str, reason: &str, message: &str) {
    let Ok(Some(mut obj)) = store.get(Kind::Node, "", node).await else { return };
    if ingest::ready_of(&obj).is_some_and(|(s, _)| s == "Unknown") {
        return;
    }
    let now = now_rfc3339();
    if let Some(conds) = obj.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
        for c in conds.iter_mut().filter(|c| c["type"] == "Ready") {
            c["status"] = "Unknown".into();
            c["reason"] = reason.into();
            c["message"] = message.into();
            c["lastTransitionTime"] = now.clone().into();
        }
    }
    tracing::warn!(node, reason, "node is NotReady");
    write(store, Kind::Node, obj, Mode::Status).await;
}

/// Marks nodes NotReady once they have been silent for `grace`.
async fn lifecycle_task(store: Store, memory: Arc<Mutex<NodeMemory>>, grace: Duration) {
    // A restarted hub knows nothing of when nodes last reported: every node the store has as
    // Ready gets the grace from now, so one that died meanwhile still turns NotReady.
    let started = Instant::now();
    for node in list(&store, Kind::Node).await {
        if crate::controllers::common::node_ready(&node) {
            if let Some(name) = node.pointer("/metadata/name").and_then(Value::as_str) {
                lock(&memory).last_seen.entry(name.to_string()).or_insert(started);
            }
        }
    }
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let silent: Vec<String> = {
            let mut m = lock(&memory);
            let silent: Vec<String> =
                m.last_seen.iter().filter(|(_, t)| t.elapsed() > grace).map(|(n, _)| n.clone()).collect();
            for n in &silent {
                m.last_seen.remove(n);
            }
            silent
        };
        for node in silent {
            let message = format!("no report from the agent for {} s", grace.as_secs());
            mark_not_ready(&store, &node, "NodeStatusUnknown", &message).await;
        }
    }
}
