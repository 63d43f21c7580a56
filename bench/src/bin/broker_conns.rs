//! How many MQTT connections the hub's embedded broker holds on this machine, and at what
//! cost: a release hub (file limit raised to the machine's 20,000), a viewer user, and client
//! processes that each open up to 4,800 plain MQTT 3.1.1 connections (a process here may hold
//! at most 20,000 files), keep them alive with PINGREQs, and report. Then the hub's CPU over a
//! 60 s steady-state window and its RSS.
//!
//!   cargo build --release -p flotilla-hub -p flotilla-bench
//!   target/release/broker-conns [--connections 19000] [--per-process 4800]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use flotilla_bench::{arg, cpu_time, release_bin, rss_pss, Hub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An MQTT 3.1.1 CONNECT with user name and password, clean session, keepalive 60 s.
fn connect_packet(client_id: &str, user: &str, password: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60];
    for s in [client_id, user, password] {
        body.extend_from_slice(&(s.len() as u16).to_be_bytes());
        body.extend_from_slice(s.as_bytes());
    }
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend(body);
    packet
}

/// Client mode: opens `count` connections, prints `ready N` (N accepted), holds them.
async fn client(port: u16, user: String, password: String, first: u64, count: u64) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bool>(1024);
    for i in first..first + count {
        let (user, password, tx) = (user.clone(), password.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            let ok = async {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                s.write_all(&connect_packet(&format!("bench-{i}"), &user, &password)).await?;
                let mut ack = [0u8; 4];
                s.read_exact(&mut ack).await?;
                anyhow::ensure!(ack[0] == 0x20 && ack[3] == 0, "CONNACK {ack:?}");
                anyhow::Ok(s)
            }
            .await;
            let _ = tx.send(ok.is_ok()).await;
            if let Ok(mut s) = ok {
                let mut buf = [0u8; 64];
                loop {
                    tokio::time::sleep(Duration::from_secs(45)).await;
                    if s.write_all(&[0xC0, 0]).await.is_err() || s.read(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                }
            }
        }));
        // A gentle ramp: a connect storm measures the accept backlog, not the broker.
        if i % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(tx);
    let mut ok = 0;
    for _ in 0..count {
        if rx.recv().await == Some(true) {
            ok += 1;
        }
    }
    println!("ready {ok}");
    std::io::stdout().flush()?;
    futures_hold().await;
    Ok(())
}

async fn futures_hold() {
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--client") {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let p = |i: usize| args.get(i).cloned().unwrap_or_default();
        return rt.block_on(client(p(2).parse()?, p(3), p(4), p(5).parse()?, p(6).parse()?));
    }
    let total = arg("--connections", 19_000);
    let per = arg("--per-process", 4_800);
    let tmp = tempfile::Builder::new().prefix("flotilla-bench-conns-").tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = tmp.path().join("hub");
    let hub = Hub::start_with(&dir, &["--mqtt-listen", &format!("127.0.0.1:{port}")])?;
    let pid = hub.child.id() as i32;
    // The hub needs a descriptor per connection.
    hub.raise_file_limit()?;
    let viewer = tmp.path().join("viewer.json");
    let st = Command::new(release_bin("flotilla-hub")?)
        .arg("--data-dir")
        .arg(&dir)
        .args(["viewer", "add", "bench", "-o"])
        .arg(&viewer)
        .status()?;
    ensure!(st.success(), "viewer add");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&viewer)?)?;
    let password = v["password"].as_str().context("password")?.to_string();
    let (rss0, _) = rss_pss(pid)?;

    let me = std::env::current_exe()?;
    let t0 = Instant::now();
    let mut children = Vec::new();
    let mut first = 0;
    while first < total {
        let n = per.min(total - first);
        let child = Command::new(&me)
            .args(["--client", &port.to_string(), "bench", &password, &first.to_string(), &n.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        children.push(child);
        first += n;
    }
    let mut accepted = 0u64;
    for c in children.iter_mut() {
        let mut out = c.stdout.take().context("stdout")?;
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while std::io::Read::read(&mut out, &mut b)? == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        let text = String::from_utf8_lossy(&line);
        accepted += text.strip_prefix("ready ").and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0);
    }
    let ramp = t0.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let c0 = cpu_time(pid)?;
    // Longer than the clients' 45 s ping interval, so every connection pings in the window.
    let w = Duration::from_secs(60);
    std::thread::sleep(w);
    let cpu = cpu_time(pid)? - c0;
    let (rss, _) = rss_pss(pid)?;
    println!(
        "embedded broker: {accepted}/{total} connections accepted in {:.1} s ({} client processes); steady state: hub CPU {:.1} % of one core, RSS {:.0} MiB ({:.0} MiB before the connections)",
        ramp.as_secs_f64(),
        children.len(),
        cpu.as_secs_f64() * 100.0 / w.as_secs_f64(),
        rss as f64 / 1024.0,
        rss0 as f64 / 1024.0
    );
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(hub);
    Ok(())
}
