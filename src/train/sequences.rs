//! Training on a data file's sequences: each epoch is one pass over the training sequences in an
//! order drawn by the seed, a minibatch per step, with the loss at the positions the file
//! scores. Evaluations measure loss, accuracy, sequence accuracy and accuracy by position on the
//! validation sequences and on a fixed draw of training ones.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::trainer::{StepOutcome, update};
use super::{Adam, RunConfig, TrainError};
use crate::config::ConfigError;
use crate::metrics::{SequencesMetrics, TRAIN_EVAL_SEQUENCES};
use crate::model::Transformer;
use crate::objective::evaluate_sequences;
use crate::seed::{Stream, stream_rng};
use crate::task::sequences::SequenceData;
use crate::task::{SequencesConfig, TaskError};

pub(super) struct SequencesRun {
    data: Arc<SequenceData>,
    train: Vec<u32>,
    val: Vec<u32>,
    /// The training sequences an evaluation measures (all, or a fixed draw of them).
    train_eval: Vec<u32>,
    /// This epoch's order of the training sequences, and how far the steps have taken it.
    order: Vec<u32>,
    next: usize,
    rng: ChaCha8Rng,
    batch_size: usize,
}

impl SequencesRun {
    pub fn new(task: &SequencesConfig, cfg: &RunConfig) -> Result<Self, TrainError> {
        let no_data = || ConfigError::Task(TaskError::NoData("train on"));
        let data = task.data().ok_or_else(no_data)?.clone();
        let (train, val) = data.split(task.val_frac, cfg.seed);
        if train.is_empty() || val.is_empty() {
            return Err(TrainError::Config(ConfigError::Task(TaskError::Setting(
                format!(
                    "the split leaves {} training and {} validation sequences of {}; each needs \
                     one at least (change val_frac or the file's \"split\" fields)",
                    train.len(),
                    val.len(),
                    data.len()
                ),
            ))));
        }
        let mut rng = stream_rng(cfg.seed, Stream::Shuffle);
        let mut train_eval = train.clone();
        if train_eval.len() > TRAIN_EVAL_SEQUENCES {
            let (drawn, _) = train_eval.partial_shuffle(&mut rng, TRAIN_EVAL_SEQUENCES);
            let mut drawn = drawn.to_vec();
            drawn.sort_unstable();
            train_eval = drawn;
        }
        Ok(Self {
            order: train.clone(),
            next: 0,
            batch_size: cfg.train.batch_size.min(train.len()),
            data,
            train,
            val,
            train_eval,
            rng,
        })
    }

    pub fn train_ids(&self) -> &[u32] {
        &self.train
    }

    pub fn val_ids(&self) -> &[u32] {
        &self.val
    }

    pub fn data(&self) -> &Arc<SequenceData> {
        &self.data
    }

    pub fn step(
        &mut self,
        model: &Transformer,
        adam: &mut Adam,
        device: &Device,
        at: (usize, usize),
    ) -> Result<StepOutcome, TrainError> {
        if self.next == 0 {
            self.order.shuffle(&mut self.rng);
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        let ids = &self.order[self.next..end];
        let len = self.data.seq_len;
        let mut tokens = Vec::with_capacity(ids.len() * len);
        let mut targets = Vec::with_capacity(ids.len() * len);
        for &i in ids {
            tokens.extend_from_slice(self.data.sequence(i as usize));
            targets.extend_from_slice(self.data.targets_of(i as usize));
        }
        let samples = ids.len();
        let tokens = Tensor::from_vec(tokens, (samples, len), device)?;
        let (loss, grads) = super::lm_step::scored_loss_and_grads(model, &tokens, &targets)?;
        let loss = update(loss, &grads, adam, device, at)?;
        self.next = if end == self.order.len() { 0 } else { end };
        Ok(StepOutcome {
            loss,
            acc: None,
            samples,
            unit_done: self.next == 0,
        })
    }

    pub fn evaluate(
        &self,
        model: &Transformer,
        epoch: usize,
        elapsed_s: f64,
    ) -> Result<SequencesMetrics, TrainError> {
        let val = evaluate_sequences(model, &self.data, &self.val)?;
        let train = evaluate_sequences(model, &self.data, &self.train_eval)?;
        Ok(SequencesMetrics {
            epoch,
            train_loss: train.loss,
            train_acc: train.acc,
            val_loss: val.loss,
            val_acc: val.acc,
            val_seq_acc: val.seq_acc,
            acc_by_position: val.acc_by_position,
            elapsed_s,
        })
    }
}
