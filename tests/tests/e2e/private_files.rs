//! An agent started by hand (outside systemd, with the usual umask 022) keeps what it writes
//! away from other local users: its state and run directories are 0700, as the systemd unit
//! makes them, so the run directory's Secrets (`secrets.cbor`), the OCI bundles and the
//! Secret volumes cannot be read by another user, here `nobody`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use flotilla_tests::device::{wait_for, Agent, Device};
use flotilla_tests::Hub;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Whether user `nobody` can read `path` (through every directory above it).
fn nobody_reads(path: &Path) -> bool {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(path)
        .output()
        .expect("setpriv (util-linux) runs a command as another user")
        .status
        .success()
}

#[test]
fn an_agent_started_by_hand_keeps_its_files_private() {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "this test needs root (CI runs it as root)");
        return;
    }
    let tmp = flotilla_tests::tempdir();
    // Other users may enter the test's directory, as they may enter /var/lib and /run.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let hub = Hub::start(&tmp.path().join("hub"));
    let config = tmp.path().join("pi-1.json");
    let out = hub.cli(&["node", "add", "pi-1", "-o", config.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A run directory left open by an earlier start is closed too.
    let (state, run) = (tmp.path().join("agent"), tmp.path().join("run"));
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _device = Device::new(&state, &run);
    let agent = Agent::start(&state, &run, &config, None);
    let secrets = run.join("secrets.cbor");
    let logs = [hub.log.as_path(), agent.log.as_path()];
    wait_for("the desired state stored with its secrets", 60, &logs, || {
        secrets.exists() && state.join("desired.cbor").exists()
    });
    assert_eq!((mode(&state), mode(&run)), (0o700, 0o700));
    // The check itself works: nobody reads a file that is meant for everyone.
    let public = tmp.path().join("public");
    std::fs::write(&public, "x").unwrap();
    assert!(nobody_reads(&public));
    assert!(!nobody_reads(&secrets), "another user read {}", secrets.display());
}
