//! `flotilla-hub broker-config mosquitto`: the password, ACL and configuration files for an
//! external Mosquitto broker, from the node credentials the hub issued.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use base64::Engine;
use serde_json::Value;

use flotilla_shared::wire::topics::Topics;

use super::client::{Client, Connection};
use crate::mqtt::mosquitto::{acl_file, conf, password_file, HashedUser};
use crate::mqtt::users::{mosquitto_hash, new_password};
use crate::nodes::credentials::{CREDENTIALS_TYPE, SYSTEM_NAMESPACE};
use crate::store::crypto::write_private;

/// The password in `path`, created (mode 0600) if missing.
fn ensure_password(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(p) if !p.trim().is_empty() => Ok(p.trim().to_string()),
        Ok(_) => bail!("{} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pw = new_password();
            write_private(path, format!("{pw}\n").as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(pw)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `text` so that Mosquitto (which drops to the `mosquitto` user) can read it: mode
/// 0640, group `mosquitto` when that group exists.
fn write_for_broker(path: &Path, text: &str) -> anyhow::Result<()> {
    write_private(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    let gid = std::fs::read_to_string("/etc/group").ok().and_then(|g| {
        g.lines().find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some("mosquitto")).then(|| f.nth(1).and_then(|id| id.parse::<u32>().ok())).flatten()
        })
    });
    if let Some(gid) = gid {
        // Only root may give a file away; otherwise the file stays the caller's.
        let _ = std::os::unix::fs::chown(path, None, Some(gid));
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640))?;
    Ok(())
}

/// The nodes' Mosquitto users from the credentials the hub issued.
async fn node_users(conn: &Connection) -> anyhow::Result<(Vec<HashedUser>, Vec<String>)> {
    let c = Client::connect(conn)?;
    let list = c.get(&format!("/api/v1/namespaces/{SYSTEM_NAMESPACE}/secrets")).await?;
    let b64 = |v: &Value| -> Option<String> {
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v.as_str()?).ok()?).ok()
    };
    let (mut users, mut stale) = (Vec::new(), Vec::new());
    for s in list["items"].as_array().into_iter().flatten() {
        if s["type"] != CREDENTIALS_TYPE {
            continue;
        }
        let Some(node) = b64(&s["data"]["node"]) else { continue };
        match b64(&s["data"]["mosquittoHash"]) {
            Some(hash) => users.push(HashedUser { name: node, hash }),
            None => stale.push(node),
        }
    }
    Ok((users, stale))
}

pub async fn mosquitto(
    conn: &Connection,
    out: &Path,
    listen: SocketAddr,
    topic_root: &str,
    viewers: &[String],
) -> anyhow::Result<i32> {
    let topics = Topics::new(topic_root).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let hub_user = "flotilla-hub";
    let hub_pw = ensure_password(&out.join("hub.password"))?;
    let mut users = vec![HashedUser { name: hub_user.into(), hash: mosquitto_hash(&hub_pw) }];
    let nodes = match node_users(conn).await {
        Ok((nodes, stale)) => {
            for n in stale {
                eprintln!("warning: node {n}'s credentials predate Mosquitto support; run `flotilla-hub node add {n}` again to rotate them (and give the agent the new file)");
            }
            nodes
        }
        Err(e) => {
            eprintln!("warning: cannot list the nodes' credentials ({e:#}): only the hub's user was written; run this again once the hub runs");
            Vec::new()
        }
    };
    for v in viewers {
        if !flotilla_shared::names::is_dns1123_label(v) || v.starts_with("flotilla-hub") {
            bail!("viewer name {v:?} must be a DNS-1123 label not starting with flotilla-hub");
        }
        if nodes.iter().any(|n| &n.name == v) {
            bail!("viewer name {v:?} is a node's name");
        }
        let pw = ensure_password(&out.join(format!("{v}.password")))?;
        users.push(HashedUser { name: v.clone(), hash: mosquitto_hash(&pw) });
    }
    let node_count = nodes.len();
    users.extend(nodes);
    write_for_broker(&out.join("passwd"), &password_file(&users))?;
    write_for_broker(&out.join("acl"), &acl_file(&topics, hub_user, viewers))?;
    let conf_path = out.join("mosquitto.conf");
    write_for_broker(&conf_path, &conf(out, listen))?;
    println!(
        "wrote {dir}/passwd ({node_count} node(s), {} viewer(s) and the hub), {dir}/acl and {conf}\n\
         run:    mosquitto -c {conf}\n\
         hub:    flotilla-hub serve --broker mqtt://<this host>:{port} --broker-password-file {dir}/hub.password\n\
         after `flotilla-hub node add`, run this again and reload Mosquitto (kill -HUP its pid)",
        viewers.len(),
        dir = out.display(),
        conf = conf_path.display(),
        port = listen.port(),
    );
    Ok(0)
}
