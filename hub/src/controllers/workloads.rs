//! The workload controllers' loops: each lists what it needs, asks its pure core
//! (`deployment`, `replicaset`, `daemonset`, `job`, `cronjob`, `statefulset`) what to do per
//! object, and performs it. They run on every change of the kinds they watch and on a resync, so
//! a write that failed (a conflict, a race with a user) is simply decided again next round.
//! The garbage collector deletes objects whose controller is gone.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use flotilla_shared::api::{Kind, Node, Pod};

use super::common::{self, controller_uid, name, namespace, uid};
use super::{cronjob, daemonset, deployment, job, list, replicaset, statefulset, suffix, Event, Rounds};
use crate::scheduler::{self, NodeView};
use crate::store::objects::Mode;
use crate::store::{EventRecord, Store, WriteOp};

/// One write a controller asks for.
enum Write {
    Create(Kind, Value),
    Update(Kind, Value),
    Delete(Kind, String),
    /// The owner's new status.
    Status(Value),
    /// Delete the owner itself (and, through ownerReferences, what it owns).
    DeleteOwner,
    Event(Event),
}

/// Performs one owner's writes: claims first (a pod's claim exists before the scheduler sees
/// the pod), then creates, updates and deletes together, then the status, then the events
/// (about the owner).
async fn perform(store: &Store, owner_kind: Kind, owner: &Value, source: &str, mut writes: Vec<Write>) {
    let ns = namespace(owner).to_string();
    let claims: Vec<Write> = {
        let (claims, rest) =
            writes.into_iter().partition(|w| matches!(w, Write::Create(Kind::PersistentVolumeClaim, _)));
        writes = rest;
        claims
    };
    for w in claims {
        if let Write::Create(kind, object) = w {
            if let Err(e) = store.write(WriteOp::Put { kind, object, mode: Mode::Create }, false).await {
                tracing::debug!(controller = source, error = %e, "claim refused (decided again next round)");
            }
        }
    }
    let mut changes = Vec::new();
    let mut status = None;
    let mut events = Vec::new();
    for w in writes {
        let op = match w {
            Write::Create(kind, object) => WriteOp::Put { kind, object, mode: Mode::Create },
            Write::Update(kind, object) => WriteOp::Put { kind, object, mode: Mode::Update },
            Write::Delete(kind, name) => WriteOp::Delete { kind, namespace: ns.clone(), name },
            Write::DeleteOwner => {
                WriteOp::Delete { kind: owner_kind, namespace: ns.clone(), name: name(owner).to_string() }
            }
            Write::Status(s) => {
                status = Some(s);
                continue;
            }
            Write::Event(e) => {
                events.push(e);
                continue;
            }
        };
        changes.push(async move {
            if let Err(e) = store.write(op, false).await {
                tracing::debug!(controller = source, error = %e, "write refused (decided again next round)");
            }
        });
    }
    futures_util::future::join_all(changes).await;
    if let Some(s) = status {
        let mut obj = owner.clone();
        obj["status"] = s;
        if let Err(e) =
            store.write(WriteOp::Put { kind: owner_kind, object: obj, mode: Mode::Status }, false).await
        {
            tracing::debug!(controller = source, error = %e, "status write refused (decided again next round)");
        }
    }
    for e in events {
        record(store, owner_kind, owner, &e, source).await;
    }
}

/// Records an event about any object.
pub(super) async fn record(store: &Store, kind: Kind, object: &Value, e: &Event, source: &str) {
    let time = crate::nodes::now_rfc3339();
    let ev = EventRecord {
        namespace: namespace(object).to_string(),
        kind: kind.info().name.into(),
        name: name(object).to_string(),
        uid: uid(object).to_string(),
        type_: if e.warning { "Warning" } else { "Normal" }.into(),
        reason: e.reason.into(),
        message: e.message.clone(),
        source: source.into(),
        count: 1,
        first_time: time.clone(),
        last_time: time,
    };
    if let Err(err) = store.write(WriteOp::Event(ev), false).await {
        tracing::warn!(object = name(object), error = %err, "recording an event");
    }
}

/// Objects grouped by the uid of their controller.
fn by_controller(objects: &[Value]) -> HashMap<&str, Vec<Value>> {
    let mut m: HashMap<&str, Vec<Value>> = HashMap::new();
    for o in objects {
        if let Some(u) = controller_uid(o) {
            m.entry(u).or_default().push(o.clone());
        }
    }
    m
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn owned<'a>(index: &'a HashMap<&str, Vec<Value>>, owner: &Value) -> &'a [Value] {
    index.get(uid(owner)).map_or(&[], Vec::as_slice)
}

/// Deployments: ReplicaSets per revision (`deployment`).
pub(super) async fn deployments(store: Store) {
    let mut rounds = Rounds::new(&store, Duration::from_secs(5), &[Kind::Deployment, Kind::ReplicaSet]);
    while rounds.next().await {
        let deploys = list(&store, Kind::Deployment).await;
        if deploys.is_empty() {
            continue;
        }
        let (rses, pods) = (list(&store, Kind::ReplicaSet).await, list(&store, Kind::Pod).await);
        let rs_index = by_controller(&rses);
        let pod_index = by_controller(&pods);
        for d in &deploys {
            let mine = owned(&rs_index, d);
            let my_pods: Vec<Value> =
                mine.iter().flat_map(|rs| owned(&pod_index, rs).iter().cloned()).collect();
            let actions = deployment::reconcile(d, mine, &my_pods, now());
            let mut writes: Vec<Write> =
                deployment::events(&actions, mine).into_iter().map(Write::Event).collect();
            // Pods an earlier hub's Deployment controller owned directly: ReplicaSets replace them.
            for p in owned(&pod_index, d) {
                writes.push(Write::Delete(Kind::Pod, name(p).to_string()));
            }
            writes.extend(actions.into_iter().map(|a| match a {
                deployment::Action::Create(rs) => Write::Create(Kind::ReplicaSet, rs),
                deployment::Action::Update(rs) => Write::Update(Kind::ReplicaSet, rs),
                deployment::Action::Delete(n) => Write::Delete(Kind::ReplicaSet, n),
                deployment::Action::Status(s) => Write::Status(s),
                deployment::Action::Event(e) => Write::Event(e),
            }));
            perform(&store, Kind::Deployment, d, "deployment-controller", writes).await;
        }
    }
}

/// ReplicaSets: their pods (`replicaset`).
pub(super) async fn replicasets(store: Store) {
    let mut rounds = Rounds::new(&store, Duration::from_secs(5), &[Kind::ReplicaSet, Kind::Pod]);
    while rounds.next().await {
        let rses = list(&store, Kind::ReplicaSet).await;
        if rses.is_empty() {
            continue;
        }
        let pods = list(&store, Kind::Pod).await;
        let index = by_controller(&pods);
        for rs in &rses {
            let writes = replicaset::reconcile(rs, owned(&index, rs), now(), suffix)
                .into_iter()
                .map(|a| match a {
                    replicaset::Action::Create(p) => Write::Create(Kind::Pod, p),
                    replicaset::Action::Delete(n) => Write::Delete(Kind::Pod, n),
                    replicaset::Action::Status(s) => Write::Status(s),
                    replicaset::Action::Event(e) => Write::Event(e),
                })
                .collect();
            perform(&store, Kind::ReplicaSet, rs, "replicaset-controller", writes).await;
        }
    }
}

/// The nodes a DaemonSet's pods belong on; `running` are the nodes that already run one.
fn eligible_nodes(ds: &Value, nodes: &[NodeView], running: &HashSet<&str>) -> Vec<String> {
    let mut template = ds.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    if !template.is_object() {
        return Vec::new();
    }
    template["spec"]["tolerations"] = daemonset::pod_tolerations(&template);
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({})),
        "spec": template.get("spec").cloned().unwrap_or_else(|| serde_json::json!({}))});
    let Ok(pod) = serde_json::from_value::<Pod>(pod) else { return Vec::new() };
    nodes
        .iter()
        .filter(|n| scheduler::daemon_fits(&pod, n, running.contains(n.name.as_str())))
        .map(|n| n.name.clone())
        .collect()
}

/// DaemonSets: one pod per eligible node (`daemonset`), also on nodes that join later.
pub(super) async fn daemonsets(store: Store) {
    let mut rounds = Rounds::new(&store, Duration::from_secs(5), &[Kind::DaemonSet, Kind::Pod, Kind::Node]);
    while rounds.next().await {
        let sets = list(&store, Kind::DaemonSet).await;
        if sets.is_empty() {
            continue;
        }
        let (pods, nodes) = (list(&store, Kind::Pod).await, list(&store, Kind::Node).await);
        let views: Vec<NodeView> = nodes
            .iter()
            .filter_map(|n| serde_json::from_value::<Node>(n.clone()).ok())
            .map(|n| NodeView::from_node(&n))
            .collect();
        let index = by_controller(&pods);
        for ds in &sets {
            let running: HashSet<&str> = owned(&index, ds).iter().filter_map(common::node_of).collect();
            let eligible = eligible_nodes(ds, &views, &running);
            let writes = daemonset::reconcile(ds, owned(&index, ds), &eligible, now(), suffix)
                .into_iter()
                .map(|a| match a {
                    daemonset::Action::Create(p) => Write::Create(Kind::Pod, p),
                    daemonset::Action::Delete(n) => Write::Delete(Kind::Pod, n),
                    daemonset::Action::Status(s) => Write::Status(s),
                    daemonset::Action::Event { warning, reason, message } => {
                        Write::Event(Event { warning, reason, message })
                    }
                })
                .collect();
            perform(&store, Kind::DaemonSet, ds, "daemonset-controller", writes).await;
        }
    }
}

/// Jobs: pods to completion (`job`); resynced every 2 s for back-off and deadlines.
pub(super) async fn jobs(store: Store) {
    let mut rounds = Rounds::new(&store, Duration::from_secs(2), &[Kind::Job, Kind::Pod]);
    while rounds.next().await {
        let jobs = list(&store, Kind::Job).await;
        if jobs.is_empty() {
            continue;
        }
        let pods = list(&store, Kind::Pod).await;
        let index = by_controller(&pods);
        for j in &jobs {
            let writes = job::reconcile(j, owned(&index, j), now(), suffix)
                .into_iter()
                .map(|a| match a {
                    job::Action::Create(p) => Write::Create(Kind::Pod, p),
                    job::Action::Delete(n) => Write::Delete(Kind::Pod, n),
                    job::Action::Status(s) => Write::Status(s),
                    job::Action::Event { warning, reason, message } => {
                        Write::Event(Event { warning, reason, message })
                    }
                    job::Action::DeleteJob => Write::DeleteOwner,
                })
                .collect();
            perform(&store, Kind::Job, j, "job-controller", writes).await;
        }
    }
}

/// CronJobs: Jobs on a schedule (`cronjob`); checked every 5 s.
pub(super) async fn cronjobs(store: Store) {
    let mut rounds = Rounds::new(&store, Duration::from_secs(5), &[Kind::CronJob, Kind::Job]);
    while rounds.next().await {
        let crons = list(&store, Kind::CronJob).await;
        if crons.is_empty() {
            continue;
        }
        let jobs = list(&store, Kind::Job).await;
        let index = by_controller(&jobs);
        for c in &crons {
            let writes = cronjob::reconcile(c, owned(&index, c), now())
                .into_iter()
                .map(|a| match a {
                    cronjob::Action::CreateJob(j) => Write::Create(Kind::Job, j),
                    cronjob::Action::DeleteJob(n) => Write::Delete(Kind::Job, n),
                    cronjob::Action::Status(s) => Write::Status(s),
                    cronjob::Action::Event { warning, reason, message } => {
                        Write::Event(Event { warning, reason, message })
                    }
                })
                .collect();
            perform(&store, Kind::CronJob, c, "cronjob-controller", writes).await;
        }
    }
}

/// StatefulSets: ordinal pods and their claims (`statefulset`).
pub(super) async fn statefulsets(store: Store) {
    let kinds = [Kind::StatefulSet, Kind::Pod, Kind::PersistentVolumeClaim];
    let mut rounds = Rounds::new(&store, Duration::from_secs(5), &kinds);
    while rounds.next().await {
        let sets = list(&store, Kind::StatefulSet).await;
        if sets.is_empty() {
            continue;
        }
        let (pods, claims) = (list(&store, Kind::Pod).await, list(&store, Kind::PersistentVolumeClaim).await);
        let index = by_controller(&pods);
        for s in &sets {
            let ns_claims: Vec<Value> =
                claims.iter().filter(|c| namespace(c) == namespace(s)).cloned().collect();
            let writes = statefulset::reconcile(s, owned(&index, s), &ns_claims, now())
                .into_iter()
                .map(|a| match a {
                    statefulset::Action::CreatePod(p) => Write::Create(Kind::Pod, p),
                    statefulset::Action::DeletePod(n) => Write::Delete(Kind::Pod, n),
                    statefulset::Action::CreateClaim(c) => Write::Create(Kind::PersistentVolumeClaim, c),
                    statefulset::Action::Status(st) => Write::Status(st),
                    statefulset::Action::Event { warning, reason, message } => {
                        Write::Event(Event { warning, reason, message })
                    }
                })
                .collect();
            perform(&store, Kind::StatefulSet, s, "statefulset-controller", writes).await;
        }
    }
}

/// Kinds whose objects controllers own, and the kinds that own them.
const DEPENDENTS: &[Kind] = &[Kind::Pod, Kind::ReplicaSet, Kind::Job];
const OWNERS: &[Kind] =
    &[Kind::Deployment, Kind::ReplicaSet, Kind::DaemonSet, Kind::StatefulSet, Kind::Job, Kind::CronJob];

/// The dependents (kind, object) all of whose owners are workloads that no longer exist.
/// Objects owned by anything else (another kind, another system) are never garbage here.
fn orphans<'a>(dependents: &'a [(Kind, Value)], owner_uids: &HashSet<&str>) -> Vec<&'a (Kind, Value)> {
    dependents
        .iter()
        .filter(|(_, o)| {
            let refs = o.pointer("/metadata/ownerReferences").and_then(Value::as_array);
            refs.is_some_and(|refs| {
                !refs.is_empty()
                    && refs.iter().all(|r| {
                        r["kind"].as_str().and_then(Kind::from_kind_name).is_some_and(|k| OWNERS.contains(&k))
                            && !r["uid"].as_str().is_some_and(|u| owner_uids.contains(u))
                    })
            })
        })
        .collect()
}

/// The garbage collector: deleting an owner deletes what it owns (the store cascades through
/// ownerReferences); this sweep catches what a controller created while its owner was being
/// deleted. An object goes when it was an orphan in two sweeps in a row (10 s apart), so an
/// owner created between two lists of one sweep does not cost its dependents.
pub(super) async fn garbage_collector(store: Store) {
    let mut interval = tokio::time::interval(Duration::from_secs(10));
    let mut suspects: HashSet<String> = HashSet::new();
    loop {
        interval.tick().await;
        // Dependents first: an owner listed after them is at least as new.
        let mut dependents = Vec::new();
        for kind in DEPENDENTS {
            dependents.extend(list(&store, *kind).await.into_iter().map(|o| (*kind, o)));
        }
        let mut owners = Vec::new();
        for kind in OWNERS {
            owners.extend(list(&store, *kind).await);
        }
        let owner_uids: HashSet<&str> = owners.iter().map(uid).collect();
        let found = orphans(&dependents, &owner_uids);
        let mut next = HashSet::new();
        for (kind, o) in found {
            next.insert(uid(o).to_string());
            if !suspects.contains(uid(o)) {
                continue;
            }
            tracing::info!(kind = %kind, namespace = namespace(o), name = name(o), "deleting an orphan");
            let op = WriteOp::Delete {
                kind: *kind,
                namespace: namespace(o).to_string(),
                name: name(o).to_string(),
            };
            if let Err(e) = store.write(op, false).await {
                tracing::debug!(error = %e, "garbage collection (retried next round)");
            }
        }
        suspects = next;
        super::health::round_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn daemonset_pods_go_where_selector_and_taints_allow_also_on_not_ready_nodes() {
        let node = |name: &str, labels: Value, taints: Value, ready: &str| {
            let n: Node = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels},
                "spec": {"taints": taints, "unschedulable": true},
                "status": {"conditions": [{"type": "Ready", "status": ready}]},
            }))
            .unwrap();
            NodeView::from_node(&n)
        };
        let nodes = [
            node("a", json!({"role": "edge"}), json!([]), "True"),
            node("b", json!({"role": "edge"}), json!([]), "Unknown"),
            node("c", json!({"role": "core"}), json!([]), "True"),
            node("d", json!({"role": "edge"}), json!([{"key": "gpu", "effect": "NoSchedule"}]), "True"),
        ];
        let ds = json!({"spec": {"template": {"spec": {"nodeSelector": {"role": "edge"},
            "containers": [{"name": "c", "image": "x"}]}}}});
        let none = HashSet::new();
        assert_eq!(eligible_nodes(&ds, &nodes, &none), ["a", "b"]);
        let mut tolerant = ds.clone();
        tolerant["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "gpu", "operator": "Exists"}]);
        assert_eq!(eligible_nodes(&tolerant, &nodes, &none), ["a", "b", "d"]);
        assert!(eligible_nodes(&json!({"spec": {"template": 3}}), &nodes, &none).is_empty());
        // A NoSchedule taint added later keeps new pods off, not the one already running.
        assert_eq!(eligible_nodes(&ds, &nodes, &HashSet::from(["d"])), ["a", "b", "d"]);
    }

    #[test]
    fn orphans_are_dependents_whose_workload_owners_are_all_gone() {
        let dep = |name: &str, refs: Value| {
            (Kind::Pod, json!({"metadata": {"name": name, "ownerReferences": refs}}))
        };
        let deps = [
            dep("gone", json!([{"kind": "ReplicaSet", "uid": "x"}])),
            dep("kept", json!([{"kind": "ReplicaSet", "uid": "rs"}])),
            dep("one-left", json!([{"kind": "Job", "uid": "x"}, {"kind": "Job", "uid": "rs"}])),
            dep("foreign", json!([{"kind": "ConfigMap", "uid": "x"}])),
            dep("unknown", json!([{"kind": "Widget", "uid": "x"}])),
            (Kind::Pod, json!({"metadata": {"name": "bare"}})),
        ];
        let found: Vec<&str> = orphans(&deps, &HashSet::from(["rs"])).iter().map(|(_, o)| name(o)).collect();
        assert_eq!(found, ["gone"]);
    }

    #[test]
    fn owned_objects_are_grouped_by_controller() {
        let pods = [
            json!({"metadata": {"name": "a", "ownerReferences": [{"uid": "u1", "controller": true}]}}),
            json!({"metadata": {"name": "b", "ownerReferences": [{"uid": "u1", "controller": false}]}}),
            json!({"metadata": {"name": "c"}}),
        ];
        let index = by_controller(&pods);
        assert_eq!(index.len(), 1);
        assert_eq!(name(&index["u1"][0]), "a");
    }
}
