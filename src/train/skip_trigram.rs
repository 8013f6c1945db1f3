//! Training on the skip-trigram task: minibatches of a fixed, shuffled training set through the
//! fastest exact forward path, with validation after each epoch.

use candle_core::Device;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::trainer::{StepOutcome, descend};
use super::{Adam, RunConfig, TrainError};
use crate::metrics::EpochMetrics;
use crate::model::{Plan, Transformer};
use crate::objective::{PreparedSet, Tally, evaluate_set};
use crate::seed::{Stream, stream_rng};
use crate::task::SkipTrigramConfig;

pub(super) struct SkipTrigramRun {
    pub train: PreparedSet,
    pub val: PreparedSet,
    shuffle_rng: ChaCha8Rng,
    order: Vec<u32>,
    /// Position in `order` of the next batch.
    cursor: usize,
    epoch_tally: Tally,
    batch_size: usize,
}

impl SkipTrigramRun {
    pub fn new(
        task: &SkipTrigramConfig,
        cfg: &RunConfig,
        plan: &Plan,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let task_err = |e: crate::task::TaskError| TrainError::Config(e.into());
        let train_data = task.train_set(cfg.seed).map_err(task_err)?;
        let val_data = task.val_set(cfg.seed).map_err(task_err)?;
        let path = cfg.train.path;
        let train = PreparedSet::new(train_data, path, cfg.train.batch_size, plan, device)?;
        let val = PreparedSet::new(val_data, path, task.val_size, plan, device)?;
        let n = train.data.len() as u32;
        Ok(Self {
            train,
            val,
            shuffle_rng: stream_rng(cfg.seed, Stream::Shuffle),
            order: (0..n).collect(),
            cursor: 0,
            epoch_tally: Tally::default(),
            batch_size: cfg.train.batch_size,
        })
    }

    /// One step on the next minibatch; shuffles at the start of each epoch.
    pub fn step(
        &mut self,
        model: &Transformer,
        adam: &mut Adam,
        device: &Device,
        at: (usize, usize),
    ) -> Result<StepOutcome, TrainError> {
        if self.cursor == 0 {
            self.order.shuffle(&mut self.shuffle_rng);
            self.epoch_tally = Tally::default();
        }
        let end = (self.cursor + self.batch_size).min(self.order.len());
        let batch = self.train.batch(&self.order[self.cursor..end], device)?;
        let (loss, logits) = batch.loss(model)?;
        let loss_value = descend(&loss, adam, at)?;
        let tally = batch.tally(&logits, loss_value, model.plan().kernels)?;
        self.epoch_tally.merge(&tally);
        self.cursor = end;
        let epoch_done = self.cursor == self.order.len();
        if epoch_done {
            self.cursor = 0;
        }
        Ok(StepOutcome {
            loss: loss_value,
            acc: Some(tally.acc()),
            samples: batch.size,
            unit_done: epoch_done,
        })
    }

    /// Validation after an epoch, with the epoch's running train means.
    pub fn evaluate(
        &self,
        model: &Transformer,
        device: &Device,
        epoch: usize,
        elapsed_s: f64,
    ) -> Result<EpochMetrics, TrainError> {
        let val = evaluate_set(model, &self.val, device)?;
        let train = self.epoch_tally;
        Ok(EpochMetrics {
            epoch,
            train_loss: train.loss(),
            train_acc: train.acc(),
            train_acc_signal: train.acc_signal(),
            train_acc_noise: train.acc_noise(),
            val_loss: val.loss(),
            val_acc: val.acc(),
            val_acc_signal: val.acc_signal(),
            val_acc_noise: val.acc_noise(),
            elapsed_s,
        })
    }
}
