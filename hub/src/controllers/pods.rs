//! Typed facts the workload controllers share about the objects they read: a pod's phase,
//! readiness and availability, its node, controller references, and pods made from templates.
//! The typed counterpart of `common`'s JSON readers, for controllers that parse at the loop's edge.

use flotilla_shared::api::{Condition, ObjectMeta, OwnerReference, Pod, PodPhase, PodTemplateSpec, Resource};
use serde::Serialize;
use serde_json::Value;

use super::common::unix_seconds;

/// An object as the store keeps it (JSON). Serializing plain data cannot fail.
pub fn value<T: Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// The object's namespace, `default` when it has none (as the store files it).
pub fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

pub fn uid(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or_default()
}

/// The object's generation (1 before the store has counted one).
pub fn generation(meta: &ObjectMeta) -> i64 {
    meta.generation.unwrap_or(1)
}

/// The pod's phase (`Pending` when it has none yet).
pub fn phase(pod: &Pod) -> PodPhase {
    pod.status.as_ref().and_then(|s| s.phase).unwrap_or(PodPhase::Pending)
}

/// Succeeded or Failed: the pod will not run again.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), PodPhase::Succeeded | PodPhase::Failed)
}

/// Whether the pod is being deleted (it then no longer counts for its controller).
pub fn is_deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's Ready condition.
pub fn ready_condition(pod: &Pod) -> Option<&Condition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    !is_terminal(pod) && ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds` at `now` (Unix seconds), as Kubernetes counts an
/// available pod. A Ready condition without a transition time counts as ready since forever.
pub fn is_available(pod: &Pod, min_ready_seconds: i64, now: i64) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    let since = ready_condition(pod)
        .and_then(|c| c.last_transition_time.as_deref())
        .and_then(unix_seconds)
        .unwrap_or(i64::MIN / 2);
    now.saturating_sub(since) >= min_ready_seconds
}

/// The node a pod is bound to.
pub fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.node_name.as_deref().filter(|n| !n.is_empty())
}

/// The uid of the object's controller (the owner reference with `controller: true`).
pub fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true)).map(|r| r.uid.as_str())
}

/// A controller owner reference to `owner`.
pub fn owner_ref<S, T>(owner: &Resource<S, T>) -> OwnerReference {
    OwnerReference {
        api_version: owner.api_version.clone(),
        kind: owner.kind.clone(),
        name: owner.metadata.name().to_string(),
        uid: uid(&owner.metadata).to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod made from a pod template: the template's labels and annotations, `labels` added,
/// named `name`, in `owner`'s namespace and controlled by it.
pub fn pod_from_template<S, T>(
    template: &PodTemplateSpec,
    name: &str,
    owner: &Resource<S, T>,
    labels: &[(&str, &str)],
) -> Pod {
    let from = template.metadata.as_ref();
    let mut pod_labels = from.and_then(|m| m.labels.clone());
    for (k, v) in labels {
        pod_labels.get_or_insert_default().insert(k.to_string(), v.to_string());
    }
    let metadata = ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace(&owner.metadata).to_string()),
        labels: pod_labels,
        annotations: from.and_then(|m| m.annotations.clone()),
        owner_references: Some(vec![owner_ref(owner)]),
        ..ObjectMeta::default()
    };
    Pod { api_version: "v1".into(), kind: "Pod".into(), metadata, spec: template.spec.clone(), status: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::common::rfc3339;
    use flotilla_shared::api::DaemonSet;
    use serde_json::json;

    fn pod(v: Value) -> Pod {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {"containers": []}});
        p["status"] = v;
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let p = pod(json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(1_000)}]}));
        assert!(is_ready(&p));
        assert!(is_available(&p, 0, 1_000));
        assert!(!is_available(&p, 10, 1_005));
        assert!(is_available(&p, 10, 1_010));
        let done = pod(json!({"phase": "Succeeded", "conditions": [{"type": "Ready", "status": "True"}]}));
        assert!(!is_ready(&done));
        let ready = pod(json!({"conditions": [{"type": "Ready", "status": "True",
            "lastTransitionTime": rfc3339(0)}]}));
        // Extreme clocks do not overflow.
        assert!(!is_available(&ready, 10, i64::MIN));
        assert!(is_available(&ready, 10, i64::MAX));
    }

    #[test]
    fn pods_from_templates_are_owned_as_the_json_ones() {
        let owner = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "ds", "namespace": "edge", "uid": "u"},
            "spec": {"selector": {}, "template": {"spec": {"containers": []}}}});
        let t = json!({"metadata": {"labels": {"app": "x"}, "annotations": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let typed: DaemonSet = serde_json::from_value(owner.clone()).unwrap();
        let template: PodTemplateSpec = serde_json::from_value(t.clone()).unwrap();
        let typed_pod = pod_from_template(&template, "ds-abc", &typed, &[("controller-revision-hash", "h")]);
        let p = value(&typed_pod);
        assert_eq!(p["metadata"]["name"], "ds-abc");
        assert_eq!(p["metadata"]["namespace"], "edge");
        assert_eq!(p["metadata"]["labels"], json!({"app": "x", "controller-revision-hash": "h"}));
        assert_eq!(p["metadata"]["annotations"], json!({"a": "b"}));
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
        assert_eq!(p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"], true);
        assert_eq!(p["spec"], t["spec"]);
        assert_eq!(controller_uid(&typed_pod.metadata), Some("u"));
        assert_eq!(
            value(&pod_from_template(&template, "p", &typed, &[]))["metadata"]["labels"],
            json!({"app": "x"})
        );
        // Without labels anywhere, none.
        let bare = PodTemplateSpec::default();
        assert!(pod_from_template(&bare, "p", &typed, &[]).metadata.labels.is_none());
    }
}
