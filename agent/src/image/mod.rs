//! The device's content-addressed OCI image store: verified blobs, an index of tagged images,
//! layers unpacked once and shared, root filesystem assembly, and archive import.
//!
//! On disk, under the store's root (e.g. `<state>/images/`):
//!
//! ```text
//! index.json                       tags → manifest digest; per image: config, layers, size,
//!                                  platform, created and last-used times (atomic rewrites)
//! blobs/sha256/<hex>               manifests, configs and layer tarballs, verified on write
//! layers/sha256/<diff_id hex>/fs/  an unpacked layer (an overlayfs lower directory)
//! layers/sha256/<diff_id hex>/layer.json
//!                                  its whiteouts, opaque directories and size
//! tmp/                             work in progress; emptied when the store opens
//! ```
//!
//! Everything becomes visible by a rename from `tmp/`, so a crash leaves either the old state
//! or the new one. Pure decisions (`index::gc_plan`, `platform::select_platform`,
//! `rootfs::plan_rootfs`, `paths::clean_path`) are separate from the code that acts on them.

pub mod archive;
pub mod blobs;
pub mod config;
pub mod digest;
pub mod import;
pub mod index;
pub mod layer_meta;
pub mod layers;
pub mod paths;
pub mod platform;
pub mod pull;
pub mod rootfs;
pub mod store;
pub mod unpack;

#[cfg(test)]
mod tests;

pub use blobs::{BlobError, BlobInfo, BlobStore};
pub use config::{ExposedPort, Protocol, RuntimeConfig};
pub use digest::{Digest, DigestError};
pub use import::{ImportError, ImportedImage};
pub use index::{gc_plan, ImageRecord, Index, LayerRecord};
pub use layer_meta::LayerMeta;
pub use layers::LayerDir;
pub use platform::{select_platform, Platform, PlatformError};
pub use rootfs::{copy_layers, overlay_options, plan_rootfs, CopyReason, RootfsError, RootfsPlan};
pub use store::{ImageStore, ImageSummary, Removed, StoreError, Usage};
pub use unpack::{UnpackError, UnpackOptions};
