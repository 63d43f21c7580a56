//! `flotilla-agent run --manifests DIR` end to end, as root: static pods from an imported
//! busybox image run, log and report exit codes; five containers survive SIGKILL of the agent
//! and are adopted without restarting; an exit that happens while the agent is down is reported
//! when it is back; removing a manifest stops its pod.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_flotilla-agent")
}

struct Agent {
    child: Child,
}

impl Agent {
    fn start(state: &Path, run: &Path, manifests: &Path) -> Agent {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(state.with_extension("log")).unwrap();
        let child = Command::new(bin())
            .args(["--state-dir", state.to_str().unwrap(), "run", "--run-dir", run.to_str().unwrap()])
            .args(["--manifests", manifests.to_str().unwrap(), "--node-name", "test-node"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Agent { child }
    }
    fn sigkill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(state: &Path, args: &[&str]) -> Output {
    Command::new(bin()).arg("--state-dir").arg(state).args(args).output().unwrap()
}

fn ps(state: &Path) -> String {
    String::from_utf8_lossy(&cli(state, &["ps"]).stdout).into_owned()
}

/// The `ps` row of a container: (state, restarts, exit).
fn row(state: &Path, pod: &str, container: &str) -> Option<(String, String, String)> {
    ps(state).lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&pod) && f.get(2) == Some(&container)).then(|| {
            (f[3].to_string(), f.get(4).unwrap_or(&"").to_string(), f.get(5).unwrap_or(&"").to_string())
        })
    })
}

fn wait_for(what: &str, state: &Path, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\nps:\n{}\nagent log:\n{}",
            ps(state),
            std::fs::read_to_string(state.with_extension("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The pid of pod `name`'s container `main`, from the agent's status and the shim's record.
fn running_pid(state: &Path, name: &str) -> Option<i32> {
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("status.json")).ok()?).ok()?;
    let uid = status["pods"].as_array()?.iter().find(|p| p["name"] == name)?["uid"].as_str()?.to_string();
    let dir: PathBuf = state.join("pods").join(uid).join("containers/main/status");
    if dir.join("exited.json").exists() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("running.json")).ok()?).ok()?;
    v["pid"].as_i64().map(|p| p as i32)
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

fn pod(name: &str, restart: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {restart}\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: flotilla.test/busybox:1.0\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, '{script}']\n"
    )
}

#[test]
fn static_pods_run_survive_agent_restarts_and_stop() {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "this test needs root (CI runs it as root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (state, run, manifests) =
        (tmp.path().join("state"), tmp.path().join("run"), tmp.path().join("manifests"));
    std::fs::create_dir_all(&manifests).unwrap();
    let archive = common::oci_archive(tmp.path(), "flotilla.test/busybox:1.0");
    let out = cli(&state, &["image", "import", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    std::fs::write(
        manifests.join("web.yaml"),
        pod("web", "Always", "echo started; while true; do sleep 1; done"),
    )
    .unwrap();
    std::fs::write(manifests.join("job.yaml"), pod("job", "Never", "echo done; exit 7")).unwrap();
    let sleepers = ["s1", "s2", "s3", "s4"];
    for s in sleepers {
        std::fs::write(manifests.join(format!("{s}.yaml")), pod(s, "Always", "while true; do sleep 1; done"))
            .unwrap();
    }
    let agent = Agent::start(&state, &run, &manifests);
    wait_for("web running", &state, || row(&state, "web", "main").is_some_and(|r| r.0 == "Running"));
    wait_for("job exit 7", &state, || row(&state, "job", "main").is_some_and(|r| r.2 == "7"));
    let logs = String::from_utf8_lossy(&cli(&state, &["logs", "web"]).stdout).into_owned();
    assert!(logs.contains("started"), "{logs}");
    let logs = String::from_utf8_lossy(&cli(&state, &["logs", "job", "--tail", "1"]).stdout).into_owned();
    assert_eq!(logs.trim(), "done");

    for s in sleepers {
        wait_for("sleepers running", &state, || row(&state, s, "main").is_some_and(|r| r.0 == "Running"));
    }

    // SIGKILL the agent while five containers run: they keep running, and the restarted agent
    // adopts them without restarting any.
    let web_pid = running_pid(&state, "web").expect("web's pid");
    let sleeper_pids: Vec<i32> =
        sleepers.iter().map(|s| running_pid(&state, s).expect("sleeper pid")).collect();
    std::fs::write(manifests.join("exiter.yaml"), pod("exiter", "Never", "sleep 3; exit 5")).unwrap();
    wait_for("exiter running", &state, || row(&state, "exiter", "main").is_some_and(|r| r.0 == "Running"));
    agent.sigkill();
    std::thread::sleep(Duration::from_secs(4));
    assert!(alive(web_pid), "the container died with the agent");
    let agent = Agent::start(&state, &run, &manifests);
    wait_for("exiter's exit reported", &state, || row(&state, "exiter", "main").is_some_and(|r| r.2 == "5"));
    std::thread::sleep(Duration::from_secs(2));
    let web = row(&state, "web", "main").unwrap();
    assert_eq!((web.0.as_str(), web.1.as_str()), ("Running", "0"), "web was restarted");
    assert!(alive(web_pid), "web is still the same process");
    for (s, pid) in sleepers.iter().zip(&sleeper_pids) {
        let r = row(&state, s, "main").unwrap();
        assert_eq!((r.0.as_str(), r.1.as_str()), ("Running", "0"), "{s} was restarted");
        assert_eq!(running_pid(&state, s), Some(*pid), "{s} is a new process");
        assert!(alive(*pid));
    }

    // Removing a manifest stops its pod.
    std::fs::remove_file(manifests.join("web.yaml")).unwrap();
    wait_for("web gone", &state, || row(&state, "web", "main").is_none() && !alive(web_pid));
    for s in sleepers {
        std::fs::remove_file(manifests.join(format!("{s}.yaml"))).unwrap();
    }
    for (s, pid) in sleepers.iter().zip(&sleeper_pids) {
        wait_for("sleepers gone", &state, || row(&state, s, "main").is_none() && !alive(*pid));
    }
    // Leave nothing behind: no pods, no sandboxes, no mounts.
    for f in ["job.yaml", "exiter.yaml"] {
        std::fs::remove_file(manifests.join(f)).unwrap();
    }
    wait_for("all pods gone", &state, || ps(&state).lines().count() == 1);
    wait_for("pod directories gone", &state, || {
        std::fs::read_dir(state.join("pods")).map_or(true, |d| d.count() == 0)
    });
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(state.to_str().unwrap()), "a mount under the state directory leaked");
    drop(agent);
}
