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

use flotilla_shared::api::{
    Condition, Deployment, DeploymentStrategyType, Kind, ObjectMeta, Pod, ReplicaSet, ReplicaSetSpec,
    WorkloadStatus,
};

use super::common::{self, int_or_percent};
use super::pods::{self, value};
use super::{Action, Controller, Event, Lists};

/// The revision annotation on ReplicaSets, and the change cause copied from the Deployment to
/// its new ReplicaSet (what `rollout history` shows).
pub use flotilla_shared::api::wellknown::{CHANGE_CAUSE, REVISION};
/// The label carrying the template hash, on ReplicaSets, their selectors and their pods.
const HASH_LABEL: &str = "pod-template-hash";

/// The Deployment controller's loop: ReplicaSets per revision, on every change of Deployments
/// and ReplicaSets.
pub struct Deployments;

impl Controller for Deployments {
    const KIND: Kind = Kind::Deployment;
    const WATCHES: &'static [Kind] = &[Kind::Deployment, Kind::ReplicaSet];
    const LISTS: &'static [Kind] = &[Kind::ReplicaSet, Kind::Pod];
    const RESYNC: Duration = Duration::from_secs(5);
    const SOURCE: &'static str = "deployment-controller";
    type Owner = Deployment;

    fn reconcile(d: &Deployment, lists: &Lists, now: i64, _: &mut dyn FnMut() -> String) -> Vec<Action> {
        let mine: Vec<&ReplicaSet> = lists.owned_by(&d.metadata);
        let my_pods: Vec<&Pod> = mine.iter().flat_map(|rs| lists.owned_by::<Pod>(&rs.metadata)).collect();
        let mut actions = reconcile(d, &mine, &my_pods, now);
        // Pods an earlier hub's Deployment controller owned directly: ReplicaSets replace them.
        for p in lists.owned_by::<Pod>(&d.metadata) {
            actions.push(Action::delete(Kind::Pod, p.metadata.name()));
        }
        actions
    }
}

/// A ReplicaSet write the controller decides, typed until it becomes an `Action`.
#[derive(Debug, Clone)]
enum Write {
    Create(ReplicaSet),
    /// Its resourceVersion makes it a compare-and-swap.
    Update(ReplicaSet),
    Delete(String),
}

/// The pod-template hash: the hash of the template as the user wrote it (as the store keeps
/// it: the API stores what the typed template serializes to, so this is that JSON's hash).
pub fn template_hash(template: &flotilla_shared::api::PodTemplateSpec) -> String {
    common::hash(&value(template))
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> &'a str {
    meta.labels().get(key).map_or("", String::as_str)
}

fn revision(rs: &ReplicaSet) -> i64 {
    let annotations = rs.metadata.annotations.as_ref();
    annotations.and_then(|a| a.get(REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0).max(0)
}

fn replicas(rs: &ReplicaSet) -> i64 {
    i64::from(rs.spec.replicas.unwrap_or(0)).max(0)
}

fn available(rs: &ReplicaSet) -> i64 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0).max(0)
}

fn set_replicas(rs: &ReplicaSet, n: i64) -> ReplicaSet {
    let mut rs = rs.clone();
    rs.spec.replicas = Some(i32::try_from(n).unwrap_or(i32::MAX));
    rs
}

/// `maxSurge` and `maxUnavailable` for `want` replicas, with Kubernetes' defaults (25%, 25%)
/// and fencepost rule (both zero would stall: maxUnavailable becomes 1).
pub fn surge_and_unavailable(deploy: &Deployment, want: i64) -> (i64, i64) {
    let strategy = deploy.spec.strategy.as_ref();
    if strategy.and_then(|s| s.type_) == Some(DeploymentStrategyType::Recreate) {
        return (0, want);
    }
    let ru = strategy.and_then(|s| s.rolling_update.as_ref());
    let surge = ru.and_then(|r| r.max_surge.as_ref()).map(value);
    let unavailable = ru.and_then(|r| r.max_unavailable.as_ref()).map(value);
    let surge = int_or_percent(surge.as_ref(), want, -1, true);
    let unavailable = int_or_percent(unavailable.as_ref(), want, -1, false);
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
/// those ReplicaSets control (Recreate waits for the old ones to be gone). The actions: the
/// ReplicaSet writes, the status, then the scaling events.
pub fn reconcile(deploy: &Deployment, replicasets: &[&ReplicaSet], pods: &[&Pod], now: i64) -> Vec<Action> {
    let mut writes = Vec::new();
    let template = &deploy.spec.template;
    let hash = template_hash(template);
    let want = i64::from(deploy.spec.replicas.unwrap_or(1)).clamp(0, i64::from(i32::MAX));
    let paused = deploy.spec.paused.unwrap_or(false);
    let strategy = deploy.spec.strategy.as_ref().and_then(|s| s.type_);
    let recreate = strategy == Some(DeploymentStrategyType::Recreate);
    let (max_surge, max_unavailable) = surge_and_unavailable(deploy, want);

    let is_new = |rs: &ReplicaSet| label(&rs.metadata, HASH_LABEL) == hash;
    let mut new_rs: Option<ReplicaSet> = replicasets.iter().find(|r| is_new(r)).map(|r| (*r).clone());
    let mut old: Vec<ReplicaSet> = replicasets.iter().filter(|r| !is_new(r)).map(|r| (*r).clone()).collect();
    old.sort_by_key(|r| (revision(r), r.metadata.creation_timestamp.clone().unwrap_or_default()));
    let max_old_revision = old.iter().map(revision).max().unwrap_or(0).min(i64::MAX - 1);

    // The new revision: a ReplicaSet made now, or an old one brought back (rollback), which
    // takes the next revision number.
    if let Some(rs) = &new_rs {
        if revision(rs) <= max_old_revision && !paused {
            let mut rs = rs.clone();
            let annotations = rs.metadata.annotations.get_or_insert_default();
            annotations.insert(REVISION.into(), (max_old_revision + 1).to_string());
            writes.push(Write::Update(rs.clone()));
            new_rs = Some(rs);
        }
    }
    let old_live = old.iter().map(replicas).sum::<i64>();
    let old_pods = pods
        .iter()
        .filter(|p| !pods::is_terminal(p))
        .filter(|p| label(&p.metadata, HASH_LABEL) != hash)
        .count();

    if paused {
        // Only scaling: the newest ReplicaSet with replicas (or the new one) follows `replicas`
        // when it is the only one running.
        let mut active: Vec<&ReplicaSet> =
            replicasets.iter().copied().filter(|r| replicas(r) > 0 || new_rs.as_ref() == Some(*r)).collect();
        active.sort_by_key(|r| revision(r));
        if let [only] = active.as_slice() {
            if replicas(only) != want {
                writes.push(Write::Update(set_replicas(only, want)));
            }
        }
    } else if recreate {
        if old_live > 0 {
            for rs in old.iter().filter(|r| replicas(r) > 0) {
                writes.push(scaled(rs, 0));
            }
        } else if old_pods == 0 {
            match &new_rs {
                None => writes.push(create(deploy, &hash, max_old_revision + 1, want)),
                Some(rs) if replicas(rs) != want => writes.push(scaled(rs, want)),
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
            None => writes.push(create(deploy, &hash, max_old_revision + 1, target)),
            Some(rs) if target != new_replicas => writes.push(scaled(rs, target)),
            Some(_) => {}
        }
        // As Kubernetes: a round that grew the new ReplicaSet leaves the old ones for the next.
        if !scaled_up || target < new_replicas {
            writes.extend(scale_down_old(&old, new_rs.as_ref(), want, max_unavailable));
        }
    }

    // History: once a rollout is complete, old ReplicaSets without pods beyond the limit go.
    let complete = new_rs.as_ref().is_some_and(|rs| replicas(rs) == want && available(rs) >= want)
        && old_live == 0
        && old_pods == 0;
    if complete {
        let limit = deploy.spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        let idle: Vec<&ReplicaSet> = old
            .iter()
            .filter(|r| replicas(r) == 0 && r.status.as_ref().and_then(|s| s.replicas).unwrap_or(0) == 0)
            .collect();
        for rs in idle.iter().take(idle.len().saturating_sub(limit)) {
            writes.push(Write::Delete(rs.metadata.name().to_string()));
        }
    }

    // Available means at least `want - maxUnavailable` pods; Recreate tolerates none missing.
    let tolerated = if recreate { 0 } else { max_unavailable };
    let status = status(deploy, new_rs.as_ref(), replicasets, want, tolerated, paused, complete, now);
    let writes = merge_updates(writes);
    let events = events(&writes, replicasets);
    let mut actions: Vec<Action> = writes
        .into_iter()
        .map(|w| match w {
            Write::Create(rs) => Action::create(Kind::ReplicaSet, value(&rs)),
            Write::Update(rs) => Action::update(Kind::ReplicaSet, value(&rs)),
            Write::Delete(name) => Action::delete(Kind::ReplicaSet, name),
        })
        .collect();
    if deploy.status.as_ref() != Some(&status) {
        actions.push(Action::UpdateStatus(value(&status)));
    }
    actions.extend(events.into_iter().map(Action::from));
    actions
}

fn scaled(rs: &ReplicaSet, n: i64) -> Write {
    Write::Update(set_replicas(rs, n))
}

/// One write per ReplicaSet and round: a later update of the same ReplicaSet (its replicas) is
/// folded into the first (its revision), which a compare-and-swap would otherwise refuse.
fn merge_updates(writes: Vec<Write>) -> Vec<Write> {
    let mut out: Vec<Write> = Vec::with_capacity(writes.len());
    for w in writes {
        if let Write::Update(rs) = &w {
            let same =
                |o: &&mut Write| matches!(o, Write::Update(f) if f.metadata.name() == rs.metadata.name());
            if let Some(Write::Update(first)) = out.iter_mut().find(same) {
                first.spec.replicas = rs.spec.replicas;
                continue;
            }
        }
        out.push(w);
    }
    out
}

/// The events for `writes` (scaling ReplicaSets up and down), as Kubernetes words them;
/// `replicasets` are the ReplicaSets before the writes.
fn events(writes: &[Write], replicasets: &[&ReplicaSet]) -> Vec<Event> {
    writes
        .iter()
        .filter_map(|w| match w {
            Write::Update(rs) => {
                let name = rs.metadata.name();
                let before =
                    replicasets.iter().find(|r| r.metadata.name() == name).map_or(0, |r| replicas(r));
                let after = replicas(rs);
                let verb = match after.cmp(&before) {
                    std::cmp::Ordering::Greater => "up",
                    std::cmp::Ordering::Less => "down",
                    std::cmp::Ordering::Equal => return None,
                };
                Some(Event::normal(
                    "ScalingReplicaSet",
                    format!("Scaled {verb} replica set {name} to {after} from {before}"),
                ))
            }
            Write::Create(rs) => Some(Event::normal(
                "ScalingReplicaSet",
                format!("Scaled up replica set {} to {}", rs.metadata.name(), replicas(rs)),
            )),
            Write::Delete(_) => None,
        })
        .collect()
}

/// The ReplicaSet of a new revision: the template labelled with its hash, selected by it.
fn create(deploy: &Deployment, hash: &str, revision: i64, replicas: i64) -> Write {
    let mut template = deploy.spec.template.clone();
    let meta = template.metadata.get_or_insert_default();
    meta.labels.get_or_insert_default().insert(HASH_LABEL.into(), hash.into());
    let labels = meta.labels.clone();
    let mut selector = deploy.spec.selector.clone();
    selector.match_labels.get_or_insert_default().insert(HASH_LABEL.into(), hash.into());
    let mut annotations = std::collections::BTreeMap::from([(REVISION.to_string(), revision.to_string())]);
    if let Some(cause) = deploy.metadata.annotations.as_ref().and_then(|a| a.get(CHANGE_CAUSE)) {
        annotations.insert(CHANGE_CAUSE.into(), cause.clone());
    }
    Write::Create(ReplicaSet {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", deploy.metadata.name())),
            namespace: Some(pods::namespace(&deploy.metadata).to_string()),
            labels,
            annotations: Some(annotations),
            owner_references: Some(vec![pods::owner_ref(deploy)]),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            min_ready_seconds: deploy.spec.min_ready_seconds,
            selector,
            template,
        },
        status: None,
    })
}

/// Kubernetes' reconcileOldReplicaSets: first the unhealthy old pods, then available ones while
/// at least `want - max_unavailable` stay available.
fn scale_down_old(
    old: &[ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    want: i64,
    max_unavailable: i64,
) -> Vec<Write> {
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
    deploy: &Deployment,
    new_rs: Option<&ReplicaSet>,
    replicasets: &[&ReplicaSet],
    want: i64,
    max_unavailable: i64,
    paused: bool,
    complete: bool,
    now: i64,
) -> WorkloadStatus {
    let sum = |f: fn(&WorkloadStatus) -> Option<i64>| {
        replicasets.iter().map(|r| r.status.as_ref().and_then(f).unwrap_or(0).max(0)).sum::<i64>()
    };
    let total = sum(|s| s.replicas);
    let ready = sum(|s| s.ready_replicas);
    let avail = sum(|s| s.available_replicas);
    let updated = new_rs.and_then(|r| r.status.as_ref()?.replicas).unwrap_or(0);
    let rs_name = new_rs.map_or("", |r| r.metadata.name());
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
    let old = deploy.status.as_ref().and_then(|s| s.conditions.as_ref());
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        // The transition time moves only when the status does.
        let since = old
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == status))
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| common::rfc3339(now));
        Condition {
            type_: type_.into(),
            status: status.into(),
            last_transition_time: Some(since),
            last_heartbeat_time: None,
            reason: Some(reason.into()),
            message: Some(message.into()),
        }
    };
    WorkloadStatus {
        observed_generation: Some(pods::generation(&deploy.metadata)),
        replicas: Some(total),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(avail),
        unavailable_replicas: Some((want - avail).max(0)),
        conditions: Some(vec![
            condition("Available", a_status, a_reason, a_message),
            condition("Progressing", p_status, p_reason, &p_message),
        ]),
        ..WorkloadStatus::default()
    }
}

#[cfg(test)]
mod tests;
