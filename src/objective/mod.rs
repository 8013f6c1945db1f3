//! Each task's objective on a model: the loss a training step descends and the loss and accuracy
//! an evaluation reports, on the fastest exact path the model's plan allows. Training
//! ([`crate::train`]) and the analyses ([`crate::analysis`]) both build on it, so it sits below
//! them and above [`crate::model`].

pub mod batches;
mod induction;
mod modular;
mod sequences;
mod skip_trigram;

pub use batches::{Batch, ForwardPath, PreparedSet, Tally};
pub use induction::{InductionEval, evaluate_induction, evaluate_induction_ablated};
pub use modular::{
    batch_loss, loss_and_accuracy, loss_and_accuracy_ablated, pairs_on_device, pairs_per_chunk,
    right_answers,
};
pub use sequences::{
    SequenceEval, SequenceGrades, evaluate_sequences, grade_sequences, grade_sequences_ablated,
};
pub use skip_trigram::{evaluate_dataset, evaluate_set};

use crate::config::{PathChoice, RunConfig};
use crate::model::Plan;
use crate::task::TaskConfig;

/// How a run of `cfg` would train a model with `plan`, in words, before its data exist (the
/// app's model summary): the path its objective takes and what that uses of the plan.
pub fn describe_run(cfg: &RunConfig, plan: &Plan) -> String {
    let path = match &cfg.task {
        TaskConfig::None(_) => return "no task: nothing to train on".into(),
        TaskConfig::Induction(_) | TaskConfig::Sequences(_) => ForwardPath::NextToken,
        TaskConfig::ModularAddition(_) if plan.fixed_query().is_some() => ForwardPath::FixedQuery,
        TaskConfig::ModularAddition(_) => ForwardPath::Full,
        TaskConfig::SkipTrigram(_) => match batches::allowed_choice(cfg.train.path, plan) {
            PathChoice::Full => ForwardPath::Full,
            PathChoice::LastPosition => ForwardPath::LastPosition,
            PathChoice::Multiset => ForwardPath::Multiset,
            // Which of the two depends on how often the data repeat (`PreparedSet::new`).
            PathChoice::Auto => {
                return format!(
                    "token-table shortcut (token multisets where the data repeat, else the last \
                     query row), {}",
                    plan.update_words()
                );
            }
        },
    };
    path.describe(plan)
}
