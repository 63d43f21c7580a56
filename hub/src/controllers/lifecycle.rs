//! Node lifecycle (pure): which pods leave a node that stopped being Ready, as Kubernetes'
//! taint-based eviction does. A node whose Ready condition is False carries the NoExecute taint
//! `node.kubernetes.io/not-ready`, Unknown `node.kubernetes.io/unreachable`, from the condition's
//! last transition. A pod tolerates it for its toleration's `tolerationSeconds` (forever without
//! one), or for the hub's default (300 s, as Kubernetes' DefaultTolerationSeconds admission
//! gives every pod); after that it is deleted so its controller replaces it on another node.
//!
//! Never evicted: DaemonSet pods (they belong to their node), pods no controller would replace
//! (bare pods), pods whose controller pins them to the node (a template `nodeName`), and pods
//! using a claim bound to a volume that pins them to the node (a local volume). When the node
//! comes back, the evicted pods are no longer in its desired state, so its agent stops them.

use std::collections::HashMap;

use serde_json::Value;

use flotilla_shared::api::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Taint, TaintEffect};
use flotilla_shared::volume_binding::{self, Bindings};

/// Controllers whose pods are replaced elsewhere when evicted.
const REPLACED_BY: &[&str] = &["ReplicaSet", "Deployment", "Job"];

/// A pod to evict and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    pub taint: String,
}

/// The NoExecute taint a node's Ready condition implies, and since when (Unix seconds).
fn implied_taint(node: &Node) -> Option<(Taint, i64)> {
    let c = node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
    let key = match c.status.as_str() {
        "True" => return None,
        "False" => "node.kubernetes.io/not-ready",
        _ => "node.kubernetes.io/unreachable",
    };
    let since = c.last_transition_time.as_deref().and_then(unix_seconds)?;
    Some((Taint { key: key.into(), value: None, effect: TaintEffect::NoExecute, time_added: None }, since))
}

pub fn unix_seconds(rfc3339: &str) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// How long a pod tolerates the taint: `None` is forever.
fn tolerance(pod: &Pod, taint: &Taint, default_secs: i64) -> Option<i64> {
    let matching: Vec<_> = pod
        .spec
        .tolerations
        .iter()
        .flatten()
        .filter(|t| t.effect.is_none_or(|e| e == TaintEffect::NoExecute))
        .filter(|t| crate::scheduler::tolerates(t, taint))
        .collect();
    if matching.is_empty() {
        return Some(default_secs);
    }
    if matching.iter().any(|t| t.toleration_seconds.is_none()) {
        return None;
    }
    matching.iter().filter_map(|t| t.toleration_seconds).min().map(|s| s.max(0))
}

/// Whether the pod must stay on its node whatever happens to it.
fn pinned(pod: &Pod, volumes: &[PersistentVolume], bindings: &Bindings) -> bool {
    let kind = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.kind.as_str());
    if !kind.is_some_and(|k| REPLACED_BY.contains(&k)) {
        return true;
    }
    if pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(PINNED_ANNOTATION)) {
        return true;
    }
    let ns = pod.metadata.namespace();
    pod.spec.volumes.iter().flatten().filter_map(|v| v.persistent_volume_claim.as_ref()).any(|c| {
        bindings
            .get(&(ns.to_string(), c.claim_name.clone()))
            .and_then(|b| volumes.iter().find(|v| v.metadata.name() == b))
            .is_some_and(|v| v.spec.node_affinity.is_some() || v.spec.local.is_some())
    })
}

/// Set by controllers on pods whose template names their node.
pub const PINNED_ANNOTATION: &str = "flotilla.io/node-pinned";

/// The pods to evict at `now` (Unix seconds).
pub fn evictions(
    nodes: &[Value],
    pods: &[Value],
    volumes: &[Value],
    claims: &[Value],
    now: i64,
    default_secs: i64,
) -> Vec<Eviction> {
    // Only nodes that are not Ready, and only their pods, are parsed: at fleet size nearly
    // every node is Ready and this runs on every node change.
    let tainted: HashMap<String, (Taint, i64)> = nodes
        .iter()
        .filter(|n| !super::common::node_ready(n))
        .filter_map(|n| serde_json::from_value::<Node>(n.clone()).ok())
        .filter_map(|n| implied_taint(&n).map(|taint| (n.metadata.name().to_string(), taint)))
        .collect();
    let mut out = Vec::new();
    if tainted.is_empty() {
        return out;
    }
    let volumes: Vec<PersistentVolume> =
        volumes.iter().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect();
    let claims: Vec<PersistentVolumeClaim> =
        claims.iter().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect();
    let bindings = volume_binding::bind(&volumes, &claims);
    // A cheap read of the pod's node first: only pods on tainted nodes are parsed.
    let on_tainted = |p: &&Value| super::common::node_of(p).is_some_and(|n| tainted.contains_key(n));
    for p in pods.iter().filter(on_tainted).filter_map(|p| serde_json::from_value::<Pod>(p.clone()).ok()) {
        let Some(node) = p.spec.node_name.as_deref() else { continue };
        let Some((taint, since)) = tainted.get(node) else { continue };
        if p.metadata.deletion_timestamp.is_some() || pinned(&p, &volumes, &bindings) {
            continue;
        }
        if tolerance(&p, taint, default_secs).is_some_and(|secs| now - since >= secs) {
            out.push(Eviction {
                namespace: p.metadata.namespace().to_string(),
                name: p.metadata.name().to_string(),
                uid: p.metadata.uid.clone().unwrap_or_default(),
                node: node.to_string(),
                taint: taint.key.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: &str = "2026-12-06T10:00:00Z";

    fn t0() -> i64 {
        unix_seconds(T0).unwrap()
    }

    fn node(name: &str, ready: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {"conditions": [
            {"type": "Ready", "status": ready, "lastTransitionTime": T0}]}})
    }

    fn pod(name: &str, node: &str, owner: Option<&str>, extra: Value) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}")},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}});
        if let Some(k) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "apps/v1", "kind": k, "name": "o", "uid": "o1", "controller": true}]);
        }
        if let Value::Object(m) = extra {
            for (k, v) in m {
                if let (Some(a), Value::Object(b)) = (p[&k].as_object_mut(), v.clone()) {
                    a.extend(b);
                } else {
                    p[&k] = v;
                }
            }
        }
        p
    }

    fn names(e: &[Eviction]) -> Vec<&str> {
        e.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn replaced_pods_leave_after_their_toleration() {
        let nodes = [node("a", "Unknown"), node("b", "True"), node("c", "False")];
        let pods = [
            pod("web", "a", Some("ReplicaSet"), json!({})),
            pod("job", "c", Some("Job"), json!({})),
            pod("fine", "b", Some("ReplicaSet"), json!({})),
            pod("ds", "a", Some("DaemonSet"), json!({})),
            pod("bare", "a", None, json!({})),
            pod(
                "patient",
                "a",
                Some("ReplicaSet"),
                json!({"spec": {"tolerations": [
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 600}]}}),
            ),
            pod(
                "forever",
                "a",
                Some("ReplicaSet"),
                json!({"spec": {"tolerations": [
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]}}),
            ),
            pod(
                "quick",
                "a",
                Some("ReplicaSet"),
                json!({"spec": {"tolerations": [
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 10}]}}),
            ),
            pod(
                "pinned",
                "a",
                Some("ReplicaSet"),
                json!({"metadata": {"annotations": {PINNED_ANNOTATION: "true"}}}),
            ),
        ];
        let at = |secs: i64| evictions(&nodes, &pods, &[], &[], t0() + secs, 300);
        assert!(at(5).is_empty());
        assert_eq!(names(&at(10)), ["quick"]);
        assert_eq!(names(&at(300)), ["web", "job", "quick"]);
        let later = at(600);
        assert_eq!(names(&later), ["web", "job", "patient", "quick"]);
        assert_eq!(later[1].taint, "node.kubernetes.io/not-ready");
        assert_eq!(later[0].taint, "node.kubernetes.io/unreachable");
    }

    #[test]
    fn local_volumes_pin_pods() {
        let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "disk"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "local": {"path": "/mnt"}}});
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        let pods = [pod(
            "db",
            "a",
            Some("ReplicaSet"),
            json!({"spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}),
        )];
        assert!(evictions(&[node("a", "Unknown")], &pods, &[pv], &[pvc], t0() + 1000, 300).is_empty());
        assert_eq!(names(&evictions(&[node("a", "Unknown")], &pods, &[], &[], t0() + 1000, 300)), ["db"]);
    }
}
