//! Faults, end to end, as root, with real containers and agents in network namespaces of their
//! own. Each scenario asserts convergence within a stated bound.
//!
//! - A half-open link (every packet between an agent and the broker silently dropped, both
//!   ways, by iptables in the agent's namespace) with the hub's default settings: the node is
//!   NotReady within 45 s; its pod keeps running; a change made meanwhile reaches it once the
//!   path returns (the agent's keepalive notices the dead connection and reconnects), the node
//!   is Ready again and nothing was restarted.
//! - The hub SIGKILLed in the middle of a rolling update: after the restart the rollout
//!   completes, with the acknowledged template.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use flotilla_tests::device::{alive, container_pid};
use flotilla_tests::fleet::{fleet, get_json, ok, ready, root, wait};
use flotilla_tests::Hub;
use serde_json::Value;

const IMAGE: &str = "flotilla.local/busybox:demo";

fn pod(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: Never
    command: [sh, -c, 'while true; do sleep 1; done']
"
    )
}

/// Pod name -> (uid, node, phase).
fn pods(hub: &Hub) -> BTreeMap<String, (String, String, String, bool)> {
    let Some(list) = get_json(hub, &["get", "pods", "-o", "json"]) else { return BTreeMap::new() };
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let s = |ptr: &str| p.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_string();
            let ready = p["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            (s("/metadata/name"), (s("/metadata/uid"), s("/spec/nodeName"), s("/status/phase"), ready))
        })
        .collect()
}

fn iptables(netns: &str, op: &str, port: u16) {
    for rule in [["OUTPUT", "--dport"], ["INPUT", "--sport"]] {
        let st = Command::new("ip")
            .args(["netns", "exec", netns, "iptables", op, rule[0], "-p", "tcp", rule[1], &port.to_string()])
            .args(["-j", "DROP"])
            .status()
            .expect("iptables");
        assert!(st.success(), "iptables {op} {rule:?} in {netns}");
    }
}

fn mqtt_port(hub: &Hub) -> u16 {
    let listen = hub.args.iter().skip_while(|a| *a != "--mqtt-listen").nth(1).expect("--mqtt-listen");
    listen.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
}

#[test]
fn a_half_open_link_is_detected_and_healed_without_restarts() {
    if !root() {
        return;
    }
    let tmp = flotilla_tests::tempdir();
    // The hub's defaults: NotReady 40 s after the last sign of life.
    let (hub, mut nodes) = fleet(tmp.path(), &["node-a", "node-b"], &[]);
    for n in nodes.iter_mut() {
        n.start();
    }
    wait("two nodes Ready", &hub, &nodes, || ready(&hub, "node-a") && ready(&hub, "node-b"));
    ok(hub.cli(&["apply", "-f", "-"], Some(pod("steady", "node-a").as_bytes())));
    wait("steady Running", &hub, &nodes, || pods(&hub).get("steady").is_some_and(|p| p.2 == "Running"));
    let uid = pods(&hub)["steady"].0.clone();
    let pid = container_pid(&nodes[0].state, &uid, "main").expect("steady's container");

    // Silence, both ways: no RST, no FIN, nothing.
    let port = mqtt_port(&hub);
    iptables(&nodes[0].ns.name, "-I", port);
    let cut = Instant::now();
    wait("node-a NotReady", &hub, &nodes, || !ready(&hub, "node-a"));
    let detected = cut.elapsed();
    assert!(detected <= Duration::from_secs(45), "NotReady after {detected:?}, the bound is 45 s");
    assert!(alive(pid), "the cut-off device keeps running its pod");
    // A change while the device cannot hear the hub.
    ok(hub.cli(&["apply", "-f", "-"], Some(pod("late", "node-a").as_bytes())));

    iptables(&nodes[0].ns.name, "-D", port);
    let healed = Instant::now();
    wait("node-a Ready again, with the pod made while it was away", &hub, &nodes, || {
        let p = pods(&hub);
        ready(&hub, "node-a") && p.get("late").is_some_and(|l| l.2 == "Running")
    });
    let back = healed.elapsed();
    assert!(back <= Duration::from_secs(60), "back after {back:?}, the bound is 60 s");
    assert!(alive(pid), "the pod kept running through the fault");
    assert_eq!(container_pid(&nodes[0].state, &uid, "main"), Some(pid), "and was not restarted");
    assert_eq!(pods(&hub).len(), 2, "no duplicates");
    ok(hub.cli(&["delete", "pod", "steady", "late"], None));
    wait("every pod gone", &hub, &nodes, || pods(&hub).is_empty());
}

fn web(version: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        imagePullPolicy: Never
        env: [{{name: VERSION, value: {version}}}]
        command: [sh, -c, 'sleep 2; touch /tmp/ready; while true; do sleep 1; done']
        readinessProbe:
          exec: {{command: [cat, /tmp/ready]}}
          periodSeconds: 1
"
    )
}

fn versions(hub: &Hub) -> Vec<(String, bool)> {
    let Some(list) = get_json(hub, &["get", "pods", "-o", "json"]) else { return Vec::new() };
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let ready = p["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            (
                p.pointer("/spec/containers/0/env/0/value")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                ready,
            )
        })
        .collect()
}

#[test]
fn a_hub_killed_in_the_middle_of_a_rolling_update_completes_it_after_restart() {
    if !root() {
        return;
    }
    let tmp = flotilla_tests::tempdir();
    let (hub, mut nodes) = fleet(tmp.path(), &["node-a", "node-b", "node-c"], &[]);
    for n in nodes.iter_mut() {
        n.start();
    }
    wait("three nodes Ready", &hub, &nodes, || ["node-a", "node-b", "node-c"].iter().all(|n| ready(&hub, n)));
    ok(hub.cli(&["apply", "-f", "-"], Some(web("v1").as_bytes())));
    ok(hub.cli(&["rollout", "status", "deployment/web", "--timeout", "90"], None));

    let out = ok(hub.cli(&["apply", "-f", "-"], Some(web("v2").as_bytes())));
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    wait("the rollout under way: v2 and v1 pods side by side", &hub, &nodes, || {
        let v = versions(&hub);
        v.iter().any(|(ver, _)| ver == "v2") && v.iter().any(|(ver, _)| ver == "v1")
    });
    let hub = hub.crash_and_restart();
    let out = ok(hub.cli(&["rollout", "status", "deployment/web", "--timeout", "90"], None));
    assert!(out.trim_end().ends_with("deployment \"web\" successfully rolled out"), "{out}");
    wait("three v2 pods Ready and nothing else", &hub, &nodes, || {
        let v = versions(&hub);
        v.len() == 3 && v.iter().all(|(ver, ready)| ver == "v2" && *ready)
    });
    let d = get_json(&hub, &["get", "deployment", "web", "-o", "json"]).expect("the deployment");
    assert_eq!(d.pointer("/spec/template/spec/containers/0/env/0/value"), Some(&Value::from("v2")));
    let history = ok(hub.cli(&["rollout", "history", "deployment/web"], None));
    let revisions: Vec<&str> = history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    ok(hub.cli(&["delete", "deployment", "web"], None));
    wait("every pod gone", &hub, &nodes, || versions(&hub).is_empty());
}
