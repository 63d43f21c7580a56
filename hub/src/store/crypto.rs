//! Encryption of Secrets at rest: ChaCha20-Poly1305 with keys from a key file in the data
//! directory (mode 0600). The first key encrypts; every key decrypts, so rotation is: add a new
//! key at the top, let `flotilla-hub rotate-secret-key` re-encrypt, then drop the old key.
//!
//! Stored form: `fenc1:<key id>:<base64(nonce ‖ ciphertext)>`.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const PREFIX: &str = "fenc1:";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("secret key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("stored secret is encrypted with key {0:?}, which is not in the key file")]
    UnknownKey(String),
    #[error("stored secret could not be decrypted (wrong key or corrupted data)")]
    Decrypt,
}

/// The keys, primary first.
pub struct KeyRing {
    keys: Vec<(String, ChaCha20Poly1305)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "KeyRing({ids:?})")
    }
}

/// Random bytes from the OS.
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS RNG failing is not recoverable for a process that must mint keys and tokens.
    getrandom::getrandom(&mut b).expect("the OS random number generator failed");
    b
}

impl KeyRing {
    /// Loads the key file, creating it with one fresh key when it does not exist. Lines are
    /// `<id>:<base64 32-byte key>`; blank lines and `#` comments are skipped.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        let err = |reason: String| CryptoError::KeyFile { path: path.display().to_string(), reason };
        if !path.exists() {
            let id = format!("k{}", time_id());
            let line = format!("{id}:{}\n", B64.encode(random::<32>()));
            write_private(path, line.as_bytes()).map_err(|e| err(e.to_string()))?;
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, b64) =
                line.split_once(':').ok_or_else(|| format!("line {}: expected <id>:<base64 key>", i + 1))?;
            let raw = B64.decode(b64.trim()).map_err(|_| format!("line {}: key is not base64", i + 1))?;
            if raw.len() != 32 {
                return Err(format!("line {}: key must be 32 bytes (got {})", i + 1, raw.len()));
            }
            if id.is_empty() || id.contains([':', ' ']) {
                return Err(format!("line {}: key id must be non-empty without ':' or spaces", i + 1));
            }
            keys.push((id.to_string(), ChaCha20Poly1305::new(Key::from_slice(&raw))));
        }
        if keys.is_empty() {
            return Err("contains no key".to_string());
        }
        Ok(KeyRing { keys })
    }

    pub fn primary_id(&self) -> &str {
        &self.keys[0].0
    }

    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        let (id, cipher) = &self.keys[0];
        let nonce = random::<12>();
        // Encryption with a valid key and a 12-byte nonce cannot fail.
        let ct = cipher.encrypt(Nonce::from_slice(&nonce), plaintext).expect("chacha20poly1305 encrypt");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        format!("{PREFIX}{id}:{}", B64.encode(blob))
    }

    pub fn is_encrypted(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }

    /// The key id a stored value was encrypted with.
    pub fn key_of(stored: &str) -> Option<&str> {
        stored.strip_prefix(PREFIX)?.split_once(':').map(|(id, _)| id)
    }

    pub fn decrypt(&self, stored: &str) -> Result<Vec<u8>, CryptoError> {
        let rest = stored.strip_prefix(PREFIX).ok_or(CryptoError::Decrypt)?;
        let (id, b64) = rest.split_once(':').ok_or(CryptoError::Decrypt)?;
        let cipher = &self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_string()))?
            .1;
        let blob = B64.decode(b64).map_err(|_| CryptoError::Decrypt)?;
        if blob.len() < 12 {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ct) = blob.split_at(12);
        cipher.decrypt(Nonce::from_slice(nonce), ct).map_err(|_| CryptoError::Decrypt)
    }
}

pub use crate::files::write_private;

fn time_id() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rotation() {
        let k1 = format!("old:{}", B64.encode([1u8; 32]));
        let k2 = format!("new:{}", B64.encode([2u8; 32]));
        let old = KeyRing::parse(&k1).unwrap();
        let sealed = old.encrypt(b"hunter2");
        assert!(KeyRing::is_encrypted(&sealed));
        assert!(!sealed.contains("hunter2"));
        assert_eq!(KeyRing::key_of(&sealed), Some("old"));
        let rotated = KeyRing::parse(&format!("{k2}\n{k1}\n")).unwrap();
        assert_eq!(rotated.decrypt(&sealed).unwrap(), b"hunter2");
        assert_eq!(KeyRing::key_of(&rotated.encrypt(b"x")), Some("new"));
        let only_new = KeyRing::parse(&k2).unwrap();
        assert!(matches!(only_new.decrypt(&sealed), Err(CryptoError::UnknownKey(_))));
    }

    #[test]
    fn tampering_is_detected() {
        let ring = KeyRing::parse(&format!("a:{}", B64.encode([7u8; 32]))).unwrap();
        let sealed = ring.encrypt(b"secret");
        let mut bytes = sealed.into_bytes();
        let n = bytes.len();
        bytes[n - 2] = if bytes[n - 2] == b'A' { b'B' } else { b'A' };
        assert!(ring.decrypt(&String::from_utf8(bytes).unwrap()).is_err());
        assert!(KeyRing::parse("a:notbase64!").is_err());
        assert!(KeyRing::parse("").is_err());
    }
}
