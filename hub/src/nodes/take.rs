//! Writes what a node reported into the store: its Node object (registered on its first
//! report if the hub issued it credentials, facts and labels restricted by `restrict`), its
//! pods' statuses (`ingest`, pure), its events, its presence; and marks nodes NotReady.

use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use flotilla_shared::api::Kind;
use flotilla_shared::wire::{self, Presence, StatusReport};

use super::{credentials, ingest, lock, restrict, NodeMemory};
use crate::clock::now_rfc3339;
use crate::store::objects::Mode;
use crate::store::{Store, WriteOp};

/// Largest payload decoded from a node (each topic has a smaller cap, `budget::max_size`).
pub(super) const MAX_INBOUND: usize = 1 << 20;

/// How often a node's unchanged status is written anyway (its `lastHeartbeatTime`).
pub(super) const HEARTBEAT_WRITE_SECS: i64 = 3600;

/// Whether the write went through (a failure is logged).
pub(super) async fn write(store: &Store, kind: Kind, object: Value, mode: Mode) -> bool {
    match store.write(WriteOp::Put { kind, object, mode }, false).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(kind = ?kind, error = %e, "writing a node's report");
            false
        }
    }
}

/// Most events taken from one batch: a node cannot flood the store.
pub(super) const MAX_EVENTS_PER_BATCH: usize = 100;
/// Longest event reason and message kept (characters).
pub(super) const MAX_REASON: usize = 128;
pub(super) const MAX_MESSAGE: usize = 1024;

/// Cuts `s` to at most `max` characters (and gives the rest of its memory back).
pub(super) fn clip(s: &mut String, max: usize) {
    if let Some((at, _)) = s.char_indices().nth(max) {
        s.truncate(at);
        s.shrink_to_fit();
    }
}

/// A node's events about its pods (and itself) become events of those objects, shown by
/// `describe`. Only pods bound to the node may be named: a node cannot write events about
/// another node's pods.
pub(super) async fn take_events(store: &Store, node: &str, events: Vec<wire::Event>) {
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

pub(super) async fn take_status(store: &Store, memory: &Mutex<NodeMemory>, r: StatusReport) {
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
pub(super) const MAX_PODS_PER_REPORT: usize = 256;

/// Records what was refused or clamped of a node's report as a Warning event on its Node,
/// once per distinct set of warnings per hub run (a node repeats its report every few
/// minutes; the event says it once).
pub(super) async fn warn_restricted(
    store: &Store,
    memory: &Mutex<NodeMemory>,
    node: &str,
    warnings: Vec<String>,
) {
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

pub(super) async fn take_presence(store: &Store, memory: &Mutex<NodeMemory>, node: &str, p: Presence) {
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

pub(super) async fn mark_not_ready(store: &Store, node: &str, reason: &str, message: &str) {
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
