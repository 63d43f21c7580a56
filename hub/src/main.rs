//! Entry point of `flotilla-hub`: parse arguments, run the chosen command, map errors to an exit
//! status.

use clap::Parser;

fn main() {
    let cli = flotilla_hub::cli::Cli::parse();
    std::process::exit(flotilla_hub::cli::run(cli));
}
