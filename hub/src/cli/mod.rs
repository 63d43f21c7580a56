//! Command-line interface of `flotilla-hub`: argument definitions and dispatch.

mod validate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Flotilla's control plane and its kubectl-like client.
#[derive(Debug, Parser)]
#[command(name = "flotilla-hub", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests offline: prints `OK <kind>/<name>` per valid object, errors otherwise.
    Validate {
        /// Files, directories (searched recursively for *.yaml, *.yml, *.json) or `-` for stdin.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
    },
    /// Print the version.
    Version,
}

/// Runs a command and returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate { files } => validate::run(&files, &mut std::io::stdout(), &mut std::io::stderr()),
        Command::Version => {
            println!("flotilla-hub {}", env!("CARGO_PKG_VERSION"));
            0
        }
    }
}
