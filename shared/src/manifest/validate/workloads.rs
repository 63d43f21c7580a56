//! Validation of workload kinds: Deployment, DaemonSet, StatefulSet and Job templates, selectors and
//! update strategies.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn selector_matches_template(
    e: &mut Errs,
    sel: &LabelSelector,
    meta: &Option<ObjectMeta>,
    required: bool,
) {
    let invalid = !sel.validate().is_empty();
    selector(e, "spec.selector", sel);
    if invalid {
        // A broken selector matches nothing; saying the labels do not match it adds only noise.
        return;
    }
    if required && sel.is_empty() {
        e.add(
            "spec.selector",
            "is required and must not be empty (set matchLabels to the pod template's labels)",
        );
        return;
    }
    let empty = BTreeMap::new();
    let labels = meta.as_ref().map_or(&empty, ObjectMeta::labels);
    if !sel.is_empty() && !sel.matches(labels) {
        e.add(
            "spec.template.metadata.labels",
            "must match spec.selector (the controller would not own its own pods)",
        );
    }
}

pub(super) fn pod_template(e: &mut Errs, t: &PodTemplateSpec, path: &str, restart: &[RestartPolicy]) {
    pod_template_with_claims(e, t, path, restart, &BTreeSet::new());
}

pub(super) fn pod_template_with_claims(
    e: &mut Errs,
    t: &PodTemplateSpec,
    path: &str,
    restart: &[RestartPolicy],
    claims: &BTreeSet<&str>,
) {
    if let Some(m) = &t.metadata {
        validate_meta(e, m, Kind::Pod, &format!("{path}.metadata"), false);
        if m.name.is_some() {
            e.add(
                &format!("{path}.metadata.name"),
                "must not be set in a pod template (pod names are generated)",
            );
        }
    }
    pod_spec(e, &t.spec, &format!("{path}.spec"), Some(restart), claims);
}

/// Checks maxSurge/maxUnavailable. Unset values take Kubernetes' defaults (Deployment: 25%
/// and 25%; DaemonSet: 0 and 1), which are never both zero, so only explicit zeros collide.
pub(super) fn surge(
    e: &mut Errs,
    path: &str,
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
) {
    let mut values = Vec::new();
    for (name, v) in [("maxSurge", max_surge), ("maxUnavailable", max_unavailable)] {
        let Some(v) = v else {
            values.push(None);
            continue;
        };
        let p = format!("{path}.{name}");
        match v {
            IntOrString::Int(i) if *i < 0 => {
                e.add(&p, format!("must be greater than or equal to 0 (got {i})"))
            }
            IntOrString::String(s) => match s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) {
                Some(n) if (0..=100).contains(&n) => {}
                Some(_) => e.add(&p, format!("must be a percentage from 0% to 100% (got {s:?})")),
                None => e.add(&p, format!("must be an integer or a percentage such as \"25%\" (got {s:?})")),
            },
            _ => {}
        }
        values.push(Some(v));
    }
    let zero = |v: &Option<&IntOrString>| match v {
        Some(IntOrString::Int(0)) => true,
        Some(IntOrString::String(s)) => s == "0%",
        _ => false,
    };
    let surge_zero = zero(&values[0]) || (values[0].is_none() && path.contains("updateStrategy"));
    if surge_zero && zero(&values[1]) {
        e.add(
            &format!("{path}.maxUnavailable"),
            "may not be 0 when maxSurge is 0 (the rollout could never progress)",
        );
    }
}

pub(super) fn deployment(e: &mut Errs, s: &DeploymentSpec) {
    non_negative(e, "spec.replicas", s.replicas);
    non_negative(e, "spec.minReadySeconds", s.min_ready_seconds);
    non_negative(e, "spec.revisionHistoryLimit", s.revision_history_limit);
    at_least_one(e, "spec.progressDeadlineSeconds", s.progress_deadline_seconds);
    if let (Some(p), Some(m)) = (s.progress_deadline_seconds, s.min_ready_seconds) {
        if p <= m {
            e.add(
                "spec.progressDeadlineSeconds",
                format!("must be greater than minReadySeconds ({p} <= {m})"),
            );
        }
    }
    selector_matches_template(e, &s.selector, &s.template.metadata, true);
    pod_template(e, &s.template, "spec.template", &[RestartPolicy::Always]);
    if let Some(st) = &s.strategy {
        match (st.type_, &st.rolling_update) {
            (Some(DeploymentStrategyType::Recreate), Some(_)) => {
                e.add("spec.strategy.rollingUpdate", "may not be set when strategy type is Recreate")
            }
            (_, Some(r)) => {
                surge(e, "spec.strategy.rollingUpdate", r.max_surge.as_ref(), r.max_unavailable.as_ref())
            }
            _ => {}
        }
    }
}

/// A Job's spec at `path` (`spec`, or `spec.jobTemplate.spec` in a CronJob).
pub(super) fn job(e: &mut Errs, s: &JobSpec, path: &str) {
    match &s.selector {
        Some(sel) if path == "spec" => selector_matches_template(e, sel, &s.template.metadata, false),
        Some(_) => e.add(&format!("{path}.selector"), "must not be set in a CronJob's job template"),
        None if s.manual_selector == Some(true) => {
            e.add(&format!("{path}.selector"), "is required when manualSelector is true")
        }
        None => {}
    }
    let template = format!("{path}.template");
    pod_template(e, &s.template, &template, &[RestartPolicy::OnFailure, RestartPolicy::Never]);
    if s.template.spec.restart_policy.is_none() {
        e.add(
            &format!("{template}.spec.restartPolicy"),
            "is required for a Job and must be OnFailure or Never",
        );
    }
    non_negative(e, &format!("{path}.completions"), s.completions);
    non_negative(e, &format!("{path}.parallelism"), s.parallelism);
    non_negative(e, &format!("{path}.backoffLimit"), s.backoff_limit);
    non_negative(e, &format!("{path}.ttlSecondsAfterFinished"), s.ttl_seconds_after_finished);
    if let Some(d) = s.active_deadline_seconds {
        if d <= 0 {
            e.add(&format!("{path}.activeDeadlineSeconds"), format!("must be greater than 0 (got {d})"));
        }
    }
}

pub(super) fn cronjob(e: &mut Errs, s: &CronJobSpec) {
    if let Err(err) = s.schedule.parse::<crate::cron::Schedule>() {
        e.add("spec.schedule", format!("is not a valid cron schedule ({err}): {:?}", s.schedule));
    }
    if let Some(tz) = s.time_zone.as_deref().filter(|tz| !matches!(*tz, "UTC" | "Etc/UTC")) {
        e.add("spec.timeZone", format!("must be UTC or Etc/UTC (got {tz:?}): schedules run in UTC"));
    }
    if let Some(d) = s.starting_deadline_seconds {
        if d < 0 {
            e.add("spec.startingDeadlineSeconds", format!("must be greater than or equal to 0 (got {d})"));
        }
    }
    non_negative(e, "spec.successfulJobsHistoryLimit", s.successful_jobs_history_limit);
    non_negative(e, "spec.failedJobsHistoryLimit", s.failed_jobs_history_limit);
    if let Some(m) = &s.job_template.metadata {
        if m.name.is_some() {
            e.add("spec.jobTemplate.metadata.name", "must not be set (job names are generated)");
        }
    }
    job(e, &s.job_template.spec, "spec.jobTemplate.spec");
}

pub(super) fn statefulset(e: &mut Errs, s: &StatefulSetSpec) {
    non_negative(e, "spec.replicas", s.replicas);
    non_negative(e, "spec.minReadySeconds", s.min_ready_seconds);
    non_negative(e, "spec.revisionHistoryLimit", s.revision_history_limit);
    selector_matches_template(e, &s.selector, &s.template.metadata, true);
    // Mounts in the template may name a volumeClaimTemplate instead of a volume.
    let claims: BTreeSet<&str> =
        s.volume_claim_templates.iter().flatten().filter_map(|t| t.metadata.name.as_deref()).collect();
    pod_template_with_claims(e, &s.template, "spec.template", &[RestartPolicy::Always], &claims);
    if let Some(svc) = &s.service_name {
        e.check("spec.serviceName", names::dns1035_label(svc));
    }
    let mut seen = BTreeSet::new();
    for (i, t) in s.volume_claim_templates.iter().flatten().enumerate() {
        let p = format!("spec.volumeClaimTemplates[{i}]");
        match &t.metadata.name {
            None => e.add(&format!("{p}.metadata.name"), "is required"),
            Some(n) => {
                e.check(&format!("{p}.metadata.name"), names::dns1123_label(n));
                if !seen.insert(n.clone()) {
                    e.add(&format!("{p}.metadata.name"), format!("duplicates another claim template {n:?}"));
                }
            }
        }
        pvc_spec(e, &t.spec, &format!("{p}.spec"));
    }
    if let Some(u) = &s.update_strategy {
        if u.type_ == Some(DaemonSetStrategyType::OnDelete) && u.rolling_update.is_some() {
            e.add("spec.updateStrategy.rollingUpdate", "may only be set when type is RollingUpdate");
        }
        if let Some(r) = &u.rolling_update {
            non_negative(e, "spec.updateStrategy.rollingUpdate.partition", r.partition);
            if let Some(mu) = &r.max_unavailable {
                surge(e, "spec.updateStrategy.rollingUpdate", None, Some(mu));
            }
        }
    }
}
