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
mod dispatch;
pub mod fleet;
pub mod ingest;
pub mod join;
mod lifecycle;
pub mod logs;
mod publish;
pub mod pusher;
pub mod restrict;
mod take;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use flotilla_link::{Link, LinkConfig};
use flotilla_shared::wire::topics::Topics;

use crate::store::Store;

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
    let nudges = Arc::new(publish::Nudges::default());
    tokio::spawn(publish::pusher_task(
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
    tokio::spawn(dispatch::ingest_task(
        store.clone(),
        rx,
        opts.topics.clone(),
        vec![republish, republish_fleet],
        memory.clone(),
        router.clone(),
        nudges,
    ));
    tokio::spawn(lifecycle::lifecycle_task(store, memory, opts.grace));
    Ok(NodeLink { link, topics: opts.topics, logs: router })
}

/// Locks `m`, also after a panic elsewhere poisoned it (the data is still consistent: every
/// holder only inserts or removes whole entries).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
