//! The pod parts of `describe`, shared by pods and the workloads' pod templates: containers
//! with their states, environment (Secret and ConfigMap values named, never looked up),
//! probes, volumes and tolerations, in kubectl's layout.

#[allow(clippy::wildcard_imports)]
use super::*;

/// kubectl's `Pod Template:` section of a workload.
pub(super) fn pod_template(d: &mut Doc, t: &Value) {
    d.line(0, "Pod Template:");
    d.labels(2, "Labels:", at(t, &["metadata", "labels"]));
    if at(t, &["metadata", "annotations"]).and_then(Value::as_object).is_some_and(|m| !m.is_empty()) {
        d.annotations(2, "Annotations:", at(t, &["metadata", "annotations"]));
    }
    let init = list(t, &["spec", "initContainers"]);
    if !init.is_empty() {
        containers(d, "Init Containers:", 2, init, None, t);
    }
    containers(d, "Containers:", 2, list(t, &["spec", "containers"]), None, t);
    volumes(d, 2, list(t, &["spec", "volumes"]));
    d.labels(2, "Node-Selectors:", at(t, &["spec", "nodeSelector"]));
    tolerations(d, 2, list(t, &["spec", "tolerations"]));
}

/// The containers of a pod (`statuses` given) or of a pod template (`space` 2, no statuses).
pub(super) fn containers(
    d: &mut Doc,
    title: &str,
    space: usize,
    specs: &[Value],
    statuses: Option<&[Value]>,
    pod: &Value,
) {
    d.line(space, title);
    // Template containers are indented one more space than a pod's, as kubectl does.
    let name_indent = if space > 0 { 3 } else { 2 };
    for c in specs {
        let name = text(c, &["name"]);
        let status = statuses.and_then(|s| s.iter().find(|st| text(st, &["name"]) == name));
        d.line(name_indent, &format!("{name}:"));
        if let Some(st) = status {
            d.kv(4, "Container ID:", text(st, &["containerID"]));
        }
        d.kv(4, "Image:", text(c, &["image"]));
        if let Some(st) = status {
            d.kv(4, "Image ID:", text(st, &["imageID"]));
        }
        let ports = list(c, &["ports"]);
        let protocol = |p: &Value| or(text(p, &["protocol"]), "TCP").to_string();
        let container_ports: Vec<String> =
            ports.iter().map(|p| format!("{}/{}", int(p, &["containerPort"]), protocol(p))).collect();
        let host_ports: Vec<String> =
            ports.iter().map(|p| format!("{}/{}", int(p, &["hostPort"]), protocol(p))).collect();
        match container_ports.len() {
            0 => d.kv(4, "Port:", "<none>"),
            1 => d.kv(4, "Port:", &container_ports.join("")),
            _ => d.kv(4, "Ports:", &container_ports.join(", ")),
        }
        match host_ports.len() {
            0 => d.kv(4, "Host Port:", "<none>"),
            1 => d.kv(4, "Host Port:", &host_ports.join("")),
            _ => d.kv(4, "Host Ports:", &host_ports.join(", ")),
        }
        for (field, title) in [("command", "Command:"), ("args", "Args:")] {
            let items = list(c, &[field]);
            if !items.is_empty() {
                d.line(4, title);
                for item in items {
                    for line in scalar_text(item).split('\n') {
                        d.line(6, line);
                    }
                }
            }
        }
        if let Some(st) = status {
            container_state(d, "State:", at(st, &["state"]));
            if at(st, &["lastState", "terminated"]).is_some_and(Value::is_object) {
                container_state(d, "Last State:", at(st, &["lastState"]));
            }
            let ready = at(st, &["ready"]).and_then(Value::as_bool) == Some(true);
            d.kv(4, "Ready:", if ready { "True" } else { "False" });
            d.kv(4, "Restart Count:", &int(st, &["restartCount"]).to_string());
        }
        for (field, title) in [("limits", "Limits:"), ("requests", "Requests:")] {
            let resources = string_map(at(c, &["resources", field]));
            if !resources.is_empty() {
                d.line(4, title);
                for (name, q) in resources {
                    d.kv(6, &format!("{name}:"), &q);
                }
            }
        }
        for (field, title) in
            [("livenessProbe", "Liveness:"), ("readinessProbe", "Readiness:"), ("startupProbe", "Startup:")]
        {
            if let Some(p) = at(c, &[field]).filter(|p| p.is_object()) {
                d.kv(4, title, &probe(p));
            }
        }
        let env_from = list(c, &["envFrom"]);
        if !env_from.is_empty() {
            d.line(4, "Environment Variables from:");
            for e in env_from {
                let (from, r) = match (at(e, &["configMapRef"]), at(e, &["secretRef"])) {
                    (Some(r), _) if r.is_object() => ("ConfigMap", r),
                    (_, Some(r)) if r.is_object() => ("Secret", r),
                    _ => ("", &Value::Null),
                };
                let prefix = text(e, &["prefix"]);
                let source = if prefix.is_empty() {
                    from.to_string()
                } else {
                    format!("{from} with prefix '{prefix}'")
                };
                d.cells(6, &[text(r, &["name"]), &source, &format!("Optional: {}", optional(r))]);
            }
        }
        let env = list(c, &["env"]);
        if env.is_empty() {
            d.kv(4, "Environment:", "<none>");
        } else {
            d.line(4, "Environment:");
            for e in env {
                env_var(d, e, pod);
            }
        }
        let mut mounts: Vec<&Value> = list(c, &["volumeMounts"]).iter().collect();
        if mounts.is_empty() {
            d.kv(4, "Mounts:", "<none>");
        } else {
            d.line(4, "Mounts:");
            mounts.sort_by_key(|m| text(m, &["mountPath"]));
            for m in mounts {
                let ro = at(m, &["readOnly"]).and_then(Value::as_bool) == Some(true);
                let mut flags = vec![if ro { "ro".to_string() } else { "rw".to_string() }];
                let sub_path = text(m, &["subPath"]);
                if !sub_path.is_empty() {
                    flags.push(format!("path={sub_path:?}"));
                }
                d.line(
                    6,
                    &format!("{} from {} ({})", text(m, &["mountPath"]), text(m, &["name"]), flags.join(",")),
                );
            }
        }
    }
}

pub(super) fn container_state(d: &mut Doc, title: &str, state: Option<&Value>) {
    let state = state.unwrap_or(&Value::Null);
    let part = |name: &str| at(state, &[name]).filter(|v| v.is_object());
    if let Some(r) = part("running") {
        d.kv(4, title, "Running");
        d.kv(6, "Started:", &timestamp(at(r, &["startedAt"])));
    } else if let Some(w) = part("waiting") {
        d.kv(4, title, "Waiting");
        let reason = text(w, &["reason"]);
        if !reason.is_empty() {
            d.kv(6, "Reason:", reason);
        }
    } else if let Some(t) = part("terminated") {
        d.kv(4, title, "Terminated");
        for (field, label) in [("reason", "Reason:"), ("message", "Message:")] {
            let v = text(t, &[field]);
            if !v.is_empty() {
                d.kv(6, label, v);
            }
        }
        d.kv(6, "Exit Code:", &int(t, &["exitCode"]).to_string());
        let signal = int(t, &["signal"]);
        if signal > 0 {
            d.kv(6, "Signal:", &signal.to_string());
        }
        d.kv(6, "Started:", &timestamp(at(t, &["startedAt"])));
        d.kv(6, "Finished:", &timestamp(at(t, &["finishedAt"])));
    } else {
        d.kv(4, title, "Waiting");
    }
}

/// One environment variable. Values from Secrets and ConfigMaps are named, never looked up.
pub(super) fn env_var(d: &mut Doc, e: &Value, pod: &Value) {
    let name = format!("{}:", text(e, &["name"]));
    let from = at(e, &["valueFrom"]).filter(|v| v.is_object());
    let Some(from) = from else {
        d.kv(6, &name, &scalar_text(at(e, &["value"]).unwrap_or(&Value::Null)));
        return;
    };
    if let Some(f) = at(from, &["fieldRef"]).filter(|v| v.is_object()) {
        let path = text(f, &["fieldPath"]);
        // A pod's own fields are shown resolved, as kubectl does; a template has no values yet.
        let value = match path {
            "metadata.name" | "metadata.namespace" | "metadata.uid" => {
                text(pod, &["metadata", path.trim_start_matches("metadata.")])
            }
            "spec.nodeName" | "spec.serviceAccountName" => {
                text(pod, &["spec", path.trim_start_matches("spec.")])
            }
            "status.podIP" | "status.hostIP" => text(pod, &["status", path.trim_start_matches("status.")]),
            _ => "",
        };
        let value = if at(pod, &["kind"]).and_then(Value::as_str) == Some("Pod") { value } else { "" };
        d.kv(6, &name, &format!("{value} ({}:{path})", or(text(f, &["apiVersion"]), "v1")));
    } else if let Some(r) = at(from, &["secretKeyRef"]).filter(|v| v.is_object()) {
        d.cells(
            6,
            &[
                &name,
                &format!("<set to the key '{}' in secret '{}'>", text(r, &["key"]), text(r, &["name"])),
                &format!("Optional: {}", optional(r)),
            ],
        );
    } else if let Some(r) = at(from, &["configMapKeyRef"]).filter(|v| v.is_object()) {
        d.cells(
            6,
            &[
                &name,
                &format!("<set to the key '{}' of config map '{}'>", text(r, &["key"]), text(r, &["name"])),
                &format!("Optional: {}", optional(r)),
            ],
        );
    } else {
        d.kv(6, &name, "<unknown source>");
    }
}

pub(super) fn optional(r: &Value) -> bool {
    at(r, &["optional"]).and_then(Value::as_bool) == Some(true)
}

/// kubectl's one-line probe summary, with Kubernetes' defaults for unset timings.
pub(super) fn probe(p: &Value) -> String {
    let n = |field: &str, default: i64| opt_int(at(p, &[field])).unwrap_or(default);
    let attrs = format!(
        "delay={}s timeout={}s period={}s #success={} #failure={}",
        n("initialDelaySeconds", 0),
        n("timeoutSeconds", 1),
        n("periodSeconds", 10),
        n("successThreshold", 1),
        n("failureThreshold", 3),
    );
    if let Some(exec) = at(p, &["exec"]).filter(|v| v.is_object()) {
        let command: Vec<String> = list(exec, &["command"]).iter().map(scalar_text).collect();
        return format!("exec [{}] {attrs}", command.join(" "));
    }
    if let Some(h) = at(p, &["httpGet"]).filter(|v| v.is_object()) {
        let scheme = or(text(h, &["scheme"]), "HTTP").to_ascii_lowercase();
        let host = text(h, &["host"]);
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
        let port = scalar_or(at(h, &["port"]), "");
        let authority = if port.is_empty() { host } else { format!("{host}:{port}") };
        let path = text(h, &["path"]);
        let slash = if path.is_empty() || path.starts_with('/') { "" } else { "/" };
        return format!("http-get {scheme}://{authority}{slash}{path} {attrs}");
    }
    if let Some(t) = at(p, &["tcpSocket"]).filter(|v| v.is_object()) {
        return format!("tcp-socket {}:{} {attrs}", text(t, &["host"]), scalar_or(at(t, &["port"]), ""));
    }
    format!("unknown {attrs}")
}

pub(super) fn volumes(d: &mut Doc, space: usize, vols: &[Value]) {
    if vols.is_empty() {
        d.kv(space, "Volumes:", "<none>");
        return;
    }
    d.line(space, "Volumes:");
    let name_indent = if space > 0 { 3 } else { 2 };
    for v in vols {
        d.line(name_indent, &format!("{}:", text(v, &["name"])));
        let source = |name: &str| at(v, &[name]).filter(|s| s.is_object());
        if let Some(s) = source("hostPath") {
            d.kv(4, "Type:", "HostPath (bare host directory volume)");
            d.kv(4, "Path:", text(s, &["path"]));
            d.kv(4, "HostPathType:", or(text(s, &["type"]), "<none>"));
        } else if let Some(s) = source("emptyDir") {
            d.kv(4, "Type:", "EmptyDir (a temporary directory that shares a pod's lifetime)");
            d.kv(4, "Medium:", text(s, &["medium"]));
            d.kv(4, "SizeLimit:", &scalar_or(at(s, &["sizeLimit"]), "<unset>"));
        } else if let Some(s) = source("configMap") {
            d.kv(4, "Type:", "ConfigMap (a volume populated by a ConfigMap)");
            d.kv(4, "Name:", text(s, &["name"]));
            d.kv(4, "Optional:", &optional(s).to_string());
        } else if let Some(s) = source("secret") {
            d.kv(4, "Type:", "Secret (a volume populated by a Secret)");
            d.kv(4, "SecretName:", text(s, &["secretName"]));
            d.kv(4, "Optional:", &optional(s).to_string());
        } else if let Some(s) = source("persistentVolumeClaim") {
            let ro = at(s, &["readOnly"]).and_then(Value::as_bool) == Some(true);
            d.kv(
                4,
                "Type:",
                "PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)",
            );
            d.kv(4, "ClaimName:", text(s, &["claimName"]));
            d.kv(4, "ReadOnly:", &ro.to_string());
        } else {
            d.line(4, "<unknown>");
        }
    }
}

/// `key=value:Effect op=Exists for 300s`, one per line, or `<none>`.
pub(super) fn tolerations(d: &mut Doc, indent: usize, tols: &[Value]) {
    if tols.is_empty() {
        d.kv(indent, "Tolerations:", "<none>");
    }
    for (i, t) in tols.iter().enumerate() {
        let (key, value, effect) = (text(t, &["key"]), text(t, &["value"]), text(t, &["effect"]));
        let mut s = key.to_string();
        if !value.is_empty() {
            s.push_str(&format!("={value}"));
        }
        if !effect.is_empty() {
            s.push_str(&format!(":{effect}"));
        }
        if text(t, &["operator"]) == "Exists" && value.is_empty() {
            s.push_str(if key.is_empty() && effect.is_empty() { "op=Exists" } else { " op=Exists" });
        }
        if let Some(secs) = opt_int(at(t, &["tolerationSeconds"])) {
            s.push_str(&format!(" for {secs}s"));
        }
        d.kv(indent, if i == 0 { "Tolerations:" } else { "" }, &s);
    }
}
