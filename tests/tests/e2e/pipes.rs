//! Commands whose standard output is a closed pipe (`flotilla-hub completion bash | head`, the
//! reader gone before the first write) end quietly: exit status 141 (128 + SIGPIPE, as a shell
//! reports for a program the signal ended), nothing on stderr, and never a panic.

use std::path::Path;
use std::process::{Command, Stdio};

use flotilla_tests::{bin, tempdir, Hub};

/// Runs `program args` with its stdout the write end of a pipe whose read end is closed.
fn with_closed_stdout(program: &Path, args: &[&str]) -> (Option<i32>, String) {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .expect("run the binary");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn check_quiet(program: &Path, args: &[&str]) {
    let (code, stderr) = with_closed_stdout(program, args);
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    assert_eq!((code, stderr.as_str()), (Some(141), ""), "{args:?}");
}

#[test]
fn hub_commands_end_quietly_on_a_closed_stdout() {
    let hub_bin = bin("flotilla-hub");
    check_quiet(&hub_bin, &["completion", "bash"]);
    let tmp = tempdir();
    let hub = Hub::start(&tmp.path().join("hub"));
    let dir = hub.dir.to_str().unwrap();
    for args in [
        &["status"][..],
        &["version"],
        &["get", "namespaces"],
        &["get", "namespaces", "-o", "json"],
        &["describe", "namespace", "default"],
        &["node", "add", "pi-1"],
    ] {
        let full: Vec<&str> = ["--data-dir", dir].into_iter().chain(args.iter().copied()).collect();
        check_quiet(&hub_bin, &full);
    }
}

#[test]
fn agent_commands_end_quietly_on_a_closed_stdout() {
    let tmp = tempdir();
    let state = tmp.path().join("state");
    // What a running agent leaves for `ps` and `logs`: its statuses and a container's log.
    std::fs::create_dir_all(state.join("pods/u1/logs/main")).unwrap();
    std::fs::write(
        state.join("status.json"),
        r#"{"pods": [{"namespace": "default", "name": "web", "uid": "u1",
            "status": {"containerStatuses": [{"name": "main", "ready": true, "restartCount": 0}]}}]}"#,
    )
    .unwrap();
    std::fs::write(state.join("pods/u1/logs/main/current.log"), "2026-12-07T00:00:00Z stdout F hello\n")
        .unwrap();
    let agent = bin("flotilla-agent");
    let s = state.to_str().unwrap();
    check_quiet(&agent, &["--state-dir", s, "ps"]);
    check_quiet(&agent, &["--state-dir", s, "logs", "web"]);
    check_quiet(&agent, &["--state-dir", s, "image", "ls"]);
}
