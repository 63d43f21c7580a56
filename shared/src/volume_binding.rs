//! PersistentVolumeClaim binding (pure), with the rules of Kubernetes' PV controller, and the
//! node a volume pins its pods to. The agent binds the claims of its manifest directory with
//! it, the hub the claims of the pods it sends to nodes.
//!
//! A claim binds to:
//! 1. the volume it names (`spec.volumeName`), if that volume is free or reserved for it and
//!    satisfies it;
//! 2. else a volume reserved for it (`spec.claimRef` naming the claim) that satisfies it;
//! 3. else the smallest free volume that satisfies it and matches its `selector`.
//!
//! A volume satisfies a claim when their storage classes are equal (unset is the empty class),
//! their volume modes are equal (unset is Filesystem), the volume offers every access mode the
//! claim asks for, and its capacity is at least the claim's storage request. A volume binds
//! one claim at most.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{
    HostPathVolumeSource, NodeSelector, NodeSelectorOperator, NodeSelectorRequirement, PersistentVolume,
    PersistentVolumeClaim, VolumeMode,
};
use crate::selector::Labels;

/// (namespace, claim name) → volume name.
pub type Bindings = BTreeMap<(String, String), String>;

fn storage(list: Option<&crate::api::ResourceList>) -> u128 {
    list.and_then(|l| l.get("storage")).and_then(|q| q.value().ok()).unwrap_or(0)
}

/// The claim's storage request in bytes (0 when it asks for none).
pub fn requested_bytes(claim: &PersistentVolumeClaim) -> u128 {
    storage(claim.spec.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

/// The volume's capacity in bytes (0 when unset).
pub fn capacity_bytes(volume: &PersistentVolume) -> u128 {
    storage(volume.spec.capacity.as_ref())
}

/// Why `volume` cannot serve `claim`, or `None` when it satisfies it (reservations and the
/// selector aside).
pub fn unsatisfied(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Option<String> {
    let class = |c: Option<&String>| c.cloned().unwrap_or_default();
    let (vc, cc) =
        (class(volume.spec.storage_class_name.as_ref()), class(claim.spec.storage_class_name.as_ref()));
    if vc != cc {
        return Some(format!("storageClassName does not match (volume {vc:?}, claim {cc:?})"));
    }
    let mode = |m: Option<VolumeMode>| m.unwrap_or(VolumeMode::Filesystem);
    if mode(volume.spec.volume_mode) != mode(claim.spec.volume_mode) {
        return Some("volumeMode does not match".to_string());
    }
    let offered = volume.spec.access_modes.as_deref().unwrap_or_default();
    if let Some(m) = claim.spec.access_modes.iter().flatten().find(|m| !offered.contains(m)) {
        return Some(format!("the volume does not offer access mode {m:?}"));
    }
    let (have, want) = (capacity_bytes(volume), requested_bytes(claim));
    if have < want {
        return Some(format!("capacity {have} bytes is less than the requested {want} bytes"));
    }
    None
}

/// Whether the volume's `claimRef` names this claim (namespace, name and, when set, uid).
fn reserved_for(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    volume.spec.claim_ref.as_ref().is_some_and(|r| {
        r.namespace.as_deref().unwrap_or_default() == claim.metadata.namespace()
            && r.name.as_deref() == Some(claim.metadata.name())
            && r.uid.as_ref().is_none_or(|u| claim.metadata.uid.as_ref().is_none_or(|c| c == u))
    })
}

fn key(claim: &PersistentVolumeClaim) -> (String, String) {
    (claim.metadata.namespace().to_string(), claim.metadata.name().to_string())
}

/// Binds claims to volumes (see the module comment). Claims that stay unbound are absent from
/// the result; `pending_reason` says why.
pub fn bind(volumes: &[PersistentVolume], claims: &[PersistentVolumeClaim]) -> Bindings {
    let mut out = Bindings::new();
    let mut taken: BTreeSet<&str> = BTreeSet::new();
    let mut ordered: Vec<&PersistentVolumeClaim> = claims.iter().collect();
    ordered.sort_by_key(|c| key(c));
    // 1. Claims naming their volume.
    for c in &ordered {
        let Some(name) = c.spec.volume_name.as_deref().filter(|n| !n.is_empty()) else { continue };
        let Some(v) = volumes.iter().find(|v| v.metadata.name() == name) else { continue };
        let free = v.spec.claim_ref.is_none() || reserved_for(v, c);
        if free && !taken.contains(name) && unsatisfied(v, c).is_none() {
            taken.insert(v.metadata.name());
            out.insert(key(c), name.to_string());
        }
    }
    // 2. Volumes reserved for a claim.
    for c in &ordered {
        if out.contains_key(&key(c)) || c.spec.volume_name.as_deref().is_some_and(|n| !n.is_empty()) {
            continue;
        }
        let found = volumes.iter().find(|v| {
            !taken.contains(v.metadata.name()) && reserved_for(v, c) && unsatisfied(v, c).is_none()
        });
        if let Some(v) = found {
            taken.insert(v.metadata.name());
            out.insert(key(c), v.metadata.name().to_string());
        }
    }
    // 3. The smallest free volume that fits.
    for c in &ordered {
        if out.contains_key(&key(c)) || c.spec.volume_name.as_deref().is_some_and(|n| !n.is_empty()) {
            continue;
        }
        let selector = c.spec.selector.clone().unwrap_or_default();
        let best = volumes
            .iter()
            .filter(|v| !taken.contains(v.metadata.name()) && v.spec.claim_ref.is_none())
            .filter(|v| selector.matches(v.metadata.labels()) && unsatisfied(v, c).is_none())
            .min_by(|a, b| {
                (capacity_bytes(a), a.metadata.name()).cmp(&(capacity_bytes(b), b.metadata.name()))
            });
        if let Some(v) = best {
            taken.insert(v.metadata.name());
            out.insert(key(c), v.metadata.name().to_string());
        }
    }
    out
}

/// Why a claim that `bind` left unbound is pending (Kubernetes' event texts).
pub fn pending_reason(volumes: &[PersistentVolume], claim: &PersistentVolumeClaim) -> String {
    if let Some(name) = claim.spec.volume_name.as_deref().filter(|n| !n.is_empty()) {
        return match volumes.iter().find(|v| v.metadata.name() == name) {
            None => format!("volume {name:?} requested by the claim does not exist"),
            Some(v) => match unsatisfied(v, claim) {
                Some(why) => format!("Cannot bind to requested volume {name:?}: {why}"),
                None => format!("volume {name:?} is already bound to another claim"),
            },
        };
    }
    let class = claim.spec.storage_class_name.as_deref().unwrap_or_default();
    if class.is_empty() {
        "no persistent volumes available for this claim and no storage class is set".to_string()
    } else {
        format!("no persistent volumes available for this claim with storage class {class:?}")
    }
}

/// The directory (or file) on the node that a `local` or `hostPath` volume mounts. A local
/// volume's path must exist; a hostPath volume keeps its type check.
pub fn host_source(volume: &PersistentVolume) -> Option<HostPathVolumeSource> {
    if let Some(l) = &volume.spec.local {
        return Some(HostPathVolumeSource { path: l.path.clone(), type_: None });
    }
    volume.spec.host_path.clone()
}

/// Whether a volume may be used on a node: its `nodeAffinity` (required), if any, matches the
/// node. A local volume pins every pod using it to the nodes it matches.
pub fn fits_node(volume: &PersistentVolume, node: &str, labels: &Labels) -> bool {
    volume
        .spec
        .node_affinity
        .as_ref()
        .and_then(|a| a.required.as_ref())
        .is_none_or(|s| s.matches(node, labels))
}

impl NodeSelector {
    /// Kubernetes' node selector semantics: the terms are ORed, a term's requirements ANDed; a
    /// term with no requirements matches nothing. `matchFields` knows `metadata.name`.
    pub fn matches(&self, node: &str, labels: &Labels) -> bool {
        self.node_selector_terms.iter().any(|t| {
            let exprs = t.match_expressions.iter().flatten();
            let fields = t.match_fields.iter().flatten();
            let mut any = false;
            let ok = exprs.clone().all(|r| {
                any = true;
                r.matches(labels.get(&r.key).map(String::as_str))
            }) && fields.clone().all(|r| {
                any = true;
                r.key == "metadata.name" && r.matches(Some(node))
            });
            ok && any
        })
    }
}

impl NodeSelectorRequirement {
    /// Whether a node's value for the key (`None`: the node has no such label) satisfies it.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let values = self.values.as_deref().unwrap_or_default();
        let number = |s: &str| s.parse::<i64>().ok();
        match self.operator {
            NodeSelectorOperator::In => value.is_some_and(|v| values.iter().any(|x| x == v)),
            NodeSelectorOperator::NotIn => value.is_none_or(|v| !values.iter().any(|x| x == v)),
            NodeSelectorOperator::Exists => value.is_some(),
            NodeSelectorOperator::DoesNotExist => value.is_none(),
            NodeSelectorOperator::Gt | NodeSelectorOperator::Lt => {
                let (Some(v), Some(bound)) = (value.and_then(number), values.first().and_then(|b| number(b)))
                else {
                    return false;
                };
                if self.operator == NodeSelectorOperator::Gt {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolume {
        let mut v = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "local": {"path": format!("/mnt/{name}")}}});
        merge(&mut v["spec"], extra);
        serde_json::from_value(v).unwrap()
    }

    fn pvc(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut v = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}});
        merge(&mut v["spec"], extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(into: &mut serde_json::Value, extra: serde_json::Value) {
        if let serde_json::Value::Object(m) = extra {
            for (k, v) in m {
                into[k] = v;
            }
        }
    }

    fn bound(b: &Bindings, claim: &str) -> Option<String> {
        b.get(&("default".to_string(), claim.to_string())).cloned()
    }

    #[test]
    fn the_smallest_fitting_volume_binds() {
        let vols =
            [pv("big", "10Gi", json!({})), pv("small", "1Gi", json!({})), pv("tiny", "100Mi", json!({}))];
        let b = bind(&vols, &[pvc("data", "500Mi", json!({}))]);
        assert_eq!(bound(&b, "data").as_deref(), Some("small"));
        // Two claims never share a volume; a claim too large for what is left stays pending.
        let b = bind(
            &vols,
            &[pvc("a", "1Gi", json!({})), pvc("b", "1Gi", json!({})), pvc("c", "1Gi", json!({}))],
        );
        assert_eq!(bound(&b, "a").as_deref(), Some("small"));
        assert_eq!(bound(&b, "b").as_deref(), Some("big"));
        assert_eq!(bound(&b, "c"), None);
    }

    #[test]
    fn class_modes_and_selector_must_match() {
        let vols = [
            pv("fast", "1Gi", json!({"storageClassName": "fast"})),
            pv("rox", "1Gi", json!({"accessModes": ["ReadOnlyMany"]})),
            pv("labelled", "5Gi", json!({})),
        ];
        let mut vols = vols.to_vec();
        vols[2].metadata.labels = Some([("tier".to_string(), "db".to_string())].into());
        let b = bind(&vols, &[pvc("c1", "1Gi", json!({"storageClassName": "fast"}))]);
        assert_eq!(bound(&b, "c1").as_deref(), Some("fast"));
        // The claim without a class cannot take the "fast" one; ReadWriteOnce rules out "rox".
        let b = bind(&vols, &[pvc("c2", "1Gi", json!({}))]);
        assert_eq!(bound(&b, "c2").as_deref(), Some("labelled"));
        let b = bind(&vols, &[pvc("c3", "1Gi", json!({"selector": {"matchLabels": {"tier": "web"}}}))]);
        assert_eq!(bound(&b, "c3"), None);
        let b = bind(&vols, &[pvc("c4", "1Gi", json!({"accessModes": ["ReadOnlyMany"]}))]);
        assert_eq!(bound(&b, "c4").as_deref(), Some("rox"));
        let block = pvc("c5", "1Gi", json!({"volumeMode": "Block"}));
        assert_eq!(bound(&bind(&vols, std::slice::from_ref(&block)), "c5"), None);
    }

    #[test]
    fn named_and_reserved_volumes_win() {
        let vols = [
            pv("small", "1Gi", json!({})),
            pv("reserved", "5Gi", json!({"claimRef": {"namespace": "default", "name": "mine"}})),
            pv("named", "10Gi", json!({})),
        ];
        // A reserved volume is only for its claim, even though "small" fits "other" better.
        let b = bind(&vols, &[pvc("mine", "1Gi", json!({})), pvc("other", "2Gi", json!({}))]);
        assert_eq!(bound(&b, "mine").as_deref(), Some("reserved"));
        assert_eq!(bound(&b, "other").as_deref(), Some("named"));
        // A claim naming a volume gets it, or nothing.
        let b = bind(&vols, &[pvc("pick", "1Gi", json!({"volumeName": "named"}))]);
        assert_eq!(bound(&b, "pick").as_deref(), Some("named"));
        let wants_reserved = pvc("pick", "1Gi", json!({"volumeName": "reserved"}));
        assert_eq!(bound(&bind(&vols, std::slice::from_ref(&wants_reserved)), "pick"), None);
        assert_eq!(
            pending_reason(&vols, &wants_reserved),
            "volume \"reserved\" is already bound to another claim"
        );
        let too_big = pvc("pick", "20Gi", json!({"volumeName": "named"}));
        assert_eq!(bound(&bind(&vols, std::slice::from_ref(&too_big)), "pick"), None);
        assert!(pending_reason(&vols, &too_big)
            .starts_with("Cannot bind to requested volume \"named\": capacity"));
        assert_eq!(
            pending_reason(&vols, &pvc("x", "1Gi", json!({"volumeName": "gone"}))),
            "volume \"gone\" requested by the claim does not exist"
        );
    }

    #[test]
    fn node_affinity_pins_volumes() {
        let v = pv(
            "local",
            "1Gi",
            json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["pi-1"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["pi-2"]}]},
            ]}}}),
        );
        let labels = |host: &str| Labels::from([("kubernetes.io/hostname".to_string(), host.to_string())]);
        assert!(fits_node(&v, "pi-1", &labels("pi-1")));
        assert!(fits_node(&v, "pi-2", &labels("pi-2")));
        assert!(!fits_node(&v, "pi-3", &labels("pi-3")));
        assert!(fits_node(&pv("anywhere", "1Gi", json!({})), "pi-3", &labels("pi-3")));
        let req = |op: &str, values: &[&str]| -> NodeSelectorRequirement {
            serde_json::from_value(json!({"key": "k", "operator": op, "values": values})).unwrap()
        };
        assert!(req("Gt", &["3"]).matches(Some("4")));
        assert!(!req("Gt", &["3"]).matches(Some("3")));
        assert!(req("Lt", &["3"]).matches(Some("-1")));
        assert!(!req("Lt", &["x"]).matches(Some("1")));
        assert!(req("NotIn", &["a"]).matches(None));
        assert!(req("DoesNotExist", &[]).matches(None));
        assert!(!req("Exists", &[]).matches(None));
        // An empty term matches nothing.
        let empty: NodeSelector = serde_json::from_value(json!({"nodeSelectorTerms": [{}]})).unwrap();
        assert!(!empty.matches("pi-1", &labels("pi-1")));
    }

    #[test]
    fn host_sources() {
        assert_eq!(host_source(&pv("l", "1Gi", json!({}))).unwrap().path, "/mnt/l");
        let h = pv(
            "h",
            "1Gi",
            json!({"local": null, "hostPath": {"path": "/srv/h", "type": "DirectoryOrCreate"}}),
        );
        let src = host_source(&h).unwrap();
        assert_eq!(
            (src.path.as_str(), src.type_),
            ("/srv/h", Some(crate::api::HostPathType::DirectoryOrCreate))
        );
    }
}
