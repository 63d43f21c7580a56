//! The executor's bookkeeping, written as a pure function: what an action's outcome does to the
//! observed state (the counting the reconcile core's module doc leaves to the executor: sandbox
//! and start attempts, restart counts, image states, back-off steps) and which events it is
//! worth. The executor does the I/O and passes in what came of it; `record` reads no clock and
//! touches no file, so every rule here is table-tested without root.
//!
//! `record` is deliberately not idempotent: recording a second failure is a second attempt.
//! The same inputs always give the same result.

use flotilla_shared::api::PullPolicy;
use flotilla_shared::wire::DesiredPod;

use super::{Action, ImageState, ObservedPod, ObservedState, SandboxState};

/// What came of performing an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `CreateSandbox`: the sandbox holder is up, or why not.
    Sandbox(Result<(), String>),
    /// `PullImage`.
    Pull(PullOutcome),
    /// `StartContainer`: the shim was started (with the manifest digest of the image it runs),
    /// or the start was refused.
    Start(Result<String, StartFailure>),
    /// `StopContainer` and `KillPod`: the containers that were running and were signalled.
    Stopped(Vec<String>),
    /// `RemoveContainer` and `RemovePod`: done (removal does not fail in a way worth recording).
    Removed,
}

/// A start that failed before the process ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    pub message: String,
    /// The pod's configuration is at fault (`CreateContainerConfigError`).
    pub config: bool,
}

/// What a `PullImage` came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullOutcome {
    /// The image is in the local store and the policy lets it be used as it is.
    Present,
    /// The image is not in the local store and the policy is `Never`.
    NeverPull,
    /// A pull runs (`started`: this action started it; otherwise one with the same credentials
    /// was already running). Its end is recorded when it finishes.
    Pulling { started: bool },
}

/// What the executor does for a `PullImage`, from whether the image is in the local store.
pub fn pull_step(present: bool, policy: PullPolicy) -> PullStep {
    if present && policy != PullPolicy::Always {
        PullStep::UsePresent
    } else if policy == PullPolicy::Never {
        PullStep::RefuseNever
    } else {
        PullStep::Pull
    }
}

/// The executor's choice for a `PullImage` (see [`pull_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStep {
    UsePresent,
    RefuseNever,
    Pull,
}

/// An event for the pod's event stream (`reason` as the kubelet spells it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub container: String,
    pub message: String,
}

fn note(warning: bool, reason: &'static str, container: &str, message: String) -> Note {
    Note { warning, reason, container: container.to_string(), message }
}

/// Records `outcome` of `action` in `obs` (the pod's observed state; `desired` is None when the
/// pod is no longer desired) at `now_ms` / `now_wall`, and returns the events it is worth.
pub fn record(
    obs: &mut ObservedPod,
    action: &Action,
    outcome: Outcome,
    desired: Option<&DesiredPod>,
    now_ms: u64,
    now_wall: &str,
) -> Vec<Note> {
    let mut notes = Vec::new();
    match (action, outcome) {
        (Action::CreateSandbox { .. }, Outcome::Sandbox(result)) => {
            obs.sandbox = match result {
                Ok(()) => {
                    if let Some(d) = desired {
                        rerun_init_containers(d, obs);
                    }
                    SandboxState::Ready
                }
                Err(message) => {
                    let attempts = match &obs.sandbox {
                        SandboxState::Failed { attempts, .. } => attempts + 1,
                        _ => 1,
                    };
                    SandboxState::Failed { message, since_ms: now_ms, attempts }
                }
            };
            if let Some(d) = desired {
                obs.grace_period_secs = d.spec.termination_grace_period_seconds;
                obs.start_wall.get_or_insert_with(|| now_wall.to_string());
            }
        }
        (Action::PullImage { container, image, .. }, Outcome::Pull(pull)) => {
            let rec = obs.containers.entry(container.clone()).or_default();
            match pull {
                PullOutcome::Present => rec.image = ImageState::Pulled,
                PullOutcome::NeverPull => {
                    let attempts = match &rec.image {
                        ImageState::PullFailed { attempts, .. } => attempts + 1,
                        _ => 1,
                    };
                    notes.push(note(
                        true,
                        "ErrImageNeverPull",
                        container,
                        format!("Container image {image:?} is not present with pull policy of Never"),
                    ));
                    rec.image = ImageState::PullFailed {
                        message: format!("image {image:?} is not present with pull policy of Never"),
                        since_ms: now_ms,
                        attempts,
                    };
                }
                PullOutcome::Pulling { started } => {
                    if started {
                        notes.push(note(false, "Pulling", container, format!("Pulling image {image:?}")));
                    }
                    rec.image = ImageState::Pulling;
                }
            }
        }
        (Action::StartContainer { container, backoff_step, .. }, Outcome::Start(started)) => {
            let rec = obs.containers.entry(container.clone()).or_default();
            let had_run = rec.last_termination.is_some();
            // A new run: its probes start over.
            rec.started = false;
            rec.ready = false;
            if let Ok(digest) = &started {
                rec.image_digest = Some(digest.clone());
            }
            rec.backoff_step = *backoff_step;
            if rec.image == ImageState::Pulled {
                rec.image = ImageState::Present;
            }
            if had_run {
                rec.restart_count += 1;
            }
            rec.state = match started {
                Ok(_) => {
                    notes.push(note(false, "Started", container, format!("Started container {container}")));
                    ObservedState::Creating { since_ms: now_ms }
                }
                Err(StartFailure { message, config }) => {
                    let attempts = match &rec.state {
                        ObservedState::CreateFailed { attempts, .. } => attempts + 1,
                        _ => 1,
                    };
                    notes.push(note(true, "Failed", container, format!("Error: {message}")));
                    ObservedState::CreateFailed { message, since_ms: now_ms, attempts, config }
                }
            };
        }
        (Action::StopContainer { .. } | Action::KillPod { .. }, Outcome::Stopped(signalled)) => {
            if matches!(action, Action::KillPod { .. }) {
                obs.deleting = true;
            }
            for name in signalled {
                notes.push(note(false, "Killing", &name, format!("Stopping container {name}")));
            }
        }
        (Action::RemoveContainer { container, .. }, Outcome::Removed) => {
            if let Some(rec) = obs.containers.get_mut(container) {
                if let ObservedState::Exited(t) = std::mem::take(&mut rec.state) {
                    rec.last_termination = Some(t);
                }
                rec.state = ObservedState::NotCreated;
            }
        }
        // `RemovePod`: the loop drops the pod's record. An outcome that does not belong to its
        // action changes nothing.
        _ => {}
    }
    notes
}

/// A new sandbox for a pod whose containers already ran (its old one was lost) is a restart of
/// the pod: its init containers run again, in order, as the kubelet does.
fn rerun_init_containers(d: &DesiredPod, obs: &mut ObservedPod) {
    for c in d.spec.init_containers.iter().flatten() {
        if let Some(rec) = obs.containers.get_mut(&c.name) {
            if let ObservedState::Exited(t) = std::mem::take(&mut rec.state) {
                rec.last_termination = Some(t);
                rec.restart_count += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::reconcile::{ContainerRecord, Termination};

    const NOW: u64 = 50_000;
    const WALL: &str = "2024-05-01T12:00:00Z";

    fn desired() -> DesiredPod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"terminationGracePeriodSeconds": 5,
                     "initContainers": [{"name": "init", "image": "busybox"}],
                     "containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap()
    }

    fn pod(sandbox: SandboxState, containers: Vec<(&str, ContainerRecord)>) -> ObservedPod {
        ObservedPod {
            uid: "u1".into(),
            sandbox,
            containers: containers.into_iter().map(|(n, r)| (n.to_string(), r)).collect(),
            ..Default::default()
        }
    }

    fn rec(state: ObservedState) -> ContainerRecord {
        ContainerRecord { state, ..Default::default() }
    }

    fn exited(code: i32) -> ObservedState {
        ObservedState::Exited(Termination { exit_code: code, finished_ms: 10, ..Default::default() })
    }

    fn failed(attempts: u32) -> SandboxState {
        SandboxState::Failed { message: "boom".into(), since_ms: NOW, attempts }
    }

    fn start(backoff_step: u32) -> Action {
        Action::StartContainer { uid: "u1".into(), container: "c".into(), init: false, backoff_step }
    }

    fn pull(policy: PullPolicy) -> Action {
        Action::PullImage { uid: "u1".into(), container: "c".into(), image: "busybox".into(), policy }
    }

    struct Case {
        name: &'static str,
        before: ObservedPod,
        action: Action,
        outcome: Outcome,
        desired: bool,
        after: ObservedPod,
        events: Vec<&'static str>,
    }

    /// Records each case and compares the observed pod and the events' reasons; every case is
    /// recorded twice from the same inputs to check that the result depends on nothing else.
    fn check(cases: Vec<Case>) {
        let d = desired();
        for c in cases {
            let run = || {
                let mut obs = c.before.clone();
                let notes =
                    record(&mut obs, &c.action, c.outcome.clone(), c.desired.then_some(&d), NOW, WALL);
                (obs, notes)
            };
            let (obs, notes) = run();
            assert_eq!(obs, c.after, "{}: observed", c.name);
            let reasons: Vec<&str> = notes.iter().map(|n| n.reason).collect();
            assert_eq!(reasons, c.events, "{}: events", c.name);
            assert_eq!(run(), (obs, notes), "{}: same inputs, same result", c.name);
        }
    }

    #[test]
    fn outcomes_are_recorded_as_the_reconcile_core_expects() {
        let ready_pod = |containers| {
            let mut p = pod(SandboxState::Ready, containers);
            p.grace_period_secs = Some(5);
            p.start_wall = Some(WALL.into());
            p
        };
        let restarted = |state: ObservedState, restarts: u32| ContainerRecord {
            state: ObservedState::NotCreated,
            last_termination: match state {
                ObservedState::Exited(t) => Some(t),
                _ => None,
            },
            restart_count: restarts,
            ..Default::default()
        };
        check(vec![
            Case {
                name: "a sandbox comes up",
                before: pod(SandboxState::Absent, vec![]),
                action: Action::CreateSandbox { uid: "u1".into() },
                outcome: Outcome::Sandbox(Ok(())),
                desired: true,
                after: ready_pod(vec![]),
                events: vec![],
            },
            Case {
                name: "a new sandbox after a lost one runs the init containers again",
                before: pod(SandboxState::Absent, vec![("init", rec(exited(0))), ("c", rec(exited(1)))]),
                action: Action::CreateSandbox { uid: "u1".into() },
                outcome: Outcome::Sandbox(Ok(())),
                desired: true,
                after: ready_pod(vec![
                    ("init", ContainerRecord { state: ObservedState::NotCreated, ..restarted(exited(0), 1) }),
                    ("c", rec(exited(1))),
                ]),
                events: vec![],
            },
            Case {
                name: "sandbox failures count attempts",
                before: pod(failed(2), vec![]),
                action: Action::CreateSandbox { uid: "u1".into() },
                outcome: Outcome::Sandbox(Err("boom".into())),
                desired: false,
                after: pod(failed(3), vec![]),
                events: vec![],
            },
            Case {
                name: "a present image is used",
                before: pod(SandboxState::Ready, vec![]),
                action: pull(PullPolicy::IfNotPresent),
                outcome: Outcome::Pull(PullOutcome::Present),
                desired: true,
                after: pod(
                    SandboxState::Ready,
                    vec![("c", ContainerRecord { image: ImageState::Pulled, ..Default::default() })],
                ),
                events: vec![],
            },
            Case {
                name: "Never with a missing image fails, counting attempts",
                before: pod(
                    SandboxState::Ready,
                    vec![(
                        "c",
                        ContainerRecord {
                            image: ImageState::PullFailed {
                                message: String::new(),
                                since_ms: 1,
                                attempts: 1,
                            },
                            ..Default::default()
                        },
                    )],
                ),
                action: pull(PullPolicy::Never),
                outcome: Outcome::Pull(PullOutcome::NeverPull),
                desired: true,
                after: pod(
                    SandboxState::Ready,
                    vec![(
                        "c",
                        ContainerRecord {
                            image: ImageState::PullFailed {
                                message: "image \"busybox\" is not present with pull policy of Never".into(),
                                since_ms: NOW,
                                attempts: 2,
                            },
                            ..Default::default()
                        },
                    )],
                ),
                events: vec!["ErrImageNeverPull"],
            },
            Case {
                name: "a pull already running is joined without an event",
                before: pod(SandboxState::Ready, vec![]),
                action: pull(PullPolicy::Always),
                outcome: Outcome::Pull(PullOutcome::Pulling { started: false }),
                desired: true,
                after: pod(
                    SandboxState::Ready,
                    vec![("c", ContainerRecord { image: ImageState::Pulling, ..Default::default() })],
                ),
                events: vec![],
            },
            Case {
                name: "a first start: no restart, the pulled image becomes present",
                before: pod(
                    SandboxState::Ready,
                    vec![(
                        "c",
                        ContainerRecord {
                            image: ImageState::Pulled,
                            started: true,
                            ready: true,
                            ..Default::default()
                        },
                    )],
                ),
                action: start(0),
                outcome: Outcome::Start(Ok("sha256:abc".into())),
                desired: true,
                after: pod(
                    SandboxState::Ready,
                    vec![(
                        "c",
                        ContainerRecord {
                            state: ObservedState::Creating { since_ms: NOW },
                            image: ImageState::Present,
                            image_digest: Some("sha256:abc".into()),
                            ..Default::default()
                        },
                    )],
                ),
                events: vec!["Started"],
            },
            Case {
                name: "a start after a run is a restart, with its back-off step",
                before: pod(SandboxState::Ready, vec![("c", restarted(exited(1), 2))]),
                action: start(3),
                outcome: Outcome::Start(Ok("sha256:abc".into())),
                desired: true,
                after: pod(
                    SandboxState::Ready,
                    vec![(
                        "c",
                        ContainerRecord {
                            state: ObservedState::Creating { since_ms: NOW },
                            backoff_step: 3,
                            image_digest: Some("sha256:abc".into()),
                            ..restarted(exited(1), 3)
                        },
                    )],
                ),
                events: vec!["Started"],
            },
            Case {
                name: "failed starts count attempts and keep the config flag",
                before: pod(
                    SandboxState::Ready,
                    vec![(
                        "c",
                        rec(ObservedState::CreateFailed {
                            message: "old".into(),
                            since_ms: 1,
                            attempts: 4,
                            config: false,
                        }),
                    )],
                ),
                action: start(0),
                outcome: Outcome::Start(Err(StartFailure {
                    message: "configmap \"x\" not found".into(),
                    config: true,
                })),
                desired: true,
                after: pod(
                    SandboxState::Ready,
                    vec![(
                        "c",
                        rec(ObservedState::CreateFailed {
                            message: "configmap \"x\" not found".into(),
                            since_ms: NOW,
                            attempts: 5,
                            config: true,
                        }),
                    )],
                ),
                events: vec!["Failed"],
            },
            Case {
                name: "a stop that signalled nothing says nothing",
                before: pod(SandboxState::Ready, vec![("c", rec(exited(0)))]),
                action: Action::StopContainer { uid: "u1".into(), container: "c".into(), grace_secs: 1 },
                outcome: Outcome::Stopped(vec![]),
                desired: true,
                after: pod(SandboxState::Ready, vec![("c", rec(exited(0)))]),
                events: vec![],
            },
            Case {
                name: "killing a pod marks it deleting, one event per signalled container",
                before: pod(SandboxState::Ready, vec![("a", rec(exited(0))), ("c", rec(exited(0)))]),
                action: Action::KillPod { uid: "u1".into(), grace_secs: 1 },
                outcome: Outcome::Stopped(vec!["a".into(), "c".into()]),
                desired: false,
                after: ObservedPod {
                    deleting: true,
                    ..pod(SandboxState::Ready, vec![("a", rec(exited(0))), ("c", rec(exited(0)))])
                },
                events: vec!["Killing", "Killing"],
            },
            Case {
                name: "a removed container keeps its exit as the last termination",
                before: pod(
                    SandboxState::Ready,
                    vec![("c", ContainerRecord { restart_count: 1, ..rec(exited(2)) })],
                ),
                action: Action::RemoveContainer { uid: "u1".into(), container: "c".into() },
                outcome: Outcome::Removed,
                desired: true,
                after: pod(SandboxState::Ready, vec![("c", restarted(exited(2), 1))]),
                events: vec![],
            },
        ]);
    }

    #[test]
    fn pull_steps_follow_the_policy() {
        use PullPolicy::*;
        for (present, policy, want) in [
            (true, IfNotPresent, PullStep::UsePresent),
            (true, Never, PullStep::UsePresent),
            (true, Always, PullStep::Pull),
            (false, IfNotPresent, PullStep::Pull),
            (false, Always, PullStep::Pull),
            (false, Never, PullStep::RefuseNever),
        ] {
            assert_eq!(pull_step(present, policy), want, "present {present}, {policy:?}");
            assert_eq!(pull_step(present, policy), pull_step(present, policy));
        }
    }
}
