//! Flotilla's shared contract: API types, manifest loading and validation, the MQTT topic
//! scheme and the CBOR wire format. No I/O runtime lives here (no tokio, rumqttc or rusqlite).

pub mod api;
pub mod cron;
pub mod image;
pub mod join;
pub mod manifest;
pub mod names;
pub mod quantity;
pub mod selector;
pub mod volume_binding;
pub mod wire;
