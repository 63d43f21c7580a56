//! Scheduling throughput with 1,000 simulated nodes.
//!
//! 1. The pure scheduler: PODS pods of 50 Deployments-like controllers (100m cpu, 128 MiB each,
//!    a third with a preferred anti-affinity) placed one after the other on NODES nodes, each
//!    decision counted before the next: decisions per second and the latency of one decision.
//! 2. The hub end to end: a release `flotilla-hub serve` with NODES Ready Node objects (created
//!    through the API, no agents); PODS unbound pods are created through the API by 32 clients;
//!    the time from the first create until every pod has a node gives pods bound per second
//!    (the store's writes, the scheduling loop and its compare-and-swap bindings included).
//!
//!   cargo build --release --workspace --bins
//!   cargo run --release -p flotilla-bench --bin scheduler [-- NODES PODS]

use std::time::{Duration, Instant};

use flotilla_bench::{ms, quantile, Hub};
use flotilla_hub::scheduler::{self, Cluster};
use serde_json::{json, Value};

fn node(i: usize) -> Value {
    let name = format!("sim-{i:05}");
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/arch": "arm64",
            "zone": format!("z{}", i % 10)}},
        "spec": {},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]}})
}

/// Pod `i` of the 50 controllers, owned by `owners[i % 50]` (kind and uid; made-up ones for the
/// pure scheduler).
fn pod(i: usize, owners: &[(String, String)]) -> Value {
    let app = format!("app-{}", i % 50);
    let (kind, uid) = &owners[i % 50];
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox",
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]});
    if i.is_multiple_of(3) {
        spec["affinity"] = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "zone"}}]}});
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("p-{i:06}"), "namespace": "default", "labels": {"app": app},
            "ownerReferences": [{"apiVersion": if kind == "ConfigMap" { "v1" } else { "apps/v1" }, "kind": kind, "name": app, "uid": uid, "controller": true}]},
        "spec": spec})
}

fn pure(nodes: usize, pods: usize) -> anyhow::Result<()> {
    let node_objs: Vec<Value> = (0..nodes).map(node).collect();
    let mut cluster = Cluster::from_objects(&node_objs, &[], &[], &[]);
    let made_up: Vec<(String, String)> = (0..50).map(|i| ("ReplicaSet".into(), format!("uid-{i}"))).collect();
    let mut lat = Vec::with_capacity(pods);
    let start = Instant::now();
    for i in 0..pods {
        let p: flotilla_shared::api::Pod = serde_json::from_value(pod(i, &made_up))?;
        let t = Instant::now();
        let n = scheduler::schedule(&p, &cluster).map_err(|e| anyhow::anyhow!("{}", e.0))?;
        lat.push(t.elapsed());
        cluster.place(&p, &n);
    }
    let total = start.elapsed();
    lat.sort();
    println!("pure scheduler, {nodes} nodes, {pods} pods:");
    println!("  decisions/s            {:.0}", pods as f64 / total.as_secs_f64());
    println!(
        "  one decision p50 / p99 / last  {} / {} / {}",
        ms(quantile(&lat, 0.5)),
        ms(quantile(&lat, 0.99)),
        ms(*lat.last().unwrap_or(&Duration::ZERO))
    );
    Ok(())
}

async fn hub(nodes: usize, pods: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let hub = Hub::start_with(
        &tmp.path().join("hub"),
        &["--mqtt-listen", "127.0.0.1:0", "--node-grace-seconds", "3600"],
    )?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let (url, token) = (hub.url.clone(), hub.token.clone());
    // Nodes: create, then their status (Ready, allocatable).
    for i in 0..nodes {
        let n = node(i);
        let name = n["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let r = client.post(format!("{url}/api/v1/nodes")).bearer_auth(&token).json(&n).send().await?;
        anyhow::ensure!(r.status().is_success(), "creating node {name}: {}", r.status());
        let r = client
            .put(format!("{url}/api/v1/nodes/{name}/status"))
            .bearer_auth(&token)
            .json(&n)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "node {name} status: {}", r.status());
    }
    // The controllers: the store refuses an object whose controller reference names an owner
    // that does not exist, so the pods get real owners, ConfigMaps (no controller acts on
    // their pods, which are spread and counted by owner uid all the same).
    let mut owners = Vec::new();
    for i in 0..50 {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("app-{i}"), "namespace": "default"}});
        let r = client
            .post(format!("{url}/api/v1/namespaces/default/configmaps"))
            .bearer_auth(&token)
            .json(&cm)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "creating owner {i}: {}", r.status());
        let made: Value = r.json().await?;
        let uid = made.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
        owners.push(("ConfigMap".to_string(), uid));
    }
    let owners = std::sync::Arc::new(owners);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (c, url, token, owners) = (client.clone(), url.clone(), token.clone(), owners.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < pods {
                let r = c
                    .post(format!("{url}/api/v1/namespaces/default/pods"))
                    .bearer_auth(&token)
                    .json(&pod(i, &owners))
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "creating pod {i}: {}", r.status());
                i += 32;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let created = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    let bound = loop {
        let list: Value = client
            .get(format!("{url}/api/v1/namespaces/default/pods"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let n = list["items"]
            .as_array()
            .map_or(0, |v| v.iter().filter(|p| p.pointer("/spec/nodeName").is_some_and(|n| n != "")).count());
        if n == pods {
            break start.elapsed();
        }
        anyhow::ensure!(Instant::now() < deadline, "only {n} of {pods} pods bound after 10 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("hub end to end, {nodes} nodes, {pods} pods created by 32 clients:");
    println!("  all created after      {}", ms(created));
    println!("  all bound after        {}", ms(bound));
    println!("  pods bound/s           {:.0}", pods as f64 / bound.as_secs_f64());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let nodes = args.first().copied().unwrap_or(1000);
    let pods = args.get(1).copied().unwrap_or(3000);
    pure(nodes, pods)?;
    hub(nodes, pods).await
}
