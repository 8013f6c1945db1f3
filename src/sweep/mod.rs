//! Sweeps: a grid of runs over any config fields and seeds (either model family), each point in
//! its own folder of a sweep folder, run here as child processes or on a Slurm cluster as a job
//! array, and summarised from whatever has finished. No UI: the CLI's `toylens sweep` and the
//! app's phase-diagram view read and write these folders alike.
//!
//! ```text
//! runs/sweep.json          the sweep (base config, axes, seeds) and its points
//! runs/<i>/config.json     point i's resolved config
//! runs/<i>/metrics.jsonl   its evaluations, a line each, as they happen
//! runs/<i>/checkpoint.safetensors, runs/<i>/result.json (last: status, milestones, metrics)
//! runs/summary.csv, runs/summary.json   from `toylens sweep collect`
//! runs/sweep.sbatch, runs/slurm.json    the Slurm executor's script and submitted jobs
//! ```

mod folder;
pub mod local;
mod outcome;
mod run;
pub mod slurm;
mod spec;
mod state;
mod summary;

pub use folder::{SWEEP_FILE, SweepFile, SweepFolder};
pub use outcome::{REGIMES, RunResult, Status, regime};
pub use run::{CHECKPOINT, CONFIG, METRICS, RESULT, failed_result, run_in, write_result};
pub use spec::{Axis, Point, RunSpec, SweepSpec, parse_axis, parse_seeds, preset_config};
pub use state::{PointState, Progress, ReadCache};
pub use summary::{Row, SUMMARY_CSV, SUMMARY_JSON, Summary};

/// What can go wrong with a sweep.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A bad sweep, field, value or folder: the message says which and why.
    #[error("{0}")]
    Invalid(String),
    #[error("{}: {message}", path.display())]
    Io {
        path: std::path::PathBuf,
        message: String,
    },
}

impl SweepError {
    /// What went wrong with the file or folder at `path`.
    pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        SweepError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// Writes a sweep's file whole or not at all.
pub(crate) fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), SweepError> {
    crate::checkpoint::write_atomically(path, bytes).map_err(|e| SweepError::io(path, e))
}
