//! The workload controllers end to end, as root, with real containers: a hub and three agents,
//! each on its own "host" (a network namespace).
//!
//! - A DaemonSet runs on the two first nodes, then reaches the third when it joins late.
//! - Six replicas with preferred anti-affinity spread two per node.
//! - A rolling update whose new pods never become Ready halts (the old pods keep serving,
//!   `rollout status` times out); `rollout undo` brings the old template back; a good update
//!   then rolls out, gated on readiness, with `rollout status` following it.
//! - A Job whose pods fail twice before one succeeds completes, its retries spaced by the
//!   back-off.
//! - A StatefulSet makes one claim per replica, bound to local volumes that pin each replica to
//!   its node, creates its pods in order and scales down from the highest ordinal.
//! - A CronJob starts a Job on its schedule.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_tests::fleet::{fleet, get_json, ok, ready, root, wait};
use flotilla_tests::Hub;
use serde_json::Value;

const IMAGE: &str = "flotilla.local/busybox:demo";

fn items(hub: &Hub, kind: &str) -> Vec<Value> {
    get_json(hub, &["get", kind, "-o", "json"])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn is_ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Pods whose name starts with `prefix`: name -> (node, phase, ready, image).
fn pods(hub: &Hub, prefix: &str) -> BTreeMap<String, (String, String, bool, String)> {
    items(hub, "pods")
        .iter()
        .filter(|p| s(p, "/metadata/name").starts_with(prefix))
        .map(|p| {
            (
                s(p, "/metadata/name").to_string(),
                (
                    s(p, "/spec/nodeName").to_string(),
                    s(p, "/status/phase").to_string(),
                    is_ready(p),
                    s(p, "/spec/containers/0/env/0/value").to_string(),
                ),
            )
        })
        .collect()
}

fn daemonset() -> String {
    format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agentd}}
spec:
  selector: {{matchLabels: {{app: agentd}}}}
  template:
    metadata: {{labels: {{app: agentd}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        imagePullPolicy: Never
        command: [sh, -c, 'while true; do sleep 1; done']
"
    )
}

/// A Deployment whose pods are Ready once they wrote /tmp/ready (`ready: false` never does).
fn web(version: &str, ready: bool) -> String {
    let touch = if ready { "touch /tmp/ready; " } else { "" };
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
        command: [sh, -c, '{touch}while true; do sleep 1; done']
        readinessProbe:
          exec: {{command: [cat, /tmp/ready]}}
          periodSeconds: 1
          timeoutSeconds: 10
"
    )
}

fn spread() -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: spread}}
spec:
  replicas: 6
  selector: {{matchLabels: {{app: spread}}}}
  template:
    metadata: {{labels: {{app: spread}}}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              labelSelector: {{matchLabels: {{app: spread}}}}
              topologyKey: kubernetes.io/hostname
      containers:
      - name: main
        image: {IMAGE}
        imagePullPolicy: Never
        command: [sh, -c, 'while true; do sleep 1; done']
"
    )
}

/// Fails until it ran three times (the count is kept on the host, shared by every node).
fn job(count_dir: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata: {{name: flaky}}
spec:
  backoffLimit: 4
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      volumes: [{{name: count, hostPath: {{path: {count_dir}, type: DirectoryOrCreate}}}}]
      containers:
      - name: main
        image: {IMAGE}
        imagePullPolicy: Never
        volumeMounts: [{{name: count, mountPath: /count}}]
        command: [sh, -c, 'n=$(cat /count/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /count/n; test $n -ge 3']
"
    )
}

fn statefulset(disks: &[(String, &str)]) -> String {
    let mut m = String::new();
    for (i, (path, host)) in disks.iter().enumerate() {
        m.push_str(&format!(
            "apiVersion: v1
kind: PersistentVolume
metadata: {{name: disk-{i}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: local
  local: {{path: {path}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{host}]}}]
---
"
        ));
    }
    m.push_str(&format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec:
  replicas: 2
  serviceName: db
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        imagePullPolicy: Never
        command: [sh, -c, 'hostname > /data/owner; touch /tmp/ready; while true; do sleep 1; done']
        volumeMounts: [{{name: data, mountPath: /data}}]
        readinessProbe:
          exec: {{command: [cat, /tmp/ready]}}
          periodSeconds: 1
          timeoutSeconds: 10
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: local
      resources: {{requests: {{storage: 1Gi}}}}
"
    ));
    m
}

fn cronjob() -> String {
    format!(
        "apiVersion: batch/v1
kind: CronJob
metadata: {{name: tick}}
spec:
  schedule: '* * * * *'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          terminationGracePeriodSeconds: 1
          containers:
          - name: main
            image: {IMAGE}
            imagePullPolicy: Never
            command: [echo, tick]
"
    )
}

fn condition(obj: &Value, type_: &str) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == type_ && c["status"] == "True"))
}

fn time(v: &str) -> i64 {
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .unwrap_or(0)
}

#[test]
fn workload_controllers_run_real_containers_on_three_nodes() {
    if !root() {
        return;
    }
    let tmp = flotilla_tests::tempdir();
    let (hub, mut nodes) = fleet(tmp.path(), &["node-a", "node-b", "node-c"], &[]);
    for n in nodes.iter_mut().take(2) {
        n.start();
    }
    wait("two nodes Ready", &hub, &nodes, || ready(&hub, "node-a") && ready(&hub, "node-b"));

    // The CronJob's first run comes within a minute; it is checked at the end.
    ok(hub.cli(&["apply", "-f", "-"], Some(cronjob().as_bytes())));

    // A DaemonSet: one pod per node, then also on the node that joins late.
    ok(hub.cli(&["apply", "-f", "-"], Some(daemonset().as_bytes())));
    let ds_nodes = |hub: &Hub| -> BTreeSet<String> {
        pods(hub, "agentd-")
            .values()
            .filter(|(_, phase, ..)| phase == "Running")
            .map(|(n, ..)| n.clone())
            .collect()
    };
    wait("the DaemonSet on both nodes", &hub, &nodes, || ds_nodes(&hub).len() == 2);
    nodes[2].start();
    wait("the DaemonSet on the late node too", &hub, &nodes, || {
        ds_nodes(&hub) == ["node-a", "node-b", "node-c"].iter().map(|s| s.to_string()).collect()
    });
    assert_eq!(pods(&hub, "agentd-").len(), 3, "one pod per node");
    let out = ok(hub.cli(&["rollout", "status", "daemonset/agentd", "--timeout", "60"], None));
    assert!(out.contains("daemon set \"agentd\" successfully rolled out"), "{out}");

    // Six replicas, two per node.
    ok(hub.cli(&["apply", "-f", "-"], Some(spread().as_bytes())));
    wait("six spread replicas Running, two per node", &hub, &nodes, || {
        let p = pods(&hub, "spread-");
        let mut per: BTreeMap<&str, usize> = BTreeMap::new();
        for (node, phase, ..) in p.values() {
            if phase == "Running" {
                *per.entry(node.as_str()).or_default() += 1;
            }
        }
        per.len() == 3 && per.values().all(|n| *n == 2)
    });
    ok(hub.cli(&["scale", "deployment/spread", "--replicas", "2"], None));
    wait("scaled down to two", &hub, &nodes, || pods(&hub, "spread-").len() == 2);
    ok(hub.cli(&["delete", "deployment", "spread"], None));

    // A rolling update gated on readiness.
    ok(hub.cli(&["apply", "-f", "-"], Some(web("v1", true).as_bytes())));
    let out = ok(hub.cli(&["rollout", "status", "deployment/web", "--timeout", "90"], None));
    assert!(out.contains("deployment \"web\" successfully rolled out"), "{out}");
    let v1: BTreeSet<String> = pods(&hub, "web-").keys().cloned().collect();
    assert_eq!(v1.len(), 3);
    // A template whose pods never become Ready: one surge pod, and the old three stay.
    ok(hub.cli(&["apply", "-f", "-"], Some(web("broken", false).as_bytes())));
    wait("the surge pod of the broken revision running, not Ready", &hub, &nodes, || {
        pods(&hub, "web-").values().any(|(_, phase, ready, v)| v == "broken" && phase == "Running" && !ready)
    });
    let halted = hub.cli(&["rollout", "status", "deployment/web", "--timeout", "5"], None);
    assert!(!halted.status.success(), "a rollout that cannot progress does not report success");
    let p = pods(&hub, "web-");
    assert_eq!(p.values().filter(|(.., v)| v == "broken").count(), 1, "maxSurge 1 allows one new pod: {p:?}");
    assert!(
        v1.iter().all(|n| p.get(n).is_some_and(|(_, _, ready, _)| *ready)),
        "the old pods keep serving: {p:?}"
    );
    // Back to the old template: the broken pod goes, the old pods were never touched.
    let out = ok(hub.cli(&["rollout", "undo", "deployment/web"], None));
    assert_eq!(out.trim(), "deployment.apps/web rolled back");
    wait("the broken pod gone", &hub, &nodes, || {
        let p = pods(&hub, "web-");
        p.len() == 3 && p.keys().cloned().collect::<BTreeSet<_>>() == v1
    });
    // A good update rolls out pod by pod.
    ok(hub.cli(&["apply", "-f", "-"], Some(web("v2", true).as_bytes())));
    let out = ok(hub.cli(&["rollout", "status", "deployment/web", "--timeout", "90"], None));
    assert!(out.trim_end().ends_with("deployment \"web\" successfully rolled out"), "{out}");
    wait("three v2 pods Ready, the old ones gone", &hub, &nodes, || {
        let p = pods(&hub, "web-");
        p.len() == 3 && p.values().all(|(_, _, ready, v)| *ready && v == "v2")
    });
    let history = ok(hub.cli(&["rollout", "history", "deployment/web"], None));
    let revisions: Vec<&str> = history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, ["2", "3", "4"], "{history}");
    let described = ok(hub.cli(&["describe", "deployment", "web"], None));
    assert!(described.contains("ScalingReplicaSet"), "{described}");
    ok(hub.cli(&["delete", "deployment", "web"], None));
    wait("no ReplicaSets left", &hub, &nodes, || items(&hub, "replicasets").is_empty());

    // A Job completing through failures, its retries spaced by the back-off.
    let count = tmp.path().join("job-count");
    ok(hub.cli(&["apply", "-f", "-"], Some(job(count.to_str().unwrap()).as_bytes())));
    wait("the Job Complete", &hub, &nodes, || {
        get_json(&hub, &["get", "job", "flaky", "-o", "json"]).is_some_and(|j| condition(&j, "Complete"))
    });
    let j = get_json(&hub, &["get", "job", "flaky", "-o", "json"]).unwrap();
    assert_eq!(
        (j["status"]["succeeded"].as_i64(), j["status"]["failed"].as_i64()),
        (Some(1), Some(2)),
        "{j}"
    );
    let mut created: Vec<i64> = items(&hub, "pods")
        .iter()
        .filter(|p| s(p, "/metadata/name").starts_with("flaky-"))
        .map(|p| time(s(p, "/metadata/creationTimestamp")))
        .collect();
    created.sort();
    assert_eq!(created.len(), 3, "three attempts, kept for their logs");
    assert!(
        created[1] - created[0] >= 10 && created[2] - created[1] >= 20,
        "back-off 10 s, then 20 s: {created:?}"
    );
    let table = ok(hub.cli(&["get", "jobs"], None));
    assert!(
        table.lines().any(|l| l.starts_with("flaky") && l.contains("Complete") && l.contains("1/1")),
        "{table}"
    );
    ok(hub.cli(&["delete", "job", "flaky"], None));
    wait("the Job's pods deleted with it", &hub, &nodes, || pods(&hub, "flaky-").is_empty());

    // A StatefulSet on local volumes: claims bound per replica, pods in order, on the disks' nodes.
    let disks: Vec<(String, &str)> = [("node-b"), ("node-c")]
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let p = tmp.path().join(format!("disk-{i}"));
            std::fs::create_dir_all(&p).unwrap();
            (p.to_str().unwrap().to_string(), *host)
        })
        .collect();
    ok(hub.cli(&["apply", "-f", "-"], Some(statefulset(&disks).as_bytes())));
    wait("db-0 and db-1 Running and Ready", &hub, &nodes, || {
        let p = pods(&hub, "db-");
        ["db-0", "db-1"]
            .iter()
            .all(|n| p.get(*n).is_some_and(|(_, phase, ready, _)| phase == "Running" && *ready))
    });
    let all = items(&hub, "pods");
    let pod = |n: &str| all.iter().find(|p| s(p, "/metadata/name") == n).unwrap().clone();
    let ready_at = |p: &Value| {
        p["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .map(|c| time(s(c, "/lastTransitionTime")))
            .unwrap_or(i64::MAX)
    };
    assert!(
        time(s(&pod("db-1"), "/metadata/creationTimestamp")) >= ready_at(&pod("db-0")),
        "db-1 is created only once db-0 is Ready"
    );
    let claims = items(&hub, "pvc");
    let bound: BTreeMap<String, String> = claims
        .iter()
        .filter(|c| s(c, "/status/phase") == "Bound")
        .map(|c| (s(c, "/metadata/name").to_string(), s(c, "/spec/volumeName").to_string()))
        .collect();
    assert_eq!(bound.keys().cloned().collect::<Vec<_>>(), ["data-db-0", "data-db-1"], "{claims:?}");
    for ordinal in ["db-0", "db-1"] {
        let disk = &bound[&format!("data-{ordinal}")];
        let i: usize = disk.trim_start_matches("disk-").parse().unwrap();
        let (path, host) = &disks[i];
        assert_eq!(s(&pod(ordinal), "/spec/nodeName"), *host, "{ordinal} runs where its disk is");
        let owner = std::fs::read_to_string(format!("{path}/owner")).unwrap_or_default();
        assert_eq!(owner.trim(), ordinal, "{ordinal} wrote its stable hostname on its own disk");
    }
    ok(hub.cli(&["scale", "statefulset/db", "--replicas", "1"], None));
    wait("db-1 gone, db-0 kept", &hub, &nodes, || {
        let p = pods(&hub, "db-");
        p.len() == 1 && p.contains_key("db-0")
    });
    assert_eq!(items(&hub, "pvc").len(), 2, "claims stay when a StatefulSet scales down");
    ok(hub.cli(&["delete", "statefulset", "db"], None));

    // The CronJob has started at least one Job by now (or does within the next minute).
    wait("a Job from the CronJob Complete", &hub, &nodes, || {
        items(&hub, "jobs")
            .iter()
            .any(|j| s(j, "/metadata/name").starts_with("tick-") && condition(j, "Complete"))
    });
    let cron = ok(hub.cli(&["get", "cronjobs"], None));
    assert!(cron.lines().any(|l| l.starts_with("tick") && l.contains("* * * * *")), "{cron}");
    ok(hub.cli(&["delete", "cronjob", "tick"], None));
    wait("the CronJob's Jobs and pods deleted with it", &hub, &nodes, || {
        items(&hub, "jobs").iter().all(|j| !s(j, "/metadata/name").starts_with("tick-"))
            && pods(&hub, "tick-").is_empty()
    });
    ok(hub.cli(&["delete", "daemonset", "agentd"], None));
    wait("every pod gone", &hub, &nodes, || items(&hub, "pods").is_empty());
}
