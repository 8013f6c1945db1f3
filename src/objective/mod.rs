//! Each task's objective on a model: the loss a training step descends and the loss and accuracy
//! an evaluation reports, on the fastest exact path the model's plan allows. Training
//! ([`crate::train`]) and the analyses ([`crate::analysis`]) both build on it, so it sits below
//! them and above [`crate::model`].

pub mod batches;
mod induction;
mod modular;
mod skip_trigram;

pub use batches::{Batch, ForwardPath, PreparedSet, Tally};
pub use induction::{InductionEval, evaluate_induction, evaluate_induction_ablated};
pub use modular::{
    batch_loss, loss_and_accuracy, loss_and_accuracy_ablated, pairs_on_device, pairs_per_chunk,
    right_answers,
};
pub use skip_trigram::{evaluate_dataset, evaluate_set};
