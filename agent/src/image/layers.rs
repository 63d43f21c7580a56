//! Unpacked layers: `layers/sha256/<diff_id hex>/{fs/,layer.json}`, each unpacked once into a
//! temp directory and renamed into place, shared by every image that uses it.

use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::digest::Digest;
use super::layer_meta::LayerMeta;
use super::unpack::{unpack_layer, UnpackError, UnpackOptions};
use crate::fsutil;

/// An unpacked layer on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDir {
    /// `layers/sha256/<hex>`.
    pub dir: PathBuf,
    /// `layers/sha256/<hex>/fs`: the layer's files.
    pub fs: PathBuf,
    pub meta: LayerMeta,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("{path}: unreadable layer metadata: {source}")]
    Meta { path: PathBuf, source: serde_json::Error },
    #[error("{path}: layer metadata is for {found}, not {expected}")]
    WrongMeta { path: PathBuf, expected: Digest, found: Digest },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Io { path: path.to_path_buf(), source }
}

/// The directory of unpacked layers.
#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
    tmp: PathBuf,
    opts: UnpackOptions,
}

const META_FILE: &str = "layer.json";

impl LayerStore {
    /// `dir` holds `sha256/`; `tmp` must be on the same filesystem.
    pub fn open(dir: &Path, tmp: &Path, opts: UnpackOptions) -> Result<Self, LayerError> {
        let sha = dir.join("sha256");
        fs::create_dir_all(&sha).map_err(io_err(&sha))?;
        fs::create_dir_all(tmp).map_err(io_err(tmp))?;
        Ok(LayerStore { dir: dir.to_path_buf(), tmp: tmp.to_path_buf(), opts })
    }

    pub fn options(&self) -> UnpackOptions {
        self.opts
    }

    pub fn path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join("sha256").join(diff_id.hex())
    }

    /// The layer, if it was unpacked.
    pub fn get(&self, diff_id: &Digest) -> Result<Option<LayerDir>, LayerError> {
        let dir = self.path(diff_id);
        let meta_path = dir.join(META_FILE);
        let bytes = match fs::read(&meta_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LayerError::Io { path: meta_path, source: e }),
        };
        let meta: LayerMeta = serde_json::from_slice(&bytes)
            .map_err(|source| LayerError::Meta { path: meta_path.clone(), source })?;
        if &meta.diff_id != diff_id {
            return Err(LayerError::WrongMeta {
                path: meta_path,
                expected: diff_id.clone(),
                found: meta.diff_id,
            });
        }
        Ok(Some(LayerDir { fs: dir.join("fs"), dir, meta }))
    }

    /// Unpacks the layer tarball `reader` unless the layer is already there. The work happens in
    /// a temp directory that is renamed into place when complete and removed on any error.
    pub fn unpack(&self, reader: impl Read, diff_id: &Digest) -> Result<LayerDir, LayerError> {
        if let Some(layer) = self.get(diff_id)? {
            return Ok(layer);
        }
        let tmp = fsutil::create_temp_dir(&self.tmp, "layer").map_err(io_err(&self.tmp))?;
        match self.unpack_in(reader, diff_id, &tmp) {
            Ok(()) => {}
            Err(e) => {
                if let Err(error) = fsutil::remove_tree(&tmp) {
                    tracing::warn!(path = %tmp.display(), %error, "could not remove a failed layer's temp dir");
                }
                return Err(e);
            }
        }
        let dest = self.path(diff_id);
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fsutil::remove_tree(&tmp);
            // Someone else finished the same layer first: theirs is as good as ours.
            if let Some(layer) = self.get(diff_id)? {
                return Ok(layer);
            }
            return Err(LayerError::Io { path: dest, source: e });
        }
        let sha = self.dir.join("sha256");
        fsutil::sync_dir(&sha).map_err(io_err(&sha))?;
        self.get(diff_id)?.ok_or_else(|| LayerError::Io {
            path: dest.join(META_FILE),
            source: io::Error::new(io::ErrorKind::NotFound, "layer vanished right after unpacking"),
        })
    }

    fn unpack_in(&self, reader: impl Read, diff_id: &Digest, tmp: &Path) -> Result<(), LayerError> {
        let fs_dir = tmp.join("fs");
        fs::create_dir(&fs_dir).map_err(io_err(&fs_dir))?;
        let meta = unpack_layer(reader, diff_id, &fs_dir, &self.opts)?;
        let json = serde_json::to_vec_pretty(&meta)
            .map_err(|source| LayerError::Meta { path: tmp.into(), source })?;
        let meta_path = tmp.join(META_FILE);
        fs::write(&meta_path, json).map_err(io_err(&meta_path))?;
        // One syncfs for the whole tree instead of an fsync per file: the layer must be complete
        // on disk before it appears under its final name.
        let dir = fs::File::open(tmp).map_err(io_err(tmp))?;
        nix::unistd::syncfs(dir.as_raw_fd())
            .map_err(|e| LayerError::Io { path: tmp.into(), source: e.into() })
    }

    /// Deletes an unpacked layer: renamed away first so it vanishes at once, then removed.
    pub fn delete(&self, diff_id: &Digest) -> Result<(), LayerError> {
        let dir = self.path(diff_id);
        let doomed = fsutil::temp_path(&self.tmp, "deleted");
        match fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(LayerError::Io { path: dir, source: e }),
        }
        fsutil::remove_tree(&doomed).map_err(io_err(&doomed))
    }

    /// Every unpacked layer's metadata (directories without readable metadata are skipped).
    pub fn list(&self) -> Result<Vec<LayerMeta>, LayerError> {
        let sha = self.dir.join("sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&sha).map_err(io_err(&sha))? {
            let entry = entry.map_err(io_err(&sha))?;
            let Some(d) = entry.file_name().to_str().and_then(|n| Digest::from_hex(n).ok()) else { continue };
            match self.get(&d) {
                Ok(Some(layer)) => out.push(layer.meta),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "skipping unreadable layer"),
            }
        }
        out.sort_by(|a, b| a.diff_id.cmp(&b.diff_id));
        Ok(out)
    }
}
