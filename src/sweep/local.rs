//! The local executor: each point as its own `toylens train --run-dir` process, a few at a
//! time, each told how many threads to use. A crash, a kill or a time limit in one run touches
//! no other; a run that ends without writing its result gets one written for it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::SweepError;
use super::folder::SweepFolder;
use super::outcome::{RunResult, Status};
use super::run::{CONFIG, failed_result, write_result};
use super::state::PointState;

/// The environment variable that sets a toylens process's compute threads.
pub const THREADS_ENV: &str = "TOYLENS_THREADS";
/// How long a run may take to stop after SIGTERM before it is killed (Slurm's default KillWait).
const KILL_WAIT: Duration = Duration::from_secs(30);
/// The run's own log, stdout and stderr.
pub const LOG: &str = "train.log";
/// The file a local executor holds locked while it runs a sweep's points.
pub const LOCK: &str = ".local-executor.lock";

/// Locks `folder` for running its points in this process, so that a second `sweep resume`, here
/// or submitting to Slurm, cannot start the same points while these run (both would write the
/// same run folders). The lock lasts as long as the returned file is open, and ends with the
/// process however it ends.
pub fn lock_for_running(folder: &SweepFolder) -> Result<std::fs::File, SweepError> {
    let path = folder.root.join(LOCK);
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| SweepError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(SweepError::Invalid(format!(
            "another toylens process is running points of {} on this machine (it holds {LOCK}): \
             let it finish, or stop it, then resume",
            folder.root.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(SweepError::io(&path, e)),
    }
}

#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// The toylens binary each run executes.
    pub binary: PathBuf,
    /// Runs at once.
    pub parallel: usize,
    /// Threads per run.
    pub threads: usize,
    /// Each run's time limit: SIGTERM then, and a kill `KILL_WAIT` later.
    pub time_limit: Option<Duration>,
    pub stop_at_milestone: bool,
}

impl LocalOptions {
    /// As many runs at once as the cores allow at `threads` each.
    pub fn default_parallel(threads: usize) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / threads.max(1)).max(1)
    }
}

/// What the executor reports as it goes.
#[derive(Debug, Clone)]
pub enum LocalEvent {
    Started(usize),
    Finished(usize, RunResult),
}

struct Running {
    index: usize,
    child: Child,
    started: Instant,
    /// When SIGTERM was sent for the time limit.
    terminated: Option<Instant>,
}

/// The command that runs point `dir` (the local executor's and the Slurm script's).
pub fn train_command(binary: &Path, dir: &Path, stop_at_milestone: bool) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("train")
        .arg("--config")
        .arg(dir.join(CONFIG))
        .arg("--run-dir")
        .arg(dir);
    if stop_at_milestone {
        command.arg("--stop-at-milestone");
    }
    command
}

fn spawn(folder: &SweepFolder, index: usize, options: &LocalOptions) -> Result<Child, SweepError> {
    let dir = folder.run_dir(index);
    let log_path = dir.join(LOG);
    let log = std::fs::File::create(&log_path).map_err(|e| SweepError::io(&log_path, e))?;
    let err = log.try_clone().map_err(|e| SweepError::io(&log_path, e))?;
    train_command(&options.binary, &dir, options.stop_at_milestone)
        .env(THREADS_ENV, options.threads.to_string())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| SweepError::io(&options.binary, format!("cannot start it: {e}")))
}

/// The last lines of a run's log, for a result it did not write itself.
fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join(LOG)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// Runs `indices` of `folder`, `options.parallel` at a time, until all have ended.
pub fn run_local(
    folder: &SweepFolder,
    indices: &[usize],
    options: &LocalOptions,
    mut report: impl FnMut(LocalEvent),
) -> Result<(), SweepError> {
    let _lock = lock_for_running(folder)?;
    let mut queue = indices.iter().copied().rev().collect::<Vec<_>>();
    let mut running: Vec<Running> = Vec::new();
    while !queue.is_empty() || !running.is_empty() {
        while running.len() < options.parallel.max(1)
            && let Some(index) = queue.pop()
        {
            running.push(Running {
                index,
                child: spawn(folder, index, options)?,
                started: Instant::now(),
                terminated: None,
            });
            report(LocalEvent::Started(index));
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut k = 0;
        while k < running.len() {
            let run = &mut running[k];
            if let (Some(limit), None) = (options.time_limit, run.terminated)
                && run.started.elapsed() >= limit
            {
                // SAFETY: kill(2) with the pid of a child this process has not reaped yet.
                unsafe { libc::kill(run.child.id() as libc::pid_t, libc::SIGTERM) };
                run.terminated = Some(Instant::now());
            }
            if run.terminated.is_some_and(|t| t.elapsed() >= KILL_WAIT) {
                let _ = run.child.kill();
            }
            let exit = run
                .child
                .try_wait()
                .map_err(|e| SweepError::io(&folder.run_dir(run.index), e))?;
            let Some(exit) = exit else {
                k += 1;
                continue;
            };
            let run = running.swap_remove(k);
            let dir = folder.run_dir(run.index);
            let wall_s = run.started.elapsed().as_secs_f64();
            let result = match folder.state(run.index) {
                PointState::Finished(result) => result,
                _ => {
                    let result = if run.terminated.is_some() {
                        failed_result(
                            Status::Timeout,
                            "killed at its time limit before it wrote a result".into(),
                            wall_s,
                        )
                    } else {
                        failed_result(
                            Status::Failed,
                            format!(
                                "the run ended ({exit}) without a result: {}",
                                log_tail(&dir)
                            ),
                            wall_s,
                        )
                    };
                    write_result(&dir, &result)?;
                    result
                }
            };
            report(LocalEvent::Finished(run.index, result));
        }
    }
    Ok(())
}
