//! Flash wear, end to end, as root with real containers (issue 25): once its pods are Ready, a
//! quiet agent writes nothing under its state directory (the SD card or eMMC of a device), not
//! even rewrites with the same content. Watched with inotify over the whole tree for a minute
//! while probes of every kind (exec, HTTP, TCP) keep running, so any periodic writer (records
//! rewritten each round, a per-report sequence file, a shim's record, a log touched) fails it.
//! With `--logs-in-memory`, a container that prints every second does not write there either.
//!
//! Not a timing test: the minute is a window of observation long enough to cover many loop
//! rounds, probe periods, the 60 s image GC check and a status report interval, and the test
//! waits for conditions with deadlines, never for a time.

mod common;

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use serde_json::Value;

const IMAGE: &str = "flotilla.test/busybox:1.0";

/// How long the state directory is watched once the pods are Ready.
const WINDOW: Duration = Duration::from_secs(60);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_flotilla-agent")
}

struct Node {
    /// Kills what the agent started and detaches its mounts when the test ends, passing or
    /// not. Dropped before the directory.
    _device: flotilla_tests::device::Device,
    _tmp: tempfile::TempDir,
    state: PathBuf,
    run: PathBuf,
    manifests: PathBuf,
    agent: Option<Child>,
}

impl Node {
    /// None when not root (CI runs as root and must not skip).
    fn new() -> Option<Node> {
        if !nix::unistd::geteuid().is_root() {
            assert!(std::env::var_os("CI").is_none(), "this test needs root (CI runs it as root)");
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let (state, run, manifests) = (root.join("state"), root.join("run"), root.join("manifests"));
        std::fs::create_dir_all(&manifests).unwrap();
        let archive = common::oci_archive(&root, IMAGE);
        let out = Command::new(bin())
            .arg("--state-dir")
            .arg(&state)
            .args(["image", "import"])
            .arg(&archive)
            .output();
        let out = out.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let device = flotilla_tests::device::Device::new(&state, &run);
        Some(Node { _device: device, _tmp: tmp, state, run, manifests, agent: None })
    }

    fn start(&mut self, extra: &[&str]) {
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = Command::new(bin())
            .args([
                "--state-dir",
                self.state.to_str().unwrap(),
                "run",
                "--run-dir",
                self.run.to_str().unwrap(),
            ])
            .args(["--manifests", self.manifests.to_str().unwrap(), "--node-name", "flash-node"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agent = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        // Beside the state directory, not in it: the agent's own log is the test's business.
        self.state.with_extension("log")
    }

    fn write(&self, file: &str, yaml: &str) {
        std::fs::write(self.manifests.join(file), yaml).unwrap();
    }

    /// The pods' entries in the status file `ps` reads.
    fn pods(&self) -> Vec<Value> {
        let v: Option<Value> =
            std::fs::read(self.state.join("status.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        v.and_then(|v| v["pods"].as_array().cloned()).unwrap_or_default()
    }

    fn ready(&self, pod: &str) -> bool {
        self.pods().iter().filter(|p| p["name"] == pod).any(|p| {
            p["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
    }

    fn uid(&self, pod: &str) -> Option<String> {
        self.pods().iter().find(|p| p["name"] == pod)?["uid"].as_str().map(String::from)
    }

    fn wait_for(&self, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out after {secs} s waiting for {what}\nstatus: {}\nagent log:\n{}",
                std::fs::read_to_string(self.state.join("status.json")).unwrap_or_default(),
                std::fs::read_to_string(self.log_path()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn agent_alive(&mut self) -> bool {
        self.agent.as_mut().is_some_and(|c| c.try_wait().is_ok_and(|s| s.is_none()))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn pod(name: &str, container: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n{container}"
    )
}

/// Three quiet pods, one readiness probe of each kind, probed every second.
fn probed_pods() -> [(&'static str, String); 3] {
    [
        (
            "exec-probe",
            pod(
                "exec-probe",
                "    command: [sh, -c, 'echo ok > /tmp/ready; exec sleep 100000']\n    readinessProbe:\n      exec: {command: [cat, /tmp/ready]}\n      periodSeconds: 1\n      timeoutSeconds: 10\n    livenessProbe:\n      exec: {command: [cat, /tmp/ready]}\n      periodSeconds: 2\n      timeoutSeconds: 10\n",
            ),
        ),
        (
            "http-probe",
            pod(
                "http-probe",
                "    command: [httpd, -f, -p, '8080', -h, /www]\n    readinessProbe:\n      httpGet: {path: /, port: 8080}\n      periodSeconds: 1\n      timeoutSeconds: 5\n",
            ),
        ),
        (
            "tcp-probe",
            pod(
                "tcp-probe",
                "    command: [httpd, -f, -p, '9000', -h, /www]\n    readinessProbe:\n      tcpSocket: {port: 9000}\n      periodSeconds: 1\n      timeoutSeconds: 5\n",
            ),
        ),
    ]
}

/// Inotify watches on every directory under a root: whatever is created, written, closed after
/// writing, renamed in, deleted or has its metadata changed is a write to the disk.
struct TreeWatch {
    inotify: Inotify,
    dirs: BTreeMap<WatchDescriptor, PathBuf>,
    root: PathBuf,
}

const WRITES: AddWatchFlags = AddWatchFlags::IN_MODIFY
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_ATTRIB);

impl TreeWatch {
    fn new(root: &Path) -> TreeWatch {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).unwrap();
        let mut w = TreeWatch { inotify, dirs: BTreeMap::new(), root: root.to_path_buf() };
        w.add(root);
        assert!(w.dirs.len() > 5, "watching {} directories only", w.dirs.len());
        w
    }

    fn add(&mut self, dir: &Path) {
        // A mount below the state directory (a tmpfs volume) is not the disk: not followed.
        let dev = std::fs::metadata(&self.root).unwrap().dev();
        if std::fs::metadata(dir).map_or(true, |m| m.dev() != dev) {
            return;
        }
        let wd =
            self.inotify.add_watch(dir, WRITES).unwrap_or_else(|e| panic!("watching {}: {e}", dir.display()));
        self.dirs.insert(wd, dir.to_path_buf());
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                self.add(&e.path());
            }
        }
    }

    /// Every write seen within `window`, as `path: events`.
    fn writes_within(&mut self, window: Duration, mut still_running: impl FnMut() -> bool) -> Vec<String> {
        let end = Instant::now() + window;
        let mut seen = Vec::new();
        while Instant::now() < end {
            assert!(still_running(), "the agent exited during the window");
            let left = end.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
            let mut fds = [nix::poll::PollFd::new(self.inotify.as_fd(), nix::poll::PollFlags::POLLIN)];
            let ms = u16::try_from(left.as_millis()).unwrap_or(1000);
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)).unwrap_or(0) <= 0 {
                continue;
            }
            for e in self.inotify.read_events().unwrap_or_default() {
                let dir = self.dirs.get(&e.wd).cloned().unwrap_or_default();
                let path = e.name.map_or(dir.clone(), |n| dir.join(n));
                seen.push(format!("{}: {:?}", path.display(), e.mask));
                if e.mask.contains(AddWatchFlags::IN_ISDIR) && e.mask.contains(AddWatchFlags::IN_CREATE) {
                    self.add(&path);
                }
            }
        }
        seen
    }
}

/// Size, mtime and ctime of every file under `root`: a second check beside inotify.
fn stamps(root: &Path) -> BTreeMap<PathBuf, (u64, i64, i64, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else { continue };
            if m.is_dir() {
                stack.push(e.path());
            }
            out.insert(e.path(), (m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()));
        }
    }
    out
}

fn assert_quiet(node: &mut Node, what: &str) {
    let before = stamps(&node.state);
    let mut watch = TreeWatch::new(&node.state);
    let agent = &mut node.agent;
    let writes = watch
        .writes_within(WINDOW, || agent.as_mut().is_some_and(|c| c.try_wait().is_ok_and(|s| s.is_none())));
    let after = stamps(&node.state);
    let changed: Vec<String> = after
        .iter()
        .filter(|(p, s)| before.get(*p) != Some(s))
        .map(|(p, _)| p.display().to_string())
        .chain(
            before.keys().filter(|p| !after.contains_key(*p)).map(|p| format!("{} (removed)", p.display())),
        )
        .collect();
    assert!(
        writes.is_empty() && changed.is_empty(),
        "{what}: the state directory was written after the pods became Ready\ninotify:\n{}\nchanged stamps:\n{}",
        writes.join("\n"),
        changed.join("\n")
    );
}

#[test]
fn a_quiet_agent_with_probed_pods_never_writes_its_state_directory() {
    let Some(mut node) = Node::new() else { return };
    for (name, yaml) in probed_pods() {
        node.write(&format!("{name}.yaml"), &yaml);
    }
    node.start(&[]);
    for (name, _) in probed_pods() {
        node.wait_for(&format!("{name} Ready"), 120, || node.ready(name));
    }
    assert_quiet(&mut node, "three probed pods");
    assert!(node.agent_alive());
    for (name, _) in probed_pods() {
        assert!(node.ready(name), "{name} is still Ready");
    }
    // The statuses `ps` reads come from the run directory, through the state directory's link.
    let ps = Command::new(bin()).arg("--state-dir").arg(&node.state).arg("ps").output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
    assert!(probed_pods().iter().all(|(n, _)| ps.contains(n)), "{ps}");
    assert!(node.run.join("status.json").is_file() && node.run.join("observed.json").is_file());
    assert!(!node.state.join("observed.json").exists(), "no observed state on the disk");
}

#[test]
fn container_logs_kept_in_memory_never_reach_the_state_directory() {
    let Some(mut node) = Node::new() else { return };
    node.write(
        "chatty.yaml",
        &pod(
            "chatty",
            "    command: [sh, -c, 'while true; do echo tick; sleep 1; done']\n    readinessProbe:\n      exec: {command: ['true']}\n      periodSeconds: 1\n      timeoutSeconds: 10\n",
        ),
    );
    node.start(&["--logs-in-memory", "8Mi"]);
    node.wait_for("chatty Ready", 120, || node.ready("chatty"));
    let uid = node.uid("chatty").expect("chatty's uid");
    let in_memory = node.run.join("logs").join(&uid).join("main").join("current.log");
    node.wait_for("chatty's log in memory", 30, || in_memory.metadata().is_ok_and(|m| m.len() > 0));
    let before = in_memory.metadata().unwrap().len();
    assert_quiet(&mut node, "a container printing every second, logs in memory");
    assert!(in_memory.metadata().unwrap().len() > before, "the log kept growing, in memory");
    let logs = Command::new(bin())
        .arg("--state-dir")
        .arg(&node.state)
        .args(["logs", "chatty", "--tail", "2"])
        .output();
    let logs = String::from_utf8_lossy(&logs.unwrap().stdout).into_owned();
    assert_eq!(logs, "tick\ntick\n", "`logs` reads it through the pod's link");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let logs_dir = std::fs::canonicalize(node.run.join("logs")).unwrap();
    assert!(
        mounts
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(&*logs_dir.to_string_lossy()) && l.contains(" tmpfs ")),
        "a tmpfs holds the logs"
    );
}
