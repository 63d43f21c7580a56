//! The agent's side of the MQTT link: the node's desired snapshot in (applied only when its
//! generation is newer, and persisted before it is acted on, so a reboot without network runs
//! the same pods again), status reports, heartbeats and presence out. It runs on a thread of
//! its own with a single-threaded tokio runtime; the agent's loop stays synchronous and talks
//! to it through a shared snapshot and a channel.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use flotilla_link::{AgentConfig, Link, LinkConfig, LinkEvent};
use flotilla_shared::wire::topics::{NodeTopic, Topics};
use flotilla_shared::wire::{self, DesiredSnapshot, Event, Events, Heartbeat, Presence, StatusReport};

use crate::clock::unix_ms;
use crate::node::desired::{SnapshotFiles, MAX_SNAPSHOT};
use crate::node::hub_logs::LogServer;

/// A heartbeat this often between status reports.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// When a heartbeat tick sends the whole last report instead of a bare heartbeat. Status
/// reports are not retained, so one published while the hub is not subscribed (down,
/// starting, reconnecting) is gone, and the next is only sent on a change or after 5 minutes:
/// a new node would stay unregistered that long, a pod's new state unseen. So the next tick
/// repeats the report after each connect and after a desired state that is not newer (the hub
/// republishes every snapshot when it starts or its broker session is new: it may have missed
/// reports; a newer one makes a new report anyway), and every tick does until a desired state
/// for this node has come at all (the hub publishes one, empty or not, for every node it has
/// registered) or after the hub cleared it (the node was deleted; its next report registers
/// it again). A node that heartbeats unregistered gets its snapshot again, or a clear, from
/// the hub: either makes it repeat.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resend {
    repeat: bool,
    known_to_hub: bool,
}

impl Resend {
    pub fn connected(&mut self) {
        self.repeat = true;
    }

    /// A desired state for this node arrived; `applied` when it was newer.
    pub fn desired_seen(&mut self, applied: bool) {
        self.known_to_hub = true;
        self.repeat |= !applied;
    }

    /// The hub cleared this node's desired state.
    pub fn forgotten(&mut self) {
        self.known_to_hub = false;
    }

    /// At a heartbeat tick: whether to send the whole report.
    pub fn tick(&mut self) -> bool {
        let due = self.repeat || !self.known_to_hub;
        self.repeat = false;
        due
    }
}

/// The latest status report, waiting for the link: a newer one replaces it (each is complete),
/// so none that matters is dropped however busy the link is.
type Pending = Option<Box<StatusReport>>;

/// The loop's handle on the link.
#[derive(Debug, Clone)]
pub struct HubLink {
    pub node: String,
    snapshot: Arc<Mutex<Option<DesiredSnapshot>>>,
    out: Arc<tokio::sync::watch::Sender<Pending>>,
    events: tokio::sync::mpsc::Sender<Vec<Event>>,
}

impl HubLink {
    /// The last applied snapshot (from the hub, or persisted from before a restart).
    pub fn snapshot(&self) -> Option<DesiredSnapshot> {
        self.snapshot.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Hands a status report to the link (replacing one it has not sent yet). The link stamps
    /// its `seq` and `epoch` when it publishes it (`Counter`).
    pub fn send_status(&self, report: StatusReport) {
        self.out.send_replace(Some(Box::new(report)));
    }

    /// Hands events to the link. Best effort, like Kubernetes events: dropped when the link
    /// is down or far behind.
    pub fn send_events(&self, events: Vec<Event>) {
        if !events.is_empty() {
            let _ = self.events.try_send(events);
        }
    }
}

/// The numbers a published report carries (`StatusReport::seq` and `epoch`): every publish,
/// a repeat too, takes the next `seq`, so the hub takes a repeat after a reconnect instead of
/// dropping it as stale; the epoch is drawn when the process starts, so nothing needs to be
/// written per report (flash wear) and a restart, or a disk too full to write, never makes
/// the hub think new reports are old ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub epoch: u64,
    pub seq: u64,
}

impl Counter {
    pub fn new(epoch: u64) -> Counter {
        // 0 means "no epoch" on the wire.
        Counter { epoch: epoch.max(1), seq: 0 }
    }

    /// Stamps `r` with the next number.
    pub fn stamp(&mut self, r: &mut StatusReport) {
        self.seq += 1;
        r.seq = self.seq;
        r.epoch = self.epoch;
    }
}

/// A random epoch for this process (`Counter`); from the clocks and the pid if the OS has no
/// randomness to give.
fn draw_epoch() -> u64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    if let Ok(b) = std::fs::read("/proc/sys/kernel/random/uuid") {
        h.update(b);
    }
    h.update(std::process::id().to_le_bytes());
    h.update(format!("{:?}{:?}", std::time::SystemTime::now(), std::time::Instant::now()));
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
}

/// Pure: whether a received snapshot replaces the applied one.
pub fn accept(current: Option<&DesiredSnapshot>, incoming: &DesiredSnapshot, node: &str) -> bool {
    incoming.node == node && current.is_none_or(|c| incoming.generation > c.generation)
}

/// Starts the link thread. `files` hold the last applied snapshot across restarts; `wake` is
/// told when a new snapshot arrives.
pub fn start(
    cfg: AgentConfig,
    state_dir: PathBuf,
    files: SnapshotFiles,
    wake: std::sync::mpsc::Sender<()>,
) -> anyhow::Result<HubLink> {
    let topics = Topics::new(&cfg.topic_root).map_err(anyhow::Error::msg)?;
    let persisted = files.load(&cfg.node);
    if let Some(s) = &persisted {
        tracing::info!(
            generation = s.generation,
            pods = s.pods.len(),
            "running the last desired state until the hub is reached"
        );
    }
    let snapshot = Arc::new(Mutex::new(persisted));
    let (out_tx, out_rx) = tokio::sync::watch::channel::<Pending>(None);
    let (events_tx, events_rx) = tokio::sync::mpsc::channel::<Vec<Event>>(64);
    // A process lifetime's session id, so the hub can tell a late will of an earlier process.
    let session = unix_ms();
    let boot_id =
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_string();
    let presence = |online: bool| Presence {
        node: cfg.node.clone(),
        online,
        boot_id: boot_id.clone(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        session,
        time_ms: unix_ms(),
    };
    let link_cfg = LinkConfig {
        url: cfg.broker.parse().context("the broker URL in the agent configuration")?,
        client_id: cfg.node.clone(),
        username: cfg.username.clone(),
        password: cfg.password.clone(),
        ca_pem: cfg.ca_pem.clone().map(String::into_bytes),
        // A dead path (half-open TCP) is noticed after 1.5 keepalives.
        keep_alive: Duration::from_secs(15),
        subscriptions: vec![topics.desired(&cfg.node), topics.log_request(&cfg.node)],
        will: Some((topics.presence(&cfg.node), wire::encode(&presence(false)))),
        max_packet: (MAX_SNAPSHOT + 64 * 1024) as u32,
    };
    let handle = HubLink {
        node: cfg.node.clone(),
        snapshot: snapshot.clone(),
        out: Arc::new(out_tx),
        events: events_tx,
    };
    let online = wire::encode(&presence(true));
    std::thread::Builder::new().name("hub-link".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the hub link's runtime");
                return;
            }
        };
        let logs = LogServer::new(state_dir);
        rt.block_on(run(link_cfg, topics, cfg.node, snapshot, files, online, out_rx, events_rx, wake, logs));
    })?;
    Ok(handle)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    link_cfg: LinkConfig,
    topics: Topics,
    node: String,
    snapshot: Arc<Mutex<Option<DesiredSnapshot>>>,
    files: SnapshotFiles,
    online: Vec<u8>,
    mut out_rx: tokio::sync::watch::Receiver<Pending>,
    mut events_rx: tokio::sync::mpsc::Receiver<Vec<Event>>,
    wake: std::sync::mpsc::Sender<()>,
    mut logs: LogServer,
) {
    let (tx, mut rx) = mpsc::channel(64);
    let link = match Link::spawn(link_cfg, tx) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot start the hub link");
            return;
        }
    };
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    // Ticks missed while the thread was held up are not made up in a burst (the link being
    // down misses none: a connect resets the interval).
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_status: Option<StatusReport> = None;
    let mut counter = Counter::new(draw_epoch());
    let mut resend = Resend::default();
    // Ticks publish nothing while the link is down (the request queue would only fill with
    // stale copies); the connect sends the last report.
    let mut up = false;
    loop {
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { return };
                match event {
                    LinkEvent::Connected { .. } => {
                        up = true;
                        resend.connected();
                        // The repeat comes a full period after the connect, not at once.
                        heartbeat.reset();
                        let _ = link.publish(topics.presence(&node), online.clone(), true).await;
                        // The hub may have missed reports while we were away.
                        if let Some(r) = &mut last_status {
                            counter.stamp(r);
                            let _ = link.publish(topics.status(&node), wire::encode(&*r), false).await;
                        }
                    }
                    LinkEvent::Message { topic, payload } => match topics.parse_node_topic(&topic) {
                        Some((n, NodeTopic::Desired)) if n == node && payload.is_empty() => {
                            tracing::info!("the hub cleared this node's desired state (the node was deleted); keeping the last one");
                            resend.forgotten();
                        }
                        Some((n, NodeTopic::Desired)) if n == node => {
                            if let Some(applied) = take_snapshot(&node, &payload, &snapshot, &files, &wake) {
                                resend.desired_seen(applied);
                            }
                        }
                        Some((n, NodeTopic::LogRequest)) if n == node => logs.handle(&link, &topics, &node, &payload),
                        _ => {}
                    },
                    LinkEvent::Disconnected { .. } => up = false,
                }
            }
            changed = out_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                let Some(mut report) = out_rx.borrow_and_update().clone() else { continue };
                counter.stamp(&mut report);
                // Not queued (the link is down): the next connect sends the last report again.
                if let Err(e) = link.publish(topics.status(&node), wire::encode(report.as_ref()), false).await {
                    tracing::debug!(error = %e, "status report not queued");
                }
                last_status = Some(*report);
            }
            Some(events) = events_rx.recv() => {
                let batch = Events { node: node.clone(), events };
                if let Err(e) = link.publish(topics.events(&node), wire::encode(&batch), false).await {
                    tracing::debug!(error = %e, "events not queued");
                }
            }
            _ = heartbeat.tick(), if up => {
                if resend.tick() {
                    if let Some(r) = &mut last_status {
                        // Counts as a heartbeat too.
                        counter.stamp(r);
                        let _ = link.try_publish(topics.status(&node), wire::encode(&*r), false);
                        continue;
                    }
                }
                let generation = last_status.as_ref().map_or(0, |r| r.observed_generation);
                let hb = Heartbeat {
                    node: node.clone(),
                    seq: counter.seq,
                    observed_generation: generation,
                    time_ms: unix_ms(),
                    epoch: counter.epoch,
                };
                let _ = link.try_publish(topics.status(&node), wire::encode(&hb), false);
            }
        }
    }
}

/// Applies a received snapshot if it is newer: `None` when it is not a snapshot for this node,
/// else whether it was applied.
fn take_snapshot(
    node: &str,
    payload: &[u8],
    snapshot: &Mutex<Option<DesiredSnapshot>>,
    files: &SnapshotFiles,
    wake: &std::sync::mpsc::Sender<()>,
) -> Option<bool> {
    let incoming = match wire::decode::<DesiredSnapshot>(payload, MAX_SNAPSHOT) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring an undecodable desired state");
            return None;
        }
    };
    if incoming.node != node {
        return None;
    }
    let mut current = snapshot.lock().unwrap_or_else(|p| p.into_inner());
    if !accept(current.as_ref(), &incoming, node) {
        tracing::debug!(generation = incoming.generation, "ignoring a desired state that is not newer");
        return Some(false);
    }
    // Persisted before it is acted on: after a reboot with no network, this is what runs
    // (the flash is written only when that changes: `desired::reboot_digest`).
    match files.store(&incoming) {
        Ok(written) => tracing::debug!(written, "desired state kept"),
        Err(e) => tracing::error!(error = %e, "persisting the desired state; applying it anyway"),
    }
    tracing::info!(generation = incoming.generation, pods = incoming.pods.len(), "new desired state");
    *current = Some(incoming);
    let _ = wake.send(());
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_reports_are_repeated_when_the_hub_may_have_missed_them() {
        let mut r = Resend::default();
        assert!(r.tick() && r.tick(), "no desired state yet: the hub may not have registered us");
        r.connected();
        r.desired_seen(true);
        assert!(r.tick(), "the first tick after a connect repeats the report");
        assert!(!r.tick() && !r.tick(), "then bare heartbeats");
        r.connected();
        assert!(r.tick() && !r.tick(), "again after a reconnect");
        r.desired_seen(true);
        assert!(!r.tick(), "a newer desired state makes a new report by itself");
        r.desired_seen(false);
        assert!(r.tick() && !r.tick(), "the hub republished: it may have missed reports");
        r.forgotten();
        assert!(r.tick() && r.tick(), "the node was deleted: until the hub publishes for it again");
        r.desired_seen(true);
        assert!(!r.tick());
    }

    fn snap(node: &str, generation: u64) -> DesiredSnapshot {
        DesiredSnapshot {
            node: node.into(),
            generation,
            pods: vec![],
            config_maps: vec![],
            secrets: vec![],
            registry_auth: vec![],
            claims: vec![],
        }
    }

    #[test]
    fn every_published_report_repeats_included_takes_the_next_number() {
        let mut c = Counter::new(7);
        let mut r = StatusReport {
            node: "pi-1".into(),
            seq: 0,
            observed_generation: 1,
            time_ms: 0,
            info: Default::default(),
            conditions: vec![],
            pods: vec![],
            epoch: 0,
        };
        c.stamp(&mut r);
        assert_eq!((r.epoch, r.seq), (7, 1));
        c.stamp(&mut r);
        assert_eq!((r.epoch, r.seq), (7, 2), "a repeat is newer than what the hub has");
        assert_eq!(Counter::new(0).epoch, 1, "0 means no epoch on the wire");
        assert_ne!(draw_epoch(), draw_epoch(), "each process draws its own");
    }

    #[test]
    fn only_newer_snapshots_for_this_node_are_applied() {
        assert!(accept(None, &snap("pi-1", 1), "pi-1"));
        assert!(accept(Some(&snap("pi-1", 5)), &snap("pi-1", 6), "pi-1"));
        assert!(!accept(Some(&snap("pi-1", 5)), &snap("pi-1", 5), "pi-1"), "a duplicate (QoS 1)");
        assert!(!accept(Some(&snap("pi-1", 5)), &snap("pi-1", 4), "pi-1"), "reordered");
        assert!(!accept(None, &snap("pi-2", 9), "pi-1"), "another node's");
    }
}
