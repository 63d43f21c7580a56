//! Tests of the image store against real tarballs, directories and archives built here.

mod import;
mod rootfs;
mod store;
mod unpack;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use tar::{EntryType, Header};

use super::digest::Digest;

pub const MTIME: u64 = 1_700_000_000;

/// One tar entry. Names and link targets are written raw, so malicious ones are possible.
#[derive(Debug, Clone)]
pub enum E {
    File(&'static str, &'static [u8]),
    FileMode(&'static str, &'static [u8], u32),
    FileOwned(&'static str, &'static [u8], u32, u32),
    Dir(&'static str),
    DirMode(&'static str, u32),
    Symlink(&'static str, String),
    Hardlink(&'static str, String),
    Char(&'static str, u32, u32),
    Fifo(&'static str),
    /// A PAX `path` record (may hold any bytes), then a file entry it renames.
    PaxPath(Vec<u8>),
}

fn header(kind: EntryType, name: &[u8], link: &[u8], size: u64, mode: u32) -> Header {
    let mut h = Header::new_ustar();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// An uncompressed tarball of `entries`.
pub fn tarball(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (mut h, data): (Header, Vec<u8>) = match e {
            E::File(p, d) => {
                (header(EntryType::Regular, p.as_bytes(), b"", d.len() as u64, 0o644), d.to_vec())
            }
            E::FileMode(p, d, m) => {
                (header(EntryType::Regular, p.as_bytes(), b"", d.len() as u64, *m), d.to_vec())
            }
            E::FileOwned(p, d, uid, gid) => {
                let mut h = header(EntryType::Regular, p.as_bytes(), b"", d.len() as u64, 0o640);
                h.set_uid(u64::from(*uid));
                h.set_gid(u64::from(*gid));
                (h, d.to_vec())
            }
            E::Dir(p) => (header(EntryType::Directory, p.as_bytes(), b"", 0, 0o755), vec![]),
            E::DirMode(p, m) => (header(EntryType::Directory, p.as_bytes(), b"", 0, *m), vec![]),
            E::Symlink(p, t) => (header(EntryType::Symlink, p.as_bytes(), t.as_bytes(), 0, 0o777), vec![]),
            E::Hardlink(p, t) => (header(EntryType::Link, p.as_bytes(), t.as_bytes(), 0, 0o644), vec![]),
            E::Char(p, major, minor) => {
                let mut h = header(EntryType::Char, p.as_bytes(), b"", 0, 0o666);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                (h, vec![])
            }
            E::Fifo(p) => (header(EntryType::Fifo, p.as_bytes(), b"", 0, 0o600), vec![]),
            E::PaxPath(path) => {
                let mut record = Vec::new();
                let body_len = b" path=".len() + path.len() + 1;
                let mut len = body_len + 1;
                while len.to_string().len() + body_len != len {
                    len = len.to_string().len() + body_len;
                }
                record.extend_from_slice(len.to_string().as_bytes());
                record.extend_from_slice(b" path=");
                record.extend_from_slice(path);
                record.push(b'\n');
                let mut h = header(EntryType::XHeader, b"PaxHeader", b"", record.len() as u64, 0o644);
                h.set_cksum();
                b.append(&h, &record[..]).unwrap();
                (header(EntryType::Regular, b"placeholder", b"", 1, 0o644), b"x".to_vec())
            }
        };
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn digest(bytes: &[u8]) -> Digest {
    Digest::of_bytes(bytes)
}

/// A scratch directory laid out as `<base>/store` (the store root) next to
/// `<base>/sentinel/file`, so tests can prove nothing was written outside the store.
pub struct Sandbox {
    pub _dir: tempfile::TempDir,
    pub base: PathBuf,
    pub root: PathBuf,
    pub sentinel: PathBuf,
    before: BTreeMap<PathBuf, (u64, u32, u64)>,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let sentinel = base.join("sentinel");
        fs::create_dir(&sentinel).unwrap();
        fs::write(sentinel.join("file"), b"precious").unwrap();
        let root = base.join("store");
        let mut s = Sandbox { _dir: dir, base, root, sentinel, before: BTreeMap::new() };
        s.before = s.outside();
        s
    }

    /// Everything under `base` except the store and `archives/`: path → (size, mode, nlink).
    fn outside(&self) -> BTreeMap<PathBuf, (u64, u32, u64)> {
        let mut out = BTreeMap::new();
        walk(&self.base, &self.root, &mut out);
        out
    }

    /// Asserts nothing outside the store changed (and `/etc/flotilla-escape` does not exist).
    pub fn assert_untouched(&self) {
        assert_eq!(self.outside(), self.before, "something outside the store changed");
        assert_eq!(fs::read(self.sentinel.join("file")).unwrap(), b"precious");
        assert!(fs::symlink_metadata("/etc/flotilla-escape").is_err());
    }
}

fn walk(dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, (u64, u32, u64)>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        // The store, and the archives tests import from (written after the snapshot).
        if p == skip || p == skip.with_file_name("archives") {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap();
        out.insert(p.clone(), (m.len(), m.mode(), m.nlink()));
        if m.is_dir() {
            walk(&p, skip, out);
        }
    }
}

/// Names in a directory, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The blobs of one image: gzip layers, a config and a manifest, as a registry would serve.
#[derive(Debug, Clone)]
pub struct ImageBlobs {
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    /// Compressed layers, bottom to top.
    pub layers: Vec<Vec<u8>>,
    /// Uncompressed layers.
    pub tars: Vec<Vec<u8>>,
}

impl ImageBlobs {
    pub fn new(tars: &[Vec<u8>], arch: &str, variant: Option<&str>) -> Self {
        let diff_ids: Vec<String> = tars.iter().map(|t| digest(t).to_string()).collect();
        let mut config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {
                "Env": ["PATH=/bin"],
                "Cmd": ["/bin/sh"],
                "WorkingDir": "/",
                "ExposedPorts": {"80/tcp": {}},
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        if let Some(v) = variant {
            config["variant"] = v.into();
        }
        let config = serde_json::to_vec(&config).unwrap();
        let layers: Vec<Vec<u8>> = tars.iter().map(|t| gzip(t)).collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(&config).to_string(),
                "size": config.len(),
            },
            "layers": layers.iter().map(|l| serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest(l).to_string(),
                "size": l.len(),
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        ImageBlobs { manifest, config, layers, tars: tars.to_vec() }
    }

    pub fn manifest_digest(&self) -> Digest {
        digest(&self.manifest)
    }

    /// Every blob with its digest.
    pub fn blobs(&self) -> Vec<(Digest, Vec<u8>)> {
        let mut v = vec![
            (digest(&self.manifest), self.manifest.clone()),
            (digest(&self.config), self.config.clone()),
        ];
        v.extend(self.layers.iter().map(|l| (digest(l), l.clone())));
        v
    }
}

/// A busybox-like base layer.
pub fn base_layer() -> Vec<u8> {
    tarball(&[
        E::Dir("bin/"),
        E::FileMode("bin/busybox", b"\x7fELF fake busybox", 0o755),
        E::Hardlink("bin/sh", "bin/busybox".into()),
        E::Symlink("bin/ls", "busybox".into()),
        E::Dir("etc/"),
        E::File("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        E::DirMode("tmp/", 0o1777),
    ])
}
