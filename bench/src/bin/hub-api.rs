//! Hub API benchmark: latency of mutating calls at a fixed rate (100/s by default) and the
//! highest sustained apply rate, against a release `flotilla-hub serve` on loopback.
//!
//!   cargo build --release --workspace --bins
//!   cargo run --release -p flotilla-bench --bin hub-api [-- RATE SECONDS CONCURRENCY]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_bench::{ms, quantile, Hub};
use serde_json::json;

async fn apply(
    client: &reqwest::Client,
    hub: (&str, &str),
    name: &str,
    seq: u64,
) -> anyhow::Result<Duration> {
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"bench": "hub-api"}},
        "data": {"seq": seq.to_string(), "payload": "x".repeat(256)}});
    let t = Instant::now();
    let r = client
        .patch(format!("{}/api/v1/namespaces/default/configmaps/{name}", hub.0))
        .bearer_auth(hub.1)
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "apply failed: {}", r.status());
    r.bytes().await?;
    Ok(t.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rate = args.first().copied().unwrap_or(100);
    let seconds = args.get(1).copied().unwrap_or(20);
    let concurrency = args.get(2).copied().unwrap_or(32);
    let tmp = tempfile::tempdir()?;
    let hub = Hub::start(&tmp.path().join("hub"))?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;

    // 1. Fixed rate: one apply every 1/rate seconds, each on its own task so a slow one does not
    //    delay the schedule (open-loop, no coordinated omission).
    let mut handles = Vec::new();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let total = rate * seconds;
    for i in 0..total {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (c, url, tok) = (client.clone(), hub.url.clone(), hub.token.clone());
        handles.push(tokio::spawn(
            async move { apply(&c, (&url, &tok), &format!("fixed-{}", i % 500), i).await },
        ));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.push(h.await??);
    }
    lat.sort();
    println!("fixed rate {rate}/s for {seconds}s ({total} applies):");
    println!(
        "  p50 {}   p99 {}   max {}",
        ms(quantile(&lat, 0.5)),
        ms(quantile(&lat, 0.99)),
        ms(quantile(&lat, 1.0))
    );

    // 2. Saturation: `concurrency` clients applying back to back.
    let done = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (c, url, tok, done) = (client.clone(), hub.url.clone(), hub.token.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < stop_at {
                lat.push(apply(&c, (&url, &tok), &format!("sat-{w}-{}", i % 50), i).await?);
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(lat)
        }));
    }
    let t = Instant::now();
    let mut lat = Vec::new();
    for wk in workers {
        lat.extend(wk.await??);
    }
    let elapsed = t.elapsed().as_secs_f64();
    lat.sort();
    let n = done.load(Ordering::Relaxed);
    println!("saturation, {concurrency} concurrent clients for {seconds}s:");
    println!(
        "  {:.0} applies/s sustained ({n} total)   p50 {}   p99 {}",
        n as f64 / elapsed,
        ms(quantile(&lat, 0.5)),
        ms(quantile(&lat, 0.99))
    );
    let db = std::fs::metadata(hub.dir.join("flotilla.db")).map(|m| m.len()).unwrap_or(0);
    let wal = std::fs::metadata(hub.dir.join("flotilla.db-wal")).map(|m| m.len()).unwrap_or(0);
    println!("  database {} KiB, WAL {} KiB after the run", db / 1024, wal / 1024);
    Ok(())
}
