//! The scheduler end to end, as root, with real containers: a hub and three agents, each on its
//! own "host" (a network namespace). A Deployment whose replicas keep apart (required
//! anti-affinity on the hostname) lands one pod per node; scaled to four, a fourth replica stays Pending with
//! Kubernetes' message and a FailedScheduling event; a nodeSelector picks its node; a pod
//! asking for more memory than any node has stays Pending. `cordon` keeps new pods off a node,
//! `drain` evicts its pods (the replacement waits, as anti-affinity allows no other node) and
//! `uncordon` lets the replacement run there again. A node cut off from the network turns
//! NotReady within 45 s; after the toleration its Deployment pod is replaced on another node while the
//! old container keeps running on the isolated device; when the link returns, the device stops
//! the duplicate.

use std::collections::BTreeMap;

use flotilla_tests::device::{alive, container_pid};
use flotilla_tests::fleet::{fleet, get_json, ok, ready, root, wait};
use flotilla_tests::Hub;
use serde_json::Value;

fn spread(replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: spread}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: spread}}}}
  template:
    metadata: {{labels: {{app: spread}}}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {{matchLabels: {{app: spread}}}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: main
        image: flotilla.local/busybox:demo
        imagePullPolicy: Never
        command: [sh, -c, 'while true; do sleep 1; done']
"
    )
}

const PICKY: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: picky}
spec:
  nodeSelector: {kubernetes.io/hostname: node-c}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: flotilla.local/busybox:demo
    imagePullPolicy: Never
    command: [sh, -c, 'while true; do sleep 1; done']
---
apiVersion: v1
kind: Pod
metadata: {name: greedy}
spec:
  containers:
  - name: main
    image: flotilla.local/busybox:demo
    imagePullPolicy: Never
    resources: {requests: {memory: 10Ti}}
";

/// Pods of the hub by name: (node, phase, PodScheduled message).
fn pods(hub: &Hub) -> BTreeMap<String, (String, String, String)> {
    let Some(list) = get_json(hub, &["get", "pods", "-o", "json"]) else { return BTreeMap::new() };
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let s = |ptr: &str| p.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_string();
            let msg = p["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
                .and_then(|c| c["message"].as_str())
                .unwrap_or_default()
                .to_string();
            (s("/metadata/name"), (s("/spec/nodeName"), s("/status/phase"), msg))
        })
        .collect()
}

fn spread_pods(hub: &Hub) -> Vec<(String, String, String, String)> {
    pods(hub)
        .into_iter()
        .filter(|(n, _)| n.starts_with("spread-"))
        .map(|(n, (node, phase, msg))| (n, node, phase, msg))
        .collect()
}

#[test]
fn pods_are_placed_by_the_scheduler_and_drains_move_them() {
    if !root() {
        return;
    }
    let tmp = flotilla_tests::tempdir();
    let (hub, mut nodes) = fleet(
        tmp.path(),
        &["node-a", "node-b", "node-c"],
        &["--node-grace-seconds", "20", "--not-ready-toleration-seconds", "5"],
    );
    for n in nodes.iter_mut() {
        n.start();
    }
    wait("three nodes Ready", &hub, &nodes, || ["node-a", "node-b", "node-c"].iter().all(|n| ready(&hub, n)));

    // One replica per node, each running there.
    ok(hub.cli(&["apply", "-f", "-"], Some(spread(3).as_bytes())));
    wait("three spread pods Running on three nodes", &hub, &nodes, || {
        let p = spread_pods(&hub);
        let nodes: std::collections::BTreeSet<&str> = p.iter().map(|(_, n, _, _)| n.as_str()).collect();
        p.len() == 3 && p.iter().all(|(_, _, phase, _)| phase == "Running") && nodes.len() == 3
    });

    // A fourth has nowhere to go.
    let out = ok(hub.cli(&["scale", "deployment", "spread", "--replicas", "4"], None));
    assert_eq!(out.trim(), "deployment.apps/spread scaled");
    let want = "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules.";
    wait("the fourth replica Pending with the scheduler's reason", &hub, &nodes, || {
        spread_pods(&hub)
            .iter()
            .any(|(_, node, phase, msg)| node.is_empty() && phase == "Pending" && msg == want)
    });
    let pending = spread_pods(&hub).into_iter().find(|(_, node, _, _)| node.is_empty()).unwrap().0;
    let described = ok(hub.cli(&["describe", "pod", &pending], None));
    assert!(described.contains("FailedScheduling") && described.contains(want), "{described}");
    // Scaling back removes the unplaced one, not a running one.
    ok(hub.cli(&["scale", "deployment/spread", "--replicas", "3"], None));
    let refused = hub.cli(&["scale", "configmap/x", "--replicas", "3"], None);
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("cannot be scaled")
    );
    wait("back to three, all placed", &hub, &nodes, || {
        let p = spread_pods(&hub);
        p.len() == 3
            && p.iter().all(|(_, node, _, _)| !node.is_empty())
            && !p.iter().any(|(n, ..)| n == &pending)
    });

    // nodeSelector, and a request no node can meet.
    ok(hub.cli(&["apply", "-f", "-"], Some(PICKY.as_bytes())));
    wait("picky Running on node-c, greedy Pending", &hub, &nodes, || {
        let p = pods(&hub);
        p.get("picky").is_some_and(|(node, phase, _)| node == "node-c" && phase == "Running")
            && p.get("greedy").is_some_and(|(node, _, msg)| {
                node.is_empty() && msg == "0/3 nodes are available: 3 Insufficient memory."
            })
    });
    ok(hub.cli(&["delete", "pod", "greedy", "picky"], None));

    // Drain node-a: its replica is evicted; the replacement cannot go anywhere else.
    let on_a = spread_pods(&hub).into_iter().find(|(_, node, _, _)| node == "node-a").unwrap().0;
    let out = ok(hub.cli(&["drain", "node-a", "--ignore-daemonsets", "--timeout", "60s"], None));
    assert!(out.contains("node/node-a cordoned") && out.contains("node/node-a drained"), "{out}");
    let nodes_table = ok(hub.cli(&["get", "nodes"], None));
    assert!(
        nodes_table.lines().any(|l| l.starts_with("node-a") && l.contains("Ready,SchedulingDisabled")),
        "{nodes_table}"
    );
    wait("the replacement Pending while node-a is cordoned", &hub, &nodes, || {
        let p = spread_pods(&hub);
        p.len() == 3
            && !p.iter().any(|(n, ..)| n == &on_a)
            && p.iter()
                .any(|(_, node, _, msg)| node.is_empty() && msg.contains("1 node(s) were unschedulable"))
    });
    let out = ok(hub.cli(&["uncordon", "node-a"], None));
    assert_eq!(out.trim(), "node/node-a uncordoned");
    wait("the replacement Running on node-a", &hub, &nodes, || {
        let p = spread_pods(&hub);
        p.len() == 3 && p.iter().any(|(_, node, phase, _)| node == "node-a" && phase == "Running")
    });
    ok(hub.cli(&["delete", "deployment", "spread"], None));
    wait("every pod gone", &hub, &nodes, || pods(&hub).is_empty());

    // A partition: the node turns NotReady, its pod is replaced elsewhere after the toleration
    // and keeps running on the isolated device until the link returns.
    ok(hub.cli(&["apply", "-f", "-"], Some(MOVER.as_bytes())));
    let running = |hub: &Hub| -> Option<(String, String, String)> {
        let list = get_json(hub, &["get", "pods", "-o", "json"])?;
        let p = list["items"].as_array()?.iter().find(|p| p["status"]["phase"] == "Running")?.clone();
        let s = |ptr: &str| p.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_string();
        Some((s("/metadata/name"), s("/spec/nodeName"), s("/metadata/uid")))
    };
    wait("the mover Running", &hub, &nodes, || running(&hub).is_some());
    let (old_name, old_node, old_uid) = running(&hub).unwrap();
    let cut = nodes.iter().position(|n| n.name == old_node).unwrap();
    let old_pid = container_pid(&nodes[cut].state, &old_uid, "main").expect("the mover's container");
    let cut_at = std::time::Instant::now();
    nodes[cut].ns.set_link(false);
    wait("the cut node NotReady", &hub, &nodes, || !ready(&hub, &old_node));
    let took = cut_at.elapsed();
    assert!(took <= std::time::Duration::from_secs(45), "NotReady after {took:?}, the bound is 45 s");
    wait("the mover replaced on another node", &hub, &nodes, || {
        running(&hub).is_some_and(|(name, node, _)| name != old_name && node != old_node)
    });
    assert!(!pods(&hub).contains_key(&old_name), "the evicted pod is gone from the hub");
    assert!(alive(old_pid), "the isolated device keeps running its pod while cut off");
    nodes[cut].ns.set_link(true);
    wait("the node Ready again", &hub, &nodes, || ready(&hub, &old_node));
    wait("the duplicate stopped on the returning node", &hub, &nodes, || !alive(old_pid));
    assert!(running(&hub).is_some_and(|(_, node, _)| node != old_node), "the replacement stays");
    ok(hub.cli(&["delete", "deployment", "mover"], None));
}

const MOVER: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: mover}
spec:
  replicas: 1
  selector: {matchLabels: {app: mover}}
  template:
    metadata: {labels: {app: mover}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [node-a, node-b]}]
      containers:
      - name: main
        image: flotilla.local/busybox:demo
        imagePullPolicy: Never
        command: [sh, -c, 'while true; do sleep 1; done']
";
