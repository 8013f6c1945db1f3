//! Training: the exact fast data paths, the optimisers, the step loop and the worker thread that
//! runs it behind one command type and one event type. Configs live in [`crate::config`].

mod adam;
pub mod batches;
pub mod driver;
mod induction;
pub mod lm_step;
pub mod loss;
mod metrics;
mod modular;
pub mod profile;
mod skip_trigram;
mod trainer;
pub mod worker;

pub use adam::Adam;
pub use batches::{ForwardPath, Tally};
pub use driver::{Control, Ending, Outcome, Progress, drive};
pub use induction::{InductionEval, evaluate_induction, evaluate_induction_ablated};
pub use metrics::{
    EpochMetrics, InductionMetrics, Metrics, ModularMetrics, StepMetrics, history_csv, milestone,
};
pub use modular::{loss_and_accuracy, loss_and_accuracy_ablated, pairs_per_chunk, right_answers};
pub use skip_trigram::evaluate_dataset;
pub use trainer::{StepResult, TrainError, Trainer};
pub use worker::{
    Command, Event, FinishReason, TrainingHandle, panic_message, spawn_training, spawn_training_to,
    spawn_worker,
};

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
