//! One point of a sweep, trained in its folder: `config.json` in; `metrics.jsonl` (a line per
//! evaluation, written as they happen, for the live view), `checkpoint.safetensors` and, last,
//! `result.json` out. `toylens train --config DIR/config.json --run-dir DIR` runs it, whichever
//! executor started that command.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::SweepError;
use super::outcome::{RunResult, Status, superposition_metrics, transformer_result};
use super::spec::RunSpec;
use crate::checkpoint::TmsCheckpoint;
use crate::metrics::milestone;
use crate::superposition::{TmsError, TmsTrainer};
use crate::train::{Control, Progress, Trainer, drive};

/// A run folder's files.
pub const CONFIG: &str = "config.json";
pub const RESULT: &str = "result.json";
pub const METRICS: &str = "metrics.jsonl";
pub const CHECKPOINT: &str = "checkpoint.safetensors";

/// Writes `result` as the folder's `result.json`, whole or not at all.
pub fn write_result(dir: &Path, result: &RunResult) -> Result<(), SweepError> {
    let json = serde_json::to_string_pretty(result).expect("results serialise");
    super::write_file(&dir.join(RESULT), json.as_bytes())
}

/// A result for a run that did not get to train (`failed`) or was stopped from outside.
pub fn failed_result(status: Status, message: String, wall_s: f64) -> RunResult {
    RunResult {
        status,
        message: Some(message),
        model: String::new(),
        task: String::new(),
        unit: String::new(),
        trained: 0,
        wall_s,
        milestones: Default::default(),
        regime: None,
        metrics: Default::default(),
    }
}

/// Trains the point in `dir` and writes its files. `stop` (set by SIGTERM, which Slurm sends at
/// the time limit) ends it early as a `timeout`, its checkpoint and result still written. Any
/// error becomes a `failed` result; only failing to write that is an error here.
pub fn run_in(
    dir: &Path,
    stop_at_milestone: bool,
    stop: &AtomicBool,
) -> Result<RunResult, SweepError> {
    let started = Instant::now();
    let result = match train_in(dir, stop_at_milestone, stop, started) {
        Ok(result) => result,
        Err(message) => failed_result(Status::Failed, message, started.elapsed().as_secs_f64()),
    };
    write_result(dir, &result)?;
    Ok(result)
}

fn train_in(
    dir: &Path,
    stop_at_milestone: bool,
    stop: &AtomicBool,
    started: Instant,
) -> Result<RunResult, String> {
    let config_path = dir.join(CONFIG);
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("cannot read {}: {e}", config_path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let spec =
        RunSpec::from_value(&value, dir).map_err(|e| format!("{}: {e}", config_path.display()))?;
    // A rerun starts its records afresh.
    let _ = std::fs::remove_file(dir.join(RESULT));
    let metrics_path = dir.join(METRICS);
    let mut lines = std::fs::File::create(&metrics_path)
        .map_err(|e| format!("cannot write {}: {e}", metrics_path.display()))?;
    let mut record = |line: String| -> Result<(), String> {
        writeln!(lines, "{line}")
            .and_then(|_| lines.flush())
            .map_err(|e| format!("cannot write {}: {e}", metrics_path.display()))
    };
    let mut write_error = None;
    let checkpoint_path = dir.join(CHECKPOINT);
    match spec {
        RunSpec::Transformer(cfg) => {
            let ln_v = (cfg.task.vocab_out() as f64).ln();
            let trainer =
                Trainer::new(cfg.clone(), &candle_core::Device::Cpu).map_err(|e| e.to_string())?;
            let outcome = drive(trainer, |p| {
                if let Progress::Evaluation { metrics, .. } = p {
                    let line = serde_json::to_string(metrics).expect("metrics serialise");
                    if let Err(e) = record(line) {
                        write_error = Some(e);
                        return Control::Stop;
                    }
                    if stop_at_milestone && milestone(std::slice::from_ref(metrics), ln_v).is_some()
                    {
                        return Control::Stop;
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    Control::Stop
                } else {
                    Control::Continue
                }
            })
            .map_err(|e| e.to_string())?;
            if let Some(e) = write_error {
                return Err(e);
            }
            let checkpoint = &outcome.checkpoint;
            checkpoint
                .save(&checkpoint_path)
                .map_err(|e| format!("saving {}: {e}", checkpoint_path.display()))?;
            let (milestones, metrics, regime) = transformer_result(&checkpoint.history, ln_v);
            let (status, message) = match outcome.ending.divergence() {
                Some(e) => (Status::Diverged, Some(e.to_string())),
                None if stop.load(Ordering::Relaxed) => (Status::Timeout, Some(signalled())),
                None => (Status::Done, None),
            };
            // A run stopped early has no regime yet.
            let regime = regime.filter(|_| status == Status::Done);
            Ok(RunResult {
                status,
                message,
                model: "transformer".into(),
                task: cfg.task.kind().name().into(),
                unit: cfg.task.unit().name().into(),
                trained: checkpoint.epoch,
                wall_s: started.elapsed().as_secs_f64(),
                milestones,
                regime,
                metrics,
            })
        }
        RunSpec::Superposition(run) => {
            let mut trainer = TmsTrainer::new(run.clone()).map_err(|e| e.to_string())?;
            let mut history = Vec::new();
            let ended = trainer.drive(stop, |_, m| {
                let line = serde_json::to_string(m).expect("metrics serialise");
                if let Err(e) = record(line) {
                    write_error.get_or_insert(e);
                }
                history.push(m.clone());
            });
            if let Some(e) = write_error {
                return Err(e);
            }
            let (status, message) = match ended {
                Ok(_) if stop.load(Ordering::Relaxed) => (Status::Timeout, Some(signalled())),
                Ok(_) => (Status::Done, None),
                Err(e @ TmsError::Diverged { .. }) => (Status::Diverged, Some(e.to_string())),
                Err(e) => return Err(e.to_string()),
            };
            let checkpoint = TmsCheckpoint::of(&trainer, history);
            checkpoint
                .save(&checkpoint_path)
                .map_err(|e| format!("saving {}: {e}", checkpoint_path.display()))?;
            let model = &run.model;
            Ok(RunResult {
                status,
                message,
                model: "superposition".into(),
                task: "sparse_features".into(),
                unit: "step".into(),
                trained: trainer.steps_done(),
                wall_s: started.elapsed().as_secs_f64(),
                milestones: Default::default(),
                regime: None,
                metrics: superposition_metrics(
                    checkpoint.history.last(),
                    &checkpoint.weights.w,
                    model.n_instances,
                    model.n_features,
                    model.n_hidden,
                ),
            })
        }
    }
}

fn signalled() -> String {
    "stopped by SIGTERM before the end (a time limit: Slurm's --time or the local executor's)"
        .into()
}
