//! The MQTT side of the hub: the embedded broker, its users and access rules.

pub mod acl;
pub mod broker;
pub mod budget;
pub mod mosquitto;
pub mod users;

/// The largest MQTT packet any broker of the hub's takes: a desired snapshot of the largest
/// size the wire allows, with room for the packet's header and properties.
pub fn max_packet() -> u32 {
    (flotilla_shared::wire::DEFAULT_MAX_PAYLOAD + 64 * 1024) as u32
}
