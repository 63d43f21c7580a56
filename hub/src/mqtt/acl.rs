//! Who may do what on the broker, decided by the hub's own code (pure): the hub may do
//! anything; node X may publish only under `nodes/X/` and subscribe only to its own inbound
//! topics (`nodes/X/desired`, and `nodes/X/log-request` for `flotilla-hub logs`); dashboard
//! viewers may only read `fleet/`. Identities come from the authenticated user name, never from
//! the client id a client chooses.

use flotilla_shared::wire::topics::Topics;

/// An authenticated broker user's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The hub itself (a superuser).
    Hub,
    /// An agent, by node name.
    Node(String),
    /// A dashboard: read-only access to the fleet topics.
    Viewer,
}

/// Whether `role` may publish to `topic` (also used for last-will topics at connect).
pub fn may_publish(role: &Role, topics: &Topics, topic: &str) -> bool {
    if topic.contains(['+', '#', '\0']) || topic.starts_with('$') {
        return false;
    }
    match role {
        Role::Hub => true,
        Role::Node(node) => topic
            .strip_prefix(&topics.node_prefix(node))
            .is_some_and(|leaf| matches!(leaf, "status" | "presence" | "events") || is_log_response(leaf)),
        Role::Viewer => false,
    }
}

fn is_log_response(leaf: &str) -> bool {
    leaf.strip_prefix("logs/").is_some_and(|id| !id.is_empty() && id != "request" && !id.contains('/'))
}

/// Whether a client of `role` may connect with `client_id`. The broker keys sessions (and
/// their subscriptions) by client id, so a client taking over another's id could inherit its
/// subscriptions or cut it off: a node must use its own name, the hub ids starting with
/// `flotilla-hub`, and a viewer neither of those nor the name of any other user
/// (`names_a_user`).
pub fn may_use_client_id(role: &Role, client_id: &str, names_a_user: bool) -> bool {
    match role {
        Role::Hub => client_id.starts_with("flotilla-hub"),
        Role::Node(node) => client_id == node,
        Role::Viewer => !client_id.starts_with("flotilla-hub") && !names_a_user,
    }
}

/// Whether `role` may subscribe to `filter`.
pub fn may_subscribe(role: &Role, topics: &Topics, filter: &str) -> bool {
    if filter.contains('\0') || filter.starts_with('$') {
        // `$share/...` and `$SYS/...`: only the hub.
        return *role == Role::Hub;
    }
    match role {
        Role::Hub => true,
        Role::Node(node) => filter == topics.desired(node) || filter == topics.log_request(node),
        Role::Viewer => filter
            .strip_prefix(topics.root())
            .and_then(|rest| rest.strip_prefix("/fleet/"))
            .is_some_and(|rest| !rest.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_cannot_take_over_another_identity() {
        let pi1 = Role::Node("pi-1".into());
        assert!(may_use_client_id(&pi1, "pi-1", true));
        assert!(!may_use_client_id(&pi1, "pi-2", true), "another node's session");
        assert!(!may_use_client_id(&pi1, "flotilla-hub-1", false), "the hub's session");
        assert!(may_use_client_id(&Role::Hub, "flotilla-hub-3f2a", false));
        assert!(!may_use_client_id(&Role::Hub, "pi-1", true));
        assert!(may_use_client_id(&Role::Viewer, "grafana_17", false));
        assert!(!may_use_client_id(&Role::Viewer, "pi-1", true));
        assert!(!may_use_client_id(&Role::Viewer, "flotilla-hub-x", false));
    }

    #[test]
    fn nodes_stay_in_their_own_subtree() {
        let t = Topics::default();
        let pi = Role::Node("pi-1".into());
        let pubs = [
            ("flotilla/v1/nodes/pi-1/status", true),
            ("flotilla/v1/nodes/pi-1/presence", true),
            ("flotilla/v1/nodes/pi-1/events", true),
            ("flotilla/v1/nodes/pi-1/logs/req-7", true),
            ("flotilla/v1/nodes/pi-1/desired", false),
            ("flotilla/v1/nodes/pi-1/logs/request", false),
            ("flotilla/v1/nodes/pi-1/log-request", false),
            ("flotilla/v1/nodes/pi-1/logs/a/b", false),
            ("flotilla/v1/nodes/pi-2/status", false),
            ("flotilla/v1/nodes/pi-10/status", false),
            ("flotilla/v1/nodes/pi-1", false),
            ("flotilla/v1/fleet/nodes/pi-1", false),
            ("flotilla/v1/nodes/+/status", false),
            ("$SYS/x", false),
        ];
        for (topic, want) in pubs {
            assert_eq!(may_publish(&pi, &t, topic), want, "publish {topic}");
        }
        let subs = [
            ("flotilla/v1/nodes/pi-1/desired", true),
            ("flotilla/v1/nodes/pi-1/log-request", true),
            ("flotilla/v1/nodes/pi-1/logs/request", false),
            ("flotilla/v1/nodes/pi-2/desired", false),
            ("flotilla/v1/nodes/+/desired", false),
            ("flotilla/v1/nodes/pi-1/#", false),
            ("#", false),
            ("$share/g/flotilla/v1/nodes/pi-1/desired", false),
        ];
        for (filter, want) in subs {
            assert_eq!(may_subscribe(&pi, &t, filter), want, "subscribe {filter}");
        }
    }

    #[test]
    fn viewers_read_the_fleet_only_and_the_hub_does_anything() {
        let t = Topics::default();
        for (filter, want) in [
            ("flotilla/v1/fleet/#", true),
            ("flotilla/v1/fleet/nodes/+", true),
            ("flotilla/v1/fleet/pods/default/web", true),
            ("flotilla/v1/#", false),
            ("flotilla/v1/nodes/pi-1/desired", false),
            ("flotilla/v1/fleetx/#", false),
            ("#", false),
        ] {
            assert_eq!(may_subscribe(&Role::Viewer, &t, filter), want, "viewer subscribe {filter}");
        }
        assert!(!may_publish(&Role::Viewer, &t, "flotilla/v1/fleet/nodes/x"));
        assert!(may_publish(&Role::Hub, &t, "flotilla/v1/nodes/pi-1/desired"));
        assert!(may_subscribe(&Role::Hub, &t, "$share/hub/flotilla/v1/nodes/+/status"));
        assert!(may_subscribe(&Role::Hub, &t, "#"));
    }
}
