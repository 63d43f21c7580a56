//! Reconnect storm and embedded broker restart: 50 simulated agents (the fleet simulator,
//! `fleet --simulate`, speaking the real protocol through `flotilla-link`, many in one process)
//! run a DaemonSet's pods; the hub, and with it its embedded broker and every retained message,
//! is SIGKILLed and started again on the same port. Every node loses the broker at the same
//! instant. Asserted:
//! - every node is back within the back-off cap (30 s) of the hub's restart;
//! - the reconnects spread with jitter: no 100 ms window holds more than 20 of the 50 (without
//!   jitter they would all come in the same few milliseconds), and they span at least 300 ms;
//! - every node has its desired state again (retained by the new broker) within 10 s of the
//!   restart, the hub sees every node Ready again, and no pod was replaced;
//! - nodes that die while the hub is down are marked NotReady by the restarted hub after its
//!   grace, though it never heard from them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flotilla_tests::device::wait_for;
use flotilla_tests::fleet::{condition_true, free_port, get_json, ok};
use flotilla_tests::{bin, Hub};
use serde_json::{json, Value};

const NODES: usize = 50;

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The simulator process; killed when dropped.
struct Simulator(Child);

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The DaemonSet's pods as (uid, node, Running and Ready).
fn pods(hub: &Hub) -> Vec<(String, String, bool)> {
    let Some(list) = get_json(hub, &["get", "pods", "-o", "json"]) else { return Vec::new() };
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|p| {
                    let ready = condition_true(p, "Ready");
                    (
                        p["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
                        p["spec"]["nodeName"].as_str().unwrap_or_default().to_string(),
                        p["status"]["phase"] == "Running" && ready,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ready_nodes(hub: &Hub) -> usize {
    let Some(list) = get_json(hub, &["get", "nodes", "-o", "json"]) else { return 0 };
    list["items"].as_array().map_or(0, |items| items.iter().filter(|n| condition_true(n, "Ready")).count())
}

#[test]
fn fifty_agents_losing_the_embedded_broker_come_back_spread_out_and_resynced() {
    let tmp = flotilla_tests::tempdir();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let hub = Hub::start_with(&tmp.path().join("hub"), &["--mqtt-listen", &listen]);

    // Credentials for every node, as `node add` writes them.
    let http = hub.http();
    let configs: Vec<Value> = (0..NODES)
        .map(|i| {
            let (code, body) =
                http.send_json("POST", &format!("/flotilla/v1/nodes/sim-{i:02}/credentials"), &json!({}));
            assert!(code < 300, "credentials for sim-{i:02}: {code} {body}");
            body
        })
        .collect();
    let file = tmp.path().join("nodes.json");
    std::fs::write(&file, serde_json::to_vec(&configs).unwrap()).unwrap();
    let mut child = Command::new(bin("fleet"))
        .arg("--simulate")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the fleet simulator");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let sim = Simulator(child);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("ready {NODES}"), "the simulated nodes did not all connect");
    // (what, node, unix ms) of every later line ("reconnected NODE MS", "resynced NODE MS").
    let (tx, lines) = mpsc::channel::<(String, String, u64)>();
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            let w: Vec<&str> = l.split_whitespace().collect();
            if let [what, node, t] = w[..] {
                if let Ok(t) = t.parse() {
                    let _ = tx.send((what.to_string(), node.to_string(), t));
                }
            }
        }
    });
    let logs = [hub.log.as_path()];
    wait_for("every simulated node Ready", 60, &logs, || ready_nodes(&hub) == NODES);

    // A DaemonSet: a pod on every node, reported Running by the simulator.
    let ds = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agentlet}
spec:
  selector: {matchLabels: {app: agentlet}}
  template:
    metadata: {labels: {app: agentlet}}
    spec:
      containers:
      - {name: main, image: flotilla.local/busybox:demo}
"#;
    ok(hub.cli(&["apply", "-f", "-"], Some(ds.as_bytes())));
    wait_for("a Running pod on every node", 90, &logs, || {
        let p = pods(&hub);
        p.len() == NODES && p.iter().all(|(_, _, running)| *running)
    });
    let before: BTreeSet<(String, String)> = pods(&hub).into_iter().map(|(u, n, _)| (u, n)).collect();
    let nodes: BTreeSet<&String> = before.iter().map(|(_, n)| n).collect();
    assert_eq!(nodes.len(), NODES, "one pod per node: {before:?}");

    // The hub and its broker die; every node loses the connection at once.
    let lost = now_ms();
    let hub = hub.crash_and_restart();
    let up = now_ms();
    // The first time each node came back, and had its desired state again.
    let (mut back, mut again) = (BTreeMap::new(), BTreeMap::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while (back.len() < NODES || again.len() < NODES) && Instant::now() < deadline {
        match lines.recv_timeout(Duration::from_millis(500)) {
            Ok((what, node, t)) if what == "reconnected" => {
                back.entry(node).or_insert(t);
            }
            Ok((what, node, t)) if what == "resynced" => {
                again.entry(node).or_insert(t);
            }
            _ => {}
        }
    }
    let mut reconnected: Vec<u64> = back.into_values().collect();
    let mut resynced: Vec<u64> = again.into_values().collect();
    let log = hub.log_text();
    assert_eq!(reconnected.len(), NODES, "nodes back within 60 s: {reconnected:?}\n{log}");
    assert_eq!(resynced.len(), NODES, "nodes with their desired state again: {resynced:?}\n{log}");
    reconnected.sort_unstable();
    resynced.sort_unstable();
    let (first, last) = (reconnected[0], reconnected[NODES - 1]);
    let busiest =
        (0..NODES).map(|i| reconnected[i..].iter().take_while(|t| **t < reconnected[i] + 100).count());
    let busiest = busiest.max().unwrap_or(0);
    println!(
        "hub restarted in {} ms; reconnects {}..{} ms after the loss, at most {busiest} in any 100 ms; \
         desired state again by {} ms after the restart",
        up - lost,
        first - lost,
        last - lost,
        resynced[NODES - 1].saturating_sub(up)
    );
    assert!(
        last <= up + 30_000,
        "the last node came back {} ms after the restart; the cap is 30 s",
        last - up
    );
    assert!(busiest <= 20, "{busiest} of {NODES} nodes reconnected within 100 ms: a thundering herd");
    assert!(last - first >= 300, "reconnects spread over only {} ms", last - first);
    let resync = resynced[NODES - 1].saturating_sub(up);
    assert!(resync <= 10_000, "the last node had its desired state again {resync} ms after the restart");

    // The hub sees every node Ready again; the DaemonSet's pods are the same ones.
    let logs = [hub.log.as_path()];
    wait_for("every node Ready again", 30, &logs, || ready_nodes(&hub) == NODES);
    let after: BTreeSet<(String, String)> = pods(&hub).into_iter().map(|(u, n, _)| (u, n)).collect();
    assert_eq!(after, before, "pods were replaced across the broker's restart");

    // The hub dies again, and the nodes with it while it is down (no last will reaches it):
    // the restarted hub, which has them Ready in its store, marks them NotReady after its
    // grace (15 s here) although it never heard from them.
    let dir = hub.dir.clone();
    hub.kill();
    drop(sim);
    let grace = ["--mqtt-listen", listen.as_str(), "--node-grace-seconds", "15"];
    let hub = Hub::start_with(&dir, &grace);
    assert_eq!(ready_nodes(&hub), NODES, "the store has the nodes Ready");
    let logs = [hub.log.as_path()];
    wait_for("every silent node NotReady after the grace", 45, &logs, || ready_nodes(&hub) == 0);
}
