//! Small pure helpers the workload controllers share: reading objects as the store keeps them
//! (JSON values), pod readiness and availability, owner references and pods from templates.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A string field at a JSON pointer, or "".
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

pub fn name(v: &Value) -> &str {
    str_at(v, "/metadata/name")
}

pub fn namespace(v: &Value) -> &str {
    v.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default")
}

pub fn uid(v: &Value) -> &str {
    str_at(v, "/metadata/uid")
}

pub fn generation(v: &Value) -> i64 {
    v.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1)
}

/// An integer field at a JSON pointer.
pub fn int_at(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

/// RFC 3339 to Unix seconds.
pub fn unix_seconds(rfc3339: &str) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Unix seconds to RFC 3339 (UTC, whole seconds), as the hub writes times.
pub fn rfc3339(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The pod's phase (`Pending` when it has none yet).
pub fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending")
}

/// Succeeded or Failed: the pod will not run again.
pub fn is_terminal(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Whether the pod is being deleted (it then no longer counts for its controller).
pub fn is_deleting(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_some()
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == "Ready")
}

/// A stored Node's Ready condition is True (read without parsing the Node).
pub fn node_ready(node: &Value) -> bool {
    ready_condition(node).is_some_and(|c| c["status"] == "True")
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    !is_terminal(pod) && ready_condition(pod).is_some_and(|c| c["status"] == "True")
}

/// Ready for at least `min_ready_seconds` at `now` (Unix seconds), as Kubernetes counts an
/// available pod. A Ready condition without a transition time counts as ready since forever.
pub fn is_available(pod: &Value, min_ready_seconds: i64, now: i64) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    let since = ready_condition(pod)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(unix_seconds)
        .unwrap_or(i64::MIN / 2);
    now.saturating_sub(since) >= min_ready_seconds
}

/// The node a pod is bound to.
pub fn node_of(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
}

/// The uid of the object's controller (the owner reference with `controller: true`).
pub fn controller_uid(v: &Value) -> Option<&str> {
    v.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)?
        .get("uid")?
        .as_str()
}

/// A controller owner reference to `owner`.
pub fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": str_at(owner, "/apiVersion"),
        "kind": str_at(owner, "/kind"),
        "name": name(owner),
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Ten hex digits of the SHA-256 of a JSON value (stable for equal values).
pub fn hash(v: &Value) -> String {
    let digest = Sha256::digest(v.to_string().as_bytes());
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

/// A pod made from a pod template (`{metadata, spec}`): the template's labels and annotations,
/// `labels` added, named `name`, in `owner`'s namespace and controlled by it.
pub fn pod_from_template(template: &Value, name: &str, owner: &Value, labels: &[(&str, &str)]) -> Value {
    let mut meta = json!({});
    for key in ["labels", "annotations"] {
        if let Some(m) = template.pointer(&format!("/metadata/{key}")).filter(|m| m.is_object()) {
            meta[key] = m.clone();
        }
    }
    for (k, v) in labels {
        meta["labels"][*k] = (*v).into();
    }
    meta["name"] = name.into();
    meta["namespace"] = namespace(owner).into();
    meta["ownerReferences"] = json!([owner_ref(owner)]);
    let spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

/// An integer or a percentage of `total` (`"25%"`), rounded up or down as Kubernetes does for
/// maxSurge (up) and maxUnavailable (down). `None` when the value is neither.
pub fn int_or_percent(v: Option<&Value>, total: i64, default: i64, round_up: bool) -> i64 {
    match v {
        None | Some(Value::Null) => default,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(default).max(0),
        Some(Value::String(s)) => match s.strip_suffix('%').and_then(|p| p.trim().parse::<i64>().ok()) {
            Some(p) if round_up => (p.clamp(0, 100) * total.clamp(0, i64::MAX / 200) + 99) / 100,
            Some(p) => p.clamp(0, 100) * total.clamp(0, i64::MAX / 200) / 100,
            None => s.trim().parse::<i64>().unwrap_or(default).max(0),
        },
        _ => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_waits_min_ready_seconds() {
        let pod = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(1_000)}]}});
        assert!(is_ready(&pod));
        assert!(is_available(&pod, 0, 1_000));
        assert!(!is_available(&pod, 10, 1_005));
        assert!(is_available(&pod, 10, 1_010));
        let done =
            json!({"status": {"phase": "Succeeded", "conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(!is_ready(&done));
    }

    #[test]
    fn percentages_round_as_kubernetes() {
        assert_eq!(int_or_percent(Some(&json!("25%")), 3, 1, true), 1);
        assert_eq!(int_or_percent(Some(&json!("25%")), 3, 1, false), 0);
        assert_eq!(int_or_percent(Some(&json!(2)), 3, 1, false), 2);
        assert_eq!(int_or_percent(None, 3, 1, false), 1);
        assert_eq!(int_or_percent(Some(&json!("50%")), 10, 1, false), 5);
        assert_eq!(int_or_percent(Some(&json!("99999999999999999%")), i64::MAX, 1, true), i64::MAX / 200);
        let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
            "lastTransitionTime": rfc3339(0)}]}});
        // Extreme clocks do not overflow.
        assert!(!is_available(&ready, 10, i64::MIN));
        assert!(is_available(&ready, 10, i64::MAX));
    }

    #[test]
    fn pods_from_templates_are_owned() {
        let owner = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "ds", "namespace": "edge", "uid": "u"}});
        let t = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}});
        let p = pod_from_template(&t, "ds-abc", &owner, &[("controller-revision-hash", "h")]);
        assert_eq!(p["metadata"]["namespace"], "edge");
        assert_eq!(p["metadata"]["labels"], json!({"app": "x", "controller-revision-hash": "h"}));
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
        assert_eq!(controller_uid(&p), Some("u"));
    }
}
