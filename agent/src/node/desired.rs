//! Where the last applied desired snapshot is kept, so a reboot without network runs the same
//! pods again: everything but the Secrets and registry credentials in the state directory
//! (flash, written durably), those in the run directory (tmpfs: Secrets never reach the disk,
//! so after a reboot pods that need them wait for the hub).
//!
//! Flash wear: the state directory's copy is rewritten only when what would run after a
//! reboot changes (`reboot_digest`, pure): a pod's labels or annotations changing, a
//! resourceVersion or generation moving, a snapshot republished under a new generation, all
//! cost the flash nothing. What runs after a reboot is then the last snapshot whose pods
//! differed, with the metadata it had; the hub sends the newest as soon as it is reached.
//! Labels and annotations that a container reads through the downward API count as what runs.

use std::path::PathBuf;
use std::sync::Mutex;

use flotilla_shared::api::ObjectMeta;
use flotilla_shared::wire::{self, DesiredSnapshot};

use crate::fsutil::write_atomic;

/// Largest snapshot accepted (from the hub, and from the files).
pub const MAX_SNAPSHOT: usize = wire::DEFAULT_MAX_PAYLOAD;

/// What starts a compressed `desired.cbor` (deflate of the CBOR envelope); a file without it
/// is the plain envelope, as older agents wrote it.
const COMPRESSED: &[u8] = b"FLZ1\n";

/// The envelope in a state directory file: inflated (at most `MAX_SNAPSHOT` bytes, so a
/// damaged or hostile file cannot take the memory) when it is compressed.
fn inflate(bytes: &[u8]) -> Option<Vec<u8>> {
    let Some(deflated) = bytes.strip_prefix(COMPRESSED) else { return Some(bytes.to_vec()) };
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(deflated).take(MAX_SNAPSHOT as u64 + 1).read_to_end(&mut out).ok()?;
    (out.len() <= MAX_SNAPSHOT).then_some(out)
}

/// The envelope compressed for the flash: a snapshot's pod specs repeat themselves, and every
/// byte saved is a byte the card does not write.
fn deflate(envelope: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut out = COMPRESSED.to_vec();
    let mut enc = flate2::write::DeflateEncoder::new(&mut out, flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(envelope);
    let _ = enc.finish();
    out
}

/// The two files, and what the state directory's copy holds now.
#[derive(Debug)]
pub struct SnapshotFiles {
    desired: PathBuf,
    secrets: PathBuf,
    /// The reboot digest and generation of the snapshot in `desired` (none yet: `None`).
    persisted: Mutex<Option<([u8; 32], u64)>>,
}

/// Pure: a digest of what of `snap` decides what runs after a reboot: each pod's identity,
/// spec and deletion, its labels and annotations only where the downward API reads them, and
/// the ConfigMaps and claims the pods use. The generation, Secrets (kept in memory only) and
/// other metadata are left out.
pub fn reboot_digest(snap: &DesiredSnapshot) -> [u8; 32] {
    use sha2::Digest;
    let mut view = snap.clone();
    view.generation = 0;
    view.secrets.clear();
    view.registry_auth.clear();
    for pod in &mut view.pods {
        let m = &pod.metadata;
        let spec = serde_json::to_string(&pod.spec).unwrap_or_default();
        pod.metadata = ObjectMeta {
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            uid: m.uid.clone(),
            deletion_timestamp: m.deletion_timestamp.clone(),
            labels: if spec.contains("metadata.labels") { m.labels.clone() } else { None },
            annotations: if spec.contains("metadata.annotations") { m.annotations.clone() } else { None },
            ..ObjectMeta::default()
        };
    }
    sha2::Sha256::digest(wire::encode(&view)).into()
}

impl SnapshotFiles {
    pub fn new(desired: PathBuf, secrets: PathBuf) -> SnapshotFiles {
        SnapshotFiles { desired, secrets, persisted: Mutex::new(None) }
    }

    fn persisted(&self) -> std::sync::MutexGuard<'_, Option<([u8; 32], u64)>> {
        self.persisted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The snapshot kept for `node`, with its Secrets when the run directory still has them.
    pub fn load(&self, node: &str) -> Option<DesiredSnapshot> {
        let mut snap = std::fs::read(&self.desired)
            .ok()
            .and_then(|b| inflate(&b))
            .and_then(|b| wire::decode::<DesiredSnapshot>(&b, MAX_SNAPSHOT).ok())
            .filter(|s| s.node == node)?;
        *self.persisted() = Some((reboot_digest(&snap), snap.generation));
        if let Some(s) = std::fs::read(&self.secrets)
            .ok()
            .and_then(|b| wire::decode::<DesiredSnapshot>(&b, MAX_SNAPSHOT).ok())
            .filter(|s| s.node == node && s.generation == snap.generation)
        {
            snap.secrets = s.secrets;
            snap.registry_auth = s.registry_auth;
        }
        Some(snap)
    }

    /// Keeps `snap`: its Secrets in the run directory every time (tmpfs costs the flash
    /// nothing), the rest in the state directory only when what runs after a reboot changed.
    /// Returns whether the state directory was written.
    pub fn store(&self, snap: &DesiredSnapshot) -> std::io::Result<bool> {
        let digest = reboot_digest(snap);
        let kept = *self.persisted();
        let unchanged = kept.filter(|(d, _)| *d == digest);
        // The Secrets file carries the generation of the state directory's copy, which is what
        // `load` pairs it with.
        let generation = unchanged.map_or(snap.generation, |(_, g)| g);
        let secrets = DesiredSnapshot {
            node: snap.node.clone(),
            generation,
            pods: Vec::new(),
            config_maps: Vec::new(),
            secrets: snap.secrets.clone(),
            registry_auth: snap.registry_auth.clone(),
            claims: Vec::new(),
        };
        if let Some(dir) = self.secrets.parent() {
            std::fs::create_dir_all(dir)?;
        }
        write_atomic(&self.secrets, &wire::encode(&secrets))?;
        if unchanged.is_some() {
            return Ok(false);
        }
        let mut on_disk = snap.clone();
        on_disk.secrets.clear();
        on_disk.registry_auth.clear();
        write_atomic(&self.desired, &deflate(&wire::encode(&on_disk)))?;
        *self.persisted() = Some((digest, snap.generation));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_shared::api::PodSpec;
    use flotilla_shared::wire::{ConfigData, DesiredPod};

    fn pod(uid: &str, annotation: &str, downward: bool) -> DesiredPod {
        let env = if downward {
            r#", "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['a']"}}}]"#
        } else {
            ""
        };
        let spec: PodSpec = serde_json::from_str(&format!(
            r#"{{"containers": [{{"name": "main", "image": "busybox"{env}}}]}}"#
        ))
        .unwrap();
        DesiredPod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                resource_version: Some(annotation.len().to_string()),
                annotations: Some([("a".to_string(), annotation.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec,
        }
    }

    fn snap(generation: u64, pods: Vec<DesiredPod>) -> DesiredSnapshot {
        DesiredSnapshot {
            node: "pi-1".into(),
            generation,
            pods,
            config_maps: vec![],
            secrets: vec![],
            registry_auth: vec![],
            claims: vec![],
        }
    }

    /// (before, after, whether what runs after a reboot differs)
    fn check(cases: &[(DesiredSnapshot, DesiredSnapshot, bool)]) {
        for (i, (a, b, differs)) in cases.iter().enumerate() {
            assert_eq!(reboot_digest(a) != reboot_digest(b), *differs, "case {i}");
            assert_eq!(reboot_digest(a), reboot_digest(a), "case {i}: a digest is repeatable");
        }
    }

    #[test]
    fn only_what_runs_after_a_reboot_counts() {
        let secret = ConfigData {
            namespace: "default".into(),
            name: "s".into(),
            resource_version: "1".into(),
            data: Default::default(),
        };
        check(&[
            (snap(1, vec![pod("u1", "x", false)]), snap(2, vec![pod("u1", "x", false)]), false),
            (snap(1, vec![pod("u1", "x", false)]), snap(2, vec![pod("u1", "y", false)]), false),
            (snap(1, vec![pod("u1", "x", true)]), snap(2, vec![pod("u1", "y", true)]), true),
            (snap(1, vec![pod("u1", "x", false)]), snap(2, vec![pod("u2", "x", false)]), true),
            (snap(1, vec![pod("u1", "x", false)]), snap(2, vec![]), true),
            (snap(1, vec![]), DesiredSnapshot { secrets: vec![secret], ..snap(2, vec![]) }, false),
        ]);
    }

    #[test]
    fn the_flash_copy_is_compressed_and_older_plain_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desired.cbor");
        let files = SnapshotFiles::new(path.clone(), dir.path().join("secrets.cbor"));
        let pods: Vec<DesiredPod> = (0..10).map(|i| pod(&format!("u{i}"), "x", true)).collect();
        files.store(&snap(7, pods.clone())).unwrap();
        let plain = wire::encode(&snap(7, pods.clone()));
        let written = std::fs::read(&path).unwrap();
        assert!(
            written.starts_with(COMPRESSED) && written.len() * 3 < plain.len(),
            "{} of {} bytes",
            written.len(),
            plain.len()
        );
        assert_eq!(files.load("pi-1").unwrap().pods, pods);
        std::fs::write(&path, &plain).unwrap();
        assert_eq!(files.load("pi-1").unwrap().pods, pods, "an older agent's plain file");
        // A bomb: more than the cap once inflated.
        std::fs::write(&path, deflate(&vec![0u8; MAX_SNAPSHOT + 10])).unwrap();
        assert!(files.load("pi-1").is_none());
        std::fs::write(&path, b"FLZ1\nnot deflate").unwrap();
        assert!(files.load("pi-1").is_none(), "damaged");
    }

    #[test]
    fn the_flash_is_written_only_when_the_pods_change() {
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotFiles::new(dir.path().join("desired.cbor"), dir.path().join("run/secrets.cbor"));
        assert!(files.store(&snap(1, vec![pod("u1", "x", false)])).unwrap(), "the first one");
        assert!(!files.store(&snap(2, vec![pod("u1", "y", false)])).unwrap(), "an annotation");
        assert!(files.store(&snap(3, vec![pod("u2", "y", false)])).unwrap(), "another pod");
        // A restarted agent knows what the file holds and pairs the Secrets with it.
        let again = SnapshotFiles::new(dir.path().join("desired.cbor"), dir.path().join("run/secrets.cbor"));
        let loaded = again.load("pi-1").unwrap();
        assert_eq!((loaded.generation, loaded.pods[0].metadata.uid.as_deref()), (3, Some("u2")));
        assert!(!again.store(&snap(4, vec![pod("u2", "z", false)])).unwrap());
        assert_eq!(again.load("pi-1").unwrap().generation, 3, "the flash copy stays");
        assert!(again.load("pi-2").is_none(), "another node's");
    }
}
