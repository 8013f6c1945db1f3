use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use toylens::cli::{Cli, run};

/// Training allocates and frees the same few small tensors thousands of times per second;
/// mimalloc serves them from thread-local free lists, faster than glibc's malloc for a little more
/// peak memory (benches/MEASUREMENTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    #[cfg(feature = "gui")]
    toylens::app::LAUNCHED.get_or_init(std::time::Instant::now);
    toylens::memory::purge_only_on_request();
    restore_default_sigpipe();
    pin_compute_threads();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
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

/// Help and version print as clap prints them; a malformed command line gets one line on stderr
/// (clap's first paragraph, which names the flag and the problem, joined) and exit code 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { 2 } else { 0 })
        }
        _ => {
            let text = e.render().to_string();
            // A missing argument is named on the lines after the first.
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let first = if first.is_empty() {
                "error: invalid command line".to_string()
            } else {
                first.join(" ")
            };
            eprintln!("{first} (see --help)");
            ExitCode::from(2)
        }
    }
}

#[cfg(feature = "gui")]
fn open_window(file: Option<PathBuf>) -> ExitCode {
    match toylens::ui::run_native(file) {
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

/// candle sizes its CPU thread pool from `RAYON_NUM_THREADS`, and when that is unset it re-reads
/// the CPU topology from /proc and /sys on every tensor op, a real share of a short run's time
/// (benches/MEASUREMENTS.md). The tiny tensors here gain nothing from a second thread, and the window
/// needs a core, so one thread is the default; set RAYON_NUM_THREADS to choose another count.
fn pin_compute_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: called at the start of main, before any other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
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
