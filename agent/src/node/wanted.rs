//! What the agent is asked to run: the desired pods and the ConfigMaps, Secrets and claims they
//! use, from a directory of manifests (static pods, as the kubelet's) and the hub's snapshot.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use flotilla_shared::api::Object;
use flotilla_shared::manifest::load_paths;
use flotilla_shared::volume_binding;
use flotilla_shared::wire::{ClaimVolume, ConfigData, DesiredPod, DesiredSnapshot};

/// What the agent is asked to run: pods, and the ConfigMaps and Secrets they may use (from a
/// manifest directory, or later from the hub's snapshot).
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub pods: Vec<DesiredPod>,
    pub config_maps: Vec<ConfigData>,
    pub secrets: Vec<ConfigData>,
    /// The bound PersistentVolumeClaims the pods may mount.
    pub claims: Vec<ClaimVolume>,
}

/// Reads a directory of manifests. A static pod's uid is derived from its namespace, name
/// and spec, so editing a manifest replaces the pod, as the kubelet does. ConfigMaps and
/// Secrets in the directory serve the pods (a resource version derived from their content);
/// PersistentVolumeClaims bind to the directory's PersistentVolumes that may be used on this
/// node (`node`, `labels`). Other kinds are ignored. Returns the load errors too.
pub fn static_manifests(dir: &Path, node: &str, labels: &BTreeMap<String, String>) -> (Desired, Vec<String>) {
    let loaded = load_paths(&[dir.to_path_buf()]);
    let mut errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
    let mut desired = Desired::default();
    let (mut volumes, mut claims) = (Vec::new(), Vec::new());
    let content_version = |json: Vec<u8>| format!("{:x}", Sha256::digest(json))[..16].to_string();
    for l in loaded.objects {
        match l.object {
            Object::Pod(p) => {
                let mut meta = p.metadata;
                default_namespace(&mut meta);
                let spec_json = serde_json::to_vec(&p.spec).unwrap_or_default();
                let mut h = Sha256::new();
                h.update(meta.namespace().as_bytes());
                h.update([0]);
                h.update(meta.name().as_bytes());
                h.update([0]);
                h.update(&spec_json);
                let digest = format!("{:x}", h.finalize());
                meta.uid = Some(format!("static-{}", &digest[..24]));
                desired.pods.push(DesiredPod { metadata: meta, spec: p.spec });
            }
            Object::ConfigMap(mut cm) => {
                default_namespace(&mut cm.metadata);
                desired.config_maps.push(ConfigData::from_config_map(
                    &cm,
                    &content_version(serde_json::to_vec(&cm).unwrap_or_default()),
                ));
            }
            Object::Secret(mut s) => {
                default_namespace(&mut s.metadata);
                desired.secrets.push(ConfigData::from_secret(
                    &s,
                    &content_version(serde_json::to_vec(&s).unwrap_or_default()),
                ));
            }
            Object::PersistentVolume(v) => volumes.push(v),
            Object::PersistentVolumeClaim(mut c) => {
                default_namespace(&mut c.metadata);
                claims.push(c);
            }
            _ => {}
        }
    }
    let bindings = volume_binding::bind(&volumes, &claims);
    for c in &claims {
        let (ns, name) = (c.metadata.namespace(), c.metadata.name());
        let Some(v) = bindings.get(&(ns.to_string(), name.to_string())) else {
            errors.push(format!(
                "PersistentVolumeClaim {ns}/{name} is pending: {}",
                volume_binding::pending_reason(&volumes, c)
            ));
            continue;
        };
        let Some(volume) = volumes.iter().find(|x| x.metadata.name() == v) else { continue };
        if !volume_binding::fits_node(volume, node, labels) {
            errors.push(format!(
                "PersistentVolume {v} (bound to {ns}/{name}) cannot be used on node {node}: volume node affinity conflict"
            ));
            continue;
        }
        let Some(host_path) = volume_binding::host_source(volume) else {
            errors.push(format!(
                "PersistentVolume {v} (bound to {ns}/{name}) is neither a local nor a hostPath volume"
            ));
            continue;
        };
        desired.claims.push(ClaimVolume {
            namespace: ns.to_string(),
            claim: name.to_string(),
            volume: v.clone(),
            host_path,
        });
    }
    (desired, errors)
}

fn default_namespace(meta: &mut flotilla_shared::api::ObjectMeta) {
    if meta.namespace.as_deref().unwrap_or_default().is_empty() {
        meta.namespace = Some("default".into());
    }
}

/// This round's desired state: the static pods (when there is a manifest directory) and the
/// hub's snapshot (when one has arrived), and the manifests' load errors.
pub fn gather(
    manifests: Option<&Path>,
    snapshot: Option<&DesiredSnapshot>,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> (Desired, Vec<String>) {
    let (mut wanted, errors) = match manifests {
        Some(dir) => static_manifests(dir, node, labels),
        None => (Desired::default(), Vec::new()),
    };
    if let Some(s) = snapshot {
        wanted.pods.extend(s.pods.iter().cloned());
        wanted.config_maps.extend(s.config_maps.iter().cloned());
        wanted.secrets.extend(s.secrets.iter().cloned());
        wanted.claims.extend(s.claims.iter().cloned());
    }
    (wanted, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_pod_uids_follow_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let pod = |cmd: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - {{name: c, image: busybox, command: [{cmd}]}}\n")
        };
        std::fs::write(dir.path().join("p.yaml"), pod("a")).unwrap();
        let pods = |dir: &Path| {
            let (d, errs) = static_manifests(dir, "n1", &BTreeMap::new());
            assert!(errs.is_empty(), "{errs:?}");
            d.pods
        };
        let a = pods(dir.path());
        let a2 = pods(dir.path());
        std::fs::write(dir.path().join("p.yaml"), pod("b")).unwrap();
        let b = pods(dir.path());
        assert_eq!(a[0].metadata.uid, a2[0].metadata.uid, "stable");
        assert_ne!(a[0].metadata.uid, b[0].metadata.uid, "a changed spec is a new pod");
        assert_eq!(a[0].metadata.namespace.as_deref(), Some("default"));
    }
}
