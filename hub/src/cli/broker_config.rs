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
use crate::files::write_private;
use crate::mqtt::mosquitto::{acl_file, conf, password_file, HashedUser};
use crate::mqtt::users::{mosquitto_hash, new_password};
use flotilla_shared::api::wellknown::{
    NODE_CREDENTIALS_TYPE as CREDENTIALS_TYPE, SYSTEM_NAMESPACE, VIEWER_CREDENTIALS_TYPE as VIEWER_TYPE,
};

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

/// The nodes' and viewers' Mosquitto users from the credentials the hub issued.
async fn issued_users(conn: &Connection) -> anyhow::Result<(Vec<HashedUser>, Vec<HashedUser>, Vec<String>)> {
    let c = Client::connect(conn)?;
    let list = c.get(&format!("/api/v1/namespaces/{SYSTEM_NAMESPACE}/secrets")).await?;
    let b64 = |v: &Value| -> Option<String> {
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v.as_str()?).ok()?).ok()
    };
    let (mut nodes, mut viewers, mut stale) = (Vec::new(), Vec::new(), Vec::new());
    for s in list["items"].as_array().into_iter().flatten() {
        let (name, into) = if s["type"] == CREDENTIALS_TYPE {
            (b64(&s["data"]["node"]), &mut nodes)
        } else if s["type"] == VIEWER_TYPE {
            (b64(&s["data"]["user"]), &mut viewers)
        } else {
            continue;
        };
        let Some(name) = name else { continue };
        match b64(&s["data"]["mosquittoHash"]) {
            Some(hash) => into.push(HashedUser { name, hash }),
            None => stale.push(name),
        }
    }
    Ok((nodes, viewers, stale))
}

pub async fn mosquitto(
    conn: &Connection,
    out: &Path,
    listen: SocketAddr,
    topic_root: &str,
) -> anyhow::Result<i32> {
    let topics = Topics::new(topic_root).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let hub_user = "flotilla-hub";
    let hub_pw = ensure_password(&out.join("hub.password"))?;
    let mut users = vec![HashedUser { name: hub_user.into(), hash: mosquitto_hash(&hub_pw) }];
    let (nodes, viewers) = match issued_users(conn).await {
        Ok((nodes, viewers, stale)) => {
            for n in stale {
                eprintln!("warning: {n}'s credentials predate Mosquitto support; issue them again (`flotilla-hub node add {n}` or `viewer add {n}`)");
            }
            (nodes, viewers)
        }
        Err(e) => {
            eprintln!("warning: cannot list the issued credentials ({e:#}): only the hub's user was written; run this again once the hub runs");
            (Vec::new(), Vec::new())
        }
    };
    let viewer_names: Vec<String> = viewers.iter().map(|v| v.name.clone()).collect();
    let node_names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let (node_count, viewer_count) = (nodes.len(), viewers.len());
    users.extend(nodes);
    users.extend(viewers);
    write_for_broker(&out.join("passwd"), &password_file(&users))?;
    write_for_broker(&out.join("acl"), &acl_file(&topics, hub_user, &viewer_names, &node_names))?;
    let conf_path = out.join("mosquitto.conf");
    write_for_broker(&conf_path, &conf(out, listen, crate::mqtt::max_packet()))?;
    outln!(
        "wrote {dir}/passwd ({node_count} node(s), {viewer_count} viewer(s) and the hub), {dir}/acl and {conf}\n\
         run:    mosquitto -c {conf}\n\
         hub:    flotilla-hub serve --broker mqtt://<this host>:{port} --broker-password-file {dir}/hub.password\n\
         after `flotilla-hub node add` or `viewer add`, run this again and reload Mosquitto (kill -HUP its pid)",
        dir = out.display(),
        conf = conf_path.display(),
        port = listen.port(),
    );
    Ok(0)
}
