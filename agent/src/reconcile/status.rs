//! Pod status as the kubelet reports it: each container's state, last state, readiness and
//! restart count; the pod's phase (by the kubelet's own `getPhase` rules, applied to the
//! container statuses so the two can never disagree); and the pod's conditions.

use flotilla_shared::api::{
    Condition, Container, ContainerState, ContainerStatus, PodPhase, PodStatus, RestartPolicy, StateRunning,
    StateTerminated, StateWaiting,
};

use super::{ContainerRecord, ObservedState, Termination};

pub(super) const CONTAINER_CREATING: &str = "ContainerCreating";
pub(super) const POD_INITIALIZING: &str = "PodInitializing";
pub(super) const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
pub(super) const CREATE_CONTAINER_ERROR: &str = "CreateContainerError";
pub(super) const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
pub(super) const ERR_IMAGE_PULL: &str = "ErrImagePull";
pub(super) const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
pub(super) const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
pub(super) const INVALID_IMAGE_NAME: &str = "InvalidImageName";

/// A container as the status shows it: its spec, its record, and the state decided for it.
pub(super) struct Shown<'a> {
    pub container: &'a Container,
    pub record: &'a ContainerRecord,
    pub state: ContainerState,
}

pub(super) fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(StateWaiting { reason: Some(reason.to_string()), message }),
        ..Default::default()
    }
}

pub(super) fn running(started_wall: &str) -> ContainerState {
    let started_at = Some(started_wall.to_string());
    ContainerState { running: Some(StateRunning { started_at }), ..Default::default() }
}

pub(super) fn terminated(t: &Termination) -> ContainerState {
    let reason = if t.oom_killed {
        "OOMKilled"
    } else if t.error.is_some() {
        "StartError"
    } else if t.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let terminated = StateTerminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: Some(reason.to_string()),
        message: t.error.clone(),
        started_at: Some(t.started_wall.clone()),
        finished_at: Some(t.finished_wall.clone()),
    };
    ContainerState { terminated: Some(terminated), ..Default::default() }
}

pub(super) fn pod_status(
    restart: RestartPolicy,
    inits: &[Shown],
    apps: &[Shown],
    start_wall: &str,
) -> PodStatus {
    let init_statuses: Vec<ContainerStatus> = inits.iter().map(|s| container_status(s, true)).collect();
    let app_statuses: Vec<ContainerStatus> = apps.iter().map(|s| container_status(s, false)).collect();
    let phase = phase(restart, &init_statuses, &app_statuses);
    let conditions = conditions(phase, inits, &init_statuses, apps, &app_statuses, start_wall);
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        container_statuses: Some(app_statuses),
        // The kubelet leaves the field out for a pod without init containers.
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        start_time: Some(start_wall.to_string()),
        ..Default::default()
    }
}

fn container_status(s: &Shown, init: bool) -> ContainerStatus {
    let rec = s.record;
    // A container waiting to be restarted shows the run that just ended as its last state.
    let last = match &rec.state {
        ObservedState::Exited(t) if s.state.waiting.is_some() => Some(t),
        _ => rec.last_termination.as_ref(),
    };
    let running = matches!(rec.state, ObservedState::Running { .. });
    let (started, ready) = if init {
        // The kubelet calls an init container ready once it has succeeded.
        (running, s.state.terminated.as_ref().is_some_and(|t| t.exit_code == 0))
    } else {
        // Without a startup (readiness) probe a running container is started (ready).
        let started = running && (s.container.startup_probe.is_none() || rec.started);
        (started, started && (s.container.readiness_probe.is_none() || rec.ready))
    };
    ContainerStatus {
        name: s.container.name.clone(),
        state: Some(s.state.clone()),
        last_state: Some(last.map(terminated).unwrap_or_default()),
        ready,
        restart_count: i64::from(rec.restart_count),
        image: s.container.image.clone(),
        image_id: None,
        container_id: None,
        started: Some(started),
    }
}

/// The kubelet's `getPhase`: Pending while an init container has not succeeded or a container
/// has never run; Running once all have run and one runs or will restart; Succeeded or Failed
/// once all have stopped for good.
fn phase(restart: RestartPolicy, inits: &[ContainerStatus], apps: &[ContainerStatus]) -> PodPhase {
    let last_exit =
        |s: &ContainerStatus| s.last_state.as_ref().and_then(|l| l.terminated.as_ref()).map(|t| t.exit_code);
    let (mut pending_init, mut failed_init) = (0u32, 0u32);
    for s in inits {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            pending_init = pending_init.saturating_add(1);
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 {
                failed_init = failed_init.saturating_add(1);
            }
        } else if state.waiting.is_some() && last_exit(s).is_some() {
            if last_exit(s) != Some(0) {
                failed_init = failed_init.saturating_add(1);
            }
        } else {
            pending_init = pending_init.saturating_add(1);
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0u32, 0u32, 0u32, 0u32);
    for s in apps {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running = running.saturating_add(1);
        } else if let Some(t) = &state.terminated {
            stopped = stopped.saturating_add(1);
            if t.exit_code == 0 {
                succeeded = succeeded.saturating_add(1);
            }
        } else if last_exit(s).is_some() {
            stopped = stopped.saturating_add(1);
        } else {
            waiting = waiting.saturating_add(1);
        }
    }
    if failed_init > 0 && restart == RestartPolicy::Never {
        return PodPhase::Failed;
    }
    if pending_init > 0 || waiting > 0 {
        PodPhase::Pending
    } else if running > 0 {
        PodPhase::Running
    } else if stopped > 0 {
        match restart {
            // Every container is on its way back.
            RestartPolicy::Always => PodPhase::Running,
            _ if stopped == succeeded => PodPhase::Succeeded,
            RestartPolicy::Never => PodPhase::Failed,
            // Some failed and are on their way back.
            RestartPolicy::OnFailure => PodPhase::Running,
        }
    } else {
        PodPhase::Pending
    }
}

/// `Initialized`, `Ready`, `ContainersReady` and `PodScheduled`, in the kubelet's order and
/// words. Transition times are derived from the containers (when the last init container
/// finished, when the last app container started or stopped), falling back to the pod's start,
/// so they do not change from one reconcile to the next.
fn conditions(
    phase: PodPhase,
    inits: &[Shown],
    init_statuses: &[ContainerStatus],
    apps: &[Shown],
    app_statuses: &[ContainerStatus],
    start_wall: &str,
) -> Vec<Condition> {
    let incomplete: Vec<&str> = init_statuses
        .iter()
        .filter(|s| s.state.as_ref().and_then(|st| st.terminated.as_ref()).is_none_or(|t| t.exit_code != 0))
        .map(|s| s.name.as_str())
        .collect();
    let initialized = if incomplete.is_empty() {
        let finished = latest(inits.iter().filter_map(|s| match &s.record.state {
            ObservedState::Exited(t) => Some((t.finished_ms, t.finished_wall.as_str())),
            _ => None,
        }));
        condition("Initialized", true, finished.unwrap_or(start_wall), None, None)
    } else {
        let message = format!("containers with incomplete status: [{}]", incomplete.join(" "));
        condition("Initialized", false, start_wall, Some("ContainersNotInitialized"), Some(message))
    };

    let unready: Vec<&str> = app_statuses.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
    let started = latest(apps.iter().filter_map(|s| match &s.record.state {
        ObservedState::Running { started_ms, started_wall } => Some((*started_ms, started_wall.as_str())),
        _ => None,
    }));
    let stopped = latest(apps.iter().filter_map(|s| match &s.record.state {
        ObservedState::Exited(t) => Some((t.finished_ms, t.finished_wall.as_str())),
        _ => s.record.last_termination.as_ref().map(|t| (t.finished_ms, t.finished_wall.as_str())),
    }));
    let since_stopped = stopped.unwrap_or(start_wall);
    let ready = |type_: &str| match phase {
        PodPhase::Succeeded => condition(type_, false, since_stopped, Some("PodCompleted"), None),
        PodPhase::Failed => condition(type_, false, since_stopped, Some("PodFailed"), None),
        _ if unready.is_empty() => condition(type_, true, started.unwrap_or(start_wall), None, None),
        _ => {
            let message = format!("containers with unready status: [{}]", unready.join(" "));
            condition(type_, false, since_stopped, Some("ContainersNotReady"), Some(message))
        }
    };
    vec![
        initialized,
        ready("Ready"),
        ready("ContainersReady"),
        condition("PodScheduled", true, start_wall, None, None),
    ]
}

/// The wall time of the latest of some monotonic times.
fn latest<'a>(times: impl Iterator<Item = (u64, &'a str)>) -> Option<&'a str> {
    times.max_by_key(|(ms, _)| *ms).map(|(_, wall)| wall)
}

fn condition(type_: &str, ok: bool, since: &str, reason: Option<&str>, message: Option<String>) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        last_transition_time: Some(since.to_string()),
        last_heartbeat_time: None,
        reason: reason.map(str::to_string),
        message,
    }
}
