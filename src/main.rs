use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use toylens::cli::{Cli, run};

fn main() -> ExitCode {
    restore_default_sigpipe();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match cli.command {
        Some(command) => match run(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        None => open_window(cli.file),
    }
}

#[cfg(feature = "gui")]
fn open_window(file: Option<PathBuf>) -> ExitCode {
    match toylens::app::run_native(file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot open the window: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "gui"))]
fn open_window(_file: Option<PathBuf>) -> ExitCode {
    eprintln!("this toylens was built without the `gui` feature; use a subcommand:\n");
    let _ = <Cli as clap::CommandFactory>::command().print_help();
    ExitCode::FAILURE
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
