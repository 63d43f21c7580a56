//! The broker's users: name → role and password hash, shared between the authentication hook
//! and the code that creates users (join, `mqtt-user`). Passwords are random 256-bit tokens the
//! hub generates, so a salted SHA-256 is a sound hash for them (as for Kubernetes' bootstrap
//! tokens); nothing stores or logs a password in clear.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::acl::Role;

#[derive(Debug, Clone)]
struct User {
    role: Role,
    salt: [u8; 16],
    hash: [u8; 32],
}

/// Users known to the embedded broker.
#[derive(Debug, Clone, Default)]
pub struct Users {
    inner: Arc<RwLock<HashMap<String, User>>>,
}

fn hash(salt: &[u8], password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password);
    h.finalize().into()
}

/// A fresh password: 32 random bytes, base64url.
pub fn new_password() -> String {
    B64URL.encode(crate::store::crypto::random::<32>())
}

/// The stored form of a password: `salt.hash`, both base64url.
pub fn hash_password(password: &str) -> String {
    let salt = crate::store::crypto::random::<16>();
    format!("{}.{}", B64URL.encode(salt), B64URL.encode(hash(&salt, password.as_bytes())))
}

/// The same password in Mosquitto's password-file format, `$6$<salt>$<sha512(password+salt)>`
/// (both standard base64), for `flotilla-hub broker-config mosquitto`.
pub fn mosquitto_hash(password: &str) -> String {
    use base64::engine::general_purpose::STANDARD;
    use sha2::Sha512;
    let salt = crate::store::crypto::random::<12>();
    let mut h = Sha512::new();
    h.update(password.as_bytes());
    h.update(salt);
    format!("$6${}${}", STANDARD.encode(salt), STANDARD.encode(h.finalize()))
}

/// Whether `password` matches `stored` (from `hash_password`), in constant time.
pub fn verify_password(stored: &str, password: &str) -> bool {
    let users = Users::default();
    users.insert_hashed("-", Role::Viewer, stored).is_ok()
        && users.authenticate("-", password.as_bytes()).is_some()
}

impl Users {
    /// Adds or replaces a user whose password hash is `stored` (from `hash_password`).
    pub fn insert_hashed(&self, name: &str, role: Role, stored: &str) -> Result<(), String> {
        let (salt, h) = stored.split_once('.').ok_or("a stored password is `salt.hash`")?;
        let salt: [u8; 16] = B64URL
            .decode(salt)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or("bad salt in a stored password")?;
        let hash: [u8; 32] =
            B64URL.decode(h).ok().and_then(|s| s.try_into().ok()).ok_or("bad hash in a stored password")?;
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), User { role, salt, hash });
        Ok(())
    }

    /// Adds or replaces a user with a clear-text password (kept only hashed).
    pub fn insert(&self, name: &str, role: Role, password: &str) {
        let salt = crate::store::crypto::random::<16>();
        let user = User { role, salt, hash: hash(&salt, password.as_bytes()) };
        self.inner.write().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), user);
    }

    pub fn remove(&self, name: &str) {
        self.inner.write().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    /// The role of `name` if `password` is its password.
    pub fn authenticate(&self, name: &str, password: &[u8]) -> Option<Role> {
        let users = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let u = users.get(name)?;
        let h = hash(&u.salt, password);
        // Compare without an early exit (the hash, not the password, is compared; still).
        let diff = h.iter().zip(u.hash.iter()).fold(0u8, |d, (a, b)| d | (a ^ b));
        (diff == 0).then(|| u.role.clone())
    }

    /// The role of `name`, for ACL checks on an authenticated session.
    pub fn role(&self, name: &str) -> Option<Role> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).get(name).map(|u| u.role.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_checked_against_salted_hashes() {
        let users = Users::default();
        let pw = new_password();
        users.insert_hashed("pi-1", Role::Node("pi-1".into()), &hash_password(&pw)).unwrap();
        assert_eq!(users.authenticate("pi-1", pw.as_bytes()), Some(Role::Node("pi-1".into())));
        assert_eq!(users.authenticate("pi-1", b"wrong"), None);
        assert_eq!(users.authenticate("pi-2", pw.as_bytes()), None);
        users.insert("hub", Role::Hub, "h");
        assert_eq!(users.authenticate("hub", b"h"), Some(Role::Hub));
        users.remove("pi-1");
        assert_eq!(users.authenticate("pi-1", pw.as_bytes()), None);
        assert!(users.insert_hashed("x", Role::Viewer, "nodot").is_err());
        assert_ne!(hash_password("same"), hash_password("same"), "salted");
    }
}
