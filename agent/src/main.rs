//! Entry point of `flotilla-agent`.

use clap::Parser;

fn main() {
    let _cli = flotilla_agent::Cli::parse();
    eprintln!("flotilla-agent {}: no command yet (see `--help`)", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}
