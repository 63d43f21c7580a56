//! Node credentials for the broker: one Secret per node in `flotilla-system` (type
//! `flotilla.io/node-credentials`, holding only a salted hash), loaded into the embedded
//! broker's users and kept in sync with the store. `issue` makes a fresh password and the
//! agent's configuration (`POST /flotilla/v1/nodes/{name}/credentials`, in `api::nodes`).

use base64::Engine;
use serde_json::{json, Value};

use flotilla_link::AgentConfig;
use flotilla_shared::api::Kind;
use flotilla_shared::selector::LabelSelector;
use flotilla_shared::wire::topics::Topics;

use crate::mqtt::acl::Role;
use crate::mqtt::users::{hash_password, mosquitto_hash, new_password, Users};
use crate::store::objects::Mode;
use crate::store::{ChangeOp, Store, WriteOp};

pub use flotilla_shared::api::wellknown::{
    NODE_CREDENTIALS_TYPE as CREDENTIALS_TYPE, SYSTEM_NAMESPACE, VIEWER_CREDENTIALS_TYPE as VIEWER_TYPE,
};

pub fn viewer_secret_name(user: &str) -> String {
    format!("viewer-{user}-mqtt")
}

pub fn secret_name(node: &str) -> String {
    format!("node-{node}-mqtt")
}

/// A field of a stored Secret (`data` is base64).
pub fn secret_field(secret: &Value, k: &str) -> Option<String> {
    let b = secret.pointer(&format!("/data/{k}"))?.as_str()?;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).ok()?).ok()
}

/// (user, password hash, role) from a node or viewer credentials Secret as stored.
fn parse(secret: &Value) -> Option<(String, String, Role)> {
    if secret.pointer("/metadata/namespace").and_then(Value::as_str) != Some(SYSTEM_NAMESPACE) {
        return None;
    }
    match secret.pointer("/type").and_then(Value::as_str)? {
        CREDENTIALS_TYPE => {
            let node = secret_field(secret, "node")?;
            Some((node.clone(), secret_field(secret, "passwordHash")?, Role::Node(node)))
        }
        VIEWER_TYPE => {
            Some((secret_field(secret, "user")?, secret_field(secret, "passwordHash")?, Role::Viewer))
        }
        _ => None,
    }
}

/// Loads every node's credentials into `users`, then follows changes.
pub async fn sync_users(store: Store, users: Users) {
    let mut feed = store.subscribe();
    match store.list(Kind::Secret, Some(SYSTEM_NAMESPACE), &LabelSelector::default()).await {
        Ok((secrets, _)) => {
            for s in &secrets {
                if let Some((user, hash, role)) = parse(s) {
                    if let Err(e) = users.insert_hashed(&user, role, &hash) {
                        tracing::warn!(user, error = e, "unreadable broker credentials");
                    }
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "loading node credentials"),
    }
    loop {
        let change = match feed.recv().await {
            Ok(c) => c,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        if change.kind != Kind::Secret || change.namespace != SYSTEM_NAMESPACE {
            continue;
        }
        if let Some((user, hash, role)) = parse(&change.object) {
            if change.op == ChangeOp::Deleted {
                users.remove(&user);
            } else if let Err(e) = users.insert_hashed(&user, role, &hash) {
                tracing::warn!(user, error = e, "unreadable broker credentials");
            }
        }
    }
}

/// Whether the hub issued broker credentials to `node` (and they are still there).
pub async fn issued(store: &Store, node: &str) -> bool {
    match store.get(Kind::Secret, SYSTEM_NAMESPACE, &secret_name(node)).await {
        Ok(Some(s)) => s.pointer("/type").and_then(Value::as_str) == Some(CREDENTIALS_TYPE),
        _ => false,
    }
}

/// Stores a fresh password's hashes (ours and Mosquitto's) in the Secret `name` of type `type_`,
/// with `fields` (who the user is); returns the password.
async fn store_password(store: &Store, name: String, type_: &str, fields: Value) -> Result<String, String> {
    ensure_namespace(store).await?;
    let password = new_password();
    let mut data = fields;
    data["passwordHash"] = hash_password(&password).into();
    // The Mosquitto form serves `flotilla-hub broker-config mosquitto` (external broker).
    data["mosquittoHash"] = mosquitto_hash(&password).into();
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": SYSTEM_NAMESPACE, "name": name},
        "type": type_,
        "stringData": data,
    });
    store
        .write(WriteOp::Put { kind: Kind::Secret, object: secret, mode: Mode::Apply }, false)
        .await
        .map_err(|e| format!("storing the credentials: {e}"))?;
    Ok(password)
}

/// Creates (or rotates) a node's credentials; returns the configuration for its agent.
pub async fn issue(store: &Store, node: &str, broker: &str, topics: &Topics) -> Result<AgentConfig, String> {
    if !flotilla_shared::names::is_dns1123_label(node) {
        return Err(format!(
            "node name {node:?} must be a DNS-1123 label (lower case, digits, '-', at most 63)"
        ));
    }
    if node.starts_with("flotilla-hub") {
        return Err(format!("node name {node:?}: names starting with flotilla-hub are the hub's own"));
    }
    if store.get(Kind::Secret, SYSTEM_NAMESPACE, &viewer_secret_name(node)).await.ok().flatten().is_some() {
        return Err(format!(
            "{node:?} is a viewer's name (broker user names are shared by nodes and viewers)"
        ));
    }
    let password = store_password(store, secret_name(node), CREDENTIALS_TYPE, json!({"node": node})).await?;
    Ok(AgentConfig {
        node: node.to_string(),
        broker: broker.to_string(),
        username: node.to_string(),
        password,
        topic_root: topics.root().to_string(),
        ca_pem: None,
    })
}

/// Creates (or rotates) a dashboard user's credentials: read-only access to the fleet topics.
pub async fn issue_viewer(store: &Store, user: &str, broker: &str, topics: &Topics) -> Result<Value, String> {
    if !flotilla_shared::names::is_dns1123_label(user) || user.starts_with("flotilla-hub") {
        return Err(format!("viewer name {user:?} must be a DNS-1123 label not starting with flotilla-hub"));
    }
    if store.get(Kind::Secret, SYSTEM_NAMESPACE, &secret_name(user)).await.ok().flatten().is_some() {
        return Err(format!("{user:?} is a node's name (broker user names are shared by nodes and viewers)"));
    }
    let password =
        store_password(store, viewer_secret_name(user), VIEWER_TYPE, json!({"user": user})).await?;
    Ok(json!({
        "broker": broker,
        "username": user,
        "password": password,
        "topics": topics.fleet_filter(),
    }))
}

/// Creates the hub's own namespace if missing.
pub async fn ensure_namespace(store: &Store) -> Result<(), String> {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NAMESPACE}});
    store
        .write(WriteOp::Put { kind: Kind::Namespace, object: ns, mode: Mode::Apply }, false)
        .await
        .map(|_| ())
        .map_err(|e| format!("creating namespace {SYSTEM_NAMESPACE}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_credentials_secrets_in_the_system_namespace_count() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let secret = |ns: &str, ty: &str| {
            json!({"metadata": {"namespace": ns, "name": "node-pi-1-mqtt"}, "type": ty,
                   "data": {"node": b64("pi-1"), "passwordHash": b64("s.h")}})
        };
        assert_eq!(
            parse(&secret(SYSTEM_NAMESPACE, CREDENTIALS_TYPE)),
            Some(("pi-1".into(), "s.h".into(), Role::Node("pi-1".into())))
        );
        let viewer = json!({"metadata": {"namespace": SYSTEM_NAMESPACE}, "type": VIEWER_TYPE,
                            "data": {"user": b64("grafana"), "passwordHash": b64("s.h")}});
        assert_eq!(parse(&viewer), Some(("grafana".into(), "s.h".into(), Role::Viewer)));
        assert_eq!(parse(&secret("default", CREDENTIALS_TYPE)), None, "any user can write in default");
        assert_eq!(parse(&secret(SYSTEM_NAMESPACE, "Opaque")), None);
    }
}
