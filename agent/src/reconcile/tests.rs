//! Table tests for the reconcile core: each case is a desired pod, an observed state and a time,
//! and the expected actions, wake time and a one-line summary of the pod's status. Every case is
//! also reconciled twice to check that the same inputs give the same plan.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![allow(clippy::arithmetic_side_effects)]

use flotilla_shared::api::{ContainerStatus, PodPhase, PodStatus, PullPolicy};
use flotilla_shared::wire::DesiredPod;
use serde_json::{json, Value};

use super::backoff::go_duration;
use super::*;

const UID: &str = "u1";
const NOW_WALL: &str = "2024-05-01T12:00:00Z";

// ---- builders ----------------------------------------------------------------------------

fn pod(spec: Value) -> DesiredPod {
    named_pod(UID, spec)
}

fn named_pod(uid: &str, spec: Value) -> DesiredPod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": uid},
        "spec": spec,
    }))
    .unwrap()
}

/// One app container `web` with `image`, under `restart` (None: the default).
fn simple(image: &str, restart: Option<&str>) -> DesiredPod {
    let mut spec = json!({"containers": [{"name": "web", "image": image}]});
    if let Some(r) = restart {
        spec["restartPolicy"] = json!(r);
    }
    pod(spec)
}

/// Init containers `a` and `b`, app containers `web` and `side`.
fn with_init(restart: &str) -> DesiredPod {
    pod(json!({
        "restartPolicy": restart,
        "initContainers": [{"name": "a", "image": "busybox:1.36"}, {"name": "b", "image": "busybox:1.36"}],
        "containers": [{"name": "web", "image": "nginx:1.25"}, {"name": "side", "image": "nginx:1.25"}],
    }))
}

fn wall(ms: u64) -> String {
    format!("wall@{ms}")
}

fn term(exit_code: i32, finished_ms: u64, ran_ms: u64) -> Termination {
    Termination {
        exit_code,
        started_wall: wall(finished_ms.saturating_sub(ran_ms)),
        finished_wall: wall(finished_ms),
        finished_ms,
        ran_ms,
        ..Default::default()
    }
}

fn running(started_ms: u64) -> ContainerRecord {
    rec(ObservedState::Running { started_ms, started_wall: wall(started_ms) })
}

fn exited(exit_code: i32, finished_ms: u64, ran_ms: u64) -> ContainerRecord {
    rec(ObservedState::Exited(term(exit_code, finished_ms, ran_ms)))
}

/// A record whose image is in the store.
fn rec(state: ObservedState) -> ContainerRecord {
    ContainerRecord { state, image: ImageState::Present, ..Default::default() }
}

fn not_created(image: ImageState) -> ContainerRecord {
    ContainerRecord { image, ..Default::default() }
}

fn pull_failed(since_ms: u64, attempts: u32) -> ImageState {
    ImageState::PullFailed { message: "manifest unknown".into(), since_ms, attempts }
}

fn step(mut r: ContainerRecord, backoff_step: u32) -> ContainerRecord {
    r.backoff_step = backoff_step;
    r
}

fn observed_pod(sandbox: SandboxState, containers: Vec<(&str, ContainerRecord)>) -> ObservedPod {
    ObservedPod {
        namespace: "default".into(),
        name: "web".into(),
        uid: UID.into(),
        sandbox,
        containers: containers.into_iter().map(|(n, r)| (n.to_string(), r)).collect(),
        deleting: false,
        grace_period_secs: None,
        start_wall: Some(wall(0)),
    }
}

fn observed(sandbox: SandboxState, containers: Vec<(&str, ContainerRecord)>) -> Observed {
    Observed { pods: [(UID.to_string(), observed_pod(sandbox, containers))].into() }
}

/// A pod whose sandbox is ready, with these containers.
fn ready(containers: Vec<(&str, ContainerRecord)>) -> Observed {
    observed(SandboxState::Ready, containers)
}

fn sandbox_failed(since_ms: u64, attempts: u32) -> SandboxState {
    SandboxState::Failed { message: "netns: permission denied".into(), since_ms, attempts }
}

// ---- actions -----------------------------------------------------------------------------

fn create_sandbox() -> Action {
    Action::CreateSandbox { uid: UID.into() }
}

fn pull(container: &str, image: &str, policy: PullPolicy) -> Action {
    Action::PullImage { uid: UID.into(), container: container.into(), image: image.into(), policy }
}

fn start(container: &str, init: bool, backoff_step: u32) -> Action {
    Action::StartContainer { uid: UID.into(), container: container.into(), init, backoff_step }
}

fn remove(container: &str) -> Action {
    Action::RemoveContainer { uid: UID.into(), container: container.into() }
}

// ---- the check ---------------------------------------------------------------------------

/// A container's state in a word: `running`, the waiting reason, or `exit:<code>:<reason>`.
fn state_word(c: &ContainerStatus) -> String {
    let st = c.state.clone().unwrap_or_default();
    let what = if let Some(w) = st.waiting {
        w.reason.unwrap_or_default()
    } else if st.running.is_some() {
        "running".to_string()
    } else if let Some(t) = st.terminated {
        format!("exit:{}:{}", t.exit_code, t.reason.unwrap_or_default())
    } else {
        "?".to_string()
    };
    format!("{}={what}", c.name)
}

/// `Phase | init a=... b=... | web=...`.
fn summary(s: &PodStatus) -> String {
    let words = |l: &Vec<ContainerStatus>| l.iter().map(state_word).collect::<Vec<_>>().join(" ");
    let mut parts = vec![format!("{:?}", s.phase.unwrap())];
    if let Some(init) = &s.init_container_statuses {
        parts.push(format!("init {}", words(init)));
    }
    parts.push(words(s.container_statuses.as_ref().unwrap()));
    parts.join(" | ")
}

struct Case {
    name: &'static str,
    pod: Option<DesiredPod>,
    observed: Observed,
    now: u64,
    actions: Vec<Action>,
    wake: Option<u64>,
    /// The summary of the pod's status; empty when no pod is desired.
    status: &'static str,
}

fn case(name: &'static str, pod: DesiredPod, observed: Observed, now: u64) -> Case {
    Case { name, pod: Some(pod), observed, now, actions: vec![], wake: None, status: "" }
}

impl Case {
    fn expect(self, actions: Vec<Action>, wake: Option<u64>, status: &'static str) -> Case {
        Case { actions, wake, status, ..self }
    }
}

fn check(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in &cases {
        let desired: Vec<DesiredPod> = c.pod.iter().cloned().collect();
        let plan = reconcile(&desired, &c.observed, c.now, NOW_WALL);
        let again = reconcile(&desired, &c.observed, c.now, NOW_WALL);
        if plan != again {
            failures.push(format!("{}: not idempotent", c.name));
        }
        let status = plan.statuses.first().map(|(_, s)| summary(s)).unwrap_or_default();
        let got = (&plan.actions, plan.wake_at_ms, status.as_str());
        let want = (&c.actions, c.wake, c.status);
        if got != want {
            failures.push(format!("{}:\n   got {got:?}\n  want {want:?}", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The status of the only desired pod.
fn status_of(pod: DesiredPod, observed: &Observed, now: u64) -> PodStatus {
    reconcile(&[pod], observed, now, NOW_WALL).statuses.remove(0).1
}

// ---- sandbox -----------------------------------------------------------------------------

#[test]
fn sandbox_comes_first() {
    let p = || simple("nginx:1.25", None);
    check(vec![
        case("fresh pod", p(), Observed::default(), 0).expect(
            vec![create_sandbox()],
            None,
            "Pending | web=ContainerCreating",
        ),
        case("sandbox absent", p(), observed(SandboxState::Absent, vec![]), 0).expect(
            vec![create_sandbox()],
            None,
            "Pending | web=ContainerCreating",
        ),
        case("sandbox being created", p(), observed(SandboxState::Creating, vec![]), 0).expect(
            vec![],
            None,
            "Pending | web=ContainerCreating",
        ),
        case("sandbox failed once, in back-off", p(), observed(sandbox_failed(1_000, 1), vec![]), 5_000)
            .expect(vec![], Some(11_000), "Pending | web=ContainerCreating"),
        case("sandbox failed once, back-off over", p(), observed(sandbox_failed(1_000, 1), vec![]), 11_000)
            .expect(vec![create_sandbox()], None, "Pending | web=ContainerCreating"),
        case("sandbox failed 3 times: 40 s", p(), observed(sandbox_failed(1_000, 3), vec![]), 40_999).expect(
            vec![],
            Some(41_000),
            "Pending | web=ContainerCreating",
        ),
        case("sandbox failed 30 times: capped", p(), observed(sandbox_failed(1_000, 30), vec![]), 2_000)
            .expect(vec![], Some(301_000), "Pending | web=ContainerCreating"),
        case(
            "sandbox lost under a running container: kill the pod first",
            p(),
            observed(SandboxState::Absent, vec![("web", running(1_000))]),
            5_000,
        )
        .expect(
            vec![Action::KillPod { uid: UID.into(), grace_secs: 30 }],
            None,
            "Running | web=running",
        ),
        case(
            "sandbox lost, containers stopped: a new sandbox",
            p(),
            observed(SandboxState::Absent, vec![("web", exited(143, 6_000, 5_000))]),
            6_000,
        )
        .expect(vec![create_sandbox()], None, "Running | web=exit:143:Error"),
        case(
            "nothing else before the sandbox is ready",
            with_init("Always"),
            observed(SandboxState::Creating, vec![("a", not_created(ImageState::Present))]),
            0,
        )
        .expect(
            vec![],
            None,
            "Pending | init a=PodInitializing b=PodInitializing | web=PodInitializing side=PodInitializing",
        ),
    ]);
}

// ---- images ------------------------------------------------------------------------------

#[test]
fn image_pull_policies() {
    use PullPolicy::*;
    let explicit = |image: &str, policy: &str| {
        pod(json!({"containers": [{"name": "web", "image": image, "imagePullPolicy": policy}]}))
    };
    let fresh = || ready(vec![]);
    let present = || ready(vec![("web", not_created(ImageState::Present))]);
    let pulled = || ready(vec![("web", not_created(ImageState::Pulled))]);
    let digest = format!("nginx@sha256:{}", "a".repeat(64));
    let latest_digest = format!("nginx:latest@sha256:{}", "a".repeat(64));
    let creating = "Pending | web=ContainerCreating";
    check(vec![
        case("tagged: IfNotPresent, pull when unknown", simple("nginx:1.25", None), fresh(), 0).expect(
            vec![pull("web", "nginx:1.25", IfNotPresent)],
            None,
            creating,
        ),
        case("tagged and present: start without pulling", simple("nginx:1.25", None), present(), 0).expect(
            vec![start("web", false, 0)],
            None,
            creating,
        ),
        case("no tag: Always", simple("nginx", None), present(), 0).expect(
            vec![pull("web", "nginx", Always)],
            None,
            creating,
        ),
        case(":latest: Always", simple("nginx:latest", None), present(), 0).expect(
            vec![pull("web", "nginx:latest", Always)],
            None,
            creating,
        ),
        case("digest only: IfNotPresent", simple(&digest, None), fresh(), 0).expect(
            vec![pull("web", &digest, IfNotPresent)],
            None,
            creating,
        ),
        case(":latest with digest: Always", simple(&latest_digest, None), present(), 0).expect(
            vec![pull("web", &latest_digest, Always)],
            None,
            creating,
        ),
        case("Always, pulled for this start: start", simple("nginx", None), pulled(), 0).expect(
            vec![start("web", false, 0)],
            None,
            creating,
        ),
        case("Always while running: no pull", simple("nginx", None), ready(vec![("web", running(1))]), 9)
            .expect(vec![], None, "Running | web=running"),
        case("explicit Always beats the tag", explicit("nginx:1.25", "Always"), present(), 0).expect(
            vec![pull("web", "nginx:1.25", Always)],
            None,
            creating,
        ),
        case("explicit IfNotPresent beats :latest", explicit("nginx", "IfNotPresent"), present(), 0).expect(
            vec![start("web", false, 0)],
            None,
            creating,
        ),
        case("Never, unknown: look in the store only", explicit("nginx", "Never"), fresh(), 0).expect(
            vec![pull("web", "nginx", Never)],
            None,
            creating,
        ),
        case("Never, present: start", explicit("nginx", "Never"), present(), 0).expect(
            vec![start("web", false, 0)],
            None,
            creating,
        ),
        case(
            "Never, not present: ErrImageNeverPull, look again after back-off",
            explicit("nginx", "Never"),
            ready(vec![("web", not_created(pull_failed(1_000, 1)))]),
            2_000,
        )
        .expect(vec![], Some(11_000), "Pending | web=ErrImageNeverPull"),
        case(
            "Never, look again",
            explicit("nginx", "Never"),
            ready(vec![("web", not_created(pull_failed(1_000, 1)))]),
            11_000,
        )
        .expect(vec![pull("web", "nginx", Never)], None, "Pending | web=ErrImageNeverPull"),
        case(
            "pulling: wait",
            simple("nginx", None),
            ready(vec![("web", not_created(ImageState::Pulling))]),
            0,
        )
        .expect(vec![], None, creating),
        case("invalid image name", simple("nginx:", None), fresh(), 0).expect(
            vec![],
            None,
            "Pending | web=InvalidImageName",
        ),
        case("no image", pod(json!({"containers": [{"name": "web"}]})), fresh(), 0).expect(
            vec![],
            None,
            "Pending | web=InvalidImageName",
        ),
    ]);
}

#[test]
fn pull_failure_then_back_off_then_retry() {
    let p = || simple("nginx:1.25", None);
    let failed = |attempts| ready(vec![("web", not_created(pull_failed(1_000, attempts)))]);
    let again = || vec![pull("web", "nginx:1.25", PullPolicy::IfNotPresent)];
    check(vec![
        case("right after the failure", p(), failed(1), 1_000).expect(
            vec![],
            Some(6_000),
            "Pending | web=ErrImagePull",
        ),
        case("still ErrImagePull", p(), failed(1), 5_999).expect(
            vec![],
            Some(6_000),
            "Pending | web=ErrImagePull",
        ),
        case("then ImagePullBackOff", p(), failed(1), 6_000).expect(
            vec![],
            Some(11_000),
            "Pending | web=ImagePullBackOff",
        ),
        case("retry after 10 s", p(), failed(1), 11_000).expect(
            again(),
            None,
            "Pending | web=ImagePullBackOff",
        ),
        case("second failure waits 20 s", p(), failed(2), 20_999).expect(
            vec![],
            Some(21_000),
            "Pending | web=ImagePullBackOff",
        ),
        case("second failure retried", p(), failed(2), 21_000).expect(
            again(),
            None,
            "Pending | web=ImagePullBackOff",
        ),
        case("sixth failure: capped at 5 min", p(), failed(6), 300_999).expect(
            vec![],
            Some(301_000),
            "Pending | web=ImagePullBackOff",
        ),
        case("many failures: still 5 min", p(), failed(u32::MAX), 301_000).expect(
            again(),
            None,
            "Pending | web=ImagePullBackOff",
        ),
        case(
            "a pull failing during a restart",
            p(),
            {
                let mut r = not_created(pull_failed(1_000, 1));
                r.last_termination = Some(term(1, 500, 100));
                ready(vec![("web", r)])
            },
            2_000,
        )
        .expect(vec![], Some(6_000), "Running | web=ErrImagePull"),
    ]);
    let s = status_of(p(), &failed(1), 1_000);
    let w = s.container_statuses.unwrap()[0].state.clone().unwrap().waiting.unwrap();
    assert_eq!(w.message.as_deref(), Some("manifest unknown"));
    let s = status_of(p(), &failed(1), 7_000);
    let w = s.container_statuses.unwrap()[0].state.clone().unwrap().waiting.unwrap();
    assert_eq!(w.message.as_deref(), Some("Back-off pulling image \"nginx:1.25\""));
    let never = pod(json!({"containers": [{"name": "web", "image": "nginx", "imagePullPolicy": "Never"}]}));
    let s = status_of(never, &failed(1), 1_000);
    let w = s.container_statuses.unwrap()[0].state.clone().unwrap().waiting.unwrap();
    assert_eq!(
        w.message.as_deref(),
        Some("Container image \"nginx\" is not present with pull policy of Never")
    );
}

// ---- init containers ---------------------------------------------------------------------

#[test]
fn init_containers_run_one_at_a_time() {
    let present = || not_created(ImageState::Present);
    let waiting_all =
        "Pending | init a=PodInitializing b=PodInitializing | web=PodInitializing side=PodInitializing";
    check(vec![
        case(
            "first init starts first",
            with_init("Always"),
            ready(vec![("a", present()), ("b", present())]),
            0,
        )
        .expect(vec![start("a", true, 0)], None, waiting_all),
        case("first init pulls first", with_init("Always"), ready(vec![]), 0).expect(
            vec![pull("a", "busybox:1.36", PullPolicy::IfNotPresent)],
            None,
            waiting_all,
        ),
        case(
            "first init running: wait",
            with_init("Always"),
            ready(vec![("a", running(1)), ("b", present())]),
            5,
        )
        .expect(
            vec![],
            None,
            "Pending | init a=running b=PodInitializing | web=PodInitializing side=PodInitializing",
        ),
        case(
            "first init done: second starts",
            with_init("Always"),
            ready(vec![("a", exited(0, 9, 8)), ("b", present())]),
            10,
        )
        .expect(
            vec![start("b", true, 0)],
            None,
            "Pending | init a=exit:0:Completed b=PodInitializing | web=PodInitializing side=PodInitializing",
        ),
        case(
            "all init done: app containers start together",
            with_init("Always"),
            ready(vec![
                ("a", exited(0, 9, 8)),
                ("b", exited(0, 20, 8)),
                ("web", present()),
                ("side", not_created(ImageState::Unknown)),
            ]),
            21,
        )
        .expect(
            vec![start("web", false, 0), pull("side", "nginx:1.25", PullPolicy::IfNotPresent)],
            None,
            "Pending | init a=exit:0:Completed b=exit:0:Completed | web=PodInitializing side=PodInitializing",
        ),
        case(
            "initialized and running",
            with_init("Always"),
            ready(vec![
                ("a", exited(0, 9, 8)),
                ("b", exited(0, 20, 8)),
                ("web", running(30)),
                ("side", running(31)),
            ]),
            40,
        )
        .expect(
            vec![],
            None,
            "Running | init a=exit:0:Completed b=exit:0:Completed | web=running side=running",
        ),
        case(
            "a succeeded init is not rerun under Always",
            with_init("Always"),
            ready(vec![("a", exited(0, 9, 8)), ("b", running(12))]),
            1_000_000,
        )
        .expect(
            vec![],
            None,
            "Pending | init a=exit:0:Completed b=running | web=PodInitializing side=PodInitializing",
        ),
    ]);
}

#[test]
fn failing_init_container_under_each_restart_policy() {
    let obs = || ready(vec![("a", exited(1, 1_000, 500)), ("b", not_created(ImageState::Present))]);
    let looping =
        "Pending | init a=CrashLoopBackOff b=PodInitializing | web=PodInitializing side=PodInitializing";
    check(vec![
        case("Never: the pod fails", with_init("Never"), obs(), 2_000).expect(
            vec![],
            None,
            "Failed | init a=exit:1:Error b=PodInitializing | web=PodInitializing side=PodInitializing",
        ),
        case("Never: and stays failed", with_init("Never"), obs(), 10_000_000).expect(
            vec![],
            None,
            "Failed | init a=exit:1:Error b=PodInitializing | web=PodInitializing side=PodInitializing",
        ),
        case("OnFailure: back-off", with_init("OnFailure"), obs(), 2_000).expect(
            vec![],
            Some(11_000),
            looping,
        ),
        case("OnFailure: restart", with_init("OnFailure"), obs(), 11_000).expect(
            vec![remove("a"), start("a", true, 1)],
            None,
            looping,
        ),
        case("Always: back-off", with_init("Always"), obs(), 2_000).expect(vec![], Some(11_000), looping),
        case("Always: restart", with_init("Always"), obs(), 11_000).expect(
            vec![remove("a"), start("a", true, 1)],
            None,
            looping,
        ),
        case(
            "Always: third failure waits 40 s",
            with_init("Always"),
            ready(vec![("a", step(exited(1, 1_000, 500), 2))]),
            40_000,
        )
        .expect(vec![], Some(41_000), looping),
        case(
            "a later init failing under Never fails the pod too",
            with_init("Never"),
            ready(vec![("a", exited(0, 9, 8)), ("b", exited(2, 20, 8))]),
            30,
        )
        .expect(
            vec![],
            None,
            "Failed | init a=exit:0:Completed b=exit:2:Error | web=PodInitializing side=PodInitializing",
        ),
    ]);
}

// ---- restarts ----------------------------------------------------------------------------

#[test]
fn restart_policies() {
    let one = |code| ready(vec![("web", exited(code, 1_000, 500))]);
    check(vec![
        case("Always, exit 0: restarts", simple("nginx:1.25", Some("Always")), one(0), 2_000).expect(
            vec![],
            Some(11_000),
            "Running | web=CrashLoopBackOff",
        ),
        case("Always, exit 1: restarts", simple("nginx:1.25", Some("Always")), one(1), 11_000).expect(
            vec![remove("web"), start("web", false, 1)],
            None,
            "Running | web=CrashLoopBackOff",
        ),
        case("default policy is Always", simple("nginx:1.25", None), one(0), 11_000).expect(
            vec![remove("web"), start("web", false, 1)],
            None,
            "Running | web=CrashLoopBackOff",
        ),
        case("OnFailure, exit 0: done", simple("nginx:1.25", Some("OnFailure")), one(0), 11_000).expect(
            vec![],
            None,
            "Succeeded | web=exit:0:Completed",
        ),
        case("OnFailure, exit 3: restarts", simple("nginx:1.25", Some("OnFailure")), one(3), 2_000).expect(
            vec![],
            Some(11_000),
            "Running | web=CrashLoopBackOff",
        ),
        case("Never, exit 0: succeeded", simple("nginx:1.25", Some("Never")), one(0), 11_000).expect(
            vec![],
            None,
            "Succeeded | web=exit:0:Completed",
        ),
        case("Never, exit 1: failed", simple("nginx:1.25", Some("Never")), one(1), 11_000).expect(
            vec![],
            None,
            "Failed | web=exit:1:Error",
        ),
        case(
            "Never, one done and one running: running",
            pod(json!({"restartPolicy": "Never", "containers": [
                {"name": "web", "image": "nginx:1.25"}, {"name": "side", "image": "nginx:1.25"}]})),
            ready(vec![("web", exited(1, 1_000, 500)), ("side", running(100))]),
            11_000,
        )
        .expect(vec![], None, "Running | web=exit:1:Error side=running"),
        case(
            "OnFailure, one succeeded and one failing: running",
            pod(json!({"restartPolicy": "OnFailure", "containers": [
                {"name": "web", "image": "nginx:1.25"}, {"name": "side", "image": "nginx:1.25"}]})),
            ready(vec![("web", exited(0, 1_000, 500)), ("side", exited(1, 1_000, 500))]),
            2_000,
        )
        .expect(vec![], Some(11_000), "Running | web=exit:0:Completed side=CrashLoopBackOff"),
        case(
            "a restart under Always pulls again",
            simple("nginx", None),
            ready(vec![("web", exited(1, 1_000, 500))]),
            11_000,
        )
        .expect(
            vec![remove("web"), pull("web", "nginx", PullPolicy::Always)],
            None,
            "Running | web=CrashLoopBackOff",
        ),
        case(
            "removed for a restart, image ready: start",
            simple("nginx:1.25", None),
            ready(vec![(
                "web",
                ContainerRecord {
                    last_termination: Some(term(1, 1_000, 500)),
                    backoff_step: 2,
                    restart_count: 2,
                    image: ImageState::Present,
                    ..Default::default()
                },
            )]),
            50_000,
        )
        .expect(vec![start("web", false, 3)], None, "Running | web=ContainerCreating"),
    ]);
}

#[test]
fn crash_loop_timings() {
    // (step the container was started with, how long it ran, delay, step of the next start)
    let table: &[(u32, u64, u64, u32)] = &[
        (0, 500, 10_000, 1),
        (1, 500, 20_000, 2),
        (2, 500, 40_000, 3),
        (3, 500, 80_000, 4),
        (4, 500, 160_000, 5),
        (5, 500, 300_000, 6),
        (6, 500, 300_000, 7),
        (16, 500, 300_000, 16),
        (u32::MAX, 500, 300_000, 16),
        (5, 599_999, 300_000, 6),
        (5, 600_000, 10_000, 1),
        (16, 3_600_000, 10_000, 1),
    ];
    let mut cases = Vec::new();
    for &(s, ran, delay, next) in table {
        let finished = 1_000_000;
        let obs = ready(vec![("web", step(exited(1, finished, ran), s))]);
        let due = finished + delay;
        let p = || simple("nginx:1.25", None);
        cases.push(case("in back-off", p(), obs.clone(), due - 1).expect(
            vec![],
            Some(due),
            "Running | web=CrashLoopBackOff",
        ));
        cases.push(case("due", p(), obs, due).expect(
            vec![remove("web"), start("web", false, next)],
            None,
            "Running | web=CrashLoopBackOff",
        ));
    }
    check(cases);
}

#[test]
fn crash_loop_status_reads_like_the_kubelet() {
    let mut r = step(exited(137, 1_000, 500), 1);
    r.restart_count = 4;
    r.last_termination = Some(term(1, 100, 50));
    if let ObservedState::Exited(t) = &mut r.state {
        t.signal = Some(9);
    }
    let s = status_of(simple("nginx:1.25", None), &ready(vec![("web", r)]), 2_000);
    let c = &s.container_statuses.unwrap()[0];
    let w = c.state.clone().unwrap().waiting.unwrap();
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        w.message.as_deref(),
        Some("back-off 20s restarting failed container=web pod=web_default(u1)")
    );
    // The run that just ended is the last state, not the one before it.
    let last = c.last_state.clone().unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.signal, last.reason.as_deref()), (137, Some(9), Some("Error")));
    assert_eq!((last.started_at.unwrap(), last.finished_at.unwrap()), (wall(500), wall(1_000)));
    assert_eq!((c.restart_count, c.ready, c.started), (4, false, Some(false)));
    assert_eq!(c.image.as_deref(), Some("nginx:1.25"));

    let capped = step(exited(1, 1_000, 500), 9);
    let s = status_of(simple("nginx:1.25", None), &ready(vec![("web", capped)]), 2_000);
    let w = s.container_statuses.unwrap()[0].state.clone().unwrap().waiting.unwrap();
    assert_eq!(
        w.message.as_deref(),
        Some("back-off 5m0s restarting failed container=web pod=web_default(u1)")
    );
}

#[test]
fn create_failures_back_off() {
    let failed = |attempts| {
        let mut r = rec(ObservedState::CreateFailed {
            message: "no such file".into(),
            since_ms: 1_000,
            attempts,
            config: false,
        });
        r.backoff_step = 3;
        ready(vec![("web", r)])
    };
    let p = || simple("nginx:1.25", None);
    check(vec![
        case("in back-off", p(), failed(1), 5_000).expect(
            vec![],
            Some(11_000),
            "Pending | web=CreateContainerError",
        ),
        case("retry keeps the step", p(), failed(1), 11_000).expect(
            vec![start("web", false, 3)],
            None,
            "Pending | web=CreateContainerError",
        ),
        case("second failure: 20 s", p(), failed(2), 11_000).expect(
            vec![],
            Some(21_000),
            "Pending | web=CreateContainerError",
        ),
        case("under Always the retry pulls again", simple("nginx", None), failed(1), 11_000).expect(
            vec![pull("web", "nginx", PullPolicy::Always)],
            None,
            "Pending | web=CreateContainerError",
        ),
    ]);
    // A configuration error (missing ConfigMap key, runAsNonRoot with a root image) is the
    // kubelet's CreateContainerConfigError, retried on the same schedule.
    let config_failed = {
        let r = rec(ObservedState::CreateFailed {
            message: "configmap \"app\" not found".into(),
            since_ms: 1_000,
            attempts: 1,
            config: true,
        });
        ready(vec![("web", r)])
    };
    check(vec![case("config error", p(), config_failed, 5_000).expect(
        vec![],
        Some(11_000),
        "Pending | web=CreateContainerConfigError",
    )]);
}

// ---- pods no longer desired --------------------------------------------------------------

#[test]
fn undesired_pods_are_stopped_then_removed() {
    let undesired = |sandbox, containers: Vec<(&str, ContainerRecord)>, deleting, grace| {
        let mut op = observed_pod(sandbox, containers);
        op.deleting = deleting;
        op.grace_period_secs = grace;
        Case {
            name: "",
            pod: None,
            observed: Observed { pods: [(UID.to_string(), op)].into() },
            now: 0,
            actions: vec![],
            wake: None,
            status: "",
        }
    };
    let kill = |grace_secs| Action::KillPod { uid: UID.into(), grace_secs };
    let remove_pod = || Action::RemovePod { uid: UID.into() };
    let named = |name, c: Case, actions| Case { name, actions, ..c };
    let creating = rec(ObservedState::Creating { since_ms: 0 });
    check(vec![
        named(
            "running: kill with the default grace",
            undesired(SandboxState::Ready, vec![("web", running(1)), ("side", exited(0, 5, 1))], false, None),
            vec![kill(30)],
        ),
        named(
            "running: kill with the pod's grace",
            undesired(SandboxState::Ready, vec![("web", running(1))], false, Some(5)),
            vec![kill(5)],
        ),
        named(
            "negative grace: none",
            undesired(SandboxState::Ready, vec![("web", running(1))], false, Some(-1)),
            vec![kill(0)],
        ),
        named(
            "being created: kill",
            undesired(SandboxState::Ready, vec![("web", creating)], false, None),
            vec![kill(30)],
        ),
        named(
            "kill in progress: wait",
            undesired(SandboxState::Ready, vec![("web", running(1))], true, None),
            vec![],
        ),
        named(
            "nothing runs: remove",
            undesired(SandboxState::Ready, vec![("web", exited(137, 5, 1))], true, None),
            vec![remove_pod()],
        ),
        named(
            "sandbox only: remove",
            undesired(SandboxState::Ready, vec![], false, None),
            vec![remove_pod()],
        ),
        named(
            "failed sandbox: remove",
            undesired(sandbox_failed(0, 2), vec![], false, None),
            vec![remove_pod()],
        ),
        named("sandbox being created: wait", undesired(SandboxState::Creating, vec![], false, None), vec![]),
    ]);
}

#[test]
fn stray_containers_in_a_desired_pod_are_stopped() {
    let p = pod(
        json!({"terminationGracePeriodSeconds": 7, "containers": [{"name": "web", "image": "nginx:1.25"}]}),
    );
    check(vec![case(
        "stray",
        p,
        ready(vec![("web", running(1)), ("old", running(1)), ("gone", exited(0, 2, 1))]),
        9,
    )
    .expect(
        vec![Action::StopContainer { uid: UID.into(), container: "old".into(), grace_secs: 7 }],
        None,
        "Running | web=running",
    )]);
}

#[test]
fn a_desired_pod_being_killed_gets_no_actions() {
    let mut obs = ready(vec![("web", exited(1, 1_000, 500)), ("old", running(1))]);
    obs.pods.get_mut(UID).unwrap().deleting = true;
    // Nor is a restart shown as pending: the exit stands until the kill is over.
    check(vec![case("deleting", simple("nginx:1.25", None), obs, 20_000).expect(
        vec![],
        None,
        "Running | web=exit:1:Error",
    )]);
}

// ---- adoption, idempotence, several pods -------------------------------------------------

#[test]
fn adoption_everything_running_means_no_actions() {
    let obs = ready(vec![
        ("a", exited(0, 9, 8)),
        ("b", exited(0, 20, 8)),
        ("web", running(30)),
        ("side", running(31)),
    ]);
    for policy in ["Always", "OnFailure", "Never"] {
        let plan = reconcile(&[with_init(policy)], &obs, 99_999_999, NOW_WALL);
        assert_eq!((plan.actions.len(), plan.wake_at_ms), (0, None), "{policy}");
        assert_eq!(plan.statuses[0].1.phase, Some(PodPhase::Running));
    }
}

#[test]
fn same_input_twice_gives_the_same_plan() {
    let desired =
        [simple("nginx", None), named_pod("u2", json!({"containers": [{"name": "x", "image": "y:1"}]}))];
    let mut obs = ready(vec![("web", exited(1, 1_000, 500))]);
    obs.pods.insert("gone".into(), observed_pod(SandboxState::Ready, vec![("z", running(1))]));
    for now in [0, 5_000, 11_000, 400_000] {
        let first = reconcile(&desired, &obs, now, NOW_WALL);
        assert_eq!(first, reconcile(&desired, &obs, now, NOW_WALL), "at {now}");
    }
}

#[test]
fn several_pods() {
    let desired = [
        simple("nginx:1.25", None),
        named_pod("u2", json!({"containers": [{"name": "x", "image": "y:1"}]})),
        // Skipped: no uid, and a repeated uid.
        serde_json::from_value(json!({"metadata": {"name": "nouid"}, "spec": {"containers": []}})).unwrap(),
        named_pod("u2", json!({"containers": []})),
    ];
    let mut obs = ready(vec![("web", exited(1, 1_000, 500))]);
    let mut u2 = observed_pod(SandboxState::Ready, vec![("x", not_created(pull_failed(2_000, 1)))]);
    u2.uid = "u2".into();
    obs.pods.insert("u2".into(), u2);
    obs.pods.insert("gone".into(), observed_pod(SandboxState::Ready, vec![]));
    let plan = reconcile(&desired, &obs, 3_000, NOW_WALL);
    assert_eq!(plan.actions, vec![Action::RemovePod { uid: "gone".into() }]);
    // The pull's ErrImagePull turns into ImagePullBackOff at 7 s, before the restart at 11 s.
    assert_eq!(plan.wake_at_ms, Some(7_000));
    let uids: Vec<&str> = plan.statuses.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(uids, ["u1", "u2"]);
    assert_eq!(summary(&plan.statuses[1].1), "Pending | x=ErrImagePull");
}

// ---- status ------------------------------------------------------------------------------

fn conditions(s: &PodStatus) -> Vec<String> {
    s.conditions
        .iter()
        .flatten()
        .map(|c| {
            let mut line =
                format!("{}={} @{}", c.type_, c.status, c.last_transition_time.clone().unwrap_or_default());
            if let Some(r) = &c.reason {
                line.push_str(&format!(" {r}"));
            }
            if let Some(m) = &c.message {
                line.push_str(&format!(": {m}"));
            }
            line
        })
        .collect()
}

#[test]
fn conditions_read_like_the_kubelet() {
    let running_pod = ready(vec![
        ("a", exited(0, 9, 8)),
        ("b", exited(0, 20, 8)),
        ("web", running(30)),
        ("side", running(31)),
    ]);
    assert_eq!(
        conditions(&status_of(with_init("Always"), &running_pod, 40)),
        [
            "Initialized=True @wall@20",
            "Ready=True @wall@31",
            "ContainersReady=True @wall@31",
            "PodScheduled=True @wall@0",
        ]
    );
    let initializing = ready(vec![("a", running(1))]);
    assert_eq!(
        conditions(&status_of(with_init("Always"), &initializing, 40)),
        [
            "Initialized=False @wall@0 ContainersNotInitialized: containers with incomplete status: [a b]",
            "Ready=False @wall@0 ContainersNotReady: containers with unready status: [web side]",
            "ContainersReady=False @wall@0 ContainersNotReady: containers with unready status: [web side]",
            "PodScheduled=True @wall@0",
        ]
    );
    let done = ready(vec![("web", exited(0, 1_000, 500))]);
    assert_eq!(
        conditions(&status_of(simple("nginx:1.25", Some("Never")), &done, 2_000)),
        [
            "Initialized=True @wall@0",
            "Ready=False @wall@1000 PodCompleted",
            "ContainersReady=False @wall@1000 PodCompleted",
            "PodScheduled=True @wall@0",
        ]
    );
    let failed = ready(vec![("web", exited(2, 1_000, 500))]);
    assert_eq!(
        conditions(&status_of(simple("nginx:1.25", Some("Never")), &failed, 2_000))[1],
        "Ready=False @wall@1000 PodFailed"
    );
    let crashing = ready(vec![("web", exited(2, 1_000, 500))]);
    assert_eq!(
        conditions(&status_of(simple("nginx:1.25", None), &crashing, 2_000))[1],
        "Ready=False @wall@1000 ContainersNotReady: containers with unready status: [web]"
    );
}

#[test]
fn readiness_and_startup_probes() {
    let probed = |probe: &str| {
        pod(
            json!({"containers": [{"name": "web", "image": "nginx:1.25", probe: {"exec": {"command": ["true"]}}}]}),
        )
    };
    let with = |started, ready_| {
        let mut r = running(5);
        r.started = started;
        r.ready = ready_;
        ready(vec![("web", r)])
    };
    let flags = |p: DesiredPod, o: &Observed| {
        let s = status_of(p, o, 10);
        let c = &s.container_statuses.clone().unwrap()[0];
        let cond = s.conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
        (c.started, c.ready, cond.status)
    };
    assert_eq!(flags(simple("nginx:1.25", None), &with(false, false)), (Some(true), true, "True".into()));
    assert_eq!(flags(probed("readinessProbe"), &with(false, false)), (Some(true), false, "False".into()));
    assert_eq!(flags(probed("readinessProbe"), &with(false, true)), (Some(true), true, "True".into()));
    assert_eq!(flags(probed("startupProbe"), &with(false, true)), (Some(false), false, "False".into()));
    assert_eq!(flags(probed("startupProbe"), &with(true, false)), (Some(true), true, "True".into()));
}

#[test]
fn termination_reasons() {
    let reason = |t: Termination| {
        let obs = ready(vec![("web", rec(ObservedState::Exited(t)))]);
        let s = status_of(simple("nginx:1.25", Some("Never")), &obs, 2_000);
        let t = s.container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
        (t.reason.unwrap(), t.message)
    };
    assert_eq!(reason(term(0, 1_000, 1)), ("Completed".into(), None));
    assert_eq!(reason(term(1, 1_000, 1)), ("Error".into(), None));
    assert_eq!(reason(Termination { oom_killed: true, ..term(137, 1_000, 1) }), ("OOMKilled".into(), None));
    let start_error = Termination { error: Some("exec: \"nope\": not found".into()), ..term(128, 1_000, 0) };
    assert_eq!(reason(start_error), ("StartError".into(), Some("exec: \"nope\": not found".into())));
}

#[test]
fn start_time_and_init_ready() {
    let s = status_of(with_init("Always"), &ready(vec![("a", exited(0, 9, 8)), ("b", running(12))]), 20);
    assert_eq!(s.start_time.as_deref(), Some("wall@0"));
    let inits = s.init_container_statuses.unwrap();
    assert_eq!(
        (inits[0].ready, inits[0].started, inits[1].ready, inits[1].started),
        (true, Some(false), false, Some(true))
    );
    assert_eq!(inits[0].last_state, Some(Default::default()));
    // Before the executor has seen the pod, the start is now.
    let s = status_of(simple("nginx:1.25", None), &Observed::default(), 0);
    assert_eq!(s.start_time.as_deref(), Some(NOW_WALL));
    assert_eq!(s.init_container_statuses, None);
}

// ---- odds and ends -----------------------------------------------------------------------

#[test]
fn durations_print_like_go() {
    for (ms, want) in [
        (0, "0s"),
        (500, "500ms"),
        (1_500, "1.5s"),
        (10_000, "10s"),
        (80_000, "1m20s"),
        (160_000, "2m40s"),
        (300_000, "5m0s"),
        (3_600_000, "1h0m0s"),
    ] {
        assert_eq!(go_duration(ms), want);
    }
}

#[test]
fn extreme_inputs_do_not_panic() {
    let t =
        Termination { exit_code: i32::MIN, finished_ms: u64::MAX, ran_ms: u64::MAX, ..Default::default() };
    let records = [
        ContainerRecord {
            state: ObservedState::Exited(t),
            backoff_step: u32::MAX,
            restart_count: u32::MAX,
            ..rec(ObservedState::NotCreated)
        },
        not_created(ImageState::PullFailed {
            message: String::new(),
            since_ms: u64::MAX,
            attempts: u32::MAX,
        }),
        rec(ObservedState::CreateFailed {
            message: String::new(),
            since_ms: u64::MAX,
            attempts: 0,
            config: false,
        }),
    ];
    for r in records {
        for policy in [None, Some("Never"), Some("OnFailure")] {
            for now in [0, u64::MAX] {
                let _ = reconcile(&[simple("nginx", policy)], &ready(vec![("web", r.clone())]), now, "");
            }
        }
    }
    let _ =
        reconcile(&[simple("", None)], &observed(sandbox_failed(u64::MAX, u32::MAX), vec![]), u64::MAX, "");
}

#[test]
fn observed_state_round_trips_through_json() {
    let obs = ready(vec![
        ("a", exited(0, 9, 8)),
        ("b", not_created(pull_failed(1, 2))),
        ("web", running(30)),
        (
            "x",
            rec(ObservedState::CreateFailed { message: "m".into(), since_ms: 1, attempts: 1, config: false }),
        ),
    ]);
    let text = serde_json::to_string(&obs).unwrap();
    assert_eq!(serde_json::from_str::<Observed>(&text).unwrap(), obs);
}
