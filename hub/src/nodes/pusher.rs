//! What each node must run (pure): from the stored pods, ConfigMaps, Secrets and Nodes, the
//! content of every node's desired snapshot: the pods bound to it (`spec.nodeName`) and the
//! ConfigMaps and Secrets those pods read, resolved, and the volumes their claims are bound to. The caller publishes a snapshot only when
//! its content changed, under a generation that only grows (the store's revision).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use sha2::{Digest, Sha256};

use flotilla_shared::api::{
    ConfigMap, Kind, ObjectMeta, PersistentVolume, PersistentVolumeClaim, PodSpec, Secret,
};
use flotilla_shared::selector::Labels;
use flotilla_shared::volume_binding;
use flotilla_shared::wire::{ClaimVolume, ConfigData, DesiredPod, DesiredSnapshot};

use crate::controllers::common::node_of;

/// Secret types the hub keeps for itself (node credentials, join tokens): never sent to nodes.
pub const INTERNAL_SECRET_TYPES: &[&str] = &[
    "flotilla.io/node-credentials",
    "flotilla.io/viewer-credentials",
    "flotilla.io/join-token",
    "bootstrap.kubernetes.io/token",
];

/// The objects a snapshot is computed from, as stored (JSON).
#[derive(Debug, Default)]
pub struct Inputs<'a> {
    pub nodes: &'a [Value],
    pub pods: &'a [Value],
    pub config_maps: &'a [Value],
    pub secrets: &'a [Value],
    pub volumes: &'a [Value],
    pub claims: &'a [Value],
}

/// (namespace, name).
type Key = (String, String);

fn rv(meta: &ObjectMeta) -> String {
    meta.resource_version.clone().unwrap_or_default()
}

fn parse_all<T: serde::de::DeserializeOwned>(objects: &[Value]) -> Vec<T> {
    objects.iter().filter_map(|o| serde_json::from_value(o.clone()).ok()).collect()
}

/// The snapshot content of every node (generation 0: the caller stamps it). Every Node object
/// gets one, empty if nothing is bound to it, so removing a node's last pod reaches it.
pub fn snapshots(inputs: &Inputs<'_>) -> BTreeMap<String, DesiredSnapshot> {
    let mut out: BTreeMap<String, DesiredSnapshot> = BTreeMap::new();
    let empty = |node: &str| DesiredSnapshot {
        node: node.to_string(),
        generation: 0,
        pods: Vec::new(),
        config_maps: Vec::new(),
        secrets: Vec::new(),
        registry_auth: Vec::new(),
        claims: Vec::new(),
    };
    for n in inputs.nodes {
        if let Some(name) = n.pointer("/metadata/name").and_then(Value::as_str) {
            out.insert(name.to_string(), empty(name));
        }
    }
    let by_key = |objects: &[Value]| -> BTreeMap<(String, String), Value> {
        objects
            .iter()
            .filter_map(|o| {
                let ns = o.pointer("/metadata/namespace")?.as_str()?.to_string();
                let name = o.pointer("/metadata/name")?.as_str()?.to_string();
                Some(((ns, name), o.clone()))
            })
            .collect()
    };
    let (cms, secrets) = (by_key(inputs.config_maps), by_key(inputs.secrets));
    // Claims bind to volumes by Kubernetes' rules; a bound local or hostPath volume that may be
    // used on the pod's node is sent along with the pod.
    let (volumes, claims): (Vec<PersistentVolume>, Vec<PersistentVolumeClaim>) =
        (parse_all(inputs.volumes), parse_all(inputs.claims));
    let bindings = volume_binding::bind(&volumes, &claims);
    let node_labels: BTreeMap<&str, Labels> = inputs
        .nodes
        .iter()
        .filter_map(|n| {
            let name = n.pointer("/metadata/name")?.as_str()?;
            let labels =
                serde_json::from_value(n.pointer("/metadata/labels").cloned().unwrap_or_default()).ok();
            Some((name, labels.unwrap_or_default()))
        })
        .collect();
    let claim_volume = |node: &str, ns: &str, claim: &str| -> Option<ClaimVolume> {
        let name = bindings.get(&(ns.to_string(), claim.to_string()))?;
        let v = volumes.iter().find(|v| v.metadata.name() == name)?;
        let labels = node_labels.get(node).cloned().unwrap_or_default();
        if !volume_binding::fits_node(v, node, &labels) {
            return None;
        }
        Some(ClaimVolume {
            namespace: ns.to_string(),
            claim: claim.to_string(),
            volume: name.clone(),
            host_path: volume_binding::host_source(v)?,
        })
    };
    // (namespace, name) of the ConfigMaps and Secrets each node needs.
    let mut wants: BTreeMap<String, (BTreeSet<Key>, BTreeSet<Key>)> = BTreeMap::new();
    for p in inputs.pods {
        let Some(node) = p.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
            continue;
        };
        let (Ok(metadata), Ok(spec)) = (
            serde_json::from_value::<ObjectMeta>(p.get("metadata").cloned().unwrap_or_default()),
            serde_json::from_value::<PodSpec>(p.get("spec").cloned().unwrap_or_default()),
        ) else {
            continue;
        };
        let ns = metadata.namespace().to_string();
        let w = wants.entry(node.to_string()).or_default();
        w.0.extend(spec.config_map_names().into_iter().map(|n| (ns.clone(), n.to_string())));
        w.1.extend(spec.secret_names().into_iter().map(|n| (ns.clone(), n.to_string())));
        let snap = out.entry(node.to_string()).or_insert_with(|| empty(node));
        for c in spec.volumes.iter().flatten().filter_map(|v| v.persistent_volume_claim.as_ref()) {
            if let Some(cv) = claim_volume(node, &ns, &c.claim_name) {
                if !snap.claims.contains(&cv) {
                    snap.claims.push(cv);
                }
            }
        }
        out.entry(node.to_string()).or_insert_with(|| empty(node)).pods.push(DesiredPod { metadata, spec });
    }
    for (node, (cm_keys, secret_keys)) in wants {
        let snap = out.entry(node.clone()).or_insert_with(|| empty(&node));
        for key in cm_keys {
            if let Some(cm) = cms.get(&key).and_then(|v| serde_json::from_value::<ConfigMap>(v.clone()).ok())
            {
                snap.config_maps.push(ConfigData::from_config_map(&cm, &rv(&cm.metadata)));
            }
        }
        for key in secret_keys {
            let Some(s) = secrets.get(&key).and_then(|v| serde_json::from_value::<Secret>(v.clone()).ok())
            else {
                continue;
            };
            if s.type_.as_deref().is_some_and(|t| INTERNAL_SECRET_TYPES.contains(&t)) {
                continue;
            }
            snap.secrets.push(ConfigData::from_secret(&s, &rv(&s.metadata)));
        }
    }
    for snap in out.values_mut() {
        snap.pods.sort_by(|a, b| {
            (a.metadata.namespace(), a.metadata.name()).cmp(&(b.metadata.namespace(), b.metadata.name()))
        });
    }
    out
}

/// A digest of a snapshot's content, ignoring its generation: equal digests mean there is
/// nothing new to publish. Pods' resourceVersions and status are left out (a status report
/// changes them without changing what the node must run).
pub fn content_digest(snap: &DesiredSnapshot) -> [u8; 32] {
    let mut s = snap.clone();
    s.generation = 0;
    for p in &mut s.pods {
        p.metadata.resource_version = None;
        p.metadata.generation = None;
    }
    Sha256::digest(flotilla_shared::wire::encode(&s)).into()
}

/// The nodes whose snapshots must be computed again: some, or all of them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dirty {
    pub all: bool,
    pub nodes: BTreeSet<String>,
}

/// What the pusher remembers of the objects it has seen change: each node's labels and each
/// bound pod's node, so a change can be compared with what came before it.
#[derive(Debug, Default)]
pub struct Seen {
    labels: BTreeMap<String, Value>,
    bound: BTreeMap<Key, String>,
}

impl Seen {
    /// Everything as listed (after a full round: changes may have been missed).
    pub fn rebuild(&mut self, nodes: &[Value], pods: &[Value]) {
        self.labels = nodes
            .iter()
            .filter_map(|n| Some((n.pointer("/metadata/name")?.as_str()?.to_string(), labels_value(n))))
            .collect();
        self.bound = pods.iter().filter_map(|p| Some((key(p)?, node_of(p)?.to_string()))).collect();
    }
}

fn labels_value(node: &Value) -> Value {
    node.pointer("/metadata/labels").cloned().unwrap_or(Value::Null)
}

fn key(o: &Value) -> Option<Key> {
    let ns = o.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    Some((ns.to_string(), o.pointer("/metadata/name")?.as_str()?.to_string()))
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        !self.all && self.nodes.is_empty()
    }

    /// Marks what a committed change of `kind` (`object`: after it, or before a deletion) may
    /// alter in the snapshots, given what was `seen` before it (updated here): a pod's node
    /// before and after; a node that comes, goes or changes labels (they decide which volumes
    /// it may use), not a node's status write, the bulk of a fleet's changes; every node for
    /// ConfigMaps, Secrets (but the hub's own) and volumes.
    pub fn mark(&mut self, kind: Kind, deleted: bool, object: &Value, seen: &mut Seen) {
        match kind {
            Kind::Pod => {
                let Some(k) = key(object) else { return };
                let now = if deleted { None } else { node_of(object) };
                let before = match now {
                    Some(node) => seen.bound.insert(k, node.to_string()),
                    None => seen.bound.remove(&k),
                };
                self.nodes.extend(before);
                // A deletion carries the pod as it was: its node too.
                if let Some(node) = node_of(object) {
                    self.nodes.insert(node.to_string());
                }
            }
            Kind::Node => {
                let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str) else { return };
                let now = labels_value(object);
                let changed = if deleted {
                    seen.labels.remove(name);
                    true
                } else {
                    seen.labels.insert(name.to_string(), now.clone()).is_none_or(|before| before != now)
                };
                if changed {
                    self.nodes.insert(name.to_string());
                }
            }
            Kind::Secret => {
                let t = object.get("type").and_then(Value::as_str).unwrap_or_default();
                if !INTERNAL_SECRET_TYPES.contains(&t) {
                    self.all = true;
                }
            }
            Kind::ConfigMap | Kind::PersistentVolume | Kind::PersistentVolumeClaim => self.all = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, name: &str, node: Option<&str>, spec_extra: Value) -> Value {
        let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        for (k, v) in spec_extra.as_object().cloned().unwrap_or_default() {
            spec[k] = v;
        }
        json!({"metadata": {"namespace": ns, "name": name, "uid": format!("uid-{name}"), "resourceVersion": "5"}, "spec": spec})
    }

    #[test]
    fn only_changes_that_can_alter_a_snapshot_mark_it() {
        let mut seen = Seen::default();
        let mut d = Dirty::default();
        let node = |labels: Value| json!({"metadata": {"name": "pi-1", "labels": labels}, "status": {}});
        d.mark(Kind::Node, false, &node(json!({"zone": "a"})), &mut seen);
        assert_eq!(d.nodes, BTreeSet::from(["pi-1".to_string()]), "a new node");
        let mut d = Dirty::default();
        d.mark(Kind::Node, false, &node(json!({"zone": "a"})), &mut seen);
        assert!(d.is_empty(), "a status write of a known node");
        d.mark(Kind::Node, false, &node(json!({"zone": "b"})), &mut seen);
        assert!(d.nodes.contains("pi-1"), "relabelled");
        let mut d = Dirty::default();
        d.mark(Kind::Node, true, &node(json!({"zone": "b"})), &mut seen);
        assert!(d.nodes.contains("pi-1") && seen.labels.is_empty(), "deleted");
        let mut d = Dirty::default();
        d.mark(Kind::Pod, false, &pod("apps", "web", None, json!({})), &mut seen);
        d.mark(Kind::Deployment, false, &json!({"metadata": {"name": "web"}}), &mut seen);
        let internal = json!({"metadata": {"name": "node-pi-1"}, "type": "flotilla.io/node-credentials"});
        d.mark(Kind::Secret, false, &internal, &mut seen);
        assert!(d.is_empty(), "an unbound pod, a Deployment, the hub's own Secret");
        // A pod moved from one node to another leaves the first node's snapshot too.
        d.mark(Kind::Pod, false, &pod("apps", "web", Some("pi-2"), json!({})), &mut seen);
        d.mark(Kind::Pod, false, &pod("apps", "web", Some("pi-3"), json!({})), &mut seen);
        assert_eq!(d.nodes, BTreeSet::from(["pi-2".to_string(), "pi-3".to_string()]));
        let mut d = Dirty::default();
        d.mark(Kind::Pod, true, &pod("apps", "web", Some("pi-3"), json!({})), &mut seen);
        assert_eq!(d, Dirty { all: false, nodes: BTreeSet::from(["pi-3".to_string()]) });
        assert!(seen.bound.is_empty());
        d.mark(Kind::ConfigMap, false, &json!({"metadata": {"name": "cfg"}}), &mut seen);
        assert!(d.all);
        // After a full round, what was listed is what was seen.
        seen.rebuild(&[node(json!({"zone": "a"}))], &[pod("apps", "db", Some("pi-1"), json!({}))]);
        let mut d = Dirty::default();
        d.mark(Kind::Node, false, &node(json!({"zone": "a"})), &mut seen);
        assert!(d.is_empty());
        d.mark(Kind::Pod, false, &pod("apps", "db", None, json!({})), &mut seen);
        assert_eq!(d.nodes, BTreeSet::from(["pi-1".to_string()]), "unbound again: its old node");
    }

    #[test]
    fn each_node_gets_its_pods_and_what_they_read() {
        let nodes = [json!({"metadata": {"name": "pi-1"}}), json!({"metadata": {"name": "idle"}})];
        let pods = [
            pod(
                "apps",
                "web",
                Some("pi-1"),
                json!({
                    "volumes": [{"name": "conf", "configMap": {"name": "web-conf"}}],
                    "imagePullSecrets": [{"name": "regcred"}],
                }),
            ),
            pod(
                "apps",
                "db",
                Some("pi-2"),
                json!({"containers": [{"name": "c", "image": "pg", "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db-pass", "key": "p"}}}]}]}),
            ),
            pod("apps", "pending", None, json!({})),
        ];
        let cms = [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "apps", "name": "web-conf", "resourceVersion": "3"}, "data": {"a": "1"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "apps", "name": "unused", "resourceVersion": "4"}, "data": {}}),
        ];
        let secrets = [
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": "apps", "name": "regcred", "resourceVersion": "6"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": "apps", "name": "db-pass", "resourceVersion": "7"}, "stringData": {"p": "s3cret"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": "other", "name": "db-pass"}, "stringData": {"p": "not this one"}}),
        ];
        let s = snapshots(&Inputs {
            nodes: &nodes,
            pods: &pods,
            config_maps: &cms,
            secrets: &secrets,
            ..Default::default()
        });
        assert_eq!(
            s.keys().collect::<Vec<_>>(),
            ["idle", "pi-1", "pi-2"],
            "nodes with objects and nodes with pods"
        );
        assert!(s["idle"].pods.is_empty());
        let pi1 = &s["pi-1"];
        assert_eq!(pi1.pods.iter().map(|p| p.metadata.name()).collect::<Vec<_>>(), ["web"]);
        assert_eq!(pi1.config_maps.len(), 1);
        assert_eq!(pi1.config_maps[0].resource_version, "3");
        assert_eq!(pi1.secrets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["regcred"]);
        assert_eq!(pi1.secrets[0].data[".dockerconfigjson"].0, b"{}");
        let pi2 = &s["pi-2"];
        assert_eq!(pi2.secrets.len(), 1);
        assert_eq!(pi2.secrets[0].data["p"].0, b"s3cret", "the pod's own namespace");
    }

    #[test]
    fn internal_secrets_never_leave_the_hub_and_digests_ignore_bookkeeping() {
        let pods =
            [pod("flotilla-system", "x", Some("pi-1"), json!({"imagePullSecrets": [{"name": "node-pi-1"}]}))];
        let secrets = [
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": "flotilla-system", "name": "node-pi-1"}, "type": "flotilla.io/node-credentials", "stringData": {"passwordHash": "h"}}),
        ];
        let s = snapshots(&Inputs {
            nodes: &[],
            pods: &pods,
            config_maps: &[],
            secrets: &secrets,
            ..Default::default()
        });
        assert!(s["pi-1"].secrets.is_empty());

        let mut a = s["pi-1"].clone();
        let d = content_digest(&a);
        a.generation = 99;
        a.pods[0].metadata.resource_version = Some("77".into());
        assert_eq!(content_digest(&a), d, "generation and resourceVersion are not content");
        a.pods[0].spec.containers[0].image = Some("busybox:2".into());
        assert_ne!(content_digest(&a), d);
    }

    #[test]
    fn bound_claims_go_with_their_pods_to_nodes_the_volume_fits() {
        let nodes = [
            json!({"metadata": {"name": "pi-1", "labels": {"kubernetes.io/hostname": "pi-1"}}}),
            json!({"metadata": {"name": "pi-2", "labels": {"kubernetes.io/hostname": "pi-2"}}}),
        ];
        let uses = |claim: &str| json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]});
        let pods = [
            pod("apps", "db", Some("pi-1"), uses("db-data")),
            pod("apps", "stray", Some("pi-2"), uses("db-data")),
            pod("apps", "cache", Some("pi-2"), uses("cache")),
            pod("apps", "orphan", Some("pi-2"), uses("nobody")),
        ];
        let volumes = [
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pi-1-disk"},
                "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "local": {"path": "/mnt/disk"},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["pi-1"]}]}]}}}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "scratch"},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                    "hostPath": {"path": "/srv/scratch", "type": "DirectoryOrCreate"}}}),
        ];
        let claim = |name: &str, size: &str| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"namespace": "apps", "name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}})
        };
        let claims = [claim("db-data", "5Gi"), claim("cache", "1Gi")];
        let s = snapshots(&Inputs {
            nodes: &nodes,
            pods: &pods,
            volumes: &volumes,
            claims: &claims,
            ..Default::default()
        });
        let pi1 = &s["pi-1"].claims;
        assert_eq!(pi1.len(), 1);
        assert_eq!(
            (pi1[0].claim.as_str(), pi1[0].volume.as_str(), pi1[0].host_path.path.as_str()),
            ("db-data", "pi-1-disk", "/mnt/disk")
        );
        // pi-2 gets the hostPath volume; the local one of pi-1 never reaches it, nor an unknown claim.
        let pi2: Vec<_> = s["pi-2"].claims.iter().map(|c| (c.claim.as_str(), c.volume.as_str())).collect();
        assert_eq!(pi2, [("cache", "scratch")]);
    }
}
