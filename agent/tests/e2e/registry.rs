//! Registry pulls end to end, as root: a real registry (Debian's docker-registry) on loopback,
//! the busybox image pushed to it with skopeo, and a static pod whose image the agent pulls
//! over plain HTTP (an allow-listed registry) before running it; a private registry's image is
//! pulled with the pod's imagePullSecret and refused without it.

use crate::common;

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

/// Starts a registry on loopback; with `user`, it asks for that user's password (htpasswd).
fn start_registry(dir: &Path, user: Option<(&str, &str)>) -> (Kill, String) {
    let port = free_port();
    let config = dir.join("registry.yml");
    let mut text = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.join("registry-data").display()
    );
    if let Some((name, password)) = user {
        let htpasswd = dir.join("htpasswd");
        std::fs::write(&htpasswd, format!("{name}:{}\n", bcrypt::hash(password, 4).unwrap())).unwrap();
        text += &format!("auth:\n  htpasswd:\n    realm: flotilla-test\n    path: {}\n", htpasswd.display());
    }
    std::fs::write(&config, text).unwrap();
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

/// `flotilla-agent run` over `manifests`, allowed to reach the registry at `addr` over plain
/// HTTP, logging to `dir/agent.log`.
fn start_agent(dir: &Path, state: &Path, run: &Path, manifests: &Path, addr: &str, extra: &[&str]) -> Kill {
    let log = std::fs::File::create(dir.join("agent.log")).unwrap();
    Kill(
        Command::new(env!("CARGO_BIN_EXE_flotilla-agent"))
            .args(["--state-dir", state.to_str().unwrap(), "run", "--run-dir", run.to_str().unwrap()])
            .args(["--manifests", manifests.to_str().unwrap(), "--insecure-registry", addr])
            .args(extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn ps(state: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla-agent"))
        .args(["--state-dir", state.to_str().unwrap(), "ps"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
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
    let (_registry, addr) = start_registry(tmp.path(), None);
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
    let _agent = start_agent(tmp.path(), &state, &run, &manifests, &addr, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ps = ps(&state);
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

#[test]
fn a_private_registry_needs_the_pods_image_pull_secret() {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "this test needs root (CI runs it as root)");
        return;
    }
    if !need("docker-registry", "docker-registry") || !need("skopeo", "skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_registry, addr) = start_registry(tmp.path(), Some(("puller", "s3cret")));
    let archive = common::docker_archive(tmp.path(), "flotilla.test/busybox:push");
    let image = format!("{addr}/private/busybox:1.0");
    let push = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--insecure-policy", "--dest-creds", "puller:s3cret"])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    assert!(push.status.success(), "skopeo: {}", String::from_utf8_lossy(&push.stderr));

    let (state, run, manifests) =
        (tmp.path().join("state"), tmp.path().join("run"), tmp.path().join("manifests"));
    std::fs::create_dir_all(&manifests).unwrap();
    let docker_config =
        format!(r#"{{"auths": {{"{addr}": {{"username": "puller", "password": "s3cret"}}}}}}"#);
    std::fs::write(
        manifests.join("regcred.yaml"),
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: regcred}}\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{docker_config}'\n"),
    )
    .unwrap();
    // `without` pulls Always: with IfNotPresent it would use the image `with` pulled, as in
    // Kubernetes.
    let pod = |name: &str, secret: &str, policy: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n{secret}  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: {policy}\n    command: [sh, -c, 'exit 4']\n")
    };
    std::fs::write(
        manifests.join("with.yaml"),
        pod("with", "  imagePullSecrets: [{name: regcred}]\n", "IfNotPresent"),
    )
    .unwrap();
    std::fs::write(manifests.join("without.yaml"), pod("without", "", "Always")).unwrap();
    // No node-wide credentials: an empty Docker config.
    let none = tmp.path().join("none.json");
    let _agent = start_agent(
        tmp.path(),
        &state,
        &run,
        &manifests,
        &addr,
        &["--docker-config", none.to_str().unwrap()],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ps = ps(&state);
        let row = |pod: &str| {
            ps.lines().find(|l| l.split_whitespace().nth(1) == Some(pod)).unwrap_or("").to_string()
        };
        let (with, without) = (row("with"), row("without"));
        let refused = without.contains("ErrImagePull") || without.contains("ImagePullBackOff");
        if with.split_whitespace().last() == Some("4") && refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected `with` to run and `without` to fail its pull\nps:\n{ps}\nagent log:\n{}",
            std::fs::read_to_string(tmp.path().join("agent.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = std::fs::read_to_string(state.join("status.json")).unwrap();
    assert!(
        ["401", "unauthorized", "not authorized"].iter().any(|w| status.to_lowercase().contains(w)),
        "the refused pull says why: {status}"
    );
    for f in ["with.yaml", "without.yaml"] {
        std::fs::remove_file(manifests.join(f)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(state.join("pods")).is_ok_and(|d| d.count() > 0) {
        assert!(Instant::now() < deadline, "the pods were not removed");
        std::thread::sleep(Duration::from_millis(100));
    }
}
