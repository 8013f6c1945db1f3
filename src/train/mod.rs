//! Training: one run per task (its data stream and its evaluations), the optimisers, the LM step
//! by the model's plan, the one step loop ([`driver`]) that the CLI, the app and the benches
//! share, and the worker thread that runs it behind one command type and one event type.
//! Configs live in [`crate::config`], the losses in [`crate::objective`], the records in
//! [`crate::metrics`].

mod adam;
pub mod driver;
mod induction;
pub mod lm_step;
mod modular;
pub mod profile;
mod sequences;
mod skip_trigram;
mod trainer;
pub mod worker;

pub use adam::Adam;
pub use driver::{Control, Ending, Outcome, Progress, drive};
pub use trainer::{StepResult, TrainError, Trainer};
pub use worker::{
    Command, Event, FinishReason, TrainingHandle, panic_message, spawn_training, spawn_training_to,
    spawn_worker,
};

use crate::metrics::Metrics;

pub use crate::config::{MAX_STEP_FLOATS, Optimizer, PathChoice, Preset, RunConfig, TrainConfig};

/// Trains `cfg` to the end on this thread and returns the checkpoint, with every epoch's
/// snapshot. `on_evaluation` sees each evaluation's metrics as they come. A diverged run is an error.
pub fn train_to_checkpoint(
    cfg: RunConfig,
    device: &candle_core::Device,
    mut on_evaluation: impl FnMut(&Metrics),
) -> Result<crate::checkpoint::Checkpoint, TrainError> {
    let outcome = drive(Trainer::new(cfg, device)?, |p| {
        if let Progress::Evaluation { metrics, .. } = p {
            on_evaluation(metrics);
        }
        Control::Continue
    })?;
    match outcome.ending.divergence() {
        Some(e) => Err(e),
        None => Ok(outcome.checkpoint),
    }
}
