//! Entry point of `flotilla-hub`: parse arguments, set up logging, run the chosen command, map
//! errors to an exit status.

use clap::Parser;

fn main() {
    let cli = flotilla_hub::cli::Cli::parse();
    // Logs go to stderr (journald captures it under systemd); RUST_LOG overrides the level.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    std::process::exit(flotilla_hub::cli::run(cli));
}
