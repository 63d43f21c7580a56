//! The fleet end to end, as root, with real containers: a hub and two agents (three on
//! Mosquitto, the third first coming up while the hub is down), each agent on its
//! own "host" (a network namespace with a veth link to the hub's), first through the hub's
//! embedded broker, then through Debian's Mosquitto configured by `flotilla-hub broker-config
//! mosquitto`. A Deployment spread over the nodes and a pod pinned to one run on the right
//! devices; `get pods -o wide` and `logs` go through the hub; deleting stops the containers.
//! Around that: a device rebooted while the hub is unreachable runs its pods again from the
//! persisted snapshot; on Mosquitto, node credentials cannot read or write another node's
//! topics, old and duplicate snapshots change nothing, and a broker restart that loses every
//! retained message re-syncs every node without restarting a container.
//! On both brokers, what an attacker tried (`attacks`): a dashboard viewer can neither publish
//! as a node nor read the desired state (and Secrets) of a node named like it; the hub never
//! registers a node it issued no credentials to; a node's claims of another node's hostname,
//! of absurd capacity and of a huge label set are refused or clamped with a warning event; and
//! a burst of 300 maximum-size event batches from one node keeps the hub below 300 MB while
//! the other nodes stay Ready.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flotilla_shared::wire::{self, DesiredSnapshot, NodeInfo, StatusReport};
use flotilla_tests::device::{alive, container_pid, wait_for};
use flotilla_tests::fleet::{free_port, get_json, ok, pinned_pod, ready, root, wait, Node};
use flotilla_tests::Hub;
use serde_json::Value;

const WORKLOADS: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: flotilla.local/busybox:demo
        imagePullPolicy: Never
        command: [sh, -c, 'echo web up; while true; do sleep 1; done']
---
apiVersion: v1
kind: Pod
metadata: {name: pinned}
spec:
  nodeName: node-b
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: flotilla.local/busybox:demo
    imagePullPolicy: Never
    command: [sh, -c, 'echo pinned up; while true; do sleep 1; done']
";

/// A running pod as the hub sees it: (name, node, uid).
type Placed = Vec<(String, String, String)>;

/// Applies the Deployment and the pinned pod; checks they run on the right devices.
fn deploy(hub: &Hub, nodes: &[Node]) -> Placed {
    ok(hub.cli(&["apply", "-f", "-"], Some(WORKLOADS.as_bytes())));
    let running = || -> Option<Placed> {
        let list = get_json(hub, &["get", "pods", "-o", "json"])?;
        let items = list["items"].as_array()?;
        let placed: Placed = items
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .map(|p| {
                let s = |ptr: &str| p.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_string();
                (s("/metadata/name"), s("/spec/nodeName"), s("/metadata/uid"))
            })
            .collect();
        (items.len() == 3 && placed.len() == 3).then_some(placed)
    };
    wait("the Deployment's 2 pods and the pinned pod Running", hub, nodes, || running().is_some());
    let placed = running().unwrap();
    let on = |node: &str| placed.iter().filter(|(_, n, _)| n == node).count();
    assert_eq!((on("node-a"), on("node-b")), (1, 2), "web spread over both nodes, pinned on b: {placed:?}");
    assert!(placed.iter().any(|(p, n, _)| p == "pinned" && n == "node-b"), "{placed:?}");
    // Each pod's container really runs on its device (and on no other).
    for (pod, node, uid) in &placed {
        for n in nodes {
            let pid = container_pid(&n.state, uid, "main");
            if &n.name == node {
                assert!(pid.is_some_and(alive), "{pod} not running on {node}");
            } else {
                assert!(pid.is_none(), "{pod} also runs on {}", n.name);
            }
        }
    }
    let wide = ok(hub.cli(&["get", "pods", "-o", "wide"], None));
    for (pod, node, _) in &placed {
        assert!(
            wide.lines()
                .any(|l| l.starts_with(pod.as_str()) && l.contains("Running") && l.contains(node.as_str())),
            "{wide}"
        );
    }
    // Running is reported when the container starts; its first line may reach the log a moment later.
    let log_starts = |pod: &str, line: &str| {
        let out = hub.cli(&["logs", pod], None);
        out.status.success() && out.stdout.starts_with(line.as_bytes())
    };
    wait("pinned's first log line", hub, nodes, || log_starts("pinned", "pinned up\n"));
    let web = placed.iter().find(|(p, _, _)| p.starts_with("web-")).unwrap();
    wait("web's first log line", hub, nodes, || log_starts(&web.0, "web up\n"));
    placed
}

/// Deletes the workloads; every container stops and every pod leaves its device.
fn remove(hub: &Hub, nodes: &[Node], placed: &Placed) {
    let pids: Vec<i32> = placed
        .iter()
        .filter_map(|(_, node, uid)| {
            let n = nodes.iter().find(|n| &n.name == node)?;
            container_pid(&n.state, uid, "main")
        })
        .collect();
    assert_eq!(pids.len(), placed.len());
    ok(hub.cli(&["delete", "-f", "-"], Some(WORKLOADS.as_bytes())));
    wait("every container stopped", hub, nodes, || pids.iter().all(|p| !alive(*p)));
    wait("every pod gone from its device and the hub", hub, nodes, || {
        placed.iter().all(|(_, node, uid)| {
            let n = nodes.iter().find(|n| &n.name == node).unwrap();
            !n.state.join("pods").join(uid).exists()
        }) && get_json(hub, &["get", "pods", "-o", "json"])
            .is_some_and(|l| l["items"].as_array().is_some_and(Vec::is_empty))
    });
}

fn pids(nodes: &[Node], placed: &Placed) -> Vec<i32> {
    placed
        .iter()
        .map(|(_, node, uid)| {
            let n = nodes.iter().find(|n| &n.name == node).unwrap();
            container_pid(&n.state, uid, "main").expect("a running container")
        })
        .collect()
}

#[test]
fn two_hosts_through_the_embedded_broker() {
    if !root() {
        return;
    }
    let tmp = flotilla_tests::tempdir();
    let mut nodes = vec![Node::new(tmp.path(), "node-a"), Node::new(tmp.path(), "node-b")];
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let advertise = format!("mqtt://{}:{port}", nodes[0].ns.gateway);
    let hub_dir = tmp.path().join("hub");
    let args = ["--mqtt-listen", listen.as_str(), "--advertise-broker", advertise.as_str()];
    let hub = Hub::start_with(&hub_dir, &args);
    for n in nodes.iter_mut() {
        ok(hub.cli(&["node", "add", &n.name, "-o", n.config.to_str().unwrap()], None));
        n.start();
    }
    wait("both nodes Ready", &hub, &nodes, || ready(&hub, "node-a") && ready(&hub, "node-b"));
    let placed = deploy(&hub, &nodes);
    check_fleet_topics(&hub, &nodes, port, &placed, &tmp.path().join("grafana.json"));
    let attacker = tmp.path().join("node-x.json");
    ok(hub.cli(&["node", "add", "node-x", "-o", attacker.to_str().unwrap()], None));
    attacks(&hub, &nodes, port, &tmp.path().join("grafana.json"), &attacker, None);

    // A power cut on node-a while the hub is unreachable: agent, shims, containers and the run
    // directory are gone. The agent comes back and runs its persisted desired state.
    hub.kill();
    let before = pids(&nodes, &placed);
    let a = &mut nodes[0];
    a.agent = None;
    a.device.power_cut();
    let on_a: Vec<&(String, String, String)> = placed.iter().filter(|(_, n, _)| n == "node-a").collect();
    assert!(on_a.iter().all(|(_, _, uid)| container_pid(&a.state, uid, "main").is_none_or(|p| !alive(p))));
    a.start();
    let l = [a.log()];
    let refs: Vec<&Path> = l.iter().map(PathBuf::as_path).collect();
    wait_for("node-a's pods running again without the hub", 90, &refs, || {
        on_a.iter().all(|(_, _, uid)| container_pid(&a.state, uid, "main").is_some_and(alive))
    });
    // node-b saw nothing of it.
    let b_before: Vec<i32> =
        placed.iter().zip(&before).filter(|((_, n, _), _)| n == "node-b").map(|(_, p)| *p).collect();
    assert!(b_before.iter().all(|p| alive(*p)));

    let hub = Hub::start_with(&hub_dir, &args);
    wait("both nodes Ready again", &hub, &nodes, || ready(&hub, "node-a") && ready(&hub, "node-b"));
    remove(&hub, &nodes, &placed);
    // The pods' fleet topics are cleared.
    let v: Value = serde_json::from_slice(&std::fs::read(tmp.path().join("grafana.json")).unwrap()).unwrap();
    let pw = v["password"].as_str().unwrap().to_string();
    wait("the pods' fleet topics cleared", &hub, &nodes, || {
        retained(port, "grafana", &pw, "flotilla/v1/fleet/pods/#").is_empty()
    });
}

/// A Mosquitto broker from the generated configuration.
struct Mosquitto {
    child: Child,
    log: PathBuf,
}

impl Mosquitto {
    fn start(dir: &Path) -> Mosquitto {
        let log = dir.join("mosquitto.log");
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new("mosquitto")
            .args(["-c", dir.join("mosquitto.conf").to_str().unwrap(), "-v"])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("mosquitto (Debian's mosquitto package)");
        // Up once its listener takes connections.
        let conf = std::fs::read_to_string(dir.join("mosquitto.conf")).unwrap();
        let port: u16 = conf
            .lines()
            .find_map(|l| l.strip_prefix("listener "))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .expect("a listener in mosquitto.conf");
        wait_for("Mosquitto listening", 10, &[log.as_path()], || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Mosquitto { child, log }
    }

    /// How often Mosquitto has said it re-read its configuration.
    fn reloads(&self) -> usize {
        std::fs::read_to_string(&self.log).unwrap_or_default().matches("Reloading config").count()
    }

    fn reload(&self) {
        let before = self.reloads();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
        wait_for("Mosquitto re-read its configuration", 10, &[self.log.as_path()], || {
            self.reloads() > before
        });
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mosquitto_sub`: the first message on `topic` (raw payload), if one comes within 3 s.
fn sub_one(port: u16, user: &str, password: &str, client_id: &str, topic: &str) -> Option<Vec<u8>> {
    sub_one_within(port, user, password, client_id, topic, 3)
}

/// `sub_one` waiting at most `secs` (a retained message comes at once).
fn sub_one_within(
    port: u16,
    user: &str,
    password: &str,
    client_id: &str,
    topic: &str,
    secs: u32,
) -> Option<Vec<u8>> {
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-u", user, "-P", password, "-i", client_id])
        .args(["-t", topic, "-C", "1", "-W", &secs.to_string(), "-N", "-V", "mqttv5"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    (out.status.success() && !out.stdout.is_empty()).then_some(out.stdout)
}

/// Every retained message under `filter` as (topic, JSON), read with `user`'s credentials.
fn retained(port: u16, user: &str, password: &str, filter: &str) -> Vec<(String, Value)> {
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-u", user, "-P", password])
        .args(["-t", filter, "-v", "--retained-only", "-W", "2", "-V", "mqttv5"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (topic, json) = l.split_once(' ')?;
            Some((topic.to_string(), serde_json::from_str(json).ok()?))
        })
        .collect()
}

/// A dashboard user reads the JSON fleet topics (nodes and pods as `placed`), and nothing else.
fn check_fleet_topics(hub: &Hub, nodes: &[Node], port: u16, placed: &Placed, viewer_file: &Path) {
    ok(hub.cli(&["viewer", "add", "grafana", "-o", viewer_file.to_str().unwrap()], None));
    let v: Value = serde_json::from_slice(&std::fs::read(viewer_file).unwrap()).unwrap();
    let pw = v["password"].as_str().unwrap().to_string();
    let want = |fleet: &[(String, Value)]| {
        let node_a = fleet.iter().find(|(t, _)| t == "flotilla/v1/fleet/nodes/node-a");
        node_a.is_some_and(|(_, n)| n["ready"] == true && n["pods"] == 1)
            && placed.iter().all(|(pod, node, _)| {
                fleet.iter().any(|(t, p)| {
                    t == &format!("flotilla/v1/fleet/pods/default/{pod}")
                        && p["node"] == node.as_str()
                        && p["phase"] == "Running"
                        && p["ready"] == true
                })
            })
    };
    wait("the fleet topics describe the nodes and pods", hub, nodes, || {
        want(&retained(port, "grafana", &pw, "flotilla/v1/fleet/#"))
    });
    assert_eq!(sub_one(port, "grafana", &pw, "dash", "flotilla/v1/nodes/node-a/desired"), None);
    assert!(retained(port, "grafana", &pw, "flotilla/v1/nodes/#").is_empty());
}

fn publish(port: u16, user: &str, password: &str, topic: &str, payload: &Path, retain: bool) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-u", user, "-P", password, "-q", "1"]).args([
        "-t",
        topic,
        "-f",
        payload.to_str().unwrap(),
        "-V",
        "mqttv5",
    ]);
    if retain {
        cmd.arg("-r");
    }
    // Refused publishes may be answered with an error (v5) or dropped silently: either is fine.
    let _ = cmd.output().unwrap();
}

/// Credentials (user, password) from a `node add` or `viewer add` file.
fn creds(file: &Path) -> (String, String) {
    let v: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let user = v["username"].as_str().or(v["node"].as_str()).unwrap().to_string();
    (user, v["password"].as_str().unwrap().to_string())
}

/// `mosquitto_pub` (MQTT 5) with `client_id` (a node must use its own name): whether the
/// broker refused the publish (`Not authorized`).
fn publish_as(
    port: u16,
    user: &str,
    password: &str,
    client_id: Option<&str>,
    topic: &str,
    payload: &Path,
) -> bool {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-u", user, "-P", password, "-q", "1"]).args([
        "-t",
        topic,
        "-f",
        payload.to_str().unwrap(),
        "-V",
        "mqttv5",
    ]);
    if let Some(id) = client_id {
        cmd.args(["-i", id]);
    }
    let out = cmd.output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_lowercase();
    said.contains("not authorized") || said.contains("not authorised")
}

/// An MQTT 5 client of `user` (as its own client id) whose event loop the caller polls, sending
/// packets up to `max_packet` bytes. Needs a tokio runtime.
fn raw_client(
    port: u16,
    user: &str,
    password: &str,
    max_packet: u32,
) -> (rumqttc::v5::AsyncClient, rumqttc::v5::EventLoop) {
    let cfg = flotilla_link::LinkConfig {
        url: format!("mqtt://127.0.0.1:{port}").parse().unwrap(),
        client_id: user.into(),
        username: user.into(),
        password: password.into(),
        ca_pem: None,
        keep_alive: Duration::from_secs(30),
        subscriptions: vec![],
        will: None,
        max_packet,
    };
    rumqttc::v5::AsyncClient::new(flotilla_link::mqtt_options(&cfg).unwrap(), 8)
}

/// Publishes one message at QoS 1 with a client that would send any size: the broker's
/// answer (`Ok` with the PUBACK's reason), or how the connection ended.
fn publish_raw(
    port: u16,
    user: &str,
    password: &str,
    topic: &str,
    payload: Vec<u8>,
) -> Result<String, String> {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::Event;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (client, mut ev) = raw_client(port, user, password, u32::MAX);
        client.publish(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, payload).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(30), ev.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(a)))) => return Ok(format!("{:?}", a.reason)),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("no answer within 30 s".into()),
            }
        }
    })
}

/// The hub process's resident memory in MB.
fn rss_mb(hub: &Hub) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", hub.child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// A status report from `node` (a device with credentials but no agent, played by the test).
fn report(node: &str, info: NodeInfo) -> StatusReport {
    StatusReport {
        node: node.into(),
        seq: 1,
        observed_generation: 0,
        time_ms: 0,
        info,
        conditions: vec![],
        pods: vec![],
        epoch: 42,
    }
}

/// Lets a user write a topic the hub's rules would not give it (user, topic).
type Misconfigure<'a> = dyn Fn(&str, &str) + 'a;

/// What an attacker tried, on either broker. `viewer` is a dashboard user's credentials file,
/// `attacker` a node's (with no agent). `misconfigure`, where the broker can be misconfigured
/// (Mosquitto's ACL file), lets `attacker` write to `topic`, as a broker set up by hand might.
fn attacks(
    hub: &Hub,
    nodes: &[Node],
    port: u16,
    viewer: &Path,
    attacker: &Path,
    misconfigure: Option<&Misconfigure<'_>>,
) {
    let tmp = flotilla_tests::tempdir();
    let (viewer, viewer_pw) = creds(viewer);
    let (attacker, attacker_pw) = creds(attacker);

    // A viewer posing as a node of its own name: its report is refused by the broker, and the
    // desired state the hub keeps for that name (a pod pinned there, with a Secret) is not
    // readable with its credentials.
    let secret_pod = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: lure}}\nstringData: {{token: s3cret-for-{viewer}}}\n---\n{}",
        pinned_pod("lure", &viewer).replace(
            "    command:",
            "    env: [{name: T, valueFrom: {secretKeyRef: {name: lure, key: token}}}]\n    command:"
        )
    );
    ok(hub.cli(&["apply", "-f", "-"], Some(secret_pod.as_bytes())));
    let forged = tmp.path().join("viewer-report.cbor");
    std::fs::write(&forged, wire::encode(&report(&viewer, NodeInfo::default()))).unwrap();
    let status_topic = format!("flotilla/v1/nodes/{viewer}/status");
    assert!(
        publish_as(port, &viewer, &viewer_pw, None, &status_topic, &forged),
        "the viewer's report was taken"
    );
    let desired_topic = format!("flotilla/v1/nodes/{viewer}/desired");
    // The snapshot with the Secret is there to be read (the hub says it published it).
    let published = format!("node=\"{viewer}\"");
    wait("the lure's snapshot published", hub, nodes, || {
        hub.log_text().lines().any(|l| l.contains("published the desired state") && l.contains(&published))
    });
    assert_eq!(
        sub_one(port, &viewer, &viewer_pw, "dash", &desired_topic),
        None,
        "the viewer read a node's desired state"
    );
    assert!(get_json(hub, &["get", "node", &viewer, "-o", "json"]).is_none(), "the viewer became a node");

    // A report for a name the hub issued no credentials to, let through by a misconfigured
    // broker: never registered.
    if let Some(misconfigure) = misconfigure {
        misconfigure(&attacker, "flotilla/v1/nodes/ghost-x/status");
        let ghost = tmp.path().join("ghost.cbor");
        std::fs::write(&ghost, wire::encode(&report("ghost-x", NodeInfo::default()))).unwrap();
        let topic = "flotilla/v1/nodes/ghost-x/status";
        assert!(
            !publish_as(port, &attacker, &attacker_pw, Some(&attacker), topic, &ghost),
            "not let through"
        );
        wait("the hub refuses ghost-x", hub, nodes, || {
            hub.log_text().lines().any(|l| l.contains("issued no credentials") && l.contains("ghost-x"))
        });
        assert!(get_json(hub, &["get", "node", "ghost-x", "-o", "json"]).is_none(), "ghost-x was registered");
    }

    // A node writing its own inbound log request topic (it would serve itself requests): refused.
    let request = tmp.path().join("request.cbor");
    std::fs::write(&request, b"not a request").unwrap();
    let request_topic = format!("flotilla/v1/nodes/{attacker}/log-request");
    assert!(
        publish_as(port, &attacker, &attacker_pw, Some(&attacker), &request_topic, &request),
        "a node wrote its log-request topic"
    );
    // A 50 MB publish: over the broker's packet limit, refused with the connection.
    match publish_raw(
        port,
        &attacker,
        &attacker_pw,
        &format!("flotilla/v1/nodes/{attacker}/events"),
        vec![0; 50 << 20],
    ) {
        Ok(ack) => panic!("the broker took a 50 MB publish: {ack}"),
        Err(e) => eprintln!("a 50 MB publish: {e}"),
    }

    // A node claiming another node's hostname, absurd capacity and a 550 KB label set.
    let mut labels: std::collections::BTreeMap<String, String> =
        (0..5000).map(|i| (format!("attack.example.com/l{i:05}"), "v".repeat(80))).collect();
    labels.insert("kubernetes.io/hostname".into(), "node-a".into());
    let info = NodeInfo {
        arch: "amd64".into(),
        os: "linux".into(),
        cpus: u32::MAX,
        memory_bytes: u64::MAX,
        labels,
        ..NodeInfo::default()
    };
    let claim = tmp.path().join("claim.cbor");
    let bytes = wire::encode(&report(&attacker, info));
    assert!(bytes.len() > 500_000, "{} bytes", bytes.len());
    std::fs::write(&claim, bytes).unwrap();
    let own_status = format!("flotilla/v1/nodes/{attacker}/status");
    assert!(
        !publish_as(port, &attacker, &attacker_pw, Some(&attacker), &own_status, &claim),
        "a node's own report refused"
    );
    wait("the attacker registered", hub, nodes, || {
        get_json(hub, &["get", "node", &attacker, "-o", "json"]).is_some()
    });
    let node = get_json(hub, &["get", "node", &attacker, "-o", "json"]).unwrap();
    let labels = node["metadata"]["labels"].as_object().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], attacker.as_str(), "the hub owns the hostname label");
    assert!(labels.len() <= 64 + 5, "{} labels kept", labels.len());
    assert_eq!(node["status"]["capacity"]["cpu"], "1024", "{}", node["status"]);
    let described = ok(hub.cli(&["describe", "node", &attacker], None));
    assert!(described.contains("NodeRestriction"), "no warning event:\n{described}");

    // A burst of 300 maximum-size event batches (what the broker's packet limit lets through)
    // and 300 of the largest size the events topic takes: the hub stays small, the other
    // nodes Ready.
    let big = |size: usize| {
        let event = wire::Event {
            seq: 1,
            time_ms: 0,
            warning: true,
            reason: "Flood".into(),
            message: "x".repeat(size),
            pod: String::new(),
            container: String::new(),
        };
        wire::encode(&wire::Events { node: attacker.clone(), events: vec![event] })
    };
    let (huge, largest) = (big(wire::DEFAULT_MAX_PAYLOAD - 1024), big((256 << 10) - 1024));
    let before = rss_mb(hub);
    let peak = std::sync::atomic::AtomicU64::new(before);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                peak.fetch_max(rss_mb(hub), std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            use rumqttc::v5::mqttbytes::v5::Packet;
            use rumqttc::v5::Event;
            let max_packet = (wire::DEFAULT_MAX_PAYLOAD + 64 * 1024) as u32;
            let (client, mut ev) = raw_client(port, &attacker, &attacker_pw, max_packet);
            let topic = format!("flotilla/v1/nodes/{attacker}/events");
            let (huge, largest) = (huge.clone(), largest.clone());
            let flood = tokio::spawn(async move {
                for payload in std::iter::repeat_n(huge, 300).chain(std::iter::repeat_n(largest, 300)) {
                    let qos = rumqttc::v5::mqttbytes::QoS::AtLeastOnce;
                    client.publish(topic.clone(), qos, false, payload).await.unwrap();
                }
            });
            // Every publish answered (taken or refused) by the broker: the flood is delivered.
            let mut acked = 0;
            while acked < 600 {
                match tokio::time::timeout(Duration::from_secs(60), ev.poll()).await {
                    Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => panic!("the flooding connection ended after {acked} answers: {e}"),
                    Err(_) => panic!("no answer from the broker for 60 s after {acked} publishes"),
                }
            }
            flood.await.unwrap();
        });
        // The hub has taken what it was sent once it answers again and its nodes are Ready.
        wait("the other nodes Ready after the flood", hub, nodes, || {
            nodes.iter().all(|n| ready(hub, &n.name))
        });
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let (peak, after) = (peak.into_inner(), rss_mb(hub));
    eprintln!("hub RSS: {before} MB before the flood, peak {peak} MB, {after} MB after");
    assert!(
        peak < 300 && after < 300,
        "hub RSS {before} MB before, peak {peak} MB, {after} MB after: the bound is 300 MB"
    );
    ok(hub.cli(&["delete", "pod", "lure"], None));
    ok(hub.cli(&["delete", "secret", "lure"], None));
}

#[test]
fn two_hosts_through_mosquitto() {
    if !root() {
        return;
    }
    let tmp = flotilla_tests::tempdir();
    // Mosquitto drops to its own user: it must be able to reach its files.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let mut nodes = vec![Node::new(tmp.path(), "node-a"), Node::new(tmp.path(), "node-b")];
    // A node that first comes up while the hub is down.
    let mut late = Node::new(tmp.path(), "node-c");
    let port = free_port();
    let (hub_dir, mq) = (tmp.path().join("hub"), tmp.path().join("mosquitto"));
    // Before the hub exists: the hub's user only, and a clear warning.
    let first = Command::new(flotilla_tests::bin("flotilla-hub"))
        .args([
            "--data-dir",
            hub_dir.to_str().unwrap(),
            "broker-config",
            "mosquitto",
            "-o",
            mq.to_str().unwrap(),
        ])
        .args(["--listen", &format!("0.0.0.0:{port}")])
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stderr).contains("only the hub's user was written"));
    let acl = std::fs::read_to_string(mq.join("acl")).unwrap();
    assert!(
        acl.contains("user flotilla-hub\n") && !acl.contains("\npattern ") && !acl.contains("%c"),
        "{acl}"
    );
    let broker = Mosquitto::start(&mq);

    let url = format!("mqtt://127.0.0.1:{port}");
    let advertise = format!("mqtt://{}:{port}", nodes[0].ns.gateway);
    let pw_file = mq.join("hub.password");
    let args = [
        "--broker",
        url.as_str(),
        "--broker-password-file",
        pw_file.to_str().unwrap(),
        "--advertise-broker",
        advertise.as_str(),
    ];
    let hub = Hub::start_with(&hub_dir, &args);
    for n in nodes.iter().chain([&late]) {
        ok(hub.cli(&["node", "add", &n.name, "-o", n.config.to_str().unwrap()], None));
    }
    // Credentials only: a device that never runs an agent here.
    let ghost = tmp.path().join("node-d.json");
    ok(hub.cli(&["node", "add", "node-d", "-o", ghost.to_str().unwrap()], None));
    let viewer_file = tmp.path().join("grafana.json");
    ok(hub.cli(&["viewer", "add", "grafana", "-o", viewer_file.to_str().unwrap()], None));
    // Regenerated with the hub up: both nodes are users now (the listen address is kept by
    // passing it again).
    let out = Command::new(flotilla_tests::bin("flotilla-hub"))
        .args([
            "--data-dir",
            hub_dir.to_str().unwrap(),
            "broker-config",
            "mosquitto",
            "-o",
            mq.to_str().unwrap(),
        ])
        .args(["--listen", &format!("0.0.0.0:{port}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let passwd = std::fs::read_to_string(mq.join("passwd")).unwrap();
    assert!(passwd.contains("node-a:$6$") && passwd.contains("node-b:$6$"), "{passwd}");
    assert!(passwd.contains("grafana:$6$"), "{passwd}");
    broker.reload();
    for n in nodes.iter_mut() {
        n.start();
    }
    wait("both nodes Ready through Mosquitto", &hub, &nodes, || {
        ready(&hub, "node-a") && ready(&hub, "node-b")
    });
    let placed = deploy(&hub, &nodes);
    let before = pids(&nodes, &placed);
    let v: Value = serde_json::from_slice(&std::fs::read(&viewer_file).unwrap()).unwrap();
    let viewer_pw = v["password"].as_str().unwrap().to_string();
    wait("the fleet topics on Mosquitto", &hub, &nodes, || {
        retained(port, "grafana", &viewer_pw, "flotilla/v1/fleet/#")
            .iter()
            .any(|(t, p)| t == "flotilla/v1/fleet/pods/default/pinned" && p["phase"] == "Running")
    });
    assert!(retained(port, "grafana", &viewer_pw, "flotilla/v1/nodes/#").is_empty());

    // Isolation: node-b's credentials cannot read node-a's desired state, not even with
    // node-a's client id, and what it publishes under node-a never reaches the hub.
    let (topic_a, pw_b) = ("flotilla/v1/nodes/node-a/desired", nodes[1].password());
    assert_eq!(sub_one(port, "node-b", &pw_b, "spy", topic_a), None, "node-b read node-a's desired state");
    assert_eq!(sub_one(port, "node-b", &pw_b, "node-a", topic_a), None, "node-b read it as client id node-a");
    let forged = StatusReport {
        node: "node-a".into(),
        seq: u64::MAX / 2,
        observed_generation: 0,
        time_ms: 0,
        info: NodeInfo { os_image: "FORGED".into(), ..NodeInfo::default() },
        conditions: vec![],
        pods: vec![],
        epoch: 1,
    };
    let forged_file = tmp.path().join("forged.cbor");
    std::fs::write(&forged_file, wire::encode(&forged)).unwrap();
    // Refused by the broker (MQTT 5 says so), so nothing can reach the hub later.
    assert!(
        publish_as(port, "node-b", &pw_b, None, "flotilla/v1/nodes/node-a/status", &forged_file),
        "node-b's publish under node-a was not refused"
    );
    let a = get_json(&hub, &["get", "node", "node-a", "-o", "json"]).unwrap();
    assert_ne!(a["status"]["nodeInfo"]["osImage"], "FORGED", "a forged status reached the hub");
    assert!(ready(&hub, "node-a"), "node-a was disturbed");
    // node-b reads its own desired state (the positive control): stop its agent first, since
    // the broker gives the connection node-b's client id and would cut the agent off.
    nodes[1].agent = None;
    let own = sub_one(port, "node-b", &pw_b, "x", "flotilla/v1/nodes/node-b/desired")
        .expect("node-b's own snapshot");
    let snap_b: DesiredSnapshot = wire::decode(&own, wire::DEFAULT_MAX_PAYLOAD).unwrap();
    assert_eq!(snap_b.pods.len(), 2, "{snap_b:?}");

    // Heartbeats from nodes that have never reported. The hub answers node-d (no Node object,
    // no pods) with a cleared desired state, and node-c, which has a pod pinned to it before
    // it ever reported (its snapshot is retained for when it comes), with that snapshot again.
    // Either makes an agent repeat its report.
    let hub_said = |hub: &Hub, node: &str, what: &str| {
        let field = format!("node=\"{node}\"");
        hub.log_text().lines().filter(|l| l.contains(what) && l.contains(&field)).count()
    };
    let heartbeat = |node: &str, password: &str| {
        let beat = tmp.path().join(format!("{node}-heartbeat.cbor"));
        let hb = wire::Heartbeat { node: node.into(), seq: 1, observed_generation: 0, time_ms: 0, epoch: 1 };
        std::fs::write(&beat, wire::encode(&hb)).unwrap();
        publish(port, node, password, &format!("flotilla/v1/nodes/{node}/status"), &beat, false);
    };
    let ghost_pw: Value = serde_json::from_slice(&std::fs::read(&ghost).unwrap()).unwrap();
    heartbeat("node-d", ghost_pw["password"].as_str().unwrap());
    wait("node-d's desired state cleared after its heartbeat", &hub, &nodes, || {
        hub_said(&hub, "node-d", "cleared the desired state") == 1
    });
    assert_eq!(hub_said(&hub, "node-d", "a node that is not registered heartbeats"), 1);
    // Pinned to a node that has not come up yet.
    ok(hub.cli(&["apply", "-f", "-"], Some(pinned_pod("early", "node-c").as_bytes())));
    let published_c = |hub: &Hub| hub_said(hub, "node-c", "published the desired state");
    wait("node-c's snapshot published", &hub, &nodes, || published_c(&hub) == 1);
    heartbeat("node-c", &late.password());
    wait("node-c's snapshot published again after its heartbeat", &hub, &nodes, || published_c(&hub) == 2);

    // Old and duplicate snapshots change nothing: publish (as the hub, while it is down) node-b's
    // snapshot again and an older, empty one.
    hub.kill();
    nodes[1].start();
    // The new node's first status report goes out with no hub listening (reports are not
    // retained): it must still be registered soon after the hub is back, not at the next
    // periodic report 5 minutes later.
    late.start();
    let late_log = late.log();
    wait_for("node-c connected", 30, &[late_log.as_path()], || {
        std::fs::read_to_string(&late_log).unwrap_or_default().contains("connected to the broker")
    });
    let hub_pw = std::fs::read_to_string(&pw_file).unwrap().trim().to_string();
    let dup = tmp.path().join("dup.cbor");
    std::fs::write(&dup, &own).unwrap();
    let old = tmp.path().join("old.cbor");
    let older = DesiredSnapshot { generation: snap_b.generation - 1, pods: vec![], ..snap_b.clone() };
    std::fs::write(&old, wire::encode(&older)).unwrap();
    publish(port, "flotilla-hub", &hub_pw, "flotilla/v1/nodes/node-b/desired", &dup, true);
    publish(port, "flotilla-hub", &hub_pw, "flotilla/v1/nodes/node-b/desired", &old, true);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(pids(&nodes, &placed), before, "a duplicate or older snapshot changed the pods");

    // The broker restarts and loses every retained message; the hub (back up) re-syncs every
    // node, and no container restarts.
    let hub = Hub::start_with(&hub_dir, &args);
    wait("both nodes Ready again", &hub, &nodes, || ready(&hub, "node-a") && ready(&hub, "node-b"));
    // Within two heartbeats (10 s each) of the hub's return.
    wait_for("node-c registered and Ready", 25, &[late_log.as_path(), hub.log.as_path()], || {
        ready(&hub, "node-c")
    });
    wait("the early pod Running on node-c", &hub, &nodes, || {
        get_json(&hub, &["get", "pod", "early", "-o", "json"])
            .is_some_and(|p| p["status"]["phase"] == "Running")
    });
    ok(hub.cli(&["delete", "pod", "early"], None));
    wait("the early pod gone", &hub, &nodes, || {
        get_json(&hub, &["get", "pod", "early", "-o", "json"]).is_none()
    });
    late.agent = None;
    // Within 10 s of the broker's return, every agent is connected again and the broker holds
    // every node's desired state again (retained, as the hub republished it).
    let connects = |n: &Node| {
        std::fs::read_to_string(n.log()).unwrap_or_default().matches("connected to the broker").count()
    };
    let connected_before: Vec<usize> = nodes.iter().map(connects).collect();
    let desired = |node: &str| {
        let topic = format!("flotilla/v1/nodes/{node}/desired");
        // Retained, so it comes at once when it is there: a short wait keeps the check from
        // adding seconds to the bound it measures.
        sub_one_within(port, "flotilla-hub", &hub_pw, "resync-check", &topic, 1)
            .and_then(|p| wire::decode::<DesiredSnapshot>(&p, wire::DEFAULT_MAX_PAYLOAD).ok())
    };
    drop(broker);
    let broker = Mosquitto::start(&mq);
    // The bound counts from the broker being back (it listens once `start` returns).
    let restarted = std::time::Instant::now();
    let logs = flotilla_tests::fleet::logs(&hub, &nodes);
    let refs: Vec<&Path> = logs.iter().map(PathBuf::as_path).collect();
    wait_for("every agent reconnected and every desired state retained again", 10, &refs, || {
        nodes.iter().zip(&connected_before).all(|(n, b)| connects(n) > *b)
            && desired("node-a").is_some()
            && desired("node-b").is_some_and(|s| s.pods.len() == 2 && s.generation >= snap_b.generation)
    });
    let resync = restarted.elapsed();
    assert!(resync <= Duration::from_secs(10), "resynced after {resync:?}, the bound is 10 s");
    wait("both nodes Ready after the broker restart", &hub, &nodes, || {
        ready(&hub, "node-a") && ready(&hub, "node-b")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        pids(&nodes, &placed),
        before,
        "a container restarted\n{}",
        std::fs::read_to_string(&broker.log).unwrap_or_default()
    );
    let misconfigure = |user: &str, topic: &str| {
        let acl = mq.join("acl");
        let mut text = std::fs::read_to_string(&acl).unwrap();
        text.push_str(&format!("\nuser {user}\ntopic write {topic}\n"));
        std::fs::write(&acl, text).unwrap();
        broker.reload();
    };
    attacks(&hub, &nodes, port, &viewer_file, &ghost, Some(&misconfigure));
    remove(&hub, &nodes, &placed);
}
