//! Observing the runtime: the containers' states from the files their shims keep (`running.json`,
//! `exited.json`) and the sandboxes' from their holders, once a round. The reading is I/O; what
//! it means (an exit, a start, a lost process becoming exit 255, a create that timed out
//! becoming exit 128) is decided by the pure [`container_state`], table-tested below.

use crate::clock::{boot_ms, now_rfc3339, start_ticks};
use crate::fsutil::read_json;
use crate::reconcile::{self, Observed, ObservedState, SandboxState, Termination};
use crate::runtime::sandbox::SandboxInfo;
use crate::runtime::shim::{Exited, Running, EXITED_FILE, RUNNING_FILE};

use super::paths::Paths;

/// How long a shim may take to start its container before the start counts as failed.
pub const CREATE_TIMEOUT_MS: u64 = 60_000;

/// What the shim's files say about a container that is creating or running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The shim recorded the exit.
    Exited(Exited),
    /// The shim recorded a start; whether that process (pid and start time) still runs, and
    /// whether the shim itself does.
    Running { record: Running, process_alive: bool, shim_alive: bool },
    /// Neither file yet.
    Nothing,
}

/// The container's next state from its current one and what was seen (None: unchanged).
pub fn container_state(
    current: &ObservedState,
    seen: &Seen,
    now_ms: u64,
    now_wall: &str,
) -> Option<ObservedState> {
    match current {
        ObservedState::Creating { .. } | ObservedState::Running { .. } => {}
        _ => return None,
    }
    match seen {
        Seen::Exited(ex) => {
            let started_ms = match current {
                ObservedState::Running { started_ms, .. } => *started_ms,
                _ => now_ms,
            };
            Some(ObservedState::Exited(Termination {
                exit_code: ex.exit_code,
                signal: ex.signal,
                oom_killed: ex.oom_killed,
                error: ex.error.clone(),
                started_wall: ex.started_at.clone(),
                finished_wall: ex.finished_at.clone(),
                finished_ms: now_ms,
                ran_ms: now_ms.saturating_sub(started_ms),
            }))
        }
        Seen::Running { record, process_alive: true, .. } => match current {
            ObservedState::Creating { .. } => {
                Some(ObservedState::Running { started_ms: now_ms, started_wall: record.started_at.clone() })
            }
            _ => None,
        },
        // The process has ended and its shim is still writing the exit down.
        Seen::Running { shim_alive: true, .. } => None,
        // The process is gone and no shim recorded its end: the node rebooted or the shim was
        // killed. Report it as lost.
        Seen::Running { record, .. } => Some(ObservedState::Exited(Termination {
            exit_code: 255,
            signal: None,
            oom_killed: false,
            error: Some("the container's process disappeared (node restart or shim killed)".into()),
            started_wall: record.started_at.clone(),
            finished_wall: now_wall.to_string(),
            finished_ms: now_ms,
            ran_ms: 0,
        })),
        Seen::Nothing => match current {
            ObservedState::Creating { since_ms } if now_ms.saturating_sub(*since_ms) > CREATE_TIMEOUT_MS => {
                Some(ObservedState::Exited(Termination {
                    exit_code: 128,
                    error: Some("the shim did not start the container within 60 s".into()),
                    finished_wall: now_wall.to_string(),
                    finished_ms: now_ms,
                    ..Default::default()
                }))
            }
            _ => None,
        },
    }
}

/// Refreshes the observed state of running and starting containers from the shims' files,
/// and of sandboxes from their holders.
pub fn observe(paths: &Paths, observed: &mut Observed) {
    let now = boot_ms();
    for (uid, pod) in observed.pods.iter_mut() {
        if pod.sandbox == SandboxState::Ready {
            let alive = read_json::<SandboxInfo>(&paths.sandbox_info(uid)).is_some_and(|s| s.alive());
            if !alive {
                pod.sandbox = SandboxState::Absent;
            }
        }
        for (name, rec) in pod.containers.iter_mut() {
            if !matches!(rec.state, ObservedState::Creating { .. } | ObservedState::Running { .. }) {
                continue;
            }
            let status = paths.container(uid, name).join("status");
            let seen = if let Some(ex) = read_json::<Exited>(&status.join(EXITED_FILE)) {
                Seen::Exited(ex)
            } else if let Some(r) = read_json::<Running>(&status.join(RUNNING_FILE)) {
                let process_alive = start_ticks(r.pid) == Some(r.start_ticks);
                // Only asked when the process is gone, as before: one /proc read less a round.
                let shim_alive = !process_alive && shim_alive(r.shim_pid);
                Seen::Running { record: r, process_alive, shim_alive }
            } else {
                Seen::Nothing
            };
            if let Some(next) = container_state(&rec.state, &seen, now, &now_rfc3339()) {
                rec.state = next;
            }
        }
        if pod.deleting
            && pod
                .containers
                .values()
                .all(|c| !matches!(c.state, ObservedState::Running { .. } | ObservedState::Creating { .. }))
        {
            pod.deleting = false;
        }
    }
}

/// Monotonic times persisted before a reboot are larger than any time after it (the boot clock
/// restarts at zero): clamp them to now, so back-offs do not last as long as the old uptime.
pub fn clamp_times(observed: &mut Observed, now: u64) {
    let c = |t: &mut u64| *t = (*t).min(now);
    for pod in observed.pods.values_mut() {
        if let SandboxState::Failed { since_ms, .. } = &mut pod.sandbox {
            c(since_ms);
        }
        for rec in pod.containers.values_mut() {
            match &mut rec.state {
                ObservedState::Creating { since_ms } | ObservedState::CreateFailed { since_ms, .. } => {
                    c(since_ms)
                }
                ObservedState::Running { started_ms, .. } => c(started_ms),
                ObservedState::Exited(t) => c(&mut t.finished_ms),
                ObservedState::NotCreated => {}
            }
            if let Some(t) = &mut rec.last_termination {
                c(&mut t.finished_ms);
            }
            if let reconcile::ImageState::PullFailed { since_ms, .. } = &mut rec.image {
                c(since_ms);
            }
        }
    }
}

/// Whether `pid` is (still) a flotilla shim.
fn shim_alive(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|arg| arg == b"shim") && !zombie(pid))
        .unwrap_or(false)
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().starts_with('Z')))
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::{ContainerRecord, ObservedPod};

    const NOW: u64 = 100_000;
    const WALL: &str = "2024-05-01T12:00:00Z";

    fn running_record() -> Running {
        Running { pid: 7, start_ticks: 99, shim_pid: 6, started_at: "t0".into() }
    }

    fn exited_record() -> Exited {
        Exited {
            exit_code: 3,
            signal: Some(15),
            oom_killed: false,
            started_at: "t0".into(),
            finished_at: "t1".into(),
            error: None,
        }
    }

    /// Each case: the current state, what was seen, the expected next state (None: unchanged).
    /// Every case is decided twice, and deciding again from the new state changes nothing more.
    fn check(cases: Vec<(&str, ObservedState, Seen, Option<ObservedState>)>) {
        for (name, current, seen, want) in cases {
            let got = container_state(&current, &seen, NOW, WALL);
            assert_eq!(got, want, "{name}");
            assert_eq!(container_state(&current, &seen, NOW, WALL), got, "{name}: same inputs, same result");
            if let Some(next) = &got {
                let again = container_state(next, &seen, NOW, WALL);
                assert!(again.is_none() || again.as_ref() == Some(next), "{name}: idempotent, got {again:?}");
            }
        }
    }

    #[test]
    fn what_the_shims_files_mean() {
        let creating = |since_ms| ObservedState::Creating { since_ms };
        let running = ObservedState::Running { started_ms: 40_000, started_wall: "t0".into() };
        let seen_running =
            |process_alive, shim_alive| Seen::Running { record: running_record(), process_alive, shim_alive };
        check(vec![
            (
                "a start is seen",
                creating(NOW - 10),
                seen_running(true, true),
                Some(ObservedState::Running { started_ms: NOW, started_wall: "t0".into() }),
            ),
            ("running stays running", running.clone(), seen_running(true, true), None),
            (
                "an exit after a run keeps how long it ran",
                running.clone(),
                Seen::Exited(exited_record()),
                Some(ObservedState::Exited(Termination {
                    exit_code: 3,
                    signal: Some(15),
                    started_wall: "t0".into(),
                    finished_wall: "t1".into(),
                    finished_ms: NOW,
                    ran_ms: NOW - 40_000,
                    ..Default::default()
                })),
            ),
            (
                "an exit before the start was seen ran for no time",
                creating(NOW - 10),
                Seen::Exited(exited_record()),
                Some(ObservedState::Exited(Termination {
                    exit_code: 3,
                    signal: Some(15),
                    started_wall: "t0".into(),
                    finished_wall: "t1".into(),
                    finished_ms: NOW,
                    ran_ms: 0,
                    ..Default::default()
                })),
            ),
            ("the shim is still writing the exit", running.clone(), seen_running(false, true), None),
            (
                "a lost process is exit 255",
                running.clone(),
                seen_running(false, false),
                Some(ObservedState::Exited(Termination {
                    exit_code: 255,
                    error: Some("the container's process disappeared (node restart or shim killed)".into()),
                    started_wall: "t0".into(),
                    finished_wall: WALL.into(),
                    finished_ms: NOW,
                    ..Default::default()
                })),
            ),
            ("a create within the timeout waits", creating(NOW - CREATE_TIMEOUT_MS), Seen::Nothing, None),
            (
                "a create past the timeout is exit 128",
                creating(NOW - CREATE_TIMEOUT_MS - 1),
                Seen::Nothing,
                Some(ObservedState::Exited(Termination {
                    exit_code: 128,
                    error: Some("the shim did not start the container within 60 s".into()),
                    finished_wall: WALL.into(),
                    finished_ms: NOW,
                    ..Default::default()
                })),
            ),
            (
                "an exited container is not looked at",
                ObservedState::Exited(Termination::default()),
                Seen::Nothing,
                None,
            ),
            ("nor one not created", ObservedState::NotCreated, seen_running(false, false), None),
        ]);
    }

    #[test]
    fn times_from_before_a_reboot_are_clamped() {
        let mut o = Observed::default();
        let mut pod = ObservedPod {
            sandbox: SandboxState::Failed { message: String::new(), since_ms: 9_000_000, attempts: 1 },
            ..Default::default()
        };
        pod.containers.insert(
            "c".into(),
            ContainerRecord {
                state: ObservedState::Exited(Termination { finished_ms: 8_000_000, ..Default::default() }),
                ..Default::default()
            },
        );
        o.pods.insert("u".into(), pod);
        clamp_times(&mut o, 5_000);
        let p = &o.pods["u"];
        assert_eq!(p.sandbox, SandboxState::Failed { message: String::new(), since_ms: 5_000, attempts: 1 });
        assert!(matches!(&p.containers["c"].state, ObservedState::Exited(t) if t.finished_ms == 5_000));
    }
}
