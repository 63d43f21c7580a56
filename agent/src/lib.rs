//! flotilla-agent: runs a node's pods on the device. The runtime (images, shims, libcontainer),
//! the reconcile core and the MQTT link arrive with their issues; today the crate holds the
//! command-line surface they plug into.

use clap::Parser;

/// Flotilla's device agent.
#[derive(Debug, Parser)]
#[command(name = "flotilla-agent", version, about)]
pub struct Cli {}
