//! Flash wear benchmark (issue 25), as root, against the release binaries: one hub with its
//! embedded broker and one agent joined to it over MQTT, the agent's state directory on an
//! ext4 filesystem of its own (a loop device), so the block device's counters hold the state
//! directory's writes and nothing else on the machine. For each scenario, over a window:
//!
//! - `write_bytes` of `/proc/PID/io` of the agent and of every shim and sandbox holder (polled
//!   every second, so processes that come and go during the window are counted too; the
//!   containers' own processes are not);
//! - sectors written by the state directory's block device (`/proc/diskstats`), with the
//!   filesystem synced before and after the window, so what the window dirtied is counted;
//!
//! extrapolated to a day and printed next to the goals: at most 1 MB a day idle with 10 pods,
//! at most 10 MB a day with a change a minute. Scenarios: no pods; 10 pods (`sleep`); 10 pods
//! and one pod annotated a minute (a new desired snapshot, nothing to restart); 10 pods and one
//! pod replaced a minute (deleted, and a new one started).
//!
//!   cargo build --release -p flotilla-hub -p flotilla-agent -p flotilla-bench
//!   target/release/flash [--seconds 120]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use flotilla_bench::{arg, busybox_archive, release_bin, wait_until, Agent, Api, Hub};
use serde_json::{json, Value};

const IMAGE: &str = "flotilla.local/busybox:demo";
const NODE: &str = "flash-node";
const MB: f64 = 1e6;

fn pod(name: &str, change: Option<u64>) -> Value {
    let annotations = change.map_or(json!({}), |n| json!({"flotilla.bench/change": n.to_string()}));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations},
           "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                                    "command": ["sleep", "100000000"]}]}})
}

/// An ext4 filesystem in a sparse file, on a loop device, mounted at `dir`; undone on drop.
struct LoopFs {
    dir: PathBuf,
    device: String,
}

impl LoopFs {
    fn mount(image: &Path, dir: &Path, mib: u64) -> anyhow::Result<LoopFs> {
        std::fs::File::create(image)?.set_len(mib << 20)?;
        let run = |cmd: &mut Command| -> anyhow::Result<String> {
            let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
            ensure!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image))?;
        let device = run(Command::new("losetup").args(["--find", "--show"]).arg(image))?;
        std::fs::create_dir_all(dir)?;
        let fs = LoopFs { dir: dir.to_path_buf(), device };
        run(Command::new("mount").arg(&fs.device).arg(dir))?;
        Ok(fs)
    }

    /// Sectors written so far (field 10 of `/proc/diskstats`), in bytes.
    fn written(&self) -> anyhow::Result<u64> {
        let name = self.device.trim_start_matches("/dev/");
        let stats = std::fs::read_to_string("/proc/diskstats")?;
        for l in stats.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(2) == Some(&name) {
                return Ok(f.get(9).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) * 512);
            }
        }
        bail!("{name} is not in /proc/diskstats")
    }

    /// Writes back everything dirty on the filesystem (syncfs).
    fn sync(&self) -> anyhow::Result<()> {
        ensure!(Command::new("sync").arg("-f").arg(&self.dir).status()?.success(), "sync -f failed");
        Ok(())
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

/// A tmpfs at `dir` (the run directory, as systemd's `RuntimeDirectory` under `/run` is);
/// unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> anyhow::Result<Tmpfs> {
        std::fs::create_dir_all(dir)?;
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=256m", "tmpfs"]).arg(dir).status()?;
        ensure!(st.success(), "mounting a tmpfs on {}", dir.display());
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The agent's processes: the agent itself and everything naming its directories on the
/// command line (shims, sandbox holders, exec helpers), not the containers.
fn agent_processes(dirs: &[&str]) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let cmd = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default())
            .replace('\0', " ");
        if dirs.iter().any(|d| cmd.contains(d)) {
            let role = ["shim", "sandbox", "container-exec"]
                .into_iter()
                .find(|r| cmd.split(' ').any(|a| a == *r))
                .unwrap_or("agent");
            out.push((pid, role.to_string()));
        }
    }
    out
}

fn write_bytes(pid: i32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|l| l.strip_prefix("write_bytes: ")).and_then(|v| v.trim().parse().ok())
}

/// Per process, the first and the last `write_bytes` seen in the window.
#[derive(Default)]
struct IoTally {
    seen: BTreeMap<i32, (String, u64, u64)>,
}

impl IoTally {
    /// Processes already there at the start count from their value then; new ones from zero.
    fn start(dirs: &[&str]) -> IoTally {
        let mut t = IoTally::default();
        for (pid, role) in agent_processes(dirs) {
            if let Some(b) = write_bytes(pid) {
                t.seen.insert(pid, (role, b, b));
            }
        }
        t
    }

    fn poll(&mut self, dirs: &[&str]) {
        for (pid, role) in agent_processes(dirs) {
            if let Some(b) = write_bytes(pid) {
                self.seen.entry(pid).or_insert((role, 0, 0)).2 = b;
            }
        }
    }

    /// Bytes per role, and the number of processes of each.
    fn by_role(&self) -> BTreeMap<String, (u64, usize)> {
        let mut m: BTreeMap<String, (u64, usize)> = BTreeMap::new();
        for (role, first, last) in self.seen.values() {
            let e = m.entry(role.clone()).or_default();
            e.0 += last.saturating_sub(*first);
            e.1 += 1;
        }
        m
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Change {
    None,
    Annotate,
    Replace,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    ensure!(nix::unistd::geteuid().is_root(), "run as root (the agent runs real containers)");
    let window = Duration::from_secs(arg("--seconds", 120));
    ensure!(window >= Duration::from_secs(60), "--seconds must be at least 60 (one change a minute)");
    let tmp = tempfile::Builder::new().prefix("flotilla-bench-flash-").tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let hub_dir = tmp.path().join("hub");
    let hub = Hub::start_with(&hub_dir, &["--mqtt-listen", &format!("127.0.0.1:{port}")])?;
    let config = tmp.path().join("node.json");
    let st = Command::new(release_bin("flotilla-hub")?)
        .arg("--data-dir")
        .arg(&hub_dir)
        .args(["node", "add", NODE, "-o"])
        .arg(&config)
        .status()?;
    ensure!(st.success(), "flotilla-hub node add failed");

    let (state, run) = (tmp.path().join("state"), tmp.path().join("run"));
    let disk = LoopFs::mount(&tmp.path().join("state.img"), &state, 1024)?;
    let archive = tmp.path().join("busybox.tar");
    busybox_archive(&archive)?;
    // The agent's own log goes to the run directory (tmpfs): under systemd it goes to journald,
    // whose writes depend on its Storage= setting, not on the agent; here it would count as
    // the agent's writes to some other disk.
    let run_fs = Tmpfs::mount(&run)?;
    let agent = Agent::start(&state, &run, &config, &archive, &run.join("agent.log"))?;
    let dirs = [state.to_str().context("utf-8")?, run.to_str().context("utf-8")?];
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
    let create = |name: String| {
        let api = &api;
        async move {
            let (code, body) = api
                .send(reqwest::Method::POST, "/api/v1/namespaces/default/pods", Some(&pod(&name, None)))
                .await?;
            ensure!(code == 201, "creating {name}: {code} {body}");
            anyhow::Ok(())
        }
    };
    let running = |name: String| {
        let api = &api;
        async move {
            wait_until(&format!("{name} Running"), 120, || async {
                api.phase(&name).await.ok().flatten().as_deref() == Some("Running")
            })
            .await
        }
    };

    println!(
        "flash wear: bytes written per day by the agent, its shims and sandbox holders (/proc/PID/io write_bytes) and by the state directory's block device ({}, ext4; /proc/diskstats), measured over {} s per scenario",
        disk.device,
        window.as_secs()
    );
    let scenarios = [
        ("idle, no pods", 0usize, Change::None, 1.0),
        ("idle, 10 pods", 10, Change::None, 1.0),
        ("10 pods, one annotated a minute", 10, Change::Annotate, 10.0),
        ("10 pods, one replaced a minute", 10, Change::Replace, 10.0),
    ];
    let mut pods: Vec<String> = Vec::new();
    let mut next = 0u64;
    let mut results = Vec::new();
    for (what, want_pods, change, goal_mb) in scenarios {
        while pods.len() < want_pods {
            let name = format!("p-{next}");
            next += 1;
            create(name.clone()).await?;
            pods.push(name);
        }
        for p in &pods {
            running(p.clone()).await?;
        }
        // Let the start-up settle (reports sent, records written, and the one-off access-time
        // updates of files first read after the pods started, which relatime writes at most
        // once a day per file, committed by the journal within its 5 s), then start from a
        // clean disk.
        tokio::time::sleep(Duration::from_secs(30)).await;
        disk.sync()?;
        let dev0 = disk.written()?;
        let mut tally = IoTally::start(&dirs);
        let t0 = Instant::now();
        let mut changes = 0u64;
        while t0.elapsed() < window {
            if change != Change::None && t0.elapsed() >= Duration::from_secs(60 * changes) {
                changes += 1;
                match change {
                    Change::Annotate => {
                        let (code, body) = api
                            .send(
                                reqwest::Method::PATCH,
                                &format!("/api/v1/namespaces/default/pods/{}", pods[0]),
                                Some(&pod(&pods[0], Some(next))),
                            )
                            .await?;
                        ensure!(code == 200, "annotating {}: {code} {body}", pods[0]);
                        next += 1;
                    }
                    Change::Replace => {
                        let old = pods.remove(0);
                        api.send(
                            reqwest::Method::DELETE,
                            &format!("/api/v1/namespaces/default/pods/{old}"),
                            None,
                        )
                        .await?;
                        let name = format!("p-{next}");
                        next += 1;
                        create(name.clone()).await?;
                        pods.push(name);
                    }
                    Change::None => {}
                }
            }
            tally.poll(&dirs);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tally.poll(&dirs);
        let secs = t0.elapsed().as_secs_f64();
        disk.sync()?;
        let dev = disk.written()? - dev0;
        let roles = tally.by_role();
        let procs: u64 = roles.values().map(|(b, _)| b).sum();
        let per_day = |b: u64| b as f64 * 86_400.0 / secs / MB;
        let detail: Vec<String> =
            roles.iter().map(|(r, (b, n))| format!("{r} ×{n}: {:.3} MB/day", per_day(*b))).collect();
        let worst = per_day(procs).max(per_day(dev));
        println!(
            "{what:<34} processes {:>8.3} MB/day ({:>7} B in window)  device {:>8.3} MB/day ({:>8} B)  goal ≤ {goal_mb} MB/day: {}  [{}; {changes} changes]",
            per_day(procs),
            procs,
            per_day(dev),
            dev,
            if worst <= goal_mb { "met" } else { "MISSED" },
            detail.join(", ")
        );
        results.push(worst <= goal_mb);
    }
    for p in &pods {
        api.send(reqwest::Method::DELETE, &format!("/api/v1/namespaces/default/pods/{p}"), None).await?;
    }
    wait_until("the pods gone from the device", 120, || {
        let empty = std::fs::read_dir(state.join("pods")).map(|d| d.count() == 0).unwrap_or(true);
        async move { empty }
    })
    .await?;
    drop(agent);
    drop(hub);
    drop(disk);
    drop(run_fs);
    println!("goals met: {} of {}", results.iter().filter(|m| **m).count(), results.len());
    Ok(())
}
