//! Validation of pod specs: containers, ports, resources, mounts, volumes, probes, security
//! contexts, tolerations and affinity.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn pod_spec(
    e: &mut Errs,
    s: &PodSpec,
    path: &str,
    allowed_restart: Option<&[RestartPolicy]>,
    claims: &BTreeSet<&str>,
) {
    let p = |f: &str| format!("{path}.{f}");
    if s.containers.is_empty() {
        e.add(&p("containers"), "must have at least one container");
    }
    if let (Some(allowed), Some(rp)) = (allowed_restart, s.restart_policy) {
        if !allowed.contains(&rp) {
            let list: Vec<String> = allowed.iter().map(|r| format!("{r:?}")).collect();
            e.add(&p("restartPolicy"), format!("must be {} for this kind (got {rp:?})", list.join(" or ")));
        }
    }
    if let Some(n) = &s.node_name {
        e.check(&p("nodeName"), names::dns1123_label(n));
    }
    if let Some(h) = &s.hostname {
        e.check(&p("hostname"), names::dns1123_label(h));
    }
    if let Some(h) = &s.subdomain {
        e.check(&p("subdomain"), names::dns1123_label(h));
    }
    labels(e, &p("nodeSelector"), s.node_selector.as_ref());
    non_negative(e, &p("terminationGracePeriodSeconds"), s.termination_grace_period_seconds);
    at_least_one(e, &p("activeDeadlineSeconds"), s.active_deadline_seconds);
    if let Some(d) = s.dns_policy.as_deref() {
        if !matches!(d, "ClusterFirst" | "Default" | "ClusterFirstWithHostNet") {
            e.add(&p("dnsPolicy"), format!("must be ClusterFirst, ClusterFirstWithHostNet or Default (got {d:?}); Flotilla uses the node's resolver"));
        }
    }
    if let Some(sn) = s.scheduler_name.as_deref() {
        if sn != "default-scheduler" {
            e.add(
                &p("schedulerName"),
                format!("must be default-scheduler: Flotilla has one scheduler (got {sn:?})"),
            );
        }
    }
    for (i, r) in s.image_pull_secrets.iter().flatten().enumerate() {
        e.check(&format!("{path}.imagePullSecrets[{i}].name"), names::dns1123_subdomain(&r.name));
    }
    if let Some(sc) = &s.security_context {
        for (f, v) in
            [("runAsUser", sc.run_as_user), ("runAsGroup", sc.run_as_group), ("fsGroup", sc.fs_group)]
        {
            id_range(e, &format!("{path}.securityContext.{f}"), v);
        }
        for (i, g) in sc.supplemental_groups.iter().flatten().enumerate() {
            id_range(e, &format!("{path}.securityContext.supplementalGroups[{i}]"), Some(*g));
        }
        if sc.run_as_non_root == Some(true) && sc.run_as_user == Some(0) {
            e.add(&format!("{path}.securityContext.runAsUser"), "must not be 0 when runAsNonRoot is true");
        }
    }

    // Volumes.
    let mut volumes = BTreeMap::new();
    for (i, v) in s.volumes.iter().flatten().enumerate() {
        let vp = format!("{path}.volumes[{i}]");
        e.check(&format!("{vp}.name"), names::dns1123_label(&v.name));
        if volumes.insert(v.name.as_str(), v).is_some() {
            e.add(&format!("{vp}.name"), format!("duplicates another volume named {:?}", v.name));
        }
        volume(e, &vp, v);
    }

    // Containers.
    let mut container_names = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    let groups = [
        ("initContainers", s.init_containers.as_deref().unwrap_or_default()),
        ("containers", &s.containers[..]),
    ];
    for (group, list) in groups {
        for (i, c) in list.iter().enumerate() {
            let cp = format!("{path}.{group}[{i}]");
            e.check(&format!("{cp}.name"), names::dns1123_label(&c.name));
            if !container_names.insert(c.name.as_str()) {
                e.add(&format!("{cp}.name"), format!("duplicates another container named {:?}", c.name));
            }
            container(
                e,
                &cp,
                c,
                &volumes,
                claims,
                group == "initContainers",
                s.host_network == Some(true),
                &mut host_ports,
            );
            // Container settings override the pod's; a container that must not run as root
            // but is told to run as uid 0 can never start.
            let csc = c.security_context.as_ref();
            let psc = s.security_context.as_ref();
            let non_root = csc.and_then(|x| x.run_as_non_root).or(psc.and_then(|x| x.run_as_non_root));
            let user = csc.and_then(|x| x.run_as_user).or(psc.and_then(|x| x.run_as_user));
            // When both come from the same level, that level's own check has reported it.
            let own =
                (csc.and_then(|x| x.run_as_non_root).is_some(), csc.and_then(|x| x.run_as_user).is_some());
            let mixed = own.0 != own.1;
            if non_root == Some(true) && user == Some(0) && mixed {
                e.add(
                    &format!("{cp}.securityContext.runAsUser"),
                    "is 0 (root) while runAsNonRoot is true for this container: it could never start",
                );
            }
        }
    }

    for (i, t) in s.tolerations.iter().flatten().enumerate() {
        toleration(e, &format!("{path}.tolerations[{i}]"), t);
    }
    if let Some(a) = &s.affinity {
        affinity(e, &p("affinity"), a);
    }
}

pub(super) fn volume(e: &mut Errs, vp: &str, v: &Volume) {
    let sources = [
        v.empty_dir.is_some(),
        v.host_path.is_some(),
        v.config_map.is_some(),
        v.secret.is_some(),
        v.persistent_volume_claim.is_some(),
    ];
    match sources.iter().filter(|x| **x).count() {
        0 => e.add(vp, "must set exactly one volume source: emptyDir, hostPath, configMap, secret or persistentVolumeClaim"),
        1 => {}
        _ => e.add(vp, "must set only one volume source (several of emptyDir, hostPath, configMap, secret, persistentVolumeClaim are set)"),
    }
    if let Some(ed) = &v.empty_dir {
        if let Some(m) = ed.medium.as_deref() {
            if !m.is_empty() && m != "Memory" {
                e.add(
                    &format!("{vp}.emptyDir.medium"),
                    format!("must be \"\" (node disk) or Memory (tmpfs) (got {m:?})"),
                );
            }
        }
        if let Some(q) = &ed.size_limit {
            if let Err(err) = q.value() {
                e.add(&format!("{vp}.emptyDir.sizeLimit"), err.to_string());
            }
        }
    }
    if let Some(h) = &v.host_path {
        absolute(e, &format!("{vp}.hostPath.path"), &h.path);
    }
    let items = |e: &mut Errs, p: &str, items: &Option<Vec<KeyToPath>>| {
        for (i, it) in items.iter().flatten().enumerate() {
            e.check(&format!("{p}.items[{i}].key"), names::config_key(&it.key));
            relative_path(e, &format!("{p}.items[{i}].path"), &it.path);
            mode(e, &format!("{p}.items[{i}].mode"), it.mode);
        }
    };
    if let Some(c) = &v.config_map {
        let p = format!("{vp}.configMap");
        e.check(&format!("{p}.name"), names::dns1123_subdomain(&c.name));
        mode(e, &format!("{p}.defaultMode"), c.default_mode);
        items(e, &p, &c.items);
    }
    if let Some(s) = &v.secret {
        let p = format!("{vp}.secret");
        e.check(&format!("{p}.secretName"), names::dns1123_subdomain(&s.secret_name));
        mode(e, &format!("{p}.defaultMode"), s.default_mode);
        items(e, &p, &s.items);
    }
    if let Some(c) = &v.persistent_volume_claim {
        e.check(&format!("{vp}.persistentVolumeClaim.claimName"), names::dns1123_subdomain(&c.claim_name));
    }
}
