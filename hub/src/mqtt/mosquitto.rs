//! Configuration for an external Mosquitto broker with the same rules as the embedded one
//! (`acl.rs`): `flotilla-hub broker-config mosquitto` writes a password file, an ACL file and a
//! `mosquitto.conf`. Rules are keyed on the authenticated user name (`%u`), never on the
//! client id, and the listener replaces every client id by the user name, so no client can take
//! over another's session. Pure text generation; the CLI does the I/O.

use std::net::SocketAddr;
use std::path::Path;

use flotilla_shared::wire::topics::Topics;

/// A broker user and its password in Mosquitto's hash format (`$6$...` or `$7$...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedUser {
    pub name: String,
    pub hash: String,
}

/// The password file: `user:hash` lines, sorted by name.
pub fn password_file(users: &[HashedUser]) -> String {
    let mut users: Vec<&HashedUser> = users.iter().collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    users.iter().map(|u| format!("{}:{}\n", u.name, u.hash)).collect()
}

/// The ACL file: the hub may do anything under the root, viewers read the fleet topics, and
/// every other user (a node) only its own topics.
pub fn acl_file(topics: &Topics, hub_user: &str, viewers: &[String]) -> String {
    let root = topics.root();
    let mut out = String::from(
        "# Written by `flotilla-hub broker-config mosquitto`; do not edit (run it again).\n\
         # Rules use the authenticated user name (%u), never the client id.\n\n",
    );
    out.push_str(&format!("user {hub_user}\ntopic readwrite {root}/#\n\n"));
    for v in viewers {
        out.push_str(&format!("user {v}\ntopic read {root}/fleet/#\n\n"));
    }
    out.push_str("# Nodes: a node's user name is its node name.\n");
    for leaf in ["status", "presence", "events", "logs/+"] {
        out.push_str(&format!("pattern write {root}/nodes/%u/{leaf}\n"));
    }
    for leaf in ["desired", "logs/request"] {
        out.push_str(&format!("pattern read {root}/nodes/%u/{leaf}\n"));
    }
    out
}

/// A complete `mosquitto.conf` for one plain listener (put TLS in front, or add
/// `certfile`/`keyfile` to the listener, for networks you do not trust).
pub fn conf(dir: &Path, listen: SocketAddr) -> String {
    format!(
        "# Written by `flotilla-hub broker-config mosquitto`.\n\
         per_listener_settings false\n\
         allow_anonymous false\n\
         password_file {passwd}\n\
         acl_file {acl}\n\
         # Sessions and the ACL follow the user name; a client cannot pick another's client id.\n\
         # Retained desired states are kept in memory; after a restart the hub publishes them\n\
         # again (it notices its session is gone).\n\
         persistence false\n\
         max_inflight_messages 64\n\
         listener {port} {host}\n\
         use_username_as_clientid true\n",
        passwd = dir.join("passwd").display(),
        acl = dir.join("acl").display(),
        port = listen.port(),
        host = listen.ip(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_follow_the_embedded_brokers_rules() {
        let t = Topics::default();
        let acl = acl_file(&t, "flotilla-hub", &["grafana".into()]);
        assert!(acl.contains("user flotilla-hub\ntopic readwrite flotilla/v1/#\n"));
        assert!(acl.contains("user grafana\ntopic read flotilla/v1/fleet/#\n"));
        assert!(acl.contains("pattern read flotilla/v1/nodes/%u/desired\n"));
        assert!(acl.contains("pattern write flotilla/v1/nodes/%u/logs/+\n"));
        assert!(!acl.contains("%c"), "never the client id");
        let users = [
            HashedUser { name: "pi-2".into(), hash: "$6$b$c".into() },
            HashedUser { name: "flotilla-hub".into(), hash: "$6$a$b".into() },
        ];
        assert_eq!(password_file(&users), "flotilla-hub:$6$a$b\npi-2:$6$b$c\n");
        let c = conf(Path::new("/etc/flotilla/mosquitto"), "0.0.0.0:1883".parse().unwrap());
        assert!(c.contains("listener 1883 0.0.0.0\nuse_username_as_clientid true\n"));
        assert!(c.contains("password_file /etc/flotilla/mosquitto/passwd\n"));
    }
}
