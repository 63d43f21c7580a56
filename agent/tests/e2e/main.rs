//! The agent's end-to-end tests, as root with real containers: the shim, image import,
//! registry pulls, `flotilla-agent run` with static pods, pod features and flash wear. One test
//! binary with a module per area (see docs/testing.md): `cargo test -p flotilla-agent --test
//! e2e shim::` runs one area.

mod common;

mod flash;
mod image;
mod pod_features;
mod registry;
mod run;
mod shim;
