//! The systemd units in `systemd/`: `systemd-analyze verify` accepts them without a warning,
//! they keep the properties the design depends on (Type=notify with a watchdog; for the agent
//! KillMode=process and a preserved runtime directory, and nothing that would confine the
//! containers it starts), and both binaries really speak the notify protocol: READY=1 once
//! they serve, then WATCHDOG=1 pings.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_tests::bin;

fn unit(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd").join(name)).unwrap()
}

fn settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect()
}

fn has(text: &str, key: &str, value: &str) -> bool {
    settings(text).iter().any(|(k, v)| k == key && v == value)
}

#[test]
fn units_verify_cleanly_and_keep_the_design() {
    let tmp = flotilla_tests::tempdir();
    for (name, binary) in
        [("flotilla-hub.service", "flotilla-hub"), ("flotilla-agent.service", "flotilla-agent")]
    {
        let text = unit(name);
        // verify checks that ExecStart exists: point it at the binaries just built.
        let local = text.replace(&format!("/usr/local/bin/{binary}"), bin(binary).to_str().unwrap());
        let path = tmp.path().join(name);
        std::fs::write(&path, local).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", path.to_str().unwrap()])
            .output()
            .expect("systemd-analyze (Debian's systemd package)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.trim().is_empty(), "{name}: {stderr}");
        assert!(has(&text, "Type", "notify"), "{name}");
        assert!(settings(&text).iter().any(|(k, _)| k == "WatchdogSec"), "{name}");
    }
    let agent = unit("flotilla-agent.service");
    assert!(has(&agent, "KillMode", "process"));
    assert!(has(&agent, "RuntimeDirectoryPreserve", "yes"));
    assert!(has(&agent, "Restart", "always"));
    // Options the agent must not have: inherited by every container, or a private mount
    // namespace that a restarted agent could not see into.
    for key in [
        "SystemCallFilter",
        "NoNewPrivileges",
        "CapabilityBoundingSet",
        "MemoryDenyWriteExecute",
        "SystemCallArchitectures",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "ReadOnlyPaths",
        "PrivateDevices",
    ] {
        assert!(!settings(&agent).iter().any(|(k, _)| k == key), "the agent unit sets {key}");
    }
    let hub = unit("flotilla-hub.service");
    assert!(has(&hub, "DynamicUser", "yes") && has(&hub, "NoNewPrivileges", "yes"));
}

/// Runs `program args` as systemd would for Type=notify with WatchdogSec=1s (NOTIFY_SOCKET,
/// WATCHDOG_USEC, and WATCHDOG_PID = the service's own pid); returns the messages received.
fn notifications(program: &Path, args: &[&str], dir: &Path) -> Vec<String> {
    let sock = dir.join("notify.sock");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" "$@""#)
        .arg(program)
        .args(args)
        .env("NOTIFY_SOCKET", &sock)
        .env("WATCHDOG_USEC", "1000000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && got.iter().filter(|m: &&String| m.contains("WATCHDOG=1")).count() < 2 {
        if let Ok(n) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    got
}

#[test]
fn both_binaries_notify_ready_and_ping_the_watchdog() {
    let tmp = flotilla_tests::tempdir();
    let hub_dir = tmp.path().join("hub");
    std::fs::create_dir_all(&hub_dir).unwrap();
    let args = [
        "--data-dir",
        hub_dir.to_str().unwrap(),
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mqtt-listen",
        "127.0.0.1:0",
    ];
    let got = notifications(&bin("flotilla-hub"), &args, &hub_dir);
    assert!(got.first().is_some_and(|m| m.contains("READY=1")), "hub: {got:?}");
    assert!(got.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2, "hub: {got:?}");

    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "the agent part needs root (CI runs it as root)");
        return;
    }
    let agent_dir = tmp.path().join("agent");
    let manifests = agent_dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let (state, run) = (agent_dir.join("state"), agent_dir.join("run"));
    let args = [
        "--state-dir",
        state.to_str().unwrap(),
        "run",
        "--run-dir",
        run.to_str().unwrap(),
        "--manifests",
        manifests.to_str().unwrap(),
    ];
    let got = notifications(&bin("flotilla-agent"), &args, &agent_dir);
    assert!(got.first().is_some_and(|m| m.contains("READY=1")), "agent: {got:?}");
    assert!(got.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2, "agent: {got:?}");
}
