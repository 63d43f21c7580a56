//! `cordon`, `uncordon` and `drain`, as kubectl's: a cordoned node takes no new pods; draining
//! cordons it and evicts its pods so their controllers replace them elsewhere. Also `scale`,
//! the other verb that edits one field of a stored object.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::Value;

use flotilla_shared::api::Kind;

use super::client::{ApiFailure, Client, Connection};
use crate::api::paths::{collection_path, object_path};

/// Sets or clears `spec.unschedulable` on each node; retried on a concurrent change.
pub async fn cordon(conn: &Connection, nodes: &[String], on: bool) -> anyhow::Result<i32> {
    if nodes.is_empty() {
        bail!("give at least one node name");
    }
    let client = Client::connect(conn)?;
    for name in nodes {
        let word = if on { "cordoned" } else { "uncordoned" };
        if set_unschedulable(&client, name, on).await? {
            outln!("node/{name} {word}");
        } else {
            outln!("node/{name} already {word}");
        }
    }
    Ok(0)
}

/// `scale KIND/NAME --replicas N` (or `KIND NAME`): sets `spec.replicas` of a Deployment or
/// StatefulSet; retried on a concurrent change.
pub async fn scale(
    conn: &Connection,
    target: &[String],
    replicas: u32,
    namespace: Option<String>,
) -> anyhow::Result<i32> {
    let (kind, name) = super::rollout::target(target)?;
    if !matches!(kind, Kind::Deployment | Kind::StatefulSet | Kind::ReplicaSet) {
        bail!("{} cannot be scaled (Deployments, ReplicaSets and StatefulSets can)", kind.info().plural);
    }
    let ns = namespace.unwrap_or_else(|| "default".into());
    let client = Client::connect(conn)?;
    client
        .edit(&object_path(kind, &ns, &name), |obj| {
            obj["spec"]["replicas"] = replicas.into();
            Ok(true)
        })
        .await
        .map_err(|e| super::rollout::not_found(e, kind, &name))?;
    outln!("{}/{name} scaled", kind.info().qualified_singular());
    Ok(0)
}

/// Returns whether the node changed.
async fn set_unschedulable(client: &Client, name: &str, on: bool) -> anyhow::Result<bool> {
    let path = object_path(Kind::Node, "", name);
    let written = client
        .edit(&path, |node| {
            let current = node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true);
            if current == on {
                return Ok(false);
            }
            if !node.get("spec").is_some_and(Value::is_object) {
                node["spec"] = serde_json::json!({});
            }
            match node["spec"].as_object_mut() {
                Some(spec) if on => {
                    spec.insert("unschedulable".into(), Value::Bool(true));
                }
                Some(spec) => {
                    spec.remove("unschedulable");
                }
                None => {}
            }
            Ok(true)
        })
        .await
        .map_err(|e| super::rollout::not_found(e, Kind::Node, name))?;
    Ok(written.is_some())
}

/// What draining a node does with its pods (pure).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DrainPlan {
    /// (namespace, name) of the pods to evict.
    pub evict: Vec<(String, String)>,
    /// DaemonSet pods left in place.
    pub ignored: Vec<(String, String)>,
    /// Why the drain cannot go ahead (kubectl's messages).
    pub errors: Vec<String>,
}

/// Plans the drain of `node`: pods managed by a controller are evicted; DaemonSet pods stay
/// (with `ignore_daemonsets`; otherwise they stop the drain); pods without a controller are
/// evicted only with `force` (nothing would bring them back). Finished pods are simply removed.
pub fn plan(pods: &[Value], node: &str, ignore_daemonsets: bool, force: bool) -> DrainPlan {
    let mut p = DrainPlan::default();
    let (mut daemon, mut bare) = (Vec::new(), Vec::new());
    for pod in pods {
        if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node) {
            continue;
        }
        let s = |ptr: &str| pod.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_string();
        let key = (s("/metadata/namespace"), s("/metadata/name"));
        let finished =
            matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
        let controller = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|o| o.iter().find(|r| r["controller"] == true))
            .and_then(|r| r["kind"].as_str())
            .map(str::to_string);
        match controller.as_deref() {
            _ if finished => p.evict.push(key),
            Some("DaemonSet") if ignore_daemonsets => p.ignored.push(key),
            Some("DaemonSet") => daemon.push(key),
            Some(_) => p.evict.push(key),
            None if force => p.evict.push(key),
            None => bare.push(key),
        }
    }
    let list =
        |v: &[(String, String)]| v.iter().map(|(ns, n)| format!("{ns}/{n}")).collect::<Vec<_>>().join(", ");
    if !bare.is_empty() {
        p.errors.push(format!(
            "cannot delete Pods that declare no controller (use --force to override): {}",
            list(&bare)
        ));
    }
    if !daemon.is_empty() {
        p.errors.push(format!(
            "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): {}",
            list(&daemon)
        ));
    }
    p
}

/// `drain NODE`: cordon, then evict and wait for the pods to be gone.
pub async fn drain(
    conn: &Connection,
    node: &str,
    ignore_daemonsets: bool,
    force: bool,
    timeout: Duration,
) -> anyhow::Result<i32> {
    let client = Client::connect(conn)?;
    if set_unschedulable(&client, node, true).await? {
        outln!("node/{node} cordoned");
    } else {
        outln!("node/{node} already cordoned");
    }
    let list_pods = || async {
        let list = client.get(&collection_path(Kind::Pod, None)).await.context("listing pods")?;
        anyhow::Ok(list["items"].as_array().cloned().unwrap_or_default())
    };
    let plan = plan(&list_pods().await?, node, ignore_daemonsets, force);
    if !plan.errors.is_empty() {
        for e in &plan.errors {
            eprintln!("error: unable to drain node {node:?} due to error: {e}");
        }
        eprintln!("There are pending nodes to be drained:\n {node}");
        return Ok(1);
    }
    for (ns, name) in &plan.ignored {
        eprintln!("Warning: ignoring DaemonSet-managed Pods: {ns}/{name}");
    }
    for (ns, name) in &plan.evict {
        outln!("evicting pod {ns}/{name}");
        match client.write(Method::DELETE, &object_path(Kind::Pod, ns, name), None).await {
            Ok(_) => {}
            Err(e) if ApiFailure::is(&e, reqwest::StatusCode::NOT_FOUND) => {}
            Err(e) => return Err(e.context(format!("evicting pod {ns}/{name}"))),
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let pods = list_pods().await?;
        let left: Vec<&(String, String)> = plan
            .evict
            .iter()
            .filter(|(ns, name)| {
                pods.iter().any(|p| {
                    p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
                        && p.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
                        && p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node)
                })
            })
            .collect();
        if left.is_empty() {
            for (ns, name) in &plan.evict {
                outln!("pod/{name} evicted (namespace {ns})");
            }
            outln!("node/{node} drained");
            return Ok(0);
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {}s waiting for {} pod(s) to leave node {node}",
                timeout.as_secs(),
                left.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, owner: Option<&str>, phase: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"namespace": "default", "name": name}, "spec": {"nodeName": node}});
        if let Some(kind) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"kind": kind, "name": "o", "uid": "u", "controller": true}]);
        }
        if let Some(phase) = phase {
            p["status"] = json!({"phase": phase});
        }
        p
    }

    fn names(v: &[(String, String)]) -> Vec<&str> {
        v.iter().map(|(_, n)| n.as_str()).collect()
    }

    #[test]
    fn drain_plans_like_kubectl() {
        let pods = [
            pod("web", "a", Some("ReplicaSet"), None),
            pod("job", "a", Some("Job"), None),
            pod("agent", "a", Some("DaemonSet"), None),
            pod("bare", "a", None, None),
            pod("done", "a", None, Some("Succeeded")),
            pod("elsewhere", "b", Some("ReplicaSet"), None),
        ];
        let p = plan(&pods, "a", false, false);
        assert_eq!(names(&p.evict), ["web", "job", "done"]);
        assert_eq!(
            p.errors,
            [
                "cannot delete Pods that declare no controller (use --force to override): default/bare",
                "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/agent",
            ]
        );
        let p = plan(&pods, "a", true, true);
        assert!(p.errors.is_empty());
        assert_eq!(names(&p.evict), ["web", "job", "bare", "done"]);
        assert_eq!(names(&p.ignored), ["agent"]);
    }
}
