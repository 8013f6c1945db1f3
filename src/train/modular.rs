//! Training on modular addition: a fixed seeded split of all pairs, full-batch by default
//! (minibatches, reshuffled each epoch, when `batch_size` is smaller than the training set), and
//! evaluations on the whole training and test sets.

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::trainer::{StepOutcome, descend};
use super::{Adam, ModularMetrics, RunConfig, TrainError};
use crate::model::{Transformer, argmax};
use crate::seed::{Stream, stream_rng};
use crate::task::{ModularAdditionConfig, PairSplit};

pub(super) struct ModularRun {
    pub split: PairSplit,
    shuffle_rng: ChaCha8Rng,
    order: Vec<u32>,
    cursor: usize,
    batch_size: usize,
    /// The whole training set on the device, for full-batch steps.
    full_batch: Option<(Tensor, Tensor)>,
}

/// Tokens `[n, 3]` and labels `[n]` of the pairs `ids`.
fn pairs_on_device(
    split: &PairSplit,
    ids: &[u32],
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let tokens: Vec<u32> = ids.iter().flat_map(|&i| split.tokens(i)).collect();
    let labels: Vec<u32> = ids.iter().map(|&i| split.label(i)).collect();
    Ok((
        Tensor::from_vec(tokens, (ids.len(), 3), device)?,
        Tensor::from_vec(labels, ids.len(), device)?,
    ))
}

impl ModularRun {
    pub fn new(
        task: &ModularAdditionConfig,
        cfg: &RunConfig,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let split = task.split(cfg.seed);
        let full_batch = if cfg.train.batch_size >= split.train.len() {
            Some(pairs_on_device(&split, &split.train, device)?)
        } else {
            None
        };
        Ok(Self {
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
        let (tokens, labels) = match &self.full_batch {
            Some(batch) => batch.clone(),
            None => {
                if self.cursor == 0 {
                    self.order.shuffle(&mut self.shuffle_rng);
                }
                let end = (self.cursor + self.batch_size).min(self.order.len());
                let ids = &self.order[self.cursor..end];
                self.cursor = if end == self.order.len() { 0 } else { end };
                pairs_on_device(&self.split, ids, device)?
            }
        };
        let logits = model.forward_last_general(&tokens)?;
        let loss = descend(&candle_nn::loss::cross_entropy(&logits, &labels)?, adam, at)?;
        let acc = accuracy(&logits, &labels)?;
        Ok(StepOutcome {
            loss,
            acc: Some(acc),
            samples: labels.dim(0)?,
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
        })
    }
}

fn accuracy(logits: &Tensor, labels: &Tensor) -> candle_core::Result<f64> {
    let vocab = logits.dim(1)?;
    let logits = logits.flatten_all()?.to_vec1::<f32>()?;
    let labels = labels.to_vec1::<u32>()?;
    let correct = logits
        .chunks_exact(vocab)
        .zip(&labels)
        .filter(|(row, label)| argmax(row) == **label as usize)
        .count();
    Ok(correct as f64 / labels.len().max(1) as f64)
}

/// Mean cross-entropy and accuracy of `model` on the pairs `ids`, in chunks.
pub fn loss_and_accuracy(
    model: &Transformer,
    split: &PairSplit,
    ids: &[u32],
) -> candle_core::Result<(f64, f64)> {
    let rows = model.config().forward_chunk_rows(3);
    let (mut loss_sum, mut correct) = (0.0, 0.0);
    for part in ids.chunks(rows) {
        let (tokens, labels) = pairs_on_device(split, part, model.device())?;
        let logits = model.forward_last_general(&tokens)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &labels)?.to_scalar::<f32>()?;
        loss_sum += loss as f64 * part.len() as f64;
        correct += accuracy(&logits, &labels)? * part.len() as f64;
    }
    let n = ids.len().max(1) as f64;
    Ok((loss_sum / n, correct / n))
}
