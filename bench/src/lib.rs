//! Shared pieces of Flotilla's benchmarks: starting a release hub and summarising latencies.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::ensure;
use serde_json::Value;
use std::time::{Duration, Instant};

/// `target/release/<name>`, which the benchmark commands build first; or `<name>` in
/// `FLOTILLA_BENCH_BIN_DIR` when set (e.g. `target/debug` for a quick run of a benchmark that
/// counts bytes or messages, not time).
pub fn release_bin(name: &str) -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
    let dir = std::env::var_os("FLOTILLA_BENCH_BIN_DIR").map_or(root.join("target/release"), PathBuf::from);
    let p = dir.join(name);
    anyhow::ensure!(
        p.exists(),
        "{} is missing: run `cargo build --release --workspace --bins` first",
        p.display()
    );
    Ok(p)
}

/// A release `flotilla-hub serve` in its own data directory; killed on drop.
pub struct Hub {
    pub child: Child,
    pub url: String,
    pub token: String,
    pub dir: PathBuf,
}

impl Hub {
    pub fn start(dir: &Path) -> anyhow::Result<Hub> {
        Self::start_with(dir, &["--mqtt-listen", "127.0.0.1:0"])
    }

    /// With extra `serve` arguments; its log goes to `<dir>.log`.
    pub fn start_with(dir: &Path, extra: &[&str]) -> anyhow::Result<Hub> {
        // A restart on the same directory: wait for the new process's file, not the old one.
        let _ = std::fs::remove_file(dir.join("client.json"));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.with_extension("log"))?;
        let child = Command::new(release_bin("flotilla-hub")?)
            .args(["--data-dir", &dir.to_string_lossy(), "serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(dir.join("client.json")) {
                let v: serde_json::Value = serde_json::from_str(&text)?;
                let url = v["server"].as_str().unwrap_or_default().to_string();
                let token = std::fs::read_to_string(dir.join("admin.token"))?.trim().to_string();
                return Ok(Hub { child, url, token, dir: dir.to_path_buf() });
            }
            anyhow::ensure!(Instant::now() < deadline, "hub did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Raises the hub's open-file limit to the machine's hard limit (it holds a descriptor per
    /// MQTT connection).
    pub fn raise_file_limit(&self) -> anyhow::Result<()> {
        let lim = nix::sys::resource::Resource::RLIMIT_NOFILE;
        let (_, hard) = nix::sys::resource::getrlimit(lim)?;
        let st = Command::new("prlimit")
            .args([&format!("--pid={}", self.child.id()), &format!("--nofile={hard}:{hard}")])
            .status()?;
        ensure!(st.success(), "prlimit");
        Ok(())
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `q`-quantile (0..=1) of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// VmRSS and Pss of a process, in KiB.
pub fn rss_pss(pid: i32) -> anyhow::Result<(u64, u64)> {
    let field = |text: &str, key: &str| -> Option<u64> {
        text.lines().find_map(|l| l.strip_prefix(key))?.split_whitespace().next()?.parse().ok()
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    Ok((
        field(&status, "VmRSS:").ok_or_else(|| anyhow::anyhow!("no VmRSS"))?,
        field(&rollup, "Pss:").ok_or_else(|| anyhow::anyhow!("no Pss in smaps_rollup"))?,
    ))
}

/// User + system CPU time a process has used so far.
pub fn cpu_time(pid: i32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as u64;
    Ok(Duration::from_millis(ticks * 1000 / hz.max(1)))
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A release agent; on drop it is killed with everything it started.
pub struct Agent {
    pub child: Child,
    pub state: PathBuf,
    pub run: PathBuf,
}

impl Agent {
    /// Imports the busybox image `archive` into the new state directory `state`, then starts
    /// `flotilla-agent run --config <config>` (image GC off: a build machine's disk is often
    /// fuller than its threshold); its log goes to `log`.
    pub fn start(
        state: &Path,
        run: &Path,
        config: &Path,
        archive: &Path,
        log: &Path,
    ) -> anyhow::Result<Agent> {
        let bin = release_bin("flotilla-agent")?.canonicalize()?;
        let imported = Command::new(&bin)
            .arg("--state-dir")
            .arg(state)
            .args(["image", "import"])
            .arg(archive)
            .status()?;
        ensure!(imported.success(), "image import failed");
        let child = Command::new(&bin)
            .arg("--state-dir")
            .arg(state)
            .args(["run", "--config"])
            .arg(config)
            .arg("--run-dir")
            .arg(run)
            .args(["--image-gc-high-threshold", "100", "--image-gc-low-threshold", "100"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        Ok(Agent { child, state: state.to_path_buf(), run: run.to_path_buf() })
    }
}

/// Builds the busybox image archive the benchmarks run (`scripts/busybox-image.sh`).
pub fn busybox_archive(path: &Path) -> anyhow::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image.sh");
    ensure!(Command::new("bash").arg(&script).arg(path).status()?.success(), "busybox-image.sh failed");
    Ok(())
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Everything it started: shims and sandboxes name the directories on their command line.
        let (state, run) =
            (self.state.to_string_lossy().into_owned(), self.run.to_string_lossy().into_owned());
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let cmd = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default())
                .into_owned();
            if cmd.contains(&state) || cmd.contains(&run) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The hub's HTTP API with the admin token.
pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
}

impl Api {
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let code = resp.status().as_u16();
        Ok((code, resp.json().await.unwrap_or(Value::Null)))
    }

    pub async fn phase(&self, name: &str) -> anyhow::Result<Option<String>> {
        let (code, pod) =
            self.send(reqwest::Method::GET, &format!("/api/v1/namespaces/default/pods/{name}"), None).await?;
        Ok((code == 200)
            .then(|| pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("").to_string()))
    }
}

/// Polls `f` every 5 ms until it holds, for at most `secs`.
pub async fn wait_until<F, Fut>(what: &str, secs: u64, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// The number after `--name` on the command line, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
