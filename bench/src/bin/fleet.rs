//! Fleet simulator and scale benchmark, against a release hub with its embedded broker.
//!
//! A simulated agent speaks the real protocol over MQTT without running containers: it connects
//! with its node's credentials (client id = node name, a retained "offline" presence as its last
//! will), subscribes to its desired state, publishes "online" presence, a full status report
//! (node info with the well-known labels, Ready) on connect, on every newer snapshot (each pod
//! reported Running and Ready at once) and every 5 minutes, and a heartbeat every 10 s (the
//! whole report instead when `flotilla-agent`'s `Resend` rule says so), as `flotilla-agent` does. Many run per process on one thread; processes of at most
//! `--per-process` nodes (a process here may hold 20,000 files). `fleet --simulate FILE` runs
//! the nodes of FILE (a JSON array of agent configurations) and prints `ready N` once N
//! connected, then `reconnected NODE MS` when a node is back after losing the broker and
//! `resynced NODE MS` when it has its desired state from the broker again (unix milliseconds);
//! `tests/tests/e2e/storm.rs` uses it for the reconnect storm of the fault suite.
//!
//! Measured, for `--nodes N`:
//! - time to create N node credentials through the API and for all N nodes to be Ready;
//! - steady state over `--idle-seconds`: hub CPU and RSS, store writes per second (the store's
//!   revision), bytes the hub process wrote to disk (scaled to a day), MQTT bytes per node per
//!   idle hour (the kernel's counters of the broker's sockets, both ways);
//! - a DaemonSet applied once until every node reports its pod Ready;
//! - apply → Running of a single pod bound to one node, p50 and p99 over `--runs`.
//!
//! - reconnect storms: `--storms N` of them (a soak), `--storm-pause` seconds apart (35: the
//!   nodes' back-off starts over after 30 s connected); every node must come back and have
//!   its desired state again each time.
//!
//! ```sh
//! cargo build --release --workspace --bins
//! target/release/fleet [--nodes 1000] [--per-process 4000] [--idle-seconds 60] [--runs 50] \
//!     [--storms 1] [--storm-pause 35]
//! ```

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use flotilla_bench::{arg, cpu_time, ms, quantile, rss_pss, wait_until, Api, Hub};
use flotilla_link::{AgentConfig, Link, LinkConfig, LinkEvent};
use flotilla_shared::api::{Condition, ContainerState, ContainerStatus, PodPhase, PodStatus, StateRunning};
use flotilla_shared::wire::{
    self, topics::Topics, DesiredSnapshot, Heartbeat, NodeCondition, NodeInfo, PodReport, Presence,
    StatusReport,
};
use serde_json::{json, Value};

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn rfc3339_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Every pod of the snapshot Running and Ready, as an agent reports it once started.
fn running(s: &DesiredSnapshot) -> Vec<PodReport> {
    let since = rfc3339_now();
    let cond = |t: &str| Condition {
        type_: t.into(),
        status: "True".into(),
        last_transition_time: Some(since.clone()),
        last_heartbeat_time: None,
        reason: None,
        message: None,
    };
    s.pods
        .iter()
        .map(|p| PodReport {
            namespace: p.metadata.namespace().to_string(),
            name: p.metadata.name().to_string(),
            uid: p.metadata.uid.clone().unwrap_or_default(),
            status: PodStatus {
                phase: Some(PodPhase::Running),
                conditions: Some(
                    ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
                        .into_iter()
                        .map(cond)
                        .collect(),
                ),
                container_statuses: Some(
                    p.spec
                        .containers
                        .iter()
                        .map(|c| ContainerStatus {
                            name: c.name.clone(),
                            state: Some(ContainerState {
                                running: Some(StateRunning { started_at: Some(since.clone()) }),
                                ..Default::default()
                            }),
                            ready: true,
                            restart_count: 0,
                            image: c.image.clone(),
                            started: Some(true),
                            ..Default::default()
                        })
                        .collect(),
                ),
                start_time: Some(since.clone()),
                ..Default::default()
            },
        })
        .collect()
}

/// One simulated node, forever.
async fn sim_node(cfg: AgentConfig, ready: tokio::sync::mpsc::UnboundedSender<()>) -> anyhow::Result<()> {
    let topics = Topics::new(&cfg.topic_root).map_err(anyhow::Error::msg)?;
    let node = cfg.node.clone();
    let session = now_ms();
    let presence = |online: bool| Presence {
        node: node.clone(),
        online,
        boot_id: format!("sim-{node}"),
        agent_version: "sim".into(),
        session,
        time_ms: now_ms(),
    };
    let link = LinkConfig {
        url: cfg.broker.parse().context("broker URL")?,
        client_id: node.clone(),
        username: cfg.username.clone(),
        password: cfg.password.clone(),
        ca_pem: None,
        keep_alive: Duration::from_secs(15),
        subscriptions: vec![topics.desired(&node)],
        will: Some((topics.presence(&node), wire::encode(&presence(false)))),
        max_packet: (wire::DEFAULT_MAX_PAYLOAD + 64 * 1024) as u32,
    };
    // The agent's own link: the same reconnect back-off with jitter.
    let (tx, mut events) = tokio::sync::mpsc::channel(16);
    let link = Link::spawn(link, tx)?;
    let mut info = NodeInfo {
        arch: "amd64".into(),
        os: "linux".into(),
        kernel: "sim".into(),
        os_image: "simulated".into(),
        hostname: node.clone(),
        cpus: 4,
        memory_bytes: 4 << 30,
        agent_version: "sim".into(),
        boot_id: format!("sim-{node}"),
        ..Default::default()
    };
    for (k, v) in
        [("kubernetes.io/arch", "amd64"), ("kubernetes.io/os", "linux"), ("kubernetes.io/hostname", &node)]
    {
        info.labels.insert(k.into(), v.to_string());
    }
    let (mut seq, mut generation, mut pods) = (0u64, 0u64, Vec::new());
    // A simulated agent process: its own epoch, as a real agent draws one when it starts.
    let epoch = now_ms().rotate_left(20)
        ^ node.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
        | 1;
    let report = |seq: u64, generation: u64, pods: &Vec<PodReport>| StatusReport {
        node: node.clone(),
        seq,
        observed_generation: generation,
        time_ms: now_ms(),
        info: info.clone(),
        conditions: vec![NodeCondition {
            kind: "Ready".into(),
            status: true,
            reason: "AgentReady".into(),
            message: "simulated".into(),
            since_ms: 0,
        }],
        pods: pods.clone(),
        epoch,
    };
    // Heartbeats spread over the period, as real devices' start times are.
    let phase = Duration::from_millis(now_ms() % 10_000);
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + phase, Duration::from_secs(10));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut full = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(300),
        Duration::from_secs(300),
    );
    let mut first = true;
    // When a tick repeats the whole report, and whether the link is up: the agent's own rule.
    let mut resend = flotilla_agent::node::hub::Resend::default();
    let mut up = false;
    // Since the last reconnect: whether the desired state came again (for the broker restarts).
    let mut resynced = true;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                None => return Ok(()),
                Some(LinkEvent::Connected { .. }) => {
                    up = true;
                    // (Unlike the agent, the interval keeps its phase: the spread of the
                    // simulated devices' heartbeats is part of the benchmark.)
                    resend.connected();
                    link.publish(topics.presence(&node), wire::encode(&presence(true)), true).await?;
                    seq += 1;
                    link.publish(topics.status(&node), wire::encode(&report(seq, generation, &pods)), false).await?;
                    if first {
                        first = false;
                        let _ = ready.send(());
                    } else {
                        // For the reconnect storm: when this node was back.
                        println!("reconnected {node} {}", now_ms());
                        resynced = false;
                    }
                }
                Some(LinkEvent::Disconnected { .. }) => up = false,
                Some(LinkEvent::Message { topic, payload }) if topic == topics.desired(&node) && payload.is_empty() => {
                    resend.forgotten();
                }
                Some(LinkEvent::Message { topic, payload }) if topic == topics.desired(&node) => {
                    if let Ok(s) = wire::decode::<DesiredSnapshot>(&payload, wire::DEFAULT_MAX_PAYLOAD) {
                        if s.node == node {
                            resend.desired_seen(s.generation > generation);
                        }
                        if s.node == node && !resynced && s.generation >= generation {
                            // Its desired state again, as the broker now holds it (retained).
                            resynced = true;
                            println!("resynced {node} {}", now_ms());
                        }
                        if s.node == node && s.generation > generation {
                            generation = s.generation;
                            pods = running(&s);
                            seq += 1;
                            link.publish(topics.status(&node), wire::encode(&report(seq, generation, &pods)), false).await?;
                        }
                    }
                }
                Some(_) => {}
            },
            _ = heartbeat.tick(), if up => {
                if resend.tick() {
                    // Every publish takes the next number, repeats too (the agent's `Counter`).
                    seq += 1;
                    let _ = link.try_publish(topics.status(&node), wire::encode(&report(seq, generation, &pods)), false);
                    continue;
                }
                let hb = Heartbeat { node: node.clone(), seq, observed_generation: generation, time_ms: now_ms(), epoch };
                let _ = link.try_publish(topics.status(&node), wire::encode(&hb), false);
            }
            _ = full.tick() => {
                seq += 1;
                let _ = link.try_publish(topics.status(&node), wire::encode(&report(seq, generation, &pods)), false);
            }
        }
    }
}

/// Child mode: runs the nodes of a configuration file; prints `ready N` once all connected.
fn simulate(file: &str) -> anyhow::Result<()> {
    let configs: Vec<AgentConfig> = serde_json::from_slice(&std::fs::read(file)?)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let n = configs.len();
        let failures = Rc::new(std::cell::Cell::new(0usize));
        for cfg in configs {
            let (tx, failures) = (tx.clone(), failures.clone());
            tokio::task::spawn_local(async move {
                if let Err(e) = sim_node(cfg, tx).await {
                    failures.set(failures.get() + 1);
                    eprintln!("simulated node stopped: {e:#}");
                }
            });
            // A gentle ramp: a connect storm of thousands is a different benchmark.
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        // Every node connected, or as many as did within 5 minutes.
        let mut connected = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        while connected < n {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(())) => connected += 1,
                _ => break,
            }
        }
        println!("ready {connected}");
        std::future::pending::<()>().await;
    });
    Ok(())
}

/// (bytes both ways, sockets) of the broker's side of the nodes' connections to `port`: every
/// connection but the busiest, which is the hub's own (it receives what every node sends).
fn broker_socket_bytes(port: u16) -> anyhow::Result<(u64, u64)> {
    let (all, sockets) = socket_bytes(port)?;
    let hub = all.iter().copied().max().unwrap_or(0);
    Ok((all.iter().sum::<u64>() - hub, sockets.saturating_sub(1)))
}

/// Per connection to `port`, the bytes both ways; and how many connections.
fn socket_bytes(port: u16) -> anyhow::Result<(Vec<u64>, u64)> {
    let out = Command::new("ss")
        .args(["-tinH", "state", "established", "sport", &format!("= :{port}")])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |l: &str, key: &str| -> u64 {
        l.split_whitespace().find_map(|w| w.strip_prefix(key)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let mut bytes = Vec::new();
    for l in text.lines() {
        if l.contains("bytes_acked:") || l.contains("bytes_received:") {
            bytes.push(field(l, "bytes_acked:") + field(l, "bytes_received:"));
        }
    }
    let n = bytes.len() as u64;
    Ok((bytes, n))
}

fn write_bytes(pid: i32) -> anyhow::Result<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .context("write_bytes in /proc/PID/io")
}

async fn revision(api: &Api) -> anyhow::Result<u64> {
    let (_, list) = api.send(reqwest::Method::GET, "/api/v1/namespaces", None).await?;
    list.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .context("resourceVersion")
}

/// Ready nodes in the hub (listed at most twice a second: the list is large).
async fn ready_nodes(api: &Api) -> usize {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let Ok((200, list)) = api.send(reqwest::Method::GET, "/api/v1/nodes", None).await else { return 0 };
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|n| {
                    n.pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
                })
                .count()
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--simulate") {
        return simulate(args.get(2).context("--simulate FILE")?);
    }
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(measure())
}

async fn measure() -> anyhow::Result<()> {
    let nodes = arg("--nodes", 1_000) as usize;
    let per = arg("--per-process", 4_000).max(1) as usize;
    let idle = Duration::from_secs(arg("--idle-seconds", 60));
    let runs = arg("--runs", 50) as usize;
    let tmp = tempfile::Builder::new().prefix("flotilla-bench-fleet-").tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let hub = Hub::start_with(&tmp.path().join("hub"), &["--mqtt-listen", &format!("127.0.0.1:{port}")])?;
    let pid = hub.child.id() as i32;
    hub.raise_file_limit()?;
    let api = Rc::new(Api { http: reqwest::Client::new(), url: hub.url.clone(), token: hub.token.clone() });
    let (rss0, _) = rss_pss(pid)?;

    // Credentials, 64 requests at a time.
    let t0 = Instant::now();
    let mut configs: Vec<AgentConfig> = Vec::with_capacity(nodes);
    for chunk in (0..nodes).collect::<Vec<_>>().chunks(64) {
        let batch = futures_util::future::join_all(chunk.iter().map(|i| {
            let api = api.clone();
            async move {
                let path = format!("/flotilla/v1/nodes/sim-{i:05}/credentials");
                let (code, body) = api.send(reqwest::Method::POST, &path, None).await?;
                ensure!(code < 300, "credentials for sim-{i}: {code} {body}");
                anyhow::Ok(serde_json::from_value::<AgentConfig>(body)?)
            }
        }))
        .await;
        for c in batch {
            configs.push(c?);
        }
    }
    let credentials = t0.elapsed();

    // Simulator processes.
    let me = std::env::current_exe()?;
    let t0 = Instant::now();
    let mut children = Vec::new();
    for (i, chunk) in configs.chunks(per).enumerate() {
        let file = tmp.path().join(format!("sim-{i}.json"));
        std::fs::write(&file, serde_json::to_vec(chunk)?)?;
        let child = Command::new(&me)
            .arg("--simulate")
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        children.push(child);
    }
    let mut connected_nodes = 0;
    // (resynced, unix ms): a node back after losing the broker, or with its desired state again.
    let (reconnects_tx, reconnects) = std::sync::mpsc::channel::<(bool, String, u64)>();
    for c in children.iter_mut() {
        let mut out = std::io::BufReader::new(c.stdout.take().context("stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        let tx = reconnects_tx.clone();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                // "reconnected NODE MS" or "resynced NODE MS".
                let mut words = l.split_whitespace();
                let (what, node, t) = (words.next(), words.next(), words.next().and_then(|t| t.parse().ok()));
                if let (Some(what @ ("reconnected" | "resynced")), Some(node), Some(t)) = (what, node, t) {
                    let _ = tx.send((what == "resynced", node.to_string(), t));
                }
            }
        });
        let ready: usize = line.trim().strip_prefix("ready ").and_then(|n| n.parse().ok()).unwrap_or(0);
        ensure!(ready > 0, "a simulator process failed: {line:?}");
        connected_nodes += ready;
    }
    let connected = t0.elapsed();
    ensure!(connected_nodes == nodes, "only {connected_nodes} of {nodes} simulated nodes connected");
    wait_until("every node Ready", 600, || async { ready_nodes(&api).await == nodes }).await?;
    let all_ready = t0.elapsed();
    println!(
        "{nodes} simulated nodes in {} processes: credentials {:.1} s; connected {:.1} s; all Ready in the hub {:.1} s",
        children.len(),
        credentials.as_secs_f64(),
        connected.as_secs_f64(),
        all_ready.as_secs_f64()
    );

    // Steady state.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (c0, r0, w0, (b0, socks)) =
        (cpu_time(pid)?, revision(&api).await?, write_bytes(pid)?, broker_socket_bytes(port)?);
    tokio::time::sleep(idle).await;
    let (c1, r1, w1, (b1, _)) =
        (cpu_time(pid)?, revision(&api).await?, write_bytes(pid)?, broker_socket_bytes(port)?);
    let (rss, _) = rss_pss(pid)?;
    let secs = idle.as_secs_f64();
    println!(
        "steady state over {} s: hub CPU {:.1} % of one core, RSS {:.0} MiB ({:.0} MiB before the nodes); store writes {:.1}/s; hub disk writes {:.1} MiB/day; MQTT {:.1} KiB per node per idle hour ({socks} node connections, both ways, MQTT bytes without TCP/IP headers)",
        idle.as_secs(),
        (c1 - c0).as_secs_f64() * 100.0 / secs,
        rss as f64 / 1024.0,
        rss0 as f64 / 1024.0,
        (r1 - r0) as f64 / secs,
        (w1 - w0) as f64 * 86_400.0 / secs / (1 << 20) as f64,
        (b1 - b0) as f64 * 3_600.0 / secs / nodes as f64 / 1024.0,
    );

    // A DaemonSet on every node.
    let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agentd"},
        "spec": {"selector": {"matchLabels": {"app": "agentd"}},
                 "template": {"metadata": {"labels": {"app": "agentd"}},
                              "spec": {"containers": [{"name": "main", "image": "flotilla.local/busybox:demo"}]}}}});
    let t0 = Instant::now();
    let (code, body) =
        api.send(reqwest::Method::POST, "/apis/apps/v1/namespaces/default/daemonsets", Some(&ds)).await?;
    ensure!(code == 201, "{code} {body}");
    wait_until("the DaemonSet Ready on every node", 1_200, || async {
        api.send(reqwest::Method::GET, "/apis/apps/v1/namespaces/default/daemonsets/agentd", None)
            .await
            .is_ok_and(|(_, d)| {
                d.pointer("/status/numberReady").and_then(Value::as_u64) == Some(nodes as u64)
            })
    })
    .await?;
    println!("DaemonSet applied once -> Ready on all {nodes} nodes: {:.1} s", t0.elapsed().as_secs_f64());

    // apply -> Running for one pod.
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let name = format!("one-{i}");
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": "sim-00000", "containers": [{"name": "main", "image": "flotilla.local/busybox:demo"}]}});
        let t0 = Instant::now();
        let (code, body) =
            api.send(reqwest::Method::POST, "/api/v1/namespaces/default/pods", Some(&pod)).await?;
        ensure!(code == 201, "{code} {body}");
        wait_until("Running", 120, || async {
            api.phase(&name).await.ok().flatten().as_deref() == Some("Running")
        })
        .await?;
        samples.push(t0.elapsed());
        api.send(reqwest::Method::DELETE, &format!("/api/v1/namespaces/default/pods/{name}"), None).await?;
    }
    samples.sort();
    let by: BTreeMap<&str, Duration> =
        [("p50", quantile(&samples, 0.5)), ("p99", quantile(&samples, 0.99))].into_iter().collect();
    println!(
        "one pod apply -> Running with {nodes} nodes ({runs} runs): p50 {}  p99 {}",
        ms(by["p50"]),
        ms(by["p99"])
    );

    // Reconnect storms: the hub and its broker SIGKILLed, every node loses it at once; the
    // same hub starts again on the same data directory and port. `--storms N` repeats it (a
    // soak), with a pause long enough for the nodes' back-off to start over.
    let storms = arg("--storms", 1).max(1);
    let pause = Duration::from_secs(arg("--storm-pause", 35));
    let mut hub = hub;
    let (mut worst_back, mut worst_resync) = (0u64, 0u64);
    for storm in 1..=storms {
        if storm > 1 {
            tokio::time::sleep(pause).await;
        }
        let dir = hub.dir.clone();
        drop(hub);
        let lost = now_ms();
        hub = Hub::start_with(&dir, &["--mqtt-listen", &format!("127.0.0.1:{port}")])?;
        hub.raise_file_limit()?;
        let restarted = now_ms() - lost;
        // The first time each node came back, and had its desired state again.
        let (mut back, mut resynced) = (BTreeMap::new(), BTreeMap::new());
        let deadline = Instant::now() + Duration::from_secs(180);
        while (back.len() < nodes || resynced.len() < nodes) && Instant::now() < deadline {
            if let Ok((again, node, t)) = reconnects.recv_timeout(Duration::from_secs(1)) {
                let times = if again { &mut resynced } else { &mut back };
                times.entry(node).or_insert(t.saturating_sub(lost));
            }
        }
        let mut back: Vec<u64> = back.into_values().collect();
        let mut resynced: Vec<u64> = resynced.into_values().collect();
        resynced.sort();
        back.sort();
        // Anything still queued belongs to this storm, not the next.
        while reconnects.try_recv().is_ok() {}
        ensure!(
            back.len() == nodes && resynced.len() == nodes,
            "storm {storm}: {} of {nodes} nodes back and {} with their desired state within 180 s",
            back.len(),
            resynced.len()
        );
        // The busiest 100 ms: how much of the fleet came back in the same instant.
        let busiest = back
            .iter()
            .enumerate()
            .map(|(i, t)| back[i..].iter().take_while(|u| **u < t + 100).count())
            .max();
        let d = |v: u64| Duration::from_millis(v);
        let spread: Vec<Duration> = back.iter().map(|t| d(*t)).collect();
        let (last_back, last_resync) = (back[nodes - 1], resynced[nodes - 1]);
        (worst_back, worst_resync) = (worst_back.max(last_back), worst_resync.max(last_resync));
        println!(
            "reconnect storm {storm}/{storms}: {}/{nodes} nodes back after the broker's restart ({} ms to restart the hub): first {}  p50 {}  p99 {}  last {}; at most {} in any 100 ms",
            back.len(),
            restarted,
            ms(spread.first().copied().unwrap_or_default()),
            ms(quantile(&spread, 0.5)),
            ms(quantile(&spread, 0.99)),
            ms(d(last_back)),
            busiest.unwrap_or(0)
        );
        println!(
            "desired state again after the broker's restart: {}/{nodes} nodes, the last {} after the loss",
            resynced.len(),
            ms(d(last_resync))
        );
    }
    if storms > 1 {
        println!(
            "{storms} storms: every node back and resynced each time; worst last back {}, worst last resync {}",
            ms(Duration::from_millis(worst_back)),
            ms(Duration::from_millis(worst_resync))
        );
    }
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(hub);
    Ok(())
}
