//! Random access to the members of an image archive (a tar, maybe gzipped) without extracting
//! it: one pass catalogs the members and keeps the small ones in memory; a member not kept is
//! found by another pass; `stream` hands chosen members to a callback in one final pass.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::paths;
use super::unpack::decompress;

/// Members up to this size are kept in memory by the catalog pass (manifests, configs, small
/// layers), up to `CACHE_TOTAL` in all.
const CACHE_MEMBER: u64 = 1 << 20;
const CACHE_TOTAL: u64 = 64 << 20;
/// Symlink chains longer than this are treated as missing.
const MAX_HOPS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}: not a readable tar archive: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: compressed with {format}; use an uncompressed or gzip-compressed archive")]
    Compression { path: PathBuf, format: &'static str },
    #[error("{path}: no member {member:?}")]
    Missing { path: PathBuf, member: String },
    #[error("{path}: member {member:?} is {size} bytes, more than the {limit} allowed for it")]
    TooLarge { path: PathBuf, member: String, size: u64, limit: u64 },
}

#[derive(Debug, Clone)]
enum Member {
    File {
        size: u64,
    },
    /// A symlink or hard link, as the archive-relative name it points to.
    Link(String),
}

/// A catalogued archive.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    members: BTreeMap<String, Member>,
    cache: BTreeMap<String, Vec<u8>>,
}

/// The normalized name of a member (`./blobs//sha256/x` → `blobs/sha256/x`); None for names
/// that cannot be an image archive's (absolute, `..`, not UTF-8).
pub fn member_name(raw: &[u8]) -> Option<String> {
    let p = paths::clean_path(raw).ok()?;
    let s = p.to_str()?;
    (!s.is_empty()).then(|| s.to_string())
}

/// Pure: resolves a symlink target relative to the directory of `name`, staying inside the
/// archive. Absolute or escaping targets resolve to nothing.
pub fn resolve_link(name: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn open_tar(path: &Path) -> Result<tar::Archive<Box<dyn Read>>, ArchiveError> {
    let file = File::open(path).map_err(|source| ArchiveError::Open { path: path.to_path_buf(), source })?;
    let reader = decompress(BufReader::new(file))
        .map_err(|source| ArchiveError::Read { path: path.to_path_buf(), source })?
        .map_err(|format| ArchiveError::Compression { path: path.to_path_buf(), format })?;
    Ok(tar::Archive::new(reader))
}

impl Archive {
    /// The catalog pass.
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        let mut members = BTreeMap::new();
        let mut cache = BTreeMap::new();
        let mut cached = 0u64;
        let read_err = |source| ArchiveError::Read { path: path.to_path_buf(), source };
        let mut tar = open_tar(path)?;
        for entry in tar.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            let Some(name) = member_name(&entry.path_bytes()) else { continue };
            let link = || entry.link_name_bytes().and_then(|l| String::from_utf8(l.into_owned()).ok());
            match entry.header().entry_type() {
                EntryType::Regular | EntryType::Continuous => {
                    let size = entry.size();
                    if size <= CACHE_MEMBER && cached + size <= CACHE_TOTAL {
                        let mut buf = Vec::new();
                        entry.read_to_end(&mut buf).map_err(read_err)?;
                        cached += size;
                        cache.insert(name.clone(), buf);
                    }
                    members.insert(name, Member::File { size });
                }
                EntryType::Symlink => {
                    if let Some(target) = link().and_then(|t| resolve_link(&name, &t)) {
                        members.insert(name, Member::Link(target));
                    }
                }
                EntryType::Link => {
                    if let Some(target) = link().and_then(|t| member_name(t.as_bytes())) {
                        members.insert(name, Member::Link(target));
                    }
                }
                _ => {}
            }
        }
        Ok(Archive { path: path.to_path_buf(), members, cache })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The regular-file member `name` leads to (following links), with its size.
    pub fn resolve(&self, name: &str) -> Option<(String, u64)> {
        let mut cur = name.to_string();
        for _ in 0..=MAX_HOPS {
            match self.members.get(&cur)? {
                Member::File { size } => return Some((cur, *size)),
                Member::Link(target) => cur = target.clone(),
            }
        }
        None
    }

    pub fn contains(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }

    fn missing(&self, name: &str) -> ArchiveError {
        ArchiveError::Missing { path: self.path.clone(), member: name.to_string() }
    }

    /// The content of a member of at most `limit` bytes, from memory or from another pass.
    pub fn read_small(&mut self, name: &str, limit: u64) -> Result<Vec<u8>, ArchiveError> {
        let (real, size) = self.resolve(name).ok_or_else(|| self.missing(name))?;
        if size > limit {
            return Err(ArchiveError::TooLarge {
                path: self.path.clone(),
                member: name.to_string(),
                size,
                limit,
            });
        }
        if let Some(bytes) = self.cache.get(&real) {
            return Ok(bytes.clone());
        }
        let mut found = None;
        self.stream(std::slice::from_ref(&real), |_, reader| {
            let mut buf = Vec::new();
            reader.take(limit).read_to_end(&mut buf)?;
            found = Some(buf);
            Ok(())
        })?;
        let bytes = found.ok_or_else(|| self.missing(name))?;
        self.cache.insert(real, bytes.clone());
        Ok(bytes)
    }

    /// Whether the content of `name` is in memory (then `read_small` needs no pass).
    pub fn cached(&self, name: &str) -> Option<&[u8]> {
        let (real, _) = self.resolve(name)?;
        self.cache.get(&real).map(Vec::as_slice)
    }

    /// One pass over the archive calling `f` for each regular-file member in `names` (resolved
    /// names), with a reader of its content. An I/O error from `f` stops the pass and is
    /// reported as a read error of the archive.
    pub fn stream(
        &self,
        names: &[String],
        mut f: impl FnMut(&str, &mut dyn Read) -> io::Result<()>,
    ) -> Result<(), ArchiveError> {
        self.stream_with(names, |name, r| f(name, r).map_err(StreamError::Io)).map_err(|e| match e {
            StreamError::Archive(a) => a,
            StreamError::Io(source) => ArchiveError::Read { path: self.path.clone(), source },
        })
    }

    /// Like `stream`, with a callback whose errors are passed through unchanged.
    pub fn stream_with<E>(
        &self,
        names: &[String],
        mut f: impl FnMut(&str, &mut dyn Read) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<ArchiveError>,
    {
        let read_err = |source| ArchiveError::Read { path: self.path.clone(), source };
        let mut tar = open_tar(&self.path)?;
        for entry in tar.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            if !matches!(entry.header().entry_type(), EntryType::Regular | EntryType::Continuous) {
                continue;
            }
            let Some(name) = member_name(&entry.path_bytes()) else { continue };
            if names.contains(&name) {
                f(&name, &mut entry)?;
            }
        }
        Ok(())
    }
}

/// `stream`'s errors: the archive's own, or its callback's.
#[derive(Debug)]
enum StreamError {
    Archive(ArchiveError),
    Io(io::Error),
}

impl From<ArchiveError> for StreamError {
    fn from(e: ArchiveError) -> Self {
        StreamError::Archive(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_link_table() {
        let cases = [
            ("a/layer.tar", "../b/layer.tar", Some("b/layer.tar")),
            ("a/layer.tar", "other.tar", Some("a/other.tar")),
            ("layer.tar", "./x", Some("x")),
            ("a/layer.tar", "../../x", None),
            ("a/layer.tar", "/etc/passwd", None),
            ("a/b", "..", None),
        ];
        for (name, target, want) in cases {
            assert_eq!(resolve_link(name, target).as_deref(), want, "{name} -> {target}");
        }
        assert_eq!(member_name(b"./blobs//sha256/ab").as_deref(), Some("blobs/sha256/ab"));
        assert_eq!(member_name(b"/etc/x"), None);
        assert_eq!(member_name(b"./"), None);
    }
}
