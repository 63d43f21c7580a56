//! Shared pieces of Flotilla's benchmarks: starting a release hub and summarising latencies.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `target/release/<name>`, which the benchmark commands build first.
pub fn release_bin(name: &str) -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
    let p = root.join("target/release").join(name);
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
        let log = std::fs::File::create(dir.with_extension("log"))?;
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
