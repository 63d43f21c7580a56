//! The shim end to end, as root: a real container from a busybox rootfs, created through
//! libcontainer by the real `flotilla-agent shim`, with its output logged and its exit code,
//! OOM kill and security settings checked.

use std::path::{Path, PathBuf};
use std::process::Command;

use flotilla_agent::runtime::shim::{Exited, Launch, RootfsSource, EXITED_FILE, RUNNING_FILE};
use flotilla_agent::runtime::spec::{self, ImageFacts, Namespaces, SpecInput};
use flotilla_shared::api::Object;

fn require_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        assert!(std::env::var_os("CI").is_none(), "these tests need root (CI runs them as root)");
        eprintln!("skipping: not root");
    }
    root
}

/// A minimal root filesystem from Debian's busybox-static.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.exists(), "/bin/busybox is missing: apt-get install busybox-static");
    let root = dir.join("rootfs-src");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "grep", "sleep", "head", "dd", "true", "yes", "unshare"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
    )
    .unwrap();
    root
}

struct Run {
    exited: Exited,
    log: String,
}

fn run_pod(dir: &Path, yaml: &str) -> Run {
    let r = flotilla_shared::manifest::load_str("pod.yaml", yaml);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let Object::Pod(pod) = r.objects.into_iter().next().unwrap().object else { panic!("not a pod") };
    let src = busybox_rootfs(dir);
    let id = format!(
        "flotilla-test-{}-{}",
        std::process::id(),
        dir.file_name().unwrap().to_string_lossy().replace('.', "")
    );
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let image = ImageFacts::default();
    let input = SpecInput {
        pod: &pod.metadata,
        pod_spec: &pod.spec,
        container: &pod.spec.containers[0],
        image: &image,
        rootfs: bundle.join("rootfs"),
        cgroups_path: format!("/flotilla-test/{id}"),
        namespaces: Namespaces::Own,
        env: vec![("GREETING".into(), "hello".into())],
        mounts: vec![],
        user: (0, 0),
        additional_gids: vec![],
        pids_limit: 128,
        host_caps: spec::own_bounding_caps(),
        swap_accounting: spec::host_swap_accounting(),
    };
    let config = spec::build(&input).unwrap();
    std::fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let status_dir = dir.join("status");
    let launch = Launch {
        id: id.clone(),
        bundle: bundle.clone(),
        state_root: dir.join("state"),
        rootfs: RootfsSource::Bind { path: src },
        log: dir.join("logs/0.log"),
        log_max_bytes: 1 << 20,
        status_dir: status_dir.clone(),
        memory_cgroup: Some(PathBuf::from(format!("/sys/fs/cgroup/memory/flotilla-test/{id}"))),
        allow_devices: false,
    };
    let launch_path = dir.join("launch.json");
    std::fs::write(&launch_path, serde_json::to_vec(&launch).unwrap()).unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_flotilla-agent")).arg("shim").arg(&launch_path).output().unwrap();
    assert!(
        status_dir.join(EXITED_FILE).exists(),
        "no exit recorded; shim stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        status_dir.join(RUNNING_FILE).exists(),
        "shim stderr:\n{}\ncontainer log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("logs/0.log")).unwrap_or_default()
    );
    let exited: Exited =
        serde_json::from_slice(&std::fs::read(status_dir.join(EXITED_FILE)).unwrap()).unwrap();
    let log = std::fs::read_to_string(dir.join("logs/0.log")).unwrap_or_default();
    Run { exited, log }
}

#[test]
fn a_container_runs_logs_and_exits_with_its_code() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = run_pod(
        dir.path(),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: hello}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, 'echo $(GREETING) world; echo oops >&2; grep -E \"^(NoNewPrivs|Seccomp|CapEff|SigBlk|SigIgn):\" /proc/self/status; exit 3']\n",
    );
    assert_eq!(run.exited.exit_code, 3, "{:?}\n{}", run.exited, run.log);
    assert!(!run.exited.oom_killed);
    assert!(run.log.contains(" stdout F hello world"), "{}", run.log);
    assert!(run.log.contains(" stderr F oops"), "{}", run.log);
    // Restricted by default: no new privileges, seccomp filtering, no capabilities.
    assert!(run.log.contains("NoNewPrivs:\t1"), "{}", run.log);
    assert!(run.log.contains("Seccomp:\t2"), "{}", run.log);
    assert!(run.log.contains("CapEff:\t0000000000000000"), "{}", run.log);
    // Nothing blocked: the agent blocks SIGTERM/SIGINT for its signal thread, and a container
    // inheriting that mask would ignore `kubectl delete`'s SIGTERM.
    assert!(run.log.contains("SigBlk:\t0000000000000000"), "{}", run.log);
    // Nor ignored: Rust ignores SIGPIPE in its own processes, and exec keeps ignored signals, so
    // without a reset a writer to a closed pipe would get EPIPE errors instead of dying. Only
    // the standard signals (1-31) count: the C library claims 32 and 33 for itself.
    let ignored = run.log.lines().find_map(|l| l.split("SigIgn:\t").nth(1)).expect("SigIgn line");
    let ignored = u64::from_str_radix(ignored.trim(), 16).unwrap();
    assert_eq!(ignored & 0x7fff_ffff, 0, "ignored signals: {ignored:#x}");
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = run_pod(
        dir.path(),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: hog}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, 'x=$(yes | head -c 100000000); echo survived']\n    resources: {limits: {memory: 16Mi}}\n",
    );
    assert_eq!(run.exited.exit_code, 137, "{:?}\n{}", run.exited, run.log);
    assert!(run.exited.oom_killed, "{:?}", run.exited);
}

#[test]
fn seccomp_refuses_dangerous_calls_and_privileged_lifts_it() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // unshare(2) is denied by the default profile, even with CAP_SYS_ADMIN added.
    let run = run_pod(
        dir.path(),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: sc}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, 'unshare -u true && echo UNSHARED || echo DENIED']\n    securityContext: {capabilities: {add: [SYS_ADMIN]}}\n",
    );
    assert_eq!(run.exited.exit_code, 0, "{}", run.log);
    assert!(run.log.contains("DENIED") && !run.log.contains("UNSHARED"), "{}", run.log);
    let dir = tempfile::tempdir().unwrap();
    let run = run_pod(
        dir.path(),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: sc}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, 'grep -E \"^(Seccomp|NoNewPrivs):\" /proc/self/status; unshare -u true && echo UNSHARED']\n    securityContext: {privileged: true}\n",
    );
    assert_eq!(run.exited.exit_code, 0, "{}", run.log);
    assert!(
        run.log.contains("Seccomp:\t0") && run.log.contains("NoNewPrivs:\t0") && run.log.contains("UNSHARED"),
        "{}",
        run.log
    );
}

#[test]
fn a_cpu_limited_container_is_throttled() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // limits.cpu 100m: a quota of 10 ms per 100 ms period. Burning well over 10 ms of CPU must
    // be throttled; the container reads its own cgroup (mounted at /sys/fs/cgroup).
    let run = run_pod(
        dir.path(),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: burn}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, 'i=0; while [ $i -lt 40000 ]; do i=$((i+1)); done; cd /sys/fs/cgroup/cpu* && cat cpu.cfs_quota_us cpu.cfs_period_us cpu.stat']\n    resources: {limits: {cpu: 100m}}\n",
    );
    assert_eq!(run.exited.exit_code, 0, "{:?}\n{}", run.exited, run.log);
    let field = |name: &str| -> Option<u64> {
        run.log.lines().find_map(|l| l.split(" F ").nth(1)?.strip_prefix(name)?.trim().parse().ok())
    };
    let values: Vec<&str> = run.log.lines().filter_map(|l| l.split(" F ").nth(1)).collect();
    assert_eq!(values.first(), Some(&"10000"), "quota: {}", run.log);
    assert_eq!(values.get(1), Some(&"100000"), "period: {}", run.log);
    let throttled = field("nr_throttled ").unwrap_or_else(|| panic!("no cpu.stat: {}", run.log));
    assert!(throttled > 0, "never throttled: {}", run.log);
}
