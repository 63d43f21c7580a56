//! What unpacking learns about a layer (`layer.json`): written by the unpacker, kept and read
//! back by the layer store, consulted when a root filesystem is planned. Its own file, so the
//! unpacker and the layer store both depend on it and not on each other.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::paths;

pub const LAYER_META_VERSION: u32 = 1;

/// What unpacking learnt about a layer, kept next to its files in `layer.json` (outside `fs/`,
/// so it never shows up in a container's root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    pub version: u32,
    pub diff_id: Digest,
    /// Bytes of regular-file content.
    pub size: u64,
    /// Paths this layer deletes from the layers below it.
    #[serde(with = "paths::serde_paths")]
    pub whiteouts: Vec<PathBuf>,
    /// Directories whose lower-layer content this layer hides.
    #[serde(with = "paths::serde_paths")]
    pub opaque_dirs: Vec<PathBuf>,
    /// Whether every opaque directory carries overlayfs' `trusted.overlay.opaque=y` xattr
    /// (setting it needs root; the layer's own root cannot be marked). Otherwise a layer with
    /// opaque directories is only correct through the copy fallback.
    #[serde(default)]
    pub opaque_marked: bool,
    /// Whether every whiteout is also in `fs/` as overlayfs' 0/0 character device.
    pub whiteout_devices: bool,
    /// Device nodes not created for lack of privilege.
    pub skipped_devices: u64,
    /// Extended attributes (PAX `SCHILY.xattr.*`) seen but not applied.
    pub xattrs_ignored: u64,
}

impl LayerMeta {
    pub fn new(diff_id: Digest) -> Self {
        LayerMeta {
            version: LAYER_META_VERSION,
            diff_id,
            size: 0,
            whiteouts: Vec::new(),
            opaque_dirs: Vec::new(),
            opaque_marked: false,
            whiteout_devices: true,
            skipped_devices: 0,
            xattrs_ignored: 0,
        }
    }

    /// Whether `fs/` can be an overlayfs lower directory as it is.
    pub fn overlay_ready(&self) -> bool {
        (self.opaque_dirs.is_empty() || self.opaque_marked)
            && (self.whiteouts.is_empty() || self.whiteout_devices)
    }
}
