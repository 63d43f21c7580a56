//! Agent runtime benchmark, as root, against the release `flotilla-agent`:
//!
//! 1. create → start → wait → delete of a `/bin/true` container from one busybox rootfs and one
//!    `config.json` (our spec builder: default seccomp profile, no capabilities, fresh
//!    namespaces), through `flotilla-agent shim`, Debian's `crun run` and `runc run`;
//! 2. memory: the idle agent, then the agent, its shims and its sandbox holders with 10 pods;
//! 3. manifest written → container running: from the rename of a pod manifest into the
//!    watched directory to the CRI timestamp of the container's first output line.
//!
//!   cargo build --release -p flotilla-agent -p flotilla-bench
//!   cargo run --release -p flotilla-bench --bin runtime [-- --iterations N]
//!
//! `FLOTILLA_AGENT_BIN` overrides the agent binary (default `target/release/flotilla-agent`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context};
use flotilla_agent::clock::start_ticks;
use flotilla_agent::runtime::shim::{Exited, Launch, RootfsSource, EXITED_FILE};
use flotilla_agent::runtime::spec::{self, ImageFacts, Namespaces, SpecInput};
use flotilla_bench::{quantile, release_bin, rss_pss};
use flotilla_shared::api::{Object, Pod};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const CRUN: &str = "/usr/bin/crun";
const RUNC: &str = "/usr/sbin/runc";
/// Discarded runs of each runtime before measuring (page cache, first-use costs).
const WARMUP: usize = 3;
const MEMORY_PODS: usize = 10;
const LATENCY_PODS: usize = 20;
const IMAGE: &str = "flotilla.local/busybox:demo";
/// Every cgroup the cycle benchmark creates is below this one (in each v1 controller).
const CGROUP_PARENT: &str = "flotilla-bench";

fn agent_bin() -> anyhow::Result<PathBuf> {
    let p = match std::env::var_os("FLOTILLA_AGENT_BIN") {
        Some(p) => PathBuf::from(p),
        None => release_bin("flotilla-agent").context(
            "build it first: cargo build --release -p flotilla-agent -p flotilla-bench (or set FLOTILLA_AGENT_BIN)",
        )?,
    };
    ensure!(p.exists(), "{} is missing", p.display());
    Ok(p.canonicalize()?)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// min / p50 / p95 / max / mean of samples.
struct Summary {
    min: Duration,
    p50: Duration,
    p95: Duration,
    max: Duration,
    mean: Duration,
}

fn summarize(samples: &[Duration]) -> Summary {
    let mut s = samples.to_vec();
    s.sort();
    let total: Duration = s.iter().sum();
    Summary {
        min: quantile(&s, 0.0),
        p50: quantile(&s, 0.5),
        p95: quantile(&s, 0.95),
        max: quantile(&s, 1.0),
        mean: total / s.len().max(1) as u32,
    }
}

fn first_line(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_string())
        .unwrap_or_else(|e| format!("unavailable ({e})"))
}

fn run_checked(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Clean-up helpers: everything is found under the benchmark's own temporary directory.

/// The pids of `flotilla-agent shim|sandbox` processes whose command line names `under`.
fn helper_pids(agent: &Path, under: &Path, kind: &str) -> Vec<i32> {
    let (agent, under) = (agent.to_string_lossy(), under.to_string_lossy());
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<String> =
            raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.len() >= 3
            && args[0] == agent
            && args[1] == kind
            && args[2..].iter().any(|a| a.starts_with(under.as_ref()))
        {
            pids.push(pid);
        }
    }
    pids.sort();
    pids
}

/// Mount points under `dir` in this mount namespace, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

/// Removes a cgroup v1 tree (children first) in every controller; missing ones are fine.
fn remove_cgroup_tree(rel: &str) {
    fn rm(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    if let Ok(ctrls) = std::fs::read_dir("/sys/fs/cgroup") {
        for c in ctrls.flatten() {
            let d = c.path().join(rel);
            if d.exists() {
                rm(&d);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. create → start → delete cycles.

/// On a cgroup v1 "hybrid" host (cgroup2 mounted at `/sys/fs/cgroup/unified` next to the v1
/// controllers), Debian's crun 1.8 refuses to run anything while the cgroup2 hierarchy holds a
/// controller ("cgroups in hybrid mode not supported"). Moves this process (and so every runtime
/// it starts) into a private mount namespace without that mount: crun, runc and libcontainer
/// then all use the v1 controllers alone. The host's mounts are untouched. Returns whether it
/// did so.
fn hide_unified_cgroup() -> anyhow::Result<bool> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let unified = Path::new("/sys/fs/cgroup/unified");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    if !mountinfo.lines().any(|l| l.split(' ').nth(4) == Some("/sys/fs/cgroup/unified")) {
        return Ok(false);
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS)")?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .context("making / private in the new mount namespace")?;
    umount2(unified, MntFlags::MNT_DETACH).context("unmounting /sys/fs/cgroup/unified (privately)")?;
    Ok(true)
}

fn pod_of(yaml: &str) -> anyhow::Result<Pod> {
    let r = flotilla_shared::manifest::load_str("bench.yaml", yaml);
    ensure!(r.errors.is_empty(), "{:?}", r.errors);
    match r.objects.into_iter().next().map(|o| o.object) {
        Some(Object::Pod(p)) => Ok(p),
        _ => bail!("not a pod"),
    }
}

/// A minimal busybox root filesystem (as the agent's shim tests build it).
fn busybox_rootfs(root: &Path) -> anyhow::Result<()> {
    let busybox = Path::new("/bin/busybox");
    ensure!(busybox.exists(), "/bin/busybox is missing: apt-get install busybox-static");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(busybox, root.join("bin/busybox"))?;
    for applet in ["sh", "echo", "cat", "sleep", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    Ok(())
}

/// `config.json` for container `id` in `bundle` (rootfs at `<bundle>/rootfs`). Only
/// `linux.cgroupsPath` differs between runs and runtimes, so no run finds another's cgroup.
fn write_config(pod: &Pod, bundle: &Path, id: &str) -> anyhow::Result<()> {
    let image = ImageFacts::default();
    let config = spec::build(&SpecInput {
        pod: &pod.metadata,
        pod_spec: &pod.spec,
        container: &pod.spec.containers[0],
        image: &image,
        rootfs: bundle.join("rootfs"),
        cgroups_path: format!("/{CGROUP_PARENT}/{id}"),
        namespaces: Namespaces::Own,
        env: vec![],
        mounts: vec![],
        user: (0, 0),
        additional_gids: vec![],
        pids_limit: 4096,
        host_caps: spec::own_bounding_caps(),
        swap_accounting: spec::host_swap_accounting(),
    })?;
    std::fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Runtime {
    Shim,
    Crun,
    Runc,
}

impl Runtime {
    fn name(self) -> &'static str {
        match self {
            Runtime::Shim => "flotilla-agent shim",
            Runtime::Crun => "crun run",
            Runtime::Runc => "runc run",
        }
    }
}

struct Cycles<'a> {
    agent: &'a Path,
    dir: PathBuf,
    pod: Pod,
    src: PathBuf,
    shim_bundle: PathBuf,
    oci_bundle: PathBuf,
}

impl Cycles<'_> {
    /// One full cycle of `rt`; returns its wall time (process spawn to exit).
    fn once(&self, rt: Runtime, id: &str) -> anyhow::Result<Duration> {
        match rt {
            Runtime::Shim => {
                write_config(&self.pod, &self.shim_bundle, id)?;
                let run = self.dir.join("shim-runs").join(id);
                let launch = Launch {
                    id: id.to_string(),
                    bundle: self.shim_bundle.clone(),
                    state_root: self.dir.join("shim-state"),
                    rootfs: RootfsSource::Bind { path: self.src.clone() },
                    log: run.join("logs/0.log"),
                    log_max_bytes: 1 << 20,
                    status_dir: run.join("status"),
                    memory_cgroup: Some(PathBuf::from(format!("/sys/fs/cgroup/memory/{CGROUP_PARENT}/{id}"))),
                    allow_devices: false,
                };
                std::fs::create_dir_all(&run)?;
                let launch_path = run.join("launch.json");
                std::fs::write(&launch_path, serde_json::to_vec(&launch)?)?;
                let t = Instant::now();
                let out = Command::new(self.agent)
                    .arg("shim")
                    .arg(&launch_path)
                    .stdin(Stdio::null())
                    .output()
                    .context("running flotilla-agent shim")?;
                let took = t.elapsed();
                let exited: Option<Exited> = std::fs::read(run.join("status").join(EXITED_FILE))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                ensure!(
                    out.status.success()
                        && exited.as_ref().is_some_and(|e| e.exit_code == 0 && e.error.is_none()),
                    "flotilla-agent shim {id} failed ({}): {exited:?}\n{}\nlog:\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr),
                    std::fs::read_to_string(run.join("logs/0.log")).unwrap_or_default()
                );
                ensure!(mounts_under(&self.shim_bundle).is_empty(), "the shim left its rootfs mounted");
                ensure!(
                    !self.dir.join("shim-state").join(id).exists(),
                    "the shim left libcontainer state behind"
                );
                std::fs::remove_dir_all(&run)?;
                Ok(took)
            }
            Runtime::Crun | Runtime::Runc => {
                let (bin, root) = if rt == Runtime::Crun {
                    (CRUN, self.dir.join("crun-root"))
                } else {
                    (RUNC, self.dir.join("runc-root"))
                };
                write_config(&self.pod, &self.oci_bundle, id)?;
                let t = Instant::now();
                let out = Command::new(bin)
                    .arg("--root")
                    .arg(&root)
                    .arg("run")
                    .arg("--bundle")
                    .arg(&self.oci_bundle)
                    .arg(id)
                    .stdin(Stdio::null())
                    .output()
                    .with_context(|| format!("running {bin}"))?;
                let took = t.elapsed();
                ensure!(
                    out.status.success(),
                    "{bin} run {id} failed ({}):\n{}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                // `run` in the foreground deletes the container when it exits; make sure.
                if root.join(id).exists() {
                    let _ = Command::new(bin).arg("--root").arg(&root).args(["delete", "-f", id]).output();
                    bail!("{bin} run left container {id} behind");
                }
                Ok(took)
            }
        }
    }
}

fn cycle_bench(agent: &Path, dir: &Path, iterations: usize) -> anyhow::Result<Vec<(Runtime, Vec<Duration>)>> {
    for b in [CRUN, RUNC] {
        ensure!(Path::new(b).exists(), "{b} is missing: apt-get install crun runc");
    }
    let c = Cycles {
        agent,
        dir: dir.to_path_buf(),
        pod: pod_of(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: cycle}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [/bin/true]\n",
        )?,
        src: dir.join("rootfs-src"),
        shim_bundle: dir.join("shim-bundle"),
        oci_bundle: dir.join("oci-bundle"),
    };
    busybox_rootfs(&c.src)?;
    std::fs::create_dir_all(&c.shim_bundle)?;
    std::fs::create_dir_all(&c.oci_bundle)?;
    // crun and runc get a ready directory: a copy of the same tree.
    run_checked(Command::new("cp").arg("-a").arg(&c.src).arg(c.oci_bundle.join("rootfs")), "cp -a")?;
    let runtimes = [Runtime::Shim, Runtime::Crun, Runtime::Runc];
    let mut samples: Vec<(Runtime, Vec<Duration>)> = runtimes.iter().map(|r| (*r, Vec::new())).collect();
    let pid = std::process::id();
    for i in 0..WARMUP + iterations {
        // Rotate the order so that no runtime always runs right after another.
        for k in 0..runtimes.len() {
            let slot = (i + k) % runtimes.len();
            let rt = runtimes[slot];
            let id = format!("fbench-{pid}-{slot}-{i}");
            let took = c.once(rt, &id)?;
            remove_cgroup_tree(&format!("{CGROUP_PARENT}/{id}"));
            if i >= WARMUP {
                samples[slot].1.push(took);
            }
        }
    }
    Ok(samples)
}

// ---------------------------------------------------------------------------------------------
// 2 and 3. The agent with static pods.

fn pod_yaml(name: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: Never\n    command: [sh, -c, '{script}']\n"
    )
}

/// A release `flotilla-agent run` over a manifest directory, with everything it creates under
/// one directory. Dropping it removes the manifests, waits for the pods to go, stops the
/// agent, and then kills and unmounts whatever is left.
struct AgentRun<'a> {
    bin: &'a Path,
    dir: PathBuf,
    state: PathBuf,
    manifests: PathBuf,
    child: Option<Child>,
    /// The uids of the pods it ran, whose pod-level cgroups (`/flotilla/<uid>`) the agent leaves
    /// behind and the clean-up removes.
    uids: std::collections::BTreeSet<String>,
}

impl<'a> AgentRun<'a> {
    fn start(bin: &'a Path, dir: &Path) -> anyhow::Result<AgentRun<'a>> {
        let (state, run, manifests) = (dir.join("state"), dir.join("run"), dir.join("manifests"));
        std::fs::create_dir_all(&manifests)?;
        std::fs::create_dir_all(&state)?;
        let log = std::fs::File::create(dir.join("agent.log"))?;
        let child = Command::new(bin)
            .arg("--state-dir")
            .arg(&state)
            .arg("run")
            .arg("--run-dir")
            .arg(&run)
            .arg("--manifests")
            .arg(&manifests)
            .args(["--node-name", "bench"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting flotilla-agent run")?;
        Ok(AgentRun {
            bin,
            dir: dir.to_path_buf(),
            state,
            manifests,
            child: Some(child),
            uids: Default::default(),
        })
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    fn ensure_alive(&mut self) -> anyhow::Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Some(st) = c.try_wait()? {
                bail!("the agent exited ({st}); its log:\n{}", self.log());
            }
        }
        Ok(())
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `flotilla-agent ps` rows: (pod, container, state).
    fn ps(&self) -> Vec<(String, String, String)> {
        let Ok(out) = Command::new(self.bin).arg("--state-dir").arg(&self.state).arg("ps").output() else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((f.get(1)?.to_string(), f.get(2)?.to_string(), f.get(3)?.to_string()))
            })
            .collect()
    }

    fn wait_for(&mut self, what: &str, secs: u64, mut f: impl FnMut(&Self) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f(self) {
            self.ensure_alive()?;
            ensure!(
                Instant::now() < deadline,
                "timed out waiting for {what}; ps: {:?}\nagent log:\n{}",
                self.ps(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Writes a manifest to a staging directory and renames it in; returns the time just
    /// before the rename.
    fn add(&self, name: &str, yaml: &str) -> anyhow::Result<SystemTime> {
        let staging = self.dir.join("staging");
        std::fs::create_dir_all(&staging)?;
        let tmp = staging.join(format!("{name}.yaml"));
        std::fs::write(&tmp, yaml)?;
        let t0 = SystemTime::now();
        std::fs::rename(&tmp, self.manifests.join(format!("{name}.yaml")))?;
        Ok(t0)
    }

    fn uid_of(&self, name: &str) -> Option<String> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.state.join("status.json")).ok()?).ok()?;
        v["pods"].as_array()?.iter().find(|p| p["name"] == name)?["uid"].as_str().map(String::from)
    }

    /// Remembers the uids of the pods in the agent's status, for the clean-up.
    fn note_uids(&mut self) {
        let v: Option<serde_json::Value> =
            std::fs::read(self.state.join("status.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        for p in v.as_ref().and_then(|v| v["pods"].as_array()).into_iter().flatten() {
            if let Some(u) = p["uid"].as_str() {
                self.uids.insert(u.to_string());
            }
        }
    }

    /// Removes the manifests and waits for every pod and its pod directory to be gone.
    fn remove_all(&mut self) -> anyhow::Result<()> {
        for e in std::fs::read_dir(&self.manifests)?.flatten() {
            std::fs::remove_file(e.path())?;
        }
        self.wait_for("all pods gone", 120, |a| {
            a.ps().is_empty()
                && std::fs::read_dir(a.state.join("pods")).map_or(true, |mut d| d.next().is_none())
        })
    }
}

impl Drop for AgentRun<'_> {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Err(e) = self.remove_all() {
                eprintln!("clean-up: {e:#}");
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Whatever survived: containers (from the shims' records), shims, sandbox holders.
        let mut stray = Vec::new();
        if let Ok(pods) = std::fs::read_dir(self.state.join("pods")) {
            for p in pods.flatten() {
                for c in std::fs::read_dir(p.path().join("containers")).into_iter().flatten().flatten() {
                    let rec = c.path().join("status/running.json");
                    let v: Option<serde_json::Value> =
                        std::fs::read(&rec).ok().and_then(|b| serde_json::from_slice(&b).ok());
                    let Some(v) = v else { continue };
                    if let (Some(pid), Some(ticks)) = (v["pid"].as_i64(), v["startTicks"].as_u64()) {
                        // Only if it is still that process, not a later one with its pid.
                        if start_ticks(pid as i32) == Some(ticks) {
                            stray.push(pid as i32);
                        }
                    }
                }
            }
        }
        stray.extend(helper_pids(self.bin, &self.dir, "shim"));
        stray.extend(helper_pids(self.bin, &self.dir, "sandbox"));
        for pid in stray {
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                eprintln!("clean-up: killed leftover process {pid}");
            }
        }
        for m in mounts_under(&self.dir) {
            if nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH).is_ok() {
                eprintln!("clean-up: unmounted {}", m.display());
            }
        }
        for uid in &self.uids {
            remove_cgroup_tree(&format!("flotilla/{uid}"));
        }
    }
}

struct Memory {
    idle: (u64, u64),
    loaded: (u64, u64),
    shims: Vec<(u64, u64)>,
    sandboxes: Vec<(u64, u64)>,
}

fn memory_bench(agent: &mut AgentRun) -> anyhow::Result<Memory> {
    std::thread::sleep(Duration::from_secs(5));
    agent.ensure_alive()?;
    let idle = rss_pss(agent.pid())?;

    let archive = agent.dir.join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image.sh");
    run_checked(Command::new("bash").arg(&script).arg(&archive), "scripts/busybox-image.sh")?;
    run_checked(
        Command::new(agent.bin).arg("--state-dir").arg(&agent.state).args(["image", "import"]).arg(&archive),
        "flotilla-agent image import",
    )?;
    for i in 0..MEMORY_PODS {
        let name = format!("mem-{i}");
        agent.add(&name, &pod_yaml(&name, "sleep 3600"))?;
    }
    agent.wait_for("10 pods running", 180, |a| {
        a.ps().iter().filter(|(p, c, s)| p.starts_with("mem-") && c == "main" && s == "Running").count()
            == MEMORY_PODS
    })?;
    agent.note_uids();
    // Let the loop settle (status writes, the next resync) before reading.
    std::thread::sleep(Duration::from_secs(5));
    agent.ensure_alive()?;
    let loaded = rss_pss(agent.pid())?;
    let read_all = |kind: &str| -> anyhow::Result<Vec<(u64, u64)>> {
        helper_pids(agent.bin, &agent.dir, kind).into_iter().map(rss_pss).collect()
    };
    let shims = read_all("shim")?;
    let sandboxes = read_all("sandbox")?;
    ensure!(
        shims.len() == MEMORY_PODS && sandboxes.len() == MEMORY_PODS,
        "expected {MEMORY_PODS} shims and sandboxes, found {} and {}",
        shims.len(),
        sandboxes.len()
    );
    agent.remove_all()?;
    Ok(Memory { idle, loaded, shims, sandboxes })
}

/// The CRI timestamp of the first `stdout F up` line of pod `name`'s container `main`.
fn up_time(agent: &AgentRun, name: &str) -> Option<SystemTime> {
    let uid = agent.uid_of(name)?;
    let log =
        std::fs::read_to_string(agent.state.join("pods").join(uid).join("logs/main/current.log")).ok()?;
    let line = log.lines().find(|l| l.ends_with(" stdout F up"))?;
    let t =
        time::OffsetDateTime::parse(line.split(' ').next()?, &time::format_description::well_known::Rfc3339)
            .ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(t.unix_timestamp_nanos()).ok()?))
}

fn latency_bench(agent: &mut AgentRun) -> anyhow::Result<Vec<Duration>> {
    let mut lat = Vec::new();
    for i in 0..LATENCY_PODS {
        let name = format!("lat-{i}");
        let t0 = agent.add(&name, &pod_yaml(&name, "echo up; sleep 3600"))?;
        let mut up = None;
        agent.wait_for(&format!("{name} printing"), 60, |a| {
            up = up_time(a, &name);
            up.is_some()
        })?;
        let up = up.context("no time")?;
        lat.push(up.duration_since(t0).with_context(|| format!("{name}: log time before the rename"))?);
        std::fs::remove_file(agent.manifests.join(format!("{name}.yaml")))?;
        agent.note_uids();
        let uid = agent.uid_of(&name);
        agent.wait_for(&format!("{name} gone"), 60, |a| {
            a.uid_of(&name).is_none() && uid.as_ref().is_none_or(|u| !a.state.join("pods").join(u).exists())
        })?;
    }
    Ok(lat)
}

// ---------------------------------------------------------------------------------------------

fn kib(k: u64) -> String {
    format!("{:.1} MiB", k as f64 / 1024.0)
}

fn mean_max(v: &[(u64, u64)], pick: impl Fn(&(u64, u64)) -> u64) -> String {
    let xs: Vec<u64> = v.iter().map(pick).collect();
    let mean = xs.iter().sum::<u64>() / xs.len().max(1) as u64;
    format!("{} / {}", kib(mean), kib(xs.iter().copied().max().unwrap_or(0)))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let iterations = match args.iter().position(|a| a == "--iterations") {
        Some(i) => args.get(i + 1).context("--iterations N")?.parse().context("--iterations N")?,
        None => 50,
    };
    ensure!(iterations > 0, "--iterations must be positive");
    ensure!(nix::unistd::geteuid().is_root(), "the runtime benchmark needs root");
    let agent = agent_bin()?;
    let tmp = tempfile::Builder::new().prefix("flotilla-bench-runtime.").tempdir()?;

    eprintln!("1/3 memory: idle agent, then {MEMORY_PODS} pods...");
    let mut run = AgentRun::start(&agent, &tmp.path().join("agent"))?;
    let mem = memory_bench(&mut run)?;
    eprintln!("2/3 manifest → running, {LATENCY_PODS} pods one after another...");
    let lat = latency_bench(&mut run)?;
    drop(run);

    // Last, because it leaves this process in a mount namespace of its own.
    let hidden = hide_unified_cgroup()?;
    eprintln!("3/3 create→start→delete, {iterations} runs per runtime (+{WARMUP} warm-up)...");
    let cycles = {
        let dir = tmp.path().join("cycles");
        let r = cycle_bench(&agent, &dir, iterations);
        remove_cgroup_tree(CGROUP_PARENT);
        for m in mounts_under(&dir) {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        r?
    };

    println!();
    println!(
        "kernel {}; {}; {}",
        first_line("uname", "-r"),
        first_line(CRUN, "--version"),
        first_line(RUNC, "--version")
    );
    println!();
    if hidden {
        println!("(cycles run with the hybrid layout's cgroup2 mount hidden: every runtime uses only the v1 controllers)");
        println!();
    }
    println!("| create→start→delete (`/bin/true`), {iterations} runs | min | p50 | p95 | mean |");
    println!("|---|---|---|---|---|");
    for (rt, s) in &cycles {
        let s = summarize(s);
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            rt.name(),
            ms(s.min),
            ms(s.p50),
            ms(s.p95),
            ms(s.mean)
        );
    }
    println!();
    println!("| memory | RSS | PSS |");
    println!("|---|---|---|");
    println!("| agent, idle (no pods) | {} | {} |", kib(mem.idle.0), kib(mem.idle.1));
    println!("| agent, {MEMORY_PODS} pods running | {} | {} |", kib(mem.loaded.0), kib(mem.loaded.1));
    println!(
        "| per shim, mean / max ({}) | {} | {} |",
        mem.shims.len(),
        mean_max(&mem.shims, |x| x.0),
        mean_max(&mem.shims, |x| x.1)
    );
    println!(
        "| per sandbox holder, mean / max ({}) | {} | {} |",
        mem.sandboxes.len(),
        mean_max(&mem.sandboxes, |x| x.0),
        mean_max(&mem.sandboxes, |x| x.1)
    );
    let total_pss = mem.loaded.1
        + mem.shims.iter().map(|x| x.1).sum::<u64>()
        + mem.sandboxes.iter().map(|x| x.1).sum::<u64>();
    println!("| agent + shims + sandboxes, {MEMORY_PODS} pods, total PSS | | {} |", kib(total_pss));
    println!();
    let s = summarize(&lat);
    println!(
        "| manifest renamed in → container's first output, {LATENCY_PODS} pods | min | p50 | p95 | max |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| flotilla-agent run | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
        ms(s.min),
        ms(s.p50),
        ms(s.p95),
        ms(s.max)
    );
    Ok(())
}
