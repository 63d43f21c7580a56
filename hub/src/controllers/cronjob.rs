//! The CronJob controller (batch/v1 CronJob), as Kubernetes' CronJob controller (v2): at each
//! schedule time it creates a Job named `{cronjob}-{minutes since epoch}` from
//! `spec.jobTemplate`, honouring `suspend`, `startingDeadlineSeconds` and `concurrencyPolicy`
//! (Allow, Forbid, Replace), keeps `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`
//! finished Jobs and reports `status.active`, `lastScheduleTime` and `lastSuccessfulTime`.
//!
//! Schedules are UTC only (`spec.timeZone` unset, `UTC` or `Etc/UTC`); another zone or an
//! unparseable schedule starts nothing (validation rejects both). Being stateless, a missed
//! start (past `startingDeadlineSeconds`) is recorded by moving `lastScheduleTime` to it, so
//! its `MissSchedule` event is emitted once (Kubernetes leaves a TODO there and silently
//! skips). Left out: `JobAlreadyActive`, `SawCompletedJob`, `UnexpectedJob` and
//! `MissingJob` events, and a newly created Job joins `status.active` next round (it has no uid
//! before the store assigns one).

use std::time::Duration;

use flotilla_shared::api::{
    ClaimReference, ConcurrencyPolicy, CronJob, CronJobStatus, Job, Kind, ObjectMeta, Resource,
};
use flotilla_shared::cron::Schedule;

use super::common::{rfc3339, unix_seconds};
use super::pods::{self, value};
use super::{Action, Controller, Lists};

/// The annotation carrying a Job's schedule time (RFC 3339).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// The CronJob controller's loop: Jobs on a schedule; checked every 5 s.
pub struct CronJobs;

impl Controller for CronJobs {
    const KIND: Kind = Kind::CronJob;
    const WATCHES: &'static [Kind] = &[Kind::CronJob, Kind::Job];
    const LISTS: &'static [Kind] = &[Kind::Job];
    const RESYNC: Duration = Duration::from_secs(5);
    const SOURCE: &'static str = "cronjob-controller";
    type Owner = CronJob;

    fn reconcile(cronjob: &CronJob, lists: &Lists, now: i64, _: &mut dyn FnMut() -> String) -> Vec<Action> {
        reconcile(cronjob, &lists.owned_by(&cronjob.metadata), now)
    }
}

/// The Job's `Complete` or `Failed` condition with status True, if any.
fn finished(job: &Job) -> Option<&str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let done =
        conditions.iter().find(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True");
    done.map(|c| c.type_.as_str())
}

fn created(meta: &ObjectMeta) -> Option<i64> {
    meta.creation_timestamp.as_deref().and_then(unix_seconds)
}

/// When the Job was scheduled (its annotation, else its creation), for ordering.
fn job_time(job: &Job) -> i64 {
    let annotation = job.metadata.annotations.as_ref().and_then(|a| a.get(SCHEDULED_TIMESTAMP));
    annotation.and_then(|t| unix_seconds(t)).or_else(|| created(&job.metadata)).unwrap_or(i64::MIN)
}

/// The latest schedule time in (`after`, `now`], searching back from `now` in growing windows
/// so that a long-missed every-minute schedule costs little.
fn latest_time(schedule: &Schedule, after: i64, now: i64) -> Option<i64> {
    for span in [3_600, 86_400, 32 * 86_400, 400 * 86_400, 1_500 * 86_400, 3_700 * 86_400] {
        let from = after.max(now.saturating_sub(span));
        let mut latest = None;
        let mut t = from;
        while let Some(next) = schedule.next_after(t).filter(|n| *n <= now) {
            latest = Some(next);
            t = next;
        }
        if latest.is_some() || from == after {
            return latest;
        }
    }
    None
}

/// Whether more than 100 schedule times fall in (`after`, `now`].
fn too_many_missed(schedule: &Schedule, after: i64, now: i64) -> bool {
    let mut t = after;
    for _ in 0..=100 {
        match schedule.next_after(t) {
            Some(next) if next <= now => t = next,
            _ => return false,
        }
    }
    true
}

/// The Job started for schedule time `t`.
fn new_job(cronjob: &CronJob, job_name: &str, t: i64) -> Job {
    let template = &cronjob.spec.job_template;
    let from = template.metadata.as_ref();
    let mut annotations = from.and_then(|m| m.annotations.clone()).unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339(t));
    let mut owner = pods::owner_ref(cronjob);
    for (field, default) in [(&mut owner.api_version, "batch/v1"), (&mut owner.kind, "CronJob")] {
        if field.is_empty() {
            *field = default.into();
        }
    }
    Resource {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        metadata: ObjectMeta {
            name: Some(job_name.into()),
            namespace: Some(pods::namespace(&cronjob.metadata).into()),
            labels: from.and_then(|m| m.labels.clone()),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

fn deleted(job_name: &str) -> [Action; 2] {
    [
        Action::delete(Kind::Job, job_name),
        Action::Event {
            warning: false,
            reason: "SuccessfulDelete",
            message: format!("Deleted job {job_name}"),
        },
    ]
}

/// Decides for one CronJob at `now` (Unix seconds). `jobs` are the Jobs it controls.
pub fn reconcile(cronjob: &CronJob, jobs: &[&Job], now: i64) -> Vec<Action> {
    let mut actions = Vec::new();
    let spec = &cronjob.spec;
    let old_status = cronjob.status.as_ref();
    let mut status = old_status.cloned().unwrap_or_default();
    let old_schedule = status.last_schedule_time.as_deref().and_then(unix_seconds);
    let mut last_schedule = old_schedule;
    let mut active: Vec<&Job> = jobs.iter().copied().filter(|j| finished(j).is_none()).collect();
    let job_named = |j: &Job, n: &str| j.metadata.name() == n;

    // Scheduling.
    let utc = spec.time_zone.as_deref().is_none_or(|z| matches!(z, "" | "UTC" | "Etc/UTC"));
    let schedule = spec.schedule.parse::<Schedule>().ok();
    let suspended = spec.suspend == Some(true);
    let after = last_schedule.or_else(|| created(&cronjob.metadata));
    if let (true, false, Some(schedule), Some(after)) = (utc, suspended, &schedule, after) {
        if let Some(t) = latest_time(schedule, after, now) {
            let deadline = spec.starting_deadline_seconds.filter(|d| *d >= 0);
            // As Kubernetes, only times within the starting deadline count as missed.
            let count_from = deadline.map_or(after, |d| after.max(now.saturating_sub(d)));
            let job_name = format!("{}-{}", cronjob.metadata.name(), t.div_euclid(60));
            let policy = spec.concurrency_policy.unwrap_or(ConcurrencyPolicy::Allow);
            if jobs.iter().any(|j| job_named(j, &job_name)) {
                // Created already (its status write was lost): only record it.
                last_schedule = Some(t);
            } else if deadline.is_some_and(|d| now.saturating_sub(t) > d) {
                actions.push(Action::Event {
                    warning: true,
                    reason: "MissSchedule",
                    message: format!("Missed scheduled time to start a job: {}", rfc3339(t)),
                });
                last_schedule = Some(t);
            } else if policy == ConcurrencyPolicy::Forbid && !active.is_empty() {
                // Wait for the active Job: the time stays due until the deadline passes.
            } else {
                if too_many_missed(schedule, count_from, now) {
                    actions.push(Action::Event {
                        warning: true,
                        reason: "TooManyMissedTimes",
                        message: "too many missed start times (more than 100); set or decrease \
                                  .spec.startingDeadlineSeconds or check clock skew"
                            .into(),
                    });
                }
                if policy == ConcurrencyPolicy::Replace {
                    for job in &active {
                        actions.extend(deleted(job.metadata.name()));
                    }
                    active.clear();
                }
                actions.push(Action::create(Kind::Job, value(&new_job(cronjob, &job_name, t))));
                actions.push(Action::Event {
                    warning: false,
                    reason: "SuccessfulCreate",
                    message: format!("Created job {job_name}"),
                });
                last_schedule = Some(t);
            }
        }
    }

    // History: the newest finished Jobs up to each limit stay.
    for (kind, limit, default) in
        [("Complete", spec.successful_jobs_history_limit, 3), ("Failed", spec.failed_jobs_history_limit, 1)]
    {
        let limit = limit.filter(|l| *l >= 0).unwrap_or(default) as usize;
        let mut done: Vec<&Job> = jobs.iter().copied().filter(|j| finished(j) == Some(kind)).collect();
        done.sort_by(|a, b| (job_time(b), b.metadata.name()).cmp(&(job_time(a), a.metadata.name())));
        for job in done.iter().skip(limit) {
            actions.extend(deleted(job.metadata.name()));
        }
    }

    // Status.
    active.sort_by_key(|j| j.metadata.name());
    let refs: Vec<ClaimReference> = active
        .iter()
        .map(|j| ClaimReference {
            api_version: Some("batch/v1".into()),
            kind: Some("Job".into()),
            name: Some(j.metadata.name().into()),
            namespace: Some(pods::namespace(&j.metadata).into()),
            uid: Some(pods::uid(&j.metadata).into()),
        })
        .collect();
    let last_success = jobs
        .iter()
        .filter(|j| finished(j) == Some("Complete"))
        .filter_map(|j| j.status.as_ref()?.completion_time.as_deref().and_then(unix_seconds))
        .max();
    status.active = (!refs.is_empty()).then_some(refs);
    if let Some(t) = last_schedule.filter(|t| Some(*t) != old_schedule) {
        status.last_schedule_time = Some(rfc3339(t));
    }
    let old_success = old_status.and_then(|s| s.last_successful_time.as_deref()).and_then(unix_seconds);
    if let Some(t) = last_success.filter(|t| old_success.is_none_or(|o| *t > o)) {
        status.last_successful_time = Some(rfc3339(t));
    }
    if old_status != Some(&status) && !(old_status.is_none() && status == CronJobStatus::default()) {
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
    fn reconcile(cj: &Value, jobs: &[Value], now: i64) -> Vec<Action> {
        let cj: CronJob = parse(Kind::CronJob, cj).expect("a CronJob");
        let jobs: Vec<Job> = jobs.iter().map(|j| parse(Kind::Job, j).expect("a Job")).collect();
        super::reconcile(&cj, &jobs.iter().collect::<Vec<_>>(), now)
    }

    /// 2024-01-01T00:00:00Z; the test schedule is every 5 minutes.
    const T0: i64 = 1_704_067_200;

    fn cronjob(spec: Value, status: Value) -> Value {
        let mut cj = json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "cj", "namespace": "edge", "uid": "u1", "creationTimestamp": rfc3339(T0)},
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}},
            "status": status,
        });
        if let (Some(s), Some(extra)) = (cj["spec"].as_object_mut(), spec.as_object()) {
            s.extend(extra.clone());
        }
        cj
    }

    fn job_name(t: i64) -> String {
        format!("cj-{}", t / 60)
    }

    /// The Job of schedule time `t`, active (`state` None), `Complete` or `Failed`.
    fn job(t: i64, state: Option<&str>) -> Value {
        let mut j = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {
            "name": job_name(t), "namespace": "edge", "uid": format!("uid-{t}"),
            "creationTimestamp": rfc3339(t), "annotations": {SCHEDULED_TIMESTAMP: rfc3339(t)}}});
        if let Some(state) = state {
            j["status"] = json!({"conditions": [{"type": state, "status": "True"}]});
            if state == "Complete" {
                j["status"]["completionTime"] = rfc3339(t + 30).into();
            }
        }
        j
    }

    fn active_ref(t: i64) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "name": job_name(t), "namespace": "edge",
               "uid": format!("uid-{t}")})
    }

    #[derive(Debug, Default)]
    struct Out {
        created: Vec<Value>,
        deleted: Vec<String>,
        events: Vec<&'static str>,
        status: Option<Value>,
    }

    fn check(cj: &Value, jobs: &[Value], now: i64) -> Out {
        let mut out = Out::default();
        for a in reconcile(cj, jobs, now) {
            match a {
                Action::Create { object: j, .. } => out.created.push(j),
                Action::Delete { name: n, .. } => out.deleted.push(n),
                Action::Event { reason, .. } => out.events.push(reason),
                Action::UpdateStatus(s) => out.status = Some(s),
                Action::Update { .. } => panic!("a CronJob updates no Job"),
            }
        }
        out
    }

    fn created_names(out: &Out) -> Vec<&str> {
        out.created.iter().map(name).collect()
    }

    #[test]
    fn first_schedule_starts_one_job() {
        let out = check(&cronjob(json!({}), Value::Null), &[], T0 + 301);
        let [j] = out.created.as_slice() else { panic!("{out:?}") };
        assert_eq!(name(j), job_name(T0 + 300));
        assert_eq!(j["kind"], "Job");
        assert_eq!(j["metadata"]["namespace"], "edge");
        assert_eq!(j["metadata"]["labels"], json!({"app": "x"}));
        assert_eq!(j["metadata"]["annotations"][SCHEDULED_TIMESTAMP], "2024-01-01T00:05:00Z");
        assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        assert_eq!(pods::controller_uid(&parse::<Job>(Kind::Job, j).expect("a Job").metadata), Some("u1"));
        assert_eq!(j["spec"]["template"]["spec"]["containers"][0]["image"], "busybox");
        assert_eq!(out.events, ["SuccessfulCreate"]);
        assert_eq!(out.status, Some(json!({"lastScheduleTime": "2024-01-01T00:05:00Z"})));
    }

    #[test]
    fn nothing_before_the_first_time() {
        for now in [T0 - 100, T0, T0 + 299] {
            assert!(reconcile(&cronjob(json!({}), Value::Null), &[], now).is_empty());
        }
    }

    #[test]
    fn missed_schedules_start_only_the_latest() {
        let cj = cronjob(json!({}), json!({"lastScheduleTime": rfc3339(T0 + 300)}));
        let out = check(&cj, &[], T0 + 1830);
        assert_eq!(created_names(&out), [job_name(T0 + 1800)]);
        assert_eq!(out.events, ["SuccessfulCreate"]);
        // More than 100 missed: a warning, still the latest.
        let out = check(&cj, &[], T0 + 1000 * 300 + 5);
        assert_eq!(created_names(&out), [job_name(T0 + 1000 * 300)]);
        assert_eq!(out.events, ["TooManyMissedTimes", "SuccessfulCreate"]);
        // Unless the starting deadline leaves few of them.
        let cj = cronjob(json!({"startingDeadlineSeconds": 600}), cj["status"].clone());
        assert_eq!(check(&cj, &[], T0 + 1000 * 300 + 5).events, ["SuccessfulCreate"]);
    }

    #[test]
    fn starting_deadline_skips_late_starts_once() {
        let cj = cronjob(json!({"startingDeadlineSeconds": 10}), Value::Null);
        assert_eq!(created_names(&check(&cj, &[], T0 + 310)), [job_name(T0 + 300)]);
        let out = check(&cj, &[], T0 + 311);
        assert!(out.created.is_empty());
        assert_eq!(out.events, ["MissSchedule"]);
        let status = out.status.unwrap_or_default();
        assert_eq!(status, json!({"lastScheduleTime": rfc3339(T0 + 300)}));
        assert!(reconcile(&cronjob(json!({"startingDeadlineSeconds": 10}), status), &[], T0 + 320).is_empty());
    }

    #[test]
    fn forbid_waits_for_the_active_job() {
        let status = json!({"active": [active_ref(T0 + 300)], "lastScheduleTime": rfc3339(T0 + 300)});
        let cj = cronjob(json!({"concurrencyPolicy": "Forbid"}), status);
        assert!(reconcile(&cj, &[job(T0 + 300, None)], T0 + 601).is_empty());
        let out = check(&cj, &[job(T0 + 300, Some("Complete"))], T0 + 700);
        assert_eq!(created_names(&out), [job_name(T0 + 600)]);
        assert_eq!(
            out.status,
            Some(json!({"lastScheduleTime": rfc3339(T0 + 600), "lastSuccessfulTime": rfc3339(T0 + 330)}))
        );
    }

    #[test]
    fn replace_deletes_the_active_job() {
        let status = json!({"active": [active_ref(T0 + 300)], "lastScheduleTime": rfc3339(T0 + 300)});
        let cj = cronjob(json!({"concurrencyPolicy": "Replace"}), status);
        let out = check(&cj, &[job(T0 + 300, None)], T0 + 601);
        assert_eq!(out.deleted, [job_name(T0 + 300)]);
        assert_eq!(created_names(&out), [job_name(T0 + 600)]);
        assert_eq!(out.events, ["SuccessfulDelete", "SuccessfulCreate"]);
        assert_eq!(out.status, Some(json!({"lastScheduleTime": rfc3339(T0 + 600)})));
    }

    #[test]
    fn history_limits_delete_the_oldest_finished() {
        let mut jobs: Vec<Value> = (1..=5).map(|i| job(T0 + i * 300, Some("Complete"))).collect();
        jobs.extend((6..=8).map(|i| job(T0 + i * 300, Some("Failed"))));
        jobs.push(job(T0 + 9 * 300, None));
        jobs.reverse();
        let status = json!({"active": [active_ref(T0 + 2700)], "lastScheduleTime": rfc3339(T0 + 2700),
                            "lastSuccessfulTime": rfc3339(T0 + 1530)});
        let out = check(&cronjob(json!({}), status.clone()), &jobs, T0 + 2750);
        let mut deleted = out.deleted.clone();
        deleted.sort();
        let want: Vec<String> = [1, 2, 6, 7].map(|i| job_name(T0 + i * 300)).into();
        assert_eq!(deleted, want);
        assert_eq!(out.events, ["SuccessfulDelete"; 4]);
        assert_eq!(out.status, None);
        // Zero limits keep none; lastSuccessfulTime stays once the Jobs are gone.
        let cj = cronjob(json!({"successfulJobsHistoryLimit": 0, "failedJobsHistoryLimit": 0}), status);
        assert_eq!(check(&cj, &jobs, T0 + 2750).deleted.len(), 8);
        assert!(reconcile(&cj, &jobs[..1], T0 + 2750).is_empty());
    }

    #[test]
    fn existing_job_is_not_created_again() {
        let cj = cronjob(json!({}), Value::Null);
        let out = check(&cj, &[job(T0 + 300, None)], T0 + 301);
        assert!(out.created.is_empty() && out.events.is_empty());
        assert_eq!(
            out.status,
            Some(json!({"active": [active_ref(T0 + 300)], "lastScheduleTime": rfc3339(T0 + 300)}))
        );
    }

    #[test]
    fn suspend_starts_nothing() {
        let cj = cronjob(json!({"suspend": true}), Value::Null);
        assert!(reconcile(&cj, &[], T0 + 10_000).is_empty());
        // The status still follows the Jobs.
        let out = check(&cj, &[job(T0 + 300, None)], T0 + 10_000);
        assert!(out.created.is_empty());
        assert_eq!(out.status, Some(json!({"active": [active_ref(T0 + 300)]})));
    }

    #[test]
    fn unsupported_schedule_or_zone_starts_nothing() {
        // A schedule that is no string is refused at the loop's edge.
        assert!(parse::<CronJob>(Kind::CronJob, &cronjob(json!({"schedule": 5}), Value::Null)).is_none());
        for spec in [
            json!({"schedule": "61 * * * *"}),
            json!({"schedule": "TZ=UTC * * * * *"}),
            json!({"timeZone": "Europe/Paris"}),
        ] {
            assert!(reconcile(&cronjob(spec, Value::Null), &[], T0 + 10_000).is_empty());
        }
        let cj = cronjob(json!({"timeZone": "Etc/UTC"}), Value::Null);
        assert_eq!(check(&cj, &[], T0 + 301).created.len(), 1);
    }

    #[test]
    fn steady_state_has_no_actions() {
        // Apply each round's actions as the hub would, until nothing is left to do.
        let mut cj = cronjob(json!({"concurrencyPolicy": "Replace"}), Value::Null);
        let mut jobs: Vec<Value> = vec![];
        let now = T0 + 301;
        for round in 0.. {
            let actions = reconcile(&cj, &jobs, now);
            if actions.is_empty() {
                assert_eq!(round, 2);
                break;
            }
            for a in actions {
                match a {
                    Action::Create { object: mut j, .. } => {
                        j["metadata"]["uid"] = format!("uid-{}", T0 + 300).into();
                        jobs.push(j);
                    }
                    Action::Delete { name: n, .. } => jobs.retain(|j| name(j) != n),
                    Action::UpdateStatus(s) => cj["status"] = s,
                    Action::Event { .. } | Action::Update { .. } => {}
                }
            }
        }
        assert_eq!(
            cj["status"],
            json!({"lastScheduleTime": rfc3339(T0 + 300), "active": [active_ref(T0 + 300)]})
        );
    }

    #[test]
    fn garbage_input_does_not_panic() {
        let garbage = [
            Value::Null,
            json!(42),
            json!({"spec": "x", "status": [1]}),
            json!({"metadata": {"creationTimestamp": 5}, "spec": {"schedule": "* * * * *"}}),
            json!({"metadata": {"creationTimestamp": "1970-01-01T00:00:00Z"}, "spec": {"schedule": "* * * * *",
                "startingDeadlineSeconds": -5, "successfulJobsHistoryLimit": -1, "jobTemplate": 7,
                "concurrencyPolicy": 3, "suspend": "yes"}, "status": {"lastScheduleTime": "never"}}),
            cronjob(
                json!({"schedule": "@yearly", "startingDeadlineSeconds": i64::MAX}),
                json!({"active": "x"}),
            ),
        ];
        // Garbage is refused at the loop's edge (logged and skipped).
        for cj in &garbage {
            assert!(parse::<CronJob>(Kind::CronJob, cj).is_none(), "{cj}");
        }
        for j in [Value::Null, json!({"status": {"conditions": "x"}}), json!({"metadata": {"name": 5}})] {
            assert!(parse::<Job>(Kind::Job, &j).is_none(), "{j}");
        }
        // What parses does not panic on extreme numbers and clocks.
        let odd = [
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {
                "creationTimestamp": "1970-01-01T00:00:00Z"}, "spec": {"schedule": "* * * * *",
                "startingDeadlineSeconds": -5, "successfulJobsHistoryLimit": -1, "jobTemplate": {}},
                "status": {"lastScheduleTime": "never"}}),
            cronjob(json!({"schedule": "@yearly", "startingDeadlineSeconds": i64::MAX}), Value::Null),
        ];
        let jobs = [job(T0, Some("Complete")), job(T0 + 300, None)];
        for cj in &odd {
            for now in [i64::MIN, -1, 0, T0, i64::MAX] {
                reconcile(cj, &jobs, now);
                reconcile(cj, &[], now);
            }
        }
    }
}
