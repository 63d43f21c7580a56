//! Devices for the end-to-end tests: an agent process (optionally in its own network
//! namespace, a "host" with a veth link to the hub's), and a guard that kills whatever the
//! device left running (shims, sandboxes, containers, mounts) when a test ends, passes or not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::bin;

fn sh(args: &[&str]) -> bool {
    Command::new(args[0]).args(&args[1..]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// A network namespace joined to the root one by a veth pair: the root side is `gateway`,
/// the namespace side `address`, with a default route through the gateway, so the namespace
/// reaches every address of the hub's host. Deleted on drop.
pub struct Netns {
    pub name: String,
    pub gateway: String,
    pub address: String,
    host_if: String,
}

static NEXT: AtomicU32 = AtomicU32::new(1);

impl Netns {
    pub fn create() -> Netns {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = format!("flt-{pid}-{n}");
        // Interface names have at most 15 characters; the subnet is unique per process and host.
        let (host_if, ns_if) = (format!("fh{}x{n}", pid % 100_000), format!("fn{}x{n}", pid % 100_000));
        let subnet = format!("10.{}.{}", 20 + pid % 200, n);
        let (gateway, address) = (format!("{subnet}.1"), format!("{subnet}.2"));
        let _ = sh(&["ip", "netns", "del", &name]);
        let _ = sh(&["ip", "link", "del", &host_if]);
        let ns = Netns { name: name.clone(), gateway: gateway.clone(), address: address.clone(), host_if };
        let steps: Vec<Vec<String>> = vec![
            vec!["ip", "netns", "add", &name],
            vec!["ip", "link", "add", &ns.host_if, "type", "veth", "peer", "name", &ns_if],
            vec!["ip", "link", "set", &ns_if, "netns", &name],
            vec!["ip", "addr", "add", &format!("{gateway}/24"), "dev", &ns.host_if],
            vec!["ip", "link", "set", &ns.host_if, "up"],
            vec!["ip", "-n", &name, "addr", "add", &format!("{address}/24"), "dev", &ns_if],
            vec!["ip", "-n", &name, "link", "set", &ns_if, "up"],
            vec!["ip", "-n", &name, "link", "set", "lo", "up"],
            vec!["ip", "-n", &name, "route", "add", "default", "via", &gateway],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(String::from).collect())
        .collect();
        for s in steps {
            let out = Command::new(&s[0]).args(&s[1..]).output().expect("run ip");
            assert!(out.status.success(), "{}: {}", s.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        ns
    }

    /// Cuts the link (both ways) or restores it.
    pub fn set_link(&self, up: bool) {
        assert!(sh(&["ip", "link", "set", &self.host_if, if up { "up" } else { "down" }]));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.name]);
        let _ = sh(&["ip", "link", "del", &self.host_if]);
    }
}

/// A `flotilla-agent run --config` process; killed (SIGKILL, the agent only: its containers
/// keep running, as on a real agent crash) when dropped.
pub struct Agent {
    pub child: Child,
    pub log: PathBuf,
}

impl Agent {
    /// Starts the agent with `state` and `run` directories, in `netns` if given (entering only
    /// the network namespace, so the agent sees the host's mounts and cgroups).
    pub fn start(state: &Path, run: &Path, config: &Path, netns: Option<&Netns>) -> Agent {
        Self::start_with_env(state, run, config, netns, &[])
    }

    /// The same, with extra environment variables (a clock skewed by libfaketime).
    pub fn start_with_env(
        state: &Path,
        run: &Path,
        config: &Path,
        netns: Option<&Netns>,
        env: &[(&str, &str)],
    ) -> Agent {
        let log = state.with_extension("log");
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("agent log");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{}", ns.name)).arg("--").arg(bin("flotilla-agent"));
                c
            }
            None => Command::new(bin("flotilla-agent")),
        };
        let child = cmd
            .args([
                "--state-dir",
                state.to_str().expect("utf-8"),
                "run",
                "--run-dir",
                run.to_str().expect("utf-8"),
            ])
            .args(["--config", config.to_str().expect("utf-8")])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start flotilla-agent");
        Agent { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills everything a device's agent started (shims, sandboxes, containers), detaches its
/// mounts and removes its run directory: what a power cut does. Also run on drop, so a failing
/// test leaves nothing behind.
pub struct Device {
    pub state: PathBuf,
    pub run: PathBuf,
}

impl Device {
    pub fn new(state: &Path, run: &Path) -> Device {
        Device { state: state.to_path_buf(), run: run.to_path_buf() }
    }

    /// SIGKILLs every process of the device: the ones whose command line names its state or
    /// run directory (agent, shims, sandboxes) and every process in its pods' cgroups.
    pub fn power_cut(&self) {
        let state = self.state.to_string_lossy().into_owned();
        let run = self.run.to_string_lossy().into_owned();
        let me = std::process::id();
        for _ in 0..3 {
            let mut pids: Vec<i32> = Vec::new();
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
                if pid as u32 == me {
                    continue;
                }
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                if cmdline.contains(&state) || cmdline.contains(&run) {
                    pids.push(pid);
                }
            }
            for uid in std::fs::read_dir(self.state.join("pods")).into_iter().flatten().flatten() {
                let uid = uid.file_name().to_string_lossy().into_owned();
                for ctl in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
                    collect_procs(&ctl.path().join("flotilla").join(&uid), &mut pids);
                }
                collect_procs(&Path::new("/sys/fs/cgroup/flotilla").join(&uid), &mut pids);
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // Mounts under the device's directories (container root filesystems), deepest first.
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&*state) || m.starts_with(&*run))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.run);
    }
}

fn collect_procs(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_procs(&e.path(), pids);
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.power_cut();
    }
}

/// Polls `f` every 200 ms for up to `secs`; on timeout panics with `what` and the given logs.
pub fn wait_for(what: &str, secs: u64, logs: &[&Path], mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() > deadline {
            let logs: Vec<String> = logs
                .iter()
                .map(|p| format!("--- {}:\n{}", p.display(), std::fs::read_to_string(p).unwrap_or_default()))
                .collect();
            panic!("timed out after {secs} s waiting for {what}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The pid of a pod's running container, from the agent's records on the device.
pub fn container_pid(state: &Path, uid: &str, container: &str) -> Option<i32> {
    let status = state.join("pods").join(uid).join("containers").join(container).join("status");
    if status.join("exited.json").exists() {
        return None;
    }
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(status.join("running.json")).ok()?).ok()?;
    v["pid"].as_i64().map(|p| p as i32)
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Imports the busybox test image (built from Debian's busybox-static) into a device's store.
pub fn import_busybox(state: &Path, scratch: &Path) {
    let archive = scratch.join("busybox.tar");
    if !archive.exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image.sh");
        let built = Command::new("bash").arg(&script).arg(&archive).output().expect("run busybox-image.sh");
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    }
    let imported = Command::new(bin("flotilla-agent"))
        .args([
            "--state-dir",
            state.to_str().expect("utf-8"),
            "image",
            "import",
            archive.to_str().expect("utf-8"),
        ])
        .output()
        .expect("run flotilla-agent image import");
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
}
