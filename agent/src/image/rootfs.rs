//! Assembling a container's root from an image's layers: overlayfs mount options (pure), or,
//! where overlayfs cannot be used, a copy of the layers into one directory applying whiteouts
//! and opaque directories in order.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{self as unix_fs, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::sys::stat::{self, Mode, SFlag};
use tracing::warn;

use super::layers::LayerDir;
use super::paths::{self, MAX_DEPTH};
use super::unpack::{set_mtime_nofollow, UnpackOptions};
use crate::fsutil;

/// Mount data is limited to one page.
pub const MAX_MOUNT_OPTIONS: usize = 4095;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{path:?} cannot go into overlayfs mount options (it must be UTF-8 without ':', ',' or '\\')")]
    InvalidPath { path: PathBuf },
    #[error(
        "overlayfs mount options would be {len} bytes, more than the {MAX_MOUNT_OPTIONS} a mount accepts"
    )]
    OptionsTooLong { len: usize },
    #[error("an image without layers cannot be mounted with overlayfs")]
    NoLayers,
    #[error("{path}: nested deeper than {MAX_DEPTH} directories")]
    TooDeep { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// How to build a container's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsPlan {
    /// Mount overlayfs with these options (`lowerdir=top:…:bottom,upperdir=…,workdir=…`).
    Overlay { options: String },
    /// Materialize the layers with `copy_layers`.
    Copy { reason: CopyReason },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyReason {
    OverlayUnavailable,
    NoLayers,
    /// This layer has opaque directories not marked for overlayfs (unpacked without root, or
    /// the layer's root is opaque).
    OpaqueDirs {
        layer: PathBuf,
    },
    /// This layer's whiteouts are not 0/0 devices (unpacked without root).
    WhiteoutsNotDevices {
        layer: PathBuf,
    },
    OptionsTooLong {
        len: usize,
    },
}

/// Pure: overlayfs options for `layers` (bottom to top), with the container's writable
/// `upper` and `work` directories.
pub fn overlay_options(layers: &[&Path], upper: &Path, work: &Path) -> Result<String, RootfsError> {
    if layers.is_empty() {
        return Err(RootfsError::NoLayers);
    }
    let text = |p: &Path| {
        p.to_str()
            .filter(|s| !s.contains([':', ',', '\\']))
            .map(str::to_string)
            .ok_or_else(|| RootfsError::InvalidPath { path: p.to_path_buf() })
    };
    let lower: Vec<String> = layers.iter().rev().map(|p| text(p)).collect::<Result<_, _>>()?;
    let options = format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), text(upper)?, text(work)?);
    if options.len() > MAX_MOUNT_OPTIONS {
        return Err(RootfsError::OptionsTooLong { len: options.len() });
    }
    Ok(options)
}

/// Pure: overlay when it is available and every layer can serve as a lower directory as it is,
/// the copy fallback otherwise (and the reason why).
pub fn plan_rootfs(
    layers: &[LayerDir],
    overlay_available: bool,
    upper: &Path,
    work: &Path,
) -> Result<RootfsPlan, RootfsError> {
    let copy = |reason| Ok(RootfsPlan::Copy { reason });
    if !overlay_available {
        return copy(CopyReason::OverlayUnavailable);
    }
    if layers.is_empty() {
        return copy(CopyReason::NoLayers);
    }
    for l in layers {
        if !l.meta.opaque_dirs.is_empty() && !l.meta.opaque_marked {
            return copy(CopyReason::OpaqueDirs { layer: l.dir.clone() });
        }
        if !l.meta.overlay_ready() {
            return copy(CopyReason::WhiteoutsNotDevices { layer: l.dir.clone() });
        }
    }
    let lower: Vec<&Path> = layers.iter().map(|l| l.fs.as_path()).collect();
    match overlay_options(&lower, upper, work) {
        Ok(options) => Ok(RootfsPlan::Overlay { options }),
        Err(RootfsError::OptionsTooLong { len }) => copy(CopyReason::OptionsTooLong { len }),
        Err(e) => Err(e),
    }
}

/// Materializes `layers` (bottom to top) into `dest`, an existing directory: for each layer, its
/// opaque directories are emptied and its whiteouts deleted in what the layers below produced,
/// then its files are copied over (a directory merges into a directory; anything else
/// replaces). Never follows a symlink in `dest`.
pub fn copy_layers(layers: &[LayerDir], dest: &Path, opts: &UnpackOptions) -> Result<(), RootfsError> {
    for layer in layers {
        for dir in &layer.meta.opaque_dirs {
            let target = dest.join(dir);
            if dir.as_os_str().is_empty() {
                fsutil::clear_dir(dest).map_err(io_err(dest))?;
            } else if real_path(dest, dir)? && lstat(&target)?.is_some_and(|m| m.is_dir()) {
                fsutil::clear_dir(&target).map_err(io_err(&target))?;
            }
        }
        for w in &layer.meta.whiteouts {
            if real_path(dest, w)? {
                let target = dest.join(w);
                fsutil::remove_tree(&target).map_err(io_err(&target))?;
            }
        }
        let mut links = HashMap::new();
        copy_dir(&layer.fs, dest, 0, opts, &mut links)?;
    }
    Ok(())
}

/// Whether the parents of `rel` under `root` are real directories (so removing `rel` stays
/// inside `root`).
fn real_path(root: &Path, rel: &Path) -> Result<bool, RootfsError> {
    if !paths::is_clean_relative(rel) || rel.as_os_str().is_empty() {
        return Ok(false);
    }
    paths::parents_are_dirs(root, rel).map_err(|e| match e {
        paths::WalkError::Io(path, source) => RootfsError::Io { path, source },
        paths::WalkError::Symlink(path) | paths::WalkError::NotDir(path) => {
            RootfsError::Io { path, source: io::Error::other("not a directory") }
        }
    })
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io { path: path.to_path_buf(), source }
}

fn lstat(path: &Path) -> Result<Option<fs::Metadata>, RootfsError> {
    paths::lstat(path).map_err(io_err(path))
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    depth: usize,
    opts: &UnpackOptions,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), RootfsError> {
    if depth > MAX_DEPTH + 1 {
        return Err(RootfsError::TooDeep { path: src.to_path_buf() });
    }
    let mut entries: Vec<fs::DirEntry> =
        fs::read_dir(src).map_err(io_err(src))?.collect::<Result<_, _>>().map_err(io_err(src))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let s = entry.path();
        let d = dst.join(entry.file_name());
        // `DirEntry::metadata` does not follow symlinks.
        let m = entry.metadata().map_err(io_err(&s))?;
        if paths::is_whiteout_device(&m) {
            fsutil::remove_tree(&d).map_err(io_err(&d))?;
            continue;
        }
        let existing = lstat(&d)?;
        if m.is_dir() {
            if !existing.as_ref().is_some_and(|e| e.is_dir()) {
                fsutil::remove_tree(&d).map_err(io_err(&d))?;
                fs::create_dir(&d).map_err(io_err(&d))?;
            }
            copy_dir(&s, &d, depth + 1, opts, links)?;
            if opts.chown {
                unix_fs::lchown(&d, Some(m.uid()), Some(m.gid())).map_err(io_err(&d))?;
            }
            fs::set_permissions(&d, fs::Permissions::from_mode(m.mode() & 0o7777)).map_err(io_err(&d))?;
            set_mtime_nofollow(&d, mtime(&m)).map_err(io_err(&d))?;
            continue;
        }
        if existing.is_some() {
            fsutil::remove_tree(&d).map_err(io_err(&d))?;
        }
        if m.nlink() > 1 {
            if let Some(first) = links.get(&(m.dev(), m.ino())) {
                fs::hard_link(first, &d).map_err(io_err(&d))?;
                continue;
            }
        }
        if copy_node(&s, &d, &m, opts)? && m.nlink() > 1 {
            links.insert((m.dev(), m.ino()), d);
        }
    }
    Ok(())
}

/// Copies one non-directory; false when it was skipped (a device node without privilege).
fn copy_node(s: &Path, d: &Path, m: &fs::Metadata, opts: &UnpackOptions) -> Result<bool, RootfsError> {
    let ft = m.file_type();
    let mode = m.mode() & 0o7777;
    if ft.is_file() {
        let mut from =
            OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(s).map_err(io_err(s))?;
        let mut to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(d)
            .map_err(io_err(d))?;
        io::copy(&mut from, &mut to).map_err(io_err(d))?;
        if opts.chown {
            unix_fs::fchown(&to, Some(m.uid()), Some(m.gid())).map_err(io_err(d))?;
        }
        to.set_permissions(fs::Permissions::from_mode(mode)).map_err(io_err(d))?;
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime(m));
        to.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t)).map_err(io_err(d))?;
        return Ok(true);
    }
    if ft.is_symlink() {
        let target = fs::read_link(s).map_err(io_err(s))?;
        unix_fs::symlink(&target, d).map_err(io_err(d))?;
    } else {
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_char_device() {
            SFlag::S_IFCHR
        } else if ft.is_block_device() {
            SFlag::S_IFBLK
        } else if ft.is_fifo() {
            SFlag::S_IFIFO
        } else {
            warn!(path = %s.display(), "skipping a socket or unknown file type");
            return Ok(false);
        };
        if kind != SFlag::S_IFIFO && !opts.mknod {
            warn!(path = %s.display(), "not root: skipping device node");
            return Ok(false);
        }
        stat::mknod(d, kind, Mode::from_bits_truncate(mode & 0o777), m.rdev())
            .map_err(|e| io_err(d)(e.into()))?;
        // `d` is the node just created, not a symlink.
        fs::set_permissions(d, fs::Permissions::from_mode(mode)).map_err(io_err(d))?;
    }
    if opts.chown {
        unix_fs::lchown(d, Some(m.uid()), Some(m.gid())).map_err(io_err(d))?;
    }
    set_mtime_nofollow(d, mtime(m)).map_err(io_err(d))?;
    Ok(true)
}

fn mtime(m: &fs::Metadata) -> u64 {
    u64::try_from(m.mtime()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::Digest;
    use crate::image::layer_meta::LayerMeta;

    fn layer(n: u8, opaque: bool, whiteouts: bool, devices: bool) -> LayerDir {
        let mut meta = LayerMeta::new(Digest::of_bytes(&[n]));
        if opaque {
            meta.opaque_dirs.push("etc".into());
        }
        if whiteouts {
            meta.whiteouts.push("etc/motd".into());
        }
        meta.whiteout_devices = devices;
        let dir = PathBuf::from(format!("/s/layers/sha256/{n}"));
        LayerDir { fs: dir.join("fs"), dir, meta }
    }

    #[test]
    fn overlay_options_order_and_escaping() {
        let (u, w) = (Path::new("/c/upper"), Path::new("/c/work"));
        let got = overlay_options(&[Path::new("/l/bottom"), Path::new("/l/mid"), Path::new("/l/top")], u, w);
        assert_eq!(got.unwrap(), "lowerdir=/l/top:/l/mid:/l/bottom,upperdir=/c/upper,workdir=/c/work");
        assert!(matches!(overlay_options(&[], u, w), Err(RootfsError::NoLayers)));
        for bad in ["/l/a:b", "/l/a,b", "/l/a\\b"] {
            assert!(
                matches!(overlay_options(&[Path::new(bad)], u, w), Err(RootfsError::InvalidPath { .. })),
                "{bad}"
            );
        }
        let long = "/x".repeat(1000);
        let many = vec![Path::new(&long); 3];
        assert!(matches!(overlay_options(&many, u, w), Err(RootfsError::OptionsTooLong { .. })));
    }

    #[test]
    fn plan_table() {
        let (u, w) = (Path::new("/c/upper"), Path::new("/c/work"));
        let plain = layer(1, false, false, true);
        let wh_dev = layer(2, false, true, true);
        let wh_nodev = layer(3, false, true, false);
        let opaque = layer(4, true, false, true);
        let long_path = {
            let mut l = layer(5, false, false, true);
            l.fs = PathBuf::from("/y".repeat(2100));
            l
        };
        let cases: Vec<(Vec<LayerDir>, bool, &str)> = vec![
            (vec![plain.clone(), wh_dev.clone()], true, "overlay"),
            (vec![plain.clone()], false, "unavailable"),
            (vec![], true, "no layers"),
            (vec![plain.clone(), wh_nodev.clone()], true, "whiteouts"),
            (vec![opaque.clone(), plain.clone()], true, "opaque"),
            (vec![long_path.clone(), long_path.clone()], true, "too long"),
        ];
        for (layers, available, want) in cases {
            let got = match plan_rootfs(&layers, available, u, w).unwrap() {
                RootfsPlan::Overlay { .. } => "overlay",
                RootfsPlan::Copy { reason: CopyReason::OverlayUnavailable } => "unavailable",
                RootfsPlan::Copy { reason: CopyReason::NoLayers } => "no layers",
                RootfsPlan::Copy { reason: CopyReason::WhiteoutsNotDevices { .. } } => "whiteouts",
                RootfsPlan::Copy { reason: CopyReason::OpaqueDirs { .. } } => "opaque",
                RootfsPlan::Copy { reason: CopyReason::OptionsTooLong { .. } } => "too long",
            };
            assert_eq!(got, want);
        }
    }
}
