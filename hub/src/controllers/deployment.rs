//! The Deployment controller (pure), as Kubernetes' deployment controller: one ReplicaSet per
//! revision of the pod template (named `{deployment}-{template hash}`, labelled
//! `pod-template-hash`, its revision in the `deployment.kubernetes.io/revision` annotation), and
//! replicas moved from the old ReplicaSets to the new one by the strategy:
//!
//! - RollingUpdate: the new ReplicaSet grows while the total stays within replicas + maxSurge,
//!   and old ones shrink while the available pods stay at least replicas - maxUnavailable
//!   (unhealthy old pods go first). Availability is the ReplicaSets' `availableReplicas`: Ready
//!   for `minReadySeconds`. So a rollout waits for readiness and halts on a template whose pods
//!   never become Ready.
//! - Recreate: old ReplicaSets go to zero, and the new one grows only once their pods are gone.
//!
//! Going back to an older template (`rollout undo`) reuses that revision's ReplicaSet and gives
//! it the next revision number, so history reads as Kubernetes'. Old ReplicaSets without
//! replicas beyond `revisionHistoryLimit` (default 10) are deleted once a rollout completed.
//! `paused` stops rollouts (no new ReplicaSet) while scaling still works.
//!
//! Left out: proportional scaling of several old ReplicaSets when `replicas` changes in the middle
//! of a rollout (the rollout itself converges them), and `progressDeadlineSeconds`
//! (ProgressDeadlineExceeded is never reported).

use std::time::Duration;

use serde_json::{json, Value};

use flotilla_shared::api::Kind;

use super::common::{self, int_at, int_or_percent, name, str_at};
use super::{Action, Controller, Event, Lists};

/// The revision annotation, on ReplicaSets (and read by `rollout history`).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Copied from the Deployment to its new ReplicaSet: what `rollout history` shows.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// The Deployment controller's loop: ReplicaSets per revision, on every change of Deployments
/// and ReplicaSets.
pub struct Deployments;

impl Controller for Deployments {
    const KIND: Kind = Kind::Deployment;
    const WATCHES: &'static [Kind] = &[Kind::Deployment, Kind::ReplicaSet];
    const LISTS: &'static [Kind] = &[Kind::ReplicaSet, Kind::Pod];
    const RESYNC: Duration = Duration::from_secs(5);
    const SOURCE: &'static str = "deployment-controller";
    type Owner = Value;

    fn reconcile(d: &Value, lists: &Lists, now: i64, _: &mut dyn FnMut() -> String) -> Vec<Action> {
        let mine = lists.owned(Kind::ReplicaSet, d);
        let my_pods: Vec<Value> =
            mine.iter().flat_map(|rs| lists.owned(Kind::Pod, rs).iter().cloned()).collect();
        let decided = reconcile(d, mine, &my_pods, now);
        let mut actions: Vec<Action> = events(&decided, mine).into_iter().map(Action::from).collect();
        // Pods an earlier hub's Deployment controller owned directly: ReplicaSets replace them.
        for p in lists.owned(Kind::Pod, d) {
            actions.push(Action::delete(Kind::Pod, name(p)));
        }
        actions.extend(decided);
        actions
    }
}

/// The pod-template hash: the hash of the template as the user wrote it.
pub fn template_hash(template: &Value) -> String {
    common::hash(template)
}

fn revision(rs: &Value) -> i64 {
    str_at(rs, &format!("/metadata/annotations/{}", REVISION.replace('/', "~1"))).parse().unwrap_or(0).max(0)
}

fn replicas(rs: &Value) -> i64 {
    int_at(rs, "/spec/replicas").unwrap_or(0).max(0)
}

fn available(rs: &Value) -> i64 {
    int_at(rs, "/status/availableReplicas").unwrap_or(0).max(0)
}

fn set_replicas(rs: &Value, n: i64) -> Value {
    let mut rs = rs.clone();
    rs["spec"]["replicas"] = n.into();
    rs
}

/// `maxSurge` and `maxUnavailable` for `want` replicas, with Kubernetes' defaults (25%, 25%)
/// and fencepost rule (both zero would stall: maxUnavailable becomes 1).
pub fn surge_and_unavailable(deploy: &Value, want: i64) -> (i64, i64) {
    if str_at(deploy, "/spec/strategy/type") == "Recreate" {
        return (0, want);
    }
    let ru = deploy.pointer("/spec/strategy/rollingUpdate");
    let surge = int_or_percent(ru.and_then(|r| r.get("maxSurge")), want, -1, true);
    let unavailable = int_or_percent(ru.and_then(|r| r.get("maxUnavailable")), want, -1, false);
    let surge = if surge < 0 { (want * 25 + 99) / 100 } else { surge };
    let unavailable = if unavailable < 0 { want * 25 / 100 } else { unavailable };
    // Both are bounded by `want` (a huge maxSurge is as good as `want`; the sums cannot overflow).
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge.min(want), unavailable.min(want))
    }
}

/// Decides for one Deployment. `replicasets` are the ReplicaSets it controls; `pods` the pods
/// those ReplicaSets control (Recreate waits for the old ones to be gone).
pub fn reconcile(deploy: &Value, replicasets: &[Value], pods: &[Value], now: i64) -> Vec<Action> {
    let mut actions = Vec::new();
    let template = deploy.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    let hash = template_hash(&template);
    let want = int_at(deploy, "/spec/replicas").unwrap_or(1).clamp(0, i64::from(i32::MAX));
    let paused = deploy.pointer("/spec/paused").and_then(Value::as_bool).unwrap_or(false);
    let recreate = str_at(deploy, "/spec/strategy/type") == "Recreate";
    let (max_surge, max_unavailable) = surge_and_unavailable(deploy, want);

    let is_new = |rs: &Value| str_at(rs, "/metadata/labels/pod-template-hash") == hash;
    let mut new_rs = replicasets.iter().find(|r| is_new(r)).cloned();
    let mut old: Vec<Value> = replicasets.iter().filter(|r| !is_new(r)).cloned().collect();
    old.sort_by_key(|r| (revision(r), str_at(r, "/metadata/creationTimestamp").to_string()));
    let max_old_revision = old.iter().map(revision).max().unwrap_or(0).min(i64::MAX - 1);

    // The new revision: a ReplicaSet made now, or an old one brought back (rollback), which
    // takes the next revision number.
    if let Some(rs) = &new_rs {
        if revision(rs) <= max_old_revision && !paused {
            let mut rs = rs.clone();
            rs["metadata"]["annotations"][REVISION] = (max_old_revision + 1).to_string().into();
            actions.push(Action::update(Kind::ReplicaSet, rs.clone()));
            new_rs = Some(rs);
        }
    }
    let old_live = old.iter().map(replicas).sum::<i64>();
    let old_pods = pods
        .iter()
        .filter(|p| !common::is_terminal(p))
        .filter(|p| str_at(p, "/metadata/labels/pod-template-hash") != hash)
        .count();

    if paused {
        // Only scaling: the newest ReplicaSet with replicas (or the new one) follows `replicas`
        // when it is the only one running.
        let mut active: Vec<&Value> =
            replicasets.iter().filter(|r| replicas(r) > 0 || new_rs.as_ref() == Some(*r)).collect();
        active.sort_by_key(|r| revision(r));
        if let [only] = active.as_slice() {
            if replicas(only) != want {
                actions.push(Action::update(Kind::ReplicaSet, set_replicas(only, want)));
            }
        }
    } else if recreate {
        if old_live > 0 {
            for rs in old.iter().filter(|r| replicas(r) > 0) {
                actions.push(scaled(rs, 0));
            }
        } else if old_pods == 0 {
            match &new_rs {
                None => actions.extend(create(deploy, &template, &hash, max_old_revision + 1, want)),
                Some(rs) if replicas(rs) != want => actions.push(scaled(rs, want)),
                Some(_) => {}
            }
        }
    } else {
        // RollingUpdate.
        let new_replicas = new_rs.as_ref().map_or(0, replicas);
        let total = old_live + new_replicas;
        let target = if new_replicas > want {
            want
        } else {
            let room = (want + max_surge - total).max(0);
            new_replicas + room.min(want - new_replicas)
        };
        let scaled_up = target != new_replicas || new_rs.is_none();
        match &new_rs {
            None => actions.extend(create(deploy, &template, &hash, max_old_revision + 1, target)),
            Some(rs) if target != new_replicas => actions.push(scaled(rs, target)),
            Some(_) => {}
        }
        // As Kubernetes: a round that grew the new ReplicaSet leaves the old ones for the next.
        if !scaled_up || target < new_replicas {
            actions.extend(scale_down_old(&old, new_rs.as_ref(), want, max_unavailable));
        }
    }

    // History: once a rollout is complete, old ReplicaSets without pods beyond the limit go.
    let complete = new_rs.as_ref().is_some_and(|rs| replicas(rs) == want && available(rs) >= want)
        && old_live == 0
        && old_pods == 0;
    if complete {
        let limit = int_at(deploy, "/spec/revisionHistoryLimit").unwrap_or(10).max(0) as usize;
        let idle: Vec<&Value> = old
            .iter()
            .filter(|r| replicas(r) == 0 && int_at(r, "/status/replicas").unwrap_or(0) == 0)
            .collect();
        for rs in idle.iter().take(idle.len().saturating_sub(limit)) {
            actions.push(Action::delete(Kind::ReplicaSet, name(rs)));
        }
    }

    // Available means at least `want - maxUnavailable` pods; Recreate tolerates none missing.
    let tolerated = if recreate { 0 } else { max_unavailable };
    let status = status(deploy, new_rs.as_ref(), replicasets, want, tolerated, paused, complete, now);
    let mut actions = merge_updates(actions);
    if deploy.get("status") != Some(&status) {
        actions.push(Action::UpdateStatus(status));
    }
    actions
}

fn scaled(rs: &Value, n: i64) -> Action {
    Action::update(Kind::ReplicaSet, set_replicas(rs, n))
}

/// One write per ReplicaSet and round: a later update of the same ReplicaSet (its replicas) is
/// folded into the first (its revision), which a compare-and-swap would otherwise refuse.
fn merge_updates(actions: Vec<Action>) -> Vec<Action> {
    let mut out: Vec<Action> = Vec::with_capacity(actions.len());
    for a in actions {
        if let Action::Update { object: rs, .. } = &a {
            if let Some(Action::Update { object: first, .. }) =
                out.iter_mut().find(|o| matches!(o, Action::Update { object: f, .. } if name(f) == name(rs)))
            {
                first["spec"]["replicas"] = rs["spec"]["replicas"].clone();
                continue;
            }
        }
        out.push(a);
    }
    out
}

/// The events for `actions` (scaling ReplicaSets up and down), as Kubernetes words them;
/// `replicasets` are the ReplicaSets before the actions.
pub fn events(actions: &[Action], replicasets: &[Value]) -> Vec<Event> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Update { object: rs, .. } => {
                let before = replicasets.iter().find(|r| name(r) == name(rs)).map_or(0, replicas);
                let after = replicas(rs);
                let verb = match after.cmp(&before) {
                    std::cmp::Ordering::Greater => "up",
                    std::cmp::Ordering::Less => "down",
                    std::cmp::Ordering::Equal => return None,
                };
                Some(Event::normal(
                    "ScalingReplicaSet",
                    format!("Scaled {verb} replica set {} to {after} from {before}", name(rs)),
                ))
            }
            Action::Create { object: rs, .. } => Some(Event::normal(
                "ScalingReplicaSet",
                format!("Scaled up replica set {} to {}", name(rs), replicas(rs)),
            )),
            _ => None,
        })
        .collect()
}

fn create(deploy: &Value, template: &Value, hash: &str, revision: i64, replicas: i64) -> Option<Action> {
    let mut t = template.clone();
    if !t.is_object() {
        return None;
    }
    t["metadata"]["labels"]["pod-template-hash"] = hash.into();
    let mut selector = deploy.pointer("/spec/selector").cloned().unwrap_or_else(|| json!({}));
    selector["matchLabels"]["pod-template-hash"] = hash.into();
    let mut labels = t.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({}));
    labels["pod-template-hash"] = hash.into();
    let mut annotations = json!({ REVISION: revision.to_string() });
    if let Some(cause) = deploy.pointer(&format!("/metadata/annotations/{}", CHANGE_CAUSE.replace('/', "~1")))
    {
        annotations[CHANGE_CAUSE] = cause.clone();
    }
    let mut spec = json!({"replicas": replicas, "selector": selector, "template": t});
    if let Some(m) = deploy.pointer("/spec/minReadySeconds") {
        spec["minReadySeconds"] = m.clone();
    }
    Some(Action::create(
        Kind::ReplicaSet,
        json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": format!("{}-{hash}", name(deploy)),
                "namespace": common::namespace(deploy),
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [common::owner_ref(deploy)],
            },
            "spec": spec,
        }),
    ))
}

/// Kubernetes' reconcileOldReplicaSets: first the unhealthy old pods, then available ones while
/// at least `want - max_unavailable` stay available.
fn scale_down_old(old: &[Value], new_rs: Option<&Value>, want: i64, max_unavailable: i64) -> Vec<Action> {
    let old_total: i64 = old.iter().map(replicas).sum();
    if old_total == 0 {
        return Vec::new();
    }
    let new_replicas = new_rs.map_or(0, replicas);
    let new_available = new_rs.map_or(0, available);
    let all = old_total + new_replicas;
    let min_available = want - max_unavailable;
    let new_unavailable = (new_replicas - new_available).max(0);
    let mut budget = all - min_available - new_unavailable;
    if budget <= 0 {
        return Vec::new();
    }
    let mut next: Vec<i64> = old.iter().map(replicas).collect();
    // Unhealthy replicas cost no availability.
    for (i, rs) in old.iter().enumerate() {
        if budget == 0 {
            break;
        }
        let unhealthy = (next[i] - available(rs)).max(0).min(budget);
        next[i] -= unhealthy;
        budget -= unhealthy;
    }
    // Then available ones, oldest first, while enough stay available.
    let available_now: i64 = old.iter().map(available).sum::<i64>() + new_available;
    let mut room = (available_now - min_available).max(0);
    for (i, rs) in old.iter().enumerate() {
        if room == 0 {
            break;
        }
        let healthy = next[i].min(available(rs));
        let cut = healthy.min(room);
        next[i] -= cut;
        room -= cut;
    }
    old.iter().zip(next).filter(|(rs, n)| replicas(rs) != *n).map(|(rs, n)| scaled(rs, n)).collect()
}

#[allow(clippy::too_many_arguments)]
fn status(
    deploy: &Value,
    new_rs: Option<&Value>,
    replicasets: &[Value],
    want: i64,
    max_unavailable: i64,
    paused: bool,
    complete: bool,
    now: i64,
) -> Value {
    let sum = |f: &str| replicasets.iter().map(|r| int_at(r, f).unwrap_or(0).max(0)).sum::<i64>();
    let total = sum("/status/replicas");
    let ready = sum("/status/readyReplicas");
    let avail = sum("/status/availableReplicas");
    let updated = new_rs.and_then(|r| int_at(r, "/status/replicas")).unwrap_or(0);
    let rs_name = new_rs.map_or_else(String::new, |r| name(r).to_string());
    let (p_status, p_reason, p_message) = if paused {
        ("Unknown", "DeploymentPaused", "Deployment is paused".to_string())
    } else if complete {
        ("True", "NewReplicaSetAvailable", format!("ReplicaSet \"{rs_name}\" has successfully progressed."))
    } else {
        ("True", "ReplicaSetUpdated", format!("ReplicaSet \"{rs_name}\" is progressing."))
    };
    let (a_status, a_reason, a_message) = if avail >= want - max_unavailable {
        ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    } else {
        ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
    };
    let old = deploy.pointer("/status/conditions").and_then(Value::as_array);
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        // The transition time moves only when the status does.
        let since = old
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_ && c["status"] == status))
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| common::rfc3339(now).into());
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastTransitionTime": since})
    };
    json!({
        "observedGeneration": common::generation(deploy),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": avail,
        "unavailableReplicas": (want - avail).max(0),
        "conditions": [
            condition("Available", a_status, a_reason, a_message),
            condition("Progressing", p_status, p_reason, &p_message),
        ],
    })
}

#[cfg(test)]
mod tests;
