//! `herald`: the server (`serve`), the offline integrity check (`check`), and
//! a client for the HTTP API (`publish`, `events`, `tail`).

mod args;
mod client;
mod commands;
mod config_file;

use std::ffi::OsString;

use clap::{CommandFactory, Parser};

/// mimalloc: the publish path allocates per request on every worker thread,
/// where glibc's malloc showed up at ~8% of the server's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use args::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = parse_command_line();
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => commands::serve::run(args).await,
            Command::Check(args) => commands::check::run(args),
            Command::Publish(args) => commands::publish::run(&cli.connection, args).await,
            Command::Events(args) => commands::events::run(&cli.connection, args).await,
            Command::Tail(args) => commands::tail::run(&cli.connection, args).await,
            Command::Subs(args) => commands::subs::subs(&cli.connection, args).await,
            Command::Dlq(args) => commands::subs::dlq(&cli.connection, args).await,
            Command::Replay(args) => commands::subs::replay(&cli.connection, args).await,
        }
    });
    match result {
        Ok(code) => code,
        // As a command killed by SIGPIPE exits (128 + 13), without a word.
        Err(e) if e.downcast_ref::<commands::OutputClosed>().is_some() => std::process::ExitCode::from(141),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Parses the command line, with the config file's settings (below flags
/// and `HERALD_*` variables) checked as flags are.
fn parse_command_line() -> Cli {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let command = Cli::command();
    let matches = command.clone().try_get_matches_from(&argv).unwrap_or_else(|e| e.exit());
    let (argv, file) = config_file::with_settings(argv, &matches, &command).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    Cli::try_parse_from(argv).unwrap_or_else(|e| match file {
        Some(path) => {
            eprint!("in {}:\n{e}", path.display());
            std::process::exit(2)
        }
        None => e.exit(),
    })
}

/// One request worker per core but one: the store's writer is a thread of its
/// own that every publish waits on, so it gets a core rather than compete
/// with the workers feeding it. On 2 cores this measured +10% single-event
/// publishes. `TOKIO_WORKER_THREADS` still overrides.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    builder.enable_all().build()
}
