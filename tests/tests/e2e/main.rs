//! Flotilla's end-to-end tests: the real `flotilla-hub` and `flotilla-agent` binaries, brokers,
//! network namespaces as hosts and real containers. One test binary with a module per area
//! (one link instead of one per file; see docs/testing.md): `cargo test -p flotilla-tests
//! --test e2e faults::` runs one area.

mod faults;
mod fleet;
mod hub;
mod hub_crash;
mod hub_requests;
mod join;
mod link;
mod pipes;
mod private_files;
mod scheduling;
mod storm;
mod structure;
mod systemd;
mod validate;
mod workloads;
