//! The hub and an agent over MQTT, as root, with real containers: a node's credentials from
//! `flotilla-hub node add`; a pod bound to the node by `spec.nodeName` reaches the agent
//! through the embedded broker and runs; its status and the Node come back into the hub; the
//! hub's death leaves the pod running, and an agent restarted while the hub is down runs the
//! persisted desired state; the hub back, deleting the pod stops it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use flotilla_tests::device::{alive, container_pid, import_busybox, wait_for, Agent, Device};
use flotilla_tests::{bin, Hub};
use serde_json::{json, Value};

fn get_json(hub: &Hub, args: &[&str]) -> Option<Value> {
    let out = hub.cli(args, None);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}

/// `flotilla-hub logs` reaches the container's log on the device through MQTT: whole, the
/// tail, following, and clear errors for a wrong container or pod.
fn check_logs(hub: &Hub, logs: &[&Path]) {
    wait_for("the container's first ticks in `logs`", 60, logs, || {
        let out = hub.cli(&["logs", "hello"], None);
        let text = String::from_utf8_lossy(&out.stdout);
        out.status.success() && text.starts_with("hello from pi-1\ntick 0\n") && text.contains("tick 2\n")
    });
    let out = hub.cli(&["logs", "hello", "--tail", "1", "-c", "main"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tail = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(tail.starts_with("tick ") && tail.lines().count() == 1, "{tail:?}");

    let out = hub.cli(&["logs", "hello", "-c", "nope"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("container nope is not valid for pod hello; choose one of: [main]"), "{err}");
    let out = hub.cli(&["logs", "ghost"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("pods \"ghost\" not found"));

    // -f: the tail at once, then new lines as the container writes them.
    let mut follow = Command::new(bin("flotilla-hub"))
        .args(["--data-dir", hub.dir.to_str().unwrap(), "logs", "-f", "--tail", "1", "hello"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let tick = |l: &str| l.strip_prefix("tick ").and_then(|n| n.parse::<u64>().ok());
    let first = tick(&rx.recv_timeout(Duration::from_secs(15)).expect("the tail")).expect("a tick");
    for want in first + 1..first + 4 {
        let line = rx.recv_timeout(Duration::from_secs(15)).expect("a followed line");
        assert_eq!(tick(&line), Some(want), "{line}");
    }
    let _ = follow.kill();
    let _ = follow.wait();
}

#[test]
fn a_pod_bound_to_a_node_runs_there_and_reports_back() {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "this test needs root (CI runs it as root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let hub_dir = tmp.path().join("hub");
    let hub = Hub::start(&hub_dir);
    let config = tmp.path().join("pi-1.json");
    let out = hub.cli(&["node", "add", "pi-1", "-o", config.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(cfg["broker"].as_str().unwrap().starts_with("mqtt://127.0.0.1:"), "{cfg}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);

    // The device: an image imported for air-gapped use.
    let (state, run) = (tmp.path().join("agent"), tmp.path().join("run"));
    let _device = Device::new(&state, &run);
    import_busybox(&state, tmp.path());
    let agent_log = state.with_extension("log");
    let logs = [hub.log.as_path(), agent_log.as_path()];
    let agent = Agent::start(&state, &run, &config, None);

    // The node registers itself and turns Ready.
    wait_for("node pi-1 Ready", 60, &logs, || {
        get_json(&hub, &["get", "node", "pi-1", "-o", "json"]).is_some_and(|n| {
            n["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
    });
    let node = get_json(&hub, &["get", "node", "pi-1", "-o", "json"]).unwrap();
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux", "{node}");

    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: hello}\nspec:\n  nodeName: pi-1\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: flotilla.local/busybox:demo\n    imagePullPolicy: Never\n    command: [sh, -c, 'echo hello from pi-1; i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done']\n";
    let out = hub.cli(&["apply", "-f", "-"], Some(pod.as_bytes()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("pod Running in the hub", 60, &logs, || {
        get_json(&hub, &["get", "pod", "hello", "-o", "json"])
            .is_some_and(|p| p["status"]["phase"] == "Running")
    });
    let p = get_json(&hub, &["get", "pod", "hello", "-o", "json"]).unwrap();
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], true, "{p}");
    let wide = String::from_utf8_lossy(&hub.cli(&["get", "pods", "-o", "wide"], None).stdout).into_owned();
    assert!(
        wide.lines().any(|l| l.contains("hello") && l.contains("Running") && l.contains("pi-1")),
        "{wide}"
    );
    let pid = container_pid(&state, &uid, "main").expect("the container's pid");
    check_logs(&hub, &logs);
    // The agent's events reach the hub and show in `describe`.
    wait_for("the agent's events in describe", 30, &logs, || {
        let d = String::from_utf8_lossy(&hub.cli(&["describe", "pod", "hello"], None).stdout).into_owned();
        d.contains("Started container main")
    });

    // ConfigMaps and Secrets come from the hub: files and env; an updated ConfigMap reaches the
    // running container's file.
    // A claim bound by the hub to a hostPath PersistentVolume keeps the last line on the host.
    let pv_dir = state.with_extension("pv");
    let cfg_pod = |msg: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: greeting}}\ndata: {{msg: {msg}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: token}}\nstringData: {{token: t0k3n}}\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: pv-data}}\nspec: {{capacity: {{storage: 1Gi}}, accessModes: [ReadWriteOnce], hostPath: {{path: {pv}, type: DirectoryOrCreate}}}}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data}}\nspec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 100Mi}}}}}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: cfg}}\nspec:\n  nodeName: pi-1\n  terminationGracePeriodSeconds: 1\n  volumes:\n  - {{name: c, configMap: {{name: greeting}}}}\n  - {{name: d, persistentVolumeClaim: {{claimName: data}}}}\n  containers:\n  - name: main\n    image: flotilla.local/busybox:demo\n    imagePullPolicy: Never\n    env: [{{name: TOKEN, valueFrom: {{secretKeyRef: {{name: token, key: token}}}}}}]\n    volumeMounts: [{{name: c, mountPath: /cfg}}, {{name: d, mountPath: /data}}]\n    command: [sh, -c, 'while true; do m=\"$(cat /cfg/msg) $TOKEN\"; echo \"$m\"; echo \"$m\" > /data/last; sleep 0.5; done']\n",
            pv = pv_dir.display()
        )
    };
    let out = hub.cli(&["apply", "-f", "-"], Some(cfg_pod("first").as_bytes()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg_log =
        || String::from_utf8_lossy(&hub.cli(&["logs", "cfg", "--tail", "1"], None).stdout).into_owned();
    wait_for("cfg reads its ConfigMap and Secret", 60, &logs, || cfg_log().contains("first t0k3n"));
    let out = hub.cli(&["apply", "-f", "-"], Some(cfg_pod("second").as_bytes()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the updated ConfigMap in the running container", 60, &logs, || {
        cfg_log().contains("second t0k3n")
    });
    let p = get_json(&hub, &["get", "pod", "cfg", "-o", "json"]).unwrap();
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0, "{p}");
    wait_for("the line in the claim's volume", 10, &logs, || {
        std::fs::read_to_string(pv_dir.join("last")).is_ok_and(|l| l == "second t0k3n\n")
    });
    // The hub wrote the binding into both objects, and re-applying the manifest kept it.
    wait_for("the claim Bound", 20, &logs, || {
        get_json(&hub, &["get", "pvc", "data", "-o", "json"]).is_some_and(|c| c["status"]["phase"] == "Bound")
    });
    let pvc = get_json(&hub, &["get", "pvc", "data", "-o", "json"]).unwrap();
    assert_eq!(
        (&pvc["spec"]["volumeName"], &pvc["status"]["phase"]),
        (&json!("pv-data"), &json!("Bound")),
        "{pvc}"
    );
    let pv = get_json(&hub, &["get", "pv", "pv-data", "-o", "json"]).unwrap();
    assert_eq!(pv["spec"]["claimRef"]["uid"], pvc["metadata"]["uid"], "{pv}");
    assert_eq!(pv["status"]["phase"], "Bound", "{pv}");
    let out = hub.cli(&["delete", "pod", "cfg"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The hub dies: the pod keeps running. The agent restarts while the hub is down (a device
    // reboot without network keeps its pods: the desired state was persisted).
    let mut hub = hub;
    let _ = hub.child.kill();
    let _ = hub.child.wait();
    std::thread::sleep(Duration::from_secs(2));
    assert!(alive(pid), "the container died with the hub");
    drop(agent);
    let agent = Agent::start(&state, &run, &config, None);
    std::thread::sleep(Duration::from_secs(3));
    assert!(alive(pid), "the restarted agent stopped the container");
    assert_eq!(container_pid(&state, &uid, "main"), Some(pid), "the container was restarted");

    // The hub is back (its broker where the agent expects it); deleting the pod stops it on
    // the device.
    let broker = cfg["broker"].as_str().unwrap().trim_start_matches("mqtt://").to_string();
    let hub = Hub::start_with(&hub_dir, &["--mqtt-listen", &broker]);
    let logs = [hub.log.as_path(), agent_log.as_path()];
    wait_for("node Ready again", 60, &logs, || {
        get_json(&hub, &["get", "node", "pi-1", "-o", "json"]).is_some_and(|n| {
            n["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(alive(pid), "the hub's restart stopped the container\n{}", hub.log_text());
    let p = get_json(&hub, &["get", "pod", "hello", "-o", "json"]).unwrap();
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0, "{p}");
    let out = hub.cli(&["delete", "pod", "hello"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the container stopped", 60, &logs, || !alive(pid));
    wait_for("the pod's files removed", 60, &logs, || !state.join("pods").join(&uid).exists());
    drop(agent);
}
