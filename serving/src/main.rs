//! `serving` entry point: parses the command line and reports errors without a panic trace.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = serving::cli::Cli::parse();
    match serving::cli::run(cli) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
