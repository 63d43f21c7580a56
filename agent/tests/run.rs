//! `flotilla-agent run --manifests DIR` end to end, as root: static pods from an imported
//! busybox image run, log and report exit codes; containers survive SIGKILL of the agent and
//! are adopted without restarting; an exit that happens while the agent is down is reported
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

fn running_pid(state: &Path, container: &str) -> Option<i32> {
    let pods = std::fs::read_dir(state.join("pods")).ok()?;
    for p in pods.flatten() {
        let f: PathBuf = p.path().join("containers").join(container).join("status/running.json");
        if let Ok(b) = std::fs::read(&f) {
            let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
            if !p.path().join("containers").join(container).join("status/exited.json").exists() {
                return v["pid"].as_i64().map(|p| p as i32);
            }
        }
    }
    None
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
    let agent = Agent::start(&state, &run, &manifests);
    wait_for("web running", &state, || row(&state, "web", "main").is_some_and(|r| r.0 == "Running"));
    wait_for("job exit 7", &state, || row(&state, "job", "main").is_some_and(|r| r.2 == "7"));
    let logs = String::from_utf8_lossy(&cli(&state, &["logs", "web"]).stdout).into_owned();
    assert!(logs.contains("started"), "{logs}");
    let logs = String::from_utf8_lossy(&cli(&state, &["logs", "job", "--tail", "1"]).stdout).into_owned();
    assert_eq!(logs.trim(), "done");

    // SIGKILL the agent: the container keeps running, and the restarted agent adopts it.
    let web_pid = running_pid(&state, "main").expect("web's pid");
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

    // Removing a manifest stops its pod.
    std::fs::remove_file(manifests.join("web.yaml")).unwrap();
    wait_for("web gone", &state, || row(&state, "web", "main").is_none() && !alive(web_pid));
    drop(agent);
}
