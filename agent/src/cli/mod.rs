//! The agent's command line: argument definitions and dispatch of the local commands.

mod images;
mod join;
mod local;
mod private;

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
    /// Run this node's pods: those its hub assigns (--config) and/or those defined in a
    /// directory of manifests (static pods), following changes.
    #[command(group(clap::ArgGroup::new("source").required(true).multiple(true).args(["manifests", "config"])))]
    Run {
        /// The directory of pod manifests (*.yaml, *.yml, *.json, searched recursively).
        #[arg(long)]
        manifests: Option<PathBuf>,
        /// The agent configuration from `flotilla-hub node add` (broker, credentials).
        #[arg(long, env = "FLOTILLA_AGENT_CONFIG")]
        config: Option<PathBuf>,
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
        /// Image GC keeps images used, imported or pulled within this many seconds.
        #[arg(long, default_value_t = 120)]
        image_gc_min_age_seconds: u64,
        /// Keep container logs in memory, in a tmpfs of this size (a quantity: 64Mi, 1Gi)
        /// under the run directory, instead of on the state directory's disk: for devices that
        /// must not log to flash. Logs are then lost on reboot; each container's log rotates at
        /// a sixteenth of the size (at most 10 MiB), and output that does not fit is dropped.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        logs_in_memory: Option<u64>,
    },
    /// Join a hub with a token from `flotilla-hub token create`: get this node's broker
    /// credentials and write the agent configuration for `run --config`.
    Join {
        /// The hub's URL (https://host:7443; over HTTPS the token pins the hub's CA).
        #[arg(long)]
        hub: String,
        /// The join token.
        #[arg(long, env = "FLOTILLA_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// This node's name (default: the host name).
        #[arg(long)]
        node: Option<String>,
        /// Where to write the configuration (mode 0600).
        #[arg(long, default_value = "/etc/flotilla/agent.json")]
        config: PathBuf,
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
    /// Run a command in a running container with its own process settings (exec probes).
    #[command(hide = true)]
    ContainerExec {
        /// libcontainer's state root.
        #[arg(long)]
        root: PathBuf,
        /// The container's libcontainer id.
        #[arg(long)]
        id: String,
        /// Kill the command after this many milliseconds (exit code 124).
        #[arg(long)]
        timeout_ms: Option<u64>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
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

/// A size in bytes from a Kubernetes quantity (`64Mi`, `1G`, `1048576`), at least 1 MiB.
fn parse_size(s: &str) -> Result<u64, String> {
    let bytes = flotilla_shared::quantity::Quantity::new(s)
        .value()
        .map_err(|e| format!("{e} (expected a size such as 64Mi or 1Gi)"))?;
    match u64::try_from(bytes) {
        Ok(b) if b >= 1 << 20 => Ok(b),
        _ => Err(format!("{s} is not a size between 1Mi and 16Ei")),
    }
}

/// Reads the agent configuration written by `flotilla-hub node add`.
fn read_agent_config(path: &std::path::Path) -> anyhow::Result<flotilla_link::AgentConfig> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg: flotilla_link::AgentConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: not an agent configuration", path.display()))?;
    if !flotilla_shared::names::is_dns1123_label(&cfg.node) {
        anyhow::bail!("{}: node {:?} is not a DNS-1123 label", path.display(), cfg.node);
    }
    cfg.broker.parse::<flotilla_link::BrokerUrl>().with_context(|| format!("{}: broker", path.display()))?;
    Ok(cfg)
}

/// Runs a local (non-shim) command; returns the exit status.
pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Image(cmd) => images::run(&cli.state_dir.join("images"), cmd),
        Command::Run {
            manifests,
            config,
            run_dir,
            node_name,
            insecure_registries,
            docker_config,
            image_gc_high_threshold,
            image_gc_low_threshold,
            image_gc_min_age_seconds,
            logs_in_memory,
        } => {
            let image_gc = match crate::node::gc::ImageGcPolicy::new(
                image_gc_high_threshold,
                image_gc_low_threshold,
                image_gc_min_age_seconds,
            ) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e}");
                    return 2;
                }
            };
            let pull = crate::image::pull::PullConfig { insecure: insecure_registries, ..Default::default() }
                .with_docker_config(&std::fs::read_to_string(&docker_config).unwrap_or_default());
            let hub = match config.as_deref().map(read_agent_config).transpose() {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return 2;
                }
            };
            if let (Some(h), Some(n)) = (&hub, &node_name) {
                if h.node != n.to_lowercase() {
                    eprintln!(
                        "error: --node-name {n} differs from the node {} in the agent configuration",
                        h.node
                    );
                    return 2;
                }
            }
            let node_name = node_name.or_else(|| hub.as_ref().map(|h| h.node.clone())).unwrap_or_else(|| {
                nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "localhost".into())
            });
            // Private before anything lands in them (Secrets, bundles, logs).
            for dir in [&cli.state_dir, &run_dir] {
                if let Err(e) = private::ensure_private_dir(dir) {
                    eprintln!("error: {e:#}");
                    return 2;
                }
            }
            crate::node::run(crate::node::RunOptions {
                manifests,
                hub,
                paths: crate::node::paths::Paths::new(&cli.state_dir, &run_dir)
                    .with_logs_in_memory(logs_in_memory),
                node_name: node_name.to_lowercase(),
                max_rounds: None,
                pull,
                image_gc,
            })
        }
        Command::Ps => local::ps(&cli.state_dir),
        Command::Join { hub, token, node, config } => join::join(&hub, &token, node, &config),
        Command::Logs { pod, namespace, container, follow, tail } => {
            local::logs(&cli.state_dir, &namespace, &pod, container.as_deref(), follow, tail)
        }
        // Dispatched in main, before logging starts.
        Command::Shim { .. } | Command::Sandbox { .. } | Command::ContainerExec { .. } => Ok(()),
    };
    match result {
        Ok(()) => 0,
        // `flotilla-agent ps | head -1`: the reader went away on purpose, nothing to report.
        Err(e) if is_broken_pipe(&e) => BROKEN_PIPE_EXIT,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// The exit status after a write to a closed pipe: 128 + SIGPIPE, what a shell reports for a
/// program that the signal ended.
pub const BROKEN_PIPE_EXIT: i32 = 141;

/// Whether `e` is, or was caused by, a write to a closed pipe.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_are_quantities_of_at_least_a_mebibyte() {
        let cases = [("64Mi", Ok(64 << 20)), ("1G", Ok(1_000_000_000)), ("1048576", Ok(1 << 20))];
        for (text, want) in cases {
            assert_eq!(super::parse_size(text), want, "{text}");
        }
        for bad in ["", "lots", "-1Mi", "512Ki", "0"] {
            assert!(super::parse_size(bad).is_err(), "{bad}");
        }
    }
}
