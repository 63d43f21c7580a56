//! The agent's command line: argument definitions and dispatch of the local commands.

mod images;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Flotilla's device agent.
#[derive(Debug, Parser)]
#[command(name = "flotilla-agent", version, about)]
pub struct Cli {
    /// The agent's state directory (images, containers, the last desired snapshot).
    #[arg(long, global = true, env = "FLOTILLA_AGENT_STATE", default_value = "/var/lib/flotilla-agent")]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the local image store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Supervise one container (started by the agent itself; not for interactive use).
    #[command(hide = true)]
    Shim {
        /// The launch file the agent wrote.
        launch: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import images from an archive: `docker save` output or an OCI image-layout tarball.
    Import {
        /// The archive (tar, optionally gzip-compressed).
        file: PathBuf,
    },
    /// List the stored images.
    #[command(alias = "list")]
    Ls,
    /// Remove an image by reference or digest; layers no other image uses are deleted.
    Rm { reference: String },
}

/// Runs a local (non-shim) command; returns the exit status.
pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Image(cmd) => images::run(&cli.state_dir.join("images"), cmd),
        Command::Shim { .. } => Ok(()), // dispatched in main before logging starts
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
