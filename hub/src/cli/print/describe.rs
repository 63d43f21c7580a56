//! `describe` text: kubectl's layout for pods, deployments, secrets and configmaps, and a
//! generic rendering for the other kinds.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A `kubectl describe`-like text for `obj`, with `events` (Event objects about it) at the end.
///
/// Secrets never show their values: only each key's size in bytes.
pub fn describe(kind: Kind, obj: &Value, events: &[Value], now: OffsetDateTime) -> String {
    let mut d = Doc::default();
    d.kv(0, "Name:", text(obj, &["metadata", "name"]));
    if kind.info().namespaced {
        d.kv(0, "Namespace:", text(obj, &["metadata", "namespace"]));
    }
    d.labels(0, "Labels:", at(obj, &["metadata", "labels"]));
    d.annotations(0, "Annotations:", at(obj, &["metadata", "annotations"]));
    d.kv(0, "CreationTimestamp:", &timestamp(at(obj, &["metadata", "creationTimestamp"])));
    match kind {
        Kind::Pod => describe_pod(&mut d, obj),
        Kind::Deployment => describe_deployment(&mut d, obj),
        Kind::Secret => describe_secret(&mut d, obj),
        Kind::ConfigMap => describe_config_map(&mut d, obj),
        Kind::CronJob => {
            generic_section(&mut d, "Spec:", at(obj, &["spec"]), &["jobTemplate"]);
            if let Some(t) = at(obj, &["spec", "jobTemplate", "spec", "template"]) {
                pod_template(&mut d, t);
            }
            generic_section(&mut d, "Status:", at(obj, &["status"]), &[]);
        }
        Kind::DaemonSet | Kind::StatefulSet | Kind::Job | Kind::ReplicaSet => {
            generic_section(&mut d, "Spec:", at(obj, &["spec"]), &["template"]);
            if let Some(t) = at(obj, &["spec", "template"]) {
                pod_template(&mut d, t);
            }
            generic_section(&mut d, "Status:", at(obj, &["status"]), &[]);
        }
        Kind::Node
        | Kind::Namespace
        | Kind::Service
        | Kind::PersistentVolume
        | Kind::PersistentVolumeClaim => {
            generic_section(&mut d, "Spec:", at(obj, &["spec"]), &[]);
            generic_section(&mut d, "Status:", at(obj, &["status"]), &[]);
        }
    }
    describe_events(&mut d, events, now);
    // kubectl's describe writer: no minimum width, at least 2 spaces between columns.
    tabwrite(&d.lines, 0, 2)
}

/// describe's output as lines of cells: every cell but a line's last is aligned with the cells
/// above and below it (see `tabwrite`). The first cell carries the indentation.
#[derive(Default)]
pub(super) struct Doc {
    lines: Vec<Vec<String>>,
}

impl Doc {
    /// A line of text at `indent`.
    pub(super) fn line(&mut self, indent: usize, s: &str) {
        self.lines.push(vec![format!("{}{}", spaces(indent), clean(s))]);
    }

    pub(super) fn blank(&mut self) {
        self.lines.push(vec![String::new()]);
    }

    /// `key:` and an aligned value; a multi-line value continues on aligned lines below.
    pub(super) fn kv(&mut self, indent: usize, key: &str, value: &str) {
        let mut parts = value.split('\n');
        let first = parts.next().unwrap_or_default();
        self.lines.push(vec![format!("{}{}", spaces(indent), clean(key)), clean(first)]);
        for rest in parts {
            self.lines.push(vec![spaces(indent), clean(rest)]);
        }
    }

    /// Aligned cells, the first indented.
    pub(super) fn cells(&mut self, indent: usize, cells: &[&str]) {
        let mut line: Vec<String> = cells.iter().map(|c| clean(c)).collect();
        if let Some(first) = line.first_mut() {
            first.insert_str(0, &spaces(indent));
        }
        self.lines.push(line);
    }

    /// `Labels:  k=v` with one label per line, sorted, or `<none>`.
    pub(super) fn labels(&mut self, indent: usize, title: &str, v: Option<&Value>) {
        let pairs = string_map(v);
        if pairs.is_empty() {
            self.kv(indent, title, "<none>");
        }
        for (i, (k, v)) in pairs.iter().enumerate() {
            let key = if i == 0 { title } else { "" };
            self.kv(indent, key, &format!("{k}={v}"));
        }
    }

    /// `Annotations:  k: v`, sorted, long or multi-line values on their own shortened lines.
    pub(super) fn annotations(&mut self, indent: usize, title: &str, v: Option<&Value>) {
        let pairs: Vec<(String, String)> =
            string_map(v).into_iter().filter(|(k, _)| k != LAST_APPLIED).collect();
        if pairs.is_empty() {
            self.kv(indent, title, "<none>");
        }
        for (i, (k, v)) in pairs.iter().enumerate() {
            let key = if i == 0 { title } else { "" };
            let v = v.strip_suffix('\n').unwrap_or(v);
            if v.contains('\n') || k.chars().count() + v.chars().count() + 2 > MAX_ANNOTATION_LEN {
                self.kv(indent, key, &format!("{k}:"));
                for line in v.split('\n') {
                    self.kv(indent, "", &format!("  {}", shorten(line, MAX_ANNOTATION_LEN - 2)));
                }
            } else {
                self.kv(indent, key, &format!("{k}: {v}"));
            }
        }
    }
}

pub(super) fn describe_pod(d: &mut Doc, o: &Value) {
    let node = text(o, &["spec", "nodeName"]);
    let host_ip = text(o, &["status", "hostIP"]);
    d.kv(
        0,
        "Node:",
        &match (node, host_ip) {
            ("", _) => "<none>".to_string(),
            (n, "") => n.to_string(),
            (n, ip) => format!("{n}/{ip}"),
        },
    );
    if let Some(start) = at(o, &["status", "startTime"]).filter(|v| !v.is_null()) {
        d.kv(0, "Start Time:", &timestamp(Some(start)));
    }
    let phase = or(text(o, &["status", "phase"]), "Pending");
    d.kv(0, "Status:", if deleting(o) { "Terminating" } else { phase });
    for (field, title) in [("reason", "Reason:"), ("message", "Message:")] {
        let v = text(o, &["status", field]);
        if !v.is_empty() {
            d.kv(0, title, v);
        }
    }
    d.kv(0, "IP:", or(text(o, &["status", "podIP"]), "<none>"));
    if let Some(owner) = list(o, &["metadata", "ownerReferences"])
        .iter()
        .find(|r| at(r, &["controller"]).and_then(Value::as_bool) == Some(true))
    {
        d.kv(0, "Controlled By:", &format!("{}/{}", text(owner, &["kind"]), text(owner, &["name"])));
    }
    let init = list(o, &["spec", "initContainers"]);
    if !init.is_empty() {
        containers(d, "Init Containers:", 0, init, Some(list(o, &["status", "initContainerStatuses"])), o);
    }
    let main = list(o, &["spec", "containers"]);
    containers(d, "Containers:", 0, main, Some(list(o, &["status", "containerStatuses"])), o);
    let conditions = list(o, &["status", "conditions"]);
    if !conditions.is_empty() {
        d.line(0, "Conditions:");
        d.cells(2, &["Type", "Status"]);
        for c in conditions {
            // kubectl writes a space after the type, which widens the column by one.
            d.cells(2, &[&format!("{} ", text(c, &["type"])), text(c, &["status"])]);
        }
    }
    volumes(d, 0, list(o, &["spec", "volumes"]));
    d.labels(0, "Node-Selectors:", at(o, &["spec", "nodeSelector"]));
    tolerations(d, 0, list(o, &["spec", "tolerations"]));
}

pub(super) fn describe_deployment(d: &mut Doc, o: &Value) {
    d.kv(0, "Selector:", &format_selector(at(o, &["spec", "selector"])));
    let desired = opt_int(at(o, &["spec", "replicas"])).unwrap_or(1);
    let available = int(o, &["status", "availableReplicas"]);
    // Kubernetes reports unavailableReplicas; when it is absent, it is desired minus available.
    let unavailable = opt_int(at(o, &["status", "unavailableReplicas"]))
        .unwrap_or(desired.saturating_sub(available).max(0));
    d.kv(
        0,
        "Replicas:",
        &format!(
            "{desired} desired | {} updated | {} total | {available} available | {unavailable} unavailable",
            int(o, &["status", "updatedReplicas"]),
            int(o, &["status", "replicas"]),
        ),
    );
    let strategy = or(text(o, &["spec", "strategy", "type"]), "RollingUpdate");
    d.kv(0, "StrategyType:", strategy);
    d.kv(0, "MinReadySeconds:", &int(o, &["spec", "minReadySeconds"]).to_string());
    if strategy == "RollingUpdate" {
        let ru = |field: &str| scalar_or(at(o, &["spec", "strategy", "rollingUpdate", field]), "25%");
        d.kv(
            0,
            "RollingUpdateStrategy:",
            &format!("{} max unavailable, {} max surge", ru("maxUnavailable"), ru("maxSurge")),
        );
    }
    if let Some(t) = at(o, &["spec", "template"]) {
        pod_template(d, t);
    }
    let conditions = list(o, &["status", "conditions"]);
    if !conditions.is_empty() {
        d.line(0, "Conditions:");
        d.cells(2, &["Type", "Status", "Reason"]);
        d.cells(2, &["----", "------", "------"]);
        for c in conditions {
            d.cells(2, &[&format!("{} ", text(c, &["type"])), text(c, &["status"]), text(c, &["reason"])]);
        }
    }
}

/// A Secret's type and the size of each value. Values are decoded only to count their bytes and
/// never printed.
pub(super) fn describe_secret(d: &mut Doc, o: &Value) {
    d.blank();
    d.kv(0, "Type:", or(text(o, &["type"]), "Opaque"));
    d.blank();
    d.line(0, "Data");
    d.line(0, "====");
    for key in secret_keys(o) {
        let size = match (at(o, &["data", &key]), at(o, &["stringData", &key])) {
            (Some(Value::String(b64)), _) => match base64::engine::general_purpose::STANDARD.decode(b64) {
                Ok(bytes) => format!("{} bytes", bytes.len()),
                Err(_) => "<invalid base64>".to_string(),
            },
            (None, Some(Value::String(plain))) => format!("{} bytes", plain.len()),
            _ => "<invalid base64>".to_string(),
        };
        d.kv(0, &format!("{key}:"), &size);
    }
}

/// A ConfigMap's data in full (ConfigMaps are not secret) and its binary data's sizes.
pub(super) fn describe_config_map(d: &mut Doc, o: &Value) {
    d.blank();
    d.line(0, "Data");
    d.line(0, "====");
    if let Some(data) = at(o, &["data"]).and_then(Value::as_object) {
        let mut keys: Vec<&String> = data.keys().collect();
        keys.sort();
        for k in keys {
            d.line(0, &format!("{k}:"));
            d.line(0, "----");
            let value = data.get(k).map(scalar_text).unwrap_or_default();
            // Values are shown as they are, tabs included: each line is a single cell, so tabs
            // do not take part in alignment.
            for line in value.split('\n') {
                d.lines.push(vec![clean_keep_tabs(line)]);
            }
        }
    }
    d.blank();
    d.line(0, "BinaryData");
    d.line(0, "====");
    if let Some(data) = at(o, &["binaryData"]).and_then(Value::as_object) {
        let mut keys: Vec<&String> = data.keys().collect();
        keys.sort();
        for k in keys {
            let size = match data.get(k).and_then(Value::as_str) {
                Some(b64) => match base64::engine::general_purpose::STANDARD.decode(b64) {
                    Ok(bytes) => format!("{} bytes", bytes.len()),
                    Err(_) => "<invalid base64>".to_string(),
                },
                None => "<invalid base64>".to_string(),
            };
            d.line(0, &format!("{k}: {size}"));
        }
    }
    d.blank();
}

/// `Events:` with kubectl's table (oldest first), or `<none>`.
pub(super) fn describe_events(d: &mut Doc, events: &[Value], now: OffsetDateTime) {
    if events.is_empty() {
        d.kv(0, "Events:", "<none>");
        return;
    }
    let mut sorted: Vec<&Value> = events.iter().collect();
    // Events without a time sort first, like Go's zero time.
    sorted.sort_by_key(|e| at(e, &["lastTimestamp"]).and_then(Value::as_str).and_then(parse_time));
    d.line(0, "Events:");
    d.cells(2, &["Type", "Reason", "Age", "From", "Message"]);
    d.cells(2, &["----", "------", "----", "----", "-------"]);
    for e in sorted {
        let time_of = |field: &str| at(e, &[field]).and_then(Value::as_str).filter(|s| !s.is_empty());
        let last = time_of("lastTimestamp").or(time_of("eventTime")).or(time_of("firstTimestamp"));
        let first = time_of("eventTime").or(time_of("firstTimestamp")).or(last);
        let count = int(e, &["count"]);
        let interval = if count > 1 {
            format!("{} (x{count} over {})", age(last, now), age(first, now))
        } else {
            age(first, now)
        };
        let source = or(text(e, &["source", "component"]), text(e, &["reportingController"]));
        d.cells(
            2,
            &[text(e, &["type"]), text(e, &["reason"]), &interval, source, text(e, &["message"]).trim()],
        );
    }
}

/// `Title:` and `value` as indented `key: value` lines, skipping `skip` keys; nothing when the
/// value is missing or empty.
pub(super) fn generic_section(d: &mut Doc, title: &str, v: Option<&Value>, skip: &[&str]) {
    let Some(m) = v.and_then(Value::as_object) else { return };
    let entries: Vec<(&String, &Value)> = m.iter().filter(|(k, _)| !skip.contains(&k.as_str())).collect();
    if entries.is_empty() {
        return;
    }
    d.line(0, title);
    for (k, v) in entries {
        generic_entry(d, 2, "", k, v, 0);
    }
}

/// One `key: value` at `indent`; `lead` (a sequence's `- `) replaces the start of the indentation
/// on the first line.
pub(super) fn generic_entry(d: &mut Doc, indent: usize, lead: &str, key: &str, v: &Value, depth: usize) {
    let first = format!("{}{lead}{key}:", spaces(indent.saturating_sub(lead.len())));
    if depth >= MAX_DESCRIBE_DEPTH {
        d.lines.push(vec![clean(&first), "...".to_string()]);
        return;
    }
    match v {
        Value::Object(m) if !m.is_empty() => {
            d.lines.push(vec![clean(&first)]);
            for (k, child) in m {
                generic_entry(d, indent + 2, "", k, child, depth + 1);
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) && !items.is_empty() => {
            let joined: Vec<String> = items.iter().map(scalar_text).collect();
            d.lines.push(vec![clean(&first), clean(&joined.join(", "))]);
        }
        Value::Array(items) if !items.is_empty() => {
            d.lines.push(vec![clean(&first)]);
            for item in items {
                generic_item(d, indent + 2, item, depth + 1);
            }
        }
        Value::Object(_) | Value::Array(_) | Value::Null => {
            d.lines.push(vec![clean(&first), "<none>".to_string()])
        }
        scalar => {
            let text = scalar_text(scalar);
            let mut lines = text.split('\n');
            d.lines.push(vec![clean(&first), clean(lines.next().unwrap_or_default())]);
            for rest in lines {
                d.lines.push(vec![spaces(indent), clean(rest)]);
            }
        }
    }
}

/// One element of a list of mappings or lists: `- key: value` with the rest of its keys below.
pub(super) fn generic_item(d: &mut Doc, indent: usize, item: &Value, depth: usize) {
    match item {
        Value::Object(m) if !m.is_empty() => {
            for (i, (k, child)) in m.iter().enumerate() {
                let lead = if i == 0 { "- " } else { "" };
                generic_entry(d, indent + 2, lead, k, child, depth);
            }
        }
        Value::Array(inner) if !inner.is_empty() && depth < MAX_DESCRIBE_DEPTH => {
            d.line(indent, "-");
            for i in inner {
                generic_item(d, indent + 2, i, depth + 1);
            }
        }
        Value::Array(_) | Value::Object(_) => d.line(indent, "- <none>"),
        scalar => d.line(indent, &format!("- {}", scalar_text(scalar))),
    }
}

/// RFC 1123 with numeric zone, as kubectl's describe prints times; the raw text when it is not an
/// RFC 3339 time, `<unknown>` when missing.
pub(super) fn timestamp(v: Option<&Value>) -> String {
    let Some(s) = v.and_then(Value::as_str).filter(|s| !s.is_empty()) else {
        return "<unknown>".to_string();
    };
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    parse_time(s).and_then(|t| t.format(&format).ok()).unwrap_or_else(|| s.to_string())
}

// ---------------------------------------------------------------------------------------------
// Alignment
