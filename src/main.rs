use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use toylens::cli::{Cli, run};

fn main() -> ExitCode {
    restore_default_sigpipe();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        // The desktop app arrives with the `gui` feature; until then, show what the CLI can do.
        let _ = Cli::command().print_help();
        return ExitCode::SUCCESS;
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Rust ignores SIGPIPE, which turns `toylens inspect … | head` into a panic on the next print.
/// A command-line tool should end quietly instead, as every Unix filter does.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
