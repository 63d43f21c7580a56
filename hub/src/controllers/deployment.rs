//! An interim Deployment controller, until the Controllers work brings ReplicaSets and rolling
//! updates: it keeps `spec.replicas` pods of the current pod template, each owned by the
//! Deployment, and leaves their placement to the scheduler (which spreads a controller's pods).
//! Pods of an older template are replaced all at once (like `strategy: Recreate`). The decision
//! is pure.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// What the controller wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create(Value),
    Delete(String),
    /// The Deployment's new status.
    Status(Value),
}

/// The pod-template hash: ten hex digits of the template's SHA-256 (stable for equal JSON).
pub fn template_hash(template: &Value) -> String {
    let digest = Sha256::digest(template.to_string().as_bytes());
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn node_of(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
}

/// Decides for one Deployment. `pods` are the pods it owns; `suffix` yields random name
/// suffixes.
pub fn reconcile(deploy: &Value, pods: &[Value], mut suffix: impl FnMut() -> String) -> Vec<Action> {
    let mut actions = Vec::new();
    let name = deploy.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let namespace = deploy.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
    let uid = deploy.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
    let template = deploy.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    let hash = template_hash(&template);
    let want = deploy.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1).max(0) as usize;
    let live: Vec<&Value> =
        pods.iter().filter(|p| p.pointer("/metadata/deletionTimestamp").is_none()).collect();
    let (current, old): (Vec<&Value>, Vec<&Value>) = live.iter().partition(|p| {
        p.pointer("/metadata/labels/pod-template-hash").and_then(Value::as_str) == Some(&hash)
    });
    for p in &old {
        actions.push(Action::Delete(p["metadata"]["name"].as_str().unwrap_or_default().to_string()));
    }
    if current.len() > want {
        // Scale down: unbound and not-ready pods first, then the newest names.
        let mut extra: Vec<&&Value> = current.iter().collect();
        extra.sort_by_key(|p| {
            (
                node_of(p).is_some(),
                is_ready(p),
                p["metadata"]["creationTimestamp"].as_str().map(str::to_string),
            )
        });
        for p in extra.iter().take(current.len() - want) {
            actions.push(Action::Delete(p["metadata"]["name"].as_str().unwrap_or_default().to_string()));
        }
    } else {
        for _ in current.len()..want {
            let mut meta = template.get("metadata").cloned().unwrap_or_else(|| json!({}));
            meta["name"] = format!("{name}-{hash}-{}", suffix()).into();
            meta["namespace"] = namespace.into();
            meta["labels"]["pod-template-hash"] = hash.clone().into();
            if template.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
                meta["annotations"][super::lifecycle::PINNED_ANNOTATION] = "true".into();
            }
            meta["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid,
                "controller": true, "blockOwnerDeletion": true,
            }]);
            let spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
            actions.push(Action::Create(
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}),
            ));
        }
    }
    let ready = current.iter().filter(|p| is_ready(p)).count() as i64;
    let status = json!({
        "observedGeneration": deploy.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1),
        "replicas": live.len() as i64,
        "updatedReplicas": current.len() as i64,
        "readyReplicas": ready,
        "availableReplicas": ready,
    });
    if deploy.get("status") != Some(&status) {
        actions.push(Action::Status(status));
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(replicas: i64, node: Option<&str>) -> Value {
        let mut spec = json!({"containers": [{"name": "web", "image": "busybox"}]});
        if let Some(n) = node {
            spec["nodeName"] = n.into();
        }
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1", "generation": 1},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec}}})
    }

    fn pod_of(d: &Value, name: &str, node: &str) -> Value {
        let hash = template_hash(&d["spec"]["template"]);
        json!({"metadata": {"name": name, "labels": {"app": "web", "pod-template-hash": hash}},
               "spec": {"nodeName": node}})
    }

    fn creates(actions: &[Action]) -> Vec<(String, Option<String>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Create(p) => Some((
                    p["metadata"]["name"].as_str().unwrap().to_string(),
                    p["spec"]["nodeName"].as_str().map(String::from),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn replicas_are_created_unbound_and_owned() {
        let d = deploy(3, None);
        let mut n = 0;
        let actions = reconcile(&d, &[pod_of(&d, "web-x", "a")], || {
            n += 1;
            format!("s{n}")
        });
        let hash = template_hash(&d["spec"]["template"]);
        assert_eq!(
            creates(&actions),
            vec![(format!("web-{hash}-s1"), None), (format!("web-{hash}-s2"), None)]
        );
        let Action::Create(p) = &actions[0] else { panic!() };
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(p["metadata"]["labels"]["app"], "web");
    }

    #[test]
    fn a_template_node_name_pins_every_replica() {
        let d = deploy(2, Some("pi-1"));
        let actions = reconcile(&d, &[], || "z".into());
        assert!(creates(&actions).iter().all(|(_, n)| n.as_deref() == Some("pi-1")));
    }

    #[test]
    fn scale_down_and_template_change() {
        let d = deploy(1, None);
        let pods = [pod_of(&d, "web-1", "a"), pod_of(&d, "web-2", "b")];
        let actions = reconcile(&d, &pods, || "z".into());
        assert_eq!(actions.iter().filter(|a| matches!(a, Action::Delete(_))).count(), 1);
        assert!(creates(&actions).is_empty());
        // Unbound pods go first.
        let mut pending = pod_of(&d, "web-p", "");
        pending["spec"] = json!({});
        let actions = reconcile(&d, &[pods[0].clone(), pending], || "z".into());
        assert_eq!(
            actions.iter().filter(|a| matches!(a, Action::Delete(_))).collect::<Vec<_>>(),
            [&Action::Delete("web-p".into())]
        );
        // A new template replaces the old pods.
        let mut d2 = d.clone();
        d2["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2".into();
        let actions = reconcile(&d2, &pods, || "z".into());
        assert_eq!(actions.iter().filter(|a| matches!(a, Action::Delete(_))).count(), 2);
        assert_eq!(creates(&actions).len(), 1);
    }
}
