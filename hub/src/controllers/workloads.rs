//! The workload controllers' one loop (`run`): each round lists the managed kind and what the
//! controller asks for (`Controller::LISTS`), asks its pure core (`deployment`, `replicaset`,
//! `daemonset`, `job`, `cronjob`, `statefulset`) what to do per object, and performs the
//! `Action`s. Rounds run on every change of the kinds it watches and on a resync, so a write
//! that failed (a conflict, a race with a user) is simply decided again next round.
//! The garbage collector deletes objects whose controller is gone.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use flotilla_shared::api::{self as api, Kind, Object, ObjectMeta};

use super::common::{name, namespace, uid};
use super::{list, suffix, Action, Event, Rounds};
use crate::scheduler::NodeView;
use crate::store::objects::Mode;
use crate::store::{EventRecord, Store, WriteOp};

/// A workload controller: the kind it manages, what its loop watches and lists, and its pure
/// decision for one object of that kind. A new controller is one pure file implementing this
/// and one line in `controllers::start`.
pub trait Controller {
    /// The kind of the objects it manages (their owner references name it).
    const KIND: Kind;
    /// Kinds whose changes start a round (`KIND` among them).
    const WATCHES: &'static [Kind];
    /// Kinds listed each round, in this order, besides `KIND`.
    const LISTS: &'static [Kind];
    /// How often a round runs without a change (back-off, deadlines, schedules).
    const RESYNC: Duration;
    /// The source of its events (`replicaset-controller`).
    const SOURCE: &'static str;
    /// The managed object as the controller reads it, parsed at the loop's edge (an object
    /// that does not parse is logged and skipped).
    type Owner: DeserializeOwned;

    /// Decides for one object; `suffix` yields random name suffixes.
    fn reconcile(
        owner: &Self::Owner,
        lists: &Lists,
        now: i64,
        suffix: &mut dyn FnMut() -> String,
    ) -> Vec<Action>;
}

/// A kind a controller reads typed from its round's `Lists`.
pub trait Listed: Sized {
    fn of(object: &Object) -> Option<&Self>;
}

macro_rules! listed {
    ($($kind:ident),*) => {$(
        impl Listed for api::$kind {
            fn of(object: &Object) -> Option<&Self> {
                match object {
                    Object::$kind(o) => Some(o),
                    _ => None,
                }
            }
        }
    )*};
}
listed!(Pod, ReplicaSet, Job, PersistentVolumeClaim);

/// `raw` parsed as a `T`, or `None` (logged): a stored object that does not parse is skipped,
/// never a panic.
pub(super) fn parse<T: DeserializeOwned>(kind: Kind, raw: &Value) -> Option<T> {
    match serde_json::from_value(raw.clone()) {
        Ok(t) => Some(t),
        Err(error) => {
            tracing::warn!(%kind, namespace = namespace(raw), name = name(raw), %error,
                "stored object does not parse (skipped)");
            None
        }
    }
}

/// What a controller's round listed: every object of each listed kind, and the same grouped
/// by the uid of their controller.
#[derive(Debug, Default)]
pub struct Lists {
    /// The listed objects that parse, by kind, and their indices by controller uid.
    objects: HashMap<Kind, Vec<Object>>,
    owned: HashMap<Kind, HashMap<String, Vec<usize>>>,
    /// The listed nodes as the scheduler sees them.
    pub nodes: Vec<NodeView>,
}

impl Lists {
    /// Adds the listed objects of `kind`, parsed (one that does not parse is logged and left
    /// out).
    pub fn insert(&mut self, kind: Kind, raw: Vec<Value>) {
        let objects: Vec<Object> = raw.into_iter().filter_map(|o| parse_object(kind, o)).collect();
        let mut owned: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, o) in objects.iter().enumerate() {
            if let Some(u) = super::pods::controller_uid(o.metadata()) {
                owned.entry(u.to_string()).or_default().push(i);
            }
            if let Object::Node(n) = o {
                self.nodes.push(NodeView::from_node(n));
            }
        }
        self.owned.insert(kind, owned);
        self.objects.insert(kind, objects);
    }

    /// Every listed object of type `T`.
    pub fn every<'a, T: Listed + 'a>(&'a self) -> impl Iterator<Item = &'a T> {
        self.objects.values().flatten().filter_map(T::of)
    }

    /// The listed objects of type `T` that the object with `owner` metadata controls.
    pub fn owned_by<T: Listed>(&self, owner: &ObjectMeta) -> Vec<&T> {
        let uid = super::pods::uid(owner);
        let mut out = Vec::new();
        for (kind, index) in &self.owned {
            let (Some(objects), Some(mine)) = (self.objects.get(kind), index.get(uid)) else { continue };
            out.extend(mine.iter().filter_map(|i| T::of(&objects[*i])));
        }
        out
    }
}

/// `raw` parsed as an object of `kind`, or `None` (logged, as `parse`).
fn parse_object(kind: Kind, raw: Value) -> Option<Object> {
    let (namespace, name) = (namespace(&raw).to_string(), name(&raw).to_string());
    match Object::from_value(kind, raw) {
        Ok(o) => Some(o),
        Err(error) => {
            tracing::warn!(%kind, namespace, name, %error, "stored object does not parse (skipped)");
            None
        }
    }
}

/// A controller's loop: a round on every change of what it watches and every resync period,
/// which lists its objects and what they need and performs each one's decision.
pub(super) async fn run<C: Controller>(store: Store) {
    let mut rounds = Rounds::new(&store, C::RESYNC, C::WATCHES);
    while rounds.next().await {
        let owners = list(&store, C::KIND).await;
        if owners.is_empty() {
            continue;
        }
        let mut lists = Lists::default();
        for kind in C::LISTS {
            lists.insert(*kind, list(&store, *kind).await);
        }
        for raw in &owners {
            let Some(owner) = parse::<C::Owner>(C::KIND, raw) else { continue };
            let actions = C::reconcile(&owner, &lists, now(), &mut suffix);
            perform(&store, C::KIND, raw, C::SOURCE, actions).await;
        }
    }
}

/// Performs one owner's actions: claims first (a pod's claim exists before the scheduler sees
/// the pod), then creates, updates and deletes together, then the status, then the events
/// (about the owner).
async fn perform(store: &Store, owner_kind: Kind, owner: &Value, source: &str, mut actions: Vec<Action>) {
    let ns = namespace(owner).to_string();
    let claims: Vec<Action> = {
        let (claims, rest) = actions
            .into_iter()
            .partition(|a| matches!(a, Action::Create { kind: Kind::PersistentVolumeClaim, .. }));
        actions = rest;
        claims
    };
    for a in claims {
        if let Action::Create { kind, object } = a {
            if let Err(e) = store.write(WriteOp::Put { kind, object, mode: Mode::Create }, false).await {
                tracing::debug!(controller = source, error = %e, "claim refused (decided again next round)");
            }
        }
    }
    let mut changes = Vec::new();
    let mut status = None;
    let mut events = Vec::new();
    for a in actions {
        let op = match a {
            Action::Create { kind, object } => WriteOp::Put { kind, object, mode: Mode::Create },
            Action::Update { kind, object } => WriteOp::Put { kind, object, mode: Mode::Update },
            Action::Delete { kind, name } => WriteOp::Delete { kind, namespace: ns.clone(), name },
            Action::UpdateStatus(s) => {
                status = Some(s);
                continue;
            }
            Action::Event { warning, reason, message } => {
                events.push(Event { warning, reason, message });
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
    let time = crate::clock::now_rfc3339();
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

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Kinds whose objects controllers own, and the kinds that own them.
const DEPENDENTS: &[Kind] = &[Kind::Pod, Kind::ReplicaSet, Kind::Job];
const OWNERS: &[Kind] =
    &[Kind::Deployment, Kind::ReplicaSet, Kind::DaemonSet, Kind::StatefulSet, Kind::Job, Kind::CronJob];

/// The dependents all of whose owners are workloads that no longer exist. Objects owned by
/// anything else (another kind, another system) are never garbage here.
fn orphans<'a>(dependents: &'a [Object], owner_uids: &HashSet<&str>) -> Vec<&'a Object> {
    dependents
        .iter()
        .filter(|o| {
            o.metadata().owner_references.as_ref().is_some_and(|refs| {
                !refs.is_empty()
                    && refs.iter().all(|r| {
                        Kind::from_kind_name(&r.kind).is_some_and(|k| OWNERS.contains(&k))
                            && !owner_uids.contains(r.uid.as_str())
                    })
            })
        })
        .collect()
}

/// The garbage collector: deleting an owner deletes what it owns (the store cascades through
/// ownerReferences); this sweep catches what a controller created while its owner was being
/// deleted. An object goes when it was an orphan in two sweeps in a row (10 s apart), so an
/// owner created between two lists of one sweep does not cost its dependents. A sweep in which
/// an owner does not parse deletes nothing: its dependents would look orphaned.
pub(super) async fn garbage_collector(store: Store) {
    let mut interval = tokio::time::interval(Duration::from_secs(10));
    let mut suspects: HashSet<String> = HashSet::new();
    loop {
        interval.tick().await;
        // Dependents first: an owner listed after them is at least as new.
        let mut dependents = Vec::new();
        for kind in DEPENDENTS {
            dependents.extend(list(&store, *kind).await.into_iter().filter_map(|o| parse_object(*kind, o)));
        }
        let (mut owners, mut unparsed) = (Vec::new(), false);
        for kind in OWNERS {
            for raw in list(&store, *kind).await {
                match parse_object(*kind, raw) {
                    Some(o) => owners.push(o),
                    None => unparsed = true,
                }
            }
        }
        if unparsed {
            super::health::round_done();
            continue;
        }
        let owner_uids: HashSet<&str> = owners.iter().map(|o| super::pods::uid(o.metadata())).collect();
        let found = orphans(&dependents, &owner_uids);
        let mut next = HashSet::new();
        for o in found {
            let (kind, meta) = (o.kind(), o.metadata());
            let (namespace, name, uid) = (super::pods::namespace(meta), meta.name(), super::pods::uid(meta));
            next.insert(uid.to_string());
            if !suspects.contains(uid) {
                continue;
            }
            tracing::info!(kind = %kind, namespace, name, "deleting an orphan");
            let op = WriteOp::Delete { kind, namespace: namespace.to_string(), name: name.to_string() };
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
    fn orphans_are_dependents_whose_workload_owners_are_all_gone() {
        let pod = |meta: Value| {
            let raw =
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": []}});
            parse_object(Kind::Pod, raw).expect("a pod")
        };
        let dep = |name: &str, refs: &[(&str, &str)]| {
            let refs: Vec<Value> = refs
                .iter()
                .map(|(k, u)| json!({"apiVersion": "v1", "kind": k, "name": "o", "uid": u}))
                .collect();
            pod(json!({"name": name, "ownerReferences": refs}))
        };
        let deps = [
            dep("gone", &[("ReplicaSet", "x")]),
            dep("kept", &[("ReplicaSet", "rs")]),
            dep("one-left", &[("Job", "x"), ("Job", "rs")]),
            dep("foreign", &[("ConfigMap", "x")]),
            dep("unknown", &[("Widget", "x")]),
            pod(json!({"name": "bare"})),
        ];
        let found: Vec<&str> =
            orphans(&deps, &HashSet::from(["rs"])).iter().map(|o| o.metadata().name()).collect();
        assert_eq!(found, ["gone"]);
    }

    #[test]
    fn owned_objects_are_grouped_by_controller() {
        let pod = |meta: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": []}});
        let owner = |uid: &str, controller: bool| {
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid,
                "controller": controller}])
        };
        let pods = vec![
            pod(json!({"name": "a", "ownerReferences": owner("u1", true)})),
            pod(json!({"name": "b", "ownerReferences": owner("u1", false)})),
            pod(json!({"name": "c"})),
            // Does not parse: left out (and logged), never a panic.
            json!({"metadata": {"name": "d", "ownerReferences": owner("u1", true)}}),
        ];
        let mut lists = Lists::default();
        lists.insert(Kind::Pod, pods);
        let meta = |uid: &str| ObjectMeta { uid: Some(uid.into()), ..ObjectMeta::default() };
        let mine: Vec<&str> =
            lists.owned_by::<api::Pod>(&meta("u1")).iter().map(|p| p.metadata.name()).collect();
        assert_eq!(mine, ["a"]);
        assert!(lists.owned_by::<api::Pod>(&meta("u2")).is_empty());
        assert!(lists.owned_by::<api::ReplicaSet>(&meta("u1")).is_empty());
        assert_eq!(lists.every::<api::Pod>().count(), 3);
    }
}
