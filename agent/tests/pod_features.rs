//! Pod features end to end, as root, with real containers from a busybox image through
//! `flotilla-agent run --manifests`: probes (exec, HTTP, TCP; liveness restarts, readiness
//! flips Ready both ways, a startup probe shields a slow starter), volumes and configuration
//! (ConfigMap and Secret volumes and env, a Secret on tmpfs and never on disk, an emptyDir shared
//! by two containers, hostPath, subPath, fsGroup, a ConfigMap update reaching the running
//! container), and the kubelet's CreateContainerConfigError for runAsNonRoot with a root image
//! and for a missing ConfigMap; PersistentVolumeClaims bound to local volumes of this node.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_flotilla-agent")
}

struct Agent(Child);

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
        Agent(child)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Node {
    /// Kills what the agent started and detaches its mounts when the test ends, passing or
    /// not (containers outlive their agent by design). Dropped before the directory.
    _device: flotilla_tests::device::Device,
    _tmp: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
    run: PathBuf,
    manifests: PathBuf,
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
        let archive = common::oci_archive(&root, "flotilla.test/busybox:1.0");
        let out = Command::new(bin())
            .arg("--state-dir")
            .arg(&state)
            .args(["image", "import"])
            .arg(&archive)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let device = flotilla_tests::device::Device::new(&state, &run);
        Some(Node { _device: device, _tmp: tmp, root, state, run, manifests })
    }

    fn write(&self, file: &str, yaml: &str) {
        let tmp = self.manifests.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(tmp, self.manifests.join(file)).unwrap();
    }

    /// The pod's status from the agent's status file.
    fn status(&self, pod: &str) -> Option<Value> {
        let v: Value = serde_json::from_slice(&std::fs::read(self.state.join("status.json")).ok()?).ok()?;
        v["pods"].as_array()?.iter().find(|p| p["name"] == pod).map(|p| p["status"].clone())
    }

    fn container(&self, pod: &str, name: &str) -> Option<Value> {
        let st = self.status(pod)?;
        st["containerStatuses"].as_array()?.iter().find(|c| c["name"] == name).cloned()
    }

    fn condition(&self, pod: &str, type_: &str) -> Option<String> {
        let st = self.status(pod)?;
        let c = st["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?;
        c["status"].as_str().map(str::to_string)
    }

    fn restarts(&self, pod: &str, name: &str) -> i64 {
        self.container(pod, name).and_then(|c| c["restartCount"].as_i64()).unwrap_or(-1)
    }

    fn waiting_reason(&self, pod: &str, name: &str) -> Option<(String, String)> {
        let c = self.container(pod, name)?;
        let w = c["state"]["waiting"].as_object()?;
        Some((
            w.get("reason")?.as_str()?.to_string(),
            w.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
        ))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state.with_extension("log")).unwrap_or_default()
    }

    fn wait_for(&self, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out after {secs} s waiting for {what}\nstatus: {}\nagent log (end):\n{}",
                std::fs::read_to_string(self.state.join("status.json")).unwrap_or_default(),
                tail(&self.log(), 60)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

const IMAGE: &str = "flotilla.test/busybox:1.0";

fn pod(name: &str, body: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n{body}")
}

#[test]
fn probes_restart_gate_readiness_and_protect_slow_starters() {
    let Some(node) = Node::new() else { return };
    let flag = node.root.join("ready-flag");
    std::fs::create_dir_all(&flag).unwrap();
    std::fs::write(flag.join("ready"), "ok\n").unwrap();
    // Exec liveness: healthy for ~3 s, then the file goes and the probe fails.
    node.write(
        "live.yaml",
        &pod(
            "live",
            &format!(
                "  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sh, -c, 'echo up > /tmp/healthy; sleep 3; busybox rm /tmp/healthy; sleep 600']\n    livenessProbe:\n      exec: {{command: [cat, /tmp/healthy]}}\n      periodSeconds: 1\n      failureThreshold: 2\n"
            ),
        ),
    );
    // HTTP readiness on a named port, following a file the test controls through a hostPath.
    node.write(
        "web.yaml",
        &pod(
            "web",
            &format!(
                "  volumes:\n  - name: flag\n    hostPath: {{path: {}, type: Directory}}\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [httpd, -f, -p, '8080', -h, /flag]\n    ports: [{{name: http, containerPort: 8080}}]\n    volumeMounts: [{{name: flag, mountPath: /flag}}]\n    readinessProbe:\n      httpGet: {{path: /ready, port: http, httpHeaders: [{{name: X-Probe, value: flotilla}}]}}\n      periodSeconds: 1\n      failureThreshold: 1\n",
                flag.display()
            ),
        ),
    );
    // TCP readiness: nothing listens for 3 s.
    node.write(
        "tcp.yaml",
        &pod(
            "tcp",
            &format!(
                "  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sh, -c, 'sleep 3; exec busybox nc -ll -p 9000 -e cat']\n    readinessProbe:\n      tcpSocket: {{port: 9000}}\n      periodSeconds: 1\n"
            ),
        ),
    );
    // A slow starter: its liveness probe would kill it at once, but the startup probe holds it off.
    // Generous timeouts: a loaded CI machine can take over a second to enter the container, and
    // a timed-out liveness probe (failureThreshold 1) would restart it for the wrong reason.
    node.write(
        "slow.yaml",
        &pod(
            "slow",
            &format!(
                "  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sh, -c, 'sleep 4; echo > /tmp/started; sleep 600']\n    startupProbe:\n      exec: {{command: [cat, /tmp/started]}}\n      periodSeconds: 1\n      timeoutSeconds: 10\n      failureThreshold: 15\n    livenessProbe:\n      exec: {{command: [cat, /tmp/started]}}\n      periodSeconds: 1\n      timeoutSeconds: 10\n      failureThreshold: 1\n"
            ),
        ),
    );
    // A hung probe: it times out (a failure) and stalls nothing else.
    node.write(
        "hung.yaml",
        &pod(
            "hung",
            &format!(
                "  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sleep, '600']\n    readinessProbe:\n      exec: {{command: [sleep, '60']}}\n      timeoutSeconds: 1\n      periodSeconds: 2\n"
            ),
        ),
    );
    let _agent = Agent::start(&node.state, &node.run, &node.manifests);

    node.wait_for("web Ready", 30, || node.condition("web", "Ready").as_deref() == Some("True"));
    std::fs::remove_file(flag.join("ready")).unwrap();
    node.wait_for("web not Ready after its page went", 15, || {
        node.condition("web", "Ready").as_deref() == Some("False")
    });
    assert_eq!(node.restarts("web", "main"), 0, "readiness never restarts");
    std::fs::write(flag.join("ready"), "ok\n").unwrap();
    node.wait_for("web Ready again", 15, || node.condition("web", "Ready").as_deref() == Some("True"));

    node.wait_for("tcp Ready once it listens", 30, || {
        node.condition("tcp", "Ready").as_deref() == Some("True")
    });

    node.wait_for("live restarted by its liveness probe", 40, || node.restarts("live", "main") >= 1);
    let live = node.container("live", "main").unwrap();
    let last = &live["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "killed (grace 1 s, sh ignores SIGTERM as pid 1): {live}");
    let log = node.log();
    assert!(log.contains("Liveness probe failed"), "an Unhealthy event:\n{}", tail(&log, 40));
    assert!(log.contains("failed liveness probe, will be restarted"), "a Killing event");

    node.wait_for("slow started and Ready", 30, || {
        node.container("slow", "main").is_some_and(|c| c["started"] == true && c["ready"] == true)
    });
    assert_eq!(node.restarts("slow", "main"), 0, "the startup probe protected it: {}", tail(&node.log(), 30));
    let log = node.log();
    assert!(log.contains("Startup probe failed"), "{}", tail(&log, 40));
    assert!(!log.contains("failed startup probe, will be restarted"));
    assert!(
        log.contains("Readiness probe failed: command [\"sleep\", \"60\"] timed out after 1s"),
        "{}",
        tail(&log, 40)
    );
    assert_eq!(node.condition("hung", "Ready").as_deref(), Some("False"));
}

/// Every regular file on the filesystem of `root` (not crossing into other mounts) whose
/// content contains `needle`.
fn files_containing(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let dev = std::fs::metadata(root).map(|m| m.dev()).unwrap_or(0);
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else { continue };
            if meta.dev() != dev {
                continue;
            }
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() && meta.len() < (64 << 20) {
                if let Ok(data) = std::fs::read(e.path()) {
                    if data.windows(needle.len()).any(|w| w == needle) {
                        found.push(e.path());
                    }
                }
            }
        }
    }
    found
}

#[test]
fn volumes_and_configuration_reach_the_containers() {
    let Some(node) = Node::new() else { return };
    let secret_value = format!("s3cr3t-{}", std::process::id());
    let host = node.root.join("host-dir");
    node.write(
        "cfg.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata:\n  greeting: hello\n  app.conf: x=1\n",
    );
    node.write(
        "secret.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: db}}\nstringData:\n  password: {secret_value}\n"
        ),
    );
    let report = "while true; do { cat /cfg/greeting; echo; cat /scratch/msg; busybox stat -L -c %a /sec/password; cat /sec/password; echo; grep \" /sec \" /proc/mounts | busybox cut -d\" \" -f3; cat /sub.conf; echo; echo \"$GREETING/$PASSWORD\"; busybox stat -c %g /scratch; busybox id -G; } > /host/report.tmp; busybox mv /host/report.tmp /host/report; sleep 0.3; done";
    node.write(
        "vol.yaml",
        &pod(
            "vol",
            &format!(
                "  securityContext: {{fsGroup: 2000}}
  volumes:
  - {{name: cfg, configMap: {{name: app}}}}
  - {{name: sec, secret: {{secretName: db, defaultMode: 0400}}}}
  - {{name: scratch, emptyDir: {{}}}}
  - {{name: mem, emptyDir: {{medium: Memory, sizeLimit: 1Mi}}}}
  - {{name: host, hostPath: {{path: {host}, type: DirectoryOrCreate}}}}
  containers:
  - name: writer
    image: {IMAGE}
    command: [sh, -c, 'echo from-writer > /scratch/msg; echo in-sub > /deep/file; sleep 600']
    volumeMounts:
    - {{name: scratch, mountPath: /scratch}}
    - {{name: scratch, mountPath: /deep, subPath: sub/dir}}
  - name: reader
    image: {IMAGE}
    command: [sh, -c, '{report}']
    env:
    - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: app, key: greeting}}}}}}
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: db, key: password}}}}}}
    volumeMounts:
    - {{name: cfg, mountPath: /cfg}}
    - {{name: sec, mountPath: /sec}}
    - {{name: scratch, mountPath: /scratch}}
    - {{name: mem, mountPath: /mem}}
    - {{name: host, mountPath: /host}}
    - {{name: cfg, mountPath: /sub.conf, subPath: app.conf}}
",
                host = host.display()
            ),
        ),
    );
    let _agent = Agent::start(&node.state, &node.run, &node.manifests);
    let read_report = || std::fs::read_to_string(host.join("report")).unwrap_or_default();
    node.wait_for("the reader's report", 40, || {
        read_report().lines().count() >= 9 && read_report().contains("from-writer")
    });
    let r = read_report();
    let lines: Vec<&str> = r.lines().collect();
    assert_eq!(lines[0], "hello", "ConfigMap file: {r}");
    assert_eq!(lines[1], "from-writer", "emptyDir shared by two containers: {r}");
    assert_eq!(lines[2], "400", "the Secret's defaultMode: {r}");
    assert_eq!(lines[3], secret_value, "the Secret file: {r}");
    assert_eq!(lines[4], "tmpfs", "the Secret volume is a tmpfs: {r}");
    assert_eq!(lines[5], "x=1", "subPath of a ConfigMap key: {r}");
    assert_eq!(lines[6], format!("hello/{secret_value}"), "env from the ConfigMap and Secret: {r}");
    assert_eq!(lines[7], "2000", "fsGroup owns the emptyDir: {r}");
    assert!(lines[8].split_whitespace().any(|g| g == "2000"), "fsGroup is a supplementary group: {r}");
    // The writer's subPath is a directory inside the emptyDir.
    let uid = {
        let v: Value =
            serde_json::from_slice(&std::fs::read(node.state.join("status.json")).unwrap()).unwrap();
        v["pods"].as_array().unwrap().iter().find(|p| p["name"] == "vol").unwrap()["uid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let scratch = node.state.join("pods").join(&uid).join("volumes/scratch");
    assert_eq!(std::fs::read_to_string(scratch.join("sub/dir/file")).unwrap(), "in-sub\n");
    // The Secret is nowhere on the disk (its tmpfs is another filesystem).
    assert_eq!(files_containing(&node.state, secret_value.as_bytes()), Vec::<PathBuf>::new());

    // A changed ConfigMap reaches the running container's files; env stays as it was.
    node.write("cfg.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata:\n  greeting: bonjour\n  app.conf: x=1\n");
    node.wait_for("the updated greeting", 30, || read_report().lines().next() == Some("bonjour"));
    let r = read_report();
    assert!(r.contains(&format!("hello/{secret_value}")), "env changes only with a new pod: {r}");
    assert_eq!(node.restarts("vol", "reader"), 0);

    // Removing the pod removes its volumes, tmpfs mounts included; the hostPath stays.
    std::fs::remove_file(node.manifests.join("vol.yaml")).unwrap();
    node.wait_for("the pod gone", 30, || {
        node.status("vol").is_none() && !node.state.join("pods").join(&uid).exists()
    });
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&uid), "no mount of the pod is left: {mounts}");
    assert!(host.join("report").exists(), "hostPath content is the host's");
    assert_eq!(files_containing(&node.state, secret_value.as_bytes()), Vec::<PathBuf>::new());
}

#[test]
fn configuration_errors_are_create_container_config_errors() {
    let Some(node) = Node::new() else { return };
    node.write(
        "nonroot.yaml",
        &pod(
            "nonroot",
            &format!("  securityContext: {{runAsNonRoot: true}}\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sleep, '600']\n"),
        ),
    );
    node.write(
        "nocfg.yaml",
        &pod(
            "nocfg",
            &format!("  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sleep, '600']\n    env:\n    - {{name: A, valueFrom: {{configMapKeyRef: {{name: missing, key: a}}}}}}\n"),
        ),
    );
    let _agent = Agent::start(&node.state, &node.run, &node.manifests);
    node.wait_for("nonroot refused", 30, || {
        node.waiting_reason("nonroot", "main").is_some_and(|(r, _)| r == "CreateContainerConfigError")
    });
    let (_, message) = node.waiting_reason("nonroot", "main").unwrap();
    assert!(message.contains("container has runAsNonRoot and image will run as root"), "{message}");
    assert_eq!(node.status("nonroot").unwrap()["phase"], "Pending");
    node.wait_for("nocfg refused", 30, || {
        node.waiting_reason("nocfg", "main").is_some_and(|(r, _)| r == "CreateContainerConfigError")
    });
    assert_eq!(node.waiting_reason("nocfg", "main").unwrap().1, "configmap \"missing\" not found");
    // Supplying the ConfigMap lets it start (after the retry back-off).
    node.write("cfg.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: missing}\ndata: {a: '1'}\n");
    node.wait_for("nocfg running", 40, || {
        node.container("nocfg", "main").is_some_and(|c| c["state"]["running"].is_object())
    });
}

#[test]
fn claims_bind_to_local_volumes_on_this_node() {
    let Some(node) = Node::new() else { return };
    let (disk, report) = (node.root.join("disk"), node.root.join("report"));
    std::fs::create_dir_all(&disk).unwrap();
    let local_pv = |name: &str, size: &str, path: &Path, host: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  capacity: {{storage: {size}}}\n  accessModes: [ReadWriteOnce]\n  local: {{path: {}}}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      - matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{host}]}}]\n",
            path.display()
        )
    };
    let claim = |name: &str, size: &str| {
        format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {size}}}}}\n")
    };
    node.write(
        "pv.yaml",
        &format!(
            "{}---\n{}",
            local_pv("disk", "1Gi", &disk, "test-node"),
            local_pv("far", "10Gi", Path::new("/nonexistent"), "other-node")
        ),
    );
    node.write("pvc.yaml", &format!("{}---\n{}", claim("data", "500Mi"), claim("big", "5Gi")));
    node.write(
        "db.yaml",
        &pod(
            "db",
            &format!("  volumes: [{{name: data, persistentVolumeClaim: {{claimName: data}}}}]\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sh, -c, 'echo kept > /data/hello; sleep 600']\n    volumeMounts: [{{name: data, mountPath: /data}}]\n"),
        ),
    );
    let _agent = Agent::start(&node.state, &node.run, &node.manifests);
    node.wait_for("the pod's write on the local volume", 30, || {
        std::fs::read_to_string(disk.join("hello")).is_ok_and(|s| s == "kept\n")
    });
    // The same claim mounted read-only (the volume's readOnly) by a second pod.
    node.write(
        "ro.yaml",
        &pod(
            "ro",
            &format!(
                "  volumes:\n  - {{name: data, persistentVolumeClaim: {{claimName: data, readOnly: true}}}}\n  - {{name: out, hostPath: {{path: {}, type: DirectoryOrCreate}}}}\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sh, -c, 'if touch /data/x 2>/dev/null; then echo writable; else echo read-only; fi > /out/r; cat /data/hello >> /out/r; sleep 600']\n    volumeMounts: [{{name: data, mountPath: /data}}, {{name: out, mountPath: /out}}]\n",
                report.display()
            ),
        ),
    );
    node.wait_for("the read-only pod's report", 30, || {
        std::fs::read_to_string(report.join("r")).is_ok_and(|s| s.lines().count() == 2)
    });
    assert_eq!(std::fs::read_to_string(report.join("r")).unwrap(), "read-only\nkept\n");
    assert!(!disk.join("x").exists());
    // "big" binds to the only volume large enough, which belongs to another node.
    node.write(
        "far.yaml",
        &pod(
            "far",
            &format!("  volumes: [{{name: data, persistentVolumeClaim: {{claimName: big}}}}]\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [sleep, '600']\n    volumeMounts: [{{name: data, mountPath: /data}}]\n"),
        ),
    );
    node.wait_for("far refused", 30, || {
        node.waiting_reason("far", "main").is_some_and(|(r, _)| r == "CreateContainerConfigError")
    });
    assert_eq!(
        node.waiting_reason("far", "main").unwrap().1,
        "persistentvolumeclaim \"big\" is not bound to a volume on this node"
    );
    assert!(node.log().contains("volume node affinity conflict"), "{}", tail(&node.log(), 30));
    // The data outlives the pods.
    std::fs::remove_file(node.manifests.join("db.yaml")).unwrap();
    std::fs::remove_file(node.manifests.join("ro.yaml")).unwrap();
    node.wait_for("the pods gone", 30, || node.status("db").is_none() && node.status("ro").is_none());
    assert_eq!(std::fs::read_to_string(disk.join("hello")).unwrap(), "kept\n");
}
