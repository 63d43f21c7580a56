//! The blob store: `blobs/sha256/<hex>`, written atomically and only after the content was
//! verified against the digest it is stored under.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::digest::{Digest, HashingReader};
use crate::fsutil;

/// Content-addressed blobs under one directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {expected} does not match its content: read {actual} ({size} bytes)")]
    DigestMismatch { expected: Digest, actual: Digest, size: u64 },
    #[error("blob {digest} should be {expected} bytes but is {actual}")]
    SizeMismatch { digest: Digest, expected: u64, actual: u64 },
    #[error("blob {digest} is not in the store")]
    NotFound { digest: Digest },
    #[error("blob {digest} is {size} bytes, more than the {limit} bytes allowed for this kind of blob")]
    TooLarge { digest: Digest, size: u64, limit: u64 },
    #[error("reading blob {digest}: {source}")]
    Read { digest: Digest, source: io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// What `put_blob` stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
    /// False when the blob was already present (the reader was then not consumed).
    pub written: bool,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io { path: path.to_path_buf(), source }
}

impl BlobStore {
    /// `dir` holds `sha256/`; `tmp` must be on the same filesystem (renames must be atomic).
    pub fn open(dir: &Path, tmp: &Path) -> Result<Self, BlobError> {
        let sha = dir.join("sha256");
        fs::create_dir_all(&sha).map_err(io_err(&sha))?;
        fs::create_dir_all(tmp).map_err(io_err(tmp))?;
        Ok(BlobStore { dir: dir.to_path_buf(), tmp: tmp.to_path_buf() })
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The size of a stored blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64, BlobError> {
        match fs::metadata(self.path(digest)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(BlobError::NotFound { digest: digest.clone() })
            }
            Err(e) => Err(BlobError::Io { path: self.path(digest), source: e }),
        }
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, BlobError> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => BlobError::NotFound { digest: digest.clone() },
            _ => BlobError::Io { path: path.clone(), source: e },
        })
    }

    /// Reads a whole blob that is expected to be small (a manifest or config), refusing one
    /// larger than `limit` before allocating for it.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, BlobError> {
        let size = self.blob_size(digest)?;
        if size > limit {
            return Err(BlobError::TooLarge { digest: digest.clone(), size, limit });
        }
        let mut buf = Vec::new();
        self.open_blob(digest)?
            .take(limit)
            .read_to_end(&mut buf)
            .map_err(|source| BlobError::Read { digest: digest.clone(), source })?;
        Ok(buf)
    }

    /// Streams `reader` into the store under `expected`, verifying the content hashes to it.
    pub fn put_blob(&self, reader: impl Read, expected: &Digest) -> Result<BlobInfo, BlobError> {
        self.put(reader, expected, None)
    }

    /// Like `put_blob`, also checking the length a descriptor announced. At most
    /// `expected_size + 1` bytes are read, so an endless stream cannot fill the disk.
    pub fn put_blob_sized(
        &self,
        reader: impl Read,
        expected: &Digest,
        expected_size: u64,
    ) -> Result<BlobInfo, BlobError> {
        self.put(reader, expected, Some(expected_size))
    }

    fn put(&self, reader: impl Read, expected: &Digest, size: Option<u64>) -> Result<BlobInfo, BlobError> {
        if self.has_blob(expected) {
            let actual = self.blob_size(expected)?;
            if let Some(want) = size.filter(|&s| s != actual) {
                return Err(BlobError::SizeMismatch { digest: expected.clone(), expected: want, actual });
            }
            return Ok(BlobInfo { digest: expected.clone(), size: actual, written: false });
        }
        let (tmp, file) = fsutil::create_temp_file(&self.tmp, "blob").map_err(io_err(&self.tmp))?;
        let result = self.write_verified(reader, file, &tmp, expected, size);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_verified(
        &self,
        reader: impl Read,
        mut file: File,
        tmp: &Path,
        expected: &Digest,
        size: Option<u64>,
    ) -> Result<BlobInfo, BlobError> {
        let limit = size.map_or(u64::MAX, |s| s.saturating_add(1));
        let mut hashing = HashingReader::new(reader.take(limit));
        io::copy(&mut hashing, &mut file)
            .map_err(|source| BlobError::Read { digest: expected.clone(), source })?;
        let (actual, count) = hashing.finish();
        if let Some(want) = size.filter(|&s| s != count) {
            return Err(BlobError::SizeMismatch { digest: expected.clone(), expected: want, actual: count });
        }
        if &actual != expected {
            return Err(BlobError::DigestMismatch { expected: expected.clone(), actual, size: count });
        }
        file.flush().map_err(io_err(tmp))?;
        file.sync_all().map_err(io_err(tmp))?;
        drop(file);
        let dest = self.path(expected);
        fs::rename(tmp, &dest).map_err(io_err(&dest))?;
        let dir = self.dir.join("sha256");
        fsutil::sync_dir(&dir).map_err(io_err(&dir))?;
        Ok(BlobInfo { digest: expected.clone(), size: count, written: true })
    }

    /// Deletes a blob; absent blobs are not an error.
    pub fn delete(&self, digest: &Digest) -> Result<(), BlobError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlobError::Io { path, source: e }),
        }
    }

    /// Every stored blob with its size. Files whose names are not digests are ignored.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>, BlobError> {
        let dir = self.dir.join("sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let Some(digest) = entry.file_name().to_str().and_then(|n| Digest::from_hex(n).ok()) else {
                continue;
            };
            let meta = entry.metadata().map_err(io_err(&entry.path()))?;
            if meta.is_file() {
                out.push((digest, meta.len()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Total bytes of all stored blobs.
    pub fn total_size(&self) -> Result<u64, BlobError> {
        Ok(self.list()?.iter().map(|(_, s)| s).sum())
    }
}
