//! Hub ⇄ agent benchmark over MQTT, as root, against the release binaries: one hub with its
//! embedded broker and one agent on loopback, the busybox image already in the agent's store.
//!
//! 1. apply → Running: a pod bound to the node is POSTed to the hub's API; the time until the
//!    hub reports `status.phase == Running` (polled every 5 ms), over N runs (default 100),
//!    each pod deleted (and gone from the device) before the next;
//! 2. memory of the idle agent connected to its hub, with no pods and with 10 pods;
//! 3. bytes on the agent's MQTT connection while idle, from the kernel's socket counters
//!    (`ss -ti`: payload bytes and segments both ways), scaled to an hour.
//!
//!   cargo build --release -p flotilla-hub -p flotilla-agent -p flotilla-bench
//!   target/release/link [--runs N] [--idle-seconds S]

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use flotilla_bench::{arg, busybox_archive, ms, quantile, release_bin, rss_pss, wait_until, Agent, Api, Hub};
use serde_json::{json, Value};

const IMAGE: &str = "flotilla.local/busybox:demo";
const NODE: &str = "bench-node";

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                                    "command": ["sh", "-c", "while true; do sleep 3600; done"]}]}})
}

/// (payload bytes out+in, segments out+in) of `pid`'s TCP connections to `port`.
fn socket_counters(pid: u32, port: u16) -> anyhow::Result<(u64, u64)> {
    let out = Command::new("ss").args(["-tinpH", "dst", &format!("127.0.0.1:{port}")]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let field = |l: &str, key: &str| -> u64 {
        l.split_whitespace().find_map(|w| w.strip_prefix(key)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    for (i, l) in lines.iter().enumerate() {
        if l.contains(&format!("pid={pid},")) {
            // The counters are on the same line (-H) or the next, indented one.
            let info = format!(
                "{l} {}",
                lines.get(i + 1).filter(|n| n.starts_with(char::is_whitespace)).unwrap_or(&"")
            );
            let bytes = field(&info, "bytes_acked:") + field(&info, "bytes_received:");
            let segs = field(&info, "segs_out:") + field(&info, "segs_in:");
            return Ok((bytes, segs));
        }
    }
    bail!("no connection of pid {pid} to port {port} in `ss` output:\n{text}")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    ensure!(nix::unistd::geteuid().is_root(), "run as root (the agent runs real containers)");
    let runs = arg("--runs", 100) as usize;
    let idle = Duration::from_secs(arg("--idle-seconds", 120));
    let tmp = tempfile::Builder::new().prefix("flotilla-bench-link-").tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let hub_dir = tmp.path().join("hub");
    let hub = Hub::start_with(&hub_dir, &["--mqtt-listen", &format!("127.0.0.1:{port}")])?;
    let config = tmp.path().join("node.json");
    let hub_cli = |args: &[&str]| -> anyhow::Result<()> {
        let st =
            Command::new(release_bin("flotilla-hub")?).arg("--data-dir").arg(&hub_dir).args(args).status()?;
        ensure!(st.success(), "flotilla-hub {args:?} failed");
        Ok(())
    };
    hub_cli(&["node", "add", NODE, "-o", config.to_str().context("utf-8")?])?;

    let (state, run) = (tmp.path().join("state"), tmp.path().join("run"));
    let archive = tmp.path().join("busybox.tar");
    busybox_archive(&archive)?;
    let agent = Agent::start(&state, &run, &config, &archive, &tmp.path().join("agent.log"))?;
    let agent_pid = agent.child.id();
    let api = Api { http: reqwest::Client::new(), url: hub.url.clone(), token: hub.token.clone() };
    wait_until("the node Ready", 60, || async {
        api.send(reqwest::Method::GET, &format!("/api/v1/nodes/{NODE}"), None).await.is_ok_and(|(c, n)| {
            c == 200
                && n.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
    })
    .await?;

    // 1. apply → Running.
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs + 3 {
        let name = format!("lat-{i}");
        let t0 = Instant::now();
        let (code, created) =
            api.send(reqwest::Method::POST, "/api/v1/namespaces/default/pods", Some(&pod(&name))).await?;
        ensure!(code == 201, "creating {name}: {code} {created}");
        wait_until("Running", 60, || async {
            api.phase(&name).await.ok().flatten().as_deref() == Some("Running")
        })
        .await?;
        if i >= 3 {
            samples.push(t0.elapsed()); // the first three warm caches up
        }
        let uid = created.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
        api.send(reqwest::Method::DELETE, &format!("/api/v1/namespaces/default/pods/{name}"), None).await?;
        let dir = state.join("pods").join(uid);
        wait_until("the pod gone from the device", 60, || {
            let gone = !dir.exists();
            async move { gone }
        })
        .await?;
    }
    samples.sort();
    println!(
        "apply -> Running over MQTT ({runs} runs): min {}  p50 {}  p99 {}  max {}",
        ms(samples[0]),
        ms(quantile(&samples, 0.5)),
        ms(quantile(&samples, 0.99)),
        ms(samples[samples.len() - 1])
    );

    // 2 and 3. Idle, without pods, then with 10.
    for pods in [0usize, 10] {
        for i in 0..pods {
            let (code, body) = api
                .send(
                    reqwest::Method::POST,
                    "/api/v1/namespaces/default/pods",
                    Some(&pod(&format!("idle-{i}"))),
                )
                .await?;
            ensure!(code == 201, "{body}");
        }
        for i in 0..pods {
            let name = format!("idle-{i}");
            wait_until("Running", 120, || async {
                api.phase(&name).await.ok().flatten().as_deref() == Some("Running")
            })
            .await?;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (rss, pss) = rss_pss(agent_pid as i32)?;
        let (b0, s0) = socket_counters(agent_pid, port)?;
        tokio::time::sleep(idle).await;
        let (b1, s1) = socket_counters(agent_pid, port)?;
        let per_hour = |v: u64| v as f64 * 3600.0 / idle.as_secs_f64();
        // IPv4 (20 B) + TCP with timestamps (32 B) per segment.
        let (payload, segs) = (per_hour(b1 - b0), per_hour(s1 - s0));
        println!(
            "idle agent with {pods} pods: RSS {:.1} MiB, PSS {:.1} MiB; MQTT socket {:.0} KiB/hour payload, {:.0} segments/hour, {:.0} KiB/hour with TCP/IP headers (measured over {} s)",
            rss as f64 / 1024.0,
            pss as f64 / 1024.0,
            payload / 1024.0,
            segs,
            (payload + segs * 52.0) / 1024.0,
            idle.as_secs()
        );
    }
    for i in 0..10 {
        api.send(reqwest::Method::DELETE, &format!("/api/v1/namespaces/default/pods/idle-{i}"), None).await?;
    }
    wait_until("the pods gone from the device", 120, || {
        let empty = std::fs::read_dir(state.join("pods")).map(|d| d.count() == 0).unwrap_or(true);
        async move { empty }
    })
    .await?;
    drop(agent);
    drop(hub);
    Ok(())
}
