//! flotilla-agent: runs a node's pods on the device. `runtime` turns pods into OCI specs and
//! runs each container through libcontainer from a single-threaded shim. The image store, the
//! reconcile core and the MQTT link build on these.

use clap::Parser;

pub mod runtime;

/// Flotilla's device agent.
#[derive(Debug, Parser)]
#[command(name = "flotilla-agent", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Supervise one container (started by the agent itself; not for interactive use).
    #[command(hide = true)]
    Shim {
        /// The launch file the agent wrote.
        launch: std::path::PathBuf,
    },
}
