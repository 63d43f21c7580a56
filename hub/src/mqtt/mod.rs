//! The MQTT side of the hub: the embedded broker, its users and access rules.

pub mod acl;
pub mod broker;
pub mod mosquitto;
pub mod users;
