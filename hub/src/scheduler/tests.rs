//! Table tests for the scheduler, with Kubernetes' behaviour and messages.

use serde_json::{json, Value};

use super::*;

fn node(name: &str, extra: Value) -> Value {
    let mut n = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/arch": "arm64"}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "4", "memory": "4Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    });
    merge(&mut n, extra);
    n
}

fn merge(into: &mut Value, extra: Value) {
    match (into, extra) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn pod_value(name: &str, extra: Value) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    });
    merge(&mut p, extra);
    p
}

fn pod(name: &str, extra: Value) -> Pod {
    serde_json::from_value(pod_value(name, extra)).unwrap()
}

fn on(node: &str, name: &str, extra: Value) -> Value {
    let mut p = pod_value(name, extra);
    p["spec"]["nodeName"] = node.into();
    p
}

fn cluster(nodes: &[Value], pods: &[Value]) -> Cluster {
    Cluster::from_objects(nodes, pods, &[], &[])
}

fn three() -> Vec<Value> {
    vec![node("a", json!({})), node("b", json!({})), node("c", json!({}))]
}

fn owned(uid: &str) -> Value {
    json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}]}})
}

fn err(r: Result<String, Unschedulable>) -> String {
    r.expect_err("unschedulable").0
}

#[test]
fn replicas_spread_over_nodes() {
    let mut c = cluster(&three(), &[on("a", "web-1", owned("rs1")), on("b", "web-2", owned("rs1"))]);
    let p = pod("web-3", owned("rs1"));
    assert_eq!(schedule(&p, &c).unwrap(), "c");
    c.place(&p, "c");
    // Every node has one: the next goes to the first by name, then spreads again.
    let p4 = pod("web-4", owned("rs1"));
    assert_eq!(schedule(&p4, &c).unwrap(), "a");
    c.place(&p4, "a");
    assert_eq!(schedule(&pod("web-5", owned("rs1")), &c).unwrap(), "b");
    // Another controller's pods do not count.
    let c = cluster(&three(), &[on("a", "x", owned("other")), on("b", "y", owned("other"))]);
    assert_eq!(schedule(&pod("web-1", owned("rs1")), &c).unwrap(), "a");
}

#[test]
fn unschedulable_messages_count_reasons_per_node() {
    let nodes = vec![
        node("a", json!({"status": {"allocatable": {"memory": "1Gi"}}})),
        node("b", json!({"status": {"allocatable": {"memory": "1Gi"}}})),
        node("c", json!({"metadata": {"labels": {"disk": "hdd"}}})),
    ];
    let p = pod(
        "big",
        json!({"spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "x", "resources": {"requests": {"memory": "2Gi"}}}]}}),
    );
    // Nodes a and b lack the label too: a node fails at the first filter, NodeAffinity.
    assert_eq!(
        err(schedule(&p, &cluster(&nodes, &[]))),
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    );
    let nodes: Vec<Value> = nodes
        .into_iter()
        .enumerate()
        .map(|(i, mut n)| {
            if i < 2 {
                n["metadata"]["labels"]["disk"] = "ssd".into();
            }
            n
        })
        .collect();
    assert_eq!(
        err(schedule(&p, &cluster(&nodes, &[]))),
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient memory."
    );
    assert_eq!(err(schedule(&p, &cluster(&[], &[]))), "no nodes available to schedule pods");
}

#[test]
fn cordoned_and_not_ready_nodes_are_skipped() {
    let nodes = vec![
        node("a", json!({"spec": {"unschedulable": true}})),
        node("b", json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})),
        node("c", json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}})),
    ];
    assert_eq!(
        err(schedule(&pod("p", json!({})), &cluster(&nodes, &[]))),
        "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 1 node(s) were unschedulable."
    );
    // Tolerations open them (as DaemonSet pods have).
    let tolerant = pod(
        "ds",
        json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
        ]}}),
    );
    assert_eq!(schedule(&tolerant, &cluster(&nodes, &[])).unwrap(), "a");
    let everything = pod("any", json!({"spec": {"tolerations": [{"operator": "Exists"}]}}));
    assert!(schedule(&everything, &cluster(&nodes, &[])).is_ok());
}

#[test]
fn taints_and_tolerations() {
    let tainted = |effect: &str| {
        node("a", json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": effect}]}}))
    };
    let c = cluster(&[tainted("NoSchedule")], &[]);
    assert_eq!(
        err(schedule(&pod("p", json!({})), &c)),
        "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}."
    );
    let equal = pod(
        "p",
        json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}),
    );
    assert_eq!(schedule(&equal, &c).unwrap(), "a");
    let wrong_value = pod("p", json!({"spec": {"tolerations": [{"key": "dedicated", "value": "cpu"}]}}));
    assert!(schedule(&wrong_value, &c).is_err());
    let exists = pod("p", json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}}));
    assert_eq!(schedule(&exists, &c).unwrap(), "a");
    let other_effect = pod(
        "p",
        json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]}}),
    );
    assert!(schedule(&other_effect, &c).is_err());
    assert!(schedule(&pod("p", json!({})), &cluster(&[tainted("NoExecute")], &[])).is_err());
    // PreferNoSchedule only scores: the untainted node wins, the tainted one still serves.
    let soft = vec![tainted("PreferNoSchedule"), node("b", json!({}))];
    assert_eq!(schedule(&pod("p", json!({})), &cluster(&soft, &[])).unwrap(), "b");
    assert_eq!(schedule(&pod("p", json!({})), &cluster(&soft[..1], &[])).unwrap(), "a");
}

#[test]
fn toleration_matching_table() {
    let taint =
        Taint { key: "k".into(), value: Some("v".into()), effect: TaintEffect::NoSchedule, time_added: None };
    let t = |v: Value| -> Toleration { serde_json::from_value(v).unwrap() };
    let cases = [
        (json!({"key": "k", "value": "v"}), true),
        (json!({"key": "k", "value": "v", "effect": "NoSchedule"}), true),
        (json!({"key": "k", "value": "v", "effect": "NoExecute"}), false),
        (json!({"key": "k", "value": "w"}), false),
        (json!({"key": "k", "operator": "Exists"}), true),
        (json!({"operator": "Exists"}), true),
        (json!({"operator": "Exists", "effect": "PreferNoSchedule"}), false),
        (json!({"key": "other", "operator": "Exists"}), false),
        (json!({"value": "v"}), false),
    ];
    for (tol, want) in cases {
        assert_eq!(tolerates(&t(tol.clone()), &taint), want, "{tol}");
    }
}

#[test]
fn node_affinity_required_and_preferred() {
    let nodes = vec![
        node("a", json!({"metadata": {"labels": {"zone": "north"}}})),
        node("b", json!({"metadata": {"labels": {"zone": "south"}}})),
        node("c", json!({"metadata": {"labels": {"kubernetes.io/arch": "amd64"}}})),
    ];
    let c = cluster(&nodes, &[]);
    let required = pod(
        "p",
        json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["south"]}]},
        ]}}}}}),
    );
    assert_eq!(schedule(&required, &c).unwrap(), "b");
    let not_in = pod(
        "p",
        json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["north", "south"]}]},
        ]}}}}}),
    );
    assert_eq!(schedule(&not_in, &c).unwrap(), "c");
    let preferred = pod(
        "p",
        json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["north"]}]}},
            {"weight": 50, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["south"]}]}},
        ]}}}}),
    );
    assert_eq!(schedule(&preferred, &c).unwrap(), "b");
    // The agents' architecture label through nodeSelector.
    let amd = pod("p", json!({"spec": {"nodeSelector": {"kubernetes.io/arch": "amd64"}}}));
    assert_eq!(schedule(&amd, &c).unwrap(), "c");
}

#[test]
fn resources_and_pod_counts() {
    let nodes = vec![
        node("a", json!({"status": {"allocatable": {"cpu": "1", "pods": "1"}}})),
        node("b", json!({"status": {"allocatable": {"cpu": "500m"}}})),
    ];
    let with_cpu = |cpu: &str| json!({"spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}]}});
    let c = cluster(&nodes, &[on("a", "busy", json!({}))]);
    // "a" is full by count; "b" has 500m.
    assert_eq!(schedule(&pod("p", with_cpu("400m")), &c).unwrap(), "b");
    assert_eq!(
        err(schedule(&pod("p", with_cpu("600m")), &c)),
        "0/2 nodes are available: 1 Insufficient cpu, 1 Too many pods."
    );
    // A limit without a request is the request; an init container's request counts when larger.
    let limit_only = json!({"spec": {"containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": "600m"}}}]}});
    assert!(schedule(&pod("p", limit_only), &c).is_err());
    let init = json!({"spec": {
        "initContainers": [{"name": "i", "image": "x", "resources": {"requests": {"cpu": "600m"}}}],
        "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "100m"}}}]}});
    assert_eq!(requests(&pod("p", init)).cpu_milli, 600);
    // Finished pods take no room.
    let mut done = on("a", "done", json!({}));
    done["status"] = json!({"phase": "Succeeded"});
    let c = cluster(&nodes[..1], &[done]);
    assert_eq!(schedule(&pod("p", json!({})), &c).unwrap(), "a");
    // Least allocated: with equal spreading, the emptier node wins.
    let nodes = vec![node("a", json!({})), node("b", json!({}))];
    let c = cluster(&nodes, &[on("a", "hog", with_cpu("3"))]);
    assert_eq!(schedule(&pod("p", with_cpu("100m")), &c).unwrap(), "b");
}

#[test]
fn host_ports_conflict() {
    let port = |p: i32, ip: Option<&str>| {
        let mut port = json!({"containerPort": 80, "hostPort": p});
        if let Some(ip) = ip {
            port["hostIP"] = ip.into();
        }
        json!({"spec": {"containers": [{"name": "c", "image": "x", "ports": [port]}]}})
    };
    let nodes = vec![node("a", json!({})), node("b", json!({}))];
    let c = cluster(&nodes, &[on("a", "web", port(8080, None))]);
    assert_eq!(schedule(&pod("p", port(8080, None)), &c).unwrap(), "b");
    assert_eq!(
        schedule(
            &pod("p", port(8080, Some("10.0.0.1"))),
            &cluster(&nodes[..1], &[on("a", "w", port(8080, None))])
        )
        .ok(),
        None
    );
    let c = cluster(&nodes[..1], &[on("a", "web", port(8080, Some("10.0.0.1")))]);
    assert_eq!(schedule(&pod("p", port(8080, Some("10.0.0.2"))), &c).unwrap(), "a", "different host IPs");
    assert_eq!(
        err(schedule(&pod("p", port(8080, None)), &c)),
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
    );
}

fn anti(topology: &str) -> Value {
    json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": topology},
    ]}}}})
}

#[test]
fn anti_affinity_keeps_replicas_apart() {
    let mut c = cluster(&three(), &[]);
    let mut placed = Vec::new();
    for i in 0..3 {
        let p = pod(&format!("web-{i}"), anti("kubernetes.io/hostname"));
        let n = schedule(&p, &c).unwrap();
        c.place(&p, &n);
        placed.push(n);
    }
    placed.sort();
    assert_eq!(placed, ["a", "b", "c"]);
    // The placed pods' own rule is checked first (as Kubernetes' InterPodAffinity does).
    assert_eq!(
        err(schedule(&pod("web-3", anti("kubernetes.io/hostname")), &c)),
        "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules."
    );
    // Only the new pod's rule: a placed pod without one.
    let c2 = cluster(&three()[..1], &[on("a", "web-0", json!({}))]);
    assert_eq!(
        err(schedule(&pod("web-1", anti("kubernetes.io/hostname")), &c2)),
        "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules."
    );
    // A pod without the rule is kept off by the placed pods' own anti-affinity.
    assert_eq!(
        err(schedule(&pod("plain", json!({})), &c)),
        "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules."
    );
    // Other labels are not affected.
    let mut other = pod("db", json!({}));
    other.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    assert!(schedule(&other, &c).is_ok());
    // Zones: nodes without the key never clash.
    let zoned = vec![
        node("a", json!({"metadata": {"labels": {"zone": "1"}}})),
        node("b", json!({"metadata": {"labels": {"zone": "1"}}})),
        node("c", json!({})),
    ];
    let c = cluster(&zoned, &[on("a", "w", anti("zone"))]);
    assert_eq!(schedule(&pod("w2", anti("zone")), &c).unwrap(), "c");
}

#[test]
fn pod_affinity_follows_its_peers() {
    let follow = json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"},
    ]}}}});
    let mut db = on("b", "db", json!({}));
    db["metadata"]["labels"]["app"] = "db".into();
    assert_eq!(schedule(&pod("cache", follow.clone()), &cluster(&three(), &[db])).unwrap(), "b");
    assert_eq!(
        err(schedule(&pod("cache", follow), &cluster(&three(), &[]))),
        "0/3 nodes are available: 3 node(s) didn't match pod affinity rules."
    );
    // The first pod of a group with affinity to itself may start anywhere.
    let together = json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"},
    ]}}}});
    let mut c = cluster(&three(), &[]);
    let first = pod("w1", together.clone());
    let n = schedule(&first, &c).unwrap();
    c.place(&first, &n);
    assert_eq!(schedule(&pod("w2", together), &c).unwrap(), n);
    // Preferred anti-affinity spreads, preferred affinity gathers.
    let soft_anti = json!({"spec": {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}},
    ]}}}});
    let mut db = on("a", "db", json!({}));
    db["metadata"]["labels"]["app"] = "db".into();
    let two = vec![node("a", json!({})), node("b", json!({}))];
    assert_eq!(schedule(&pod("p", soft_anti), &cluster(&two, &[db.clone()])).unwrap(), "b");
    let soft = json!({"spec": {"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}},
    ]}}}});
    let mut db_b = db.clone();
    db_b["spec"]["nodeName"] = "b".into();
    assert_eq!(schedule(&pod("p", soft), &cluster(&two, &[db_b])).unwrap(), "b");
}

#[test]
fn claims_pin_pods_to_their_volumes() {
    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "disk-b"},
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "local": {"path": "/mnt/disk"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["b"]}]}]}}}});
    let claim = |name: &str, size: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"namespace": "default", "name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}})
    };
    let uses = |claim: &str| json!({"spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}});
    let c = Cluster::from_objects(
        &three(),
        &[],
        std::slice::from_ref(&pv),
        &[claim("data", "1Gi"), claim("huge", "1Ti")],
    );
    assert_eq!(schedule(&pod("db", uses("data")), &c).unwrap(), "b");
    assert_eq!(err(schedule(&pod("db", uses("missing")), &c)), "persistentvolumeclaim \"missing\" not found");
    assert_eq!(
        err(schedule(&pod("db", uses("huge")), &c)),
        "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."
    );
    let cordoned_b = vec![node("a", json!({})), node("b", json!({"spec": {"unschedulable": true}}))];
    let c = Cluster::from_objects(&cordoned_b, &[], &[pv], &[claim("data", "1Gi")]);
    assert_eq!(
        err(schedule(&pod("db", uses("data")), &c)),
        "0/2 nodes are available: 1 node(s) had volume node affinity conflict, 1 node(s) were unschedulable."
    );
}

#[test]
fn which_pods_the_scheduler_takes() {
    assert!(wants_scheduling(&pod("p", json!({}))));
    assert!(!wants_scheduling(&pod("p", json!({"spec": {"nodeName": "a"}}))));
    assert!(!wants_scheduling(&pod("p", json!({"spec": {"schedulerName": "other"}}))));
    assert!(!wants_scheduling(&pod("p", json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}))));
    assert!(!wants_scheduling(&pod("p", json!({"status": {"phase": "Failed"}}))));
}
