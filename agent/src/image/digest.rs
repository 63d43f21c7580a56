//! Content digests (`sha256:<64 hex>`) and a reader that hashes what passes through it.

use std::fmt;
use std::io::{self, Read};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// The digest of a blob. Only sha256 is supported: it is what every registry and builder emits,
/// and refusing the rest up front beats storing blobs we could never verify.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("{input:?} is not a digest: expected sha256:<64 lowercase hex digits>")]
    Malformed { input: String },
    #[error("digest {input:?} uses {algorithm:?}; only sha256 is supported")]
    Unsupported { input: String, algorithm: String },
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(input: &str) -> Result<Self, DigestError> {
        let malformed = || DigestError::Malformed { input: input.to_string() };
        let (algorithm, hex) = input.split_once(':').ok_or_else(malformed)?;
        let algo_ok = !algorithm.is_empty()
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
        if !algo_ok {
            return Err(malformed());
        }
        if algorithm != "sha256" {
            return Err(DigestError::Unsupported {
                input: input.to_string(),
                algorithm: algorithm.to_string(),
            });
        }
        Self::from_hex(hex).map_err(|_| malformed())
    }

    /// A sha256 digest from its 64 lowercase hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Digest { hex: hex.to_string() })
        } else {
            Err(DigestError::Malformed { input: hex.to_string() })
        }
    }

    /// The sha256 digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Self {
        let out = hasher.finalize();
        let mut hex = String::with_capacity(64);
        for b in out {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        Digest { hex }
    }

    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// The hex part, which is also the file name under `sha256/`.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl std::str::FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl TryFrom<&libcontainer::oci_spec::image::Digest> for Digest {
    type Error = DigestError;
    fn try_from(d: &libcontainer::oci_spec::image::Digest) -> Result<Self, Self::Error> {
        Digest::parse(d.as_ref())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Hashes (sha256) and counts every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), count: 0 }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest and length of everything read so far.
    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_hasher(self.hasher), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        // `n <= buf.len()` is `Read`'s contract; `get` keeps a broken reader from panicking us.
        let chunk = buf.get(..n).unwrap_or_default();
        self.hasher.update(chunk);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_table() {
        let ok = format!("sha256:{EMPTY}");
        let cases: &[(&str, Result<(), &str>)] = &[
            (&ok, Ok(())),
            ("sha256:ABC", Err("malformed")),
            (&format!("sha256:{}", EMPTY.to_uppercase()), Err("malformed")),
            (&format!("sha256:{}0", EMPTY), Err("malformed")),
            (&format!("sha512:{EMPTY}{EMPTY}"), Err("unsupported")),
            (&format!("blake3:{EMPTY}"), Err("unsupported")),
            (EMPTY, Err("malformed")),
            ("", Err("malformed")),
            (":", Err("malformed")),
            (&format!("SHA256:{EMPTY}"), Err("malformed")),
        ];
        for (input, want) in cases {
            let got = Digest::parse(input).map(|_| ()).map_err(|e| match e {
                DigestError::Malformed { .. } => "malformed",
                DigestError::Unsupported { .. } => "unsupported",
            });
            assert_eq!(&got, want, "{input}");
        }
    }

    #[test]
    fn hashing_and_display() {
        assert_eq!(Digest::of_bytes(b"").to_string(), format!("sha256:{EMPTY}"));
        let mut r = HashingReader::new(&b"hello"[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        let (d, n) = r.finish();
        assert_eq!((d, n), (Digest::of_bytes(b"hello"), 5));
        let json = serde_json::to_string(&Digest::of_bytes(b"")).unwrap();
        assert_eq!(json, format!("\"sha256:{EMPTY}\""));
        assert!(serde_json::from_str::<Digest>("\"md5:00\"").is_err());
    }
}
