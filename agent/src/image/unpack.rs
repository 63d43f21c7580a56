//! Unpacks one layer tarball (gzip or plain) into an empty directory, verifying the diff_id
//! and refusing any entry that would write outside the directory.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{self as unix_fs, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::read::MultiGzDecoder;
use nix::errno::Errno;
use nix::sys::stat::{self, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::EntryType;
use tracing::warn;

use super::digest::{Digest, HashingReader};
use super::layer_meta::LayerMeta;
use super::paths::{self, EntryName, PathProblem, WalkError};

/// What the unpacker may do besides writing files; both need root (CAP_CHOWN, CAP_MKNOD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Give files the uid/gid recorded in the tarball.
    pub chown: bool,
    /// Create device nodes, and whiteouts as overlayfs' 0/0 character devices.
    pub mknod: bool,
}

impl UnpackOptions {
    /// Everything when running as root, neither otherwise.
    pub fn for_current_user() -> Self {
        let root = nix::unistd::geteuid().is_root();
        UnpackOptions { chown: root, mknod: root }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer {diff_id} is compressed with {format}, which this agent does not support (gzip or none)")]
    Compression { diff_id: Digest, format: &'static str },
    #[error("layer {diff_id}: entry {entry:?} is refused: {problem}")]
    UnsafePath { diff_id: Digest, entry: String, problem: PathProblem },
    #[error("layer {diff_id}: entry {entry:?} goes through the symlink {symlink:?} (possible escape)")]
    SymlinkInPath { diff_id: Digest, entry: String, symlink: PathBuf },
    #[error("layer {diff_id}: entry {entry:?} needs {path:?} to be a directory, but it is not")]
    NotADirectory { diff_id: Digest, entry: String, path: PathBuf },
    #[error("layer {diff_id}: hard link {entry:?} -> {target:?} is refused: {reason}")]
    BadHardLink { diff_id: Digest, entry: String, target: String, reason: String },
    #[error("layer {diff_id}: symlink {entry:?} has an empty target or one with a NUL byte")]
    BadSymlink { diff_id: Digest, entry: String },
    #[error("layer {diff_id}: entry {entry:?} has unsupported type {kind}")]
    Unsupported { diff_id: Digest, entry: String, kind: String },
    #[error("layer {diff_id}: entry {entry:?} has a bad header: {source}")]
    BadHeader { diff_id: Digest, entry: String, source: io::Error },
    #[error("layer content does not match its diff_id: expected {expected}, got {actual}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("layer {diff_id}: reading the tar stream: {source}")]
    Read { diff_id: Digest, source: io::Error },
    #[error("layer {diff_id}: {path}: {source}")]
    Io { diff_id: Digest, path: PathBuf, source: io::Error },
}

/// Compression, told by magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

/// Pure: the compression of a stream starting with `head`.
pub fn detect_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Compression::Xz
    } else {
        Compression::None
    }
}

/// A reader with its first bytes put back.
pub type Sniffed<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Reads up to 6 bytes of `reader` and returns the detected compression and a reader that
/// still yields those bytes first.
pub fn sniff<R: Read>(mut reader: R) -> io::Result<(Compression, Sniffed<R>)> {
    let mut head = vec![0u8; 6];
    let mut n = 0;
    while n < head.len() {
        match reader.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    head.truncate(n);
    Ok((detect_compression(&head), io::Cursor::new(head).chain(reader)))
}

/// A decompressed view of a gzip or plain stream; other formats are refused by name.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Result<Box<dyn Read + 'a>, &'static str>> {
    let (kind, r) = sniff(reader)?;
    Ok(match kind {
        Compression::None => Ok(Box::new(r)),
        Compression::Gzip => Ok(Box::new(MultiGzDecoder::new(r))),
        Compression::Zstd => Err("zstd"),
        Compression::Bzip2 => Err("bzip2"),
        Compression::Xz => Err("xz"),
    })
}

/// Unpacks the layer tarball `reader` into `dest` (an existing, empty directory), checking that
/// the uncompressed stream hashes to `diff_id`. On error `dest` holds a partial tree, which the
/// caller removes; nothing is ever written outside `dest`.
pub fn unpack_layer(
    reader: impl Read,
    diff_id: &Digest,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<LayerMeta, UnpackError> {
    let read_err = |source| UnpackError::Read { diff_id: diff_id.clone(), source };
    let plain = decompress(reader)
        .map_err(read_err)?
        .map_err(|format| UnpackError::Compression { diff_id: diff_id.clone(), format })?;
    let mut archive = tar::Archive::new(HashingReader::new(plain));
    let mut u =
        Unpacker { diff_id, root: dest, opts, meta: LayerMeta::new(diff_id.clone()), dirs: BTreeMap::new() };
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        u.entry(&mut entry)?;
    }
    // The diff_id covers the whole stream, including the end-of-archive blocks and any padding
    // after them, which `tar` does not read.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(read_err)?;
    let (actual, _) = rest.finish();
    if &actual != diff_id {
        return Err(UnpackError::DiffIdMismatch { expected: diff_id.clone(), actual });
    }
    u.finish_dirs()?;
    u.mark_opaque_dirs()?;
    Ok(u.meta)
}

/// Mode, owner and mtime of an entry. A directory's are applied once all entries are written
/// (writing into a directory changes its mtime, and a `0555` directory must still be filled).
#[derive(Debug, Clone, Copy)]
struct Attrs {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

struct Unpacker<'a> {
    diff_id: &'a Digest,
    root: &'a Path,
    opts: &'a UnpackOptions,
    meta: LayerMeta,
    /// Keyed by relative path; applied deepest first.
    dirs: BTreeMap<PathBuf, Attrs>,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let unsafe_path =
            |problem| UnpackError::UnsafePath { diff_id: self.diff_id.clone(), entry: name.clone(), problem };
        let rel = paths::clean_path(&entry.path_bytes()).map_err(unsafe_path)?;
        if let Some(pax) = entry.pax_extensions().map_err(|e| self.bad_header(&name, e))? {
            let xattrs =
                pax.filter_map(Result::ok).filter(|p| p.key_bytes().starts_with(b"SCHILY.xattr.")).count();
            if xattrs > 0 {
                warn!(layer = %self.diff_id, entry = %name, "extended attributes are not applied");
                self.meta.xattrs_ignored += xattrs as u64;
            }
        }
        match paths::classify(rel).map_err(unsafe_path)? {
            EntryName::AufsMeta(_) => Ok(()),
            EntryName::Opaque(dir) => {
                // `dir` itself must be a real directory: it is the parent of any name inside it.
                self.parents(&name, &dir.join("x"))?;
                self.meta.opaque_dirs.push(dir);
                Ok(())
            }
            EntryName::Whiteout(path) => self.whiteout(&name, path),
            EntryName::Plain(rel) if rel.as_os_str().is_empty() => {
                if kind.is_dir() {
                    Ok(()) // the layer's root: its attributes are the image root's, not ours to set
                } else {
                    Err(unsafe_path(PathProblem::Root))
                }
            }
            EntryName::Plain(rel) => self.plain(entry, &name, kind, rel),
        }
    }

    fn plain<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        kind: EntryType,
        rel: PathBuf,
    ) -> Result<(), UnpackError> {
        let h = entry.header();
        let mode = h.mode().map_err(|e| self.bad_header(name, e))? & 0o7777;
        let uid = h.uid().map_err(|e| self.bad_header(name, e))?;
        let gid = h.gid().map_err(|e| self.bad_header(name, e))?;
        let mtime = h.mtime().map_err(|e| self.bad_header(name, e))?;
        let id_err =
            || self.bad_header(name, io::Error::new(io::ErrorKind::InvalidData, "uid or gid above 2^32-1"));
        let attrs = Attrs {
            mode,
            uid: u32::try_from(uid).map_err(|_| id_err())?,
            gid: u32::try_from(gid).map_err(|_| id_err())?,
            mtime,
        };
        self.parents(name, &rel)?;
        let path = self.root.join(&rel);
        match kind {
            EntryType::Directory => {
                match paths::lstat(&path).map_err(|e| self.io(&path, e))? {
                    Some(m) if m.is_dir() => {}
                    existing => {
                        if existing.is_some() {
                            self.remove(&path)?;
                        }
                        fs::create_dir(&path).map_err(|e| self.io(&path, e))?;
                    }
                }
                self.dirs.insert(rel, attrs);
            }
            EntryType::Regular | EntryType::Continuous => {
                self.replace(&path)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(|e| self.io(&path, e))?;
                let n = io::copy(entry, &mut file)
                    .map_err(|source| UnpackError::Read { diff_id: self.diff_id.clone(), source })?;
                self.meta.size += n;
                self.file_attrs(&file, &path, attrs)?;
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                if target.is_empty() || target.contains(&0) {
                    return Err(UnpackError::BadSymlink {
                        diff_id: self.diff_id.clone(),
                        entry: name.to_string(),
                    });
                }
                self.replace(&path)?;
                unix_fs::symlink(std::ffi::OsStr::from_bytes(&target), &path)
                    .map_err(|e| self.io(&path, e))?;
                self.link_attrs(&path, attrs)?;
            }
            EntryType::Link => self.hard_link(entry, name, &rel, &path)?,
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.special(entry, name, kind, &path, attrs)?
            }
            other => {
                // Sparse files would unpack with the wrong content; anything else is unknown.
                if matches!(other, EntryType::GNUSparse) {
                    return Err(UnpackError::Unsupported {
                        diff_id: self.diff_id.clone(),
                        entry: name.to_string(),
                        kind: "GNU sparse file".into(),
                    });
                }
                warn!(layer = %self.diff_id, entry = %name, kind = ?other, "skipping tar entry of unknown type");
            }
        }
        Ok(())
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        name: &str,
        rel: &Path,
        path: &Path,
    ) -> Result<(), UnpackError> {
        let raw = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
        let target_name = String::from_utf8_lossy(&raw).into_owned();
        let refuse = |reason: String| UnpackError::BadHardLink {
            diff_id: self.diff_id.clone(),
            entry: name.to_string(),
            target: target_name.clone(),
            reason,
        };
        let target_rel = paths::clean_path(&raw).map_err(|p| refuse(p.to_string()))?;
        if target_rel.as_os_str().is_empty() {
            return Err(refuse("it points at the layer's root".into()));
        }
        match paths::parents_are_dirs(self.root, &target_rel) {
            Ok(true) => {}
            Ok(false) => return Err(refuse("its target is not an entry of this layer".into())),
            Err(e) => return Err(self.walk(name, e)),
        }
        let target = self.root.join(&target_rel);
        match paths::lstat(&target).map_err(|e| self.io(&target, e))? {
            None => return Err(refuse("its target is not an entry of this layer".into())),
            Some(m) if m.is_dir() => return Err(refuse("its target is a directory".into())),
            Some(_) => {}
        }
        if target_rel == rel {
            return Ok(());
        }
        self.replace(path)?;
        // `hard_link` is linkat(2) without AT_SYMLINK_FOLLOW on Linux: a symlink target is
        // linked as the symlink itself, never resolved.
        fs::hard_link(&target, path).map_err(|e| self.io(path, e))
    }

    fn special<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        name: &str,
        kind: EntryType,
        path: &Path,
        attrs: Attrs,
    ) -> Result<(), UnpackError> {
        let flag = match kind {
            EntryType::Char => SFlag::S_IFCHR,
            EntryType::Block => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        // FIFOs have no device numbers, and archivers often leave the fields blank for them.
        let (major, minor) = if flag == SFlag::S_IFIFO {
            (0, 0)
        } else {
            let h = entry.header();
            (
                h.device_major().map_err(|e| self.bad_header(name, e))?.unwrap_or(0),
                h.device_minor().map_err(|e| self.bad_header(name, e))?.unwrap_or(0),
            )
        };
        if flag != SFlag::S_IFIFO && !self.opts.mknod {
            warn!(layer = %self.diff_id, entry = %name, "not root: skipping device node");
            self.meta.skipped_devices += 1;
            return Ok(());
        }
        self.replace(path)?;
        let perm = Mode::from_bits_truncate(attrs.mode & 0o777);
        match stat::mknod(path, flag, perm, stat::makedev(u64::from(major), u64::from(minor))) {
            Ok(()) => {
                self.link_attrs(path, attrs)?;
                // After chown, and not subject to the umask mknod applied. `path` is the node
                // just created, not a symlink, so chmod cannot be redirected.
                fs::set_permissions(path, fs::Permissions::from_mode(attrs.mode))
                    .map_err(|e| self.io(path, e))
            }
            Err(nix::errno::Errno::EPERM) if flag != SFlag::S_IFIFO => {
                warn!(layer = %self.diff_id, entry = %name, "no permission to create device node: skipped");
                self.meta.skipped_devices += 1;
                Ok(())
            }
            Err(e) => Err(self.io(path, e.into())),
        }
    }

    fn whiteout(&mut self, name: &str, rel: PathBuf) -> Result<(), UnpackError> {
        self.parents(name, &rel)?;
        let path = self.root.join(&rel);
        self.meta.whiteouts.push(rel);
        if !self.opts.mknod {
            self.meta.whiteout_devices = false;
            return Ok(());
        }
        // An entry of this same layer already at that path stays: a whiteout only hides lower
        // layers, and the entry hides them already.
        if paths::lstat(&path).map_err(|e| self.io(&path, e))?.is_some() {
            return Ok(());
        }
        match stat::mknod(&path, SFlag::S_IFCHR, Mode::empty(), stat::makedev(0, 0)) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EPERM) => {
                self.meta.whiteout_devices = false;
                Ok(())
            }
            Err(e) => Err(self.io(&path, e.into())),
        }
    }

    /// Ensures the parents of `rel` are real directories.
    fn parents(&self, name: &str, rel: &Path) -> Result<(), UnpackError> {
        paths::ensure_parents(self.root, rel).map_err(|e| self.walk(name, e))
    }

    /// Removes whatever an earlier entry left at `path` (later entries win).
    fn replace(&self, path: &Path) -> Result<(), UnpackError> {
        match paths::lstat(path).map_err(|e| self.io(path, e))? {
            Some(_) => self.remove(path),
            None => Ok(()),
        }
    }

    fn remove(&self, path: &Path) -> Result<(), UnpackError> {
        crate::fsutil::remove_tree(path).map_err(|e| self.io(path, e))
    }

    fn file_attrs(&self, file: &File, path: &Path, a: Attrs) -> Result<(), UnpackError> {
        if self.opts.chown {
            unix_fs::fchown(file, Some(a.uid), Some(a.gid)).map_err(|e| self.io(path, e))?;
        }
        // After chown, which clears set-id bits.
        file.set_permissions(fs::Permissions::from_mode(a.mode)).map_err(|e| self.io(path, e))?;
        // A crafted mtime (base-256, up to u64::MAX) must not overflow: clamp it.
        let t = SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(a.mtime.min(i64::MAX as u64 / 2)))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        file.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t)).map_err(|e| self.io(path, e))
    }

    /// Owner and mtime of a symlink or device node, without following it.
    fn link_attrs(&self, path: &Path, a: Attrs) -> Result<(), UnpackError> {
        if self.opts.chown {
            unix_fs::lchown(path, Some(a.uid), Some(a.gid)).map_err(|e| self.io(path, e))?;
        }
        set_mtime_nofollow(path, a.mtime).map_err(|e| self.io(path, e))
    }

    /// Marks opaque directories with `trusted.overlay.opaque=y` so overlayfs hides what lower
    /// layers have in them. Needs root (trusted.* xattrs need CAP_SYS_ADMIN); the layer's own
    /// root cannot be opaque to overlayfs. Anything unmarked leaves the layer to the copy
    /// fallback.
    fn mark_opaque_dirs(&mut self) -> Result<(), UnpackError> {
        if self.meta.opaque_dirs.is_empty() || !self.opts.mknod {
            return Ok(());
        }
        for rel in &self.meta.opaque_dirs {
            let path = self.root.join(rel);
            // A later entry of the layer may have replaced the directory (or a parent).
            let still_dir = !rel.as_os_str().is_empty()
                && paths::parents_are_dirs(self.root, rel).map_err(|e| self.walk("", e))?
                && paths::lstat(&path).map_err(|e| self.io(&path, e))?.is_some_and(|m| m.is_dir());
            if !still_dir {
                return Ok(());
            }
            match xattr::set(&path, "trusted.overlay.opaque", b"y") {
                Ok(()) => {}
                Err(e)
                    if [Some(Errno::EPERM as i32), Some(Errno::ENOTSUP as i32)]
                        .contains(&e.raw_os_error()) =>
                {
                    return Ok(())
                }
                Err(e) => return Err(self.io(&path, e)),
            }
        }
        self.meta.opaque_marked = true;
        Ok(())
    }

    /// Applies directory attributes, deepest first, to paths that are still real directories
    /// reached through real directories (a later entry may have replaced one with a symlink).
    fn finish_dirs(&self) -> Result<(), UnpackError> {
        for (rel, a) in self.dirs.iter().rev() {
            let path = self.root.join(rel);
            let still_dir = paths::parents_are_dirs(self.root, rel).map_err(|e| self.walk("", e))?
                && paths::lstat(&path).map_err(|e| self.io(&path, e))?.is_some_and(|m| m.is_dir());
            if !still_dir {
                continue;
            }
            if self.opts.chown {
                unix_fs::lchown(&path, Some(a.uid), Some(a.gid)).map_err(|e| self.io(&path, e))?;
            }
            fs::set_permissions(&path, fs::Permissions::from_mode(a.mode)).map_err(|e| self.io(&path, e))?;
            set_mtime_nofollow(&path, a.mtime).map_err(|e| self.io(&path, e))?;
        }
        Ok(())
    }

    fn walk(&self, name: &str, e: WalkError) -> UnpackError {
        let (diff_id, entry) = (self.diff_id.clone(), name.to_string());
        match e {
            WalkError::Symlink(p) => UnpackError::SymlinkInPath {
                diff_id,
                entry,
                symlink: p.strip_prefix(self.root).unwrap_or(&p).into(),
            },
            WalkError::NotDir(p) => UnpackError::NotADirectory {
                diff_id,
                entry,
                path: p.strip_prefix(self.root).unwrap_or(&p).into(),
            },
            WalkError::Io(path, source) => UnpackError::Io { diff_id, path, source },
        }
    }

    fn io(&self, path: &Path, source: io::Error) -> UnpackError {
        UnpackError::Io { diff_id: self.diff_id.clone(), path: path.to_path_buf(), source }
    }

    fn bad_header(&self, name: &str, source: io::Error) -> UnpackError {
        UnpackError::BadHeader { diff_id: self.diff_id.clone(), entry: name.to_string(), source }
    }
}

/// Sets atime and mtime of `path` itself, not of what a symlink points to.
pub fn set_mtime_nofollow(path: &Path, secs: u64) -> io::Result<()> {
    let secs = nix::libc::time_t::try_from(secs).unwrap_or(nix::libc::time_t::MAX);
    let t = TimeSpec::new(secs, 0);
    stat::utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}
