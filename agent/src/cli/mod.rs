//! The agent's command line: argument definitions and dispatch of the local commands.

mod images;
mod local;

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
    /// Run the pods defined in a directory of manifests (static pods), following changes.
    Run {
        /// The directory of pod manifests (*.yaml, *.yml, *.json, searched recursively).
        #[arg(long)]
        manifests: PathBuf,
        /// Runtime directory for what must not survive a reboot.
        #[arg(long, default_value = "/run/flotilla-agent")]
        run_dir: PathBuf,
        /// This node's name (default: the host name).
        #[arg(long)]
        node_name: Option<String>,
        /// A registry (`host:port`) to reach over plain HTTP instead of HTTPS (repeatable).
        #[arg(long = "insecure-registry")]
        insecure_registries: Vec<String>,
        /// Registry credentials in Docker's config.json format.
        #[arg(long, default_value = "/root/.docker/config.json")]
        docker_config: PathBuf,
        /// Delete unused images when the image store's filesystem is fuller than this (percent).
        #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(0..=100))]
        image_gc_high_threshold: u8,
        /// Image GC deletes down to this usage (percent).
        #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
        image_gc_low_threshold: u8,
    },
    /// List the pods and containers this agent runs.
    Ps,
    /// Print a container's log.
    Logs {
        /// The pod's name.
        pod: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// The container (default: the pod's first container).
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Keep printing as the log grows.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// Manage the local image store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Supervise one container (started by the agent itself; not for interactive use).
    #[command(hide = true)]
    Shim {
        /// The launch file the agent wrote.
        launch: PathBuf,
    },
    /// Hold a pod's namespaces (started by the agent itself; not for interactive use).
    #[command(hide = true)]
    Sandbox {
        #[arg(long)]
        info: PathBuf,
        #[arg(long)]
        hostname: String,
        #[arg(long)]
        host_network: bool,
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
        Command::Run {
            manifests,
            run_dir,
            node_name,
            insecure_registries,
            docker_config,
            image_gc_high_threshold,
            image_gc_low_threshold,
        } => {
            let image_gc =
                match crate::node::gc::ImageGcPolicy::new(image_gc_high_threshold, image_gc_low_threshold) {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return 2;
                    }
                };
            let pull = crate::image::pull::PullConfig { insecure: insecure_registries, ..Default::default() }
                .with_docker_config(&std::fs::read_to_string(&docker_config).unwrap_or_default());
            let node_name = node_name.unwrap_or_else(|| {
                nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "localhost".into())
            });
            crate::node::run(crate::node::RunOptions {
                manifests,
                paths: crate::node::paths::Paths::new(&cli.state_dir, &run_dir),
                node_name: node_name.to_lowercase(),
                max_rounds: None,
                pull,
                image_gc,
            })
        }
        Command::Ps => local::ps(&cli.state_dir),
        Command::Logs { pod, namespace, container, follow, tail } => {
            local::logs(&cli.state_dir, &namespace, &pod, container.as_deref(), follow, tail)
        }
        // Dispatched in main, before logging starts.
        Command::Shim { .. } | Command::Sandbox { .. } => Ok(()),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
