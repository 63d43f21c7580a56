//! The agent's reconcile core: the node's desired pods and the observed state of their sandboxes,
//! containers and images in, the actions to take and every desired pod's status out.
//!
//! It is a pure function, like the kubelet's `computePodActions` plus its status generation: no
//! I/O, no clock, no threads, no randomness. Time comes in as `now_ms` (a monotonic millisecond
//! count, the same clock the observed `*_ms` fields use) and `now_wall` (RFC 3339, only ever
//! copied into status timestamps). It is level-triggered: it looks at the whole desired and
//! observed state every time, so the same inputs give the same plan, and an agent that restarts
//! next to running containers adopts them simply because they already match.
//!
//! # The executor's side of the contract
//!
//! The executor performs a plan's actions (a pod's actions in the order given; it stops at a
//! pod's first failure), records every outcome in [`Observed`], and reconciles again whenever
//! something changed or `wake_at_ms` arrives. It owns all counting:
//!
//! - `CreateSandbox`: sandbox `Creating`, then `Ready` or `Failed` (attempts + 1, `since_ms` =
//!   now). It also records `start_wall` and the pod's `terminationGracePeriodSeconds`, which
//!   are needed after the pod leaves the desired state.
//! - `PullImage`: image `Pulling`, then `Pulled` or `PullFailed` (attempts + 1). Under `Never`
//!   it only looks in the local store; under `IfNotPresent` it pulls only when the image is
//!   missing; under `Always` it asks the registry.
//! - `StartContainer`: state `Creating`, then `Running` or `CreateFailed` (attempts + 1). It
//!   stores the action's `backoff_step`, turns an image `Pulled` into `Present` (so `Always`
//!   pulls again before the next start), and adds one to `restart_count` when the container
//!   has run before.
//! - `RemoveContainer`: deletes the exited container, keeps its record with state `NotCreated`
//!   and the exit moved to `last_termination`.
//! - `KillPod`: sets `deleting`, stops every container of the pod concurrently (SIGTERM, then
//!   SIGKILL after the grace period), clears `deleting` when done. `StopContainer` is the same
//!   for one container.
//! - `RemovePod`: deletes everything of the pod, including its observed record.
//!
//! Actions are requests: one already in progress is not started twice.
//!
//! [`record::record`] is this contract written as code: the executor passes in what came of
//! each action and `record` does the counting, so the executor itself only performs I/O.

mod backoff;
mod pod;
pub mod record;
mod status;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use flotilla_shared::api::{PodStatus, PullPolicy};
use flotilla_shared::wire::DesiredPod;
use serde::{Deserialize, Serialize};

/// Everything the executor knows about the pods on the node, by pod uid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    pub pods: BTreeMap<String, ObservedPod>,
}

/// One pod the executor has acted on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub sandbox: SandboxState,
    /// By container name, init and app containers alike (names are unique within a pod).
    pub containers: BTreeMap<String, ContainerRecord>,
    /// A `KillPod` is in progress; nothing else is decided for the pod until it is done.
    pub deleting: bool,
    /// The pod's `terminationGracePeriodSeconds`, kept for when it is no longer desired.
    pub grace_period_secs: Option<i64>,
    /// When the agent took the pod on (RFC 3339): the pod's `startTime`.
    pub start_wall: Option<String>,
}

/// The pod sandbox: the namespaces the pod's containers share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SandboxState {
    #[default]
    Absent,
    Creating,
    Ready,
    /// The last `attempts` creations in a row failed, the last at `since_ms`.
    Failed {
        message: String,
        since_ms: u64,
        attempts: u32,
    },
}

/// What the executor knows about one container of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    pub state: ObservedState,
    /// Times the container was started again after it had exited.
    pub restart_count: u32,
    /// The `backoff_step` of the `StartContainer` that last started it (0 for a first start).
    /// Kept here rather than derived from `restart_count` because a long run resets it.
    pub backoff_step: u32,
    /// How the previous run ended, once the container has been restarted.
    pub last_termination: Option<Termination>,
    /// The container's image, as far as its next start is concerned.
    pub image: ImageState,
    /// The manifest digest of the image the container was last started from: image GC keeps
    /// it while the record exists.
    #[serde(default)]
    pub image_digest: Option<String>,
    /// The startup probe has succeeded (ignored when the container has no startup probe).
    pub started: bool,
    /// The readiness probe succeeds (ignored when the container has no readiness probe).
    pub ready: bool,
}

/// The runtime state of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ObservedState {
    /// No container exists (never created, or removed for a restart).
    #[default]
    NotCreated,
    /// A `StartContainer` is in progress.
    Creating {
        since_ms: u64,
    },
    Running {
        started_ms: u64,
        started_wall: String,
    },
    Exited(Termination),
    /// The last `attempts` starts in a row failed before the process ran, the last at `since_ms`.
    CreateFailed {
        message: String,
        since_ms: u64,
        attempts: u32,
        /// The pod's configuration is at fault (a missing ConfigMap, Secret or key, runAsNonRoot
        /// with a root image): the kubelet's `CreateContainerConfigError`.
        #[serde(default)]
        config: bool,
    },
}

/// How a container run ended, as the shim records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Termination {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// Set when the process never started (the shim's `error`): reason `StartError`.
    pub error: Option<String>,
    pub started_wall: String,
    pub finished_wall: String,
    /// When it exited, on the monotonic clock of `now_ms`.
    pub finished_ms: u64,
    /// How long it ran.
    pub ran_ms: u64,
}

/// A container's image with respect to its next start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ImageState {
    /// Not known to be in the local store.
    #[default]
    Unknown,
    /// A `PullImage` is in progress.
    Pulling,
    /// In the local store, but not pulled for the next start (which matters under `Always`).
    Present,
    /// A `PullImage` succeeded since the container last started: it may start.
    Pulled,
    /// The last `attempts` pulls in a row failed, the last at `since_ms`.
    PullFailed { message: String, since_ms: u64, attempts: u32 },
}

/// What to do, and what to report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Grouped by pod, in the order of the desired pods, then the undesired ones by uid.
    pub actions: Vec<Action>,
    /// The status of every desired pod (by uid), in the order of the desired pods.
    pub statuses: Vec<(String, PodStatus)>,
    /// The earliest future time at which the plan would change with nothing else changing (a
    /// back-off expires, or a status moves from `ErrImagePull` to `ImagePullBackOff`).
    pub wake_at_ms: Option<u64>,
}

/// One step for the executor. Containers are named by pod uid and container name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    CreateSandbox {
        uid: String,
    },
    /// Make the image ready for the container's next start, under `policy`.
    PullImage {
        uid: String,
        container: String,
        image: String,
        policy: PullPolicy,
    },
    /// Create and start the container; record `backoff_step` with it.
    StartContainer {
        uid: String,
        container: String,
        init: bool,
        backoff_step: u32,
    },
    /// Stop a running container that the pod's spec does not have.
    StopContainer {
        uid: String,
        container: String,
        grace_secs: u64,
    },
    /// Delete an exited container before it is started again.
    RemoveContainer {
        uid: String,
        container: String,
    },
    /// Stop every container of a pod that is no longer desired.
    KillPod {
        uid: String,
        grace_secs: u64,
    },
    /// Delete everything of a pod that is no longer desired, once nothing of it runs.
    RemovePod {
        uid: String,
    },
}

/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_SECS: u64 = 30;

/// Decides the actions that move the observed state towards the desired pods, and reports the
/// status of each desired pod. Desired pods without a uid are skipped (the hub always sets one);
/// a uid given twice counts once.
pub fn reconcile(desired: &[DesiredPod], observed: &Observed, now_ms: u64, now_wall: &str) -> Plan {
    let mut plan = Plan::default();
    let mut wanted = BTreeSet::new();
    for d in desired {
        let Some(uid) = d.metadata.uid.as_deref().filter(|u| !u.is_empty()) else { continue };
        if !wanted.insert(uid) {
            continue;
        }
        let p = pod::plan(d, uid, observed.pods.get(uid), now_ms, now_wall);
        plan.actions.extend(p.actions);
        plan.statuses.push((uid.to_string(), p.status));
        plan.wake_at_ms = earliest(plan.wake_at_ms, p.wake);
    }
    for (uid, op) in &observed.pods {
        if !wanted.contains(uid.as_str()) {
            plan.actions.extend(remove_undesired(uid, op));
        }
    }
    plan
}

/// A pod that is no longer desired: stop what runs (with the pod's grace period), then remove
/// everything once nothing does. A sandbox still being created is waited for, so the removal
/// does not race the creation.
fn remove_undesired(uid: &str, op: &ObservedPod) -> Option<Action> {
    let runs = op
        .containers
        .values()
        .any(|r| matches!(r.state, ObservedState::Running { .. } | ObservedState::Creating { .. }));
    if runs {
        (!op.deleting)
            .then(|| Action::KillPod { uid: uid.to_string(), grace_secs: grace_secs(op.grace_period_secs) })
    } else if op.sandbox == SandboxState::Creating {
        None
    } else {
        Some(Action::RemovePod { uid: uid.to_string() })
    }
}

/// The grace period in seconds, Kubernetes' default when unset; a negative value (rejected by
/// validation anyway) means no grace.
fn grace_secs(spec: Option<i64>) -> u64 {
    spec.map_or(DEFAULT_GRACE_SECS, |s| u64::try_from(s).unwrap_or(0))
}

/// The earlier of two optional times.
fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
