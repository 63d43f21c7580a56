//! The ReplicaSet controller (pure): keeps `spec.replicas` live pods of the template, as
//! Kubernetes' ReplicaSet controller does. Deployments make one ReplicaSet per revision and move
//! replicas between them; this controller only counts.
//!
//! Pods that ended (Succeeded or Failed: a restartPolicy Always pod only ends when evicted or
//! killed by the node) are deleted and replaced. Scale down removes the pods that matter least
//! first: unbound, then not running, then not ready, then ready for the shortest time, then the
//! newest. Left out: slow-start batching of creates (a small hub writes them in one group commit).

use serde_json::{json, Value};

use std::time::Duration;

use flotilla_shared::api::Kind;

use super::common::{self, int_at, is_available, is_ready, is_terminal, name, node_of, phase};
use super::{Action, Controller, Event, Lists};

/// Pods created per ReplicaSet and round at the most.
const MAX_CREATES: usize = 500;

/// The ReplicaSet controller's loop: its pods, on every change of ReplicaSets and pods.
pub struct ReplicaSets;

impl Controller for ReplicaSets {
    const KIND: Kind = Kind::ReplicaSet;
    const WATCHES: &'static [Kind] = &[Kind::ReplicaSet, Kind::Pod];
    const LISTS: &'static [Kind] = &[Kind::Pod];
    const RESYNC: Duration = Duration::from_secs(5);
    const SOURCE: &'static str = "replicaset-controller";

    fn reconcile(rs: &Value, lists: &Lists, now: i64, suffix: &mut dyn FnMut() -> String) -> Vec<Action> {
        reconcile(rs, lists.owned(Kind::Pod, rs), now, suffix)
    }
}

/// Decides for one ReplicaSet. `pods` are the pods it controls.
pub fn reconcile(rs: &Value, pods: &[Value], now: i64, mut suffix: impl FnMut() -> String) -> Vec<Action> {
    let mut actions = Vec::new();
    let rs_name = name(rs);
    let want = int_at(rs, "/spec/replicas").unwrap_or(1).max(0) as usize;
    let min_ready = int_at(rs, "/spec/minReadySeconds").unwrap_or(0);
    let template = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    let (ended, live): (Vec<&Value>, Vec<&Value>) =
        pods.iter().filter(|p| !common::is_deleting(p)).partition(|p| is_terminal(p));
    for p in &ended {
        actions.push(Action::delete(Kind::Pod, name(p)));
        actions.push(Event::normal("SuccessfulDelete", format!("Deleted pod: {}", name(p))).into());
    }
    if live.len() > want {
        let mut ranked = live.clone();
        ranked.sort_by_key(|p| {
            let ready_since = p
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .and_then(|c| c["lastTransitionTime"].as_str())
                .and_then(common::unix_seconds)
                .unwrap_or(0);
            (
                node_of(p).is_some(),
                phase(p) == "Running",
                is_ready(p),
                std::cmp::Reverse(if is_ready(p) { ready_since } else { 0 }),
                std::cmp::Reverse(p.pointer("/metadata/creationTimestamp").and_then(Value::as_str)),
                std::cmp::Reverse(name(p)),
            )
        });
        for p in ranked.iter().take(live.len() - want) {
            actions.push(Action::delete(Kind::Pod, name(p)));
            actions.push(Event::normal("SuccessfulDelete", format!("Deleted pod: {}", name(p))).into());
        }
    }
    // At most 500 creates per round (as Kubernetes' burst limit): a typo like `replicas:
    // 2000000000` fills the store slowly instead of the hub's memory at once.
    for _ in live.len()..want.min(live.len() + MAX_CREATES) {
        let pod_name = format!("{rs_name}-{}", suffix());
        let mut pod = common::pod_from_template(&template, &pod_name, rs, &[]);
        if template.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
            pod["metadata"]["annotations"][super::lifecycle::PINNED_ANNOTATION] = "true".into();
        }
        actions.push(Action::create(Kind::Pod, pod));
        actions.push(Event::normal("SuccessfulCreate", format!("Created pod: {pod_name}")).into());
    }
    let selector = rs.pointer("/spec/selector/matchLabels").and_then(Value::as_object);
    let fully_labeled = live
        .iter()
        .filter(|p| {
            selector.is_none_or(|s| {
                s.iter().all(|(k, v)| p.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v))
            })
        })
        .count();
    let status = json!({
        "observedGeneration": common::generation(rs),
        "replicas": live.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": live.iter().filter(|p| is_ready(p)).count(),
        "availableReplicas": live.iter().filter(|p| is_available(p, min_ready, now)).count(),
    });
    if rs.get("status") != Some(&status) {
        actions.push(Action::UpdateStatus(status));
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": "web-abc", "namespace": "default", "uid": "rs1", "generation": 2},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}},
                                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    }

    fn pod(name: &str, node: &str, phase: &str, ready_at: Option<i64>, created: i64) -> Value {
        let mut p = json!({"metadata": {"name": name, "labels": {"app": "web"},
                                        "creationTimestamp": common::rfc3339(created)},
                           "spec": {}, "status": {"phase": phase}});
        if !node.is_empty() {
            p["spec"]["nodeName"] = node.into();
        }
        if let Some(t) = ready_at {
            p["status"]["conditions"] =
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": common::rfc3339(t)}]);
        }
        p
    }

    fn deletes(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| if let Action::Delete { name, .. } = a { Some(name.as_str()) } else { None })
            .collect()
    }

    fn creates(actions: &[Action]) -> Vec<&Value> {
        actions
            .iter()
            .filter_map(|a| if let Action::Create { object, .. } = a { Some(object) } else { None })
            .collect()
    }

    #[test]
    fn creates_missing_pods_from_the_template_owned_by_the_replicaset() {
        let mut n = 0;
        let actions = reconcile(&rs(3), &[pod("web-abc-1", "a", "Running", Some(0), 0)], 100, || {
            n += 1;
            format!("s{n}")
        });
        let made = creates(&actions);
        assert_eq!(made.len(), 2);
        assert_eq!(made[0]["metadata"]["name"], "web-abc-s1");
        assert_eq!(made[0]["metadata"]["labels"]["pod-template-hash"], "abc");
        assert_eq!(made[0]["metadata"]["ownerReferences"][0]["uid"], "rs1");
        assert_eq!(made[0]["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        let Some(Action::UpdateStatus(s)) = actions.iter().find(|a| matches!(a, Action::UpdateStatus(_)))
        else {
            panic!("no status")
        };
        assert_eq!(s["replicas"], 1);
        assert_eq!(s["readyReplicas"], 1);
        assert_eq!(s["observedGeneration"], 2);
    }

    #[test]
    fn scale_down_removes_the_least_valuable_pods_first() {
        let pods = [
            pod("ready-old", "a", "Running", Some(10), 1),
            pod("ready-new", "b", "Running", Some(50), 2),
            pod("pending", "c", "Pending", None, 3),
            pod("unbound", "", "Pending", None, 4),
        ];
        assert_eq!(deletes(&reconcile(&rs(3), &pods, 100, || "x".into())), ["unbound"]);
        assert_eq!(deletes(&reconcile(&rs(2), &pods, 100, || "x".into())), ["unbound", "pending"]);
        assert_eq!(
            deletes(&reconcile(&rs(1), &pods, 100, || "x".into())),
            ["unbound", "pending", "ready-new"]
        );
    }

    #[test]
    fn ended_pods_are_replaced() {
        let pods = [pod("ok", "a", "Running", Some(0), 0), pod("dead", "b", "Failed", None, 0)];
        let actions = reconcile(&rs(2), &pods, 100, || "n".into());
        assert_eq!(deletes(&actions), ["dead"]);
        assert_eq!(creates(&actions).len(), 1);
    }

    #[test]
    fn availability_counts_min_ready_seconds_and_steady_state_is_quiet() {
        let mut r = rs(2);
        r["spec"]["minReadySeconds"] = 30.into();
        let pods = [pod("a", "a", "Running", Some(90), 0), pod("b", "b", "Running", Some(50), 0)];
        let actions = reconcile(&r, &pods, 100, || "n".into());
        let Some(Action::UpdateStatus(s)) = actions.last() else { panic!("no status") };
        assert_eq!((s["readyReplicas"].as_i64(), s["availableReplicas"].as_i64()), (Some(2), Some(1)));
        r["status"] = s.clone();
        assert_eq!(reconcile(&r, &pods, 100, || "n".into()), []);
    }

    #[test]
    fn a_huge_replica_count_is_created_in_bounded_rounds() {
        let actions = reconcile(&rs(2_000_000_000), &[], 0, || "n".into());
        assert_eq!(creates(&actions).len(), MAX_CREATES);
    }

    #[test]
    fn a_template_node_name_pins_the_pods_and_garbage_does_not_panic() {
        let mut r = rs(1);
        r["spec"]["template"]["spec"]["nodeName"] = "pi".into();
        let actions = reconcile(&r, &[], 0, || "n".into());
        assert_eq!(
            creates(&actions)[0]["metadata"]["annotations"][super::super::lifecycle::PINNED_ANNOTATION],
            "true"
        );
        for garbage in [json!(null), json!({"spec": "x"}), json!({"spec": {"replicas": "three"}})] {
            let _ = reconcile(&garbage, &[json!(1), json!({"status": []})], 0, || "n".into());
        }
    }
}
