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
/// each node it issued credentials to only its own topics. Every rule sits in a `user` block:
/// Mosquitto applies `pattern` rules to every user, viewers included, so a `nodes/%u/...`
/// pattern would let a viewer named `dash` publish as node `dash` and read what the hub sends
/// it. Mosquitto cannot tell read from write in a deny, so the node's inbound request topic is
/// not under `logs/`, where it may write its answers (`Topics::log_request`).
pub fn acl_file(topics: &Topics, hub_user: &str, viewers: &[String], nodes: &[String]) -> String {
    let root = topics.root();
    let mut out = String::from(
        "# Written by `flotilla-hub broker-config mosquitto`; do not edit (run it again).\n\
         # Rules name the authenticated user, never the client id; no `pattern` rules, since\n\
         # Mosquitto applies those to every user.\n\n",
    );
    out.push_str(&format!("user {hub_user}\ntopic readwrite {root}/#\n\n"));
    for v in viewers {
        out.push_str(&format!("user {v}\ntopic read {root}/fleet/#\n\n"));
    }
    let mut nodes: Vec<&String> = nodes.iter().collect();
    nodes.sort();
    for node in nodes {
        out.push_str(&format!("user {node}\n"));
        for leaf in ["status", "presence", "events", "logs/+"] {
            out.push_str(&format!("topic write {}{leaf}\n", topics.node_prefix(node)));
        }
        out.push_str(&format!("topic read {}\n", topics.desired(node)));
        out.push_str(&format!("topic read {}\n\n", topics.log_request(node)));
    }
    out
}

/// A complete `mosquitto.conf` for one plain listener (put TLS in front, or add
/// `certfile`/`keyfile` to the listener, for networks you do not trust).
pub fn conf(dir: &Path, listen: SocketAddr, max_packet: u32) -> String {
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
         # The largest message Flotilla sends (a desired snapshot); anything larger is refused\n\
         # and the client disconnected, before it costs the hub memory.\n\
         max_packet_size {max_packet}\n\
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
        let acl = acl_file(&t, "flotilla-hub", &["grafana".into()], &["pi-2".into(), "pi-1".into()]);
        assert!(acl.contains("user flotilla-hub\ntopic readwrite flotilla/v1/#\n"));
        assert!(acl.contains("user grafana\ntopic read flotilla/v1/fleet/#\n\n"));
        assert!(acl.contains(
            "user pi-1\n\
             topic write flotilla/v1/nodes/pi-1/status\n\
             topic write flotilla/v1/nodes/pi-1/presence\n\
             topic write flotilla/v1/nodes/pi-1/events\n\
             topic write flotilla/v1/nodes/pi-1/logs/+\n\
             topic read flotilla/v1/nodes/pi-1/desired\n\
             topic read flotilla/v1/nodes/pi-1/log-request\n\nuser pi-2\n"
        ));
        assert!(!acl.contains("\npattern "), "patterns apply to every user, viewers too");
        assert!(!acl.contains("%c") && !acl.contains("%u"));
        let users = [
            HashedUser { name: "pi-2".into(), hash: "$6$b$c".into() },
            HashedUser { name: "flotilla-hub".into(), hash: "$6$a$b".into() },
        ];
        assert_eq!(password_file(&users), "flotilla-hub:$6$a$b\npi-2:$6$b$c\n");
        let c = conf(Path::new("/etc/flotilla/mosquitto"), "0.0.0.0:1883".parse().unwrap(), 4259840);
        assert!(c.contains("listener 1883 0.0.0.0\nuse_username_as_clientid true\n"));
        assert!(c.contains("password_file /etc/flotilla/mosquitto/passwd\n"));
        assert!(c.contains("\nmax_packet_size 4259840\n"));
    }
}
