//! The executor against the recording fake runtime: which calls each action makes and what it
//! records, without root, processes or mounts.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;

use serde_json::json;

use super::fake::{Call, FakeRuntime};
use super::*;
use crate::reconcile::{ContainerRecord, ObservedState, SandboxState, Termination};

struct Env {
    _dir: tempfile::TempDir,
    paths: Paths,
    images: Arc<ImageStore>,
    pulls: Pulls,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(&dir.path().join("state"), &dir.path().join("run"));
    let images = Arc::new(ImageStore::open(&dir.path().join("images")).unwrap());
    Env { _dir: dir, paths, images, pulls: Pulls::new(Default::default(), None) }
}

fn executor<'a>(e: &'a Env, runtime: &'a FakeRuntime) -> Executor<'a> {
    Executor {
        paths: &e.paths,
        images: &e.images,
        runtime,
        node_name: "node1".into(),
        host_ip: None,
        pulls: &e.pulls,
        events: Default::default(),
    }
}

fn desired(spec: serde_json::Value) -> DesiredPod {
    serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "apps", "uid": "u1"}, "spec": spec}),
    )
    .unwrap()
}

fn obs(containers: &[(&str, ObservedState)]) -> ObservedPod {
    ObservedPod {
        namespace: "apps".into(),
        name: "web".into(),
        uid: "u1".into(),
        sandbox: SandboxState::Ready,
        containers: containers
            .iter()
            .map(|(n, s)| (n.to_string(), ContainerRecord { state: s.clone(), ..Default::default() }))
            .collect(),
        ..Default::default()
    }
}

fn reasons(x: &Executor) -> Vec<String> {
    x.events.borrow_mut().take().into_iter().map(|e| e.reason).collect()
}

#[test]
fn a_sandbox_is_created_once_with_the_pods_hostname() {
    let (e, rt) = (env(), FakeRuntime::default());
    let x = executor(&e, &rt);
    let d = desired(json!({"hostname": "h", "containers": [{"name": "c", "image": "busybox"}]}));
    let mut o = ObservedPod { sandbox: SandboxState::Absent, ..obs(&[]) };
    let action = Action::CreateSandbox { uid: "u1".into() };
    x.perform(&action, Some(&d), &mut o, &Desired::default());
    assert_eq!(o.sandbox, SandboxState::Ready);
    // A second request finds the sandbox and creates nothing.
    x.perform(&action, Some(&d), &mut o, &Desired::default());
    assert_eq!(
        *rt.calls.borrow(),
        [Call::CreateSandbox { uid: "u1".into(), hostname: "h".into(), host_network: false }]
    );
}

#[test]
fn a_failed_sandbox_counts_attempts() {
    let e = env();
    let rt = FakeRuntime { sandbox_error: Some("no netns".into()), ..Default::default() };
    let x = executor(&e, &rt);
    let d = desired(json!({"hostNetwork": true, "containers": []}));
    let mut o = ObservedPod { sandbox: SandboxState::Absent, ..obs(&[]) };
    for _ in 0..2 {
        x.perform(&Action::CreateSandbox { uid: "u1".into() }, Some(&d), &mut o, &Desired::default());
    }
    assert!(matches!(&o.sandbox, SandboxState::Failed { message, attempts: 2, .. } if message == "no netns"));
    assert_eq!(
        rt.calls.borrow()[0],
        Call::CreateSandbox { uid: "u1".into(), hostname: "node1".into(), host_network: true }
    );
}

#[test]
fn killing_a_pod_stops_every_container_and_says_so_for_running_ones() {
    let e = env();
    let rt = FakeRuntime { running: [("u1".to_string(), "a".to_string())].into(), ..Default::default() };
    let x = executor(&e, &rt);
    let mut o = obs(&[
        ("a", ObservedState::Running { started_ms: 1, started_wall: String::new() }),
        ("b", ObservedState::NotCreated),
    ]);
    x.perform(&Action::KillPod { uid: "u1".into(), grace_secs: 7 }, None, &mut o, &Desired::default());
    assert!(o.deleting);
    assert_eq!(
        *rt.calls.borrow(),
        [
            Call::Stop { uid: "u1".into(), name: "a".into(), grace_secs: 7 },
            Call::Stop { uid: "u1".into(), name: "b".into(), grace_secs: 7 },
        ]
    );
    assert_eq!(reasons(&x), ["Killing"]);
}

#[test]
fn removals_go_through_the_port() {
    let (e, rt) = (env(), FakeRuntime::default());
    let x = executor(&e, &rt);
    let t = Termination { exit_code: 1, ..Default::default() };
    let mut o = obs(&[("c", ObservedState::Exited(t.clone()))]);
    x.perform(
        &Action::RemoveContainer { uid: "u1".into(), container: "c".into() },
        None,
        &mut o,
        &Desired::default(),
    );
    assert_eq!(o.containers["c"].state, ObservedState::NotCreated);
    assert_eq!(o.containers["c"].last_termination, Some(t));
    x.perform(&Action::RemovePod { uid: "u1".into() }, None, &mut o, &Desired::default());
    assert_eq!(
        *rt.calls.borrow(),
        [Call::RemoveContainer { uid: "u1".into(), name: "c".into() }, Call::RemovePod { uid: "u1".into() }]
    );
}

#[test]
fn a_start_without_its_image_fails_before_any_shim() {
    let (e, rt) = (env(), FakeRuntime::default());
    let x = executor(&e, &rt);
    let d = desired(json!({"containers": [{"name": "c", "image": "busybox:1.36"}]}));
    let mut o = obs(&[("c", ObservedState::NotCreated)]);
    let action =
        Action::StartContainer { uid: "u1".into(), container: "c".into(), init: false, backoff_step: 0 };
    x.perform(&action, Some(&d), &mut o, &Desired::default());
    match &o.containers["c"].state {
        ObservedState::CreateFailed { message, attempts: 1, config: false, .. } => {
            assert!(message.contains("is not in the local store"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(rt.calls.borrow().is_empty());
    assert_eq!(reasons(&x), ["Failed"]);
}

#[test]
fn never_pull_with_a_missing_image_starts_no_pull() {
    let (e, rt) = (env(), FakeRuntime::default());
    let x = executor(&e, &rt);
    let mut o = obs(&[]);
    let action = Action::PullImage {
        uid: "u1".into(),
        container: "c".into(),
        image: "busybox:1.36".into(),
        policy: flotilla_shared::api::PullPolicy::Never,
    };
    x.perform(&action, None, &mut o, &Desired::default());
    assert!(matches!(o.containers["c"].image, crate::reconcile::ImageState::PullFailed { attempts: 1, .. }));
    assert!(e.pulls.idle());
    assert_eq!(reasons(&x), ["ErrImageNeverPull"]);
}
