//! Small pure helpers the controllers share where they touch JSON: an object's name, namespace
//! and uid as the store keeps it (for events and writes), a stored Node's readiness and a pod's
//! node read without parsing (cheap filters the node loops run on every change), times, the
//! revision hash and int-or-percent budgets. Typed facts about pods are in `pods`.

use serde_json::Value;
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

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == "Ready")
}

/// A stored Node's Ready condition is True (read without parsing the Node).
pub fn node_ready(node: &Value) -> bool {
    ready_condition(node).is_some_and(|c| c["status"] == "True")
}

/// The node a pod is bound to.
pub fn node_of(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
}

/// Ten hex digits of the SHA-256 of a JSON value (stable for equal values).
pub fn hash(v: &Value) -> String {
    let digest = Sha256::digest(v.to_string().as_bytes());
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
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
    use serde_json::json;

    #[test]
    fn percentages_round_as_kubernetes() {
        assert_eq!(int_or_percent(Some(&json!("25%")), 3, 1, true), 1);
        assert_eq!(int_or_percent(Some(&json!("25%")), 3, 1, false), 0);
        assert_eq!(int_or_percent(Some(&json!(2)), 3, 1, false), 2);
        assert_eq!(int_or_percent(None, 3, 1, false), 1);
        assert_eq!(int_or_percent(Some(&json!("50%")), 10, 1, false), 5);
        assert_eq!(int_or_percent(Some(&json!("99999999999999999%")), i64::MAX, 1, true), i64::MAX / 200);
        // (Availability at extreme clocks: `pods::tests`.)
    }
}
