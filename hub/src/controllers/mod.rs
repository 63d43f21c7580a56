//! Controllers: pure decisions (`deployment`) wired to the store's change feed and a periodic
//! resync.

pub mod deployment;

use std::time::Duration;

use serde_json::Value;

use flotilla_shared::api::Kind;
use flotilla_shared::selector::LabelSelector;

use crate::store::objects::Mode;
use crate::store::{Store, WriteOp};

/// Starts the controllers on the current runtime.
pub fn start(store: Store) {
    tokio::spawn(deployments(store));
}

async fn list(store: &Store, kind: Kind) -> Vec<Value> {
    store.list(kind, None, &LabelSelector::default()).await.map(|(v, _)| v).unwrap_or_default()
}

fn ready_nodes(nodes: &[Value]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.pointer("/spec/unschedulable").and_then(Value::as_bool) != Some(true))
        .filter(|n| {
            n.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str).map(String::from))
        .collect()
}

/// A random pod-name suffix in Kubernetes' alphabet (no vowels, no look-alikes).
fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    crate::store::crypto::random::<5>()
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

async fn deployments(store: Store) {
    let mut feed = store.subscribe();
    let mut resync = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            r = feed.recv() => match r {
                Ok(c) if !matches!(c.kind, Kind::Deployment | Kind::Pod | Kind::Node) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                _ => {}
            },
            _ = resync.tick() => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        while feed.try_recv().is_ok() {}
        let (deploys, pods, nodes) = (
            list(&store, Kind::Deployment).await,
            list(&store, Kind::Pod).await,
            list(&store, Kind::Node).await,
        );
        let ready = ready_nodes(&nodes);
        // Garbage collection: pods a Deployment made whose Deployment is gone (created while it
        // was being deleted).
        let uids: std::collections::HashSet<&str> =
            deploys.iter().filter_map(|d| d.pointer("/metadata/uid").and_then(Value::as_str)).collect();
        for p in &pods {
            let owner = p.pointer("/metadata/ownerReferences").and_then(Value::as_array).and_then(|o| {
                o.iter().find(|r| r["kind"] == "Deployment" && r["controller"] == true)?["uid"].as_str()
            });
            if owner.is_some_and(|u| !uids.contains(u)) {
                let s = |ptr: &str| p.pointer(ptr).and_then(Value::as_str).unwrap_or_default().to_string();
                let op = WriteOp::Delete {
                    kind: Kind::Pod,
                    namespace: s("/metadata/namespace"),
                    name: s("/metadata/name"),
                };
                let _ = store.write(op, false).await;
            }
        }
        for d in &deploys {
            let uid = d.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
            let owned: Vec<Value> = pods
                .iter()
                .filter(|p| {
                    p.pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .is_some_and(|o| o.iter().any(|r| r["uid"] == uid && r["controller"] == true))
                })
                .cloned()
                .collect();
            let namespace =
                d.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_string();
            for action in deployment::reconcile(d, &owned, &ready, suffix) {
                let op = match action {
                    deployment::Action::Create(pod) => {
                        WriteOp::Put { kind: Kind::Pod, object: pod, mode: Mode::Create }
                    }
                    deployment::Action::Delete(name) => {
                        WriteOp::Delete { kind: Kind::Pod, namespace: namespace.clone(), name }
                    }
                    deployment::Action::Status(status) => {
                        let mut obj = d.clone();
                        obj["status"] = status;
                        WriteOp::Put { kind: Kind::Deployment, object: obj, mode: Mode::Status }
                    }
                };
                if let Err(e) = store.write(op, false).await {
                    tracing::warn!(deployment = ?d.pointer("/metadata/name"), error = %e, "deployment controller");
                }
            }
        }
    }
}
