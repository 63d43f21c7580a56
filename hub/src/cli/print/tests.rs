use super::*;
use serde_json::json;
use time::macros::datetime;
use time::Duration;

const NOW: OffsetDateTime = datetime!(2024-05-01 12:00:00 UTC);

fn meta(name: &str, created: &str) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": created})
}

fn ago(d: Duration) -> String {
    (NOW - d).format(&Rfc3339).unwrap()
}

#[test]
fn ages_follow_kubectl_human_duration() {
    let s = Duration::seconds;
    let m = Duration::minutes;
    let h = Duration::hours;
    let d = Duration::days;
    for (elapsed, expected) in [
        (s(0), "0s"),
        (s(45), "45s"),
        (s(119), "119s"),
        (s(120), "2m"),
        (m(5) + s(30), "5m30s"),
        (m(5), "5m"),
        (m(9) + s(59), "9m59s"),
        (m(10) + s(59), "10m"),
        (m(179), "179m"),
        (h(3), "3h"),
        (h(3) + m(30), "3h30m"),
        (h(7) + m(59) + s(59), "7h59m"),
        (h(8) + m(30), "8h"),
        (h(47), "47h"),
        (h(48), "2d"),
        (d(2) + h(5), "2d5h"),
        (d(7) + h(23), "7d23h"),
        (d(8) + h(5), "8d"),
        (d(729), "729d"),
        (d(730), "2y"),
        (d(740), "2y10d"),
        (d(365 * 8), "8y"),
        (d(365 * 20 + 100), "20y"),
        // A device clock ahead of the hub's.
        (s(-30), "0s"),
        (d(-1), "0s"),
    ] {
        assert_eq!(age(Some(&ago(elapsed)), NOW), expected, "{elapsed}");
    }
    assert_eq!(age(None, NOW), "<unknown>");
    assert_eq!(age(Some(""), NOW), "<unknown>");
    assert_eq!(age(Some("yesterday"), NOW), "<unknown>");
    assert_eq!(age(Some("2024-05-01"), NOW), "<unknown>");
    // Fractions truncate like Go's int(d.Seconds()); offsets are honoured.
    assert_eq!(age(Some("2024-05-01T11:59:58.9Z"), NOW), "1s");
    assert_eq!(age(Some("2024-05-01T13:59:00+02:00"), NOW), "60s");
    assert_eq!(age(Some("0001-01-01T00:00:00Z"), NOW), "2024y");
}

#[test]
fn empty_lists_print_nothing() {
    for kind in Kind::ALL {
        assert_eq!(table(*kind, &[], true, true, NOW), "");
    }
}

fn pods() -> Vec<Value> {
    vec![
        json!({
            "metadata": meta("web-1", "2024-05-01T11:55:00Z"),
            "spec": {"nodeName": "edge-1", "containers": [{"name": "web"}, {"name": "sidecar"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.42.0.7",
                "containerStatuses": [
                    {"name": "web", "ready": true, "restartCount": 2, "state": {"running": {}}},
                    {"name": "sidecar", "ready": true, "restartCount": 1, "state": {"running": {}}}
                ]
            }
        }),
        json!({
            "metadata": meta("crashy", "2024-04-30T12:00:00Z"),
            "spec": {"nodeName": "edge-2", "containers": [{"name": "app"}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 14,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]
            }
        }),
        json!({"metadata": meta("pending", "2024-05-01T11:59:15Z"),
                "spec": {"containers": [{"name": "app"}]}}),
        json!({
            "metadata": meta("done", "2024-04-20T12:00:00Z"),
            "spec": {"containers": [{"name": "job"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "job", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
        }),
        json!({
            "metadata": meta("init", "2024-05-01T11:58:00Z"),
            "spec": {"initContainers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "app"}]},
            "status": {"phase": "Pending",
                "initContainerStatuses": [
                    {"name": "a", "ready": false, "restartCount": 0,
                        "state": {"terminated": {"exitCode": 0}}},
                    {"name": "b", "ready": false, "restartCount": 0, "state": {"running": {}}}
                ],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}}}]}
        }),
        json!({
            "metadata": {"name": "leaving", "namespace": "kube-system",
                "creationTimestamp": "2024-05-01T09:00:00Z", "deletionTimestamp": "2024-05-01T11:59:00Z"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Running", "podIP": "10.42.0.9", "containerStatuses": [{"name": "app",
                "ready": true, "restartCount": 0, "state": {"running": {}}}]}
        }),
        json!({
            "metadata": meta("oom", "2024-05-01T11:00:00Z"),
            "spec": {"nodeName": "edge-1", "containers": [{"name": "app"}]},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.42.0.8"}],
                "containerStatuses": [{"name": "app",
                "ready": false, "restartCount": 3, "state": {"terminated": {"exitCode": 137,
                    "reason": "OOMKilled"}}}]}
        }),
    ]
}

#[test]
fn pod_table() {
    assert_eq!(
        table(Kind::Pod, &pods(), false, false, NOW),
        "\
NAME      READY   STATUS             RESTARTS   AGE
web-1     2/2     Running            3          5m
crashy    0/1     CrashLoopBackOff   14         24h
pending   0/1     Pending            0          45s
done      0/1     Completed          0          11d
init      0/1     Init:1/2           0          2m
leaving   1/1     Terminating        0          3h
oom       0/1     OOMKilled          3          60m
"
    );
    assert_eq!(
        table(Kind::Pod, &pods(), true, true, NOW),
        "\
NAMESPACE     NAME      READY   STATUS             RESTARTS   AGE   IP          NODE
default       web-1     2/2     Running            3          5m    10.42.0.7   edge-1
default       crashy    0/1     CrashLoopBackOff   14         24h   <none>      edge-2
default       pending   0/1     Pending            0          45s   <none>      <none>
default       done      0/1     Completed          0          11d   <none>      <none>
default       init      0/1     Init:1/2           0          2m    <none>      <none>
kube-system   leaving   1/1     Terminating        0          3h    10.42.0.9   <none>
default       oom       0/1     OOMKilled          3          60m   10.42.0.8   edge-1
"
    );
}

/// READY, STATUS and RESTARTS of a pod with these containers, init containers and extras.
fn pod_summary(status: Value, init: usize) -> (String, String, String) {
    let init_specs: Vec<Value> = (0..init).map(|i| json!({"name": format!("i{i}")})).collect();
    let pod = json!({"metadata": {"name": "p"}, "spec": {"initContainers": init_specs,
            "containers": [{"name": "a"}]},
            "status": status});
    let (cells, _) = pod_row(&pod, "p".into(), "1s".into());
    (cells[1].clone(), cells[2].clone(), cells[3].clone())
}

#[test]
fn pod_status_column_like_kubectl() {
    let term = |code: i64, reason: &str, signal: i64| {
        json!({"terminated": {"exitCode": code,
            "reason": reason, "signal": signal}})
    };
    let cs = |state: Value, ready: bool, restarts: i64| {
        json!({"name": "a", "ready": ready,
            "restartCount": restarts, "state": state})
    };
    for (status, init, expected) in [
        (json!({"phase": "Running", "containerStatuses": [cs(term(1, "", 0), false, 2)]}), 0, "ExitCode:1"),
        (json!({"phase": "Running", "containerStatuses": [cs(term(0, "", 9), false, 0)]}), 0, "Signal:9"),
        (json!({"phase": "Running", "containerStatuses": [cs(term(1, "Error", 0), false, 0)]}), 0, "Error"),
        (
            json!({"phase": "Pending",
                    "containerStatuses": [cs(json!({"waiting": {"reason": "ContainerCreating"}}), false,
                    0)]}),
            0,
            "ContainerCreating",
        ),
        (
            json!({"phase": "Pending",
                    "containerStatuses": [cs(json!({"waiting": {"reason": "ImagePullBackOff"}}), false, 0)]}),
            0,
            "ImagePullBackOff",
        ),
        (
            json!({"phase": "Pending", "containerStatuses": [cs(json!({"waiting": {}}), false, 0)]}),
            0,
            "Pending",
        ),
        (json!({"phase": "Failed", "reason": "Evicted"}), 0, "Evicted"),
        (json!({"phase": "Unknown"}), 0, "Unknown"),
        (json!({}), 0, "Pending"),
        (
            json!({"phase": "Pending", "initContainerStatuses": [cs(term(2, "", 0), false, 1)]}),
            2,
            "Init:ExitCode:2",
        ),
        (
            json!({"phase": "Pending", "initContainerStatuses": [cs(term(2, "Error", 0), false, 1)]}),
            2,
            "Init:Error",
        ),
        (json!({"phase": "Pending", "initContainerStatuses": [cs(term(0, "", 15), false, 0)]}), 1, "Pending"),
        (
            json!({"phase": "Pending", "initContainerStatuses": [cs(term(1, "", 15), false, 0)]}),
            1,
            "Init:Signal:15",
        ),
        (
            json!({"phase": "Pending",
                    "initContainerStatuses": [cs(json!({"waiting": {"reason": "CrashLoopBackOff"}}), false,
                    4)]}),
            1,
            "Init:CrashLoopBackOff",
        ),
        (
            json!({"phase": "Pending",
                    "initContainerStatuses": [cs(json!({"waiting": {"reason": "PodInitializing"}}), false,
                    0)]}),
            3,
            "Init:0/3",
        ),
        (json!({"phase": "Pending", "initContainerStatuses": [cs(json!({}), false, 0)]}), 0, "Init:0/1"),
    ] {
        assert_eq!(pod_summary(status.clone(), init).1, expected, "{status}");
    }
    // Init restarts count while initialising; once initialised only the main containers' do
    // (and, as in kubectl, the init container's reason is kept).
    let init_running = json!({"phase": "Pending",
            "initContainerStatuses": [cs(json!({"waiting": {"reason": "CrashLoopBackOff"}}), false, 4)],
            "containerStatuses": [cs(json!({"waiting": {"reason": "PodInitializing"}}), false, 0)]});
    assert_eq!(pod_summary(init_running, 1), ("0/1".into(), "Init:CrashLoopBackOff".into(), "4".into()));
    let initialised = json!({"phase": "Running", "conditions": [{"type": "Initialized",
            "status": "True"}],
            "initContainerStatuses": [cs(json!({"waiting": {"reason": "CrashLoopBackOff"}}), false, 4)],
            "containerStatuses": [cs(json!({"running": {}}), true, 1)]});
    assert_eq!(pod_summary(initialised, 1), ("1/1".into(), "Init:CrashLoopBackOff".into(), "1".into()));
    // A completed container next to a running one: Running when the pod is Ready.
    let two = |ready_cond: &str| {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"},
                {"name": "b"}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready_cond}],
                "containerStatuses": [cs(term(0, "Completed", 0), false, 0), cs(json!({"running": {}}), true,
                    0)]}});
        pod_row(&pod, "p".into(), "1s".into()).0[2].clone()
    };
    assert_eq!(two("True"), "Running");
    assert_eq!(two("False"), "NotReady");
    // A node that went away: Unknown rather than Terminating.
    let lost = json!({"metadata": {"deletionTimestamp": "2024-05-01T11:00:00Z"},
            "status": {"reason": "NodeLost"}});
    assert_eq!(pod_row(&lost, "p".into(), "1s".into()).0[2], "Unknown");
    // Without spec.containers the statuses give the total.
    let bare = json!({"status": {"containerStatuses": [cs(json!({"running": {}}), true, 0),
            cs(json!({"running": {}}), false, 0)]}});
    assert_eq!(pod_row(&bare, "p".into(), "1s".into()).0[1], "1/2");
}

#[test]
fn deployment_table() {
    let web = json!({
        "metadata": meta("web", "2024-04-01T12:00:00Z"),
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "legacy", "operator": "DoesNotExist"}]},
            "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.25"},
                {"name": "log", "image": "busybox"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    });
    let bare = json!({"metadata": meta("bare", "2024-05-01T11:00:00Z"), "spec": {}});
    let objects = [web, bare];
    assert_eq!(
        table(Kind::Deployment, &objects, false, false, NOW),
        "\
NAME   READY   UP-TO-DATE   AVAILABLE   AGE
web    2/3     3            2           30d
bare   0/1     0            0           60m
"
    );
    assert_eq!(
            table(Kind::Deployment, &objects, true, false, NOW),
            "\
NAME   READY   UP-TO-DATE   AVAILABLE   AGE   CONTAINERS   IMAGES               SELECTOR
web    2/3     3            2           30d   web,log      nginx:1.25,busybox   app=web,!legacy,tier in (back,front)
bare   0/1     0            0           60m                                     <none>
"
        );
}

#[test]
fn daemonset_and_statefulset_tables() {
    let agent = json!({
        "metadata": meta("agent", "2024-04-29T06:00:00Z"),
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"spec": {
            "nodeSelector": {"zone": "a", "arch": "arm64"}, "containers": [{"name": "a",
                "image": "agent:1"}]}}},
        "status": {"desiredNumberScheduled": 5, "currentNumberScheduled": 5, "numberReady": 4,
            "updatedNumberScheduled": 5, "numberAvailable": 4}
    });
    let empty = json!({"metadata": meta("empty", "2024-05-01T11:59:59Z")});
    assert_eq!(
        table(Kind::DaemonSet, &[agent.clone(), empty], false, false, NOW),
        "\
NAME    DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR       AGE
agent   5         5         4       5            4           arch=arm64,zone=a   2d6h
empty   0         0         0       0            0           <none>              1s
"
    );
    assert_eq!(
            table(Kind::DaemonSet, &[agent], true, false, NOW),
            "\
NAME    DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR       AGE    CONTAINERS   IMAGES    SELECTOR
agent   5         5         4       5            4           arch=arm64,zone=a   2d6h   a            agent:1   app=agent
"
        );
    let db = json!({"metadata": meta("db", "2024-05-01T04:00:00Z"), "spec": {"replicas": 3,
            "template": {"spec": {
            "containers": [{"name": "pg", "image": "postgres:16"}]}}}, "status": {"readyReplicas": 3}});
    let one = json!({"metadata": meta("one", "2024-05-01T04:00:00Z")});
    assert_eq!(
        table(Kind::StatefulSet, &[db.clone(), one], false, false, NOW),
        "NAME   READY   AGE\ndb     3/3     8h\none    0/1     8h\n"
    );
    assert_eq!(
        table(Kind::StatefulSet, &[db], true, false, NOW),
        "NAME   READY   AGE   CONTAINERS   IMAGES\ndb     3/3     8h    pg           postgres:16\n"
    );
}

#[test]
fn job_table() {
    let jobs = [
        json!({"metadata": meta("backup", "2024-05-01T10:00:00Z"), "spec": {"completions": 1},
                "status": {"succeeded": 1, "startTime": "2024-05-01T10:00:00Z",
                    "completionTime": "2024-05-01T10:00:42Z",
                "conditions": [{"type": "Complete", "status": "True"}]}}),
        json!({"metadata": meta("migrate", "2024-05-01T11:50:00Z"), "spec": {"parallelism": 3},
                "status": {"startTime": "2024-05-01T11:50:00Z", "active": 3}}),
        json!({"metadata": meta("broken", "2024-05-01T08:00:00Z"), "spec": {"completions": 5},
                "status": {"succeeded": 2, "failed": 7, "startTime": "2024-05-01T08:00:00Z",
                "conditions": [{"type": "Complete", "status": "False"}, {"type": "Failed",
                    "status": "True"}]}}),
        json!({"metadata": meta("queued", "2024-05-01T11:59:00Z")}),
        json!({"metadata": meta("paused", "2024-05-01T11:59:00Z"), "spec": {"parallelism": 1},
                "status": {"conditions": [{"type": "Suspended", "status": "True"}]}}),
    ];
    assert_eq!(
        table(Kind::Job, &jobs, false, false, NOW),
        "\
NAME      STATUS      COMPLETIONS   DURATION   AGE
backup    Complete    1/1           42s        120m
migrate   Running     0/1 of 3      10m        10m
broken    Failed      2/5           4h         4h
queued    Running     0/1                      60s
paused    Suspended   0/1                      60s
"
    );
}

#[test]
fn config_and_secret_tables() {
    let cms = [
        json!({"metadata": meta("app-config", "2024-05-01T11:00:00Z"), "data": {"a": "1", "b": "2"},
                "binaryData": {"c": "AA=="}}),
        json!({"metadata": meta("empty", "2024-05-01T11:00:00Z")}),
    ];
    assert_eq!(
        table(Kind::ConfigMap, &cms, false, true, NOW),
        "\
NAMESPACE   NAME         DATA   AGE
default     app-config   3      60m
default     empty        0      60m
"
    );
    let secrets = [
        json!({"metadata": meta("db", "2024-05-01T11:00:00Z"), "data": {"user": "YWRtaW4=",
                "password": "aHVudGVyMg=="}}),
        json!({"metadata": meta("tls", "2024-05-01T11:00:00Z"), "type": "kubernetes.io/tls",
                "data": {"tls.crt": "", "tls.key": ""}, "stringData": {"tls.key": "x", "extra": "y"}}),
    ];
    let out = table(Kind::Secret, &secrets, true, false, NOW);
    assert_eq!(
        out,
        "\
NAME   TYPE                DATA   AGE
db     Opaque              2      60m
tls    kubernetes.io/tls   3      60m
"
    );
    assert!(!out.contains("YWRtaW4=") && !out.contains("admin"));
}

#[test]
fn service_and_namespace_tables() {
    let svcs = [
        json!({"metadata": meta("web", "2024-05-01T11:00:00Z"), "spec": {"type": "NodePort",
                "clusterIP": "10.43.0.10", "selector": {"app": "web"},
                "ports": [{"port": 80}, {"port": 443, "nodePort": 30443, "protocol": "TCP"}, {"port": 53,
                    "protocol": "UDP"}]}}),
        json!({"metadata": meta("headless", "2024-05-01T11:00:00Z"), "spec": {"clusterIP": "None"}}),
        json!({"metadata": meta("new", "2024-05-01T11:00:00Z")}),
    ];
    assert_eq!(
        table(Kind::Service, &svcs, false, false, NOW),
        "\
NAME       TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)                       AGE
web        NodePort    10.43.0.10   <none>        80/TCP,443:30443/TCP,53/UDP   60m
headless   ClusterIP   None         <none>        <none>                        60m
new        ClusterIP   <none>       <none>        <none>                        60m
"
    );
    assert_eq!(
        table(Kind::Service, &svcs[..1], true, false, NOW),
        "\
NAME   TYPE       CLUSTER-IP   EXTERNAL-IP   PORT(S)                       AGE   SELECTOR
web    NodePort   10.43.0.10   <none>        80/TCP,443:30443/TCP,53/UDP   60m   app=web
"
    );
    let nss = [
        json!({"metadata": {"name": "default", "creationTimestamp": "2023-01-01T00:00:00Z"},
                "status": {"phase": "Active"}}),
        json!({"metadata": {"name": "old", "creationTimestamp": "2024-05-01T00:00:00Z",
                "deletionTimestamp": "2024-05-01T11:00:00Z"}}),
        json!({"metadata": {"name": "fresh"}}),
    ];
    // Cluster-scoped kinds get no NAMESPACE column even when asked for one.
    assert_eq!(
        table(Kind::Namespace, &nss, false, true, NOW),
        "\
NAME      STATUS        AGE
default   Active        486d
old       Terminating   12h
fresh     Active        <unknown>
"
    );
}

#[test]
fn node_table() {
    let nodes = [
        json!({"metadata": {"name": "edge-1", "creationTimestamp": "2024-03-01T12:00:00Z",
                    "labels": {"node-role.kubernetes.io/gateway": "", "node-role.kubernetes.io/edge": "true",
                        "other": "x"}},
                "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready",
                    "status": "True"}],
                    "addresses": [{"type": "Hostname", "address": "edge-1"}, {"type": "InternalIP",
                        "address": "192.168.1.20"}],
                    "nodeInfo": {"agentVersion": "0.1.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                        "kernelVersion": "6.1.0-rpi7"}}}),
        json!({"metadata": {"name": "edge-2", "creationTimestamp": "2024-05-01T06:30:00Z",
                    "labels": {"kubernetes.io/role": "worker"}},
                "spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready",
                    "status": "Unknown"}]}}),
        json!({"metadata": {"name": "new", "creationTimestamp": "2024-05-01T11:59:58Z"}}),
    ];
    assert_eq!(
        table(Kind::Node, &nodes, false, true, NOW),
        "\
NAME     STATUS                        ROLES          AGE     VERSION
edge-1   Ready                         edge,gateway   61d     0.1.0
edge-2   NotReady,SchedulingDisabled   worker         5h30m   <none>
new      Unknown                       <none>         2s      <none>
"
    );
    assert_eq!(
            table(Kind::Node, &nodes, true, false, NOW),
            "\
NAME     STATUS                        ROLES          AGE     VERSION   INTERNAL-IP    OS-IMAGE                         KERNEL-VERSION
edge-1   Ready                         edge,gateway   61d     0.1.0     192.168.1.20   Debian GNU/Linux 12 (bookworm)   6.1.0-rpi7
edge-2   NotReady,SchedulingDisabled   worker         5h30m   <none>    <none>         <unknown>                        <unknown>
new      Unknown                       <none>         2s      <none>    <none>         <unknown>                        <unknown>
"
        );
}

#[test]
fn volume_tables() {
    let pvs = [
        json!({"metadata": {"name": "pv-data", "creationTimestamp": "2024-04-01T12:00:00Z"},
                "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce",
                    "ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local",
                    "claimRef": {"namespace": "default", "name": "data"}},
                "status": {"phase": "Bound"}}),
        json!({"metadata": {"name": "pv-free", "creationTimestamp": "2024-04-01T12:00:00Z"},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOncePod", "ReadOnlyMany"],
                    "volumeMode": "Block"}}),
    ];
    assert_eq!(
        table(Kind::PersistentVolume, &pvs, false, false, NOW),
        "\
NAME      CAPACITY   ACCESS MODES   RECLAIM POLICY   STATUS      CLAIM          STORAGECLASS   AGE
pv-data   10Gi       RWO,RWX        Delete           Bound       default/data   local          30d
pv-free   1Gi        ROX,RWOP       Retain           Available                                 30d
"
    );
    assert_eq!(
            table(Kind::PersistentVolume, &pvs, true, true, NOW),
            "\
NAME      CAPACITY   ACCESS MODES   RECLAIM POLICY   STATUS      CLAIM          STORAGECLASS   AGE   VOLUMEMODE
pv-data   10Gi       RWO,RWX        Delete           Bound       default/data   local          30d   Filesystem
pv-free   1Gi        ROX,RWOP       Retain           Available                                 30d   Block
"
        );
    let pvcs = [
        json!({"metadata": meta("data", "2024-04-01T12:00:00Z"),
                "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv-data",
                    "storageClassName": "local",
                    "resources": {"requests": {"storage": "5Gi"}}},
                "status": {"phase": "Bound", "capacity": {"storage": "10Gi"},
                    "accessModes": ["ReadWriteMany", "ReadWriteOnce"]}}),
        json!({"metadata": {"name": "waiting", "namespace": "edge",
                "creationTimestamp": "2024-05-01T11:00:00Z",
                    "annotations": {"volume.beta.kubernetes.io/storage-class": "beta"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "ignored"}}),
    ];
    assert_eq!(
        table(Kind::PersistentVolumeClaim, &pvcs, false, false, NOW),
        "\
NAME      STATUS    VOLUME    CAPACITY   ACCESS MODES   STORAGECLASS   AGE
data      Bound     pv-data   10Gi       RWO,RWX        local          30d
waiting   Pending                                       beta           60m
"
    );
    assert_eq!(
        table(Kind::PersistentVolumeClaim, &pvcs, true, true, NOW),
        "\
NAMESPACE   NAME      STATUS    VOLUME    CAPACITY   ACCESS MODES   STORAGECLASS   AGE   VOLUMEMODE
default     data      Bound     pv-data   10Gi       RWO,RWX        local          30d   Filesystem
edge        waiting   Pending                                       beta           60m   Filesystem
"
    );
}

#[test]
fn selectors_ports_and_modes() {
    for (sel, expected) in [
        (json!(null), "<none>"),
        (json!({}), "<none>"),
        (json!({"matchLabels": {"b": "2", "a": "1"}}), "a=1,b=2"),
        (
            json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev", "dev",
                    "ci"]},
                {"key": "gpu", "operator": "Exists"}]}),
            "env notin (ci,dev),gpu",
        ),
        (json!({"matchExpressions": [{"key": "x", "operator": "Near"}]}), "<invalid>"),
        (json!("app=web"), "<invalid>"),
    ] {
        assert_eq!(format_selector(Some(&sel)), expected, "{sel}");
    }
    assert_eq!(format_selector(None), "<none>");
    assert_eq!(format_labels(Some(&json!({"z": 1, "a": true}))), "a=true,z=1");
    assert_eq!(access_modes(Some(&json!(["Bogus", 5, "ReadWriteOnce"]))), "RWO");
    assert_eq!(access_modes(Some(&json!("ReadWriteOnce"))), "");
    assert_eq!(service_ports(&json!({"spec": {"ports": [{"port": "80"}, {"nodePort": -1}]}})), "0/TCP,0/TCP");
}

/// Go's tabwriter: a column is sized per run of consecutive lines that have a cell there, and
/// a line's last cell is never padded.
#[test]
fn tabwriter_semantics() {
    let lines = |rows: &[&[&str]]| -> Vec<Vec<String>> {
        rows.iter().map(|r| r.iter().map(|c| c.to_string()).collect()).collect()
    };
    let t = lines(&[&["a", "b", "c"], &["aaaa", "bb"], &["no tabs here"], &["x", "y"], &[], &["ü", "z"]]);
    assert_eq!(tabwrite(&t, 0, 2), "a     b  c\naaaa  bb\nno tabs here\nx  y\n\nü  z\n");
    assert_eq!(tabwrite(&t, 6, 3), "a      b     c\naaaa   bb\nno tabs here\nx     y\n\nü     z\n");
    // Trailing padding before an empty last cell is trimmed.
    assert_eq!(tabwrite(&lines(&[&["key:", ""], &["k:", "v"]]), 0, 2), "key:\nk:    v\n");
    assert_eq!(tabwrite(&[], 0, 2), "");
}

fn full_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-7d4b9c",
            "namespace": "shop",
            "creationTimestamp": "2024-05-01T11:00:00Z",
            "labels": {"pod-template-hash": "7d4b9c", "app": "web"},
            "annotations": {"note": "hello", LAST_APPLIED: "{\"big\":1}"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d4b9c", "controller": true}]
        },
        "spec": {
            "nodeName": "edge-1",
            "containers": [{
                "name": "web",
                "image": "nginx:1.25",
                "command": ["sh", "-c"],
                "args": ["echo one\necho two"],
                "ports": [{"containerPort": 80}],
                "resources": {"limits": {"memory": "128Mi", "cpu": "500m"}, "requests": {"cpu": "250m"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
                "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "initialDelaySeconds": 3},
                "startupProbe": {"tcpSocket": {"port": "http"}, "failureThreshold": 30},
                "env": [
                    {"name": "MODE", "value": "prod"},
                    {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db",
                        "key": "password"}}},
                    {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "level",
                        "optional": true}}},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                ],
                "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "db"},
                    "prefix": "DB_"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"},
                    {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": true, "subPath": "app.conf"}]
            }, {
                "name": "sidecar",
                "image": "busybox",
                "ports": [{"containerPort": 9000, "protocol": "UDP", "hostPort": 9000},
                    {"containerPort": 9001}]
            }],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}},
                {"name": "creds", "secret": {"secretName": "db", "optional": true}},
                {"name": "pvc", "persistentVolumeClaim": {"claimName": "data"}}
            ],
            "nodeSelector": {"zone": "north"},
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300}, {"operator": "Exists"}]
        },
        "status": {
            "phase": "Running",
            "hostIP": "192.168.1.20",
            "podIP": "10.42.0.7",
            "startTime": "2024-05-01T11:00:05Z",
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled",
                "status": "True"}],
            "containerStatuses": [{
                "name": "web", "ready": true, "restartCount": 1, "image": "nginx:1.25",
                "imageID": "sha256:abc", "containerID": "flotilla://123",
                "state": {"running": {"startedAt": "2024-05-01T11:30:00Z"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                    "startedAt": "2024-05-01T11:00:10Z", "finishedAt": "2024-05-01T11:29:59Z"}}
            }, {
                "name": "sidecar", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ImagePullBackOff"}}
            }]
        }
    })
}

fn events() -> Vec<Value> {
    vec![
        json!({"type": "Warning", "reason": "BackOff", "count": 5,
                "firstTimestamp": "2024-05-01T11:10:00Z",
                "lastTimestamp": "2024-05-01T11:57:00Z", "source": {"component": "agent"},
                "message": "Back-off pulling image \"busybox\"\n"}),
        json!({"type": "Normal", "reason": "Scheduled", "count": 1,
                "firstTimestamp": "2024-05-01T11:00:00Z",
                "lastTimestamp": "2024-05-01T11:00:00Z", "reportingController": "scheduler",
                "message": "Assigned shop/web-7d4b9c to edge-1"}),
    ]
}

#[test]
fn describe_pod_like_kubectl() {
    let expected = "\
Name:               web-7d4b9c
Namespace:          shop
Labels:             app=web
                    pod-template-hash=7d4b9c
Annotations:        note: hello
CreationTimestamp:  Wed, 01 May 2024 11:00:00 +0000
Node:               edge-1/192.168.1.20
Start Time:         Wed, 01 May 2024 11:00:05 +0000
Status:             Running
IP:                 10.42.0.7
Controlled By:      ReplicaSet/web-7d4b9c
Containers:
  web:
    Container ID:  flotilla://123
    Image:         nginx:1.25
    Image ID:      sha256:abc
    Port:          80/TCP
    Host Port:     0/TCP
    Command:
      sh
      -c
    Args:
      echo one
      echo two
    State:          Running
      Started:      Wed, 01 May 2024 11:30:00 +0000
    Last State:     Terminated
      Reason:       OOMKilled
      Exit Code:    137
      Started:      Wed, 01 May 2024 11:00:10 +0000
      Finished:     Wed, 01 May 2024 11:29:59 +0000
    Ready:          True
    Restart Count:  1
    Limits:
      cpu:     500m
      memory:  128Mi
    Requests:
      cpu:      250m
    Liveness:   http-get http://:8080/healthz delay=0s timeout=1s period=5s #success=1 #failure=3
    Readiness:  exec [cat /tmp/ready] delay=3s timeout=1s period=10s #success=1 #failure=3
    Startup:    tcp-socket :http delay=0s timeout=1s period=10s #success=1 #failure=30
    Environment Variables from:
      cfg  ConfigMap                 Optional: false
      db   Secret with prefix 'DB_'  Optional: false
    Environment:
      MODE:         prod
      DB_PASSWORD:  <set to the key 'password' in secret 'db'>    Optional: false
      LEVEL:        <set to the key 'level' of config map 'cfg'>  Optional: true
      POD:          web-7d4b9c (v1:metadata.name)
    Mounts:
      /data from data (rw)
      /etc/cfg from cfg (ro,path=\"app.conf\")
  sidecar:
    Container ID:
    Image:          busybox
    Image ID:
    Ports:          9000/UDP, 9001/TCP
    Host Ports:     9000/UDP, 0/TCP
    State:          Waiting
      Reason:       ImagePullBackOff
    Ready:          False
    Restart Count:  0
    Environment:    <none>
    Mounts:         <none>
Conditions:
  Type           Status
  Ready          True
  PodScheduled   True
Volumes:
  data:
    Type:       EmptyDir (a temporary directory that shares a pod's lifetime)
    Medium:
    SizeLimit:  <unset>
  cfg:
    Type:      ConfigMap (a volume populated by a ConfigMap)
    Name:      cfg
    Optional:  false
  host:
    Type:          HostPath (bare host directory volume)
    Path:          /var/log
    HostPathType:  Directory
  creds:
    Type:        Secret (a volume populated by a Secret)
    SecretName:  db
    Optional:    true
  pvc:
    Type:        PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)
    ClaimName:   data
    ReadOnly:    false
Node-Selectors:  zone=north
Tolerations:     node.kubernetes.io/unreachable:NoExecute op=Exists for 300s
                 op=Exists
Events:
  Type     Reason     Age               From       Message
  ----     ------     ----              ----       -------
  Normal   Scheduled  60m               scheduler  Assigned shop/web-7d4b9c to edge-1
  Warning  BackOff    3m (x5 over 50m)  agent      Back-off pulling image \"busybox\"
";
    assert_eq!(describe(Kind::Pod, &full_pod(), &events(), NOW), expected);
}

#[test]
fn describe_deployment_like_kubectl() {
    let deploy = json!({
        "metadata": {"name": "web", "namespace": "shop", "creationTimestamp": "2024-04-01T12:00:00Z",
            "labels": {"app": "web"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web",
                "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]}}},
        "status": {"replicas": 3, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}
    });
    let expected = "\
Name:                   web
Namespace:              shop
Labels:                 app=web
Annotations:            <none>
CreationTimestamp:      Mon, 01 Apr 2024 12:00:00 +0000
Selector:               app=web
Replicas:               3 desired | 2 updated | 3 total | 2 available | 1 unavailable
StrategyType:           RollingUpdate
MinReadySeconds:        0
RollingUpdateStrategy:  25% max unavailable, 1 max surge
Pod Template:
  Labels:  app=web
  Containers:
   web:
    Image:         nginx:1.25
    Port:          80/TCP
    Host Port:     0/TCP
    Environment:   <none>
    Mounts:        <none>
  Volumes:         <none>
  Node-Selectors:  <none>
  Tolerations:     <none>
Conditions:
  Type          Status  Reason
  ----          ------  ------
  Available     True    MinimumReplicasAvailable
  Progressing   True    NewReplicaSetAvailable
Events:         <none>
";
    assert_eq!(describe(Kind::Deployment, &deploy, &[], NOW), expected);
    // Recreate has no rolling-update line; a missing replica count means 1.
    let recreate = json!({"metadata": {"name": "r"}, "spec": {"strategy": {"type": "Recreate"}}});
    let out = describe(Kind::Deployment, &recreate, &[], NOW);
    assert!(
        out.contains("Replicas:           1 desired | 0 updated | 0 total | 0 available | 1 unavailable\n"),
        "{out}"
    );
    assert!(
        out.contains("StrategyType:       Recreate\n") && !out.contains("RollingUpdateStrategy"),
        "{out}"
    );
    assert!(out.contains("CreationTimestamp:  <unknown>\n"), "{out}");
}

#[test]
fn describe_secret_never_shows_values() {
    let secret = json!({
        "metadata": {"name": "db", "namespace": "shop", "creationTimestamp": "2024-04-01T12:00:00Z",
            "labels": {"app": "db"},
            "annotations": {LAST_APPLIED: "{\"data\":{\"password\":\"aHVudGVyMg==\"},\"stringData\":{\"token\":\"s3cr3t-t0ken\"}}"}},
        "type": "Opaque",
        "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4=", "empty": "", "bad": "!!not base64",
            "num": 5},
        "stringData": {"token": "s3cr3t-t0ken"},
        "spec": {"leak": "hunter2"},
        "status": {"leak": "hunter2"}
    });
    let out = describe(Kind::Secret, &secret, &[], NOW);
    assert_eq!(
        out,
        "\
Name:               db
Namespace:          shop
Labels:             app=db
Annotations:        <none>
CreationTimestamp:  Mon, 01 Apr 2024 12:00:00 +0000

Type:  Opaque

Data
====
bad:       <invalid base64>
empty:     0 bytes
num:       <invalid base64>
password:  7 bytes
token:     12 bytes
user:      5 bytes
Events:    <none>
"
    );
    for secret_text in ["hunter2", "aHVudGVyMg", "admin", "YWRtaW4", "s3cr3t", "not base64"] {
        assert!(!out.contains(secret_text), "{secret_text} leaked:\n{out}");
    }
    let typed = json!({"metadata": {"name": "t"}, "type": "kubernetes.io/tls", "data": "oops"});
    let out = describe(Kind::Secret, &typed, &[], NOW);
    assert!(out.contains("\nType:  kubernetes.io/tls\n\nData\n====\nEvents:  <none>\n"), "{out}");
}

#[test]
fn describe_config_map_shows_data() {
    let cm = json!({"metadata": {"name": "cfg", "namespace": "shop",
            "creationTimestamp": "2024-04-01T12:00:00Z"},
            "data": {"level": "debug", "app.conf": "a = 1\n\tb = 2\n", "port": 8080},
            "binaryData": {"logo.png": "iVBORw0KGgo=", "junk": "%%%"}});
    assert_eq!(
        describe(Kind::ConfigMap, &cm, &events()[1..], NOW),
        "\
Name:               cfg
Namespace:          shop
Labels:             <none>
Annotations:        <none>
CreationTimestamp:  Mon, 01 Apr 2024 12:00:00 +0000

Data
====
app.conf:
----
a = 1
\tb = 2

level:
----
debug
port:
----
8080

BinaryData
====
junk: <invalid base64>
logo.png: 8 bytes

Events:
  Type    Reason     Age   From       Message
  ----    ------     ----  ----       -------
  Normal  Scheduled  60m   scheduler  Assigned shop/web-7d4b9c to edge-1
"
    );
}

#[test]
fn describe_other_kinds_render_spec_and_status() {
    let node = json!({"metadata": {"name": "edge-1", "creationTimestamp": "2024-04-01T12:00:00Z",
                "labels": {"node-role.kubernetes.io/edge": ""}},
            "spec": {"unschedulable": true, "taints": [{"key": "dedicated", "value": "edge",
                "effect": "NoSchedule"}]},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi"}, "conditions": [{"type": "Ready",
                "status": "True"}],
                "addresses": [], "nodeInfo": {"agentVersion": "0.1.0", "notes": "line one\nline two"}}});
    assert_eq!(
        describe(Kind::Node, &node, &[], NOW),
        "\
Name:               edge-1
Labels:             node-role.kubernetes.io/edge=
Annotations:        <none>
CreationTimestamp:  Mon, 01 Apr 2024 12:00:00 +0000
Spec:
  unschedulable:  true
  taints:
    - key:     dedicated
      value:   edge
      effect:  NoSchedule
Status:
  capacity:
    cpu:     4
    memory:  8Gi
  conditions:
    - type:    Ready
      status:  True
  addresses:   <none>
  nodeInfo:
    agentVersion:  0.1.0
    notes:         line one
                   line two
Events:            <none>
"
    );
    let job = json!({"metadata": {"name": "backup", "namespace": "shop",
            "creationTimestamp": "2024-04-01T12:00:00Z"},
            "spec": {"completions": 1, "template": {"spec": {"containers": [{"name": "b", "image": "backup:1",
                "command": ["backup", "--all"]}]}}},
            "status": {"succeeded": 1}});
    let out = describe(Kind::Job, &job, &[], NOW);
    assert!(
        out.contains("Spec:\n  completions:  1\nPod Template:\n  Labels:  <none>\n  Containers:\n   b:\n"),
        "{out}"
    );
    assert!(out.contains("    Command:\n      backup\n      --all\n"), "{out}");
    assert!(out.contains("Status:\n  succeeded:  1\nEvents:       <none>\n"), "{out}");
    let svc = json!({"metadata": {"name": "web", "namespace": "shop"},
            "spec": {"ports": [{"port": 80, "targetPort": "http"}, [1, [2]], "x"], "selector": {"app": "web"},
                "clusterIPs": ["10.0.0.1", "fd00::1"], "empty": {}}});
    let out = describe(Kind::Service, &svc, &[], NOW);
    assert!(
            out.contains(
                "Spec:\n  ports:\n    - port:        80\n      targetPort:  http\n    -\n      - 1\n      -\n        - 2\n    - x\n"
            ),
            "{out}"
        );
    assert!(out.contains("  clusterIPs:  10.0.0.1, fd00::1\n  empty:       <none>\n"), "{out}");
    // Namespaces are cluster-scoped: no Namespace line.
    let ns = describe(
        Kind::Namespace,
        &json!({"metadata": {"name": "prod"}, "status": {"phase": "Active"}}),
        &[],
        NOW,
    );
    assert!(ns.starts_with("Name:               prod\nLabels:") && !ns.contains("Namespace:"), "{ns}");
}

#[test]
fn describe_annotations_and_events_details() {
    let long = "v".repeat(200);
    let obj = json!({"metadata": {"name": "x", "namespace": "n",
            "annotations": {"a": "short", "b": "two\nlines\n", "c": long}}});
    let out = describe(Kind::ConfigMap, &obj, &[], NOW);
    let shortened = format!("                    c:\n                      {}...\n", "v".repeat(138));
    assert!(out.contains("Annotations:        a: short\n                    b:\n                      two\n                      lines\n"), "{out}");
    assert!(out.contains(&shortened), "{out}");
    let evs = [
        json!({"type": "Normal", "reason": "Late", "lastTimestamp": "2024-05-01T11:59:00Z",
                "message": "  spaced  "}),
        json!({"type": "Normal", "reason": "Timeless", "count": "many"}),
        json!({"type": "Warning", "reason": "Early", "eventTime": "2024-05-01T11:00:00Z", "count": 2,
                "lastTimestamp": "2024-05-01T11:30:00Z", "source": {"component": ""},
                    "reportingController": "agent"}),
    ];
    let out = describe(Kind::Namespace, &json!({"metadata": {"name": "n"}}), &evs, NOW);
    assert!(
        out.ends_with(
            "\
Events:
  Type     Reason    Age                From   Message
  ----     ------    ----               ----   -------
  Normal   Timeless  <unknown>
  Warning  Early     30m (x2 over 60m)  agent
  Normal   Late      60s                       spaced
"
        ),
        "{out}"
    );
}

#[test]
fn timestamps_print_rfc1123z() {
    assert_eq!(timestamp(Some(&json!("2024-05-01T13:00:00+02:00"))), "Wed, 01 May 2024 13:00:00 +0200");
    assert_eq!(timestamp(Some(&json!("2024-05-01T13:00:00.123Z"))), "Wed, 01 May 2024 13:00:00 +0000");
    assert_eq!(timestamp(Some(&json!("last tuesday"))), "last tuesday");
    assert_eq!(timestamp(Some(&json!(12))), "<unknown>");
    assert_eq!(timestamp(None), "<unknown>");
}

#[test]
fn control_characters_never_reach_the_terminal() {
    let evil = "x\u{1b}[2J\u{7}\ty\nz\u{202e}";
    let pod = json!({"metadata": {"name": evil, "namespace": evil, "labels": {evil: evil},
            "annotations": {"a": evil}},
            "spec": {"nodeName": evil, "containers": [{"name": evil, "image": evil, "args": [evil],
                "env": [{"name": "E", "value": evil}]}]},
            "status": {"phase": evil, "reason": evil, "message": evil}});
    let cm = json!({"metadata": {"name": "c"}, "data": {evil: evil}});
    let outputs = [
        table(Kind::Pod, std::slice::from_ref(&pod), true, true, NOW),
        describe(Kind::Pod, &pod, &[json!({"type": evil, "message": evil})], NOW),
        describe(Kind::Node, &pod, &[], NOW),
        describe(Kind::ConfigMap, &cm, &[], NOW),
    ];
    for out in outputs {
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n' && c != '\t') && !out.contains('\u{202e}'),
            "{out:?}"
        );
    }
    // Tabs in table cells would break the columns.
    assert!(!table(Kind::Pod, &[pod], true, true, NOW).contains('\t'));
}

/// Every kind's row has exactly as many cells as its header, whatever the object looks like.
#[test]
fn rows_match_headers_for_every_kind() {
    for kind in Kind::ALL {
        for wide in [false, true] {
            for o in [json!({}), json!(null), pods()[0].clone()] {
                assert_eq!(row(*kind, &o, wide, NOW).len(), columns(*kind, wide).len(), "{kind} wide={wide}");
            }
        }
    }
}

/// Field names the printers read, so that generated objects hit real code paths.
const FIELDS: &[&str] = &[
    "metadata",
    "name",
    "namespace",
    "labels",
    "annotations",
    "creationTimestamp",
    "deletionTimestamp",
    "ownerReferences",
    "controller",
    "kind",
    "spec",
    "status",
    "containers",
    "initContainers",
    "containerStatuses",
    "initContainerStatuses",
    "state",
    "lastState",
    "running",
    "waiting",
    "terminated",
    "reason",
    "exitCode",
    "signal",
    "ready",
    "restartCount",
    "phase",
    "conditions",
    "type",
    "replicas",
    "readyReplicas",
    "selector",
    "matchLabels",
    "matchExpressions",
    "operator",
    "values",
    "key",
    "template",
    "ports",
    "port",
    "nodePort",
    "protocol",
    "data",
    "binaryData",
    "stringData",
    "capacity",
    "storage",
    "accessModes",
    "claimRef",
    "volumeName",
    "addresses",
    "address",
    "nodeInfo",
    "env",
    "valueFrom",
    "secretKeyRef",
    "fieldRef",
    "fieldPath",
    "envFrom",
    "volumeMounts",
    "mountPath",
    "volumes",
    "emptyDir",
    "hostPath",
    "resources",
    "limits",
    "livenessProbe",
    "httpGet",
    "exec",
    "command",
    "tolerations",
    "completions",
    "parallelism",
    "startTime",
    "completionTime",
    "count",
    "lastTimestamp",
    "source",
    "component",
    "unschedulable",
    "podIP",
    "podIPs",
    "ip",
    "nodeSelector",
    "strategy",
    "rollingUpdate",
];

const SCALARS: &[fn() -> Value] = &[
    || Value::Null,
    || json!(true),
    || json!(-1),
    || json!(u64::MAX),
    || json!(i64::MIN),
    || json!(1e300),
    || json!(-0.5),
    || json!(""),
    || json!("True"),
    || json!("Running"),
    || json!("2024-05-01T11:00:00Z"),
    || json!("9999-12-31T23:59:59Z"),
    || json!("0000-01-01T00:00:00Z"),
    || json!("not base64 ✓\u{0}"),
    || json!("InternalIP"),
    || json!("In"),
    || json!("Exists"),
    || json!("Complete"),
    || json!("ReadWriteOnce"),
];

struct Gen(u64);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn value(&mut self, depth: usize) -> Value {
        match if depth > 6 { 0 } else { self.below(4) } {
            0 => SCALARS[self.below(SCALARS.len())](),
            1 => Value::Array((0..self.below(4)).map(|_| self.value(depth + 1)).collect()),
            _ => {
                let mut m = Map::new();
                for _ in 0..self.below(6) {
                    m.insert(FIELDS[self.below(FIELDS.len())].to_string(), self.value(depth + 1));
                }
                Value::Object(m)
            }
        }
    }
}

#[test]
fn malformed_objects_never_panic() {
    let fixed = [
        json!(null),
        json!(5),
        json!("pod"),
        json!([1, 2]),
        json!({"metadata": 5, "spec": "x", "status": []}),
        json!({"metadata": {"name": 5, "labels": [1], "annotations": "x", "creationTimestamp": 7,
                "deletionTimestamp": false, "ownerReferences": {"controller": true}}}),
        json!({"spec": {"containers": "x", "initContainers": [5, null, {"name": 5, "ports": "x",
                "env": [{"valueFrom": 3}, {"valueFrom": {"fieldRef": "x"}}, 7], "resources": {"limits": 3},
                "volumeMounts": [{"subPath": 5}], "livenessProbe": {"httpGet": {"port": {"x": 1},
                    "host": "::1"}},
                "envFrom": [{}]}], "volumes": [{}, 5], "tolerations": [{"tolerationSeconds": "x"}, 1]},
                "status": {"containerStatuses": [{"state": "x"}, {"state": {"terminated": 5}}, 3],
                "initContainerStatuses": [{"state": {"terminated": {"exitCode": "1"}}}],
                "conditions": "Ready", "podIPs": [5]}}),
        json!({"spec": {"replicas": "three", "completions": -5, "parallelism": 1e300,
                "selector": {"matchLabels": [1], "matchExpressions": [5, {"operator": 3}]},
                "ports": [{"port": 1.5e300, "nodePort": -9_223_372_036_854_775_808_i64}], "capacity": [],
                "claimRef": "x", "template": {"metadata": 5,
                    "spec": {"containers": [{"ports": [{"hostPort": "x"}]}]}}},
                "status": {"readyReplicas": u64::MAX, "restartCount": -1, "startTime": "2024-05-01T12:00:00Z",
                "completionTime": "2023-05-01T12:00:00Z", "addresses": {"type": "InternalIP"},
                    "nodeInfo": []},
                "data": ["a"], "binaryData": {"x": 5}, "stringData": {"k": 5}, "type": 5}),
    ];
    let mut g = Gen(0x2545_f491_4f6c_dd1d);
    let generated: Vec<Value> = (0..400).map(|_| g.value(0)).collect();
    let all: Vec<Value> = fixed.iter().cloned().chain(generated).collect();
    for kind in Kind::ALL {
        for o in &all {
            let _ = table(*kind, std::slice::from_ref(o), true, true, NOW);
            let _ = describe(*kind, o, &all[..3], NOW);
            let _ = describe(*kind, o, std::slice::from_ref(o), NOW);
        }
        let out = table(*kind, &all, false, false, NOW);
        assert_eq!(out.lines().count(), all.len() + 1, "{kind}");
    }
}
