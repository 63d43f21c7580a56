//! The StatefulSet controller (apps/v1), as Kubernetes' `StatefulSetControl`: replica `i` is the
//! pod `{set}-{i}` with a stable hostname (and `subdomain` = `spec.serviceName`) and its own
//! PersistentVolumeClaims `{template}-{set}-{i}` made from `spec.volumeClaimTemplates`.
//! `OrderedReady` creates pods one at a time in ordinal order and removes surplus pods one at a
//! time from the highest ordinal, each step waiting until the lower replicas are Running and
//! Ready (as in Kubernetes, only the replicas below `spec.replicas` must be Ready for a scale-down
//! step, so a broken surplus pod cannot stall it); `Parallel` does all of it at once. Failed or
//! Succeeded replicas are deleted and so recreated. `RollingUpdate` replaces outdated pods from
//! the highest ordinal down to `partition`, one at a time once every replica is Running and
//! Ready; `OnDelete` only gives new pods the new template. Claims are never deleted (Kubernetes'
//! default `Retain` policy).
//!
//! Left out: ControllerRevision objects and history (revisions are `{set}-{template hash}`, and
//! pods below the partition are recreated from the *current* template, not the old one),
//! `persistentVolumeClaimRetentionPolicy`, `ordinals.start`, `rollingUpdate.maxUnavailable`,
//! in-place identity/label repair of existing pods, `collisionCount` and status conditions.
//! The decision is pure.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use flotilla_shared::api::{
    Kind, ObjectMeta, PersistentVolumeClaim, Pod, PodPhase, PvcVolumeSource, StatefulSet, Volume,
    WorkloadStatus,
};

use super::common::hash;
use super::pods::{self, is_available, is_deleting, is_ready, is_terminal, namespace, phase, value};
use super::{Action, Controller, Lists};

/// Pod label holding the revision a pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// Pod label holding the pod's own name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Pod label holding the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Guard against absurd `spec.replicas` values (far beyond an edge cluster).
const MAX_REPLICAS: i64 = 10_000;

/// The StatefulSet controller's loop: ordinal pods and their claims.
pub struct StatefulSets;

impl Controller for StatefulSets {
    const KIND: Kind = Kind::StatefulSet;
    const WATCHES: &'static [Kind] = &[Kind::StatefulSet, Kind::Pod, Kind::PersistentVolumeClaim];
    const LISTS: &'static [Kind] = &[Kind::Pod, Kind::PersistentVolumeClaim];
    const RESYNC: Duration = Duration::from_secs(5);
    const SOURCE: &'static str = "statefulset-controller";
    type Owner = StatefulSet;

    fn reconcile(sts: &StatefulSet, lists: &Lists, now: i64, _: &mut dyn FnMut() -> String) -> Vec<Action> {
        let ns = namespace(&sts.metadata);
        let claims: Vec<&PersistentVolumeClaim> =
            lists.every::<PersistentVolumeClaim>().filter(|c| namespace(&c.metadata) == ns).collect();
        reconcile(sts, &lists.owned_by(&sts.metadata), &claims, now)
    }
}

/// The ordinal of `pod` if it is named `{set}-{i}` (canonical decimal, no sign or leading zero).
fn ordinal(set: &str, pod: &str) -> Option<i64> {
    let s = pod.strip_prefix(set)?.strip_prefix('-')?;
    let i: i64 = s.parse().ok()?;
    (i >= 0 && i.to_string() == s).then_some(i)
}

fn running_ready(pod: &Pod) -> bool {
    phase(pod) == PodPhase::Running && is_ready(pod) && !is_deleting(pod)
}

fn revision(pod: &Pod) -> &str {
    pod.metadata.labels().get(REVISION_LABEL).map_or("", String::as_str)
}

/// The claim templates that have a name.
fn claim_templates(sts: &StatefulSet) -> Vec<&PersistentVolumeClaim> {
    let list = sts.spec.volume_claim_templates.iter().flatten();
    list.filter(|t| !t.metadata.name().is_empty()).collect()
}

/// The claim of template `t` for the pod `pod_name`.
fn claim_for(sts: &StatefulSet, t: &PersistentVolumeClaim, pod_name: &str) -> PersistentVolumeClaim {
    let mut labels = t.metadata.labels.clone().unwrap_or_default();
    for (k, v) in sts.spec.selector.match_labels.iter().flatten() {
        labels.insert(k.clone(), v.clone());
    }
    PersistentVolumeClaim {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        metadata: ObjectMeta {
            name: Some(format!("{}-{pod_name}", t.metadata.name())),
            namespace: Some(namespace(&sts.metadata).into()),
            labels: Some(labels),
            annotations: t.metadata.annotations.clone(),
            ..ObjectMeta::default()
        },
        spec: t.spec.clone(),
        status: None,
    }
}

/// Create actions (and their events) for the claims of `pod_name` missing from `existing`.
fn missing_claims(sts: &StatefulSet, pod_name: &str, existing: &HashSet<&str>, out: &mut Vec<Action>) {
    for t in claim_templates(sts) {
        let claim = claim_for(sts, t, pod_name);
        let claim_name = claim.metadata.name().to_string();
        if !existing.contains(claim_name.as_str()) {
            out.push(Action::create(Kind::PersistentVolumeClaim, value(&claim)));
            out.push(Action::Event {
                warning: false,
                reason: "SuccessfulCreate",
                message: format!(
                    "create Claim {claim_name} Pod {pod_name} in StatefulSet {} success",
                    sts.metadata.name()
                ),
            });
        }
    }
}

/// Replica `i` of the set at revision `rev`.
fn new_pod(sts: &StatefulSet, i: i64, rev: &str) -> Pod {
    let pod_name = format!("{}-{i}", sts.metadata.name());
    let index = i.to_string();
    let labels = [(REVISION_LABEL, rev), (POD_NAME_LABEL, pod_name.as_str()), (POD_INDEX_LABEL, &index)];
    let mut pod = pods::pod_from_template(&sts.spec.template, &pod_name, sts, &labels);
    let spec = &mut pod.spec;
    spec.hostname = Some(pod_name.clone());
    if let Some(service) = sts.spec.service_name.as_deref().filter(|s| !s.is_empty()) {
        spec.subdomain = Some(service.into());
    }
    for t in claim_templates(sts) {
        let claim_name = format!("{}-{pod_name}", t.metadata.name());
        let volume = Volume {
            name: t.metadata.name().into(),
            persistent_volume_claim: Some(PvcVolumeSource { claim_name, read_only: None }),
            ..Volume::default()
        };
        let volumes = spec.volumes.get_or_insert_default();
        match volumes.iter_mut().find(|v| v.name == t.metadata.name()) {
            Some(v) => *v = volume,
            None => volumes.push(volume),
        }
    }
    pod
}

fn deleted(set: &str, pod: &str) -> [Action; 2] {
    [
        Action::delete(Kind::Pod, pod),
        Action::Event {
            warning: false,
            reason: "SuccessfulDelete",
            message: format!("delete Pod {pod} in StatefulSet {set} successful"),
        },
    ]
}

/// The revision of the set's current template: `{set}-{hash}`, the hash of the template as the
/// store keeps it.
fn update_revision(sts: &StatefulSet) -> String {
    format!("{}-{}", sts.metadata.name(), hash(&value(&sts.spec.template)))
}

/// Decides one round for the StatefulSet `sts`. `pods` are the pods it controls, `claims` all
/// PersistentVolumeClaims of its namespace, `now` the time in Unix seconds.
pub fn reconcile(
    sts: &StatefulSet,
    pods: &[&Pod],
    claims: &[&PersistentVolumeClaim],
    now: i64,
) -> Vec<Action> {
    use flotilla_shared::api::{DaemonSetStrategyType, PodManagementPolicy};
    let set = sts.metadata.name();
    let spec = &sts.spec;
    let want = i64::from(spec.replicas.unwrap_or(1)).clamp(0, MAX_REPLICAS);
    let parallel = spec.pod_management_policy == Some(PodManagementPolicy::Parallel);
    let strategy = spec.update_strategy.as_ref();
    let on_delete = strategy.and_then(|s| s.type_) == Some(DaemonSetStrategyType::OnDelete);
    let partition = strategy.and_then(|s| s.rolling_update.as_ref()?.partition).map_or(0, i64::from).max(0);
    let min_ready = i64::from(spec.min_ready_seconds.unwrap_or(0));
    let update_rev = update_revision(sts);
    let claim_names: HashSet<&str> = claims.iter().map(|c| c.metadata.name()).collect();

    // Replicas by ordinal; everything else is surplus, keyed so the highest ordinal (then pods
    // without a valid ordinal) comes first.
    let mut replicas: BTreeMap<i64, &Pod> = BTreeMap::new();
    let mut surplus: Vec<(i64, &str, &Pod)> = Vec::new();
    for pod in pods.iter().copied() {
        let name = pod.metadata.name();
        match ordinal(set, name) {
            Some(i) if i < want && !replicas.contains_key(&i) => {
                replicas.insert(i, pod);
            }
            o => surplus.push((o.unwrap_or(i64::MAX), name, pod)),
        }
    }
    surplus.sort_by(|a, b| (b.0, b.1).cmp(&(a.0, a.1)));

    let mut actions = Vec::new();
    let mut blocked = false; // OrderedReady must wait: nothing more this round.
    for i in 0..want {
        let Some(pod) = replicas.get(&i) else {
            missing_claims(sts, &format!("{set}-{i}"), &claim_names, &mut actions);
            let pod = new_pod(sts, i, &update_rev);
            let pod_name = pod.metadata.name().to_string();
            actions.push(Action::create(Kind::Pod, value(&pod)));
            actions.push(Action::Event {
                warning: false,
                reason: "SuccessfulCreate",
                message: format!("create Pod {pod_name} in StatefulSet {set} successful"),
            });
            blocked = !parallel;
            if blocked {
                break;
            }
            continue;
        };
        let pod_name = pod.metadata.name();
        if is_terminal(pod) && !is_deleting(pod) {
            let (warning, reason, what) = match phase(pod) {
                PodPhase::Failed => (true, "RecreatingFailedPod", "failed"),
                _ => (false, "RecreatingTerminatedPod", "terminated"),
            };
            let message =
                format!("StatefulSet {}/{set} is recreating {what} Pod {pod_name}", namespace(&sts.metadata));
            actions.push(Action::Event { warning, reason, message });
            actions.extend(deleted(set, pod_name));
        } else if phase(pod) == PodPhase::Pending && !is_deleting(pod) {
            missing_claims(sts, pod_name, &claim_names, &mut actions);
        }
        if !parallel && !running_ready(pod) {
            blocked = true;
            break;
        }
    }

    if !blocked {
        if parallel {
            for (_, pod_name, pod) in &surplus {
                if !is_deleting(pod) {
                    actions.extend(deleted(set, pod_name));
                }
            }
        } else if let Some((_, pod_name, pod)) = surplus.first() {
            // Every replica below is Running and Ready here; wait for a pod already going away.
            if !is_deleting(pod) {
                actions.extend(deleted(set, pod_name));
            }
        }
    }

    // Scaling comes before updates: roll only a complete, healthy set.
    let all_ready = (0..want).all(|i| replicas.get(&i).is_some_and(|p| running_ready(p)));
    if !on_delete && actions.is_empty() && surplus.is_empty() && all_ready {
        let outdated = replicas.range(partition..).rev().find(|(_, p)| revision(p) != update_rev);
        if let Some((_, pod)) = outdated {
            actions.extend(deleted(set, pod.metadata.name()));
        }
    }

    let live: Vec<&Pod> = pods.iter().copied().filter(|p| !is_deleting(p)).collect();
    let count = |rev: &str| live.iter().filter(|p| revision(p) == rev).count() as i64;
    let total = pods.len() as i64;
    let ready = pods.iter().filter(|p| running_ready(p)).count() as i64;
    let available =
        pods.iter().filter(|p| running_ready(p) && is_available(p, min_ready, now)).count() as i64;
    let updated = count(&update_rev);
    let old_current = sts.status.as_ref().and_then(|s| s.current_revision.as_deref()).unwrap_or_default();
    let current_rev = if (total == want && updated == want && ready == want) || old_current.is_empty() {
        update_rev.as_str()
    } else {
        old_current
    };
    let status = WorkloadStatus {
        observed_generation: Some(pods::generation(&sts.metadata)),
        replicas: Some(total),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(count(current_rev)),
        updated_replicas: Some(updated),
        current_revision: Some(current_rev.into()),
        update_revision: Some(update_rev.clone()),
        ..WorkloadStatus::default()
    };
    if sts.status.as_ref() != Some(&status) {
        actions.push(Action::UpdateStatus(value(&status)));
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::common::name;
    use crate::controllers::workloads::parse;
    use serde_json::{json, Value};

    /// The controller run on JSON fixtures, parsed as the loop parses stored objects.
    fn reconcile(s: &Value, pods: &[Value], claims: &[Value], now: i64) -> Vec<Action> {
        let pods: Vec<Pod> = pods.iter().map(|p| parse(Kind::Pod, p).expect("a pod")).collect();
        let claims: Vec<PersistentVolumeClaim> =
            claims.iter().map(|c| parse(Kind::PersistentVolumeClaim, c).expect("a claim")).collect();
        let (pods, claims): (Vec<&Pod>, Vec<&PersistentVolumeClaim>) =
            (pods.iter().collect(), claims.iter().collect());
        super::reconcile(&sts_of(s), &pods, &claims, now)
    }

    fn sts_of(s: &Value) -> StatefulSet {
        parse(Kind::StatefulSet, s).expect("a StatefulSet")
    }

    fn sts(replicas: i64, extra: Value) -> Value {
        let mut s = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "edge", "uid": "u1", "generation": 2},
            "spec": {"replicas": replicas, "serviceName": "db-svc",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "c", "image": "pg:1"}]}}}});
        if let (Some(spec), Some(extra)) = (s["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        s
    }

    /// The pod the controller creates for ordinal `i`, in phase `phase` (Ready when Running).
    fn pod(s: &Value, i: i64, phase: &str) -> Value {
        let s = sts_of(s);
        let mut p = value(&new_pod(&s, i, &update_revision(&s)));
        p["status"] = json!({"phase": phase, "conditions": [{"type": "Ready", "status":
            if phase == "Running" { "True" } else { "False" }}]});
        p
    }

    /// Names of created pods, deleted pods and created claims, in order.
    fn check(actions: &[Action]) -> (Vec<String>, Vec<String>, Vec<String>) {
        let (mut c, mut d, mut cl) = (vec![], vec![], vec![]);
        for a in actions {
            match a {
                Action::Create { kind: Kind::Pod, object: p } => c.push(name(p).to_string()),
                Action::Delete { name: n, .. } => d.push(n.clone()),
                Action::Create { kind: Kind::PersistentVolumeClaim, object: p } => {
                    cl.push(name(p).to_string())
                }
                _ => {}
            }
        }
        (c, d, cl)
    }

    fn created(actions: &[Action]) -> Vec<&Value> {
        actions
            .iter()
            .filter_map(
                |a| if let Action::Create { kind: Kind::Pod, object: p } = a { Some(p) } else { None },
            )
            .collect()
    }

    /// Runs reconcile and puts its status on the set, as the hub would.
    fn settle(s: &mut Value, pods: &[Value]) -> Vec<Action> {
        let actions = reconcile(s, pods, &[], 0);
        for a in &actions {
            if let Action::UpdateStatus(st) = a {
                s["status"] = st.clone();
            }
        }
        actions
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let s = sts(3, json!({}));
        let a = reconcile(&s, &[], &[], 0);
        assert_eq!(check(&a).0, ["db-0"]);
        assert!(a.contains(&Action::Event {
            warning: false,
            reason: "SuccessfulCreate",
            message: "create Pod db-0 in StatefulSet db successful".into()
        }));
        assert_eq!(check(&reconcile(&s, &[pod(&s, 0, "Pending")], &[], 0)), (vec![], vec![], vec![]));
        assert_eq!(check(&reconcile(&s, &[pod(&s, 0, "Running")], &[], 0)).0, ["db-1"]);
        let two = [pod(&s, 0, "Running"), pod(&s, 1, "Running")];
        assert_eq!(check(&reconcile(&s, &two, &[], 0)).0, ["db-2"]);
        // A missing lower ordinal comes back first.
        assert_eq!(check(&reconcile(&s, &[pod(&s, 1, "Running")], &[], 0)).0, ["db-0"]);
    }

    #[test]
    fn parallel_creates_all_at_once() {
        let s = sts(3, json!({"podManagementPolicy": "Parallel"}));
        assert_eq!(check(&reconcile(&s, &[pod(&s, 1, "Pending")], &[], 0)).0, ["db-0", "db-2"]);
    }

    #[test]
    fn pods_get_identity_labels_and_owner() {
        let s = sts(1, json!({}));
        let a = reconcile(&s, &[], &[], 0);
        let p = created(&a)[0];
        assert_eq!(p["spec"]["hostname"], "db-0");
        assert_eq!(p["spec"]["subdomain"], "db-svc");
        assert_eq!(p["metadata"]["labels"][POD_NAME_LABEL], "db-0");
        assert_eq!(p["metadata"]["labels"][POD_INDEX_LABEL], "0");
        assert_eq!(p["metadata"]["labels"]["app"], "db");
        assert_eq!(p["metadata"]["labels"][REVISION_LABEL], format!("db-{}", hash(&s["spec"]["template"])));
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "u1");
        let mut bare = s.clone();
        bare["spec"]["serviceName"] = Value::Null;
        assert!(created(&reconcile(&bare, &[], &[], 0))[0]["spec"].get("subdomain").is_none());
    }

    #[test]
    fn claims_are_created_and_mounted() {
        let t = json!({"metadata": {"name": "data", "labels": {"tier": "disk"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        let mut s = sts(2, json!({"podManagementPolicy": "Parallel", "volumeClaimTemplates": [t]}));
        s["spec"]["template"]["spec"]["volumes"] =
            json!([{"name": "data", "emptyDir": {}}, {"name": "cfg", "emptyDir": {}}]);
        let existing = [json!({"metadata": {"name": "data-db-1", "namespace": "edge"}, "spec": {}})];
        let a = reconcile(&s, &[], &existing, 0);
        assert_eq!(check(&a), (vec!["db-0".into(), "db-1".into()], vec![], vec!["data-db-0".into()]));
        assert!(
            matches!(&a[0], Action::Create { kind: Kind::PersistentVolumeClaim, .. }),
            "claim before pod"
        );
        let Action::Create { kind: Kind::PersistentVolumeClaim, object: c } = &a[0] else { unreachable!() };
        assert_eq!(c["metadata"]["labels"], json!({"tier": "disk", "app": "db"}));
        assert_eq!(c["metadata"]["namespace"], "edge");
        assert_eq!(c["spec"], t["spec"]);
        assert!(c["metadata"].get("ownerReferences").is_none());
        assert!(a.contains(&Action::Event {
            warning: false,
            reason: "SuccessfulCreate",
            message: "create Claim data-db-0 Pod db-0 in StatefulSet db success".into()
        }));
        let vols = &created(&a)[1]["spec"]["volumes"];
        assert_eq!(
            *vols,
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-1"}},
                   {"name": "cfg", "emptyDir": {}}])
        );
        // A pending pod whose claim went missing gets it again; a running one is left alone.
        assert_eq!(check(&reconcile(&s, &[pod(&s, 0, "Pending")], &existing, 0)).2, ["data-db-0"]);
        let both = [pod(&s, 0, "Running"), pod(&s, 1, "Running")];
        assert_eq!(check(&reconcile(&s, &both, &existing, 0)), (vec![], vec![], vec![]));
    }

    #[test]
    fn scale_down_highest_first_waiting_for_readiness() {
        let s = sts(1, json!({}));
        let all: Vec<Value> = (0..3).map(|i| pod(&s, i, "Running")).collect();
        let a = reconcile(&s, &all, &[], 0);
        assert_eq!(check(&a).1, ["db-2"]);
        assert!(a.contains(&Action::Event {
            warning: false,
            reason: "SuccessfulDelete",
            message: "delete Pod db-2 in StatefulSet db successful".into()
        }));
        assert_eq!(check(&reconcile(&s, &all[..2], &[], 0)).1, ["db-1"]);
        let unready = [pod(&s, 0, "Pending"), all[1].clone()];
        assert_eq!(check(&reconcile(&s, &unready, &[], 0)).1, Vec::<String>::new());
        // Pods with no valid ordinal are surplus too.
        let mut junk = all[0].clone();
        junk["metadata"]["name"] = "db-01".into();
        assert_eq!(check(&reconcile(&s, &[all[0].clone(), junk], &[], 0)).1, ["db-01"]);
        // Parallel removes all surplus at once.
        let p = sts(1, json!({"podManagementPolicy": "Parallel"}));
        assert_eq!(check(&reconcile(&p, &all, &[], 0)).1, ["db-2", "db-1"]);
    }

    #[test]
    fn failed_pod_is_deleted_for_recreation() {
        let s = sts(3, json!({}));
        let pods = [pod(&s, 0, "Running"), pod(&s, 1, "Failed"), pod(&s, 2, "Running")];
        let a = reconcile(&s, &pods, &[], 0);
        assert_eq!(check(&a), (vec![], vec!["db-1".into()], vec![]));
        assert!(a.contains(&Action::Event {
            warning: true,
            reason: "RecreatingFailedPod",
            message: "StatefulSet edge/db is recreating failed Pod db-1".into()
        }));
        let a = reconcile(&s, &[pods[0].clone(), pods[2].clone()], &[], 0);
        assert_eq!(check(&a).0, ["db-1"]);
    }

    #[test]
    fn rolling_update_from_highest_to_partition() {
        let old = sts(3, json!({"updateStrategy": {"rollingUpdate": {"partition": 1}}}));
        let mut s = old.clone();
        s["spec"]["template"]["spec"]["containers"][0]["image"] = "pg:2".into();
        let mut pods: Vec<Value> = (0..3).map(|i| pod(&old, i, "Running")).collect();
        assert_eq!(check(&reconcile(&s, &pods, &[], 0)).1, ["db-2"]);
        // Recreated with the new template, not Ready yet: wait.
        pods[2] = pod(&s, 2, "Pending");
        assert_eq!(check(&reconcile(&s, &pods, &[], 0)), (vec![], vec![], vec![]));
        pods[2] = pod(&s, 2, "Running");
        assert_eq!(check(&reconcile(&s, &pods, &[], 0)).1, ["db-1"]);
        pods[1] = pod(&s, 1, "Running");
        // Stops at the partition.
        assert_eq!(check(&reconcile(&s, &pods, &[], 0)), (vec![], vec![], vec![]));
        // Any unready replica holds the update.
        pods[1] = pod(&old, 1, "Running");
        pods[0] = pod(&old, 0, "Pending");
        assert_eq!(check(&reconcile(&s, &pods, &[], 0)), (vec![], vec![], vec![]));
    }

    #[test]
    fn on_delete_never_deletes_but_recreates_new() {
        let old = sts(2, json!({"updateStrategy": {"type": "OnDelete"}}));
        let mut s = old.clone();
        s["spec"]["template"]["spec"]["containers"][0]["image"] = "pg:2".into();
        let pods: Vec<Value> = (0..2).map(|i| pod(&old, i, "Running")).collect();
        assert_eq!(check(&reconcile(&s, &pods, &[], 0)), (vec![], vec![], vec![]));
        let a = reconcile(&s, &pods[..1], &[], 0);
        let rev = format!("db-{}", hash(&s["spec"]["template"]));
        assert_eq!(created(&a)[0]["metadata"]["labels"][REVISION_LABEL], rev);
    }

    #[test]
    fn status_tracks_revisions_and_steady_state_is_quiet() {
        let old = sts(2, json!({"minReadySeconds": 10}));
        let mut s = old.clone();
        let pods: Vec<Value> = (0..2).map(|i| pod(&old, i, "Running")).collect();
        settle(&mut s, &pods);
        assert!(settle(&mut s, &pods).is_empty());
        let old_rev = format!("db-{}", hash(&old["spec"]["template"]));
        assert_eq!(s["status"]["currentRevision"], old_rev);
        assert_eq!(s["status"]["readyReplicas"], 2);
        assert_eq!(s["status"]["availableReplicas"], 2);
        assert_eq!(s["status"]["observedGeneration"], 2);
        s["spec"]["template"]["spec"]["containers"][0]["image"] = "pg:2".into();
        let updated = s.clone();
        let new = |i| pod(&updated, i, "Running");
        let half = [pods[0].clone(), new(1)];
        settle(&mut s, &half);
        assert_eq!(s["status"]["currentRevision"], old_rev);
        assert_eq!(
            (&s["status"]["currentReplicas"], &s["status"]["updatedReplicas"]),
            (&json!(1), &json!(1))
        );
        let done = [new(0), new(1)];
        settle(&mut s, &done);
        assert_eq!(s["status"]["currentRevision"], s["status"]["updateRevision"]);
        assert_eq!(s["status"]["currentReplicas"], 2);
        assert!(settle(&mut s, &done).is_empty());
    }

    #[test]
    fn garbage_input_does_not_panic() {
        // Garbage is refused at the loop's edge (logged and skipped).
        let weird = [
            json!(null),
            json!({"metadata": {"name": 5}}),
            json!({"metadata": {"name": "db-x"}, "status": "up"}),
        ];
        for w in &weird {
            assert!(parse::<Pod>(Kind::Pod, w).is_none(), "{w}");
            assert!(parse::<PersistentVolumeClaim>(Kind::PersistentVolumeClaim, w).is_none(), "{w}");
        }
        for set in [
            json!(null),
            json!({"spec": "x"}),
            json!({"metadata": {"name": "db"}, "spec": {"replicas": -3, "template": {"spec": 7}}}),
            json!({"metadata": {"name": "db"}, "spec": {"replicas": i64::MAX, "podManagementPolicy": 1,
                "volumeClaimTemplates": [{"metadata": {"name": "d", "labels": 3}, "spec": []}, 4],
                "template": {"spec": {"volumes": "no"}, "metadata": {"labels": []}}}}),
        ] {
            assert!(parse::<StatefulSet>(Kind::StatefulSet, &set).is_none(), "{set}");
        }
        // What parses does not panic: odd names, a negative count, a clock before the epoch.
        let mut s = sts(2, json!({}));
        let odd = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db-99999999999999999999999"},
            "spec": {"containers": []}});
        let _ = reconcile(&s, std::slice::from_ref(&odd), &[], -1);
        s["spec"]["replicas"] = (-3).into();
        let _ = reconcile(&s, &[odd], &[], -1);
    }
}
