//! The one training loop. Every driver (the CLI's `train` and `sweep`, the app's worker thread,
//! `bench` and the tests) runs a [`Trainer`] through [`drive`] and sees the run through one
//! callback. The loop keeps the bookkeeping they would otherwise each repeat: the initial
//! snapshot, the metric history, a snapshot at every evaluation (thinned to a bounded count),
//! the final weights, and the last finite weights when the loss diverges.

use super::{TrainError, Trainer};
use crate::checkpoint::{Checkpoint, Snapshot};
use crate::metrics::{Metrics, StepMetrics};
use crate::model::Weights;

/// What the loop reports, in order: `Started`, then `Step`s with an `Evaluation` after each
/// evaluation period's last step.
pub enum Progress<'a> {
    Started {
        /// Epochs, or steps for step-counted tasks.
        total_epochs: usize,
        steps_per_epoch: usize,
        /// How training computes: the objective's forward path and the model's plan
        /// ([`Trainer::describe_path`]).
        path: String,
        initial_weights: &'a Weights,
    },
    Step(&'a StepMetrics),
    Evaluation {
        metrics: &'a Metrics,
        weights: &'a Weights,
    },
}

/// The callback's answer: go on, or end the run now (keeping the weights so far).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Every epoch ran.
    Completed,
    /// The callback asked to stop.
    Stopped,
    /// The loss stopped being finite at this step; the checkpoint holds the last finite
    /// weights.
    Diverged {
        epoch: usize,
        step: usize,
        loss: f64,
    },
}

impl Ending {
    /// The divergence as an error (with its advice), if the run diverged.
    pub fn divergence(&self) -> Option<TrainError> {
        match *self {
            Ending::Diverged { epoch, step, loss } => {
                Some(TrainError::Diverged { epoch, step, loss })
            }
            _ => None,
        }
    }
}

/// A finished run: everything it learned, as a checkpoint, and why it ended.
pub struct Outcome {
    pub checkpoint: Checkpoint,
    pub ending: Ending,
}

/// Runs `trainer` to its last epoch, or until `observe` answers [`Control::Stop`] or the loss
/// diverges. `observe` sees every step and epoch, and may block (a paused run waits in it).
pub fn drive(
    mut trainer: Trainer,
    mut observe: impl FnMut(Progress) -> Control,
) -> Result<Outcome, TrainError> {
    let initial = trainer.weights()?;
    let mut checkpoint = Checkpoint::new(trainer.config().clone(), initial.clone());
    checkpoint.snapshots.push(Snapshot {
        epoch: 0,
        weights: initial,
    });
    let mut control = observe(Progress::Started {
        total_epochs: trainer.config().total_units(),
        steps_per_epoch: trainer.config().steps_per_epoch(),
        path: trainer.describe_path(),
        initial_weights: &checkpoint.snapshots[0].weights,
    });
    let ending = loop {
        if control == Control::Stop {
            break Ending::Stopped;
        }
        if trainer.is_finished() {
            break Ending::Completed;
        }
        match trainer.step() {
            Ok(result) => {
                control = observe(Progress::Step(&result.step));
                if let Some(metrics) = result.evaluation {
                    let weights = trainer.weights()?;
                    if observe(Progress::Evaluation {
                        metrics: &metrics,
                        weights: &weights,
                    }) == Control::Stop
                    {
                        control = Control::Stop;
                    }
                    checkpoint.push_snapshot(Snapshot {
                        epoch: metrics.progress(),
                        weights,
                    });
                    checkpoint.history.push(metrics);
                }
            }
            Err(TrainError::Diverged { epoch, step, loss }) => {
                break Ending::Diverged { epoch, step, loss };
            }
            Err(e) => return Err(e),
        }
    };
    let current = trainer.weights()?;
    checkpoint.weights = if current.all_finite() {
        current
    } else {
        // A diverged step leaves the weights untouched, but never hand out a non-finite model.
        checkpoint
            .snapshots
            .last()
            .map(|s| s.weights.clone())
            .unwrap_or(current)
    };
    checkpoint.epoch = trainer.epochs_done();
    Ok(Outcome { checkpoint, ending })
}
