//! Importing images from archives for air-gapped devices: OCI image layouts (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) and `docker save` archives (`manifest.json`). Every
//! digest is verified; nothing is tagged until all blobs of an image are stored.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use flotilla_shared::image::ImageRef;
use libcontainer::oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::Deserialize;
use tracing::warn;

use super::archive::{Archive, ArchiveError};
use super::blobs::BlobError;
use super::config::{parse_config, ConfigError};
use super::digest::{Digest, DigestError};
use super::index::ImageRecord;
use super::platform::{check_platform, select_platform, Platform, PlatformError};
use super::store::{ImageStore, StoreError, MAX_JSON_BLOB};

/// Annotation with the full image name (containerd, Docker 25+).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI's reference annotation: a full reference or only a tag.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const MAX_NESTING: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("{path}: neither an OCI image layout (oci-layout, index.json) nor a docker save archive (manifest.json)")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: OCI image layout version {version:?} is not supported (1.x is)")]
    LayoutVersion { path: PathBuf, version: String },
    #[error("{path}: member {member:?} is not valid JSON of the expected shape: {source}")]
    Json { path: PathBuf, member: String, source: serde_json::Error },
    #[error("{path}: member {member:?}: {source}")]
    Digest { path: PathBuf, member: String, source: DigestError },
    #[error("{path}: member {member:?} should have digest {expected} but has {actual}")]
    DigestMismatch { path: PathBuf, member: String, expected: Digest, actual: Digest },
    #[error("{path}: member {member:?} should be {expected} bytes but is {actual}")]
    SizeMismatch { path: PathBuf, member: String, expected: u64, actual: u64 },
    #[error("{path}: {digest} is neither an image manifest nor an index")]
    NotAManifest { path: PathBuf, digest: Digest },
    #[error("{path}: indexes nested deeper than {MAX_NESTING} levels at {digest}")]
    NestingTooDeep { path: PathBuf, digest: Digest },
    #[error("{path}: {source}")]
    Platform { path: PathBuf, source: PlatformError },
    #[error("{path}: image config {config} lists {diff_ids} diff_ids for {layers} layers")]
    LayerCount { path: PathBuf, config: Digest, layers: usize, diff_ids: usize },
    #[error("{path}: {source}")]
    Config { path: PathBuf, source: ConfigError },
    #[error("{path}: member {member:?}: {source}")]
    Blob { path: PathBuf, member: String, source: BlobError },
    #[error("{path}: {source}")]
    Store { path: PathBuf, source: Box<StoreError> },
}

/// One image imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImage {
    /// Normalized references now pointing at it (empty when the archive named none).
    pub tags: Vec<String>,
    pub record: ImageRecord,
}

/// A blob to copy from the archive into the store.
#[derive(Debug, Clone)]
struct Wanted {
    member: String,
    digest: Digest,
    size: Option<u64>,
}

/// One image found in the archive, checked and ready to store.
#[derive(Debug)]
struct Plan {
    manifest: Digest,
    config: Digest,
    /// Manifest bytes when the manifest is synthesized (docker save) rather than a member.
    synthesized: Option<Vec<u8>>,
    blobs: Vec<Wanted>,
    tags: Vec<ImageRef>,
}

/// What an index entry's annotations say about its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefName {
    Full(ImageRef),
    /// Only a tag: the repository must come from elsewhere (docker's manifest.json).
    TagOnly(String),
    None,
}

/// Pure: reads a descriptor's name annotations. `io.containerd.image.name` wins; a
/// `ref.name` with '/', ':' or '@' is a full reference, otherwise only a tag.
pub fn ref_name(annotations: Option<&HashMap<String, String>>) -> RefName {
    let Some(a) = annotations else { return RefName::None };
    if let Some(r) = a.get(ANNOTATION_IMAGE_NAME).and_then(|n| ImageRef::parse(n).ok()) {
        return RefName::Full(r);
    }
    match a.get(ANNOTATION_REF_NAME) {
        Some(n) if n.contains(['/', ':', '@']) => ImageRef::parse(n).map_or(RefName::None, RefName::Full),
        Some(n) if !n.is_empty() => RefName::TagOnly(n.clone()),
        _ => RefName::None,
    }
}

/// `docker save`'s manifest.json entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The digest a member name spells (`blobs/sha256/<hex>`, `<hex>.json`), if any.
pub fn digest_in_name(member: &str) -> Option<Digest> {
    if let Some(hex) = member.strip_prefix("blobs/sha256/") {
        return Digest::from_hex(hex).ok();
    }
    Digest::from_hex(member.strip_suffix(".json")?).ok()
}

fn blob_member(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

impl ImageStore {
    /// Imports every image of the archive at `path` for the device's `platform`, recording `now`
    /// as their creation and last-use time.
    pub fn import_archive(
        &self,
        path: &Path,
        platform: &Platform,
        now: u64,
    ) -> Result<Vec<ImportedImage>, ImportError> {
        let mut archive = Archive::open(path)?;
        let plans = if archive.contains("oci-layout") && archive.contains("index.json") {
            Importer { archive: &mut archive, want: platform }.oci_layout()?
        } else if archive.contains("manifest.json") {
            Importer { archive: &mut archive, want: platform }.docker_save()?
        } else {
            return Err(ImportError::UnknownFormat { path: path.to_path_buf() });
        };
        self.store_blobs(&archive, &plans)?;
        let store_err = |e: StoreError| ImportError::Store { path: path.to_path_buf(), source: Box::new(e) };
        let mut out = Vec::new();
        for plan in plans {
            if let Some(bytes) = &plan.synthesized {
                self.blobs().put_blob(&bytes[..], &plan.manifest).map_err(|source| ImportError::Blob {
                    path: path.into(),
                    member: "manifest.json".into(),
                    source,
                })?;
            }
            let record = self.add_image(&plan.manifest, &plan.tags, now).map_err(store_err)?;
            let tags = self.index().tags_of(&record.manifest);
            let tags = tags.into_iter().filter(|t| plan.tags.iter().any(|p| &p.to_string() == t)).collect();
            out.push(ImportedImage { tags, record });
        }
        Ok(out)
    }

    /// Copies every wanted blob into the store: from memory when the catalog kept it, in one
    /// more pass over the archive for the rest.
    fn store_blobs(&self, archive: &Archive, plans: &[Plan]) -> Result<(), ImportError> {
        let path = archive.path().to_path_buf();
        let mut by_member: BTreeMap<String, Vec<&Wanted>> = BTreeMap::new();
        for w in plans.iter().flat_map(|p| &p.blobs) {
            if self.blobs().has_blob(&w.digest) {
                continue;
            }
            let (real, _) = archive
                .resolve(&w.member)
                .ok_or_else(|| ArchiveError::Missing { path: path.clone(), member: w.member.clone() })?;
            by_member.entry(real).or_default().push(w);
        }
        let put =
            |member: &str, reader: &mut dyn std::io::Read, wanted: &[&Wanted]| -> Result<(), ImportError> {
                let blob_err =
                    |source| ImportError::Blob { path: path.clone(), member: member.to_string(), source };
                let first = wanted.first().map(|w| (w.digest.clone(), w.size));
                let Some((digest, size)) = first else { return Ok(()) };
                match size {
                    Some(s) => self.blobs().put_blob_sized(reader, &digest, s),
                    None => self.blobs().put_blob(reader, &digest),
                }
                .map_err(blob_err)?;
                // The same member wanted under another digest cannot match: it hashed to `digest`.
                match wanted.iter().find(|w| w.digest != digest) {
                    Some(w) => Err(ImportError::DigestMismatch {
                        path: path.clone(),
                        member: member.to_string(),
                        expected: w.digest.clone(),
                        actual: digest,
                    }),
                    None => Ok(()),
                }
            };
        let mut rest = Vec::new();
        for (member, wanted) in &by_member {
            match archive.cached(member) {
                Some(bytes) => put(member, &mut &bytes[..], wanted)?,
                None => rest.push(member.clone()),
            }
        }
        if !rest.is_empty() {
            archive.stream_with(&rest, |member, reader| match by_member.get(member) {
                Some(wanted) => put(member, reader, wanted),
                None => Ok(()),
            })?;
        }
        for w in plans.iter().flat_map(|p| &p.blobs) {
            if !self.blobs().has_blob(&w.digest) {
                return Err(ArchiveError::Missing { path: path.clone(), member: w.member.clone() }.into());
            }
        }
        Ok(())
    }
}

struct Importer<'a> {
    archive: &'a mut Archive,
    want: &'a Platform,
}

impl Importer<'_> {
    fn path(&self) -> PathBuf {
        self.archive.path().to_path_buf()
    }

    fn json<T: serde::de::DeserializeOwned>(&self, member: &str, bytes: &[u8]) -> Result<T, ImportError> {
        serde_json::from_slice(bytes).map_err(|source| ImportError::Json {
            path: self.path(),
            member: member.to_string(),
            source,
        })
    }

    /// Reads a small blob member and checks it against its descriptor.
    fn read_verified(&mut self, digest: &Digest, size: u64) -> Result<Vec<u8>, ImportError> {
        let member = blob_member(digest);
        let bytes = self.archive.read_small(&member, MAX_JSON_BLOB)?;
        if bytes.len() as u64 != size {
            return Err(ImportError::SizeMismatch {
                path: self.path(),
                member,
                expected: size,
                actual: bytes.len() as u64,
            });
        }
        let actual = Digest::of_bytes(&bytes);
        if &actual != digest {
            return Err(ImportError::DigestMismatch {
                path: self.path(),
                member,
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    fn digest(&self, member: &str, d: &libcontainer::oci_spec::image::Digest) -> Result<Digest, ImportError> {
        Digest::try_from(d).map_err(|source| ImportError::Digest {
            path: self.path(),
            member: member.into(),
            source,
        })
    }

    fn oci_layout(mut self) -> Result<Vec<Plan>, ImportError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Layout {
            image_layout_version: String,
        }
        let bytes = self.archive.read_small("oci-layout", MAX_JSON_BLOB)?;
        let layout: Layout = self.json("oci-layout", &bytes)?;
        if !layout.image_layout_version.starts_with("1.") {
            return Err(ImportError::LayoutVersion {
                path: self.path(),
                version: layout.image_layout_version,
            });
        }
        let bytes = self.archive.read_small("index.json", MAX_JSON_BLOB)?;
        let index: ImageIndex = self.json("index.json", &bytes)?;
        let docker_tags = self.docker_tags();
        // Entries sharing a name are one image for several platforms; unnamed ones stand alone.
        let mut groups: Vec<(RefName, Vec<Descriptor>)> = Vec::new();
        for d in index.manifests() {
            let name = ref_name(d.annotations().as_ref());
            match groups.iter_mut().find(|(n, _)| *n != RefName::None && *n == name) {
                Some((_, ds)) => ds.push(d.clone()),
                None => groups.push((name, vec![d.clone()])),
            }
        }
        let mut plans = Vec::new();
        for (name, descriptors) in groups {
            let (manifest, size) = self.pick(&descriptors, 0)?;
            let mut plan = self.oci_image(&manifest, size)?;
            plan.tags = match name {
                RefName::Full(r) => vec![r],
                RefName::TagOnly(_) | RefName::None => {
                    docker_tags.get(&plan.config).cloned().unwrap_or_default()
                }
            };
            if plan.tags.is_empty() {
                warn!(archive = %self.path().display(), manifest = %manifest, "imported image has no usable name");
            }
            plans.push(plan);
        }
        Ok(plans)
    }

    /// Picks the manifest for the device among `descriptors`, descending into indexes.
    fn pick(&mut self, descriptors: &[Descriptor], depth: usize) -> Result<(Digest, u64), ImportError> {
        let platform_err = |source| ImportError::Platform { path: self.archive.path().to_path_buf(), source };
        let d = select_platform(descriptors, self.want).map_err(platform_err)?;
        let digest = self.digest("index.json", d.digest())?;
        let bytes = self.read_verified(&digest, d.size())?;
        let value: serde_json::Value = self.json(&blob_member(&digest), &bytes)?;
        if value.get("manifests").is_some() {
            if depth >= MAX_NESTING {
                return Err(ImportError::NestingTooDeep { path: self.path(), digest });
            }
            let nested: ImageIndex = self.json(&blob_member(&digest), &bytes)?;
            return self.pick(nested.manifests(), depth + 1);
        }
        if value.get("layers").is_none() || value.get("config").is_none() {
            return Err(ImportError::NotAManifest { path: self.path(), digest });
        }
        Ok((digest, d.size()))
    }

    /// Checks one OCI manifest and its config; lists its blobs (manifest, config, layers).
    fn oci_image(&mut self, manifest: &Digest, size: u64) -> Result<Plan, ImportError> {
        let member = blob_member(manifest);
        let bytes = self.read_verified(manifest, size)?;
        let m: ImageManifest = self.json(&member, &bytes)?;
        let config = self.digest(&member, m.config().digest())?;
        let config_bytes = self.read_verified(&config, m.config().size())?;
        let diff_ids = self.check_config(&config, &config_bytes)?;
        if diff_ids != m.layers().len() {
            return Err(ImportError::LayerCount {
                path: self.path(),
                config,
                layers: m.layers().len(),
                diff_ids,
            });
        }
        let mut blobs = vec![
            Wanted { member, digest: manifest.clone(), size: Some(size) },
            Wanted { member: blob_member(&config), digest: config.clone(), size: Some(m.config().size()) },
        ];
        for l in m.layers() {
            let digest = self.digest(&blob_member(manifest), l.digest())?;
            blobs.push(Wanted { member: blob_member(&digest), digest, size: Some(l.size()) });
        }
        Ok(Plan { manifest: manifest.clone(), config, synthesized: None, blobs, tags: Vec::new() })
    }

    /// Parses a config, checks its platform against the device's; returns its diff_id count.
    fn check_config(&self, config: &Digest, bytes: &[u8]) -> Result<usize, ImportError> {
        let c = parse_config(config, bytes)
            .map_err(|source| ImportError::Config { path: self.path(), source })?;
        let have = Platform::new(&c.os().to_string(), &c.architecture().to_string(), c.variant().as_deref());
        check_platform(self.want, &have)
            .map_err(|source| ImportError::Platform { path: self.path(), source })?;
        Ok(c.rootfs().diff_ids().len())
    }

    /// RepoTags of docker's manifest.json by config digest, when the archive has one.
    fn docker_tags(&mut self) -> BTreeMap<Digest, Vec<ImageRef>> {
        let Ok(bytes) = self.archive.read_small("manifest.json", MAX_JSON_BLOB) else {
            return BTreeMap::new();
        };
        let Ok(entries) = serde_json::from_slice::<Vec<DockerEntry>>(&bytes) else { return BTreeMap::new() };
        entries
            .into_iter()
            .filter_map(|e| Some((digest_in_name(&e.config)?, parse_tags(&e.repo_tags))))
            .collect()
    }

    fn docker_save(self) -> Result<Vec<Plan>, ImportError> {
        let bytes = self.archive.read_small("manifest.json", MAX_JSON_BLOB)?;
        let entries: Vec<DockerEntry> = self.json("manifest.json", &bytes)?;
        let mut plans = Vec::new();
        for e in entries {
            let config_bytes = self.archive.read_small(&e.config, MAX_JSON_BLOB)?;
            let config = Digest::of_bytes(&config_bytes);
            if let Some(named) = digest_in_name(&e.config).filter(|n| n != &config) {
                return Err(ImportError::DigestMismatch {
                    path: self.path(),
                    member: e.config,
                    expected: named,
                    actual: config,
                });
            }
            self.check_config(&config, &config_bytes)?;
            let c = parse_config(&config, &config_bytes)
                .map_err(|source| ImportError::Config { path: self.path(), source })?;
            let diff_ids = c.rootfs().diff_ids();
            if diff_ids.len() != e.layers.len() {
                return Err(ImportError::LayerCount {
                    path: self.path(),
                    config,
                    layers: e.layers.len(),
                    diff_ids: diff_ids.len(),
                });
            }
            let mut layers = Vec::new();
            for (member, diff_id) in e.layers.iter().zip(diff_ids) {
                let diff_id = Digest::parse(diff_id).map_err(|source| ImportError::Digest {
                    path: self.path(),
                    member: member.clone(),
                    source,
                })?;
                // `<id>/layer.tar` is the uncompressed layer, so its digest is the diff_id; a
                // `blobs/sha256/<hex>` member (Docker 25+) is stored under the digest it names.
                let digest = digest_in_name(member).unwrap_or(diff_id.clone());
                let (_, size) = self
                    .archive
                    .resolve(member)
                    .ok_or_else(|| ArchiveError::Missing { path: self.path(), member: member.clone() })?;
                let media_type = if digest == diff_id {
                    "application/vnd.oci.image.layer.v1.tar"
                } else {
                    "application/vnd.oci.image.layer.v1.tar+gzip"
                };
                layers.push((Wanted { member: member.clone(), digest, size: Some(size) }, media_type));
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config.to_string(),
                    "size": config_bytes.len(),
                },
                "layers": layers.iter().map(|(w, media_type)| serde_json::json!({
                    "mediaType": media_type,
                    "digest": w.digest.to_string(),
                    "size": w.size,
                })).collect::<Vec<_>>(),
            });
            let bytes = serde_json::to_vec(&manifest).map_err(|source| ImportError::Json {
                path: self.path(),
                member: "manifest.json".into(),
                source,
            })?;
            let mut blobs = vec![Wanted {
                member: e.config.clone(),
                digest: config.clone(),
                size: Some(config_bytes.len() as u64),
            }];
            blobs.extend(layers.into_iter().map(|(w, _)| w));
            plans.push(Plan {
                manifest: Digest::of_bytes(&bytes),
                config,
                synthesized: Some(bytes),
                blobs,
                tags: parse_tags(&e.repo_tags),
            });
        }
        Ok(plans)
    }
}

fn parse_tags(tags: &Option<Vec<String>>) -> Vec<ImageRef> {
    tags.iter()
        .flatten()
        .filter_map(|t| match ImageRef::parse(t) {
            Ok(r) => Some(r),
            Err(error) => {
                warn!(%error, "ignoring an invalid RepoTags entry");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_name_table() {
        let full = |s: &str| RefName::Full(ImageRef::parse(s).unwrap());
        let cases: Vec<(Vec<(&str, &str)>, RefName)> = vec![
            (vec![], RefName::None),
            (vec![(ANNOTATION_REF_NAME, "latest")], RefName::TagOnly("latest".into())),
            (vec![(ANNOTATION_REF_NAME, "busybox:1.36")], full("docker.io/library/busybox:1.36")),
            (vec![(ANNOTATION_REF_NAME, "ghcr.io/a/b:v1")], full("ghcr.io/a/b:v1")),
            (
                vec![
                    (ANNOTATION_REF_NAME, "latest"),
                    (ANNOTATION_IMAGE_NAME, "docker.io/library/busybox:latest"),
                ],
                full("busybox:latest"),
            ),
            (vec![(ANNOTATION_REF_NAME, "Bad Name:x")], RefName::None),
            (vec![(ANNOTATION_REF_NAME, "")], RefName::None),
        ];
        for (pairs, want) in cases {
            let map: HashMap<String, String> =
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(ref_name(Some(&map)), want, "{pairs:?}");
        }
        assert_eq!(ref_name(None), RefName::None);
    }

    #[test]
    fn digest_in_name_table() {
        let hex = "ab".repeat(32);
        let d = Digest::from_hex(&hex).unwrap();
        let cases = [
            (format!("blobs/sha256/{hex}"), Some(d.clone())),
            (format!("{hex}.json"), Some(d.clone())),
            ("abc/layer.tar".to_string(), None),
            ("blobs/sha256/xyz".to_string(), None),
            (format!("blobs/sha512/{hex}"), None),
        ];
        for (name, want) in cases {
            assert_eq!(digest_in_name(&name), want, "{name}");
        }
    }
}
