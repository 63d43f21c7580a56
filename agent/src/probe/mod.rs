//! Container probes, the kubelet's way. This module is the pure part: a probe's settings with
//! Kubernetes' defaults, and a [`Tracker`] per (container run, probe kind) that turns probe
//! outcomes into a verdict with Kubernetes' semantics. No I/O and no clock: times come in as
//! monotonic milliseconds. `run` executes one probe (exec, HTTP, TCP) with its timeout;
//! `node::prober` schedules them off the agent's loop and feeds the verdicts back.
//!
//! Semantics (as the kubelet's prober workers):
//! - Nothing runs before `initialDelaySeconds` after the container started, then one probe per
//!   `periodSeconds`, each bounded by `timeoutSeconds` (a timeout is a failure).
//! - Startup: the container counts as started after one success; liveness and readiness wait
//!   for it. `failureThreshold` failures in a row kill the container (restart policy applies).
//! - Liveness: healthy until `failureThreshold` failures in a row, which kill the container.
//! - Readiness: not ready until `successThreshold` successes in a row; ready until
//!   `failureThreshold` failures in a row.

pub mod run;

use flotilla_shared::api::Probe;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    /// Kubernetes' spelling in events (`Liveness probe failed: ...`).
    pub fn title(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// A probe's timing and thresholds, Kubernetes' defaults filled in, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub initial_delay_ms: u64,
    pub period_ms: u64,
    pub timeout_ms: u64,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Settings {
    /// Defaults: no initial delay, every 10 s, 1 s timeout, 1 success, 3 failures. Liveness and
    /// startup probes always use a success threshold of 1 (validation refuses anything else).
    pub fn of(kind: Kind, p: &Probe) -> Self {
        let secs = |v: Option<i32>, default: u64, min: u64| -> u64 {
            v.and_then(|v| u64::try_from(v).ok()).unwrap_or(default).max(min) * 1000
        };
        let count =
            |v: Option<i32>, default: u32| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(default).max(1);
        Settings {
            initial_delay_ms: secs(p.initial_delay_seconds, 0, 0),
            period_ms: secs(p.period_seconds, 10, 1),
            timeout_ms: secs(p.timeout_seconds, 1, 1),
            success_threshold: if kind == Kind::Readiness { count(p.success_threshold, 1) } else { 1 },
            failure_threshold: count(p.failure_threshold, 3),
        }
    }
}

/// The result of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Why it failed, for the `Unhealthy` event (`HTTP probe failed with statuscode: 500`).
    Failure(String),
}

/// What a tracker concluded from a new outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing the rest of the agent must act on.
    None,
    /// The verdict flipped: started, ready / not ready.
    Verdict(bool),
    /// Liveness or startup failed for good: kill the container.
    Kill,
}

/// One probe of one container run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    pub kind: Kind,
    pub settings: Settings,
    /// When the container run started (monotonic ms): probes are timed from it.
    pub started_ms: u64,
    /// When the last probe was launched.
    pub last_run_ms: Option<u64>,
    pub in_flight: bool,
    successes: u32,
    failures: u32,
    /// Startup: started; liveness: healthy; readiness: ready.
    pub verdict: bool,
    /// A kill was asked for: the tracker stops probing.
    pub done: bool,
}

impl Tracker {
    pub fn new(kind: Kind, settings: Settings, started_ms: u64) -> Self {
        Tracker {
            kind,
            settings,
            started_ms,
            last_run_ms: None,
            in_flight: false,
            successes: 0,
            failures: 0,
            verdict: kind == Kind::Liveness,
            done: false,
        }
    }

    /// When the next probe is due (None while one runs or after a kill).
    pub fn due_ms(&self) -> Option<u64> {
        if self.in_flight || self.done {
            return None;
        }
        Some(match self.last_run_ms {
            None => self.started_ms.saturating_add(self.settings.initial_delay_ms),
            Some(t) => t.saturating_add(self.settings.period_ms),
        })
    }

    /// A probe is being launched at `now_ms`.
    pub fn launched(&mut self, now_ms: u64) {
        self.in_flight = true;
        self.last_run_ms = Some(now_ms);
    }

    /// A probe's outcome arrived.
    pub fn record(&mut self, outcome: &Outcome) -> Change {
        self.in_flight = false;
        if self.done {
            return Change::None;
        }
        let before = self.verdict;
        match outcome {
            Outcome::Success => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.successes >= self.settings.success_threshold {
                    self.verdict = true;
                }
            }
            Outcome::Failure(_) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                if self.failures >= self.settings.failure_threshold {
                    match self.kind {
                        Kind::Readiness => self.verdict = false,
                        Kind::Liveness | Kind::Startup => {
                            self.verdict = false;
                            self.done = true;
                            return Change::Kill;
                        }
                    }
                }
            }
        }
        if self.kind == Kind::Startup && self.verdict {
            // Once started, the startup probe is finished for this run.
            self.done = true;
        }
        if self.verdict != before {
            Change::Verdict(self.verdict)
        } else {
            Change::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(delay: u64, period: u64, ok: u32, fail: u32) -> Settings {
        Settings {
            initial_delay_ms: delay * 1000,
            period_ms: period * 1000,
            timeout_ms: 1000,
            success_threshold: ok,
            failure_threshold: fail,
        }
    }
    const OK: Outcome = Outcome::Success;
    fn bad() -> Outcome {
        Outcome::Failure("exit code 1".into())
    }

    #[test]
    fn defaults_are_kubernetes_defaults() {
        let s = Settings::of(Kind::Readiness, &Probe::default());
        assert_eq!(s, settings(0, 10, 1, 3));
        let p = Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(0),
            timeout_seconds: Some(3),
            success_threshold: Some(2),
            failure_threshold: Some(1),
            ..Default::default()
        };
        let s = Settings::of(Kind::Readiness, &p);
        assert_eq!(
            (s.initial_delay_ms, s.period_ms, s.timeout_ms, s.success_threshold),
            (5000, 1000, 3000, 2)
        );
        // Liveness and startup never need more than one success.
        assert_eq!(Settings::of(Kind::Liveness, &p).success_threshold, 1);
    }

    #[test]
    fn timing_follows_initial_delay_then_period() {
        let mut t = Tracker::new(Kind::Readiness, settings(5, 10, 1, 3), 1_000);
        assert_eq!(t.due_ms(), Some(6_000));
        t.launched(6_000);
        assert_eq!(t.due_ms(), None, "one probe at a time");
        t.record(&OK);
        assert_eq!(t.due_ms(), Some(16_000));
    }

    #[test]
    fn liveness_kills_after_failure_threshold_in_a_row() {
        let mut t = Tracker::new(Kind::Liveness, settings(0, 1, 1, 3), 0);
        assert!(t.verdict, "healthy until proven otherwise");
        assert_eq!(t.record(&bad()), Change::None);
        assert_eq!(t.record(&bad()), Change::None);
        assert_eq!(t.record(&OK), Change::None, "a success resets the count");
        assert_eq!(t.record(&bad()), Change::None);
        assert_eq!(t.record(&bad()), Change::None);
        assert_eq!(t.record(&bad()), Change::Kill);
        assert_eq!(t.due_ms(), None, "no more probes for this run");
        assert_eq!(t.record(&bad()), Change::None);
    }

    #[test]
    fn readiness_needs_success_threshold_and_drops_after_failures() {
        let mut t = Tracker::new(Kind::Readiness, settings(0, 1, 2, 2), 0);
        assert!(!t.verdict, "not ready until a probe succeeds");
        assert_eq!(t.record(&OK), Change::None);
        assert_eq!(t.record(&OK), Change::Verdict(true));
        assert_eq!(t.record(&bad()), Change::None);
        assert_eq!(t.record(&bad()), Change::Verdict(false));
        assert_eq!(t.record(&bad()), Change::None, "readiness never kills");
        assert_eq!(t.record(&OK), Change::None);
        assert_eq!(t.record(&OK), Change::Verdict(true));
    }

    #[test]
    fn startup_succeeds_once_or_kills() {
        let mut t = Tracker::new(Kind::Startup, settings(0, 1, 1, 2), 0);
        assert_eq!(t.record(&bad()), Change::None);
        assert_eq!(t.record(&OK), Change::Verdict(true));
        assert!(t.done && t.due_ms().is_none(), "finished once started");
        let mut t = Tracker::new(Kind::Startup, settings(0, 1, 1, 2), 0);
        assert_eq!(t.record(&bad()), Change::None);
        assert_eq!(t.record(&bad()), Change::Kill);
    }
}
