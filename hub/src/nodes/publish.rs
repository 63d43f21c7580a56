//! Publishes every node's desired snapshot (retained, QoS 1) when its content changes, under a
//! generation that only grows (the store's revision); everything again after the broker lost
//! its state; a deleted node's snapshot cleared; nudged nodes (`Nudges`) get theirs again.
//! What a snapshot holds is decided by `pusher` (pure); this task does the I/O.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Notify;

use flotilla_link::Link;
use flotilla_shared::api::Kind;
use flotilla_shared::selector::LabelSelector;
use flotilla_shared::wire::{self, topics::Topics};

use super::{lock, pusher};
use crate::controllers::settle;
use crate::store::{ChangeOp, Store};

/// Nodes whose snapshot the pusher publishes again even though it did not change: nodes that
/// heartbeat without being registered (their first report went unheard). A snapshot that is
/// not newer makes an agent repeat its whole report.
#[derive(Default)]
pub(super) struct Nudges {
    nodes: Mutex<std::collections::BTreeSet<String>>,
    wake: Notify,
}

impl Nudges {
    pub(super) fn add(&self, node: &str) {
        lock(&self.nodes).insert(node.to_string());
        self.wake.notify_one();
    }

    pub(super) fn take(&self) -> std::collections::BTreeSet<String> {
        std::mem::take(&mut *lock(&self.nodes))
    }
}

/// At most one nudge per node this often.
pub(super) const NUDGE_EVERY: Duration = Duration::from_secs(30);

pub(super) async fn list(store: &Store, kind: Kind) -> Vec<Value> {
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
pub(super) async fn pusher_task(
    store: Store,
    link: Link,
    topics: Topics,
    republish: Arc<Notify>,
    nudges: Arc<Nudges>,
) {
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
pub(super) fn nudge(nudges: &Nudges, published: &mut BTreeMap<String, [u8; 32]>, dirty: &mut pusher::Dirty) {
    for node in nudges.take() {
        published.insert(node.clone(), [0; 32]);
        dirty.nodes.insert(node);
    }
}

/// Nodes, pods, ConfigMaps, Secrets, volumes and claims for a round: every node and pod, or
/// only the dirty nodes and the pods bound to them.
pub(super) async fn read_inputs(
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
