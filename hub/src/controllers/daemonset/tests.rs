//! The DaemonSet controller's table tests: rounds simulated over nodes that come, go, change
//! labels and taints, and rolling updates by maxUnavailable and maxSurge.

use super::*;
use crate::controllers::common::{name, str_at};
use crate::controllers::workloads::parse;
use common::rfc3339;
use flotilla_shared::api::Node;
use serde_json::json;

/// The controller run on JSON fixtures, parsed as the loop parses stored objects.
fn reconcile(
    ds: &Value,
    pods: &[Value],
    eligible_nodes: &[String],
    now: i64,
    suffix: impl FnMut() -> String,
) -> Vec<Action> {
    let pods: Vec<Pod> = pods.iter().map(|p| parse(Kind::Pod, p).expect("a pod")).collect();
    super::reconcile(&ds_of(ds), &pods.iter().collect::<Vec<_>>(), eligible_nodes, now, suffix)
}

fn ds_of(ds: &Value) -> DaemonSet {
    parse(Kind::DaemonSet, ds).expect("a DaemonSet")
}

const T0: i64 = 1_700_000_000;

fn daemonset(image: &str, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "edge", "uid": "ds-uid", "generation": 1},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": strategy,
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {
                    "containers": [{"name": "a", "image": image}],
                    "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                        "effect": "NoExecute", "tolerationSeconds": 600}],
                },
            },
        },
    })
}

/// The store as the controller's rounds leave it.
struct World {
    ds: Value,
    pods: Vec<Value>,
    names: usize,
}

impl World {
    fn new(ds: Value) -> World {
        World { ds, pods: Vec::new(), names: 0 }
    }

    /// One round: returns "create NODE" / "delete NODE" (sorted) and applies every action.
    fn round(&mut self, nodes: &[&str], now: i64) -> Vec<String> {
        let nodes: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
        let names = &mut self.names;
        let actions = reconcile(&self.ds, &self.pods, &nodes, now, || {
            *names += 1;
            format!("p{names}")
        });
        check(&actions);
        let mut summary = Vec::new();
        for a in actions {
            match a {
                Action::Create { object: mut p, .. } => {
                    summary.push(format!("create {}", str_at(&p, "/spec/nodeName")));
                    p["metadata"]["creationTimestamp"] = rfc3339(now).into();
                    self.pods.push(p);
                }
                Action::Delete { name: n, .. } => {
                    let i = self.pods.iter().position(|p| name(p) == n).expect("deleting a known pod");
                    summary.push(format!("delete {}", str_at(&self.pods[i], "/spec/nodeName")));
                    self.pods.remove(i);
                }
                Action::UpdateStatus(s) => self.ds["status"] = s,
                Action::Event { .. } | Action::Update { .. } => {}
            }
        }
        summary.sort();
        summary
    }

    /// Pods without a status start running and turn Ready at `at`.
    fn start(&mut self, at: i64) {
        for p in self.pods.iter_mut().filter(|p| p.get("status").is_none()) {
            p["status"] = ready_status(at);
        }
    }

    /// Changes the template (a new revision).
    fn update(&mut self, image: &str) {
        self.ds["spec"]["template"]["spec"]["containers"][0]["image"] = image.into();
        self.ds["metadata"]["generation"] =
            json!(self.ds["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
    }

    fn images(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .pods
            .iter()
            .map(|p| format!("{}={}", str_at(p, "/spec/nodeName"), str_at(p, "/spec/containers/0/image")))
            .collect();
        v.sort();
        v
    }

    fn status(&self, key: &str) -> i64 {
        self.ds["status"][key].as_i64().unwrap_or(-1)
    }
}

fn ready_status(at: i64) -> Value {
    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
        "lastTransitionTime": rfc3339(at)}]})
}

/// Every create has a SuccessfulCreate event and every delete a SuccessfulDelete one.
fn check(actions: &[Action]) {
    for a in actions {
        let (reason, n) = match a {
            Action::Create { object: p, .. } => ("SuccessfulCreate", format!("Created pod: {}", name(p))),
            Action::Delete { name: n, .. } => ("SuccessfulDelete", format!("Deleted pod: {n}")),
            _ => continue,
        };
        let event = Action::Event { warning: false, reason, message: n };
        assert!(actions.contains(&event), "{event:?} missing in {actions:?}");
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn daemonset_pods_go_where_selector_and_taints_allow_also_on_not_ready_nodes() {
    let node = |name: &str, labels: Value, taints: Value, ready: &str| {
        let n: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints, "unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": ready}]},
        }))
        .unwrap();
        NodeView::from_node(&n)
    };
    let nodes = [
        node("a", json!({"role": "edge"}), json!([]), "True"),
        node("b", json!({"role": "edge"}), json!([]), "Unknown"),
        node("c", json!({"role": "core"}), json!([]), "True"),
        node("d", json!({"role": "edge"}), json!([{"key": "gpu", "effect": "NoSchedule"}]), "True"),
    ];
    let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ds"},
        "spec": {"selector": {}, "template": {"spec": {"nodeSelector": {"role": "edge"},
        "containers": [{"name": "c", "image": "x"}]}}}});
    let none = HashSet::new();
    assert_eq!(eligible_nodes(&ds_of(&ds), &nodes, &none), ["a", "b"]);
    let mut tolerant = ds.clone();
    tolerant["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "gpu", "operator": "Exists"}]);
    assert_eq!(eligible_nodes(&ds_of(&tolerant), &nodes, &none), ["a", "b", "d"]);
    // A template that is no template is refused at the loop's edge.
    let mut broken = ds.clone();
    broken["spec"]["template"] = json!(3);
    assert!(parse::<DaemonSet>(Kind::DaemonSet, &broken).is_none());
    // A NoSchedule taint added later keeps new pods off, not the one already running.
    assert_eq!(eligible_nodes(&ds_of(&ds), &nodes, &HashSet::from(["d"])), ["a", "b", "d"]);
}

const NODES: [&str; 3] = ["n1", "n2", "n3"];

#[test]
fn one_bound_pod_per_eligible_node() {
    let ds = daemonset("img:1", json!({}));
    let actions = reconcile(&ds, &[], &strs(&NODES), T0, || "x".into());
    let pods: Vec<&Value> = actions
        .iter()
        .filter_map(|a| if let Action::Create { object: p, .. } = a { Some(p) } else { None })
        .collect();
    assert_eq!(pods.len(), 3);
    let p = pods[0];
    assert_eq!(p["metadata"]["name"], "agent-x");
    assert_eq!(p["metadata"]["namespace"], "edge");
    assert_eq!(p["spec"]["nodeName"], "n1");
    assert_eq!(pods::controller_uid(&parse::<Pod>(Kind::Pod, p).expect("a pod").metadata), Some("ds-uid"));
    let labels = &p["metadata"]["labels"];
    assert_eq!(labels["app"], "agent");
    assert_eq!(labels["controller-revision-hash"], common::hash(&ds["spec"]["template"]).as_str());
    assert_eq!(labels["pod-template-generation"], "1");
    // The template's not-ready toleration is kept (not duplicated), the other five added.
    let tol = p["spec"]["tolerations"].as_array().expect("tolerations");
    assert_eq!(tol.len(), 6);
    assert_eq!(tol[0]["tolerationSeconds"], 600);
    assert!(tol.contains(&json!({"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
        "effect": "NoSchedule"})));
    assert_eq!(default_tolerations().len(), 6);
    check(&actions);
    let status = actions.last().expect("status");
    assert!(matches!(status, Action::UpdateStatus(s) if s["desiredNumberScheduled"] == 3
        && s["currentNumberScheduled"] == 0 && s["numberUnavailable"] == 3));
}

#[test]
fn steady_state_needs_nothing() {
    let mut w = World::new(daemonset("img:1", json!({})));
    w.round(&NODES, T0);
    w.start(T0);
    assert!(w.round(&NODES, T0 + 1).is_empty());
    assert_eq!((w.status("numberReady"), w.status("numberAvailable")), (3, 3));
    assert_eq!((w.status("updatedNumberScheduled"), w.status("numberUnavailable")), (3, 0));
    let nodes = strs(&NODES);
    assert_eq!(reconcile(&w.ds, &w.pods, &nodes, T0 + 2, || "y".into()), vec![]);
}

#[test]
fn a_node_joining_later_gets_a_pod() {
    let mut w = World::new(daemonset("img:1", json!({})));
    assert_eq!(w.round(&["n1"], T0), ["create n1"]);
    assert_eq!(w.round(&["n1", "n2"], T0 + 1), ["create n2"]);
    assert_eq!(w.status("desiredNumberScheduled"), 2);
    assert_eq!(w.round(&["n1", "n2"], T0 + 2), Vec::<String>::new());
    assert_eq!(w.status("currentNumberScheduled"), 2);
}

#[test]
fn a_node_leaving_eligibility_loses_its_pod() {
    let mut w = World::new(daemonset("img:1", json!({})));
    w.round(&NODES, T0);
    w.start(T0);
    assert_eq!(w.round(&["n1", "n3"], T0 + 1), ["delete n2"]);
    assert_eq!(w.status("numberMisscheduled"), 1);
    w.round(&["n1", "n3"], T0 + 2);
    assert_eq!(w.status("numberMisscheduled"), 0);
    assert_eq!(w.images(), ["n1=img:1", "n3=img:1"]);
}

#[test]
fn duplicates_on_a_node_are_trimmed() {
    let mut w = World::new(daemonset("img:1", json!({})));
    w.round(&["n1"], T0);
    let mut newer = w.pods[0].clone();
    newer["metadata"]["name"] = "agent-newer".into();
    newer["metadata"]["creationTimestamp"] = rfc3339(T0 + 5).into();
    let mut older = newer.clone();
    older["metadata"]["name"] = "agent-older".into();
    older["metadata"]["creationTimestamp"] = rfc3339(T0 - 5).into();
    let mut stale = older.clone();
    stale["metadata"]["name"] = "agent-stale".into();
    stale["metadata"]["labels"]["controller-revision-hash"] = "old".into();
    w.pods.extend([newer, older, stale]);
    w.start(T0);
    // Updated beats the old revision, ready beats not ready, older beats newer.
    w.pods[0]["status"] = json!({"phase": "Pending"});
    assert_eq!(w.round(&["n1"], T0 + 10), ["delete n1", "delete n1", "delete n1"]);
    assert_eq!(w.pods.iter().map(name).collect::<Vec<_>>(), ["agent-older"]);
}

#[test]
fn failed_and_unbound_pods_are_deleted() {
    let mut w = World::new(daemonset("img:1", json!({})));
    w.round(&["n1"], T0);
    w.pods[0]["status"]["phase"] = "Failed".into();
    let mut unbound = w.pods[0].clone();
    unbound["metadata"]["name"] = "agent-unbound".into();
    if let Some(spec) = unbound["spec"].as_object_mut() {
        spec.remove("nodeName");
    }
    w.pods.push(unbound);
    let actions = reconcile(&w.ds, &w.pods, &strs(&["n1"]), T0, || "z".into());
    assert!(actions.contains(&Action::Event {
        warning: true,
        reason: "FailedDaemonPod",
        message: "Found failed daemon pod edge/agent-p1 on node n1, will try to kill it".into(),
    }));
    assert!(actions.contains(&Action::delete(Kind::Pod, "agent-unbound")));
    // Deleted this round, replaced the next.
    assert_eq!(w.round(&["n1"], T0 + 1), ["delete ", "delete n1"]);
    assert_eq!(w.round(&["n1"], T0 + 2), ["create n1"]);
}

#[test]
fn rolling_update_one_node_at_a_time() {
    let mut w = World::new(daemonset("img:1", json!({"type": "RollingUpdate"})));
    w.round(&NODES, T0);
    w.start(T0);
    w.round(&NODES, T0);
    w.update("img:2");
    let mut t = T0 + 10;
    for (i, node) in NODES.iter().enumerate() {
        assert_eq!(w.round(&NODES, t), [format!("delete {node}")], "step {i}");
        assert_eq!(w.round(&NODES, t + 1), [format!("create {node}")]);
        assert!(w.round(&NODES, t + 2).is_empty(), "waits for the new pod");
        assert_eq!(w.status("numberUnavailable"), 1);
        w.start(t + 3);
        t += 10;
    }
    assert!(w.round(&NODES, t).is_empty());
    assert_eq!(w.images(), ["n1=img:2", "n2=img:2", "n3=img:2"]);
    assert_eq!((w.status("updatedNumberScheduled"), w.status("observedGeneration")), (3, 2));
}

#[test]
fn unavailable_old_pods_go_first_and_use_the_budget() {
    let mut w = World::new(daemonset("img:1", json!({})));
    w.round(&NODES, T0);
    w.start(T0);
    w.pods[1]["status"] = json!({"phase": "Running"});
    w.update("img:2");
    assert_eq!(w.round(&NODES, T0 + 1), ["delete n2"]);
}

#[test]
fn max_unavailable_percentages() {
    let nodes: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
    let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
    for (max_unavailable, deleted) in
        [(json!("25%"), 3), (json!("10%"), 1), (json!("0%"), 1), (json!(4), 4), (json!("x"), 1)]
    {
        let mut w = World::new(daemonset(
            "img:1",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable}}),
        ));
        w.round(&refs, T0);
        w.start(T0);
        w.update("img:2");
        assert_eq!(w.round(&refs, T0 + 1).len(), deleted, "{max_unavailable}");
    }
}

#[test]
fn max_surge_creates_before_deleting() {
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "33%", "maxUnavailable": 0}});
    let mut w = World::new(daemonset("img:1", strategy));
    w.round(&NODES, T0);
    w.start(T0);
    w.update("img:2");
    let mut t = T0 + 10;
    for node in NODES {
        assert_eq!(w.round(&NODES, t), [format!("create {node}")]);
        assert!(w.round(&NODES, t + 1).is_empty(), "the old pod stays until the new one is available");
        assert_eq!(w.status("numberAvailable"), 3);
        w.start(t + 2);
        assert_eq!(w.round(&NODES, t + 3), [format!("delete {node}")]);
        t += 10;
    }
    assert!(w.round(&NODES, t).is_empty());
    assert_eq!(w.images(), ["n1=img:2", "n2=img:2", "n3=img:2"]);
}

#[test]
fn max_surge_replaces_unavailable_old_pods_at_once() {
    let mut w = World::new(daemonset("img:1", json!({"rollingUpdate": {"maxSurge": 1}})));
    w.round(&NODES, T0);
    w.start(T0);
    w.pods[1]["status"] = json!({"phase": "Running"});
    w.pods[2]["status"] = json!({"phase": "Running"});
    w.update("img:2");
    assert_eq!(w.round(&NODES, T0 + 1), ["create n1", "create n2", "create n3"]);
    // The old pods that are not ready give way at once.
    assert_eq!(w.round(&NODES, T0 + 2), ["delete n2", "delete n3"]);
}

#[test]
fn on_delete_leaves_old_pods() {
    let mut w = World::new(daemonset("img:1", json!({"type": "OnDelete"})));
    w.round(&NODES, T0);
    w.start(T0);
    w.update("img:2");
    assert!(w.round(&NODES, T0 + 1).is_empty());
    w.pods.remove(0);
    assert_eq!(w.round(&NODES, T0 + 2), ["create n1"]);
    assert_eq!(w.images(), ["n1=img:2", "n2=img:1", "n3=img:1"]);
    assert_eq!(w.status("updatedNumberScheduled"), 0);
}

#[test]
fn min_ready_seconds_delays_the_next_node() {
    let mut w = World::new(daemonset("img:1", json!({})));
    w.ds["spec"]["minReadySeconds"] = json!(30);
    w.round(&NODES, T0);
    w.start(T0 - 100);
    w.update("img:2");
    assert_eq!(w.round(&NODES, T0), ["delete n1"]);
    assert_eq!(w.round(&NODES, T0 + 1), ["create n1"]);
    w.start(T0 + 2);
    assert!(w.round(&NODES, T0 + 20).is_empty());
    assert_eq!((w.status("numberReady"), w.status("numberAvailable")), (3, 2));
    assert_eq!(w.round(&NODES, T0 + 32), ["delete n2"]);
}

#[test]
fn garbage_input_does_not_panic() {
    let pods = [
        json!(null),
        json!(7),
        json!({"metadata": {"name": 5}}),
        json!({"metadata": {"name": "p", "creationTimestamp": 3}, "spec": {"nodeName": 4},
            "status": {"conditions": "x"}}),
        json!({"metadata": {"name": "q", "labels": "x"}, "spec": {"nodeName": "n1"}, "status": 1}),
        json!({"metadata": {"name": "r"}, "spec": {"nodeName": "n2"}, "status": ready_status(T0)}),
    ];
    let bad_specs = [
        json!(null),
        json!("x"),
        json!({"template": "x", "updateStrategy": 3, "minReadySeconds": -5}),
        json!({"template": {"spec": "x", "metadata": {"labels": 1}},
            "updateStrategy": {"rollingUpdate": {"maxUnavailable": "9999999999999999999%", "maxSurge": -3}}}),
        json!({"template": {"spec": {"tolerations": {"a": 1}}},
            "updateStrategy": {"rollingUpdate": {"maxSurge": "-50%", "maxUnavailable": [1]}}}),
        json!({"updateStrategy": {"rollingUpdate": {"maxSurge": "99999999999999999%"}}}),
    ];
    // Garbage is refused at the loop's edge (logged and skipped).
    for p in &pods[..5] {
        assert!(parse::<Pod>(Kind::Pod, p).is_none(), "{p}");
    }
    for spec in bad_specs {
        let ds = json!({"metadata": {"name": "d", "generation": "x"}, "spec": spec, "status": 4});
        assert!(parse::<DaemonSet>(Kind::DaemonSet, &ds).is_none(), "{ds}");
    }
    assert!(parse::<DaemonSet>(Kind::DaemonSet, &json!([1])).is_none());
    // What parses does not panic: absurd budgets and minReadySeconds, extreme clocks.
    let mut ok = pods[5].clone();
    ok["apiVersion"] = "v1".into();
    ok["kind"] = "Pod".into();
    ok["spec"]["containers"] = json!([]);
    let nodes = strs(&["n1", "", "n2"]);
    for strategy in [
        json!({"rollingUpdate": {"maxUnavailable": "9999999999999999999%", "maxSurge": -3}}),
        json!({"rollingUpdate": {"maxSurge": "-50%", "maxUnavailable": "x%"}}),
        json!({"rollingUpdate": {"maxSurge": "99999999999999999%"}}),
    ] {
        let mut ds = daemonset("img:1", strategy);
        ds["spec"]["minReadySeconds"] = (-5).into();
        for now in [i64::MIN, i64::MAX] {
            check(&reconcile(&ds, std::slice::from_ref(&ok), &nodes, now, String::new));
        }
    }
}
