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

use serde_json::Value;

use flotilla_shared::api::{
    ClaimReference, PersistentVolume, PersistentVolumeClaim, ReclaimPolicy, VolumeStatus,
};
use flotilla_shared::volume_binding;

use super::pods::value;

/// A change to make: the object (JSON, as the store writes it) and its new status.
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

fn phase(status: Option<&VolumeStatus>) -> Option<&str> {
    status?.phase.as_deref()
}

fn status(phase: &str) -> VolumeStatus {
    VolumeStatus { phase: Some(phase.into()), ..VolumeStatus::default() }
}

/// The actions that bring the stored volumes and claims to their bindings.
pub fn sync(volumes: &[PersistentVolume], claims: &[PersistentVolumeClaim]) -> Vec<Action> {
    // A volume whose claim is gone is released, not bound again.
    let claim_uids: std::collections::HashSet<&str> =
        claims.iter().filter_map(|c| c.metadata.uid.as_deref()).collect();
    let released = |v: &PersistentVolume| {
        v.spec.claim_ref.as_ref().and_then(|r| r.uid.as_deref()).is_some_and(|u| !claim_uids.contains(u))
    };
    let live: Vec<PersistentVolume> = volumes.iter().filter(|v| !released(v)).cloned().collect();
    let bindings = volume_binding::bind(&live, claims);
    let mut out = Vec::new();
    for c in claims {
        let key = (c.metadata.namespace().to_string(), c.metadata.name().to_string());
        match bindings.get(&key).and_then(|name| live.iter().find(|v| v.metadata.name() == name)) {
            Some(v) => {
                let status = VolumeStatus {
                    phase: Some("Bound".into()),
                    capacity: v.spec.capacity.clone(),
                    access_modes: v.spec.access_modes.clone(),
                    message: None,
                };
                if c.spec.volume_name.as_deref() != Some(v.metadata.name()) {
                    let mut object = c.clone();
                    object.spec.volume_name = Some(v.metadata.name().into());
                    out.push(Action::Claim { object: value(&object), status: value(&status) });
                } else if c.status.as_ref() != Some(&status) {
                    out.push(Action::ClaimStatus { object: value(c), status: value(&status) });
                }
            }
            None if phase(c.status.as_ref()) != Some("Pending") => {
                out.push(Action::ClaimStatus { object: value(c), status: value(&status("Pending")) });
            }
            None => {}
        }
    }
    for v in volumes {
        let name = v.metadata.name();
        if released(v) {
            let want = match v.spec.persistent_volume_reclaim_policy {
                Some(ReclaimPolicy::Delete | ReclaimPolicy::Recycle) => {
                    VolumeStatus { message: Some(NO_DELETER.into()), ..status("Failed") }
                }
                _ => status("Released"),
            };
            if v.status.as_ref() != Some(&want) {
                out.push(Action::VolumeStatus { object: value(v), status: value(&want) });
            }
            continue;
        }
        let claim = bindings.iter().find(|(_, vol)| vol.as_str() == name).and_then(|((ns, cn), _)| {
            claims.iter().find(|c| c.metadata.namespace() == ns && c.metadata.name() == cn)
        });
        match claim {
            Some(c) => {
                let want = ClaimReference {
                    api_version: Some("v1".into()),
                    kind: Some("PersistentVolumeClaim".into()),
                    name: Some(c.metadata.name().into()),
                    namespace: Some(c.metadata.namespace().into()),
                    uid: c.metadata.uid.clone(),
                };
                if v.spec.claim_ref.as_ref() != Some(&want) {
                    let mut object = v.clone();
                    object.spec.claim_ref = Some(want);
                    out.push(Action::Volume { object: value(&object), status: value(&status("Bound")) });
                } else if phase(v.status.as_ref()) != Some("Bound") {
                    out.push(Action::VolumeStatus { object: value(v), status: value(&status("Bound")) });
                }
            }
            None if phase(v.status.as_ref()) != Some("Available") => {
                out.push(Action::VolumeStatus { object: value(v), status: value(&status("Available")) });
            }
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::workloads::parse;
    use flotilla_shared::api::Kind;
    use serde_json::json;

    /// `sync` on JSON fixtures, parsed as the loop parses stored objects.
    fn sync(volumes: &[Value], claims: &[Value]) -> Vec<Action> {
        let volumes: Vec<PersistentVolume> =
            volumes.iter().map(|v| parse(Kind::PersistentVolume, v).expect("a volume")).collect();
        let claims: Vec<PersistentVolumeClaim> =
            claims.iter().map(|c| parse(Kind::PersistentVolumeClaim, c).expect("a claim")).collect();
        super::sync(&volumes, &claims)
    }

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
