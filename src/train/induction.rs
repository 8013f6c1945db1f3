//! Training on the induction task: every step draws a fresh batch of repeated random sequences;
//! evaluations measure the two halves' losses and every head's induction and previous-token
//! scores on a fixed validation set.

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;

use super::trainer::{StepOutcome, update};
use super::{Adam, RunConfig, TrainError};
use crate::metrics::InductionMetrics;
use crate::model::Transformer;
use crate::objective::evaluate_induction;
use crate::seed::{Stream, stream_rng};
use crate::task::InductionConfig;

pub(super) struct InductionRun {
    task: InductionConfig,
    rng: ChaCha8Rng,
    batch_size: usize,
    val: Vec<u32>,
}

impl InductionRun {
    pub fn new(task: &InductionConfig, cfg: &RunConfig) -> Self {
        Self {
            rng: stream_rng(cfg.seed, Stream::TrainData),
            batch_size: cfg.train.batch_size,
            val: task.val_set(cfg.seed),
            task: task.clone(),
        }
    }

    pub fn step(
        &mut self,
        model: &Transformer,
        adam: &mut Adam,
        device: &Device,
        at: (usize, usize),
    ) -> Result<StepOutcome, TrainError> {
        let tokens = self.task.generate(self.batch_size, &mut self.rng);
        let tokens = Tensor::from_vec(tokens, (self.batch_size, self.task.seq_len()), device)?;
        let (loss, grads) = super::lm_step::next_token_loss_and_grads(model, &tokens)?;
        let loss = update(loss, &grads, adam, device, at)?;
        Ok(StepOutcome {
            loss,
            acc: None,
            samples: self.batch_size,
            unit_done: true,
        })
    }

    pub fn evaluate(
        &self,
        model: &Transformer,
        step: usize,
        train_loss: f64,
        elapsed_s: f64,
    ) -> Result<InductionMetrics, TrainError> {
        let eval = evaluate_induction(model, &self.task, &self.val)?;
        Ok(InductionMetrics {
            step,
            train_loss,
            loss_first_half: eval.loss_first_half,
            loss_repeated_half: eval.loss_repeated_half,
            induction_score: eval.induction_score,
            prev_token_score: eval.prev_token_score,
            elapsed_s,
        })
    }
}
