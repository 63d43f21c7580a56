//! The ReplicaSet controller (pure): keeps `spec.replicas` live pods of the template, as
//! Kubernetes' ReplicaSet controller does. Deployments make one ReplicaSet per revision and move
//! replicas between them; this controller only counts.
//!
//! Pods that ended (Succeeded or Failed: a restartPolicy Always pod only ends when evicted or
//! killed by the node) are deleted and replaced. Scale down removes the pods that matter least
//! first: unbound, then not running, then not ready, then ready for the shortest time, then the
//! newest. Left out: slow-start batching of creates (a small hub writes them in one group commit).

use std::time::Duration;

use flotilla_shared::api::{Kind, Pod, PodPhase, ReplicaSet, WorkloadStatus};

use super::common;
use super::pods::{is_available, is_ready, is_terminal, node_of, phase, ready_condition};
use super::{pods, Action, Controller, Event, Lists};

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
    type Owner = ReplicaSet;

    fn reconcile(
        rs: &ReplicaSet,
        lists: &Lists,
        now: i64,
        suffix: &mut dyn FnMut() -> String,
    ) -> Vec<Action> {
        reconcile(rs, &lists.owned_by(&rs.metadata), now, suffix)
    }
}

/// Decides for one ReplicaSet. `pods` are the pods it controls.
pub fn reconcile(
    rs: &ReplicaSet,
    pods: &[&Pod],
    now: i64,
    mut suffix: impl FnMut() -> String,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let rs_name = rs.metadata.name();
    let want = rs.spec.replicas.unwrap_or(1).max(0) as usize;
    let min_ready = i64::from(rs.spec.min_ready_seconds.unwrap_or(0));
    let template = &rs.spec.template;
    let (ended, live): (Vec<&Pod>, Vec<&Pod>) =
        pods.iter().copied().filter(|p| !pods::is_deleting(p)).partition(|p| is_terminal(p));
    for p in &ended {
        let name = p.metadata.name();
        actions.push(Action::delete(Kind::Pod, name));
        actions.push(Event::normal("SuccessfulDelete", format!("Deleted pod: {name}")).into());
    }
    if live.len() > want {
        let mut ranked = live.clone();
        ranked.sort_by_key(|p| {
            let ready_since = ready_condition(p)
                .and_then(|c| c.last_transition_time.as_deref())
                .and_then(common::unix_seconds)
                .unwrap_or(0);
            (
                node_of(p).is_some(),
                phase(p) == PodPhase::Running,
                is_ready(p),
                std::cmp::Reverse(if is_ready(p) { ready_since } else { 0 }),
                std::cmp::Reverse(p.metadata.creation_timestamp.as_deref()),
                std::cmp::Reverse(p.metadata.name()),
            )
        });
        for p in ranked.iter().take(live.len() - want) {
            let name = p.metadata.name();
            actions.push(Action::delete(Kind::Pod, name));
            actions.push(Event::normal("SuccessfulDelete", format!("Deleted pod: {name}")).into());
        }
    }
    // At most 500 creates per round (as Kubernetes' burst limit): a typo like `replicas:
    // 2000000000` fills the store slowly instead of the hub's memory at once.
    for _ in live.len()..want.min(live.len() + MAX_CREATES) {
        let pod_name = format!("{rs_name}-{}", suffix());
        let mut pod = pods::pod_from_template(template, &pod_name, rs, &[]);
        if template.spec.node_name.as_deref().is_some_and(|n| !n.is_empty()) {
            let annotations = pod.metadata.annotations.get_or_insert_default();
            annotations.insert(super::lifecycle::PINNED_ANNOTATION.into(), "true".into());
        }
        actions.push(Action::create(Kind::Pod, pods::value(&pod)));
        actions.push(Event::normal("SuccessfulCreate", format!("Created pod: {pod_name}")).into());
    }
    let selector = rs.spec.selector.match_labels.as_ref();
    let fully_labeled = live
        .iter()
        .filter(|p| selector.is_none_or(|s| s.iter().all(|(k, v)| p.metadata.labels().get(k) == Some(v))))
        .count();
    let count = |n: usize| Some(n as i64);
    let status = WorkloadStatus {
        observed_generation: Some(pods::generation(&rs.metadata)),
        replicas: count(live.len()),
        fully_labeled_replicas: count(fully_labeled),
        ready_replicas: count(live.iter().filter(|p| is_ready(p)).count()),
        available_replicas: count(live.iter().filter(|p| is_available(p, min_ready, now)).count()),
        ..WorkloadStatus::default()
    };
    if rs.status.as_ref() != Some(&status) {
        actions.push(Action::UpdateStatus(pods::value(&status)));
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::workloads::parse;
    use serde_json::{json, Value};

    /// Runs the controller on JSON fixtures, parsed as the loop parses stored objects.
    fn run(rs: &Value, pods: &[Value], now: i64, suffix: impl FnMut() -> String) -> Vec<Action> {
        let rs: ReplicaSet = parse(Kind::ReplicaSet, rs).expect("a ReplicaSet");
        let pods: Vec<Pod> = pods.iter().map(|p| parse(Kind::Pod, p).expect("a pod")).collect();
        reconcile(&rs, &pods.iter().collect::<Vec<_>>(), now, suffix)
    }

    fn rs(replicas: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": "web-abc", "namespace": "default", "uid": "rs1", "generation": 2},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}},
                                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    }

    fn pod(name: &str, node: &str, phase: &str, ready_at: Option<i64>, created: i64) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name, "labels": {"app": "web"},
                                        "creationTimestamp": common::rfc3339(created)},
                           "spec": {"containers": []}, "status": {"phase": phase}});
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
        let actions = run(&rs(3), &[pod("web-abc-1", "a", "Running", Some(0), 0)], 100, || {
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
        assert_eq!(deletes(&run(&rs(3), &pods, 100, || "x".into())), ["unbound"]);
        assert_eq!(deletes(&run(&rs(2), &pods, 100, || "x".into())), ["unbound", "pending"]);
        assert_eq!(deletes(&run(&rs(1), &pods, 100, || "x".into())), ["unbound", "pending", "ready-new"]);
    }

    #[test]
    fn ended_pods_are_replaced() {
        let pods = [pod("ok", "a", "Running", Some(0), 0), pod("dead", "b", "Failed", None, 0)];
        let actions = run(&rs(2), &pods, 100, || "n".into());
        assert_eq!(deletes(&actions), ["dead"]);
        assert_eq!(creates(&actions).len(), 1);
    }

    #[test]
    fn availability_counts_min_ready_seconds_and_steady_state_is_quiet() {
        let mut r = rs(2);
        r["spec"]["minReadySeconds"] = 30.into();
        let pods = [pod("a", "a", "Running", Some(90), 0), pod("b", "b", "Running", Some(50), 0)];
        let actions = run(&r, &pods, 100, || "n".into());
        let Some(Action::UpdateStatus(s)) = actions.last() else { panic!("no status") };
        assert_eq!((s["readyReplicas"].as_i64(), s["availableReplicas"].as_i64()), (Some(2), Some(1)));
        r["status"] = s.clone();
        assert_eq!(run(&r, &pods, 100, || "n".into()), []);
    }

    #[test]
    fn a_huge_replica_count_is_created_in_bounded_rounds() {
        let actions = run(&rs(2_000_000_000), &[], 0, || "n".into());
        assert_eq!(creates(&actions).len(), MAX_CREATES);
    }

    #[test]
    fn a_template_node_name_pins_the_pods_and_garbage_does_not_panic() {
        let mut r = rs(1);
        r["spec"]["template"]["spec"]["nodeName"] = "pi".into();
        let actions = run(&r, &[], 0, || "n".into());
        assert_eq!(
            creates(&actions)[0]["metadata"]["annotations"][super::super::lifecycle::PINNED_ANNOTATION],
            "true"
        );
        // Garbage is refused at the loop's edge (logged and skipped), never a panic.
        for garbage in [json!(null), json!({"spec": "x"}), json!({"spec": {"replicas": "three"}})] {
            assert!(parse::<ReplicaSet>(Kind::ReplicaSet, &garbage).is_none());
        }
        for garbage in [json!(1), json!({"status": []})] {
            assert!(parse::<Pod>(Kind::Pod, &garbage).is_none());
        }
    }
}
