//! Training: the exact fast data paths, the optimisers, the step loop and the worker thread that
//! runs it behind one command type and one event type. Configs live in [`crate::config`].

mod adam;
pub mod batches;
pub mod driver;
pub mod loss;
mod trainer;
pub mod worker;

pub use adam::Adam;
pub use batches::{ForwardPath, Tally};
pub use driver::{Control, Ending, Outcome, Progress, drive};
pub use trainer::{StepResult, TrainError, Trainer, evaluate_dataset};
pub use worker::{
    Command, Event, FinishReason, TrainingHandle, panic_message, spawn_training, spawn_training_to,
    spawn_worker,
};

pub use crate::config::{MAX_STEP_FLOATS, Optimizer, PathChoice, Preset, RunConfig, TrainConfig};

use serde::{Deserialize, Serialize};

/// One optimiser step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// 1-based epoch the step belongs to.
    pub epoch: usize,
    /// 1-based global step.
    pub step: usize,
    /// Mean cross-entropy of the batch before the update.
    pub loss: f64,
    pub acc: f64,
    /// Samples seen so far in the run.
    pub samples: u64,
    /// Seconds spent in steps so far (pauses excluded), for throughput and ETA.
    pub busy_s: f64,
}

/// One epoch: train metrics are running (pre-update) means over the epoch, as the notebook's
/// `train()` computes them, but true per-sample means; validation is measured after the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub train_acc_signal: f64,
    pub train_acc_noise: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub val_acc_signal: f64,
    pub val_acc_noise: f64,
    /// Seconds since the run started.
    pub elapsed_s: f64,
}

/// The metric history as CSV, one row per epoch.
pub fn history_csv(history: &[EpochMetrics]) -> String {
    let mut out = String::from(
        "epoch,train_loss,train_acc,train_acc_signal,train_acc_noise,val_loss,val_acc,val_acc_signal,val_acc_noise,elapsed_s\n",
    );
    for m in history {
        out += &format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            m.epoch,
            m.train_loss,
            m.train_acc,
            m.train_acc_signal,
            m.train_acc_noise,
            m.val_loss,
            m.val_acc,
            m.val_acc_signal,
            m.val_acc_noise,
            m.elapsed_s
        );
    }
    out
}

/// The first epoch whose validation signal accuracy reached 99 %.
pub fn epoch_reaching_99(history: &[EpochMetrics]) -> Option<usize> {
    history
        .iter()
        .find(|m| m.val_acc_signal >= 0.99)
        .map(|m| m.epoch)
}

/// Trains `cfg` to the end on this thread and returns the checkpoint, with every epoch's
/// snapshot. `on_epoch` sees each epoch's metrics as they come. A diverged run is an error.
pub fn train_to_checkpoint(
    cfg: RunConfig,
    device: &candle_core::Device,
    mut on_epoch: impl FnMut(&EpochMetrics),
) -> Result<crate::checkpoint::Checkpoint, TrainError> {
    let outcome = drive(Trainer::new(cfg, device)?, |p| {
        if let Progress::Epoch { metrics, .. } = p {
            on_epoch(metrics);
        }
        Control::Continue
    })?;
    match outcome.ending.divergence() {
        Some(e) => Err(e),
        None => Ok(outcome.checkpoint),
    }
}
