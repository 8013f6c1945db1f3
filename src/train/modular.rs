//! Training on modular addition: a fixed seeded split of all pairs, full-batch by default
//! (minibatches, reshuffled each epoch, when `batch_size` is smaller than the training set), and
//! evaluations on the whole training and test sets.

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::trainer::{StepOutcome, descend};
use super::{Adam, RunConfig, TrainError};
use crate::metrics::ModularMetrics;
use crate::model::{Plan, Transformer};
use crate::objective::{batch_loss, loss_and_accuracy, pairs_on_device};
use crate::seed::{Stream, stream_rng};
use crate::task::{ModularAdditionConfig, PairSplit};

pub(super) struct ModularRun {
    pub split: PairSplit,
    /// Whether the fixed-query shortcut applies to the model (else the general path).
    pub shortcut: bool,
    shuffle_rng: ChaCha8Rng,
    order: Vec<u32>,
    cursor: usize,
    batch_size: usize,
    /// The whole training set on the device, for full-batch steps.
    full_batch: Option<(Tensor, Tensor)>,
}

impl ModularRun {
    pub fn new(
        task: &ModularAdditionConfig,
        cfg: &RunConfig,
        plan: &Plan,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let split = task.split(cfg.seed);
        let shortcut = plan.fixed_query().is_some();
        let full_batch = if cfg.train.batch_size >= split.train.len() {
            Some(pairs_on_device(&split, &split.train, shortcut, device)?)
        } else {
            None
        };
        Ok(Self {
            shortcut,
            order: split.train.clone(),
            split,
            shuffle_rng: stream_rng(cfg.seed, Stream::Shuffle),
            cursor: 0,
            batch_size: cfg.train.batch_size,
            full_batch,
        })
    }

    pub fn step(
        &mut self,
        model: &Transformer,
        adam: &mut Adam,
        device: &Device,
        at: (usize, usize),
    ) -> Result<StepOutcome, TrainError> {
        let batch = match &self.full_batch {
            Some(batch) => batch.clone(),
            None => {
                if self.cursor == 0 {
                    self.order.shuffle(&mut self.shuffle_rng);
                }
                let end = (self.cursor + self.batch_size).min(self.order.len());
                let ids = &self.order[self.cursor..end];
                self.cursor = if end == self.order.len() { 0 } else { end };
                pairs_on_device(&self.split, ids, self.shortcut, device)?
            }
        };
        let (loss, correct) = batch_loss(model, &batch, self.shortcut, true)?;
        let loss = descend(&loss, adam, at)?;
        let samples = batch.1.dim(0)?;
        Ok(StepOutcome {
            loss,
            acc: Some(correct as f64 / samples as f64),
            samples,
            unit_done: self.cursor == 0,
        })
    }

    pub fn evaluate(
        &self,
        model: &Transformer,
        epoch: usize,
        elapsed_s: f64,
    ) -> Result<ModularMetrics, TrainError> {
        let (train_loss, train_acc) = loss_and_accuracy(model, &self.split, &self.split.train)?;
        let (test_loss, test_acc) = loss_and_accuracy(model, &self.split, &self.split.test)?;
        let mut squares = 0.0;
        for var in model.vars() {
            squares += var.as_tensor().sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
        Ok(ModularMetrics {
            epoch,
            train_loss,
            train_acc,
            test_loss,
            test_acc,
            weight_norm: squares.sqrt(),
            elapsed_s,
            progress: crate::analysis::progress_measures(model, &self.split)?,
        })
    }
}
