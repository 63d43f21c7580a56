//! Takes what nodes publish off the link: every message sized and paid for (`mqtt::budget`)
//! before it is decoded, then handed to one of the ingest workers by node (in order per node,
//! many nodes' writes in flight together), through per-worker backlogs (`backlog`), so a slow
//! store never holds up the link. Heartbeats are answered here: a node that is not registered,
//! or was silent, is nudged (`publish::Nudges`) for its report.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use flotilla_link::LinkEvent;
use flotilla_shared::wire::topics::{NodeTopic, Topics};
use flotilla_shared::wire::{self, Heartbeat, MessageKind, Presence, StatusReport};

use super::backlog::{Backlog, Item, Pushed};
use super::logs;
use super::publish::{Nudges, NUDGE_EVERY};
use super::take::{
    clip, take_events, take_presence, take_status, MAX_EVENTS_PER_BATCH, MAX_INBOUND, MAX_MESSAGE, MAX_REASON,
};
use super::{lock, NodeMemory};
use crate::mqtt::budget::{self, Verdict};
use crate::store::Store;

/// Workers taking status reports, presence and events into the store.
pub(super) const INGEST_WORKERS: usize = 16;

/// One ingest worker: its backlog and the wake-up the dispatcher gives it.
#[derive(Default)]
pub(super) struct Worker {
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
pub(super) async fn ingest_task(
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
