//! The Job controller (batch/v1 Job), NonIndexed completion mode, as a pure decision.
//!
//! Modelled on Kubernetes' Job controller: up to `min(parallelism, completions - succeeded)` pods
//! run at once (with `completions` unset, the first success ends the Job once no pod is active);
//! failed pods (plus container restarts under `restartPolicy: OnFailure`) count toward
//! `backoffLimit`, and a replacement for a failed pod waits `10 s * 2^(n-1)` (at most 360 s);
//! `activeDeadlineSeconds` fails the Job; `suspend` deletes its active pods and clears
//! `startTime`; `ttlSecondsAfterFinished` deletes a finished Job. Finished pods are kept.
//!
//! Left out: Indexed completion mode, `podFailurePolicy`, `successPolicy`, `backoffLimitPerIndex`,
//! `podReplacementPolicy`, pod-tracking finalizers (a pod deleted by someone else is not counted),
//! the `FailureTarget`/`SuccessCriteriaMet` conditions, and validation of the Job (for instance
//! that the template's restartPolicy is Never or OnFailure).

use std::cmp::Reverse;
use std::time::Duration;

use flotilla_shared::api::{
    ContainerStatus, JobCondition, JobSpec, JobStatus, Kind, Pod, PodPhase, Resource, RestartPolicy,
};

use super::common::{rfc3339, unix_seconds};
use super::pods::{self, is_deleting, is_ready, is_terminal, node_of, phase, value};
use super::{Action, Controller, Lists};

/// A Job as this controller reads it: its status as Kubernetes' JobStatus, whose conditions
/// carry `lastProbeTime`.
pub type Job = Resource<JobSpec, JobStatus>;

/// The Job controller's loop: pods to completion; resynced every 2 s for back-off and
/// deadlines.
pub struct Jobs;

impl Controller for Jobs {
    const KIND: Kind = Kind::Job;
    const WATCHES: &'static [Kind] = &[Kind::Job, Kind::Pod];
    const LISTS: &'static [Kind] = &[Kind::Pod];
    const RESYNC: Duration = Duration::from_secs(2);
    const SOURCE: &'static str = "job-controller";
    type Owner = Job;

    fn reconcile(job: &Job, lists: &Lists, now: i64, suffix: &mut dyn FnMut() -> String) -> Vec<Action> {
        reconcile(job, &lists.owned_by(&job.metadata), now, suffix)
    }
}

/// At most this many pods are created in one round (Kubernetes' burst per sync).
const MAX_CREATES_PER_ROUND: usize = 500;
/// The back-off after the first failed pod, doubled per further failure, and its cap (seconds).
const BACKOFF_BASE: i64 = 10;
const BACKOFF_MAX: i64 = 360;

/// A non-negative count (anything else counts as absent).
fn count(n: Option<impl Into<i64>>) -> Option<i64> {
    n.map(Into::into).filter(|n| *n >= 0)
}

fn container_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let main = status.and_then(|s| s.container_statuses.as_ref());
    let init = status.and_then(|s| s.init_container_statuses.as_ref());
    main.into_iter().flatten().chain(init.into_iter().flatten())
}

/// A count as usize (negative as 0, saturating where usize is narrower).
fn to_usize(n: i64) -> usize {
    usize::try_from(n.max(0)).unwrap_or(usize::MAX)
}

/// Container restarts of a pod.
fn restarts(pod: &Pod) -> i64 {
    container_statuses(pod).map(|s| s.restart_count).filter(|n| *n > 0).fold(0, i64::saturating_add)
}

/// When a failed pod failed: its containers' latest finishedAt, else its Ready condition's
/// transition, else its creation.
fn failure_time(pod: &Pod) -> Option<i64> {
    let finished = container_statuses(pod)
        .filter_map(|s| s.state.as_ref()?.terminated.as_ref()?.finished_at.as_deref())
        .filter_map(unix_seconds)
        .max();
    let ready_since = || pods::ready_condition(pod)?.last_transition_time.as_deref().and_then(unix_seconds);
    finished
        .or_else(ready_since)
        .or_else(|| pod.metadata.creation_timestamp.as_deref().and_then(unix_seconds))
}

/// The back-off after the `failures`-th failed pod.
fn backoff(failures: usize) -> i64 {
    let doublings = failures.saturating_sub(1).min(6) as u32;
    (BACKOFF_BASE << doublings).min(BACKOFF_MAX)
}

fn is_true(c: &JobCondition, kind: &str) -> bool {
    c.type_ == kind && c.status == "True"
}

/// Sets a condition; true when it changed (then its times are `now`).
fn set_condition(
    conds: &mut Vec<JobCondition>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: i64,
) -> bool {
    let new = JobCondition {
        type_: kind.into(),
        status: status.into(),
        last_probe_time: Some(rfc3339(now)),
        last_transition_time: Some(rfc3339(now)),
        reason: Some(reason.into()),
        message: Some(message.into()),
    };
    match conds.iter_mut().find(|c| c.type_ == kind) {
        Some(c) if c.status == status => false,
        Some(c) => {
            *c = new;
            true
        }
        None => {
            conds.push(new);
            true
        }
    }
}

/// Decides one round for one Job. `pods` are the pods it controls; `now` is Unix seconds;
/// `suffix` yields random pod-name suffixes. Order of the actions: deletes, creates, the status,
/// events (deletes, creates, then the Job's own); for a finished Job only deletes (with their
/// events) of pods still active and a delete of the Job itself once its TTL ran out.
pub fn reconcile(job: &Job, pods: &[&Pod], now: i64, mut suffix: impl FnMut() -> String) -> Vec<Action> {
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut deletes: Vec<&Pod> = Vec::new();
    let active: Vec<&Pod> = pods.iter().copied().filter(|p| !is_terminal(p) && !is_deleting(p)).collect();
    let old_status = job.status.as_ref();
    let mut conds: Vec<JobCondition> = old_status.and_then(|s| s.conditions.clone()).unwrap_or_default();
    // A finished Job only waits for its TTL (and removes a pod left active by a failed delete).
    if let Some(done) = conds.iter().find(|c| is_true(c, "Complete") || is_true(c, "Failed")) {
        out.extend(delete_actions(&active));
        let finished_at = old_status
            .and_then(|s| s.completion_time.as_deref())
            .and_then(unix_seconds)
            .or_else(|| done.last_transition_time.as_deref().and_then(unix_seconds));
        if let (Some(ttl), Some(at)) = (count(job.spec.ttl_seconds_after_finished), finished_at) {
            if now >= at.saturating_add(ttl) {
                out.push(Action::delete(Kind::Job, job.metadata.name()));
            }
        }
        return out;
    }

    let succeeded = pods.iter().filter(|p| phase(p) == PodPhase::Succeeded).count();
    let failed_pods: Vec<&Pod> = pods.iter().copied().filter(|p| phase(p) == PodPhase::Failed).collect();
    let mut failed = failed_pods.len();
    let mut start_time = old_status.and_then(|s| s.start_time.clone()).filter(|s| unix_seconds(s).is_some());
    let mut completion_time = None;
    let mut creates = Vec::new();

    if job.spec.suspend == Some(true) {
        deletes.extend(&active);
        start_time = None;
        if set_condition(&mut conds, "Suspended", "True", "JobSuspended", "Job suspended", now) {
            let message = "Job suspended".to_string();
            events.push(Action::Event { warning: false, reason: "Suspended", message });
        }
    } else {
        if conds.iter().any(|c| is_true(c, "Suspended")) {
            set_condition(&mut conds, "Suspended", "False", "JobResumed", "Job resumed", now);
            let message = "Job resumed".to_string();
            events.push(Action::Event { warning: false, reason: "Resumed", message });
        }
        let start_str = start_time.get_or_insert_with(|| rfc3339(now)).clone();
        let start = unix_seconds(&start_str).unwrap_or(now);
        let parallelism = count(job.spec.parallelism).unwrap_or(1);
        let completions = count(job.spec.completions);
        let backoff_limit = count(job.spec.backoff_limit).unwrap_or(6);
        // As Kubernetes: failed pods past the limit, or under OnFailure the restarts of the
        // running and pending pods reaching it (any restart when the limit is 0).
        let on_failure = job.spec.template.spec.restart_policy == Some(RestartPolicy::OnFailure);
        let restarts: i64 = if on_failure {
            pods.iter()
                .filter(|p| matches!(phase(p), PodPhase::Running | PodPhase::Pending))
                .map(|p| restarts(p))
                .fold(0, i64::saturating_add)
        } else {
            0
        };
        let restarts_exceeded =
            on_failure && if backoff_limit == 0 { restarts > 0 } else { restarts >= backoff_limit };
        let deadline = count(job.spec.active_deadline_seconds).filter(|d| *d > 0);
        let complete = match completions {
            Some(c) => succeeded as i64 >= c,
            None => succeeded > 0 && active.is_empty(),
        };

        let failure = if failed as i64 > backoff_limit || restarts_exceeded {
            Some(("BackoffLimitExceeded", "Job has reached the specified backoff limit"))
        } else if deadline.is_some_and(|d| now >= start.saturating_add(d)) {
            Some(("DeadlineExceeded", "Job was active longer than specified deadline"))
        } else {
            None
        };
        if let Some((reason, message)) = failure {
            deletes.extend(&active);
            failed += active.len();
            set_condition(&mut conds, "Failed", "True", reason, message, now);
            events.push(Action::Event { warning: true, reason, message: message.to_string() });
        } else if complete {
            deletes.extend(&active);
            completion_time = Some(rfc3339(now));
            let message = "Reached expected number of succeeded pods";
            set_condition(&mut conds, "Complete", "True", "CompletionsReached", message, now);
            events.push(Action::Event {
                warning: false,
                reason: "Completed",
                message: "Job completed".into(),
            });
        } else {
            let want = match completions {
                Some(c) => to_usize(parallelism.min(c.saturating_sub(succeeded as i64))),
                None if succeeded > 0 => active.len(),
                None => to_usize(parallelism),
            };
            if active.len() > want {
                // Too many (parallelism lowered): unbound, unready and newest pods go first.
                let mut extra = active.clone();
                extra.sort_by_key(|p| {
                    let created = p.metadata.creation_timestamp.as_deref().unwrap_or_default();
                    (node_of(p).is_some(), is_ready(p), Reverse((created, p.metadata.name())))
                });
                deletes.extend(extra.into_iter().take(active.len() - want));
            } else if want > active.len() {
                let last_failure = failed_pods.iter().map(|p| failure_time(p).unwrap_or(start)).max();
                let backed_off =
                    last_failure.is_none_or(|at| now >= at.saturating_add(backoff(failed_pods.len())));
                if backed_off {
                    creates = make_pods(job, (want - active.len()).min(MAX_CREATES_PER_ROUND), &mut suffix);
                }
            }
        }
    }

    let (delete_acts, delete_events): (Vec<_>, Vec<_>) =
        delete_actions(&deletes).into_iter().partition(|a| matches!(a, Action::Delete { .. }));
    out.extend(delete_acts);
    let create_events = creates.iter().map(|p| Action::Event {
        warning: false,
        reason: "SuccessfulCreate",
        message: format!("Created pod: {}", p.metadata.name()),
    });
    let events: Vec<Action> = delete_events.into_iter().chain(create_events).chain(events).collect();
    let remaining: Vec<&&Pod> =
        active.iter().filter(|p| !deletes.iter().any(|d| std::ptr::eq(*d, **p))).collect();
    let status = JobStatus {
        conditions: (!conds.is_empty()).then_some(conds),
        start_time,
        completion_time,
        active: Some((remaining.len() + creates.len()) as i64),
        succeeded: Some(succeeded as i64),
        failed: Some(failed as i64),
        ready: Some(remaining.iter().filter(|p| is_ready(p)).count() as i64),
        terminating: None,
    };
    out.extend(creates.iter().map(|p| Action::create(Kind::Pod, value(p))));
    if old_status != Some(&status) {
        out.push(Action::UpdateStatus(value(&status)));
    }
    out.extend(events);
    out
}

/// Deletes of these pods, each with its SuccessfulDelete event.
fn delete_actions(pods: &[&Pod]) -> Vec<Action> {
    let mut out: Vec<Action> = pods.iter().map(|p| Action::delete(Kind::Pod, p.metadata.name())).collect();
    out.extend(pods.iter().map(|p| Action::Event {
        warning: false,
        reason: "SuccessfulDelete",
        message: format!("Deleted pod: {}", p.metadata.name()),
    }));
    out
}

/// `n` new pods of the Job's template, owned by the Job and labelled as Kubernetes does.
fn make_pods(job: &Job, n: usize, suffix: &mut impl FnMut() -> String) -> Vec<Pod> {
    let (job_name, job_uid) = (job.metadata.name(), pods::uid(&job.metadata));
    let labels = [
        ("batch.kubernetes.io/job-name", job_name),
        ("job-name", job_name),
        ("batch.kubernetes.io/controller-uid", job_uid),
        ("controller-uid", job_uid),
    ];
    (0..n)
        .map(|_| {
            let pod_name = format!("{job_name}-{}", suffix());
            let mut pod = pods::pod_from_template(&job.spec.template, &pod_name, job, &labels);
            for r in pod.metadata.owner_references.iter_mut().flatten().take(1) {
                for (field, default) in [(&mut r.api_version, "batch/v1"), (&mut r.kind, "Job")] {
                    if field.is_empty() {
                        *field = default.into();
                    }
                }
            }
            pod
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::workloads::parse;
    use serde_json::{json, Value};

    /// The controller run on JSON fixtures, parsed as the loop parses stored objects.
    fn reconcile(job: &Value, pods: &[Value], now: i64, suffix: impl FnMut() -> String) -> Vec<Action> {
        let job: Job = parse(Kind::Job, job).expect("a Job");
        let pods: Vec<Pod> = pods.iter().map(|p| parse(Kind::Pod, p).expect("a pod")).collect();
        super::reconcile(&job, &pods.iter().collect::<Vec<_>>(), now, suffix)
    }

    const T: i64 = 1_700_000_000;

    fn job(spec: Value) -> Value {
        let mut spec = spec;
        spec["template"] = json!({"metadata": {"labels": {"app": "work"}},
            "spec": {"restartPolicy": spec.get("restartPolicy").cloned().unwrap_or("Never".into()),
                     "containers": [{"name": "c", "image": "busybox"}]}});
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": "pi", "namespace": "default", "uid": "j1"}, "spec": spec})
    }

    /// One round: runs the controller and applies its actions to the Job and the pods.
    /// Returns the actions and whether the Job was deleted.
    fn round(job: &mut Value, pods: &mut Vec<Value>, now: i64) -> (Vec<Action>, bool) {
        let mut n = pods.len();
        let actions = reconcile(job, pods, now, || {
            n += 1;
            format!("p{n}")
        });
        let mut deleted = false;
        for a in &actions {
            match a {
                Action::Create { object: p, .. } => {
                    let mut p = p.clone();
                    p["metadata"]["creationTimestamp"] = rfc3339(now).into();
                    p["status"] = json!({"phase": "Pending"});
                    pods.push(p);
                }
                Action::Delete { kind: Kind::Job, .. } => deleted = true,
                Action::Delete { name, .. } => pods.retain(|p| p["metadata"]["name"] != name.as_str()),
                Action::UpdateStatus(s) => job["status"] = s.clone(),
                Action::Event { .. } | Action::Update { .. } => {}
            }
        }
        (actions, deleted)
    }

    /// Ends pod `i` in `phase` at `at`.
    fn finish(pods: &mut [Value], i: usize, phase: &str, at: i64) {
        let exit_code = if phase == "Failed" { 1 } else { 0 };
        pods[i]["status"] = json!({"phase": phase, "containerStatuses": [{"name": "c", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": exit_code, "finishedAt": rfc3339(at)}}}]});
    }

    fn creates(actions: &[Action]) -> usize {
        actions.iter().filter(|a| matches!(a, Action::Create { .. })).count()
    }

    fn deletes(actions: &[Action]) -> usize {
        actions.iter().filter(|a| matches!(a, Action::Delete { kind: Kind::Pod, .. })).count()
    }

    fn condition(job: &Value, kind: &str) -> Option<(String, String)> {
        let c = job["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)?;
        Some((c["status"].as_str()?.to_string(), c["reason"].as_str()?.to_string()))
    }

    fn has_event(actions: &[Action], reason: &str) -> bool {
        actions.iter().any(|a| matches!(a, Action::Event { reason: r, .. } if *r == reason))
    }

    #[test]
    fn first_round_creates_parallelism_pods_and_sets_start_time() {
        let (mut j, mut pods) = (job(json!({"parallelism": 2, "completions": 5})), vec![]);
        let (actions, _) = round(&mut j, &mut pods, T);
        assert_eq!(creates(&actions), 2);
        assert_eq!(pods[0]["metadata"]["name"], "pi-p1");
        let labels = &pods[0]["metadata"]["labels"];
        assert_eq!(
            (labels["job-name"].as_str(), labels["batch.kubernetes.io/controller-uid"].as_str()),
            (Some("pi"), Some("j1"))
        );
        assert_eq!(labels["app"], "work");
        assert_eq!(pods[0]["metadata"]["ownerReferences"][0]["kind"], "Job");
        assert_eq!(j["status"]["startTime"], rfc3339(T));
        assert_eq!(j["status"]["active"], 2);
        assert!(matches!(&actions[2], Action::UpdateStatus(_)));
        assert!(has_event(&actions, "SuccessfulCreate"));
        // Level-triggered: the next round sees its own pods and does nothing.
        assert_eq!(round(&mut j, &mut pods, T + 1).0, vec![]);
    }

    #[test]
    fn completions_reached_across_rounds() {
        let (mut j, mut pods) = (job(json!({"parallelism": 2, "completions": 3})), vec![]);
        round(&mut j, &mut pods, T);
        finish(&mut pods, 0, "Succeeded", T + 5);
        finish(&mut pods, 1, "Succeeded", T + 5);
        let (actions, _) = round(&mut j, &mut pods, T + 6);
        assert_eq!(creates(&actions), 1, "only the one remaining completion");
        finish(&mut pods, 2, "Succeeded", T + 9);
        let (actions, _) = round(&mut j, &mut pods, T + 10);
        assert_eq!(creates(&actions), 0);
        assert_eq!(condition(&j, "Complete"), Some(("True".into(), "CompletionsReached".into())));
        assert_eq!((j["status"]["succeeded"].as_i64(), j["status"]["active"].as_i64()), (Some(3), Some(0)));
        assert_eq!(j["status"]["completionTime"], rfc3339(T + 10));
        assert!(has_event(&actions, "Completed"));
        assert_eq!(pods.len(), 3, "finished pods are kept");
        assert_eq!(round(&mut j, &mut pods, T + 20).0, vec![]);
    }

    #[test]
    fn nil_completions_complete_on_first_success() {
        let (mut j, mut pods) = (job(json!({"parallelism": 2})), vec![]);
        round(&mut j, &mut pods, T);
        finish(&mut pods, 0, "Succeeded", T + 3);
        let (actions, _) = round(&mut j, &mut pods, T + 4);
        assert_eq!((creates(&actions), deletes(&actions)), (0, 0), "no new pods, the other one finishes");
        assert_eq!(condition(&j, "Complete"), None);
        finish(&mut pods, 1, "Succeeded", T + 6);
        round(&mut j, &mut pods, T + 7);
        assert_eq!(condition(&j, "Complete"), Some(("True".into(), "CompletionsReached".into())));
        assert_eq!(j["status"]["succeeded"], 2);
    }

    #[test]
    fn never_policy_failures_back_off() {
        let (mut j, mut pods) = (job(json!({"completions": 1})), vec![]);
        round(&mut j, &mut pods, T);
        finish(&mut pods, 0, "Failed", T + 1);
        let (actions, _) = round(&mut j, &mut pods, T + 6);
        assert_eq!(creates(&actions), 0, "10 s back-off after the first failure");
        assert_eq!(j["status"]["failed"], 1);
        assert_eq!(round(&mut j, &mut pods, T + 8).0, vec![], "steady while backing off");
        assert_eq!(creates(&round(&mut j, &mut pods, T + 11).0), 1);
        finish(&mut pods, 1, "Failed", T + 12);
        assert_eq!(creates(&round(&mut j, &mut pods, T + 31).0), 0, "20 s after the second");
        assert_eq!(creates(&round(&mut j, &mut pods, T + 32).0), 1);
        assert_eq!(j["status"]["failed"], 2);
        assert_eq!(condition(&j, "Failed"), None);
        assert_eq!(
            (backoff(1), backoff(3), backoff(6), backoff(7), backoff(usize::MAX)),
            (10, 40, 320, 360, 360)
        );
    }

    #[test]
    fn backoff_limit_exceeded_fails_and_deletes_active() {
        let (mut j, mut pods) = (job(json!({"parallelism": 3, "completions": 3, "backoffLimit": 1})), vec![]);
        round(&mut j, &mut pods, T);
        finish(&mut pods, 0, "Failed", T + 1);
        round(&mut j, &mut pods, T + 2);
        assert_eq!(condition(&j, "Failed"), None);
        finish(&mut pods, 1, "Failed", T + 3);
        let (actions, _) = round(&mut j, &mut pods, T + 4);
        assert_eq!(deletes(&actions), 1, "the one active pod");
        assert_eq!(condition(&j, "Failed"), Some(("True".into(), "BackoffLimitExceeded".into())));
        assert_eq!((j["status"]["failed"].as_i64(), j["status"]["active"].as_i64()), (Some(3), Some(0)));
        assert!(actions.contains(&Action::Event {
            warning: true,
            reason: "BackoffLimitExceeded",
            message: "Job has reached the specified backoff limit".into()
        }));
        assert_eq!(pods.len(), 2, "failed pods are kept");
        assert_eq!(round(&mut j, &mut pods, T + 100).0, vec![]);
    }

    #[test]
    fn on_failure_restarts_count_toward_the_limit() {
        let (mut j, mut pods) = (job(json!({"backoffLimit": 2, "restartPolicy": "OnFailure"})), vec![]);
        round(&mut j, &mut pods, T);
        pods[0]["status"] = json!({"phase": "Running", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 1}]});
        assert_eq!(round(&mut j, &mut pods, T + 1).0, vec![], "1 restart is within the limit");
        pods[0]["status"]["containerStatuses"][0]["restartCount"] = 2.into();
        let (actions, _) = round(&mut j, &mut pods, T + 2);
        assert_eq!(actions[0], Action::delete(Kind::Pod, "pi-p1"));
        assert_eq!(condition(&j, "Failed"), Some(("True".into(), "BackoffLimitExceeded".into())));
        // Under Never, restarts do not count.
        let mut never = job(json!({"backoffLimit": 0}));
        never["status"] =
            json!({"startTime": rfc3339(T), "active": 1, "succeeded": 0, "failed": 0, "ready": 0});
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": []},
            "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": true, "restartCount": 5}]}});
        assert_eq!(reconcile(&never, &[pod], T, || "s".into()), vec![]);
    }

    #[test]
    fn active_deadline_exceeded() {
        let (mut j, mut pods) = (job(json!({"activeDeadlineSeconds": 30})), vec![]);
        round(&mut j, &mut pods, T);
        assert_eq!(round(&mut j, &mut pods, T + 29).0, vec![]);
        let (actions, _) = round(&mut j, &mut pods, T + 30);
        assert_eq!(deletes(&actions), 1);
        assert_eq!(condition(&j, "Failed"), Some(("True".into(), "DeadlineExceeded".into())));
        assert!(actions.contains(&Action::Event {
            warning: true,
            reason: "DeadlineExceeded",
            message: "Job was active longer than specified deadline".into()
        }));
        assert_eq!(j["status"]["failed"], 1);
    }

    #[test]
    fn suspend_deletes_active_pods_and_resume_creates_again() {
        let (mut j, mut pods) = (job(json!({"parallelism": 2, "completions": 4})), vec![]);
        round(&mut j, &mut pods, T);
        j["spec"]["suspend"] = true.into();
        let (actions, _) = round(&mut j, &mut pods, T + 5);
        assert_eq!((deletes(&actions), creates(&actions)), (2, 0));
        assert_eq!(condition(&j, "Suspended"), Some(("True".into(), "JobSuspended".into())));
        assert_eq!(j["status"].get("startTime"), None);
        assert_eq!(j["status"]["active"], 0);
        assert_eq!(round(&mut j, &mut pods, T + 100).0, vec![]);
        j["spec"]["suspend"] = false.into();
        let (actions, _) = round(&mut j, &mut pods, T + 200);
        assert_eq!(creates(&actions), 2);
        assert_eq!(condition(&j, "Suspended"), Some(("False".into(), "JobResumed".into())));
        assert_eq!(j["status"]["startTime"], rfc3339(T + 200));
        assert!(has_event(&actions, "Resumed"));
        assert_eq!(round(&mut j, &mut pods, T + 201).0, vec![]);
        // Created suspended: no pods and no start time.
        let mut s = job(json!({"suspend": true}));
        let (actions, _) = round(&mut s, &mut vec![], T);
        assert_eq!(creates(&actions), 0);
        assert_eq!(s["status"].get("startTime"), None);
    }

    #[test]
    fn ttl_deletes_the_finished_job_only_after_ttl() {
        let (mut j, mut pods) = (job(json!({"ttlSecondsAfterFinished": 60})), vec![]);
        round(&mut j, &mut pods, T);
        finish(&mut pods, 0, "Succeeded", T + 1);
        round(&mut j, &mut pods, T + 2);
        assert!(condition(&j, "Complete").is_some());
        assert_eq!(round(&mut j, &mut pods, T + 61), (vec![], false));
        assert_eq!(round(&mut j, &mut pods, T + 62), (vec![Action::delete(Kind::Job, "pi")], true));
        // A failed Job counts from its Failed condition.
        let mut f = job(json!({"ttlSecondsAfterFinished": 0}));
        f["status"] = json!({"conditions": [{"type": "Failed", "status": "True",
            "lastTransitionTime": rfc3339(T)}]});
        assert_eq!(reconcile(&f, &[], T - 1, || "s".into()), vec![]);
        assert_eq!(reconcile(&f, &[], T, || "s".into()), vec![Action::delete(Kind::Job, "pi")]);
        // Without a TTL it stays.
        f["spec"]["ttlSecondsAfterFinished"] = Value::Null;
        assert_eq!(reconcile(&f, &[], T + 1_000_000, || "s".into()), vec![]);
    }

    #[test]
    fn steady_states_produce_no_actions() {
        // Running: all pods active and ready.
        let (mut j, mut pods) = (job(json!({"parallelism": 2, "completions": 2})), vec![]);
        round(&mut j, &mut pods, T);
        for p in pods.iter_mut() {
            p["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        }
        let (actions, _) = round(&mut j, &mut pods, T + 2);
        assert_eq!(actions.len(), 1, "ready count changed: {actions:?}");
        assert_eq!(j["status"]["ready"], 2);
        assert_eq!(round(&mut j, &mut pods, T + 4).0, vec![]);
        // Finished: nothing, even with its pods still there.
        finish(&mut pods, 0, "Succeeded", T + 5);
        finish(&mut pods, 1, "Succeeded", T + 5);
        round(&mut j, &mut pods, T + 6);
        assert_eq!(round(&mut j, &mut pods, T + 10_000).0, vec![]);
    }

    #[test]
    fn parallelism_lowered_deletes_the_unready_pods() {
        let (mut j, mut pods) = (job(json!({"parallelism": 3, "completions": 3})), vec![]);
        round(&mut j, &mut pods, T);
        pods[1]["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        j["spec"]["parallelism"] = 1.into();
        let (actions, _) = round(&mut j, &mut pods, T + 1);
        assert_eq!(actions[..2], [Action::delete(Kind::Pod, "pi-p3"), Action::delete(Kind::Pod, "pi-p1")]);
    }

    #[test]
    fn garbage_input_does_not_panic() {
        // Garbage is refused at the loop's edge (logged and skipped).
        let garbage = [
            json!(null),
            json!("job"),
            json!({}),
            json!({"metadata": {"name": 5}, "status": "x"}),
            json!({"spec": {"parallelism": "2", "completions": "x", "backoffLimit": -3,
                            "activeDeadlineSeconds": "soon", "suspend": "yes", "template": 7},
                   "status": {"startTime": 12, "conditions": [1, {"type": "Complete"}]}}),
        ];
        for j in &garbage {
            assert!(parse::<Job>(Kind::Job, j).is_none(), "{j}");
        }
        let bad_pods = [
            json!(null),
            json!({"status": {"phase": "Failed", "containerStatuses": "x"}}),
            json!({"status": {"phase": "Running", "containerStatuses": [{"restartCount": i64::MAX}, 3]}}),
        ];
        for p in &bad_pods {
            assert!(parse::<Pod>(Kind::Pod, p).is_none(), "{p}");
        }
        // What parses does not panic on extreme numbers and clocks.
        let max = i64::from(i32::MAX);
        let mut odd = vec![
            job(json!({"parallelism": max, "completions": max, "ttlSecondsAfterFinished": max})),
            job(json!({"activeDeadlineSeconds": i64::MAX, "parallelism": -1, "backoffLimit": -3})),
        ];
        odd[0]["status"] =
            json!({"conditions": [{"type": "Failed", "status": "True", "lastTransitionTime": "x"}]});
        odd[1]["status"] = json!({"startTime": "2023-11-14T22:13:20Z", "conditions": [{"type": "Complete",
            "status": "False"}]});
        odd.push(job(json!({"parallelism": max, "completions": max})));
        let pods = [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "f"}, "spec": {"containers": []},
                "status": {"phase": "Failed"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "r"}, "spec": {"containers": []},
                "status": {"phase": "Running", "containerStatuses": [
                    {"name": "c", "ready": true, "restartCount": i64::MAX}]}}),
        ];
        for j in &odd {
            let actions = reconcile(j, &pods, T, || "s".into());
            assert!(creates(&actions) <= MAX_CREATES_PER_ROUND);
            reconcile(j, &[], i64::MAX, || "s".into());
            reconcile(j, &[], i64::MIN, || "s".into());
        }
    }
}
