//! The scanaid command line: each subcommand is a few lines of glue over the library crates.

mod bench;
mod chat_bench;
mod cli;
mod progress;
mod rules_cmd;
mod serve;
mod users_cmd;

use clap::Parser;

// The server allocates many small, short-lived values per request (headers, the event, the page);
// glibc's allocator took about a tenth of the scan benchmark's CPU, mimalloc less (see README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCANAID_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
