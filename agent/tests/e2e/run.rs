//! `flotilla-agent run --manifests DIR` end to end, as root: static pods from an imported
//! busybox image run, log and report exit codes; five containers survive SIGKILL of the agent
//! and are adopted without restarting; an exit that happens while the agent is down is reported
//! when it is back; removing a manifest stops its pod. Init containers run in order before the
//! app containers; images no pod uses are garbage-collected.

use crate::common;

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
        Agent::start_with(state, run, manifests, &[])
    }
    fn start_with(state: &Path, run: &Path, manifests: &Path, extra: &[&str]) -> Agent {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(state.with_extension("log")).unwrap();
        let child = Command::new(bin())
            .args(["--state-dir", state.to_str().unwrap(), "run", "--run-dir", run.to_str().unwrap()])
            .args(["--manifests", manifests.to_str().unwrap(), "--node-name", "test-node"])
            .args(extra)
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
    // Running is recorded when the container starts; its first line may reach the log a moment later.
    wait_for("web's log", &state, || {
        String::from_utf8_lossy(&cli(&state, &["logs", "web"]).stdout).contains("started")
    });
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

/// The first line of a container's log (CRI format: `<time> <stream> <tag> <text>`) as
/// (time, text).
fn first_log_line(state: &Path, pod_name: &str, container: &str) -> Option<(String, String)> {
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("status.json")).ok()?).ok()?;
    let uid = status["pods"].as_array()?.iter().find(|p| p["name"] == pod_name)?["uid"].as_str()?.to_string();
    let log = std::fs::read_to_string(
        state.join("pods").join(uid).join("logs").join(container).join("current.log"),
    )
    .ok()?;
    let mut f = log.lines().next()?.splitn(4, ' ');
    let time = f.next()?.to_string();
    Some((time, f.nth(2)?.to_string()))
}

fn image_ls(state: &Path) -> String {
    String::from_utf8_lossy(&cli(state, &["image", "ls"]).stdout).into_owned()
}

#[test]
fn init_containers_run_in_order_and_unused_images_are_collected() {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "this test needs root (CI runs it as root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (state, run, manifests) =
        (tmp.path().join("state"), tmp.path().join("run"), tmp.path().join("manifests"));
    std::fs::create_dir_all(&manifests).unwrap();
    for (archive, what) in [
        (common::oci_archive(tmp.path(), "flotilla.test/busybox:1.0"), "used"),
        (common::docker_archive(tmp.path(), "flotilla.test/unused:1.0"), "unused"),
    ] {
        let out = cli(&state, &["image", "import", archive.to_str().unwrap()]);
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(image_ls(&state).contains("flotilla.test/unused"), "{}", image_ls(&state));

    let with_inits = |name: &str, restart: &str, second_init: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {restart}\n  terminationGracePeriodSeconds: 1\n  initContainers:\n  - name: first\n    image: flotilla.test/busybox:1.0\n    command: [sh, -c, 'echo first; sleep 1']\n  - name: second\n    image: flotilla.test/busybox:1.0\n    command: [sh, -c, '{second_init}']\n  containers:\n  - name: main\n    image: flotilla.test/busybox:1.0\n    command: [sh, -c, 'echo main; while true; do sleep 1; done']\n"
        )
    };
    std::fs::write(manifests.join("ordered.yaml"), with_inits("ordered", "Always", "echo second")).unwrap();
    std::fs::write(manifests.join("broken.yaml"), with_inits("broken", "Never", "echo failing; exit 3"))
        .unwrap();
    // Thresholds of 0 %: every image no pod uses goes at the first GC pass.
    let agent = Agent::start_with(
        &state,
        &run,
        &manifests,
        &[
            "--image-gc-high-threshold",
            "0",
            "--image-gc-low-threshold",
            "0",
            "--image-gc-min-age-seconds",
            "0",
        ],
    );
    wait_for("ordered running", &state, || row(&state, "ordered", "main").is_some_and(|r| r.0 == "Running"));
    let first = first_log_line(&state, "ordered", "first").expect("first's log");
    let second = first_log_line(&state, "ordered", "second").expect("second's log");
    let main = first_log_line(&state, "ordered", "main").expect("main's log");
    assert_eq!((first.1.as_str(), second.1.as_str(), main.1.as_str()), ("first", "second", "main"));
    // RFC 3339 times in UTC with the same format sort as text. `first` sleeps 1 s after its line.
    assert!(first.0 < second.0 && second.0 < main.0, "out of order: {first:?} {second:?} {main:?}");
    let secs = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp_nanos()
    };
    // 1 s apart when in order; a generous margin for a log line stamped late on a loaded machine.
    assert!(secs(&second.0) - secs(&first.0) >= 500_000_000, "second started before first ended");
    let r = row(&state, "ordered", "first").unwrap();
    assert_eq!((r.0.as_str(), r.2.as_str()), ("Completed", "0"));

    // The sandbox holder dies: the pod is restarted in a new sandbox, init containers first.
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("status.json")).unwrap()).unwrap();
    let uid = status["pods"].as_array().unwrap().iter().find(|p| p["name"] == "ordered").unwrap()["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let sandbox: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("sandboxes").join(format!("{uid}.json"))).unwrap())
            .unwrap();
    let holder = sandbox["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(holder), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("ordered restarted in a new sandbox", &state, || {
        row(&state, "ordered", "main").is_some_and(|r| r.0 == "Running" && r.1 == "1")
    });
    let first_log =
        std::fs::read_to_string(state.join("pods").join(&uid).join("logs/first/current.log")).unwrap();
    assert_eq!(first_log.matches(" F first").count(), 2, "init containers ran again: {first_log}");

    // A failing init container with restartPolicy Never fails the pod: main never starts.
    wait_for("broken's init fails", &state, || row(&state, "broken", "second").is_some_and(|r| r.2 == "3"));
    std::thread::sleep(Duration::from_secs(2));
    let main = row(&state, "broken", "main").unwrap();
    assert_ne!(main.0, "Running", "{}", ps(&state));
    assert!(first_log_line(&state, "broken", "main").is_none(), "main ran after a failed init container");

    // The unused image is gone; the one the pods use stays.
    wait_for("image GC", &state, || !image_ls(&state).contains("flotilla.test/unused"));
    let out = cli(&state, &["image", "ls"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("flotilla.test/busybox"),
        "{out:?}\n{}",
        std::fs::read_to_string(state.with_extension("log")).unwrap_or_default()
    );

    for f in ["ordered.yaml", "broken.yaml"] {
        std::fs::remove_file(manifests.join(f)).unwrap();
    }
    wait_for("all pods gone", &state, || ps(&state).lines().count() == 1);
    // No cgroup is left behind, in any hierarchy.
    let leftovers: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|e| e.path().join("flotilla").join(&uid))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    assert!(leftovers.is_empty(), "pod cgroups left behind: {leftovers:?}");
    drop(agent);
}
