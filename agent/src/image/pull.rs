//! Pulling images from OCI/Docker registries with `oci-client`: tags and digests, multi-arch
//! indexes resolved to this device's platform, credentials from a Docker `config.json` and from
//! pods' imagePullSecrets, plain HTTP only for registries on an allow-list. Every
//! blob goes through the store's verified `put_blob`, so a registry serving wrong bytes fails
//! the pull; blobs already stored are not fetched again.

use std::collections::BTreeMap;
use std::io::Seek;

use base64::Engine;
use libcontainer::oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use flotilla_shared::api::PodSpec;
use flotilla_shared::image::ImageRef;
use flotilla_shared::wire::ConfigData;

use super::{select_platform, Digest, ImageRecord, ImageStore, Platform};

/// Manifests bigger than this are refused (real ones are a few KiB).
const MAX_MANIFEST: usize = 4 << 20;

const ACCEPTED: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0:?} is not a valid image reference: {1}")]
    Reference(String, String),
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    #[error("{reference}: the manifest's digest is {actual}, expected {expected}")]
    Digest { reference: String, expected: String, actual: String },
    #[error("{reference}: {message}")]
    Manifest { reference: String, message: String },
    #[error("{0}")]
    Store(String),
}

/// Registry access settings.
#[derive(Debug, Clone, Default)]
pub struct PullConfig {
    /// Registries (`host:port`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Credentials by registry host (`username`, `password`).
    pub auth: BTreeMap<String, (String, String)>,
}

impl PullConfig {
    /// Adds the credentials of a Docker-style `config.json`. Unreadable text is no credentials.
    pub fn with_docker_config(mut self, text: &str) -> Self {
        self.auth.extend(docker_config_auths(text));
        self
    }

    /// The settings for pulling a pod's images: the credentials of the pod's imagePullSecrets
    /// (found in `secrets`, of type `kubernetes.io/dockerconfigjson` or the legacy
    /// `kubernetes.io/dockercfg`) over the node's own. Also returns the names of secrets that
    /// are missing or hold no credentials (the pull goes on without them, as the kubelet's).
    pub fn for_pod(
        &self,
        spec: &PodSpec,
        namespace: &str,
        secrets: &[ConfigData],
    ) -> (PullConfig, Vec<String>) {
        let mut cfg = self.clone();
        let mut missing = Vec::new();
        for r in spec.image_pull_secrets.iter().flatten() {
            let name = r.name.as_str();
            let found = secrets.iter().find(|s| s.namespace == namespace && s.name == name).and_then(|s| {
                let text = |k: &str| s.data.get(k).and_then(|b| std::str::from_utf8(&b.0).ok());
                let auths = match (text(".dockerconfigjson"), text(".dockercfg")) {
                    (Some(t), _) => docker_config_auths(t),
                    (None, Some(t)) => docker_config_auths(&format!("{{\"auths\": {t}}}")),
                    (None, None) => BTreeMap::new(),
                };
                (!auths.is_empty()).then_some(auths)
            });
            match found {
                Some(auths) => cfg.auth.extend(auths),
                None => missing.push(name.to_string()),
            }
        }
        (cfg, missing)
    }
}

impl PullConfig {
    /// Identifies the credentials a pull of `image` would use ("" for none), so pulls with
    /// different credentials are never shared: a pod without the secret must not get an image
    /// through another pod's pull.
    pub fn fingerprint(&self, image: &str) -> String {
        use sha2::{Digest as _, Sha256};
        let Ok(parsed) = ImageRef::parse(image) else { return String::new() };
        match self.auth.get(parsed.registry.as_str()) {
            Some((u, p)) => {
                let mut h = Sha256::new();
                h.update(u.as_bytes());
                h.update([0]);
                h.update(p.as_bytes());
                format!("{:x}", h.finalize())[..16].to_string()
            }
            None => String::new(),
        }
    }
}

/// Credentials by registry host from a Docker `config.json` (`auths.<registry>.auth` = base64
/// `user:password`, or `username`/`password`).
fn docker_config_auths(text: &str) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else { return out };
    for (reg, entry) in v.get("auths").and_then(|a| a.as_object()).into_iter().flatten() {
        let host =
            reg.trim_start_matches("https://").trim_start_matches("http://").split('/').next().unwrap_or(reg);
        let host = if host == "index.docker.io" { "docker.io" } else { host };
        let pair = if let Some(a) = entry.get("auth").and_then(|a| a.as_str()) {
            base64::engine::general_purpose::STANDARD
                .decode(a)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())))
        } else {
            match (
                entry.get("username").and_then(|u| u.as_str()),
                entry.get("password").and_then(|p| p.as_str()),
            ) {
                (Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
                _ => None,
            }
        };
        if let Some(p) = pair {
            out.insert(host.to_string(), p);
        }
    }
    out
}

fn registry_err(registry: &str) -> impl Fn(oci_client::errors::OciDistributionError) -> PullError + '_ {
    move |e| PullError::Registry { registry: registry.to_string(), message: e.to_string() }
}

/// Pulls `reference` into `store` for `platform` and tags it; returns the stored image.
pub fn pull(
    store: &ImageStore,
    reference: &str,
    platform: &Platform,
    cfg: &PullConfig,
    now: u64,
) -> Result<ImageRecord, PullError> {
    let parsed =
        ImageRef::parse(reference).map_err(|e| PullError::Reference(reference.into(), e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PullError::Store(format!("starting the pull runtime: {e}")))?;
    rt.block_on(pull_async(store, &parsed, platform, cfg, now))
}

async fn pull_async(
    store: &ImageStore,
    image: &ImageRef,
    platform: &Platform,
    cfg: &PullConfig,
    now: u64,
) -> Result<ImageRecord, PullError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = image.registry.as_str();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(cfg.insecure.clone()),
        ..Default::default()
    });
    let auth = match cfg.auth.get(registry) {
        Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
        None => RegistryAuth::Anonymous,
    };
    let reference = to_reference(image);
    let (bytes, digest) = fetch_manifest(&client, &reference, &auth, registry).await?;
    check_digest(image, &bytes, &digest, image.digest.as_deref())?;
    // An index (multi-arch): pick this device's manifest and fetch it by digest.
    let (manifest_bytes, manifest_digest) = if is_index(&bytes) {
        let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| PullError::Manifest {
            reference: image.to_string(),
            message: format!("bad index: {e}"),
        })?;
        let chosen: &Descriptor = select_platform(index.manifests(), platform)
            .map_err(|e| PullError::Manifest { reference: image.to_string(), message: e.to_string() })?;
        let want = chosen.digest().to_string();
        let by_digest = Reference::with_digest(
            reference.registry().to_string(),
            reference.repository().to_string(),
            want.clone(),
        );
        let (b, d) = fetch_manifest(&client, &by_digest, &auth, registry).await?;
        check_digest(image, &b, &d, Some(&want))?;
        (b, want)
    } else {
        let d = Digest::of_bytes(&bytes).to_string();
        (bytes, d)
    };
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
        PullError::Manifest { reference: image.to_string(), message: format!("bad manifest: {e}") }
    })?;
    let mdigest = Digest::parse(&manifest_digest).map_err(|e| PullError::Store(e.to_string()))?;
    store
        .blobs()
        .put_blob(manifest_bytes.as_slice(), &mdigest)
        .map_err(|e| PullError::Store(e.to_string()))?;
    let blobs: Vec<&Descriptor> =
        std::iter::once(manifest.config()).chain(manifest.layers().iter()).collect();
    for desc in blobs {
        let digest = Digest::parse(desc.digest().as_ref()).map_err(|e| PullError::Store(e.to_string()))?;
        if store.blobs().has_blob(&digest) {
            continue;
        }
        // Stream to a temporary file, then into the store, which verifies the digest.
        let tmp = tempfile::tempfile_in(store.root()).map_err(|e| PullError::Store(e.to_string()))?;
        let mut file =
            tokio::fs::File::from_std(tmp.try_clone().map_err(|e| PullError::Store(e.to_string()))?);
        let layer = oci_client::manifest::OciDescriptor {
            media_type: desc.media_type().to_string(),
            digest: desc.digest().to_string(),
            size: desc.size() as i64,
            ..Default::default()
        };
        client.pull_blob(&reference, &layer, &mut file).await.map_err(registry_err(registry))?;
        drop(file);
        let mut tmp = tmp;
        tmp.rewind().map_err(|e| PullError::Store(e.to_string()))?;
        store
            .blobs()
            .put_blob_sized(tmp, &digest, desc.size())
            .map_err(|e| PullError::Store(e.to_string()))?;
        tracing::info!(image = %image, blob = %digest, bytes = desc.size(), "pulled");
    }
    store.add_image(&mdigest, std::slice::from_ref(image), now).map_err(|e| PullError::Store(e.to_string()))
}

fn to_reference(image: &ImageRef) -> Reference {
    match (&image.tag, &image.digest) {
        (_, Some(d)) => Reference::with_digest(image.registry.clone(), image.repository.clone(), d.clone()),
        (Some(t), None) => Reference::with_tag(image.registry.clone(), image.repository.clone(), t.clone()),
        (None, None) => {
            Reference::with_tag(image.registry.clone(), image.repository.clone(), "latest".into())
        }
    }
}

async fn fetch_manifest(
    client: &Client,
    reference: &Reference,
    auth: &RegistryAuth,
    registry: &str,
) -> Result<(Vec<u8>, String), PullError> {
    let (bytes, digest) =
        client.pull_manifest_raw(reference, auth, ACCEPTED).await.map_err(registry_err(registry))?;
    if bytes.len() > MAX_MANIFEST {
        return Err(PullError::Manifest {
            reference: reference.to_string(),
            message: format!("manifest of {} bytes is too large", bytes.len()),
        });
    }
    Ok((bytes.to_vec(), digest))
}

fn is_index(bytes: &[u8]) -> bool {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    v.get("manifests").is_some() && v.get("layers").is_none()
}

/// The manifest bytes must hash to what the registry said and, when the reference pins a
/// digest, to that digest.
fn check_digest(
    image: &ImageRef,
    bytes: &[u8],
    reported: &str,
    pinned: Option<&str>,
) -> Result<(), PullError> {
    let actual = Digest::of_bytes(bytes).to_string();
    for expected in [Some(reported), pinned].into_iter().flatten().filter(|e| !e.is_empty()) {
        if expected != actual {
            return Err(PullError::Digest {
                reference: image.to_string(),
                expected: expected.to_string(),
                actual,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_credentials() {
        let cfg = PullConfig::default().with_docker_config(
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"}, "10.0.0.5:5000": {"username": "a", "password": "b"}, "bad": {"auth": "!!"}}}"#,
        );
        assert_eq!(cfg.auth.get("docker.io"), Some(&("user".into(), "pass".into())));
        assert_eq!(cfg.auth.get("10.0.0.5:5000"), Some(&("a".into(), "b".into())));
        assert!(!cfg.auth.contains_key("bad"));
        assert!(PullConfig::default().with_docker_config("not json").auth.is_empty());
    }

    #[test]
    fn image_pull_secrets_add_credentials_over_the_nodes() {
        let node = PullConfig::default()
            .with_docker_config(r#"{"auths": {"reg.a": {"username": "node", "password": "n"}}}"#);
        let secret = |name: &str, key: &str, value: &str| ConfigData {
            namespace: "apps".into(),
            name: name.into(),
            resource_version: "1".into(),
            data: [(key.to_string(), value.into())].into(),
        };
        let secrets = [
            secret("new", ".dockerconfigjson", r#"{"auths": {"reg.a": {"auth": "cG9kOnA="}}}"#),
            secret("legacy", ".dockercfg", r#"{"reg.b:5000": {"username": "old", "password": "o"}}"#),
            secret("opaque", "password", "x"),
        ];
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [],
            "imagePullSecrets": [{"name": "new"}, {"name": "legacy"}, {"name": "opaque"}, {"name": "absent"}],
        }))
        .unwrap();
        let (cfg, missing) = node.for_pod(&spec, "apps", &secrets);
        assert_eq!(cfg.auth.get("reg.a"), Some(&("pod".into(), "p".into())), "the pod's secret wins");
        assert_eq!(cfg.auth.get("reg.b:5000"), Some(&("old".into(), "o".into())));
        assert_eq!(missing, ["opaque", "absent"]);
        // Another namespace's secrets are not the pod's.
        let (cfg, missing) = node.for_pod(&spec, "other", &secrets);
        assert_eq!(cfg.auth.get("reg.a"), Some(&("node".into(), "n".into())));
        assert_eq!(missing.len(), 4);
        assert_eq!(node.fingerprint("reg.a/app:1"), node.fingerprint("reg.a/other"));
        assert_ne!(
            node.fingerprint("reg.a/app:1"),
            cfg_with_pod(&node, &spec, &secrets).fingerprint("reg.a/app:1")
        );
        assert_eq!(node.fingerprint("reg.c/app:1"), "");
    }

    fn cfg_with_pod(node: &PullConfig, spec: &PodSpec, secrets: &[ConfigData]) -> PullConfig {
        node.for_pod(spec, "apps", secrets).0
    }

    #[test]
    fn manifest_digests_are_checked() {
        let image = ImageRef::parse("reg.local/app:1").unwrap();
        let body = b"{}";
        let good = Digest::of_bytes(body).to_string();
        assert!(check_digest(&image, body, &good, None).is_ok());
        assert!(check_digest(&image, body, &good, Some(&good)).is_ok());
        assert!(check_digest(&image, body, "sha256:00", None).is_err());
        assert!(check_digest(&image, body, &good, Some("sha256:11")).is_err());
        assert!(is_index(br#"{"manifests": []}"#));
        assert!(!is_index(br#"{"layers": [], "config": {}}"#));
    }
}
