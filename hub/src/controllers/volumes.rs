//! The PersistentVolume controller (pure): binds claims to volumes with
//! `volume_binding::bind` and writes the binding into both objects, as Kubernetes' PV
//! controller does: the claim gets `spec.volumeName` and phase Bound (with the volume's
//! capacity and access modes), the volume `spec.claimRef` (with the claim's uid) and phase
//! Bound. Once written, a binding is what `bind` honours first, so it never moves.
//!
//! A volume whose claim is gone (its `claimRef` names a uid no claim has any more) is released
//! by its reclaim policy: `Retain` (the default for volumes made by hand) leaves it Released,
//! keeping its data and its claimRef so nobody else binds it until an admin clears it. `Delete`
//! needs a deleter for the storage, and local and hostPath volumes on a node have none (as in
//! Kubernetes without a provisioner): the volume turns Failed with a message saying so, and
//! its data stays until an admin removes it and the PersistentVolume. Unbound claims are
//! Pending.

use serde_json::{json, Value};

use flotilla_shared::api::{PersistentVolume, PersistentVolumeClaim, ReclaimPolicy};
use flotilla_shared::volume_binding;

/// A change to make, on the stored object (JSON) given.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Replace the object's spec (`Mode::Update`), then its status (`Mode::Status`).
    Claim {
        object: Value,
        status: Value,
    },
    Volume {
        object: Value,
        status: Value,
    },
    /// Only the status changes.
    ClaimStatus {
        object: Value,
        status: Value,
    },
    VolumeStatus {
        object: Value,
        status: Value,
    },
}

/// Why a released volume with reclaim policy Delete fails.
pub const NO_DELETER: &str =
    "no volume plugin can delete local or hostPath volumes: delete the data on the node, then the PersistentVolume";

fn phase(v: &Value) -> Option<&str> {
    v.pointer("/status/phase").and_then(Value::as_str)
}

/// The actions that bring the stored volumes and claims to their bindings.
pub fn sync(volumes: &[Value], claims: &[Value]) -> Vec<Action> {
    let parsed_v: Vec<(PersistentVolume, &Value)> =
        volumes.iter().filter_map(|v| Some((serde_json::from_value(v.clone()).ok()?, v))).collect();
    let parsed_c: Vec<(PersistentVolumeClaim, &Value)> =
        claims.iter().filter_map(|v| Some((serde_json::from_value(v.clone()).ok()?, v))).collect();
    // A volume whose claim is gone is released, not bound again.
    let claim_uids: std::collections::HashSet<&str> =
        parsed_c.iter().filter_map(|(c, _)| c.metadata.uid.as_deref()).collect();
    let released = |v: &PersistentVolume| {
        v.spec.claim_ref.as_ref().and_then(|r| r.uid.as_deref()).is_some_and(|u| !claim_uids.contains(u))
    };
    let live: Vec<PersistentVolume> =
        parsed_v.iter().filter(|(v, _)| !released(v)).map(|(v, _)| v.clone()).collect();
    let all_claims: Vec<PersistentVolumeClaim> = parsed_c.iter().map(|(c, _)| c.clone()).collect();
    let bindings = volume_binding::bind(&live, &all_claims);
    let mut out = Vec::new();
    for (c, raw) in &parsed_c {
        let key = (c.metadata.namespace().to_string(), c.metadata.name().to_string());
        match bindings.get(&key).and_then(|name| live.iter().find(|v| v.metadata.name() == name)) {
            Some(v) => {
                let status = json!({
                    "phase": "Bound",
                    "capacity": v.spec.capacity,
                    "accessModes": v.spec.access_modes,
                });
                if c.spec.volume_name.as_deref() != Some(v.metadata.name()) {
                    let mut object = (*raw).clone();
                    object["spec"]["volumeName"] = v.metadata.name().into();
                    out.push(Action::Claim { object, status });
                } else if raw.get("status") != Some(&status) {
                    out.push(Action::ClaimStatus { object: (*raw).clone(), status });
                }
            }
            None if phase(raw) != Some("Pending") => {
                out.push(Action::ClaimStatus { object: (*raw).clone(), status: json!({"phase": "Pending"}) });
            }
            None => {}
        }
    }
    for (v, raw) in &parsed_v {
        let name = v.metadata.name();
        if released(v) {
            let status = match v.spec.persistent_volume_reclaim_policy {
                Some(ReclaimPolicy::Delete | ReclaimPolicy::Recycle) => {
                    json!({"phase": "Failed", "message": NO_DELETER})
                }
                _ => json!({"phase": "Released"}),
            };
            if raw.get("status") != Some(&status) {
                out.push(Action::VolumeStatus { object: (*raw).clone(), status });
            }
            continue;
        }
        let claim = bindings.iter().find(|(_, vol)| vol.as_str() == name).and_then(|((ns, cn), _)| {
            parsed_c.iter().find(|(c, _)| c.metadata.namespace() == ns && c.metadata.name() == cn)
        });
        match claim {
            Some((c, _)) => {
                let want = json!({
                    "kind": "PersistentVolumeClaim", "apiVersion": "v1",
                    "namespace": c.metadata.namespace(), "name": c.metadata.name(), "uid": c.metadata.uid,
                });
                let status = json!({"phase": "Bound"});
                if raw.pointer("/spec/claimRef") != Some(&want) {
                    let mut object = (*raw).clone();
                    object["spec"]["claimRef"] = want;
                    out.push(Action::Volume { object, status });
                } else if phase(raw) != Some("Bound") {
                    out.push(Action::VolumeStatus { object: (*raw).clone(), status });
                }
            }
            None if phase(raw) != Some("Available") => {
                out.push(Action::VolumeStatus {
                    object: (*raw).clone(),
                    status: json!({"phase": "Available"}),
                });
            }
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(name: &str, extra: Value) -> Value {
        let mut v = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "local": {"path": "/mnt"}}});
        if let Value::Object(m) = extra {
            for (k, x) in m {
                v["spec"][k] = x;
            }
        }
        v
    }

    fn pvc(name: &str, uid: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default", "uid": uid},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    }

    /// Applies the actions as the store would (spec, then status).
    fn apply(volumes: &mut [Value], claims: &mut [Value], actions: Vec<Action>) {
        let put = |list: &mut [Value], object: Value, status: Value| {
            let name = object["metadata"]["name"].clone();
            if let Some(slot) = list.iter_mut().find(|o| o["metadata"]["name"] == name) {
                *slot = object;
                slot["status"] = status;
            }
        };
        for a in actions {
            match a {
                Action::Claim { object, status } | Action::ClaimStatus { object, status } => {
                    put(claims, object, status)
                }
                Action::Volume { object, status } | Action::VolumeStatus { object, status } => {
                    put(volumes, object, status)
                }
            }
        }
    }

    #[test]
    fn bindings_are_written_to_both_sides_and_stay() {
        let mut volumes = vec![pv("small", json!({})), pv("big", json!({"capacity": {"storage": "10Gi"}}))];
        let mut claims = vec![pvc("data", "c1"), pvc("more", "c2")];
        claims[1]["spec"]["resources"]["requests"]["storage"] = "5Gi".into();
        let actions = sync(&volumes, &claims);
        apply(&mut volumes, &mut claims, actions);
        assert_eq!(claims[0]["spec"]["volumeName"], "small");
        assert_eq!(claims[0]["status"]["phase"], "Bound");
        assert_eq!(claims[0]["status"]["capacity"]["storage"], "1Gi");
        assert_eq!(claims[1]["spec"]["volumeName"], "big");
        assert_eq!(volumes[0]["spec"]["claimRef"]["uid"], "c1");
        assert_eq!(volumes[1]["status"]["phase"], "Bound");
        // Converged: nothing more to do.
        assert_eq!(sync(&volumes, &claims), vec![]);
        // A smaller volume appearing later does not move a bound claim.
        volumes.push(pv("tiny", json!({"capacity": {"storage": "5Gi"}})));
        let actions = sync(&volumes, &claims);
        assert_eq!(actions.len(), 1, "{actions:?}");
        apply(&mut volumes, &mut claims, actions);
        assert_eq!(volumes[2]["status"]["phase"], "Available");
        assert_eq!(claims[1]["spec"]["volumeName"], "big");
    }

    #[test]
    fn released_volumes_follow_their_reclaim_policy() {
        let mut volumes =
            vec![pv("keep", json!({})), pv("drop", json!({"persistentVolumeReclaimPolicy": "Delete"}))];
        let mut claims = vec![pvc("a", "c1"), pvc("b", "c2")];
        let actions = sync(&volumes, &claims);
        apply(&mut volumes, &mut claims, actions);
        // Equal sizes: the first name goes to the first claim.
        assert_eq!(
            (&volumes[1]["spec"]["claimRef"]["name"], &volumes[0]["spec"]["claimRef"]["name"]),
            (&json!("a"), &json!("b"))
        );
        // Both claims deleted: "keep" is Released, "drop" Failed (nothing can delete node-local
        // storage); neither binds again.
        let mut none: Vec<Value> = vec![];
        let actions = sync(&volumes, &none);
        apply(&mut volumes, &mut none, actions);
        assert_eq!(volumes[0]["status"]["phase"], "Released");
        assert_eq!(volumes[1]["status"], json!({"phase": "Failed", "message": NO_DELETER}));
        assert_eq!(sync(&volumes, &none), vec![]);
        let mut newcomer = vec![pvc("c", "c3")];
        let actions = sync(&volumes, &newcomer);
        apply(&mut volumes, &mut newcomer, actions);
        assert_eq!(
            newcomer[0]["status"]["phase"], "Pending",
            "a released volume keeps its data for its admin"
        );
        assert!(newcomer[0]["spec"].get("volumeName").is_none());
    }
}
