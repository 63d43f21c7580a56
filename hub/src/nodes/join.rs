//! Joining a node with a token, like k3s' secure tokens: `flotilla-hub token create` makes an
//! expiring, single-use token that carries the SHA-256 of the hub's CA certificate;
//! `flotilla-agent join --hub URL --token T` fetches the CA from `/flotilla/v1/cacerts`, checks
//! it against the token (so a man in the middle cannot pose as the hub), and then trades the
//! token for the node's own broker credentials at `/flotilla/v1/join`.
//!
//! Token: `FLT1.<ca sha256 hex, or "-" for a plain-HTTP hub>.<id>.<secret>`. The hub keeps a
//! Secret `join-<id>` in `flotilla-system` (type `flotilla.io/join-token`) with a salted hash of
//! the secret and the expiry; a join that succeeds deletes it, so a token works once.
//! The HTTP side is `api::nodes`.

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use flotilla_link::AgentConfig;
use flotilla_shared::api::Kind;
pub use flotilla_shared::join::Token;
use flotilla_shared::wire::topics::Topics;

use super::credentials::{issue, secret_name, SYSTEM_NAMESPACE};
use crate::mqtt::users::{hash_password, new_password, verify_password};
use crate::store::objects::Mode;
use crate::store::{Store, WriteOp};

pub use flotilla_shared::api::wellknown::JOIN_TOKEN_TYPE as TOKEN_TYPE;

/// SHA-256 (hex) of a CA certificate file's bytes, as the token carries it.
pub fn ca_hash(pem: &[u8]) -> String {
    Sha256::digest(pem).iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a token could not be made or a join was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoinError {
    #[error("ttlSeconds must be between 1 and a year")]
    BadTtl,
    /// Unknown, used, expired or damaged: the caller learns no more than that.
    #[error("the token is not valid (unknown, used or expired)")]
    Invalid,
    #[error("the request names no node")]
    NoNode,
    #[error("node {0} has joined already; rotate its credentials with `flotilla-hub node add {0}` or join under another name")]
    Joined(String),
    /// The hub does not accept the node (its name, say).
    #[error("{0}")]
    Refused(String),
    #[error("storing the token: {0}")]
    Store(String),
}

/// Makes a token valid for `ttl` seconds: (the token, its expiry as RFC 3339).
pub async fn create(store: &Store, ca_pem: Option<&[u8]>, ttl: u64) -> Result<(String, String), JoinError> {
    if ttl == 0 || ttl > 365 * 24 * 3600 {
        return Err(JoinError::BadTtl);
    }
    let id: String = crate::store::crypto::random::<6>().iter().map(|b| format!("{b:02x}")).collect();
    let token = Token { ca_hash: ca_pem.map(ca_hash), id: id.clone(), secret: new_password() };
    let expires = OffsetDateTime::now_utc() + time::Duration::seconds(ttl as i64);
    let expires = expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let data = json!({"id": id, "secretHash": hash_password(&token.secret), "expires": expires});
    let op = WriteOp::Put {
        kind: Kind::Secret,
        object: token_secret(&id, "stringData", data),
        mode: Mode::Create,
    };
    store.write(op, false).await.map_err(|e| JoinError::Store(e.to_string()))?;
    Ok((token.to_string(), expires))
}

/// The Secret that stands for the token `id`, with its fields under `data` (base64, as
/// stored) or `stringData`.
fn token_secret(id: &str, field: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"namespace": SYSTEM_NAMESPACE, "name": format!("join-{id}")},
        "type": TOKEN_TYPE,
        field: data,
    })
}

/// Whether `secret` matches the token Secret's hash and it has not expired.
fn valid(stored: &Value, secret: &str, now: OffsetDateTime) -> Result<(), &'static str> {
    let field = |k: &str| -> Option<String> {
        let b = stored.pointer(&format!("/data/{k}"))?.as_str()?;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).ok()?).ok()
    };
    let expires = field("expires")
        .and_then(|e| OffsetDateTime::parse(&e, &time::format_description::well_known::Rfc3339).ok())
        .ok_or("the token is damaged")?;
    if now > expires {
        return Err("the token has expired");
    }
    let hash = field("secretHash").ok_or("the token is damaged")?;
    if verify_password(&hash, secret) {
        Ok(())
    } else {
        Err("the token is not valid")
    }
}

/// Trades a token for `node`'s broker credentials: the agent's configuration (with the hub's
/// CA when its broker speaks TLS).
pub async fn join(
    store: &Store,
    broker: &str,
    topics: &Topics,
    ca_pem: Option<&[u8]>,
    token: Option<&str>,
    node: Option<&str>,
) -> Result<AgentConfig, JoinError> {
    let token = token.and_then(|t| Token::parse(t).ok()).ok_or(JoinError::Invalid)?;
    let node = node.ok_or(JoinError::NoNode)?;
    let name = format!("join-{}", token.id);
    let stored = match store.get(Kind::Secret, SYSTEM_NAMESPACE, &name).await {
        Ok(Some(s)) if s["type"] == TOKEN_TYPE => s,
        _ => return Err(JoinError::Invalid),
    };
    if let Err(why) = valid(&stored, &token.secret, OffsetDateTime::now_utc()) {
        tracing::warn!(token = token.id, why, "refused a join");
        return Err(JoinError::Invalid);
    }
    if store.get(Kind::Secret, SYSTEM_NAMESPACE, &secret_name(node)).await.ok().flatten().is_some() {
        return Err(JoinError::Joined(node.to_string()));
    }
    // Single use: whoever deletes the token Secret first gets to join. A join refused after
    // that (a name the hub does not accept) puts the token back: only a join that succeeds
    // uses it up.
    let op = WriteOp::Delete { kind: Kind::Secret, namespace: SYSTEM_NAMESPACE.into(), name };
    if store.write(op, false).await.is_err() {
        return Err(JoinError::Invalid);
    }
    match issue(store, node, broker, topics).await {
        Ok(mut cfg) => {
            if cfg.broker.starts_with("mqtts://") {
                cfg.ca_pem = ca_pem.map(|p| String::from_utf8_lossy(p).into_owned());
            }
            tracing::info!(node, token = token.id, "node joined");
            Ok(cfg)
        }
        Err(e) => {
            let again = token_secret(&token.id, "data", stored["data"].clone());
            let op = WriteOp::Put { kind: Kind::Secret, object: again, mode: Mode::Create };
            if let Err(error) = store.write(op, false).await {
                tracing::error!(token = token.id, %error, "a refused join could not give its token back");
            }
            Err(JoinError::Refused(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_and_wrong_secrets_are_refused() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let stored = |expires: &str, secret: &str| json!({"data": {"expires": b64(expires), "secretHash": b64(&hash_password(secret))}});
        let now =
            OffsetDateTime::parse("2026-01-01T00:00:00Z", &time::format_description::well_known::Rfc3339)
                .unwrap();
        assert_eq!(valid(&stored("2026-01-02T00:00:00Z", "right"), "right", now), Ok(()));
        assert_eq!(
            valid(&stored("2026-01-02T00:00:00Z", "right"), "wrong", now),
            Err("the token is not valid")
        );
        assert_eq!(
            valid(&stored("2025-12-31T00:00:00Z", "right"), "right", now),
            Err("the token has expired")
        );
        assert_eq!(ca_hash(b"x").len(), 64);
    }
}
