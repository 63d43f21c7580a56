//! What a node's reports change in the store (pure): pod statuses from a status report, the
//! Node object's status from node facts and readiness. Stale reports (an older sequence) and
//! reports about pods that are not bound to the reporting node are ignored.

use serde_json::{json, Value};

use flotilla_shared::api::{Condition, NodeAddress, NodeStatus, NodeSystemInfo, PodStatus};
use flotilla_shared::wire::{NodeInfo, PodReport};

/// The pod object with `report`'s status, if `report` is about this very pod (same uid),
/// `node` is where it is bound, and the status differs from the stored one.
/// `host_ip` is the node's first address: the pod's `hostIP`, and its `podIP` too when it uses
/// the host's network (as Kubernetes reports them).
pub fn pod_with_status(pod: &Value, node: &str, report: &PodReport, host_ip: Option<&str>) -> Option<Value> {
    let uid = pod.pointer("/metadata/uid").and_then(Value::as_str)?;
    let bound = pod.pointer("/spec/nodeName").and_then(Value::as_str)?;
    if uid != report.uid || bound != node {
        return None;
    }
    let mut status = serde_json::to_value(&report.status).ok()?;
    if let (Some(ip), Some(obj)) = (host_ip, status.as_object_mut()) {
        obj.entry("hostIP").or_insert_with(|| ip.into());
        let host_network = pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true);
        if host_network && obj.get("podIP").is_none_or(Value::is_null) {
            obj.insert("podIP".into(), ip.into());
            obj.insert("podIPs".into(), serde_json::json!([{"ip": ip}]));
        }
    }
    if pod.get("status") == Some(&status) {
        return None;
    }
    let mut next = pod.clone();
    next["status"] = status;
    Some(next)
}

/// Whether a report numbered (`epoch`, `seq`) is newer than the last one taken (`last`). A
/// new epoch is a new agent process (its count starts again): always newer, so a restarted
/// agent, or one whose disk was too full to keep anything, is heard at once. Within an epoch,
/// QoS 1 may duplicate or reorder: only a higher `seq` is newer.
pub fn is_fresh(last: Option<(u64, u64)>, epoch: u64, seq: u64) -> bool {
    last.is_none_or(|(e, s)| epoch != e || seq > s)
}

/// The Node object's status: capacity from the device's facts, addresses, system info, and a
/// Ready condition (`True` while the agent reports, `Unknown` once it went silent or offline).
/// `since` is when Ready last changed (kept when it did not), `now` the heartbeat time.
pub fn node_status(
    info: &NodeInfo,
    ready: Option<bool>,
    reason: &str,
    message: &str,
    since: &str,
    now: &str,
) -> NodeStatus {
    use flotilla_shared::quantity::Quantity;
    let capacity: std::collections::BTreeMap<String, Quantity> = [
        ("cpu", info.cpus.to_string()),
        ("memory", format!("{}Ki", info.memory_bytes / 1024)),
        ("pods", "110".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect();
    let mut addresses: Vec<NodeAddress> = info
        .addresses
        .iter()
        .map(|a| NodeAddress { type_: "InternalIP".into(), address: a.clone() })
        .collect();
    if !info.hostname.is_empty() {
        addresses.push(NodeAddress { type_: "Hostname".into(), address: info.hostname.clone() });
    }
    let status = match ready {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    };
    NodeStatus {
        capacity: Some(capacity.clone()),
        allocatable: Some(capacity),
        conditions: Some(vec![Condition {
            type_: "Ready".into(),
            status: status.into(),
            last_transition_time: Some(since.into()),
            last_heartbeat_time: Some(now.into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
        }]),
        addresses: Some(addresses),
        node_info: Some(NodeSystemInfo {
            architecture: info.arch.clone(),
            operating_system: info.os.clone(),
            kernel_version: info.kernel.clone(),
            os_image: Some(info.os_image.clone()),
            boot_id: info.boot_id.clone(),
            machine_id: None,
            agent_version: info.agent_version.clone(),
        }),
    }
}

/// The conditions an agent reports besides Ready (`DiskPressure`, ...), as Node conditions: a
/// transition time kept from `existing` (the stored Node) while the status stays, else `now`.
pub fn reported_conditions(
    reported: &[flotilla_shared::wire::NodeCondition],
    existing: Option<&Value>,
    now: &str,
) -> Vec<Condition> {
    let old = existing.and_then(|n| n.pointer("/status/conditions")).and_then(Value::as_array);
    reported
        .iter()
        .filter(|c| c.kind != "Ready" && !c.kind.is_empty())
        .take(16)
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let since = old
                .and_then(|cs| cs.iter().find(|o| o["type"] == c.kind.as_str() && o["status"] == status))
                .and_then(|o| o["lastTransitionTime"].as_str())
                .unwrap_or(now);
            Condition {
                type_: c.kind.chars().take(64).collect(),
                status: status.into(),
                last_transition_time: Some(since.into()),
                last_heartbeat_time: Some(now.into()),
                reason: Some(c.reason.chars().take(128).collect()),
                message: Some(c.message.chars().take(1024).collect()),
            }
        })
        .collect()
}

/// Whether two Node statuses differ only in their conditions' `lastHeartbeatTime`.
pub fn same_but_heartbeats(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(cs) = v.get_mut("conditions").and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                c.remove("lastHeartbeatTime");
            }
        }
        v
    };
    strip(a) == strip(b)
}

/// Seconds since the Ready condition's `lastHeartbeatTime` in a Node status, at `now`.
pub fn heartbeat_age_secs(status: &Value, now: time::OffsetDateTime) -> Option<i64> {
    let t = status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .get("lastHeartbeatTime")?
        .as_str()?;
    let t = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()?;
    Some((now - t).whole_seconds())
}

/// The Ready condition's status in a stored Node (`True`, `False`, `Unknown`) and since when.
pub fn ready_of(node: &Value) -> Option<(String, String)> {
    let conds = node.pointer("/status/conditions")?.as_array()?;
    let ready = conds.iter().find(|c| c["type"] == "Ready")?;
    Some((
        ready["status"].as_str()?.to_string(),
        ready["lastTransitionTime"].as_str().unwrap_or_default().to_string(),
    ))
}

/// A new Node object for a node that reports for the first time (nodes register themselves,
/// as kubelets do), with the labels `restrict::labels` allows it.
pub fn new_node(name: &str, labels: &std::collections::BTreeMap<String, String>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {},
    })
}

/// A status that says only what is unknown about a pod whose node went silent.
pub fn unknown_pod_status(mut status: PodStatus, message: &str) -> PodStatus {
    status.phase = Some(flotilla_shared::api::PodPhase::Unknown);
    status.reason = Some("NodeLost".into());
    status.message = Some(message.into());
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(uid: &str, phase: &str) -> PodReport {
        PodReport {
            namespace: "default".into(),
            name: "web".into(),
            uid: uid.into(),
            status: serde_json::from_value(json!({"phase": phase})).unwrap(),
        }
    }

    #[test]
    fn only_the_bound_pod_with_the_same_uid_takes_a_new_status() {
        let pod = json!({"metadata": {"name": "web", "uid": "u1"}, "spec": {"nodeName": "pi-1"}, "status": {"phase": "Pending"}});
        let next = pod_with_status(&pod, "pi-1", &report("u1", "Running"), None).unwrap();
        assert_eq!(next["status"]["phase"], "Running");
        assert_eq!(
            pod_with_status(&next, "pi-1", &report("u1", "Running"), None),
            None,
            "unchanged: no write"
        );
        assert_eq!(
            pod_with_status(&pod, "pi-2", &report("u1", "Running"), None),
            None,
            "another node's claim"
        );
        assert_eq!(
            pod_with_status(&pod, "pi-1", &report("u0", "Running"), None),
            None,
            "an older pod of the same name"
        );
        // The node's address: hostIP always, podIP too on the host's network.
        let with_ip = pod_with_status(&pod, "pi-1", &report("u1", "Running"), Some("10.0.0.5")).unwrap();
        assert_eq!(
            (with_ip["status"]["hostIP"].as_str(), with_ip["status"].get("podIP")),
            (Some("10.0.0.5"), None)
        );
        let mut host = pod.clone();
        host["spec"]["hostNetwork"] = true.into();
        let with_ip = pod_with_status(&host, "pi-1", &report("u1", "Running"), Some("10.0.0.5")).unwrap();
        assert_eq!(with_ip["status"]["podIP"], "10.0.0.5");
        let unbound = json!({"metadata": {"name": "web", "uid": "u1"}, "spec": {}});
        assert_eq!(pod_with_status(&unbound, "pi-1", &report("u1", "Running"), None), None);
    }

    #[test]
    fn stale_reports_are_ignored() {
        assert!(is_fresh(None, 0, 0));
        assert!(is_fresh(Some((0, 4)), 0, 5));
        assert!(!is_fresh(Some((0, 5)), 0, 5), "a duplicate (QoS 1)");
        assert!(!is_fresh(Some((0, 6)), 0, 5), "reordered");
        assert!(!is_fresh(Some((7, 6)), 7, 5), "reordered within an epoch");
        assert!(is_fresh(Some((7, 900)), 8, 1), "a restarted agent counts from 1 again");
        assert!(is_fresh(Some((7, 900)), 0, 1), "an agent from before epochs, restarted");
    }

    #[test]
    fn node_status_from_facts() {
        let info = NodeInfo {
            arch: "arm64".into(),
            os: "linux".into(),
            cpus: 4,
            memory_bytes: 4 << 30,
            hostname: "pi".into(),
            addresses: vec!["10.0.0.5".into()],
            ..Default::default()
        };
        let s = serde_json::to_value(node_status(&info, Some(true), "AgentReady", "ok", "t0", "t1")).unwrap();
        assert_eq!(s["capacity"]["cpu"], "4");
        assert_eq!(s["capacity"]["memory"], "4194304Ki");
        assert_eq!(s["conditions"][0]["status"], "True");
        assert_eq!(s["addresses"][0]["address"], "10.0.0.5");
        assert_eq!(s["nodeInfo"]["architecture"], "arm64");
        let node = json!({"status": s});
        assert_eq!(ready_of(&node), Some(("True".into(), "t0".into())));
    }

    #[test]
    fn reported_conditions_keep_their_transition_time_while_unchanged() {
        let c = |status: bool| flotilla_shared::wire::NodeCondition {
            kind: "DiskPressure".into(),
            status,
            reason: "r".into(),
            message: "m".into(),
            since_ms: 0,
        };
        let ready = flotilla_shared::wire::NodeCondition { kind: "Ready".into(), ..c(true) };
        let first = reported_conditions(&[ready, c(false)], None, "t1");
        assert_eq!(first.len(), 1, "Ready is the hub's own");
        assert_eq!(
            (first[0].status.as_str(), first[0].last_transition_time.as_deref()),
            ("False", Some("t1"))
        );
        let stored = json!({"status": {"conditions": [serde_json::to_value(&first[0]).unwrap()]}});
        let same = reported_conditions(&[c(false)], Some(&stored), "t2");
        assert_eq!(same[0].last_transition_time.as_deref(), Some("t1"));
        assert_eq!(same[0].last_heartbeat_time.as_deref(), Some("t2"));
        let changed = reported_conditions(&[c(true)], Some(&stored), "t3");
        assert_eq!(
            (changed[0].status.as_str(), changed[0].last_transition_time.as_deref()),
            ("True", Some("t3"))
        );
    }

    #[test]
    fn heartbeat_times_alone_are_no_change() {
        let a = json!({"capacity": {"cpu": "4"}, "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "t1"}]});
        let mut b = a.clone();
        b["conditions"][0]["lastHeartbeatTime"] = "t2".into();
        assert!(same_but_heartbeats(&a, &b));
        b["conditions"][0]["status"] = "False".into();
        assert!(!same_but_heartbeats(&a, &b));
        assert!(!same_but_heartbeats(&a, &json!({"capacity": {"cpu": "8"}, "conditions": a["conditions"]})));
        let now = time::OffsetDateTime::parse(
            "2026-01-01T01:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let st = json!({"conditions": [{"type": "Ready", "lastHeartbeatTime": "2026-01-01T00:00:30Z"}]});
        assert_eq!(heartbeat_age_secs(&st, now), Some(3570));
        assert_eq!(heartbeat_age_secs(&a, now), None, "unparseable");
    }
}
