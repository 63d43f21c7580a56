//! `ImageStore`: the blob store, the image index and the unpacked layers under one root, and
//! the operations the agent calls (add, resolve, remove, garbage-collect, unpack, import).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use flotilla_shared::image::ImageRef;
use libcontainer::oci_spec::image::{ImageConfiguration, ImageManifest};
use nix::fcntl::{Flock, FlockArg};

use super::blobs::{BlobError, BlobStore};
use super::config::{parse_config, ConfigError, RuntimeConfig};
use super::digest::{Digest, DigestError};
use super::index::{
    self, gc_plan, parse_lookup, unreferenced_after, ImageRecord, Index, IndexError, LayerRecord,
};
use super::layers::{LayerDir, LayerError, LayerStore};
use super::platform::Platform;
use super::unpack::UnpackOptions;
use crate::fsutil;

/// Manifests and configs larger than this are refused (real ones are a few KiB).
pub const MAX_JSON_BLOB: u64 = 4 << 20;

/// The image store rooted at one directory (see the module docs for the layout). Several
/// processes may use one root at once (the running agent, `image import`, `image ls`): changes
/// to the index are serialized by an `flock` on `<root>/lock` and always start from the index
/// on disk; each process works in its own temp directory.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    tmp: PathBuf,
    blobs: BlobStore,
    layers: LayerStore,
    /// The index as last read from or written to disk, with the identity of the file it came
    /// from. Changes are made on a copy, written, then swapped in, so a failed write leaves
    /// memory and disk agreeing.
    index: Mutex<(Index, Option<FileId>)>,
    /// An exclusive `flock` on `tmp/<id>.lock` while this store is open: it tells other
    /// processes that `tmp/<id>/` is in use (a lock they can take belongs to a dead process).
    _tmp_lock: Flock<fs::File>,
}

/// What identifies one version of the index file (every write is a rename: a new inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileId {
    fn of(path: &Path) -> io::Result<Option<FileId>> {
        use std::os::unix::fs::MetadataExt;
        match fs::metadata(path) {
            Ok(m) => Ok(Some(FileId {
                dev: m.dev(),
                ino: m.ino(),
                len: m.len(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The index, locked in this process and, for changes, across processes.
pub(crate) struct IndexGuard<'a> {
    ix: MutexGuard<'a, (Index, Option<FileId>)>,
    _flock: Option<Flock<fs::File>>,
}

impl std::ops::Deref for IndexGuard<'_> {
    type Target = Index;
    fn deref(&self) -> &Index {
        &self.ix.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: {source}")]
    IndexFile { path: PathBuf, source: serde_json::Error },
    #[error("manifest {digest} is not a valid OCI image manifest: {source}")]
    Manifest { digest: Digest, source: serde_json::Error },
    #[error("manifest {manifest}: {reason}")]
    BadManifest { manifest: Digest, reason: String },
    #[error("manifest {manifest}: {source}")]
    ManifestDigest { manifest: Digest, source: DigestError },
    #[error("no image {reference:?} in the store")]
    NotFound { reference: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

impl Drop for ImageStore {
    /// Removes this process's temp directory while its lock is still held.
    fn drop(&mut self) {
        let _ = fsutil::remove_tree(&self.tmp);
        let _ = fs::remove_file(self.tmp.with_extension("lock"));
    }
}

/// An image with the tags that point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    pub tags: Vec<String>,
    pub record: ImageRecord,
}

/// What `remove` or `gc` deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    pub tags: Vec<String>,
    pub images: Vec<Digest>,
    pub blobs: Vec<Digest>,
    pub layers: Vec<Digest>,
}

/// Bytes the store uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub blobs: u64,
    pub layers: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.blobs + self.layers
    }
}

const INDEX_FILE: &str = "index.json";

fn read_index(path: &Path) -> Result<(Index, Option<FileId>), StoreError> {
    // The identity first: a write racing with the read makes the next refresh read again.
    let id = FileId::of(path).map_err(io_err(path))?;
    match fs::read(path) {
        Ok(bytes) => {
            let ix: Index = serde_json::from_slice(&bytes)
                .map_err(|source| StoreError::IndexFile { path: path.to_path_buf(), source })?;
            ix.check_version()?;
            Ok((ix, id))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((Index::new(), None)),
        Err(e) => Err(StoreError::Io { path: path.to_path_buf(), source: e }),
    }
}

/// Re-reads the index if the file is not the one `cached` came from.
fn refresh(path: &Path, cached: &mut (Index, Option<FileId>)) -> Result<(), StoreError> {
    if FileId::of(path).map_err(io_err(path))? != cached.1 {
        *cached = read_index(path)?;
    }
    Ok(())
}

/// Creates this process's temp directory `tmp/<id>/`, first locking `tmp/<id>.lock` (in that
/// order, so a directory whose lock file is missing or unlocked has no live owner).
fn claim_tmp_dir(tmp_root: &Path) -> Result<(PathBuf, Flock<fs::File>), StoreError> {
    loop {
        let lock_path = fsutil::temp_path(tmp_root, "proc").with_extension("lock");
        let file = match fs::OpenOptions::new().write(true).create_new(true).open(&lock_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(StoreError::Io { path: lock_path, source: e }),
        };
        let flock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| StoreError::Io { path: lock_path.clone(), source: e.into() })?;
        let dir = lock_path.with_extension("d");
        match fs::create_dir(&dir) {
            Ok(()) => return Ok((dir, flock)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A dead process's leftover with the same name: try another.
                let _ = fs::remove_file(&lock_path);
            }
            Err(e) => return Err(StoreError::Io { path: dir, source: e }),
        }
    }
}

/// Removes temp directories (and stray files) of processes that are gone.
fn clean_tmp(tmp_root: &Path, own: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(tmp_root).map_err(io_err(tmp_root))? {
        let path = entry.map_err(io_err(tmp_root))?.path();
        if path == own || path.extension().is_some_and(|e| e == "lock") {
            continue;
        }
        let lock_path = path.with_extension("lock");
        let owner_alive = path.extension().is_some_and(|e| e == "d")
            && match fs::OpenOptions::new().write(true).open(&lock_path) {
                Ok(f) => Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err(),
                Err(_) => false,
            };
        if !owner_alive {
            fsutil::remove_tree(&path).map_err(io_err(&path))?;
            let _ = fs::remove_file(&lock_path);
        }
    }
    // Lock files whose directory is gone and that no one holds. Only old ones: a fresh one may
    // be about to be locked by a process starting up.
    let old = |p: &Path| {
        fs::metadata(p).and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|e| e.as_secs() > 60))
    };
    for entry in fs::read_dir(tmp_root).map_err(io_err(tmp_root))? {
        let path = entry.map_err(io_err(tmp_root))?.path();
        if path.extension().is_some_and(|e| e == "lock") && !path.with_extension("d").exists() && old(&path) {
            if let Ok(f) = fs::OpenOptions::new().write(true).open(&path) {
                if let Ok(held) = Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                    let _ = fs::remove_file(&path);
                    drop(held);
                }
            }
        }
    }
    Ok(())
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`, removing what dead processes left in
    /// `tmp/`. Unpacks with `UnpackOptions::for_current_user()`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        Self::open_with(root, UnpackOptions::for_current_user())
    }

    pub fn open_with(root: &Path, opts: UnpackOptions) -> Result<Self, StoreError> {
        let tmp_root = root.join("tmp");
        fs::create_dir_all(root).map_err(io_err(root))?;
        // Unpacked layers keep their owners, set-id bits and device nodes: only root may look
        // inside the store, or any local user could run an image's setuid binaries.
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(io_err(root))?;
        }
        fs::create_dir_all(&tmp_root).map_err(io_err(&tmp_root))?;
        let (tmp, tmp_lock) = claim_tmp_dir(&tmp_root)?;
        clean_tmp(&tmp_root, &tmp)?;
        let blobs = BlobStore::open(&root.join("blobs"), &tmp)?;
        let layers = LayerStore::open(&root.join("layers"), &tmp, opts)?;
        let index_path = root.join(INDEX_FILE);
        let loaded = read_index(&index_path)?;
        Ok(ImageStore {
            root: root.to_path_buf(),
            tmp,
            blobs,
            layers,
            index: Mutex::new(loaded),
            _tmp_lock: tmp_lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    pub fn layers(&self) -> &LayerStore {
        &self.layers
    }

    /// The current index: re-read when another process has changed it since.
    fn lock(&self) -> IndexGuard<'_> {
        // A panic while holding the lock cannot leave a half-changed index behind (changes are
        // swapped in whole after the write), so a poisoned lock is safe to take over.
        let mut ix = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(error) = refresh(&self.root.join(INDEX_FILE), &mut ix) {
            tracing::warn!(%error, "re-reading the image index; using the last good copy");
        }
        IndexGuard { ix, _flock: None }
    }

    /// Applies `change` to a copy of the index, writes it atomically, then swaps it in.
    fn update<T>(&self, change: impl FnOnce(&mut Index) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.update_locked(change).map(|(out, _)| out)
    }

    /// `update`, returning the lock still held so the caller can finish (delete the blobs
    /// the change left unreferenced) before anyone else reads or changes the index. The change
    /// starts from the index on disk, under the cross-process lock.
    fn update_locked<T>(
        &self,
        change: impl FnOnce(&mut Index) -> Result<T, StoreError>,
    ) -> Result<(T, IndexGuard<'_>), StoreError> {
        let mut ix = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let lock_path = self.root.join("lock");
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        let flock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, e)| StoreError::Io { path: lock_path.clone(), source: e.into() })?;
        let path = self.root.join(INDEX_FILE);
        refresh(&path, &mut ix)?;
        let mut next = ix.0.clone();
        let out = change(&mut next)?;
        if next != ix.0 {
            let bytes = serde_json::to_vec_pretty(&next)
                .map_err(|source| StoreError::IndexFile { path: path.clone(), source })?;
            fsutil::write_atomic_in(&self.tmp, &path, &bytes).map_err(io_err(&path))?;
            let id = FileId::of(&path).map_err(io_err(&path))?;
            *ix = (next, id);
        }
        Ok((out, IndexGuard { ix, _flock: Some(flock) }))
    }

    /// A copy of the whole index.
    pub fn index(&self) -> Index {
        self.lock().clone()
    }

    /// This process's temp directory (removed when the store is dropped or, after a crash, by
    /// the next `open`).
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Registers the image whose manifest is the stored blob `manifest`, whose config and layer
    /// blobs must be stored too, and points `tags` at it (moving them from other images). Sets
    /// `created` for a new image and `last_used` to `now`.
    pub fn add_image(
        &self,
        manifest: &Digest,
        tags: &[ImageRef],
        now: u64,
    ) -> Result<ImageRecord, StoreError> {
        let record = self.build_record(manifest, now)?;
        // A tag names `registry/repo:tag`; a digest in the reference is the manifest's own.
        let tags: Vec<String> = tags
            .iter()
            .filter(|t| t.tag.is_some())
            .map(|t| ImageRef { digest: None, ..t.clone() }.to_string())
            .collect();
        self.update(|ix| {
            // Checked again under the lock: a concurrent `remove` may have deleted a shared
            // blob since `build_record` looked.
            if let Some(digest) = index::record_blobs(&record).into_iter().find(|d| !self.blobs.has_blob(d)) {
                return Err(BlobError::NotFound { digest }.into());
            }
            let record = match ix.images.get(manifest) {
                Some(old) => ImageRecord { created: old.created, ..record },
                None => record,
            };
            ix.images.insert(manifest.clone(), record.clone());
            for t in tags {
                ix.tags.insert(t, manifest.clone());
            }
            Ok(record)
        })
    }

    /// Reads and checks a stored manifest and its config into a record.
    fn build_record(&self, manifest: &Digest, now: u64) -> Result<ImageRecord, StoreError> {
        let manifest_size = self.blobs.blob_size(manifest)?;
        let parsed: ImageManifest =
            serde_json::from_slice(&self.blobs.read_blob(manifest, MAX_JSON_BLOB)?)
                .map_err(|source| StoreError::Manifest { digest: manifest.clone(), source })?;
        let bad = |reason: String| StoreError::BadManifest { manifest: manifest.clone(), reason };
        let to_digest = |d: &libcontainer::oci_spec::image::Digest| {
            Digest::try_from(d)
                .map_err(|source| StoreError::ManifestDigest { manifest: manifest.clone(), source })
        };
        let config = to_digest(parsed.config().digest())?;
        let config_size = self.blobs.blob_size(&config)?;
        if config_size != parsed.config().size() {
            return Err(bad(format!(
                "config {config} is {config_size} bytes, the manifest says {}",
                parsed.config().size()
            )));
        }
        let image_config = self.read_config(&config)?;
        let diff_ids = image_config.rootfs().diff_ids();
        if diff_ids.len() != parsed.layers().len() {
            return Err(bad(format!(
                "{} layers but the config lists {} diff_ids",
                parsed.layers().len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (l, diff_id) in parsed.layers().iter().zip(diff_ids) {
            let digest = to_digest(l.digest())?;
            let diff_id = Digest::parse(diff_id)
                .map_err(|source| StoreError::ManifestDigest { manifest: manifest.clone(), source })?;
            let size = self.blobs.blob_size(&digest)?;
            if size != l.size() {
                return Err(bad(format!("layer {digest} is {size} bytes, the manifest says {}", l.size())));
            }
            layers.push(LayerRecord { digest, diff_id, size, media_type: l.media_type().to_string() });
        }
        let platform = Platform::new(
            &image_config.os().to_string(),
            &image_config.architecture().to_string(),
            image_config.variant().as_deref(),
        );
        let size = manifest_size + config_size + layers.iter().map(|l| l.size).sum::<u64>();
        Ok(ImageRecord {
            manifest: manifest.clone(),
            manifest_size,
            config,
            config_size,
            layers,
            size,
            platform,
            created: now,
            last_used: now,
        })
    }

    fn read_config(&self, config: &Digest) -> Result<ImageConfiguration, StoreError> {
        Ok(parse_config(config, &self.blobs.read_blob(config, MAX_JSON_BLOB)?)?)
    }

    /// Every image with its tags, by manifest digest.
    pub fn list(&self) -> Vec<ImageSummary> {
        let ix = self.lock();
        ix.images
            .values()
            .map(|r| ImageSummary { tags: ix.tags_of(&r.manifest), record: r.clone() })
            .collect()
    }

    /// The image a reference names (`busybox`, `busybox:1.36`, `…@sha256:…`, `sha256:…`).
    pub fn resolve(&self, reference: &str) -> Result<Option<ImageRecord>, StoreError> {
        let lookup = parse_lookup(reference)?;
        Ok(self.lock().lookup(&lookup).cloned())
    }

    /// Records that an image was used at `now` (for least-recently-used GC).
    pub fn touch(&self, manifest: &Digest, now: u64) -> Result<(), StoreError> {
        self.update(|ix| {
            if let Some(r) = ix.images.get_mut(manifest) {
                r.last_used = r.last_used.max(now);
            }
            Ok(())
        })
    }

    /// Removes a tag (or, given a digest, the image and all its tags). An image left without
    /// tags is removed, then every blob and unpacked layer no remaining image uses. The caller
    /// makes sure no container still runs from the image.
    pub fn remove(&self, reference: &str) -> Result<Removed, StoreError> {
        let lookup = parse_lookup(reference)?;
        let (removed, guard) = self.update_locked(|ix| {
            let mut removed = Removed::default();
            let manifest = match &lookup {
                index::Lookup::Tag(t) => {
                    let d = ix
                        .tags
                        .remove(t)
                        .ok_or_else(|| StoreError::NotFound { reference: reference.into() })?;
                    removed.tags.push(t.clone());
                    if !ix.tags_of(&d).is_empty() {
                        return Ok((removed, Vec::new()));
                    }
                    d
                }
                index::Lookup::Digest(d) if ix.images.contains_key(d) => d.clone(),
                index::Lookup::Digest(_) => return Err(StoreError::NotFound { reference: reference.into() }),
            };
            removed.tags.extend(ix.tags_of(&manifest));
            let records: Vec<ImageRecord> = ix.remove_image(&manifest).into_iter().collect();
            removed.images = records.iter().map(|r| r.manifest.clone()).collect();
            Ok((removed, records))
        })?;
        let (mut removed, records) = removed;
        self.sweep(&guard, &records, &mut removed)?;
        Ok(removed)
    }

    /// Deletes the blobs and layers of `records` (already out of the index `ix`, whose lock the
    /// caller holds, so no `add_image` can start using them meanwhile) that no remaining image
    /// uses.
    fn sweep(
        &self,
        ix: &IndexGuard<'_>,
        records: &[ImageRecord],
        removed: &mut Removed,
    ) -> Result<(), StoreError> {
        let (blobs, layers) = unreferenced_after(ix, records);
        for b in &blobs {
            self.blobs.delete(b)?;
        }
        for l in &layers {
            self.layers.delete(l)?;
        }
        removed.blobs.extend(blobs);
        removed.layers.extend(layers);
        Ok(())
    }

    /// Deletes every blob and unpacked layer that no image in the index uses: leftovers of
    /// interrupted pulls or imports. Only while no pull or import runs, in any process (their
    /// blobs are not in the index yet).
    pub fn sweep_orphans(&self) -> Result<Removed, StoreError> {
        let (_, ix) = self.update_locked(|_| Ok(()))?;
        let (blobs_kept, layers_kept) = (ix.referenced_blobs(), ix.referenced_layers());
        let mut removed = Removed::default();
        for (d, _) in self.blobs.list()? {
            if !blobs_kept.contains(&d) {
                self.blobs.delete(&d)?;
                removed.blobs.push(d);
            }
        }
        for meta in self.layers.list()? {
            if !layers_kept.contains(&meta.diff_id) {
                self.layers.delete(&meta.diff_id)?;
                removed.layers.push(meta.diff_id);
            }
        }
        Ok(removed)
    }

    /// Bytes used by blobs and unpacked layers.
    pub fn usage(&self) -> Result<Usage, StoreError> {
        Ok(Usage {
            blobs: self.blobs.total_size()?,
            layers: self.layers.list()?.iter().map(|m| m.size).sum(),
        })
    }

    /// Garbage collection: when the store uses more than `threshold_bytes`, deletes least
    /// recently used images not in `in_use` (manifest digests) until it is under
    /// `target_bytes` (see `index::gc_plan`).
    pub fn gc(
        &self,
        in_use: &[Digest],
        threshold_bytes: u64,
        target_bytes: u64,
    ) -> Result<Removed, StoreError> {
        let usage = self.usage()?;
        let layer_sizes: BTreeMap<Digest, u64> =
            self.layers.list()?.into_iter().map(|m| (m.diff_id, m.size)).collect();
        let plan = gc_plan(&self.index(), &layer_sizes, in_use, usage.total(), threshold_bytes, target_bytes);
        if plan.is_empty() {
            return Ok(Removed::default());
        }
        let ((mut removed, records), guard) = self.update_locked(|ix| {
            let mut removed = Removed::default();
            let mut records = Vec::new();
            for d in &plan {
                removed.tags.extend(ix.tags_of(d));
                records.extend(ix.remove_image(d));
            }
            removed.images = records.iter().map(|r| r.manifest.clone()).collect();
            Ok((removed, records))
        })?;
        self.sweep(&guard, &records, &mut removed)?;
        Ok(removed)
    }

    /// Unpacks (once) every layer of `image`; returns them bottom to top.
    pub fn unpack(&self, image: &ImageRecord) -> Result<Vec<LayerDir>, StoreError> {
        let mut out = Vec::with_capacity(image.layers.len());
        for l in &image.layers {
            let layer = match self.layers.get(&l.diff_id)? {
                Some(layer) => layer,
                None => {
                    self.layers.unpack(io::BufReader::new(self.blobs.open_blob(&l.digest)?), &l.diff_id)?
                }
            };
            out.push(layer);
        }
        Ok(out)
    }

    /// The runtime defaults of an image (entrypoint, cmd, env, …).
    pub fn runtime_config(&self, image: &ImageRecord) -> Result<RuntimeConfig, StoreError> {
        Ok(RuntimeConfig::from_config(&image.config, &self.read_config(&image.config)?)?)
    }
}
