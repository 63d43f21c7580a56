//! flotilla-agent: runs a node's pods on the device. `image` is the content-addressed image
//! store, `runtime` turns pods into OCI specs and runs each container through libcontainer from
//! a single-threaded shim, `cli` is the command line, `node` is the agent's loop around the pure
//! `reconcile` core. `clock` and `fsutil` are the small utilities all of them share.

pub mod cli;
pub mod clock;
pub mod fsutil;
pub mod image;
pub mod node;
pub mod probe;
pub mod reconcile;
pub mod runtime;

pub use cli::{Cli, Command};
