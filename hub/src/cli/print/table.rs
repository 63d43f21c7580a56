//! `get` tables: kubectl's columns per kind, plain and wide.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A `get` table of `objects` of one kind, with kubectl 1.29's columns, or an empty string when
/// there are no objects (the caller prints "No resources found"). `with_namespace` adds a
/// NAMESPACE column first for namespaced kinds (`-A`); `wide` adds kubectl's `-o wide` columns.
pub fn table(kind: Kind, objects: &[Value], wide: bool, with_namespace: bool, now: OffsetDateTime) -> String {
    if objects.is_empty() {
        return String::new();
    }
    let namespace = with_namespace && kind.info().namespaced;
    let mut rows = Vec::with_capacity(objects.len() + 1);
    let mut header: Vec<String> = columns(kind, wide).iter().map(|c| c.to_string()).collect();
    if namespace {
        header.insert(0, "NAMESPACE".to_string());
    }
    rows.push(header);
    for o in objects {
        let mut cells = row(kind, o, wide, now);
        if namespace {
            cells.insert(0, text(o, &["metadata", "namespace"]).to_string());
        }
        rows.push(cells.iter().map(|c| clean(c)).collect());
    }
    // kubectl's table writer: columns at least 6 wide, separated by at least 3 spaces.
    tabwrite(&rows, 6, 3)
}

pub(super) fn columns(kind: Kind, wide: bool) -> Vec<&'static str> {
    let (base, extra): (&[&str], &[&str]) = match kind {
        Kind::Pod => (&["NAME", "READY", "STATUS", "RESTARTS", "AGE"], &["IP", "NODE"]),
        Kind::Deployment => {
            (&["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], &["CONTAINERS", "IMAGES", "SELECTOR"])
        }
        Kind::DaemonSet => (
            &["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        Kind::StatefulSet => (&["NAME", "READY", "AGE"], &["CONTAINERS", "IMAGES"]),
        Kind::ReplicaSet => {
            (&["NAME", "DESIRED", "CURRENT", "READY", "AGE"], &["CONTAINERS", "IMAGES", "SELECTOR"])
        }
        Kind::CronJob => (
            &["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        Kind::Job => {
            (&["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"], &["CONTAINERS", "IMAGES", "SELECTOR"])
        }
        Kind::ConfigMap => (&["NAME", "DATA", "AGE"], &[]),
        Kind::Secret => (&["NAME", "TYPE", "DATA", "AGE"], &[]),
        Kind::Service => (&["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], &["SELECTOR"]),
        Kind::Namespace => (&["NAME", "STATUS", "AGE"], &[]),
        Kind::Node => {
            (&["NAME", "STATUS", "ROLES", "AGE", "VERSION"], &["INTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION"])
        }
        Kind::PersistentVolume => (
            &["NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS", "AGE"],
            &["VOLUMEMODE"],
        ),
        Kind::PersistentVolumeClaim => (
            &["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "AGE"],
            &["VOLUMEMODE"],
        ),
    };
    let mut cols = base.to_vec();
    if wide {
        cols.extend_from_slice(extra);
    }
    cols
}

/// One table row, matching `columns(kind, wide)` cell for cell.
pub(super) fn row(kind: Kind, o: &Value, wide: bool, now: OffsetDateTime) -> Vec<String> {
    let name = text(o, &["metadata", "name"]).to_string();
    let created = age(at(o, &["metadata", "creationTimestamp"]).and_then(Value::as_str), now);
    let (mut cells, extra): (Vec<String>, Vec<String>) = match kind {
        Kind::Pod => pod_row(o, name, created),
        Kind::Deployment => {
            let desired = opt_int(at(o, &["spec", "replicas"])).unwrap_or(1);
            (
                vec![
                    name,
                    format!("{}/{desired}", int(o, &["status", "readyReplicas"])),
                    int(o, &["status", "updatedReplicas"]).to_string(),
                    int(o, &["status", "availableReplicas"]).to_string(),
                    created,
                ],
                template_cells(o, true),
            )
        }
        Kind::DaemonSet => (
            vec![
                name,
                int(o, &["status", "desiredNumberScheduled"]).to_string(),
                int(o, &["status", "currentNumberScheduled"]).to_string(),
                int(o, &["status", "numberReady"]).to_string(),
                int(o, &["status", "updatedNumberScheduled"]).to_string(),
                int(o, &["status", "numberAvailable"]).to_string(),
                format_labels(at(o, &["spec", "template", "spec", "nodeSelector"])),
                created,
            ],
            template_cells(o, true),
        ),
        Kind::StatefulSet => {
            let desired = opt_int(at(o, &["spec", "replicas"])).unwrap_or(1);
            (
                vec![name, format!("{}/{desired}", int(o, &["status", "readyReplicas"])), created],
                template_cells(o, false),
            )
        }
        Kind::Job => (job_row(o, name, created, now), template_cells(o, true)),
        Kind::ReplicaSet => (
            vec![
                name,
                opt_int(at(o, &["spec", "replicas"])).unwrap_or(1).to_string(),
                int(o, &["status", "replicas"]).to_string(),
                int(o, &["status", "readyReplicas"]).to_string(),
                created,
            ],
            template_cells(o, true),
        ),
        Kind::CronJob => {
            let last = at(o, &["status", "lastScheduleTime"]).and_then(Value::as_str);
            let job = at(o, &["spec", "jobTemplate"]).cloned().unwrap_or(Value::Null);
            (
                vec![
                    name,
                    text(o, &["spec", "schedule"]).to_string(),
                    or(text(o, &["spec", "timeZone"]), "<none>").to_string(),
                    (at(o, &["spec", "suspend"]) == Some(&Value::Bool(true))).to_string(),
                    list(o, &["status", "active"]).len().to_string(),
                    if last.is_some() { age(last, now) } else { "<none>".to_string() },
                    created,
                ],
                template_cells(&job, true),
            )
        }
        Kind::ConfigMap => {
            let n = key_count(at(o, &["data"])) + key_count(at(o, &["binaryData"]));
            (vec![name, n.to_string(), created], vec![])
        }
        Kind::Secret => {
            let ty = or(text(o, &["type"]), "Opaque").to_string();
            (vec![name, ty, secret_keys(o).len().to_string(), created], vec![])
        }
        Kind::Service => (
            vec![
                name,
                or(text(o, &["spec", "type"]), "ClusterIP").to_string(),
                or(text(o, &["spec", "clusterIP"]), "<none>").to_string(),
                "<none>".to_string(),
                service_ports(o),
                created,
            ],
            vec![format_labels(at(o, &["spec", "selector"]))],
        ),
        Kind::Namespace => {
            let deleting = at(o, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null());
            let phase = or(text(o, &["status", "phase"]), if deleting { "Terminating" } else { "Active" });
            (vec![name, phase.to_string(), created], vec![])
        }
        Kind::Node => node_row(o, name, created),
        Kind::PersistentVolume => {
            let claim = match at(o, &["spec", "claimRef"]) {
                Some(r) if r.is_object() => format!("{}/{}", text(r, &["namespace"]), text(r, &["name"])),
                _ => String::new(),
            };
            let phase =
                if deleting(o) { "Terminating" } else { or(text(o, &["status", "phase"]), "Available") };
            (
                vec![
                    name,
                    scalar_or(at(o, &["spec", "capacity", "storage"]), "0"),
                    access_modes(at(o, &["spec", "accessModes"])),
                    or(text(o, &["spec", "persistentVolumeReclaimPolicy"]), "Retain").to_string(),
                    phase.to_string(),
                    claim,
                    storage_class(o),
                    created,
                ],
                vec![or(text(o, &["spec", "volumeMode"]), "Filesystem").to_string()],
            )
        }
        Kind::PersistentVolumeClaim => {
            let volume = text(o, &["spec", "volumeName"]);
            // Like kubectl, capacity and access modes are those of the bound volume.
            let (capacity, modes) = if volume.is_empty() {
                (String::new(), String::new())
            } else {
                (
                    scalar_or(at(o, &["status", "capacity", "storage"]), ""),
                    access_modes(at(o, &["status", "accessModes"])),
                )
            };
            let phase =
                if deleting(o) { "Terminating" } else { or(text(o, &["status", "phase"]), "Pending") };
            (
                vec![name, phase.to_string(), volume.to_string(), capacity, modes, storage_class(o), created],
                vec![or(text(o, &["spec", "volumeMode"]), "Filesystem").to_string()],
            )
        }
    };
    if wide {
        cells.extend(extra);
    }
    cells
}

/// kubectl's pod STATUS column: the most telling container reason, init progress, or the phase.
pub(super) fn pod_row(o: &Value, name: String, created: String) -> (Vec<String>, Vec<String>) {
    let containers = list(o, &["spec", "containers"]);
    let init_containers = list(o, &["spec", "initContainers"]);
    let statuses = list(o, &["status", "containerStatuses"]);
    let init_statuses = list(o, &["status", "initContainerStatuses"]);
    // Kubernetes defaults the phase to Pending; objects stored before any status report have none.
    let phase = or(text(o, &["status", "phase"]), "Pending");
    let mut reason = or(text(o, &["status", "reason"]), phase).to_string();
    let total = if containers.is_empty() { statuses.len() } else { containers.len() };
    let mut ready = 0usize;
    let mut restarts = 0i64;

    let mut initializing = false;
    for (i, c) in init_statuses.iter().enumerate() {
        restarts = restarts.saturating_add(int(c, &["restartCount"]));
        let terminated = at(c, &["state", "terminated"]).filter(|t| t.is_object());
        let waiting_reason = text(c, &["state", "waiting", "reason"]);
        if let Some(t) = terminated {
            if int(t, &["exitCode"]) == 0 {
                continue;
            }
            reason = match (text(t, &["reason"]), int(t, &["signal"])) {
                ("", 0) => format!("Init:ExitCode:{}", int(t, &["exitCode"])),
                ("", signal) => format!("Init:Signal:{signal}"),
                (r, _) => format!("Init:{r}"),
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            let n = if init_containers.is_empty() { init_statuses.len() } else { init_containers.len() };
            reason = format!("Init:{i}/{n}");
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(o, "Initialized") {
        restarts = 0;
        let mut has_running = false;
        // Backwards, so the first container's reason wins, as in kubectl.
        for c in statuses.iter().rev() {
            restarts = restarts.saturating_add(int(c, &["restartCount"]));
            let waiting_reason = text(c, &["state", "waiting", "reason"]);
            let terminated = at(c, &["state", "terminated"]).filter(|t| t.is_object());
            let running = at(c, &["state", "running"]).is_some_and(Value::is_object);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match (text(t, &["reason"]), int(t, &["signal"])) {
                    ("", 0) => format!("ExitCode:{}", int(t, &["exitCode"])),
                    ("", signal) => format!("Signal:{signal}"),
                    (r, _) => r.to_string(),
                };
            } else if running && at(c, &["ready"]).and_then(Value::as_bool) == Some(true) {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose sidecar still runs after the main container completed is not done.
        if reason == "Completed" && has_running {
            reason = if condition_true(o, "Ready") { "Running" } else { "NotReady" }.to_string();
        }
    }

    if deleting(o) {
        reason =
            if text(o, &["status", "reason"]) == "NodeLost" { "Unknown" } else { "Terminating" }.to_string();
    }

    let ip = match text(o, &["status", "podIP"]) {
        "" => list(o, &["status", "podIPs"]).first().map_or("", |p| text(p, &["ip"])),
        ip => ip,
    };
    (
        vec![name, format!("{ready}/{total}"), reason, restarts.to_string(), created],
        vec![or(ip, "<none>").to_string(), or(text(o, &["spec", "nodeName"]), "<none>").to_string()],
    )
}

pub(super) fn job_row(o: &Value, name: String, created: String, now: OffsetDateTime) -> Vec<String> {
    let status = if condition_true(o, "Complete") {
        "Complete"
    } else if condition_true(o, "Failed") {
        "Failed"
    } else if deleting(o) {
        "Terminating"
    } else if condition_true(o, "Suspended") {
        "Suspended"
    } else {
        "Running"
    };
    let succeeded = int(o, &["status", "succeeded"]);
    let completions =
        match (opt_int(at(o, &["spec", "completions"])), opt_int(at(o, &["spec", "parallelism"]))) {
            (Some(c), _) => format!("{succeeded}/{c}"),
            (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        };
    let start = at(o, &["status", "startTime"]).and_then(Value::as_str).and_then(parse_time);
    let end = at(o, &["status", "completionTime"]).and_then(Value::as_str).and_then(parse_time);
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(s), None) => human_duration(seconds_between(s, now)),
        (Some(s), Some(e)) => human_duration(seconds_between(s, e)),
    };
    vec![name, status.to_string(), completions, duration, created]
}

pub(super) fn node_row(o: &Value, name: String, created: String) -> (Vec<String>, Vec<String>) {
    let ready = list(o, &["status", "conditions"]).iter().find(|c| text(c, &["type"]) == "Ready");
    let mut status = match ready {
        Some(c) if text(c, &["status"]) == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if at(o, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let internal_ip = list(o, &["status", "addresses"])
        .iter()
        .find(|a| text(a, &["type"]) == "InternalIP")
        .map_or("", |a| text(a, &["address"]));
    let info = |field: &str| text(o, &["status", "nodeInfo", field]);
    let version = or(info("agentVersion"), or(info("kubeletVersion"), "<none>"));
    (
        vec![name, status, node_roles(o), created, version.to_string()],
        vec![
            or(internal_ip, "<none>").to_string(),
            or(info("osImage"), "<unknown>").to_string(),
            or(info("kernelVersion"), "<unknown>").to_string(),
        ],
    )
}

/// Roles from `node-role.kubernetes.io/<role>` labels (and the older `kubernetes.io/role`).
pub(super) fn node_roles(o: &Value) -> String {
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in string_map(at(o, &["metadata", "labels"])) {
        let role = match k.strip_prefix("node-role.kubernetes.io/") {
            Some(r) => r.to_string(),
            None if k == "kubernetes.io/role" => v,
            None => continue,
        };
        if !role.is_empty() && !roles.contains(&role) {
            roles.push(role);
        }
    }
    roles.sort();
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    }
}

/// CONTAINERS, IMAGES and (with `selector`) SELECTOR of a workload's pod template.
pub(super) fn template_cells(o: &Value, selector: bool) -> Vec<String> {
    let containers = list(o, &["spec", "template", "spec", "containers"]);
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    let mut cells = vec![names.join(","), images.join(",")];
    if selector {
        cells.push(format_selector(at(o, &["spec", "selector"])));
    }
    cells
}

/// `80/TCP,443:30443/TCP`, or `<none>`.
pub(super) fn service_ports(o: &Value) -> String {
    let ports: Vec<String> = list(o, &["spec", "ports"])
        .iter()
        .map(|p| {
            let protocol = or(text(p, &["protocol"]), "TCP");
            match int(p, &["nodePort"]) {
                n if n > 0 => format!("{}:{n}/{protocol}", int(p, &["port"])),
                _ => format!("{}/{protocol}", int(p, &["port"])),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    }
}

/// Access modes abbreviated in kubectl's fixed order: `RWO,ROX,RWX,RWOP`.
pub(super) fn access_modes(v: Option<&Value>) -> String {
    let modes: Vec<&str> =
        v.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.contains(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class of a PV or PVC: the old beta annotation wins, as in kubectl.
pub(super) fn storage_class(o: &Value) -> String {
    match at(o, &["metadata", "annotations", "volume.beta.kubernetes.io/storage-class"])
        .and_then(Value::as_str)
    {
        Some(class) => class.to_string(),
        None => text(o, &["spec", "storageClassName"]).to_string(),
    }
}

/// `k=v,k=v` sorted by key, or `<none>`.
pub(super) fn format_labels(v: Option<&Value>) -> String {
    let pairs: Vec<String> = string_map(v).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

/// A label selector in `-l` syntax (`app=web,tier in (back,front),!legacy`), requirements sorted
/// by key as kubectl prints them; `<none>` when it selects everything, `<invalid>` when malformed.
pub(super) fn format_selector(v: Option<&Value>) -> String {
    let Some(v) = v.filter(|v| !v.is_null()) else { return "<none>".to_string() };
    if !v.is_object() {
        return "<invalid>".to_string();
    }
    let mut reqs: Vec<(String, String)> = string_map(at(v, &["matchLabels"]))
        .into_iter()
        .map(|(k, val)| (k.clone(), format!("{k}={val}")))
        .collect();
    for e in list(v, &["matchExpressions"]) {
        let key = text(e, &["key"]);
        let mut values: Vec<String> = list(e, &["values"]).iter().map(scalar_text).collect();
        values.sort();
        values.dedup();
        let req = match text(e, &["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<invalid>".to_string(),
        };
        reqs.push((key.to_string(), req));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    if reqs.is_empty() {
        "<none>".to_string()
    } else {
        reqs.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(",")
    }
}

/// The keys of a Secret: `data` plus any `stringData` not yet merged into it.
pub(super) fn secret_keys(o: &Value) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for field in ["data", "stringData"] {
        if let Some(m) = at(o, &[field]).and_then(Value::as_object) {
            for k in m.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    keys.sort();
    keys
}

// ---------------------------------------------------------------------------------------------
// describe
