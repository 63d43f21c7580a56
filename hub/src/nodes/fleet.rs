//! The JSON fleet topics for dashboards (Grafana, Node-RED, Home Assistant): a retained summary
//! per node (`fleet/nodes/{node}`) and per pod (`fleet/pods/{ns}/{name}`), cleared (empty
//! retained message) when the object goes (an object deleted while the hub was down keeps its
//! last summary until the topic is reused), and `fleet/events` for transitions (a node turning
//! Ready or NotReady, a pod changing phase), which are also recorded as events for `describe`.
//! Summaries are pure functions of the stored objects; the task publishes only what changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Notify;

use flotilla_link::Link;
use flotilla_shared::api::Kind;
use flotilla_shared::selector::LabelSelector;
use flotilla_shared::wire::topics::Topics;

use crate::store::{EventRecord, Store, WriteOp};

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn condition<'a>(v: &'a Value, kind: &str) -> Option<&'a Value> {
    v.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == kind)
}

/// A node's summary: readiness, what it is, and how many pods it should run. `heard` is when
/// the hub last heard from the node (its in-memory liveness, RFC 3339); without it the
/// stored `lastHeartbeatTime` stands in, which the hub writes at most hourly.
pub fn node_summary(node: &Value, pods: usize, heard: Option<&str>) -> Value {
    let ready = condition(node, "Ready");
    let info = node.pointer("/status/nodeInfo").cloned().unwrap_or(Value::Null);
    let stored_heartbeat = ready.map(|c| c["lastHeartbeatTime"].clone()).unwrap_or(Value::Null);
    json!({
        "name": s(node, "/metadata/name"),
        "ready": ready.is_some_and(|c| c["status"] == "True"),
        "reason": ready.map(|c| c["reason"].clone()).unwrap_or(Value::Null),
        "since": ready.map(|c| c["lastTransitionTime"].clone()).unwrap_or(Value::Null),
        "lastHeartbeat": heard.map_or(stored_heartbeat, Value::from),
        "unschedulable": node.pointer("/spec/unschedulable").and_then(Value::as_bool).unwrap_or(false),
        "arch": info["architecture"],
        "os": info["operatingSystem"],
        "osImage": info["osImage"],
        "kernel": info["kernelVersion"],
        "agentVersion": info["agentVersion"],
        "addresses": node.pointer("/status/addresses").cloned().unwrap_or(json!([])),
        "capacity": node.pointer("/status/capacity").cloned().unwrap_or(json!({})),
        "pods": pods,
        "labels": node.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
    })
}

/// A pod's summary: where it runs, its phase, readiness and containers.
pub fn pod_summary(pod: &Value) -> Value {
    let containers: Vec<Value> = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let state = c.get("state").and_then(Value::as_object);
            let (st, reason) = match state.and_then(|m| m.iter().next()) {
                Some((k, v)) => (k.clone(), v.get("reason").cloned().unwrap_or(Value::Null)),
                None => ("waiting".to_string(), Value::Null),
            };
            json!({"name": c["name"], "state": st, "reason": reason, "ready": c["ready"],
                   "restartCount": c["restartCount"], "image": c["image"]})
        })
        .collect();
    let restarts: i64 = containers.iter().filter_map(|c| c["restartCount"].as_i64()).sum();
    json!({
        "namespace": s(pod, "/metadata/namespace"),
        "name": s(pod, "/metadata/name"),
        "node": pod.pointer("/spec/nodeName").cloned().unwrap_or(Value::Null),
        "phase": pod.pointer("/status/phase").cloned().unwrap_or_else(|| json!("Pending")),
        "ready": condition(pod, "Ready").is_some_and(|c| c["status"] == "True"),
        "restarts": restarts,
        "podIP": pod.pointer("/status/podIP").cloned().unwrap_or(Value::Null),
        "startTime": pod.pointer("/status/startTime").cloned().unwrap_or(Value::Null),
        "containers": containers,
        "labels": pod.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
    })
}

/// A node summary's `lastHeartbeat` moves on only once it is this much newer than the one
/// published, so a steady fleet costs one retained message per node this often, not one per
/// heartbeat; dashboards see a time at most this old (plus a heartbeat period).
pub const HEARTBEAT_REFRESH: Duration = Duration::from_secs(30);

fn parse_time(v: &Value) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339).ok()
}

/// Pure: keeps the published `lastHeartbeat` in `summary` while the new one is less than
/// `refresh` newer, so that a heartbeat alone does not make a node's summary change.
pub fn settle_heartbeat(published: Option<&Value>, summary: &mut Value, refresh: Duration) {
    let Some(before) = published.map(|p| &p["lastHeartbeat"]) else { return };
    if let (Some(old), Some(new)) = (parse_time(before), parse_time(&summary["lastHeartbeat"])) {
        if new >= old && new - old < refresh {
            summary["lastHeartbeat"] = before.clone();
        }
    }
}

/// When the hub last heard from each node, on its own monotonic clock: the node link's
/// liveness, kept in memory (the Node's `lastHeartbeatTime` is written at most hourly).
#[derive(Clone, Default)]
pub struct Liveness(Option<Arc<dyn Fn() -> HashMap<String, Instant> + Send + Sync>>);

impl Liveness {
    /// The node link's memory of when each node was last seen.
    pub(super) fn of(memory: Arc<Mutex<super::NodeMemory>>) -> Liveness {
        Liveness(Some(Arc::new(move || super::lock(&memory).last_seen.clone())))
    }

    /// Each node's last contact as an RFC 3339 time, read once per round.
    fn heard(&self) -> Option<HashMap<String, String>> {
        let seen = (self.0.as_ref()?)();
        Some(wall_times(seen, time::OffsetDateTime::now_utc(), Instant::now()))
    }
}

/// Pure: monotonic instants as wall-clock times (RFC 3339, whole seconds), given one reading
/// of both clocks.
fn wall_times(
    seen: HashMap<String, Instant>,
    wall_now: time::OffsetDateTime,
    mono_now: Instant,
) -> HashMap<String, String> {
    seen.into_iter()
        .filter_map(|(node, at)| {
            let t = wall_now - mono_now.saturating_duration_since(at);
            let t = t.replace_nanosecond(0).unwrap_or(t);
            Some((node, t.format(&time::format_description::well_known::Rfc3339).ok()?))
        })
        .collect()
}

/// The transition between two summaries worth an event: (warning, reason, message).
pub fn transition(kind: Kind, before: Option<&Value>, after: &Value) -> Option<(bool, String, String)> {
    match kind {
        Kind::Node => {
            let (was, is) = (before.map(|b| b["ready"] == true), after["ready"] == true);
            if was == Some(is) || (was.is_none() && !is) {
                return None;
            }
            let name = after["name"].as_str().unwrap_or_default();
            Some(if is {
                (false, "NodeReady".into(), format!("Node {name} status is now: NodeReady"))
            } else {
                (true, "NodeNotReady".into(), format!("Node {name} status is now: NodeNotReady"))
            })
        }
        Kind::Pod => {
            let is = after["phase"].as_str().unwrap_or_default();
            if before.is_some_and(|b| b["phase"] == after["phase"]) {
                return None;
            }
            let warning = is == "Failed";
            Some((warning, format!("Pod{is}"), format!("pod phase is now {is}")))
        }
        _ => None,
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Publishes the fleet topics from the store; everything again when `republish` fires (the
/// broker lost its retained messages). Node summaries' `lastHeartbeat` is when the hub last
/// heard from the node (`liveness`), refreshed every [`HEARTBEAT_REFRESH`] even when nothing
/// is written.
pub async fn task(store: Store, link: Link, topics: Topics, republish: Arc<Notify>, liveness: Liveness) {
    let mut feed = store.subscribe();
    let mut refresh = tokio::time::interval(HEARTBEAT_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let live = liveness.0.is_some();
    let mut published: HashMap<String, Value> = HashMap::new();
    let mut first = true;
    // How long the last round took (`controllers::settle`).
    let mut busy = Duration::ZERO;
    loop {
        if !first {
            tokio::select! {
                r = feed.recv() => match r {
                    Ok(c) if !matches!(c.kind, Kind::Pod | Kind::Node) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    _ => {}
                },
                // Publish everything again, but remember what is retained, so that objects
                // deleted meanwhile are still cleared.
                _ = republish.notified() => published.values_mut().for_each(|v| *v = Value::Null),
                // Heartbeats are not written to the store: look at them now and then.
                _ = refresh.tick(), if live => {}
            }
            // Coalesce bursts; deletions are found by comparing with what was published.
            tokio::time::sleep(crate::controllers::settle(Duration::from_millis(200), busy)).await;
            while feed.try_recv().is_ok() {}
        }
        first = false;
        let started = std::time::Instant::now();
        let list = |k| {
            let store = store.clone();
            async move { store.list(k, None, &LabelSelector::default()).await.map(|(v, _)| v).unwrap_or_default() }
        };
        let (nodes, pods) = (list(Kind::Node).await, list(Kind::Pod).await);
        let mut per_node: HashMap<&str, usize> = HashMap::new();
        for p in &pods {
            *per_node.entry(s(p, "/spec/nodeName")).or_default() += 1;
        }
        let mut current: std::collections::HashSet<String> = std::collections::HashSet::new();
        let heard = liveness.heard().unwrap_or_default();
        let node_summaries: Vec<_> = nodes
            .iter()
            .map(|n| {
                let name = s(n, "/metadata/name");
                let topic = topics.fleet_node(name);
                let mut summary =
                    node_summary(n, *per_node.get(name).unwrap_or(&0), heard.get(name).map(String::as_str));
                settle_heartbeat(
                    published.get(&topic).filter(|p| !p.is_null()),
                    &mut summary,
                    HEARTBEAT_REFRESH,
                );
                (Kind::Node, n, topic, summary)
            })
            .collect();
        let summaries = node_summaries.into_iter().chain(pods.iter().map(|p| {
            (
                Kind::Pod,
                p,
                topics.fleet_pod(s(p, "/metadata/namespace"), s(p, "/metadata/name")),
                pod_summary(p),
            )
        }));
        for (kind, obj, topic, summary) in summaries {
            current.insert(topic.clone());
            let before = published.get(&topic);
            if before == Some(&summary) {
                continue;
            }
            // After a republish the old summary is unknown (Null): no transition to report.
            let known = before.filter(|b| !b.is_null());
            if let Some((warning, reason, message)) =
                transition(kind, known, &summary).filter(|_| before.is_none() || known.is_some())
            {
                let t = now();
                let (ns, name) =
                    (s(obj, "/metadata/namespace").to_string(), s(obj, "/metadata/name").to_string());
                let event = json!({"time": t, "kind": kind.info().kind, "namespace": ns, "name": name,
                                   "type": if warning { "Warning" } else { "Normal" }, "reason": reason, "message": message});
                let _ = link.publish(topics.fleet_events(), event.to_string().into_bytes(), false).await;
                if kind == Kind::Node && known.is_some() {
                    let record = EventRecord {
                        namespace: ns,
                        kind: kind.info().kind.to_string(),
                        name,
                        uid: s(obj, "/metadata/uid").to_string(),
                        type_: if warning { "Warning" } else { "Normal" }.into(),
                        reason,
                        message,
                        source: "node-controller".into(),
                        count: 1,
                        first_time: t.clone(),
                        last_time: t,
                    };
                    let _ = store.write(WriteOp::Event(record), false).await;
                }
            }
            match link.publish(topic.clone(), summary.to_string().into_bytes(), true).await {
                Ok(()) => {
                    published.insert(topic, summary);
                }
                Err(e) => tracing::debug!(topic, error = %e, "fleet topic not published"),
            }
        }
        // Objects that are gone: an empty retained message clears their topic.
        let gone: Vec<String> = published.keys().filter(|t| !current.contains(*t)).cloned().collect();
        for topic in gone {
            if link.publish(topic.clone(), Vec::new(), true).await.is_ok() {
                published.remove(&topic);
            }
        }
        busy = started.elapsed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_carry_what_dashboards_show() {
        let node = json!({"metadata": {"name": "pi-1", "labels": {"kubernetes.io/arch": "arm64"}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "AgentReady",
                                        "lastTransitionTime": "t0", "lastHeartbeatTime": "t1"}],
                       "nodeInfo": {"architecture": "arm64", "operatingSystem": "linux", "agentVersion": "0.1.0"}}});
        let n = node_summary(&node, 3, None);
        assert_eq!(
            (n["name"].as_str(), n["ready"].as_bool(), n["pods"].as_u64()),
            (Some("pi-1"), Some(true), Some(3))
        );
        assert_eq!(n["arch"], "arm64");
        assert_eq!(n["lastHeartbeat"], "t1", "without the hub's liveness, the stored heartbeat");
        let heard = node_summary(&node, 3, Some("2026-12-07T10:00:00Z"));
        assert_eq!(heard["lastHeartbeat"], "2026-12-07T10:00:00Z", "when the hub last heard from it");
        let pod = json!({"metadata": {"namespace": "default", "name": "web"}, "spec": {"nodeName": "pi-1"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "main", "ready": true, "restartCount": 2,
                                              "state": {"running": {"startedAt": "t"}}}]}});
        let p = pod_summary(&pod);
        assert_eq!(
            (p["node"].as_str(), p["phase"].as_str(), p["restarts"].as_i64()),
            (Some("pi-1"), Some("Running"), Some(2))
        );
        assert_eq!(p["containers"][0]["state"], "running");
    }

    #[test]
    fn a_heartbeat_moves_the_summary_only_every_refresh_period() {
        let summary = |t: &str| json!({"name": "pi-1", "ready": true, "lastHeartbeat": t});
        let check = |published: Option<&str>, new: &str, expected: &str| {
            let mut s = summary(new);
            settle_heartbeat(published.map(summary).as_ref(), &mut s, Duration::from_secs(30));
            assert_eq!(s, summary(expected), "published {published:?}, heard {new}");
        };
        check(None, "2026-12-07T10:00:00Z", "2026-12-07T10:00:00Z");
        check(Some("2026-12-07T10:00:00Z"), "2026-12-07T10:00:10Z", "2026-12-07T10:00:00Z");
        check(Some("2026-12-07T10:00:00Z"), "2026-12-07T10:00:29Z", "2026-12-07T10:00:00Z");
        check(Some("2026-12-07T10:00:00Z"), "2026-12-07T10:00:30Z", "2026-12-07T10:00:30Z");
        check(Some("2026-12-07T10:00:00Z"), "2026-12-07T11:00:00Z", "2026-12-07T11:00:00Z");
        // An older time (the hub restarted and fell back to the stored one) is shown as it is.
        check(Some("2026-12-07T10:00:00Z"), "2026-12-07T09:00:00Z", "2026-12-07T09:00:00Z");
        // A summary published before without a time.
        let mut s = summary("2026-12-07T10:00:00Z");
        settle_heartbeat(Some(&json!({"lastHeartbeat": null})), &mut s, Duration::from_secs(30));
        assert_eq!(s["lastHeartbeat"], "2026-12-07T10:00:00Z");
    }

    #[test]
    fn liveness_reads_the_node_links_memory_as_wall_clock_times() {
        let memory = Arc::new(Mutex::new(super::super::NodeMemory::default()));
        assert_eq!(Liveness::default().heard(), None, "no liveness: the stored heartbeat");
        let liveness = Liveness::of(memory.clone());
        assert_eq!(liveness.heard(), Some(HashMap::new()));
        memory.lock().unwrap().last_seen.insert("pi-1".into(), Instant::now());
        assert!(liveness.heard().unwrap().contains_key("pi-1"));

        let mono = Instant::now();
        let wall = time::OffsetDateTime::parse(
            "2026-12-07T10:00:00.750Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let seen =
            HashMap::from([("pi-1".to_string(), mono - Duration::from_secs(10)), ("pi-2".to_string(), mono)]);
        let times = wall_times(seen, wall, mono);
        assert_eq!(times["pi-1"], "2026-12-07T09:59:50Z");
        assert_eq!(times["pi-2"], "2026-12-07T10:00:00Z");
    }

    #[test]
    fn only_transitions_make_events() {
        let ready = json!({"name": "pi-1", "ready": true});
        let not = json!({"name": "pi-1", "ready": false});
        assert_eq!(transition(Kind::Node, None, &not), None, "a new node that is not ready yet");
        assert_eq!(transition(Kind::Node, None, &ready).unwrap().1, "NodeReady");
        assert_eq!(transition(Kind::Node, Some(&ready), &ready), None);
        let t = transition(Kind::Node, Some(&ready), &not).unwrap();
        assert!(t.0 && t.1 == "NodeNotReady");
        let running = json!({"phase": "Running"});
        assert_eq!(transition(Kind::Pod, Some(&running), &running), None);
        assert_eq!(
            transition(Kind::Pod, Some(&json!({"phase": "Pending"})), &running).unwrap().1,
            "PodRunning"
        );
    }
}
