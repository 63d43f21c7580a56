//! Validation of one container: image, environment, ports, resources, volume mounts,
//! security context and probes, each section a function of its own.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Capabilities the kernel knows, without the `CAP_` prefix.
pub(super) const CAPABILITIES: &[&str] = &[
    "ALL",
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// Field paths that `fieldRef` may name.
pub(super) const FIELD_REFS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.podIP",
    "status.hostIP",
];

#[allow(clippy::too_many_arguments)]
pub(super) fn container(
    e: &mut Errs,
    cp: &str,
    c: &Container,
    volumes: &BTreeMap<&str, &Volume>,
    claims: &BTreeSet<&str>,
    init: bool,
    host_network: bool,
    host_ports: &mut BTreeSet<(i32, Protocol)>,
) {
    match &c.image {
        None => e.add(&format!("{cp}.image"), "is required"),
        Some(img) => {
            if let Err(err) = ImageRef::parse(img) {
                e.add(&format!("{cp}.image"), err.to_string());
            }
        }
    }
    if let Some(w) = &c.working_dir {
        absolute(e, &format!("{cp}.workingDir"), w);
    }
    if let Some(tp) = c.termination_message_path.as_deref() {
        if tp != "/dev/termination-log" {
            e.add(
                &format!("{cp}.terminationMessagePath"),
                format!("must be /dev/termination-log, Kubernetes' default (got {tp:?})"),
            );
        }
    }
    if let Some(tp) = c.termination_message_policy.as_deref() {
        if !matches!(tp, "File" | "FallbackToLogsOnError") {
            e.add(
                &format!("{cp}.terminationMessagePolicy"),
                format!("must be File or FallbackToLogsOnError (got {tp:?})"),
            );
        }
    }
    if init {
        for (name, probe) in [
            ("livenessProbe", &c.liveness_probe),
            ("readinessProbe", &c.readiness_probe),
            ("startupProbe", &c.startup_probe),
        ] {
            if probe.is_some() {
                e.add(&format!("{cp}.{name}"), "may not be set on an init container");
            }
        }
    }

    env(e, cp, c);
    let port_names = ports(e, cp, c, host_network, host_ports);
    resources(e, cp, c);
    mounts(e, cp, c, volumes, claims);
    security(e, cp, c);
    probes(e, cp, c, &port_names);
}

/// `env` and `envFrom`: names, exactly one source, the fields `fieldRef` may name.
fn env(e: &mut Errs, cp: &str, c: &Container) {
    for (i, v) in c.env.iter().flatten().enumerate() {
        let p = format!("{cp}.env[{i}]");
        e.check(&format!("{p}.name"), names::env_var_name(&v.name));
        if let Some(src) = &v.value_from {
            if v.value.is_some() {
                e.add(&format!("{p}.valueFrom"), "may not be set together with value");
            }
            let n = [src.config_map_key_ref.is_some(), src.secret_key_ref.is_some(), src.field_ref.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            if n != 1 {
                e.add(
                    &format!("{p}.valueFrom"),
                    "must set exactly one of configMapKeyRef, secretKeyRef, fieldRef",
                );
            }
            for (f, r) in
                [("configMapKeyRef", &src.config_map_key_ref), ("secretKeyRef", &src.secret_key_ref)]
            {
                if let Some(r) = r {
                    e.check(&format!("{p}.valueFrom.{f}.name"), names::dns1123_subdomain(&r.name));
                    e.check(&format!("{p}.valueFrom.{f}.key"), names::config_key(&r.key));
                }
            }
            if let Some(f) = &src.field_ref {
                let keyed = ["metadata.labels['", "metadata.annotations['"].iter().any(|pre| {
                    f.field_path
                        .strip_prefix(pre)
                        .and_then(|k| k.strip_suffix("']"))
                        .is_some_and(|k| !k.is_empty() && !k.contains('\''))
                });
                if !keyed && !FIELD_REFS.contains(&f.field_path.as_str()) {
                    e.add(
                        &format!("{p}.valueFrom.fieldRef.fieldPath"),
                        format!(
                            "must be one of {}, metadata.labels['KEY'], metadata.annotations['KEY'] (got {:?})",
                            FIELD_REFS.join(", "),
                            f.field_path
                        ),
                    );
                }
                if let Some(v) = f.api_version.as_deref() {
                    if v != "v1" {
                        e.add(
                            &format!("{p}.valueFrom.fieldRef.apiVersion"),
                            format!("must be v1 (got {v:?})"),
                        );
                    }
                }
            }
        }
    }
    for (i, src) in c.env_from.iter().flatten().enumerate() {
        let p = format!("{cp}.envFrom[{i}]");
        match (&src.config_map_ref, &src.secret_ref) {
            (Some(r), None) => e.check(&format!("{p}.configMapRef.name"), names::dns1123_subdomain(&r.name)),
            (None, Some(r)) => e.check(&format!("{p}.secretRef.name"), names::dns1123_subdomain(&r.name)),
            _ => e.add(&p, "must set exactly one of configMapRef, secretRef"),
        }
        if let Some(prefix) = &src.prefix {
            if prefix.contains('=') {
                e.add(&format!("{p}.prefix"), format!("must not contain '=' (got {prefix:?})"));
            }
        }
    }
}

/// `ports`: numbers, unique names, host ports unique in the pod (and equal to the container
/// port with hostNetwork). Returns the ports' names, which probes may use.
fn ports<'c>(
    e: &mut Errs,
    cp: &str,
    c: &'c Container,
    host_network: bool,
    host_ports: &mut BTreeSet<(i32, Protocol)>,
) -> BTreeSet<&'c str> {
    let mut port_names = BTreeSet::new();
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let p = format!("{cp}.ports[{i}]");
        port_number(e, &format!("{p}.containerPort"), port.container_port);
        if let Some(n) = &port.name {
            e.check(&format!("{p}.name"), names::iana_svc_name(n));
            if !port_names.insert(n.as_str()) {
                e.add(&format!("{p}.name"), format!("duplicates another port named {n:?}"));
            }
        }
        let proto = port.protocol.unwrap_or(Protocol::Tcp);
        if let Some(hp) = port.host_port {
            port_number(e, &format!("{p}.hostPort"), hp);
            if host_network && hp != port.container_port {
                e.add(
                    &format!("{p}.hostPort"),
                    format!("must equal containerPort ({}) with hostNetwork", port.container_port),
                );
            }
            if !host_ports.insert((hp, proto)) {
                e.add(
                    &format!("{p}.hostPort"),
                    format!("{hp}/{} is already used by another container of this pod", proto.as_str()),
                );
            }
        }
    }
    port_names
}

/// `resources`: cpu, memory and ephemeral-storage quantities, requests within limits.
fn resources(e: &mut Errs, cp: &str, c: &Container) {
    if let Some(r) = &c.resources {
        let mut parsed: BTreeMap<(&str, &str), u128> = BTreeMap::new();
        for (list_name, list) in [("requests", &r.requests), ("limits", &r.limits)] {
            for (res, q) in list.iter().flatten() {
                let p = format!(
                    "{cp}.resources.{list_name}{}",
                    if res.contains(['.', '/']) { format!("[{res:?}]") } else { format!(".{res}") }
                );
                let v = match res.as_str() {
                    "cpu" => q.milli_value(),
                    "memory" | "ephemeral-storage" => q.value(),
                    _ => {
                        e.add(&p, "is not supported: Flotilla manages cpu, memory and ephemeral-storage");
                        continue;
                    }
                };
                match v {
                    Ok(v) => {
                        parsed.insert((list_name, res.as_str()), v);
                    }
                    Err(err) => e.add(&p, err.to_string()),
                }
            }
        }
        for res in ["cpu", "memory", "ephemeral-storage"] {
            if let (Some(req), Some(lim)) = (parsed.get(&("requests", res)), parsed.get(&("limits", res))) {
                if req > lim {
                    let q = |l: &Option<ResourceList>| {
                        l.as_ref()
                            .and_then(|m| m.get(res))
                            .map(|q| q.as_str().to_string())
                            .unwrap_or_default()
                    };
                    e.add(
                        &format!("{cp}.resources.requests.{res}"),
                        format!(
                            "must be less than or equal to the {res} limit ({} > {})",
                            q(&r.requests),
                            q(&r.limits)
                        ),
                    );
                }
            }
        }
    }
}

/// `volumeMounts`: a volume (or claim) of the pod, absolute unique paths, relative subPaths.
fn mounts(e: &mut Errs, cp: &str, c: &Container, volumes: &BTreeMap<&str, &Volume>, claims: &BTreeSet<&str>) {
    let mut mount_paths = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let p = format!("{cp}.volumeMounts[{i}]");
        if !volumes.contains_key(m.name.as_str()) && !claims.contains(m.name.as_str()) {
            let declared: Vec<&str> = volumes.keys().chain(claims.iter()).copied().collect();
            let hint = if declared.is_empty() {
                "no volumes are declared".to_string()
            } else {
                format!("declared: {}", declared.join(", "))
            };
            e.add(
                &format!("{p}.name"),
                format!("must name a volume of the pod ({:?} is not in spec.volumes; {hint})", m.name),
            );
        }
        absolute(e, &format!("{p}.mountPath"), &m.mount_path);
        if !mount_paths.insert(m.mount_path.trim_end_matches('/')) {
            e.add(
                &format!("{p}.mountPath"),
                format!("{:?} is already used by another mount of this container", m.mount_path),
            );
        }
        if let Some(sp) = &m.sub_path {
            if !sp.is_empty() {
                relative_path(e, &format!("{p}.subPath"), sp);
            }
        }
    }
}

/// `securityContext`: ids, runAsNonRoot against uid 0, privilege escalation, capabilities.
fn security(e: &mut Errs, cp: &str, c: &Container) {
    if let Some(sc) = &c.security_context {
        let p = format!("{cp}.securityContext");
        id_range(e, &format!("{p}.runAsUser"), sc.run_as_user);
        id_range(e, &format!("{p}.runAsGroup"), sc.run_as_group);
        if sc.run_as_non_root == Some(true) && sc.run_as_user == Some(0) {
            e.add(&format!("{p}.runAsUser"), "must not be 0 when runAsNonRoot is true");
        }
        if sc.privileged == Some(true) && sc.allow_privilege_escalation == Some(false) {
            e.add(&format!("{p}.allowPrivilegeEscalation"), "may not be false when privileged is true");
        }
        if let Some(caps) = &sc.capabilities {
            for (f, list) in [("add", &caps.add), ("drop", &caps.drop)] {
                for (i, cap) in list.iter().flatten().enumerate() {
                    let bare = cap.strip_prefix("CAP_").unwrap_or(cap);
                    if !CAPABILITIES.contains(&bare) {
                        let hint = names::closest(bare, CAPABILITIES.iter().copied())
                            .map(|c| format!(" (did you mean {c:?}?)"))
                            .unwrap_or_default();
                        e.add(
                            &format!("{p}.capabilities.{f}[{i}]"),
                            format!("is not a Linux capability: {cap:?}{hint}"),
                        );
                    }
                }
            }
        }
    }
}

/// The liveness, readiness and startup probes.
fn probes(e: &mut Errs, cp: &str, c: &Container, port_names: &BTreeSet<&str>) {
    for (name, probe) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        if let Some(pr) = probe {
            check_probe(e, &format!("{cp}.{name}"), pr, name != "readinessProbe", port_names);
        }
    }
}

pub(super) fn check_probe(
    e: &mut Errs,
    p: &str,
    pr: &Probe,
    success_must_be_one: bool,
    port_names: &BTreeSet<&str>,
) {
    let handlers = [pr.exec.is_some(), pr.http_get.is_some(), pr.tcp_socket.is_some()];
    match handlers.iter().filter(|x| **x).count() {
        0 => e.add(p, "must set exactly one handler: exec, httpGet or tcpSocket"),
        1 => {}
        _ => e.add(p, "must set only one handler (several of exec, httpGet, tcpSocket are set)"),
    }
    if let Some(x) = &pr.exec {
        if x.command.as_ref().is_none_or(Vec::is_empty) {
            e.add(&format!("{p}.exec.command"), "is required and must not be empty");
        }
    }
    let port = |e: &mut Errs, path: &str, port: &IntOrString| match port {
        IntOrString::Int(n) => port_number(e, path, *n),
        IntOrString::String(s) => {
            if let Err(m) = names::iana_svc_name(s) {
                e.add(path, m);
            } else if !port_names.contains(s.as_str()) {
                e.add(path, format!("names no port of this container ({s:?} is not among its ports' names)"));
            }
        }
    };
    if let Some(h) = &pr.http_get {
        port(e, &format!("{p}.httpGet.port"), &h.port);
        if let Some(path) = &h.path {
            if !path.starts_with('/') {
                e.add(&format!("{p}.httpGet.path"), format!("must start with '/' (got {path:?})"));
            }
        }
        for (i, hd) in h.http_headers.iter().flatten().enumerate() {
            let valid = !hd.name.is_empty()
                && hd.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid {
                e.add(
                    &format!("{p}.httpGet.httpHeaders[{i}].name"),
                    format!("must be an HTTP header name (got {:?})", hd.name),
                );
            }
        }
    }
    if let Some(t) = &pr.tcp_socket {
        port(e, &format!("{p}.tcpSocket.port"), &t.port);
    }
    non_negative(e, &format!("{p}.initialDelaySeconds"), pr.initial_delay_seconds);
    for (f, v) in [
        ("periodSeconds", pr.period_seconds),
        ("timeoutSeconds", pr.timeout_seconds),
        ("successThreshold", pr.success_threshold),
        ("failureThreshold", pr.failure_threshold),
    ] {
        at_least_one(e, &format!("{p}.{f}"), v);
    }
    if success_must_be_one {
        if let Some(s) = pr.success_threshold {
            if s != 1 {
                e.add(
                    &format!("{p}.successThreshold"),
                    format!("must be 1 for liveness and startup probes (got {s})"),
                );
            }
        }
    }
    at_least_one(e, &format!("{p}.terminationGracePeriodSeconds"), pr.termination_grace_period_seconds);
}
