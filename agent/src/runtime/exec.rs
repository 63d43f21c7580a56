//! `flotilla-agent container-exec`: runs a command inside a running container, with the
//! container's own process settings (user, capabilities, no_new_privs, seccomp, cgroup,
//! namespaces), through libcontainer's tenant builder, and exits with the command's exit code.
//! Exec probes use it. It is re-executed from the agent so that libcontainer runs in a
//! single-threaded process (see `shim`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

/// The exit code when the command ran out of time (as `timeout(1)`).
pub const TIMED_OUT: i32 = 124;
/// The exit code when the command could not be started in the container.
pub const CANNOT_EXEC: i32 = 125;

/// Runs `args` in container `id`; returns the exit code to exit with (128 + signal for a
/// command killed by a signal).
pub fn run(root: &Path, id: &str, timeout: Option<Duration>, args: &[String]) -> i32 {
    super::reset_signals();
    match exec(root, id, timeout, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cannot exec in container {id}: {e:#}");
            CANNOT_EXEC
        }
    }
}

fn exec(root: &Path, id: &str, timeout: Option<Duration>, args: &[String]) -> anyhow::Result<i32> {
    anyhow::ensure!(!args.is_empty(), "no command given");
    let pid = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
        .with_root_path(root)
        .context("libcontainer state root")?
        .as_tenant()
        .with_container_args(args.to_vec())
        .with_detach(false)
        .build()
        .context("starting the command")?;
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("waiting for the command"),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Ok(TIMED_OUT);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
