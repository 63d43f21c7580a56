//! The per-container shim: the agent binary re-executed as `flotilla-agent shim LAUNCH.json`,
//! single-threaded (libcontainer forks with raw `clone3` and must not run in a multi-threaded
//! process), in its own session and as a child subreaper. It assembles the root filesystem,
//! creates and starts the container through libcontainer, owns its stdout and stderr and writes
//! them to a size-rotated log, waits for it, records the exit (code, signal, OOM kill) in a
//! file, and cleans up. Containers and shims outlive the agent; a restarted agent reads the
//! files the shim keeps to adopt it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::clock::{now_rfc3339, start_ticks};
use crate::fsutil::write_replace;

/// How to get the container's root filesystem in place at `<bundle>/rootfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RootfsSource {
    /// overlayfs over the image's unpacked layers (bottom first), with a per-container upper.
    Overlay { lower: Vec<PathBuf>, upper: PathBuf, work: PathBuf },
    /// A directory already prepared (the copy fallback), bind-mounted.
    Bind { path: PathBuf },
}

/// What the agent asks a shim to run; written next to the bundle as `launch.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Launch {
    pub id: String,
    /// The bundle directory holding `config.json`; the rootfs is mounted at `<bundle>/rootfs`.
    pub bundle: PathBuf,
    /// libcontainer's state root.
    pub state_root: PathBuf,
    pub rootfs: RootfsSource,
    pub log: PathBuf,
    pub log_max_bytes: u64,
    /// Where the shim records the running process and, later, the exit.
    pub status_dir: PathBuf,
    /// The cgroup v1 memory controller directory of the container, for OOM detection.
    pub memory_cgroup: Option<PathBuf>,
    /// Privileged containers may use device nodes from their image; everyone else's root
    /// filesystem is mounted `nodev` (a device node in a layer must not open the host's disk).
    #[serde(default)]
    pub allow_devices: bool,
}

/// Written when the container has started: enough for a restarted agent to adopt it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    pub pid: i32,
    /// The process start time (clock ticks since boot, /proc/<pid>/stat field 22), to tell
    /// this process from a later one that reuses its pid.
    pub start_ticks: u64,
    pub shim_pid: i32,
    pub started_at: String,
}

/// Written when the container has exited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exited {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub started_at: String,
    pub finished_at: String,
    /// Set when the container never started.
    pub error: Option<String>,
}

pub const RUNNING_FILE: &str = "running.json";
pub const EXITED_FILE: &str = "exited.json";

/// A log file in the CRI format (`<time> <stream> <F|P> <text>`), rotated by size: the
/// current file is renamed to `<name>.1` (replacing the previous one) when it would grow past
/// the limit. Nothing is written while the container is quiet, and nothing is synced: a log is
/// not worth a journal commit per line (the kernel writes it back within seconds anyway).
struct Log {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
    partial: [Vec<u8>; 2],
}

impl Log {
    fn open(path: &Path, max: u64) -> std::io::Result<Log> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Log {
            path: path.to_path_buf(),
            file,
            size,
            max: max.max(4096),
            partial: [Vec::new(), Vec::new()],
        })
    }

    fn write_line(&mut self, stream: usize, text: &[u8], full: bool) -> std::io::Result<()> {
        let name = if stream == 0 { "stdout" } else { "stderr" };
        let mut line = format!("{} {name} {} ", now_rfc3339(), if full { 'F' } else { 'P' }).into_bytes();
        line.extend_from_slice(text);
        line.push(b'\n');
        if self.size + line.len() as u64 > self.max && self.size > 0 {
            self.rotate()?;
        }
        match self.file.write_all(&line) {
            // A full filesystem (a small in-memory log tmpfs): give up the rotated file's
            // space and try once more; if that fails too, the line is dropped.
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) && self.size > 0 => {
                self.rotate()?;
                let _ = std::fs::remove_file(self.rotated());
                self.file.write_all(&line)?;
            }
            r => r?,
        }
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotated(&self) -> PathBuf {
        self.path
            .with_extension(format!("{}.1", self.path.extension().and_then(|e| e.to_str()).unwrap_or("log")))
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        std::fs::rename(&self.path, self.rotated())?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Appends bytes read from a stream, emitting complete lines; long lines are cut into
    /// partial (`P`) records of at most 16 KiB, as CRI runtimes do.
    fn feed(&mut self, stream: usize, data: &[u8]) -> std::io::Result<()> {
        let mut buf = std::mem::take(&mut self.partial[stream]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            self.write_line(stream, &buf[start..start + nl], true)?;
            start += nl + 1;
        }
        let mut rest = buf.split_off(start);
        while rest.len() > 16 * 1024 {
            let tail = rest.split_off(16 * 1024);
            self.write_line(stream, &rest, false)?;
            rest = tail;
        }
        self.partial[stream] = rest;
        Ok(())
    }

    fn flush_partial(&mut self) -> std::io::Result<()> {
        for s in 0..2 {
            let rest = std::mem::take(&mut self.partial[s]);
            if !rest.is_empty() {
                self.write_line(s, &rest, true)?;
            }
        }
        self.file.flush()
    }
}

fn mount_rootfs(launch: &Launch, target: &Path) -> anyhow::Result<()> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(target)?;
    let nodev = if launch.allow_devices { MsFlags::empty() } else { MsFlags::MS_NODEV };
    match &launch.rootfs {
        RootfsSource::Overlay { lower, upper, work } => {
            std::fs::create_dir_all(upper)?;
            std::fs::create_dir_all(work)?;
            let lowers: Vec<String> = lower.iter().rev().map(|p| p.display().to_string()).collect();
            let opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                lowers.join(":"),
                upper.display(),
                work.display()
            );
            mount(Some("overlay"), target, Some("overlay"), nodev, Some(opts.as_str()))
                .with_context(|| format!("mounting overlay at {} ({opts})", target.display()))?;
        }
        RootfsSource::Bind { path } => {
            mount(
                Some(path.as_path()),
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .with_context(|| format!("bind-mounting {} at {}", path.display(), target.display()))?;
        }
    }
    Ok(())
}

fn drain_nonblocking(fd: &OwnedFd, stream: usize, log: &mut Log) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let mut buf = [0u8; 16 * 1024];
    for _ in 0..64 {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(n) if n > 0 => {
                let _ = log.feed(stream, &buf[..n]);
            }
            _ => break,
        }
    }
}

fn oom_kills(cgroup: &Option<PathBuf>) -> u64 {
    let Some(dir) = cgroup else { return 0 };
    // cgroup v1: memory.oom_control has `oom_kill N` (Linux 4.13+); v2: memory.events.
    for (file, key) in [("memory.oom_control", "oom_kill "), ("memory.events", "oom_kill ")] {
        if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
            if let Some(n) =
                text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse().ok())
            {
                return n;
            }
        }
    }
    0
}

/// Runs the shim for `launch` to completion. Must be called before any other thread exists.
pub fn run(launch_path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(launch_path).with_context(|| format!("reading {}", launch_path.display()))?;
    let launch: Launch =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", launch_path.display()))?;
    // The container inherits our ignored signals across exec: give it the default state.
    super::reset_signals();
    // A session of its own (no terminal signals from the agent's), and the subreaper that
    // collects the container's exit status however libcontainer forked it.
    let _ = nix::unistd::setsid();
    nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;
    std::fs::create_dir_all(&launch.status_dir)?;
    let started_at = now_rfc3339();
    let record_failure = |e: &anyhow::Error| {
        let ex = Exited {
            exit_code: 128,
            signal: None,
            oom_killed: false,
            started_at: started_at.clone(),
            finished_at: now_rfc3339(),
            error: Some(format!("{e:#}")),
        };
        let _ =
            write_replace(&launch.status_dir.join(EXITED_FILE), &serde_json::to_vec(&ex).unwrap_or_default());
    };
    let rootfs = launch.bundle.join("rootfs");
    if let Err(e) = mount_rootfs(&launch, &rootfs) {
        record_failure(&e);
        return Err(e);
    }
    let result = supervise(&launch, &started_at);
    let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
    if let Err(e) = &result {
        record_failure(e);
    }
    result
}

/// Deletes a stopped container: its state and its cgroup. The cgroup can stay busy for a
/// moment after the init died (its other processes, a probe's exec, are still being torn down),
/// so a failed delete is retried for up to 5 s before giving up.
fn delete_container(container: &mut libcontainer::container::Container, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match container.delete(true) {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => {
                tracing::warn!(error = %e, id, "deleting the container failed");
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A container of this id left from an earlier run (its shim was killed, or could not delete
/// it) would make the create fail with "container already exists". The agent starts a container
/// only when the previous one of that id is gone, so whatever remains is stale: delete it.
fn clear_stale_state(launch: &Launch) {
    let dir = launch.state_root.join(&launch.id);
    if !dir.exists() {
        return;
    }
    tracing::warn!(id = %launch.id, "removing the stale state of an earlier container");
    match libcontainer::container::Container::load(dir.clone()) {
        Ok(mut old) => delete_container(&mut old, &launch.id),
        Err(e) => tracing::warn!(error = %e, id = %launch.id, "loading the stale container state"),
    }
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(error = %e, id = %launch.id, "removing the stale container state");
        }
    }
}

fn supervise(launch: &Launch, started_at: &str) -> anyhow::Result<()> {
    let mut log = Log::open(&launch.log, launch.log_max_bytes)?;
    let (out_r, out_w) = nix::unistd::pipe()?;
    let (err_r, err_w) = nix::unistd::pipe()?;
    let devnull: OwnedFd = File::open("/dev/null")?.into();
    clear_stale_state(launch);
    let created = ContainerBuilder::new(launch.id.clone(), SyscallType::Linux)
        .with_root_path(&launch.state_root)
        .context("libcontainer state root")?
        .validate_id()
        .context("container id")?
        .with_stdin(devnull)
        .with_stdout(out_w)
        .with_stderr(err_w)
        .as_init(&launch.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .context("creating the container")
        .and_then(|mut c| match c.start() {
            Ok(()) => Ok(c),
            Err(e) => {
                // Do not leave a parked init, its cgroup or its state behind.
                let _ = c.delete(true);
                Err(anyhow::Error::from(e).context("starting the container"))
            }
        });
    let mut container = match created {
        Ok(c) => c,
        Err(e) => {
            // Whatever the container's init wrote before failing explains why: keep it.
            for (i, fd) in [&out_r, &err_r].into_iter().enumerate() {
                drain_nonblocking(fd, i, &mut log);
            }
            let _ = log.flush_partial();
            return Err(e);
        }
    };
    let Some(pid) = container.pid().map(Pid::as_raw) else {
        let _ = container.delete(true);
        bail!("the container has no pid");
    };
    let running = Running {
        pid,
        start_ticks: start_ticks(pid).unwrap_or(0),
        shim_pid: std::process::id() as i32,
        started_at: started_at.to_string(),
    };
    if let Err(e) = write_replace(&launch.status_dir.join(RUNNING_FILE), &serde_json::to_vec(&running)?) {
        // Without the record nobody could adopt the container: stop it rather than leak it.
        let _ = container.kill(nix::sys::signal::Signal::SIGKILL, true);
        let _ = container.delete(true);
        return Err(anyhow::Error::from(e).context("recording the running container"));
    }

    let mut open = [Some(out_r), Some(err_r)];
    let mut status: Option<WaitStatus> = None;
    let mut exited_at: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut dropped = 0usize;
    loop {
        // Reap every child (we are a subreaper); remember the container's init.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(s) => {
                    if s.pid() == Some(Pid::from_raw(pid)) {
                        status = Some(s);
                        exited_at.get_or_insert_with(Instant::now);
                    }
                }
            }
        }
        let fds: Vec<(usize, &OwnedFd)> =
            open.iter().enumerate().filter_map(|(i, f)| f.as_ref().map(|f| (i, f))).collect();
        if fds.is_empty() || exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            if status.is_some() {
                break;
            }
            if fds.is_empty() {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        let mut pfds: Vec<PollFd> =
            fds.iter().map(|(_, f)| PollFd::new(f.as_fd(), PollFlags::POLLIN)).collect();
        let n = poll(&mut pfds, PollTimeout::from(200u16)).unwrap_or(0);
        let ready: Vec<(usize, bool)> = pfds
            .iter()
            .zip(fds.iter())
            .map(|(p, (i, _))| (*i, p.revents().is_some_and(|r| !r.is_empty())))
            .collect();
        drop(pfds);
        if n <= 0 {
            continue;
        }
        for (i, is_ready) in ready {
            if !is_ready {
                continue;
            }
            let Some(fd) = open[i].as_ref() else { continue };
            match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => open[i] = None,
                Ok(n) => {
                    // A full disk must not end supervision of a live container: drop the
                    // output, keep reading and waiting.
                    if log.feed(i, &buf[..n]).is_err() {
                        dropped += n;
                    }
                }
            }
        }
    }
    if log.flush_partial().is_err() || dropped > 0 {
        tracing::warn!(id = %launch.id, dropped, "some container output could not be logged");
    }
    let (exit_code, signal) = match status {
        Some(WaitStatus::Exited(_, code)) => (code, None),
        Some(WaitStatus::Signaled(_, sig, _)) => (128 + sig as i32, Some(sig as i32)),
        _ => (255, None),
    };
    let oom_killed =
        signal == Some(nix::sys::signal::Signal::SIGKILL as i32) && oom_kills(&launch.memory_cgroup) > 0;
    let exited = Exited {
        exit_code,
        signal,
        oom_killed,
        started_at: started_at.to_string(),
        finished_at: now_rfc3339(),
        error: None,
    };
    delete_container(&mut container, &launch.id);
    // Clean up before reporting the exit: once `exited.json` exists the agent may delete the
    // container's directories, which must not hold a mount any more.
    let _ = nix::mount::umount2(&launch.bundle.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
    write_replace(&launch.status_dir.join(EXITED_FILE), &serde_json::to_vec(&exited)?)?;
    if exit_code == 255 && status.is_none() {
        bail!("lost track of the container's process");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_cri_lines_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = Log::open(&path, 4096).unwrap();
        log.feed(0, b"hello\nwor").unwrap();
        log.feed(1, b"oops\n").unwrap();
        log.feed(0, b"ld\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(lines, ["stdout F hello", "stderr F oops", "stdout F world"]);
        for _ in 0..100 {
            log.feed(0, &[b'x'; 100]).unwrap();
            log.feed(0, b"\n").unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 4096);
        assert!(dir.path().join("0.log.1").exists());
        log.feed(0, &vec![b'y'; 40_000]).unwrap();
        log.flush_partial().unwrap();
        let text = std::fs::read_to_string(&path).unwrap()
            + &std::fs::read_to_string(dir.path().join("0.log.1")).unwrap();
        assert!(text.lines().any(|l| l.contains(" stdout P ")), "long lines are split into partial records");
    }
}
