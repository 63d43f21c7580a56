//! The image index (`index.json`): tags → manifest digest, and per image its config, layers,
//! size, platform and times. The data and its pure decisions (what is referenced, what to
//! garbage-collect) live here; `store` does the I/O.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_shared::image::ImageRef;
use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::platform::Platform;

pub const INDEX_VERSION: u32 = 1;

/// Everything the store knows about its images. Serialized as `index.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub version: u32,
    /// Normalized reference (`docker.io/library/busybox:latest`) → manifest digest.
    pub tags: BTreeMap<String, Digest>,
    /// Manifest digest → image.
    pub images: BTreeMap<Digest, ImageRecord>,
}

/// One image, by its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub manifest: Digest,
    pub manifest_size: u64,
    pub config: Digest,
    pub config_size: u64,
    /// Bottom to top.
    pub layers: Vec<LayerRecord>,
    /// Bytes of all blobs (manifest, config, compressed layers).
    pub size: u64,
    pub platform: Platform,
    /// Seconds since the Unix epoch, as passed in by the caller.
    pub created: u64,
    pub last_used: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The blob as stored (usually gzip-compressed).
    pub digest: Digest,
    /// The digest of the uncompressed tar, from the config's `rootfs.diff_ids`; names the
    /// unpacked directory.
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("image index version {found} is not supported (this agent reads version {INDEX_VERSION})")]
    Version { found: u32 },
    #[error(transparent)]
    Reference(#[from] flotilla_shared::image::ImageRefError),
}

/// How a caller names an image: a tag (`busybox`, normalized) or a digest
/// (`busybox@sha256:…`, or a bare `sha256:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Tag(String),
    Digest(Digest),
}

/// Parses a user-supplied reference. A reference with a digest is looked up by the digest.
pub fn parse_lookup(reference: &str) -> Result<Lookup, IndexError> {
    if let Ok(d) = Digest::parse(reference) {
        return Ok(Lookup::Digest(d));
    }
    let r = ImageRef::parse(reference)?;
    match r.digest.as_deref().map(Digest::parse) {
        Some(Ok(d)) => Ok(Lookup::Digest(d)),
        // `ImageRef` accepts sha512 digests, which this store never holds.
        Some(Err(_)) => Err(IndexError::Reference(flotilla_shared::image::ImageRefError {
            input: reference.to_string(),
            reason: "only sha256 digests are supported",
        })),
        None => Ok(Lookup::Tag(r.to_string())),
    }
}

impl Index {
    pub fn new() -> Self {
        Index { version: INDEX_VERSION, ..Index::default() }
    }

    pub fn check_version(&self) -> Result<(), IndexError> {
        if self.version == INDEX_VERSION {
            Ok(())
        } else {
            Err(IndexError::Version { found: self.version })
        }
    }

    pub fn lookup(&self, lookup: &Lookup) -> Option<&ImageRecord> {
        match lookup {
            Lookup::Tag(t) => self.tags.get(t).and_then(|d| self.images.get(d)),
            Lookup::Digest(d) => self.images.get(d),
        }
    }

    /// The tags pointing at an image.
    pub fn tags_of(&self, manifest: &Digest) -> Vec<String> {
        self.tags.iter().filter(|(_, d)| *d == manifest).map(|(t, _)| t.clone()).collect()
    }

    /// Removes an image and every tag pointing at it.
    pub fn remove_image(&mut self, manifest: &Digest) -> Option<ImageRecord> {
        self.tags.retain(|_, d| d != manifest);
        self.images.remove(manifest)
    }

    /// Every blob some image needs (manifest, config, layers).
    pub fn referenced_blobs(&self) -> BTreeSet<Digest> {
        self.images.values().flat_map(record_blobs).collect()
    }

    /// Every unpacked layer (by diff_id) some image needs.
    pub fn referenced_layers(&self) -> BTreeSet<Digest> {
        self.images.values().flat_map(|r| r.layers.iter().map(|l| l.diff_id.clone())).collect()
    }
}

/// The blobs one image needs.
pub fn record_blobs(r: &ImageRecord) -> Vec<Digest> {
    let mut v = vec![r.manifest.clone(), r.config.clone()];
    v.extend(r.layers.iter().map(|l| l.digest.clone()));
    v
}

/// What is left over once `removed` images are gone: blobs and layers they used that no
/// remaining image in `index` uses.
pub fn unreferenced_after(index: &Index, removed: &[ImageRecord]) -> (Vec<Digest>, Vec<Digest>) {
    let blobs_kept = index.referenced_blobs();
    let layers_kept = index.referenced_layers();
    let blobs: BTreeSet<Digest> =
        removed.iter().flat_map(record_blobs).filter(|d| !blobs_kept.contains(d)).collect();
    let layers: BTreeSet<Digest> = removed
        .iter()
        .flat_map(|r| r.layers.iter().map(|l| l.diff_id.clone()))
        .filter(|d| !layers_kept.contains(d))
        .collect();
    (blobs.into_iter().collect(), layers.into_iter().collect())
}

/// Chooses images to delete when `disk_used` is above `threshold_bytes`: least recently used
/// first (ties by digest, for determinism), skipping images in `in_use` (manifest digests),
/// until the estimate falls to `target_bytes` or nothing more can go. The estimate counts only
/// what deleting an image really frees: blobs (by the sizes in the index) and unpacked layers
/// (by `layer_sizes`, keyed by diff_id) that no image still kept needs. Pure.
pub fn gc_plan(
    index: &Index,
    layer_sizes: &BTreeMap<Digest, u64>,
    in_use: &[Digest],
    disk_used: u64,
    threshold_bytes: u64,
    target_bytes: u64,
) -> Vec<Digest> {
    if disk_used <= threshold_bytes {
        return Vec::new();
    }
    let mut candidates: Vec<&ImageRecord> =
        index.images.values().filter(|r| !in_use.contains(&r.manifest)).collect();
    candidates.sort_by(|a, b| (a.last_used, &a.manifest).cmp(&(b.last_used, &b.manifest)));
    let mut kept: BTreeSet<&Digest> = index.images.keys().collect();
    let mut used = disk_used;
    let mut plan = Vec::new();
    for image in candidates {
        if used <= target_bytes {
            break;
        }
        kept.remove(&image.manifest);
        used = used.saturating_sub(freed_by(index, &kept, image, layer_sizes));
        plan.push(image.manifest.clone());
    }
    plan
}

/// Bytes freed by deleting `image` while the images in `kept` stay.
fn freed_by(
    index: &Index,
    kept: &BTreeSet<&Digest>,
    image: &ImageRecord,
    layer_sizes: &BTreeMap<Digest, u64>,
) -> u64 {
    let others: Vec<&ImageRecord> = kept.iter().filter_map(|d| index.images.get(*d)).collect();
    let blob_shared = |d: &Digest| others.iter().any(|o| record_blobs(o).contains(d));
    let layer_shared = |d: &Digest| others.iter().any(|o| o.layers.iter().any(|l| &l.diff_id == d));
    let mut sizes: BTreeMap<&Digest, u64> = BTreeMap::new();
    sizes.insert(&image.manifest, image.manifest_size);
    sizes.insert(&image.config, image.config_size);
    for l in &image.layers {
        sizes.insert(&l.digest, l.size);
    }
    let blobs: u64 = sizes.iter().filter(|(d, _)| !blob_shared(d)).map(|(_, s)| s).sum();
    let diff_ids: BTreeSet<&Digest> = image.layers.iter().map(|l| &l.diff_id).collect();
    let layers: u64 = diff_ids
        .into_iter()
        .filter(|d| !layer_shared(d))
        .map(|d| layer_sizes.get(d).copied().unwrap_or(0))
        .sum();
    blobs + layers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::from_hex(&format!("{n:02x}").repeat(32)).unwrap()
    }

    /// An image `m` with manifest and config of 1 byte each and the given (layer id, size) list;
    /// a layer's blob digest is `id`, its diff_id `id + 100`.
    fn image(m: u8, last_used: u64, layers: &[(u8, u64)]) -> ImageRecord {
        let layers: Vec<LayerRecord> = layers
            .iter()
            .map(|&(id, size)| LayerRecord {
                digest: d(id),
                diff_id: d(id + 100),
                size,
                media_type: String::new(),
            })
            .collect();
        ImageRecord {
            manifest: d(m),
            manifest_size: 1,
            config: d(m + 50),
            config_size: 1,
            size: 2 + layers.iter().map(|l| l.size).sum::<u64>(),
            layers,
            platform: Platform::new("linux", "amd64", None),
            created: 0,
            last_used,
        }
    }

    fn index(images: Vec<ImageRecord>) -> Index {
        let mut ix = Index::new();
        for r in images {
            ix.tags.insert(format!("docker.io/library/i{}:latest", r.manifest.hex()), r.manifest.clone());
            ix.images.insert(r.manifest.clone(), r);
        }
        ix
    }

    #[test]
    fn gc_plan_table() {
        // Images 1..4, used at times 10, 20, 30, 40. Image 1 and 2 share layer 10 (100 bytes).
        let ix = index(vec![
            image(1, 10, &[(10, 100), (11, 50)]),
            image(2, 20, &[(10, 100), (12, 30)]),
            image(3, 30, &[(13, 200)]),
            image(4, 40, &[(14, 400)]),
        ]);
        let unpacked: BTreeMap<Digest, u64> = [(d(110), 1000), (d(113), 0)].into_iter().collect();
        // Blob bytes: image1 152, image2 132 (100 shared), image3 202, image4 402.
        struct Case {
            name: &'static str,
            in_use: Vec<Digest>,
            used: u64,
            threshold: u64,
            target: u64,
            want: Vec<Digest>,
        }
        let cases = [
            Case {
                name: "below threshold",
                in_use: vec![],
                used: 900,
                threshold: 900,
                target: 0,
                want: vec![],
            },
            Case {
                name: "oldest first; shared layer not counted for image 1",
                in_use: vec![],
                used: 2000,
                threshold: 1000,
                target: 1950,
                want: vec![d(1)],
            },
            Case {
                name: "second image frees the shared blob and unpacked layer",
                in_use: vec![],
                used: 2000,
                threshold: 1000,
                target: 820,
                want: vec![d(1), d(2)],
            },
            Case {
                name: "in-use images are skipped",
                in_use: vec![d(1), d(3)],
                used: 2000,
                threshold: 1000,
                target: 1970,
                want: vec![d(2)],
            },
            Case {
                name: "stops when nothing is left to delete",
                in_use: vec![d(4)],
                used: 10_000,
                threshold: 1000,
                target: 0,
                want: vec![d(1), d(2), d(3)],
            },
            Case {
                name: "all in use",
                in_use: vec![d(1), d(2), d(3), d(4)],
                used: 10_000,
                threshold: 0,
                target: 0,
                want: vec![],
            },
        ];
        for c in cases {
            let got = gc_plan(&ix, &unpacked, &c.in_use, c.used, c.threshold, c.target);
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn gc_plan_ties_break_by_digest() {
        let ix = index(vec![image(3, 5, &[]), image(2, 5, &[]), image(1, 9, &[])]);
        assert_eq!(gc_plan(&ix, &BTreeMap::new(), &[], 100, 0, 97), vec![d(2), d(3)]);
    }

    #[test]
    fn unreferenced_after_removal() {
        let mut ix = index(vec![image(1, 0, &[(10, 1), (11, 1)]), image(2, 0, &[(10, 1)])]);
        let removed = ix.remove_image(&d(1)).unwrap();
        let (blobs, layers) = unreferenced_after(&ix, &[removed]);
        assert_eq!(blobs, vec![d(1), d(11), d(51)]);
        assert_eq!(layers, vec![d(111)]);
        assert!(ix.tags_of(&d(1)).is_empty());
    }

    #[test]
    fn lookup_table() {
        let hex = "ab".repeat(32);
        let cases = [
            ("busybox", Ok(Lookup::Tag("docker.io/library/busybox:latest".into()))),
            ("ghcr.io/x/y:1", Ok(Lookup::Tag("ghcr.io/x/y:1".into()))),
            (&*format!("busybox@sha256:{hex}"), Ok(Lookup::Digest(Digest::from_hex(&hex).unwrap()))),
            (&*format!("sha256:{hex}"), Ok(Lookup::Digest(Digest::from_hex(&hex).unwrap()))),
            (&*format!("busybox@sha512:{}", "ab".repeat(64)), Err(())),
            ("Not A Ref", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_lookup(input).map_err(|_| ()), want, "{input}");
        }
    }
}
