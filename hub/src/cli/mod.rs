//! Command-line interface of `flotilla-hub`: the server (`serve`), offline tools (`validate`,
//! `backup`) and the kubectl-like client verbs. Argument definitions and dispatch live here;
//! each verb has its own module.

// First: its `outln!` and `out!` are for the verbs below.
#[macro_use]
mod output;
mod apply;
mod broker_config;
mod client;
mod drain;
mod get;
pub mod print;
mod rollout;
mod validate;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::serve;
pub use client::{Client, Connection};

/// Flotilla's control plane and its kubectl-like client.
#[derive(Debug, Parser)]
#[command(name = "flotilla-hub", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// How the client verbs reach the hub.
#[derive(Debug, Args)]
pub struct Global {
    /// The hub's URL (default: from the data directory's client.json, else http://127.0.0.1:7443).
    #[arg(long, global = true, env = "FLOTILLA_SERVER")]
    pub server: Option<String>,
    /// Bearer token (default: the admin token in the data directory).
    #[arg(long, global = true, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for an HTTPS hub.
    #[arg(long = "certificate-authority", global = true)]
    pub ca_file: Option<PathBuf>,
    /// The hub's data directory (default: $FLOTILLA_DATA_DIR, /var/lib/flotilla-hub for root,
    /// ~/.local/share/flotilla-hub otherwise).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
}

impl Global {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(serve::default_data_dir)
    }
    fn connection(&self) -> Connection {
        Connection {
            server: self.server.clone(),
            token: self.token.clone(),
            ca_file: self.ca_file.clone(),
            data_dir: self.data_dir(),
        }
    }
}

// Parsed once per process: the size of the `serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: store, API (and, as they land, scheduler, controllers and broker).
    Serve {
        /// Address to listen on; loopback by default.
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: std::net::SocketAddr,
        /// PEM certificate chain for HTTPS.
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// PEM private key for HTTPS.
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// PEM certificate of the CA that signed --tls-cert; recorded in the data directory so
        /// CLIs on this machine trust the hub without --certificate-authority.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// Largest accepted request body, in bytes.
        #[arg(long, default_value_t = crate::api::DEFAULT_BODY_LIMIT)]
        max_body_bytes: usize,
        /// The embedded MQTT broker's listener (plain MQTT; loopback by default).
        #[arg(long, default_value = "127.0.0.1:1883")]
        mqtt_listen: std::net::SocketAddr,
        /// Also listen for MQTT over TLS here (uses --tls-cert and --tls-key).
        #[arg(long)]
        mqtt_tls_listen: Option<std::net::SocketAddr>,
        /// Use this broker (mqtt://host:port or mqtts://host:port) instead of the embedded one.
        #[arg(long)]
        broker: Option<String>,
        /// The hub's user name on the external broker.
        #[arg(long, default_value = "flotilla-hub", requires = "broker")]
        broker_username: String,
        /// A file holding the hub's password on the external broker.
        #[arg(long, requires = "broker")]
        broker_password_file: Option<PathBuf>,
        /// PEM CA certificate(s) of the external broker (mqtts://).
        #[arg(long, requires = "broker")]
        broker_ca: Option<PathBuf>,
        /// The broker URL agents are told to use (default: the broker the hub uses).
        #[arg(long)]
        advertise_broker: Option<String>,
        /// Seconds without a report after which a node is NotReady.
        #[arg(long, default_value_t = 40)]
        node_grace_seconds: u64,
        /// Seconds a pod stays on a node that is not Ready before it is replaced on another
        /// node (pods' own NoExecute tolerations take precedence).
        #[arg(long, default_value_t = 300)]
        not_ready_toleration_seconds: u64,
        /// The root of every MQTT topic (agents get it in their configuration).
        #[arg(long, default_value = flotilla_shared::wire::topics::DEFAULT_ROOT)]
        topic_root: String,
    },
    /// Manage nodes: `node add NAME` issues a node's broker credentials and prints its agent
    /// configuration (for `flotilla-agent run --config`).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Create or update objects from files, directories or stdin (`-`).
    Apply {
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Validate and show what would happen without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// List objects, or show one.
    Get(get::GetArgs),
    /// Show an object in detail, with its recent events.
    Describe {
        kind: String,
        name: String,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Delete objects named in files, or by kind and name.
    Delete {
        /// KIND NAME... (when not using -f).
        args: Vec<String>,
        #[arg(short = 'f', long = "filename", num_args = 1..)]
        files: Vec<PathBuf>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Set the replica count of a Deployment or StatefulSet (`scale deployment/web --replicas 3`
    /// or `scale deployment web --replicas 3`).
    Scale {
        /// KIND/NAME, or KIND NAME.
        #[arg(required = true, num_args = 1..=2)]
        target: Vec<String>,
        #[arg(long, required = true)]
        replicas: u32,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Follow, list, undo, restart, pause or resume rollouts (`rollout status deployment/web`).
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// Mark nodes unschedulable: running pods stay, new pods go elsewhere.
    Cordon {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Mark nodes schedulable again.
    Uncordon {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Cordon a node and evict its pods (their controllers recreate them on other nodes).
    Drain {
        node: String,
        /// Leave DaemonSet pods in place (without it, they stop the drain).
        #[arg(long)]
        ignore_daemonsets: bool,
        /// Also evict pods that no controller will recreate.
        #[arg(long)]
        force: bool,
        /// How long to wait for the pods to be gone: seconds, or a number with s, m, h or d.
        #[arg(long, default_value = "5m", value_parser = parse_ttl)]
        timeout: u64,
    },
    /// Print a container's log, fetched from its node through MQTT.
    Logs {
        pod: String,
        /// The container (needed when the pod has several).
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Keep streaming new output.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<u64>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Dashboard users of the broker: `viewer add NAME` issues (or rotates) credentials that
    /// may read the JSON fleet topics and nothing else.
    #[command(subcommand)]
    Viewer(ViewerCommand),
    /// Join tokens for `flotilla-agent join`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write the configuration of an external broker from the hub's users and rules.
    #[command(subcommand)]
    BrokerConfig(BrokerConfigCommand),
    /// Create a namespace, configmap or generic secret from the command line.
    Create(apply::CreateArgs),
    /// Health of the control-plane components.
    Status,
    /// Client and server versions.
    Version,
    /// Check manifests offline: prints `OK <kind>/<name>` per valid object, errors otherwise.
    Validate {
        /// Files, directories (searched recursively for *.yaml, *.yml, *.json) or `-` for stdin.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
    },
    /// Write a consistent copy of the hub's database (safe while the hub runs).
    Backup {
        /// The file to create.
        file: PathBuf,
    },
    /// Print a shell completion script.
    Completion { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
pub enum ViewerCommand {
    /// Issue (or rotate) a dashboard user's broker credentials; prints them as JSON.
    Add {
        name: String,
        /// Write them to this file (mode 0600) instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a single-use join token; prints it (it carries the hash of the hub's CA, which
    /// the agent checks before trusting the hub).
    Create {
        /// How long the token stays valid: seconds, or a number with s, m, h or d.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: u64,
    },
}

/// `90`, `90s`, `15m`, `24h`, `7d` → seconds.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 24h or 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(|| format!("{s:?} is out of range"))
}

#[derive(Debug, Subcommand)]
pub enum BrokerConfigCommand {
    /// Mosquitto: `passwd`, `acl` and `mosquitto.conf` in a directory, plus the hub's broker
    /// password (`hub.password`). Run again after `node add` or `viewer add`.
    Mosquitto {
        /// The directory to write to.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// Where Mosquitto should listen.
        #[arg(long, default_value = "0.0.0.0:1883")]
        listen: std::net::SocketAddr,
        /// The topic root, as given to `serve --topic-root`.
        #[arg(long, default_value = flotilla_shared::wire::topics::DEFAULT_ROOT)]
        topic_root: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Issue (or rotate) a node's broker credentials and print its agent configuration.
    Add {
        name: String,
        /// Write the configuration to this file (mode 0600) instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
}

async fn node_add(conn: &client::Connection, name: &str, output: Option<PathBuf>) -> anyhow::Result<i32> {
    issue_credentials(conn, "nodes", name, output).await
}

/// Issues node or viewer credentials and prints or writes them.
async fn issue_credentials(
    conn: &client::Connection,
    what: &str,
    name: &str,
    output: Option<PathBuf>,
) -> anyhow::Result<i32> {
    // The file first: issuing makes a new password (rotating the old one), which is lost if
    // it cannot be written afterwards.
    let file = output.as_deref().map(output::OutputFile::create).transpose()?;
    let c = Client::connect(conn)?;
    let written =
        c.write(reqwest::Method::POST, &format!("/flotilla/v1/{what}/{name}/credentials"), None).await?;
    let text = serde_json::to_string_pretty(&written.object)?;
    match file {
        Some(file) => {
            let path = file.path().to_path_buf();
            file.commit(format!("{text}\n").as_bytes()).with_context(|| {
                format!("the {what}/{name} credentials were issued but not saved; issue them again")
            })?;
            eprintln!("{what}/{name} credentials written to {}", path.display());
        }
        None => outln!("{text}"),
    }
    Ok(0)
}

/// Runs a command and returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate { files } => validate::run(&files, &mut std::io::stdout(), &mut std::io::stderr()),
        Command::Completion { shell } => {
            // Generated into memory: clap_complete panics when its writer fails.
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "flotilla-hub", &mut script);
            match output::stdout_bytes(&script) {
                Ok(()) => 0,
                Err(e) => fail(&e.into()),
            }
        }
        Command::Backup { file } => {
            let db = cli.global.data_dir().join("flotilla.db");
            let backup = || -> anyhow::Result<()> {
                crate::store::schema::backup(&db, &file)?;
                outln!("backup written to {} (integrity check ok)", file.display());
                Ok(())
            };
            match backup() {
                Ok(()) => 0,
                Err(e) => fail(&e),
            }
        }
        command => {
            let runtime =
                match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                    Ok(r) => r,
                    Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
                };
            match runtime.block_on(run_async(&cli.global, command)) {
                Ok(code) => code,
                Err(e) => fail(&e),
            }
        }
    }
}

/// Prints the error and returns the exit status for it; a closed standard output is not worth
/// a message (the reader went away on purpose).
fn fail(e: &anyhow::Error) -> i32 {
    if output::is_broken_pipe(e) {
        return output::BROKEN_PIPE_EXIT;
    }
    eprintln!("error: {e:#}");
    1
}

async fn run_async(global: &Global, command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Serve {
            listen,
            tls_cert,
            tls_key,
            tls_ca,
            max_body_bytes,
            mqtt_listen,
            mqtt_tls_listen,
            broker,
            broker_username,
            broker_password_file,
            broker_ca,
            advertise_broker,
            node_grace_seconds,
            not_ready_toleration_seconds,
            topic_root,
        } => {
            let external = match broker {
                Some(url) => {
                    let password = match &broker_password_file {
                        Some(f) => std::fs::read_to_string(f)
                            .map_err(|e| anyhow::anyhow!("reading {}: {e}", f.display()))?
                            .trim()
                            .to_string(),
                        None => String::new(),
                    };
                    Some(serve::ExternalBroker { url, username: broker_username, password, ca: broker_ca })
                }
                None => None,
            };
            let opts = serve::ServeOptions {
                data_dir: global.data_dir(),
                listen,
                tls_cert,
                tls_key,
                tls_ca,
                body_limit: max_body_bytes,
                mqtt: serve::MqttServeOptions {
                    listen: Some(mqtt_listen),
                    tls_listen: mqtt_tls_listen,
                    external,
                    advertise: advertise_broker,
                    node_grace: std::time::Duration::from_secs(node_grace_seconds),
                    topic_root,
                },
                controllers: crate::controllers::Settings {
                    not_ready_toleration: std::time::Duration::from_secs(not_ready_toleration_seconds),
                },
            };
            serve::serve(opts, serve::shutdown_signal()).await?;
            Ok(0)
        }
        Command::Apply { files, dry_run } => apply::apply(&global.connection(), &files, dry_run).await,
        Command::Get(args) => get::get(&global.connection(), args).await,
        Command::Describe { kind, name, namespace } => {
            get::describe(&global.connection(), &kind, &name, namespace).await
        }
        Command::Delete { args, files, namespace } => {
            apply::delete(&global.connection(), &args, &files, namespace).await
        }
        Command::Create(args) => apply::create(&global.connection(), args).await,
        Command::Scale { target, replicas, namespace } => {
            drain::scale(&global.connection(), &target, replicas, namespace).await
        }
        Command::Rollout(cmd) => rollout::run(&global.connection(), cmd).await,
        Command::Cordon { nodes } => drain::cordon(&global.connection(), &nodes, true).await,
        Command::Uncordon { nodes } => drain::cordon(&global.connection(), &nodes, false).await,
        Command::Drain { node, ignore_daemonsets, force, timeout } => {
            drain::drain(
                &global.connection(),
                &node,
                ignore_daemonsets,
                force,
                std::time::Duration::from_secs(timeout),
            )
            .await
        }
        Command::Viewer(ViewerCommand::Add { name, output }) => {
            issue_credentials(&global.connection(), "viewers", &name, output).await
        }
        Command::Token(TokenCommand::Create { ttl }) => {
            let c = Client::connect(&global.connection())?;
            let body = serde_json::json!({ "ttlSeconds": ttl });
            let written = c.write(reqwest::Method::POST, "/flotilla/v1/tokens", Some(&body)).await?;
            let token = written.object["token"].as_str().unwrap_or_default();
            outln!("{token}");
            eprintln!("valid once, until {}", written.object["expires"].as_str().unwrap_or("?"));
            if token.starts_with("FLT1.-.") {
                eprintln!("warning: this hub serves plain HTTP, so agents cannot verify it; serve with --tls-cert, --tls-key and --tls-ca");
            }
            Ok(0)
        }
        Command::BrokerConfig(BrokerConfigCommand::Mosquitto { out, listen, topic_root }) => {
            broker_config::mosquitto(&global.connection(), &out, listen, &topic_root).await
        }
        Command::Logs { pod, container, follow, tail, namespace } => {
            let ns = namespace.unwrap_or_else(|| "default".into());
            let mut query = vec![format!("follow={follow}")];
            query.extend(container.map(|c| format!("container={c}")));
            query.extend(tail.map(|t| format!("tailLines={t}")));
            let path = format!("/api/v1/namespaces/{ns}/pods/{pod}/log?{}", query.join("&"));
            let c = Client::connect(&global.connection())?;
            c.copy_to(&path, &mut std::io::stdout().lock()).await?;
            Ok(0)
        }
        Command::Status => get::status(&global.connection()).await,
        Command::Node(NodeCommand::Add { name, output }) => {
            node_add(&global.connection(), &name, output).await
        }
        Command::Version => {
            outln!("Client Version: v{}", env!("CARGO_PKG_VERSION"));
            match Client::connect(&global.connection()) {
                Ok(c) => match c.get("/version").await {
                    Ok(v) => outln!(
                        "Server Version: {}",
                        v.get("gitVersion").and_then(|s| s.as_str()).unwrap_or("unknown")
                    ),
                    Err(e) => outln!("Server Version: unreachable ({e:#})"),
                },
                Err(e) => outln!("Server Version: unknown ({e:#})"),
            }
            Ok(0)
        }
        Command::Validate { .. } | Command::Backup { .. } | Command::Completion { .. } => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttls_take_units() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("24h"), Ok(86_400));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("1w").unwrap_err().contains("unit"));
        assert!(parse_ttl("h").is_err());
    }
}
