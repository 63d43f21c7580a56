//! The DaemonSet controller (apps/v1), as Kubernetes' `daemon` controller: one pod of the
//! template on every eligible node, bound directly (`spec.nodeName`), with the daemon
//! tolerations added; pods on nodes that no longer qualify, duplicates, failed and unbound pods
//! are deleted; template changes roll out per `updateStrategy` (RollingUpdate with
//! `maxUnavailable` or `maxSurge`, or OnDelete); the status counts nodes.
//!
//! As in Kubernetes, a round that creates or deletes pods for the basic "one pod per node" rule
//! leaves the rolling update for a later round (the update then sees the settled state).
//! Left out: ControllerRevision objects and `revisionHistoryLimit` (the revision is the template
//! hash in the `controller-revision-hash` label), the back-off for crash-looping failed pods,
//! the `network-unavailable` toleration for hostNetwork pods, node affinity instead of
//! `nodeName`, status conditions and `collisionCount`. Deciding which nodes are eligible
//! (selector, affinity, taints) is the caller's.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use serde_json::Value;

use flotilla_shared::api::{
    DaemonSet, DaemonSetStrategyType, Kind, Pod, PodPhase, PodSpec, Resource, TaintEffect, Toleration,
    TolerationOperator,
};

use super::common::{self, int_or_percent};
use super::pods::{self, is_available, is_ready, value};
use super::{Action, Controller, Lists};
use crate::scheduler::{self, NodeView};

/// The DaemonSet controller's loop: one pod per eligible node, also on nodes that join later.
pub struct DaemonSets;

impl Controller for DaemonSets {
    const KIND: Kind = Kind::DaemonSet;
    const WATCHES: &'static [Kind] = &[Kind::DaemonSet, Kind::Pod, Kind::Node];
    const LISTS: &'static [Kind] = &[Kind::Pod, Kind::Node];
    const RESYNC: Duration = Duration::from_secs(5);
    const SOURCE: &'static str = "daemonset-controller";
    type Owner = DaemonSet;

    fn reconcile(ds: &DaemonSet, lists: &Lists, now: i64, suffix: &mut dyn FnMut() -> String) -> Vec<Action> {
        let pods: Vec<&Pod> = lists.owned_by(&ds.metadata);
        let running: HashSet<&str> = pods.iter().filter_map(|p| pods::node_of(p)).collect();
        let eligible = eligible_nodes(ds, &lists.nodes, &running);
        reconcile(ds, &pods, &eligible, now, suffix)
    }
}

/// The nodes a DaemonSet's pods belong on; `running` are the nodes that already run one.
fn eligible_nodes(ds: &DaemonSet, nodes: &[NodeView], running: &HashSet<&str>) -> Vec<String> {
    let template = &ds.spec.template;
    let mut spec = template.spec.clone();
    spec.tolerations = Some(pod_tolerations(&template.spec));
    let pod = Resource {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: template.metadata.clone().unwrap_or_default(),
        spec,
        status: None,
    };
    nodes
        .iter()
        .filter(|n| scheduler::daemon_fits(&pod, n, running.contains(n.name.as_str())))
        .map(|n| n.name.clone())
        .collect()
}

/// Key and effect of the tolerations Kubernetes gives every daemon pod (all `operator: Exists`).
const DAEMON_TOLERATIONS: [(&str, TaintEffect); 6] = [
    ("node.kubernetes.io/not-ready", TaintEffect::NoExecute),
    ("node.kubernetes.io/unreachable", TaintEffect::NoExecute),
    ("node.kubernetes.io/disk-pressure", TaintEffect::NoSchedule),
    ("node.kubernetes.io/memory-pressure", TaintEffect::NoSchedule),
    ("node.kubernetes.io/pid-pressure", TaintEffect::NoSchedule),
    ("node.kubernetes.io/unschedulable", TaintEffect::NoSchedule),
];

/// Tolerations every DaemonSet pod gets (Kubernetes adds the same ones).
pub fn default_tolerations() -> Vec<Toleration> {
    DAEMON_TOLERATIONS
        .iter()
        .map(|(k, e)| Toleration {
            key: Some(k.to_string()),
            operator: Some(TolerationOperator::Exists),
            effect: Some(*e),
            ..Toleration::default()
        })
        .collect()
}

/// The tolerations of a daemon pod made from a template's `spec`: the template's, then each
/// default one whose key and effect the template does not already tolerate.
pub fn pod_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let mut out: Vec<Toleration> = spec.tolerations.clone().unwrap_or_default();
    for t in default_tolerations() {
        if !out.iter().any(|o| o.key == t.key && o.effect == t.effect) {
            out.push(t);
        }
    }
    out
}

fn revision_hash(pod: &Pod) -> &str {
    pod.metadata.labels().get("controller-revision-hash").map_or("", String::as_str)
}

/// Decides for one DaemonSet. `pods` are the pods it controls, `eligible_nodes` the nodes that
/// should run one of them, `now` Unix seconds; `suffix` yields random pod-name suffixes.
pub fn reconcile(
    ds: &DaemonSet,
    pods: &[&Pod],
    eligible_nodes: &[String],
    now: i64,
    mut suffix: impl FnMut() -> String,
) -> Vec<Action> {
    let mut actions = Vec::new();
    if ds.metadata.name().is_empty() {
        return actions;
    }
    let ns = pods::namespace(&ds.metadata);
    // Keeps the availability arithmetic in range on a nonsensical clock.
    let now = now.clamp(0, i64::MAX / 2);
    let template = &ds.spec.template;
    let hash = common::hash(&value(template));
    let min_ready = i64::from(ds.spec.min_ready_seconds.unwrap_or(0)).max(0);
    let eligible: BTreeSet<&str> =
        eligible_nodes.iter().map(String::as_str).filter(|n| !n.is_empty()).collect();
    let desired = eligible.len() as i64;
    let strategy = ds.spec.update_strategy.as_ref();
    let on_delete = strategy.and_then(|s| s.type_) == Some(DaemonSetStrategyType::OnDelete);
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let budget = |field: Option<&flotilla_shared::api::IntOrString>, default: i64| {
        if on_delete {
            return 0;
        }
        int_or_percent(field.map(value).as_ref().map(sane_percent).as_ref(), desired, default, true)
    };
    let max_surge = budget(rolling.and_then(|r| r.max_surge.as_ref()), 0);
    let max_unavailable =
        if max_surge == 0 { budget(rolling.and_then(|r| r.max_unavailable.as_ref()), 1).max(1) } else { 0 };

    let updated = |p: &Pod| revision_hash(p) == hash;
    let available = |p: &Pod| is_available(p, min_ready, now);
    let mut create = |actions: &mut Vec<Action>, node: &str| {
        let pod = new_pod(ds, &hash, node, &mut suffix);
        let message = format!("Created pod: {}", pod.metadata.name());
        actions.push(Action::create(Kind::Pod, value(&pod)));
        actions.push(Action::Event { warning: false, reason: "SuccessfulCreate", message });
    };

    // Live pods by node; unbound ones go.
    let mut by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for pod in pods.iter().copied().filter(|p| !p.metadata.name().is_empty() && !pods::is_deleting(p)) {
        match pods::node_of(pod) {
            Some(node) => by_node.entry(node).or_default().push(pod),
            None => delete(&mut actions, pod),
        }
    }

    // One pod per eligible node, none elsewhere.
    for (node, on_node) in &by_node {
        if !eligible.contains(node) {
            on_node.iter().for_each(|p| delete(&mut actions, p));
            continue;
        }
        let (terminal, mut running): (Vec<&Pod>, Vec<&Pod>) =
            on_node.iter().partition(|p| pods::is_terminal(p));
        for p in terminal {
            if pods::phase(p) == PodPhase::Failed {
                let message = format!(
                    "Found failed daemon pod {ns}/{} on node {node}, will try to kill it",
                    p.metadata.name()
                );
                actions.push(Action::Event { warning: true, reason: "FailedDaemonPod", message });
            }
            delete(&mut actions, p);
        }
        // Best first: updated revision, ready, oldest, name.
        running.sort_by_cached_key(|p| {
            let created = p.metadata.creation_timestamp.as_deref().and_then(common::unix_seconds);
            (!updated(p), !is_ready(p), created.unwrap_or(i64::MAX), p.metadata.name().to_string())
        });
        let mut keep: Vec<usize> = Vec::new();
        if max_surge > 0 {
            // Surging: the best new pod and the best old one may share a node while the new one
            // is not available yet and the old one still serves.
            let new = running.iter().position(|p| updated(p));
            let old = running.iter().position(|p| !updated(p));
            keep.extend(new);
            match (new, old) {
                (Some(n), Some(o)) if is_ready(running[o]) && !available(running[n]) => keep.push(o),
                (None, Some(o)) => keep.push(o),
                _ => {}
            }
        } else if !running.is_empty() {
            keep.push(0);
        }
        for (i, p) in running.iter().enumerate() {
            if !keep.contains(&i) {
                delete(&mut actions, p);
            }
        }
    }
    for node in eligible.iter().filter(|n| !by_node.contains_key(*n)) {
        create(&mut actions, node);
    }

    // The rolling update, on the settled state: every eligible node has its live pod(s).
    if actions.is_empty() && !on_delete {
        let pods_on = |node: &str| by_node.get(node).map(Vec::as_slice).unwrap_or_default().to_vec();
        if max_surge == 0 {
            // Old pods that are not available cost nothing; available ones while the budget lasts.
            let (mut unavailable, mut free, mut candidates) = (0, Vec::new(), Vec::new());
            for node in &eligible {
                match pods_on(node).first() {
                    Some(p) if available(p) && !updated(p) => candidates.push(*p),
                    Some(p) if available(p) => {}
                    Some(p) => {
                        unavailable += 1;
                        if !updated(p) {
                            free.push(*p);
                        }
                    }
                    None => unavailable += 1,
                }
            }
            let room = (max_unavailable - unavailable).max(0) as usize;
            for p in free.into_iter().chain(candidates.into_iter().take(room)) {
                delete(&mut actions, p);
            }
        } else {
            // A new pod next to an old one: at once where the old one is unavailable, else on up
            // to maxSurge nodes at a time (the old pod goes once the new one is available).
            let (mut surging, mut now_nodes, mut candidates) = (0, Vec::new(), Vec::new());
            for node in &eligible {
                let on = pods_on(node);
                match (on.iter().any(|p| updated(p)), on.iter().find(|p| !updated(p))) {
                    (_, None) => {}
                    (true, Some(_)) => surging += 1,
                    (false, Some(old)) if available(old) => candidates.push(*node),
                    (false, Some(_)) => now_nodes.push(*node),
                }
            }
            let room = (max_surge - surging).max(0) as usize;
            for node in now_nodes.into_iter().chain(candidates.into_iter().take(room)) {
                create(&mut actions, node);
            }
        }
    }

    // Status, counted over nodes as observed this round.
    let count = |f: &dyn Fn(&Pod) -> bool| {
        eligible
            .iter()
            .filter(|n| by_node.get(**n).is_some_and(|ps| ps.iter().any(|p| !pods::is_terminal(p) && f(p))))
            .count() as i64
    };
    let (ready, available_nodes) = (count(&is_ready), count(&available));
    // A node is updated once every pod on it is: a surge pod next to the old one is not yet.
    let updated_nodes = eligible
        .iter()
        .filter(|n| {
            by_node.get(**n).is_some_and(|ps| {
                let live: Vec<&&Pod> = ps.iter().filter(|p| !pods::is_terminal(p)).collect();
                !live.is_empty() && live.iter().all(|p| updated(p))
            })
        })
        .count() as i64;
    // Fields this controller does not manage are kept as they are.
    let mut status = ds.status.clone().unwrap_or_default();
    status.observed_generation = Some(pods::generation(&ds.metadata));
    status.desired_number_scheduled = Some(desired);
    status.current_number_scheduled =
        Some(eligible.iter().filter(|n| by_node.contains_key(**n)).count() as i64);
    status.number_misscheduled = Some(by_node.keys().filter(|n| !eligible.contains(*n)).count() as i64);
    status.number_ready = Some(ready);
    status.number_available = Some(available_nodes);
    status.number_unavailable = Some((desired - available_nodes).max(0));
    status.updated_number_scheduled = Some(updated_nodes);
    if ds.status.as_ref() != Some(&status) {
        actions.push(Action::UpdateStatus(value(&status)));
    }
    actions
}

/// A percentage clamped to 0..=100 (so scaling it cannot overflow); other values as they are.
fn sane_percent(v: &Value) -> Value {
    match v.as_str().and_then(|s| s.strip_suffix('%')).and_then(|p| p.trim().parse::<i64>().ok()) {
        Some(p) => format!("{}%", p.clamp(0, 100)).into(),
        None if v.as_str().is_some_and(|s| s.ends_with('%')) => Value::Null,
        None => v.clone(),
    }
}

fn delete(actions: &mut Vec<Action>, pod: &Pod) {
    let pod_name = pod.metadata.name().to_string();
    let message = format!("Deleted pod: {pod_name}");
    if !actions.contains(&Action::delete(Kind::Pod, pod_name.clone())) {
        actions.push(Action::delete(Kind::Pod, pod_name));
        actions.push(Action::Event { warning: false, reason: "SuccessfulDelete", message });
    }
}

/// A pod of the template for `node`, labelled with the revision and template generation.
fn new_pod(ds: &DaemonSet, hash: &str, node: &str, suffix: &mut impl FnMut() -> String) -> Pod {
    let pod_name = format!("{}-{}", ds.metadata.name(), suffix());
    let generation = pods::generation(&ds.metadata).to_string();
    let labels = [("controller-revision-hash", hash), ("pod-template-generation", generation.as_str())];
    let template = &ds.spec.template;
    let mut pod = pods::pod_from_template(template, &pod_name, ds, &labels);
    pod.spec.node_name = Some(node.into());
    pod.spec.tolerations = Some(pod_tolerations(&template.spec));
    pod
}

#[cfg(test)]
mod tests;
