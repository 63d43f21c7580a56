//! Path rules for unpacking untrusted tarballs: cleaning entry names (pure), classifying
//! whiteouts (pure), and walking parents under a root without ever following a symlink.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serializer};

/// Deepest path accepted in a layer. Real images stay far below; the cap bounds the recursion
/// of the copy fallback and of tree removal.
pub const MAX_DEPTH: usize = 256;
/// Longest path accepted (Linux's PATH_MAX).
pub const MAX_LEN: usize = 4096;

/// Why an entry name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    #[error("the path is absolute")]
    Absolute,
    #[error("the path has a '..' component")]
    DotDot,
    #[error("the path contains a NUL byte")]
    Nul,
    #[error("the path is deeper than {MAX_DEPTH} components")]
    TooDeep,
    #[error("the path is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("the path names the layer's root")]
    Root,
    #[error("the whiteout names no file ('.wh.' followed by nothing, '.' or '..')")]
    BadWhiteout,
}

/// Cleans a tar entry name into a relative path of normal components: `./` and empty
/// components are dropped; absolute paths, `..` and NUL are refused. The empty path is the
/// layer's root.
pub fn clean_path(raw: &[u8]) -> Result<PathBuf, PathProblem> {
    if raw.contains(&0) {
        return Err(PathProblem::Nul);
    }
    if raw.len() > MAX_LEN {
        return Err(PathProblem::TooLong);
    }
    if raw.first() == Some(&b'/') {
        return Err(PathProblem::Absolute);
    }
    let mut out = PathBuf::new();
    let mut depth = 0;
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => continue,
            b".." => return Err(PathProblem::DotDot),
            _ => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(PathProblem::TooDeep);
                }
                out.push(OsStr::from_bytes(part));
            }
        }
    }
    Ok(out)
}

/// What an entry is, judged by its last component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryName {
    /// An ordinary path.
    Plain(PathBuf),
    /// `.wh.<name>`: hides `<dir>/<name>` of lower layers.
    Whiteout(PathBuf),
    /// `<dir>/.wh..wh..opq`: hides everything in `<dir>` from lower layers.
    Opaque(PathBuf),
    /// Other `.wh..wh.` names (aufs bookkeeping such as `.wh..wh.plnk`): ignored, as Docker does.
    AufsMeta(PathBuf),
}

const WH: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Classifies a cleaned path.
pub fn classify(path: PathBuf) -> Result<EntryName, PathProblem> {
    let Some(name) = path.file_name().map(|n| n.as_bytes().to_vec()) else {
        return Ok(EntryName::Plain(path));
    };
    let Some(target) = name.strip_prefix(WH) else {
        return Ok(EntryName::Plain(path));
    };
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if name == OPAQUE {
        return Ok(EntryName::Opaque(parent));
    }
    if target.starts_with(WH) {
        return Ok(EntryName::AufsMeta(path));
    }
    if target.is_empty() || target == b"." || target == b".." {
        return Err(PathProblem::BadWhiteout);
    }
    Ok(EntryName::Whiteout(parent.join(OsStr::from_bytes(target))))
}

/// What blocked a walk under the root.
#[derive(Debug)]
pub enum WalkError {
    /// A component is a symlink; walking through it could leave the root.
    Symlink(PathBuf),
    /// A component exists and is neither a directory nor a symlink.
    NotDir(PathBuf),
    Io(PathBuf, io::Error),
}

/// Makes sure every directory leading to `rel` (not `rel` itself) exists under `root` as a real
/// directory, creating missing ones with mode 0755. Whiteout devices left by an earlier entry
/// of the same layer are replaced (a directory re-created after its whiteout). Never follows
/// a symlink: one in the way is an error.
pub fn ensure_parents(root: &Path, rel: &Path) -> Result<(), WalkError> {
    let Some(parent) = rel.parent() else { return Ok(()) };
    let mut cur = root.to_path_buf();
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return Err(WalkError::Symlink(cur)),
            Ok(m) if m.is_dir() => {}
            Ok(m) if is_whiteout_device(&m) => {
                fs::remove_file(&cur).map_err(|e| WalkError::Io(cur.clone(), e))?;
                fs::create_dir(&cur).map_err(|e| WalkError::Io(cur.clone(), e))?;
            }
            Ok(_) => return Err(WalkError::NotDir(cur)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(|e| WalkError::Io(cur.clone(), e))?;
            }
            Err(e) => return Err(WalkError::Io(cur, e)),
        }
    }
    Ok(())
}

/// Whether every directory leading to `rel` exists under `root` as a real directory (no
/// symlinks). Creates nothing.
pub fn parents_are_dirs(root: &Path, rel: &Path) -> Result<bool, WalkError> {
    let Some(parent) = rel.parent() else { return Ok(true) };
    let mut cur = root.to_path_buf();
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(WalkError::Io(cur, e)),
        }
    }
    Ok(true)
}

/// The metadata of `root/rel` itself (not followed), if it exists.
pub fn lstat(path: &Path) -> io::Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// overlayfs' whiteout: a character device 0/0.
pub fn is_whiteout_device(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Whether `rel` has only normal components (what `clean_path` produces).
pub fn is_clean_relative(rel: &Path) -> bool {
    rel.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Serde for lists of layer-relative paths in `layer.json`: UTF-8 paths as `/a/b`, others as
/// `b64:<base64 of the bytes>` (the leading `/` keeps the two forms apart).
pub mod serde_paths {
    use super::*;

    pub fn serialize<S: Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(paths.iter().map(|p| encode(p)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
        let strings = Vec::<String>::deserialize(d)?;
        strings
            .iter()
            .map(|s| decode(s).ok_or_else(|| serde::de::Error::custom(format!("bad path {s:?}"))))
            .collect()
    }

    pub fn encode(p: &Path) -> String {
        match p.to_str() {
            Some(s) => format!("/{s}"),
            None => {
                format!("b64:{}", base64::engine::general_purpose::STANDARD.encode(p.as_os_str().as_bytes()))
            }
        }
    }

    pub fn decode(s: &str) -> Option<PathBuf> {
        let bytes = if let Some(rest) = s.strip_prefix('/') {
            rest.as_bytes().to_vec()
        } else {
            base64::engine::general_purpose::STANDARD.decode(s.strip_prefix("b64:")?).ok()?
        };
        clean_path(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_table() {
        let deep = "a/".repeat(MAX_DEPTH + 1);
        let long = "a".repeat(MAX_LEN + 1);
        let cases: &[(&[u8], Result<&str, PathProblem>)] = &[
            (b"etc/passwd", Ok("etc/passwd")),
            (b"./etc//passwd", Ok("etc/passwd")),
            (b"./", Ok("")),
            (b"bin/", Ok("bin")),
            (b"a/./b/.", Ok("a/b")),
            (b"/etc/passwd", Err(PathProblem::Absolute)),
            (b"../../etc/x", Err(PathProblem::DotDot)),
            (b"a/../../b", Err(PathProblem::DotDot)),
            (b"a/..", Err(PathProblem::DotDot)),
            (b"a\0b", Err(PathProblem::Nul)),
            (deep.as_bytes(), Err(PathProblem::TooDeep)),
            (long.as_bytes(), Err(PathProblem::TooLong)),
            (b"..foo/...", Ok("..foo/...")),
        ];
        for (raw, want) in cases {
            let got = clean_path(raw);
            let want = want.map(PathBuf::from);
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn classify_table() {
        let p = PathBuf::from;
        let cases = [
            ("usr/bin/ls", Ok(EntryName::Plain(p("usr/bin/ls")))),
            ("", Ok(EntryName::Plain(p("")))),
            ("etc/.wh.motd", Ok(EntryName::Whiteout(p("etc/motd")))),
            (".wh.tmp", Ok(EntryName::Whiteout(p("tmp")))),
            ("var/cache/.wh..wh..opq", Ok(EntryName::Opaque(p("var/cache")))),
            (".wh..wh..opq", Ok(EntryName::Opaque(p("")))),
            (".wh..wh.plnk", Ok(EntryName::AufsMeta(p(".wh..wh.plnk")))),
            ("a/.wh.", Err(PathProblem::BadWhiteout)),
            ("a/.wh..", Err(PathProblem::BadWhiteout)),
            ("a/.wh...", Err(PathProblem::BadWhiteout)),
            ("a/x.wh.y", Ok(EntryName::Plain(p("a/x.wh.y")))),
        ];
        for (input, want) in cases {
            assert_eq!(classify(clean_path(input.as_bytes()).unwrap()), want, "{input}");
        }
    }

    #[test]
    fn path_encoding_round_trips() {
        for raw in [&b"etc/motd"[..], b"b64:x", b"caf\xe9/x", b""] {
            let p = PathBuf::from(OsStr::from_bytes(raw));
            assert_eq!(serde_paths::decode(&serde_paths::encode(&p)), Some(p.clone()), "{p:?}");
        }
        assert_eq!(serde_paths::decode("b64:!!"), None);
        assert_eq!(serde_paths::decode("/../x"), None);
        assert_eq!(serde_paths::decode("relative"), None);
    }
}
