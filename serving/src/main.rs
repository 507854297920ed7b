//! `serving` entry point: parses the command line and reports errors without a panic trace.

#![forbid(unsafe_code)]

use clap::Parser;

/// Batches of thousands of rows allocate and free megabyte buffers on every forward pass; glibc
/// serves those with fresh `mmap`s (page faults each time), mimalloc reuses them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
