//! MQTT topic names, as functions of a configurable root (default `flotilla/v1`).
//!
//! ```text
//! {root}/nodes/{node}/desired              hub → agent   retained  CBOR DesiredSnapshot
//! {root}/nodes/{node}/status               agent → hub             CBOR StatusReport | Heartbeat
//! {root}/nodes/{node}/presence             agent → hub   retained  CBOR Presence (birth / last will)
//! {root}/nodes/{node}/events               agent → hub             CBOR Events
//! {root}/nodes/{node}/log-request          hub → agent             CBOR LogRequest
//! {root}/nodes/{node}/logs/{request_id}    agent → hub             CBOR LogChunk
//! {root}/fleet/nodes/{node}                hub → dashboards  retained  JSON
//! {root}/fleet/pods/{namespace}/{name}     hub → dashboards  retained  JSON
//! {root}/fleet/events                      hub → dashboards            JSON
//! ```

use crate::names;

pub const DEFAULT_ROOT: &str = "flotilla/v1";

/// The topic scheme under one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    root: String,
}

/// What a topic under `{root}/nodes/{node}/` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeTopic {
    Desired,
    Status,
    Presence,
    Events,
    LogRequest,
    LogResponse(String),
}

impl Default for Topics {
    fn default() -> Self {
        Topics::new(DEFAULT_ROOT).expect("the default root is valid")
    }
}

impl Topics {
    /// A root must be non-empty, without wildcards, NUL or leading/trailing `/`.
    pub fn new(root: &str) -> Result<Self, String> {
        if root.is_empty()
            || root.starts_with('/')
            || root.ends_with('/')
            || root.contains(['+', '#', '\0'])
            || root.split('/').any(str::is_empty)
        {
            return Err(format!(
                "topic root {root:?} must be non-empty, with no '+', '#', empty levels or leading/trailing '/'"
            ));
        }
        Ok(Topics { root: root.to_string() })
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    /// `{root}/nodes/{node}/`, the prefix a node may publish under.
    pub fn node_prefix(&self, node: &str) -> String {
        format!("{}/nodes/{node}/", self.root)
    }
    pub fn desired(&self, node: &str) -> String {
        format!("{}/nodes/{node}/desired", self.root)
    }
    pub fn status(&self, node: &str) -> String {
        format!("{}/nodes/{node}/status", self.root)
    }
    pub fn presence(&self, node: &str) -> String {
        format!("{}/nodes/{node}/presence", self.root)
    }
    pub fn events(&self, node: &str) -> String {
        format!("{}/nodes/{node}/events", self.root)
    }
    pub fn log_request(&self, node: &str) -> String {
        // Not under `logs/`, where the node may write: Mosquitto's ACL cannot grant a node
        // `logs/+` for its answers without also letting it write its own request topic.
        format!("{}/nodes/{node}/log-request", self.root)
    }
    pub fn log_response(&self, node: &str, request_id: &str) -> String {
        format!("{}/nodes/{node}/logs/{request_id}", self.root)
    }
    /// The hub's subscriptions: everything agents publish.
    pub fn hub_filters(&self) -> Vec<String> {
        ["status", "presence", "events", "logs/+"]
            .iter()
            .map(|t| format!("{}/nodes/+/{t}", self.root))
            .collect()
    }
    pub fn fleet_node(&self, node: &str) -> String {
        format!("{}/fleet/nodes/{node}", self.root)
    }
    pub fn fleet_pod(&self, namespace: &str, name: &str) -> String {
        format!("{}/fleet/pods/{namespace}/{name}", self.root)
    }
    pub fn fleet_events(&self) -> String {
        format!("{}/fleet/events", self.root)
    }
    /// The filter dashboards subscribe to.
    pub fn fleet_filter(&self) -> String {
        format!("{}/fleet/#", self.root)
    }

    /// Whether `id` can name a log request: it becomes a topic level, so 1 to 64 characters of
    /// `[A-Za-z0-9_-]` (no `/`, `+`, `#`), and not `request`.
    pub fn is_request_id(id: &str) -> bool {
        (1..=64).contains(&id.len())
            && id != "request"
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    /// Parses a topic under `{root}/nodes/`: which node, and which of its topics. Rejects node
    /// names that are not DNS-1123 labels.
    pub fn parse_node_topic<'a>(&self, topic: &'a str) -> Option<(&'a str, NodeTopic)> {
        let rest = topic.strip_prefix(&self.root)?.strip_prefix("/nodes/")?;
        let (node, leaf) = rest.split_once('/')?;
        if !names::is_dns1123_label(node) {
            return None;
        }
        let kind = match leaf {
            "desired" => NodeTopic::Desired,
            "status" => NodeTopic::Status,
            "presence" => NodeTopic::Presence,
            "events" => NodeTopic::Events,
            "log-request" => NodeTopic::LogRequest,
            _ => {
                let id = leaf.strip_prefix("logs/")?;
                if !Self::is_request_id(id) {
                    return None;
                }
                NodeTopic::LogResponse(id.to_string())
            }
        };
        Some((node, kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let t = Topics::default();
        assert_eq!(t.desired("pi-1"), "flotilla/v1/nodes/pi-1/desired");
        assert_eq!(t.status("pi-1"), "flotilla/v1/nodes/pi-1/status");
        assert_eq!(t.presence("pi-1"), "flotilla/v1/nodes/pi-1/presence");
        assert_eq!(t.events("pi-1"), "flotilla/v1/nodes/pi-1/events");
        assert_eq!(t.fleet_pod("default", "web"), "flotilla/v1/fleet/pods/default/web");
        let custom = Topics::new("acme/edge").unwrap();
        assert_eq!(custom.desired("n"), "acme/edge/nodes/n/desired");
    }

    #[test]
    fn request_ids_are_single_plain_levels() {
        assert!(Topics::is_request_id("0f3a-b_9"));
        for bad in ["", "request", "a/b", "a+", "#", &"x".repeat(65)] {
            assert!(!Topics::is_request_id(bad), "{bad}");
        }
    }

    #[test]
    fn roots_are_checked() {
        for bad in ["", "/a", "a/", "a/+/b", "a/#", "a//b"] {
            assert!(Topics::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topics_parse_back() {
        let t = Topics::default();
        assert_eq!(t.parse_node_topic(&t.status("n1")), Some(("n1", NodeTopic::Status)));
        assert_eq!(
            t.parse_node_topic(&t.log_response("n1", "abc")),
            Some(("n1", NodeTopic::LogResponse("abc".into())))
        );
        assert_eq!(t.parse_node_topic(&t.log_request("n1")), Some(("n1", NodeTopic::LogRequest)));
        assert_eq!(t.parse_node_topic("flotilla/v1/nodes/n1/logs/request"), None, "not an answer");
        assert_eq!(t.parse_node_topic("flotilla/v1/nodes/Bad_Node/status"), None);
        assert_eq!(t.parse_node_topic("flotilla/v1/nodes/n1/other"), None);
        assert_eq!(t.parse_node_topic("other/v1/nodes/n1/status"), None);
    }
}
