//! Entry point of `flotilla-agent`. The `shim` command is dispatched before anything else runs:
//! it must stay single-threaded for libcontainer.

use clap::Parser;
use flotilla_agent::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    // The shim's logging also runs inside the container's init (libcontainer forks it), where
    // stderr is the container's: keep it to errors unless FLOTILLA_SHIM_LOG asks for more.
    let filter = match &cli.command {
        Command::Shim { .. } | Command::ContainerExec { .. } => tracing_subscriber::EnvFilter::new(
            std::env::var("FLOTILLA_SHIM_LOG").unwrap_or_else(|_| "error".into()),
        ),
        _ => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let code = match &cli.command {
        Command::Shim { launch } => match flotilla_agent::runtime::shim::run(launch) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("flotilla-agent shim: {e:#}");
                1
            }
        },
        Command::ContainerExec { root, id, timeout_ms, command } => flotilla_agent::runtime::exec::run(
            root,
            id,
            timeout_ms.map(std::time::Duration::from_millis),
            command,
        ),
        Command::Sandbox { info, hostname, host_network } => {
            match flotilla_agent::runtime::sandbox::run(info, hostname, *host_network) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("flotilla-agent sandbox: {e:#}");
                    1
                }
            }
        }
        _ => flotilla_agent::cli::run(cli),
    };
    std::process::exit(code);
}
