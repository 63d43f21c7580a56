//! A fleet for end-to-end tests: devices (agents in network namespaces of their own, with
//! state and run directories) around one hub, and the waits and CLI helpers the tests share.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::device::{import_busybox, wait_for, Agent, Device, Netns};
use crate::Hub;

/// Whether the test can run (root); in CI (`CI` set) not being root is a failure.
pub fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "this test needs root (CI runs it as root)");
    false
}

/// A TCP port free on every address right now.
/// The image the test devices import (`device::import_busybox`).
pub const IMAGE: &str = "flotilla.local/busybox:demo";

/// A pod bound to `node` by name that sleeps forever.
pub fn pinned_pod(name: &str, node: &str) -> String {
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

/// The output of a command that must succeed.
pub fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The JSON a hub CLI command prints, if it succeeds.
pub fn get_json(hub: &Hub, args: &[&str]) -> Option<Value> {
    let out = hub.cli(args, None);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}

/// One device: its host (network namespace), directories and agent.
pub struct Node {
    pub name: String,
    pub ns: Netns,
    pub state: PathBuf,
    pub run: PathBuf,
    pub config: PathBuf,
    pub agent: Option<Agent>,
    pub device: Device,
}

impl Node {
    pub fn new(tmp: &Path, name: &str) -> Node {
        let (state, run) = (tmp.join(format!("{name}-state")), tmp.join(format!("{name}-run")));
        import_busybox(&state, tmp);
        Node {
            name: name.into(),
            ns: Netns::create(),
            config: tmp.join(format!("{name}.json")),
            device: Device::new(&state, &run),
            state,
            run,
            agent: None,
        }
    }

    pub fn start(&mut self) {
        self.agent = Some(Agent::start(&self.state, &self.run, &self.config, Some(&self.ns)));
    }

    /// Starts the agent with extra environment variables.
    pub fn start_with_env(&mut self, env: &[(&str, &str)]) {
        self.agent = Some(Agent::start_with_env(&self.state, &self.run, &self.config, Some(&self.ns), env));
    }

    pub fn log(&self) -> PathBuf {
        self.state.with_extension("log")
    }

    pub fn password(&self) -> String {
        let cfg: Value = serde_json::from_slice(&std::fs::read(&self.config).unwrap()).unwrap();
        cfg["password"].as_str().unwrap().to_string()
    }
}

/// A hub the devices reach from their namespaces (MQTT on every address, advertised at the
/// namespaces' gateway), started with `extra` serve arguments, and one device per name, each
/// added with `node add` but not started.
pub fn fleet(tmp: &Path, names: &[&str], extra: &[&str]) -> (Hub, Vec<Node>) {
    let nodes: Vec<Node> = names.iter().map(|n| Node::new(tmp, n)).collect();
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let advertise = format!("mqtt://{}:{port}", nodes[0].ns.gateway);
    let mut args = vec!["--mqtt-listen", listen.as_str(), "--advertise-broker", advertise.as_str()];
    args.extend_from_slice(extra);
    let hub = Hub::start_with(&tmp.join("hub"), &args);
    for n in &nodes {
        ok(hub.cli(&["node", "add", &n.name, "-o", n.config.to_str().unwrap()], None));
    }
    (hub, nodes)
}

/// The hub's and the agents' log files (printed when a wait times out).
pub fn logs<'a>(hub: &'a Hub, nodes: &'a [Node]) -> Vec<PathBuf> {
    let mut v = vec![hub.log.clone()];
    v.extend(nodes.iter().map(Node::log));
    v
}

/// Waits up to 90 s for `f`, printing the logs' ends on a timeout.
pub fn wait(what: &str, hub: &Hub, nodes: &[Node], f: impl FnMut() -> bool) {
    let l = logs(hub, nodes);
    let refs: Vec<&Path> = l.iter().map(PathBuf::as_path).collect();
    wait_for(what, 90, &refs, f);
}

/// Whether the hub sees the node Ready.
pub fn ready(hub: &Hub, node: &str) -> bool {
    get_json(hub, &["get", "node", node, "-o", "json"]).is_some_and(|n| condition_true(&n, "Ready"))
}

/// Whether an object (a Node, a Pod, as JSON) has the condition `type_` with status True.
pub fn condition_true(obj: &Value, type_: &str) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == type_ && c["status"] == "True"))
}
