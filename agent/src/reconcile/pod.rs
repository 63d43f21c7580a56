//! Decisions for one desired pod: the sandbox first, then the init containers one at a time and
//! in order, each to success, then the app containers together; and, from the same decisions,
//! what each container's status says.

use std::collections::BTreeMap;

use flotilla_shared::api::{Container, ContainerState, PodStatus, PullPolicy, RestartPolicy};
use flotilla_shared::image::ImageRef;
use flotilla_shared::wire::DesiredPod;

use super::backoff::{
    deadline, go_duration, next_step, restart_delay_ms, retry_delay_ms, PULL_ERROR_SHOWN_MS,
};
use super::status::{self, terminated, waiting, Shown};
use super::{
    earliest, grace_secs, Action, ContainerRecord, ImageState, ObservedPod, ObservedState, SandboxState,
};

/// The decisions and status for one desired pod.
pub(super) struct PodPlan {
    pub actions: Vec<Action>,
    pub wake: Option<u64>,
    pub status: PodStatus,
}

/// What every container of the pod needs to know.
struct Ctx<'a> {
    uid: &'a str,
    /// `name_namespace(uid)`: how the kubelet names a pod in its messages.
    pod_ref: String,
    restart: RestartPolicy,
    /// The waiting reason of a container that has not been created yet. The kubelet says
    /// `PodInitializing` for every such container of a pod with init containers.
    pending_reason: &'static str,
    now_ms: u64,
}

/// What was decided for one container.
struct Step {
    actions: Vec<Action>,
    wake: Option<u64>,
    state: ContainerState,
}

impl Step {
    fn shows(state: ContainerState) -> Step {
        Step { actions: Vec::new(), wake: None, state }
    }
}

pub(super) fn plan(
    d: &DesiredPod,
    uid: &str,
    observed: Option<&ObservedPod>,
    now_ms: u64,
    now_wall: &str,
) -> PodPlan {
    let spec = &d.spec;
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let namespace = match d.metadata.namespace() {
        "" => "default",
        ns => ns,
    };
    let ctx = Ctx {
        uid,
        pod_ref: format!("{}_{namespace}({uid})", d.metadata.name()),
        restart: spec.restart_policy.unwrap_or(RestartPolicy::Always),
        pending_reason: if inits.is_empty() { status::CONTAINER_CREATING } else { status::POD_INITIALIZING },
        now_ms,
    };
    let none = BTreeMap::new();
    let records = observed.map_or(&none, |o| &o.containers);
    let fresh = ContainerRecord::default();
    let record = |name: &str| records.get(name).unwrap_or(&fresh);
    let absent = SandboxState::Absent;
    let sandbox = observed.map_or(&absent, |o| &o.sandbox);
    // While a kill is in progress nothing else is started, or it would race the kill.
    let deleting = observed.is_some_and(|o| o.deleting);

    let mut actions = Vec::new();
    let mut wake = None;
    // The sandbox is gone (its holder was killed) while containers still run in its
    // namespaces: as the kubelet does, kill them all, then make a new sandbox; the restart
    // policy decides what starts again in it.
    let sandbox_lost = matches!(sandbox, SandboxState::Absent | SandboxState::Failed { .. })
        && records
            .values()
            .any(|r| matches!(r.state, ObservedState::Running { .. } | ObservedState::Creating { .. }));
    if sandbox_lost && !deleting {
        actions.push(Action::KillPod {
            uid: uid.to_string(),
            grace_secs: grace_secs(spec.termination_grace_period_seconds),
        });
    }
    let deleting = deleting || sandbox_lost;
    let sandbox_ready = match sandbox {
        SandboxState::Ready => true,
        SandboxState::Creating => false,
        SandboxState::Absent => {
            if !deleting {
                actions.push(Action::CreateSandbox { uid: uid.to_string() });
            }
            false
        }
        SandboxState::Failed { since_ms, attempts, .. } => {
            let due = deadline(*since_ms, retry_delay_ms(*attempts));
            if !deleting {
                if now_ms < due {
                    wake = Some(due);
                } else {
                    actions.push(Action::CreateSandbox { uid: uid.to_string() });
                }
            }
            false
        }
    };
    let may_start = sandbox_ready && !deleting;

    // A running container the spec does not name (left by an older agent, say) is stopped;
    // pods are immutable, so it cannot be one the spec will want later.
    if !deleting {
        for (name, rec) in records {
            let known = spec.all_containers().any(|c| &c.name == name);
            let runs = matches!(rec.state, ObservedState::Running { .. } | ObservedState::Creating { .. });
            if !known && runs {
                let grace_secs = grace_secs(spec.termination_grace_period_seconds);
                actions.push(Action::StopContainer {
                    uid: uid.to_string(),
                    container: name.clone(),
                    grace_secs,
                });
            }
        }
    }

    let mut init_shown = Vec::with_capacity(inits.len());
    let mut initialized = true;
    for c in inits {
        let rec = record(&c.name);
        let step = container_step(&ctx, c, rec, true, may_start && initialized);
        initialized = initialized && succeeded(rec);
        actions.extend(step.actions);
        wake = earliest(wake, step.wake);
        init_shown.push(Shown { container: c, record: rec, state: step.state });
    }
    let mut app_shown = Vec::with_capacity(spec.containers.len());
    for c in &spec.containers {
        let rec = record(&c.name);
        let step = container_step(&ctx, c, rec, false, may_start && initialized);
        actions.extend(step.actions);
        wake = earliest(wake, step.wake);
        app_shown.push(Shown { container: c, record: rec, state: step.state });
    }

    let start_wall = observed.and_then(|o| o.start_wall.as_deref()).unwrap_or(now_wall);
    let status = status::pod_status(ctx.restart, &init_shown, &app_shown, start_wall);
    PodPlan { actions, wake, status }
}

/// An init container that has done its work: exited with 0.
fn succeeded(rec: &ContainerRecord) -> bool {
    matches!(&rec.state, ObservedState::Exited(t) if t.exit_code == 0)
}

/// Whether a container that exited with `exit_code` is started again. Init containers run to
/// success, so under `Always` they restart only on failure, like under `OnFailure`.
fn restarts(policy: RestartPolicy, init: bool, exit_code: i32) -> bool {
    match policy {
        RestartPolicy::Never => false,
        RestartPolicy::OnFailure => exit_code != 0,
        RestartPolicy::Always => !init || exit_code != 0,
    }
}

/// Decides one container. `may_start` says whether it is its turn: the sandbox is ready and, for
/// an app container or a later init container, every init container before it has succeeded.
fn container_step(ctx: &Ctx, c: &Container, rec: &ContainerRecord, init: bool, may_start: bool) -> Step {
    let pending = || waiting(ctx.pending_reason, None);
    match &rec.state {
        ObservedState::Running { started_wall, .. } => Step::shows(status::running(started_wall)),
        ObservedState::Creating { .. } => Step::shows(pending()),
        ObservedState::NotCreated if !may_start => Step::shows(pending()),
        ObservedState::NotCreated => {
            let (actions, wake, shown) = start_step(ctx, c, rec, init);
            Step { actions, wake, state: shown.unwrap_or_else(pending) }
        }
        ObservedState::Exited(t) if !may_start || !restarts(ctx.restart, init, t.exit_code) => {
            Step::shows(terminated(t))
        }
        ObservedState::Exited(t) => {
            let delay = restart_delay_ms(rec.backoff_step, t.ran_ms);
            let due = deadline(t.finished_ms, delay);
            let message = format!(
                "back-off {} restarting failed container={} pod={}",
                go_duration(delay),
                c.name,
                ctx.pod_ref
            );
            let crash_loop = waiting(status::CRASH_LOOP_BACK_OFF, Some(message));
            if ctx.now_ms < due {
                return Step { actions: Vec::new(), wake: Some(due), state: crash_loop };
            }
            let remove = Action::RemoveContainer { uid: ctx.uid.to_string(), container: c.name.clone() };
            let (more, wake, shown) = start_step(ctx, c, rec, init);
            let actions = std::iter::once(remove).chain(more).collect();
            Step { actions, wake, state: shown.unwrap_or(crash_loop) }
        }
        ObservedState::CreateFailed { message, since_ms, attempts, config } => {
            let reason =
                if *config { status::CREATE_CONTAINER_CONFIG_ERROR } else { status::CREATE_CONTAINER_ERROR };
            let failed = waiting(reason, Some(message.clone()));
            let due = deadline(*since_ms, retry_delay_ms(*attempts));
            if !may_start {
                Step::shows(failed)
            } else if ctx.now_ms < due {
                Step { actions: Vec::new(), wake: Some(due), state: failed }
            } else {
                let (actions, wake, shown) = start_step(ctx, c, rec, init);
                Step { actions, wake, state: shown.unwrap_or(failed) }
            }
        }
    }
}

/// Starting a container: its image first, under its pull policy, then the start itself.
/// Returns the actions, a wake time, and a waiting state when the image stands in the way.
fn start_step(
    ctx: &Ctx,
    c: &Container,
    rec: &ContainerRecord,
    init: bool,
) -> (Vec<Action>, Option<u64>, Option<ContainerState>) {
    let image = match c.image.as_deref() {
        Some(i) if !i.is_empty() => i,
        _ => {
            let message = "the container has no image".to_string();
            return (Vec::new(), None, Some(waiting(status::INVALID_IMAGE_NAME, Some(message))));
        }
    };
    let policy = match pull_policy(c.image_pull_policy, image) {
        Ok(p) => p,
        Err(reason) => {
            let message = format!("Failed to apply default image tag {image:?}: {reason}");
            return (Vec::new(), None, Some(waiting(status::INVALID_IMAGE_NAME, Some(message))));
        }
    };
    let start = || Action::StartContainer {
        uid: ctx.uid.to_string(),
        container: c.name.clone(),
        init,
        backoff_step: start_backoff_step(rec),
    };
    let pull = || Action::PullImage {
        uid: ctx.uid.to_string(),
        container: c.name.clone(),
        image: image.to_string(),
        policy,
    };
    match &rec.image {
        ImageState::Pulling => (Vec::new(), None, None),
        ImageState::Pulled => (vec![start()], None, None),
        ImageState::Present if policy != PullPolicy::Always => (vec![start()], None, None),
        ImageState::Present | ImageState::Unknown => (vec![pull()], None, None),
        ImageState::PullFailed { message, since_ms, attempts } => {
            let due = deadline(*since_ms, retry_delay_ms(*attempts));
            let shown_until = deadline(*since_ms, PULL_ERROR_SHOWN_MS);
            let (state, flip) = if policy == PullPolicy::Never {
                let message = format!("Container image {image:?} is not present with pull policy of Never");
                (waiting(status::ERR_IMAGE_NEVER_PULL, Some(message)), None)
            } else if ctx.now_ms < shown_until {
                (waiting(status::ERR_IMAGE_PULL, Some(message.clone())), Some(shown_until))
            } else {
                let message = format!("Back-off pulling image {image:?}");
                (waiting(status::IMAGE_PULL_BACK_OFF, Some(message)), None)
            };
            if ctx.now_ms < due {
                (Vec::new(), earliest(Some(due), flip), Some(state))
            } else {
                (vec![pull()], flip, Some(state))
            }
        }
    }
}

/// The back-off step to record with a start: one more than the last run's (or reset after a
/// long run), the same again when retrying a start that failed, 0 for a first start.
fn start_backoff_step(rec: &ContainerRecord) -> u32 {
    match &rec.state {
        ObservedState::CreateFailed { .. } => rec.backoff_step,
        ObservedState::Exited(t) => next_step(rec.backoff_step, t.ran_ms),
        _ => rec.last_termination.as_ref().map_or(0, |t| next_step(rec.backoff_step, t.ran_ms)),
    }
}

/// The container's pull policy, or Kubernetes' default for its image: `Always` for `:latest`
/// or neither tag nor digest, `IfNotPresent` otherwise (`name@sha256:...` too). An image that
/// does not parse is an error, which the kubelet reports as `InvalidImageName`.
fn pull_policy(explicit: Option<PullPolicy>, image: &str) -> Result<PullPolicy, String> {
    let parsed = ImageRef::parse(image).map_err(|e| e.reason.to_string())?;
    Ok(explicit.unwrap_or(if parsed.tag.as_deref() == Some("latest") {
        PullPolicy::Always
    } else {
        PullPolicy::IfNotPresent
    }))
}
