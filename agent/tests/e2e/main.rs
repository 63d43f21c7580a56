//! The agent's end-to-end tests, as root with real containers: the shim, image import,
//! registry pulls and `flotilla-agent run` with static pods. One test binary with a module per
//! area (see docs/testing.md): `cargo test -p flotilla-agent --test e2e shim::` runs one area.
//! The flash-wear and pod-feature tests stay binaries of their own (`tests/flash.rs`,
//! `tests/pod_features.rs`): their probes time out when another area's containers load the
//! machine beside them, and flash then sees the restarts' writes.

#[path = "../common/mod.rs"]
mod common;

mod image;
mod registry;
mod run;
mod shim;
