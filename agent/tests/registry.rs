//! Registry pulls end to end, as root: a real registry (Debian's docker-registry) on loopback,
//! the busybox image pushed to it with skopeo, and a static pod whose image the agent pulls
//! over plain HTTP (an allow-listed registry) before running it.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn need(tool: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{tool} is missing: apt-get install {package}");
        eprintln!("skipping: {tool} is missing (apt-get install {package})");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_registry(dir: &Path) -> (Kill, String) {
    let port = free_port();
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("registry-data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Kill(child), addr)
}

#[test]
fn a_pod_runs_from_an_image_pulled_from_a_registry() {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "this test needs root (CI runs it as root)");
        return;
    }
    if !need("docker-registry", "docker-registry") || !need("skopeo", "skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_registry, addr) = start_registry(tmp.path());
    let archive = common::docker_archive(tmp.path(), "flotilla.test/busybox:push");
    let image = format!("{addr}/flotilla/busybox:1.0");
    let push = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--insecure-policy"])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    assert!(push.status.success(), "skopeo: {}", String::from_utf8_lossy(&push.stderr));

    let (state, run, manifests) =
        (tmp.path().join("state"), tmp.path().join("run"), tmp.path().join("manifests"));
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("pulled.yaml"),
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: pulled}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, 'cat /etc/passwd | head -1; exit 4']\n"),
    )
    .unwrap();
    let log = std::fs::File::create(tmp.path().join("agent.log")).unwrap();
    let _agent = Kill(
        Command::new(env!("CARGO_BIN_EXE_flotilla-agent"))
            .args(["--state-dir", state.to_str().unwrap(), "run", "--run-dir", run.to_str().unwrap()])
            .args(["--manifests", manifests.to_str().unwrap(), "--insecure-registry", &addr])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ps = Command::new(env!("CARGO_BIN_EXE_flotilla-agent"))
            .args(["--state-dir", state.to_str().unwrap(), "ps"])
            .output()
            .unwrap();
        let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
        if ps.lines().any(|l| l.contains("pulled") && l.split_whitespace().last() == Some("4")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pod did not run from the pulled image\nps:\n{ps}\nagent log:\n{}",
            std::fs::read_to_string(tmp.path().join("agent.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let logs = Command::new(env!("CARGO_BIN_EXE_flotilla-agent"))
        .args(["--state-dir", state.to_str().unwrap(), "logs", "pulled"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("root:x:0:0"),
        "{}",
        String::from_utf8_lossy(&logs.stdout)
    );
    let agent_log = std::fs::read_to_string(tmp.path().join("agent.log")).unwrap_or_default();
    assert!(agent_log.contains("pulled"), "pull progress is logged: {agent_log}");
    // Leave nothing behind.
    std::fs::remove_file(manifests.join("pulled.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(state.join("pods")).is_ok_and(|d| d.count() > 0) {
        assert!(Instant::now() < deadline, "the pod was not removed");
        std::thread::sleep(Duration::from_millis(100));
    }
}
