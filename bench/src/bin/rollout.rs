//! Rolling-update benchmark, as root, against the release binaries: one hub with its embedded
//! broker and three agents (three nodes) on loopback, the busybox image in each agent's store.
//! A Deployment of 3 replicas (one per node by required anti-affinity, a readiness probe,
//! maxSurge 1 / maxUnavailable 1) is rolled out; then its template changes N times (default 10)
//! and each time the clock runs from the API write until the hub shows the new revision
//! complete: 3 updated pods Ready and no pod of the old revision left.
//!
//!   cargo build --release --workspace --bins
//!   target/release/rollout [--runs N]

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use flotilla_bench::{arg, busybox_archive, ms, quantile, release_bin, wait_until, Agent, Api, Hub};
use serde_json::{json, Value};

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
const PATH: &str = "/apis/apps/v1/namespaces/default/deployments/web";

fn deployment(version: u64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
      "spec": {"replicas": 3,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
          "spec": {"terminationGracePeriodSeconds": 1,
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
              {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}},
            "containers": [{"name": "main", "image": "flotilla.local/busybox:demo", "imagePullPolicy": "Never",
              "env": [{"name": "VERSION", "value": version.to_string()}],
              "command": ["sh", "-c", "touch /tmp/ready; while true; do sleep 3600; done"],
              "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}}]}}}})
}

/// Whether the pods are exactly three Ready pods of template `version`.
async fn rolled_out(api: &Api, version: u64) -> bool {
    let Ok((200, list)) = api.send(reqwest::Method::GET, "/api/v1/namespaces/default/pods", None).await
    else {
        return false;
    };
    let pods = list["items"].as_array().cloned().unwrap_or_default();
    pods.len() == 3
        && pods.iter().all(|p| {
            p.pointer("/spec/containers/0/env/0/value").and_then(Value::as_str) == Some(&version.to_string())
                && p.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    ensure!(nix::unistd::geteuid().is_root(), "run as root (the agents run real containers)");
    let runs = arg("--runs", 10);
    let tmp = tempfile::Builder::new().prefix("flotilla-bench-rollout-").tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let hub_dir = tmp.path().join("hub");
    let hub = Hub::start_with(&hub_dir, &["--mqtt-listen", &format!("127.0.0.1:{port}")])?;
    let archive = tmp.path().join("busybox.tar");
    busybox_archive(&archive)?;
    let mut agents = Vec::new();
    for node in NODES {
        let config = tmp.path().join(format!("{node}.json"));
        let st = Command::new(release_bin("flotilla-hub")?)
            .arg("--data-dir")
            .arg(&hub_dir)
            .args(["node", "add", node, "-o", config.to_str().context("utf-8")?])
            .status()?;
        ensure!(st.success(), "node add {node} failed");
        let dir = tmp.path().join(node);
        agents.push(Agent::start(
            &dir.join("state"),
            &dir.join("run"),
            &config,
            &archive,
            &tmp.path().join(format!("{node}.log")),
        )?);
    }
    let api = Api { http: reqwest::Client::new(), url: hub.url.clone(), token: hub.token.clone() };
    for node in NODES {
        wait_until("the nodes Ready", 60, || async {
            api.send(reqwest::Method::GET, &format!("/api/v1/nodes/{node}"), None).await.is_ok_and(
                |(c, n)| {
                    c == 200
                        && n.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| {
                            cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
                },
            )
        })
        .await?;
    }
    let (code, body) = api
        .send(reqwest::Method::POST, "/apis/apps/v1/namespaces/default/deployments", Some(&deployment(0)))
        .await?;
    ensure!(code == 201, "creating the deployment: {code} {body}");
    let t0 = Instant::now();
    wait_until("the first rollout", 120, || rolled_out(&api, 0)).await?;
    println!("first rollout (3 pods on 3 nodes, Ready): {}", ms(t0.elapsed()));

    let mut samples = Vec::new();
    for version in 1..=runs {
        let (_, mut current) = api.send(reqwest::Method::GET, PATH, None).await?;
        current["spec"] = deployment(version)["spec"].clone();
        let t0 = Instant::now();
        let (code, body) = api.send(reqwest::Method::PUT, PATH, Some(&current)).await?;
        ensure!(code == 200, "updating the deployment: {code} {body}");
        wait_until("the rolling update", 120, || rolled_out(&api, version)).await?;
        samples.push(t0.elapsed());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    samples.sort();
    println!(
        "rolling update of 3 replicas on 3 nodes, manifest applied -> all new pods Ready and old gone ({runs} runs): min {}  p50 {}  max {}",
        ms(samples[0]),
        ms(quantile(&samples, 0.5)),
        ms(samples[samples.len() - 1])
    );
    drop(agents);
    Ok(())
}
