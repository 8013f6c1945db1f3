//! The training loop, one step at a time, so a driver (CLI, worker thread, test) can pause or
//! stop between any two steps.

use std::time::Instant;

use candle_core::Device;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use super::batches::{ForwardPath, PreparedSet, Tally};
use super::{Adam, EpochMetrics, RunConfig, StepMetrics};
use crate::model::{ModelError, Transformer, Weights};
use crate::seed::{Stream, stream_rng};
use crate::task::Dataset;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error("invalid config: {0}")]
    Config(String),
    #[error(
        "training diverged at epoch {epoch}, step {step}: the loss became {loss}. The weights are \
         the last finite ones; lower the learning rate and train again"
    )]
    Diverged {
        epoch: usize,
        step: usize,
        loss: f64,
    },
    #[error("training is already complete")]
    Finished,
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

/// What one call to [`Trainer::step`] did.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub step: StepMetrics,
    /// Set when the step completed an epoch.
    pub epoch: Option<EpochMetrics>,
}

pub struct Trainer {
    cfg: RunConfig,
    device: Device,
    model: Transformer,
    adam: Adam,
    train: PreparedSet,
    val: PreparedSet,
    shuffle_rng: ChaCha8Rng,
    order: Vec<u32>,
    /// Position in `order` of the next batch.
    cursor: usize,
    epoch: usize,
    step: usize,
    epoch_tally: Tally,
    started: Instant,
    samples: u64,
    busy_s: f64,
}

impl Trainer {
    /// A fresh run: data, init and shuffling all from `cfg.seed`.
    pub fn new(cfg: RunConfig, device: &Device) -> Result<Self, TrainError> {
        cfg.validate().map_err(TrainError::Config)?;
        let init = Weights::init(&cfg.model, cfg.seed);
        Self::with_weights(cfg, init, device)
    }

    /// A run that starts from given weights (for example a loaded checkpoint).
    pub fn with_weights(
        cfg: RunConfig,
        weights: Weights,
        device: &Device,
    ) -> Result<Self, TrainError> {
        cfg.validate().map_err(TrainError::Config)?;
        let task_err = |e: crate::task::TaskError| TrainError::Config(e.to_string());
        let train_data = cfg.task.train_set(cfg.seed).map_err(task_err)?;
        let val_data = cfg.task.val_set(cfg.seed).map_err(task_err)?;
        let model = Transformer::new(&cfg.model, &weights, device)?;
        // Frozen parameters stay out of the optimiser: no update, no weight decay.
        let trainable = model
            .specs()
            .iter()
            .zip(model.vars())
            .filter(|(spec, _)| !cfg.train.is_frozen(&spec.name))
            .map(|(_, var)| var.clone())
            .collect();
        let adam = Adam::new(trainable, &cfg.train)?;
        let path = cfg.train.path.for_model(&cfg.model);
        let train = PreparedSet::new(train_data, path, cfg.train.batch_size, device)?;
        let val = PreparedSet::new(val_data, path, cfg.task.val_size, device)?;
        let n = train.data.len() as u32;
        Ok(Self {
            shuffle_rng: stream_rng(cfg.seed, Stream::Shuffle),
            order: (0..n).collect(),
            cursor: 0,
            epoch: 0,
            step: 0,
            epoch_tally: Tally::default(),
            started: Instant::now(),
            samples: 0,
            busy_s: 0.0,
            device: device.clone(),
            cfg,
            model,
            adam,
            train,
            val,
        })
    }

    pub fn config(&self) -> &RunConfig {
        &self.cfg
    }
    pub fn model(&self) -> &Transformer {
        &self.model
    }
    pub fn train_data(&self) -> &Dataset {
        &self.train.data
    }
    pub fn val_data(&self) -> &Dataset {
        &self.val.data
    }
    pub fn path(&self) -> ForwardPath {
        self.train.path
    }
    /// Distinct rows of the training set when training takes the multiset path.
    pub fn multiset_rows(&self) -> Option<usize> {
        self.train.multiset_rows()
    }
    /// Epochs completed so far.
    pub fn epochs_done(&self) -> usize {
        self.epoch
    }
    pub fn steps_done(&self) -> usize {
        self.step
    }
    pub fn is_finished(&self) -> bool {
        self.epoch >= self.cfg.train.epochs
    }

    /// One optimiser step on the next batch. Shuffles at the start of each epoch and evaluates
    /// the validation set after its last batch. A non-finite loss leaves the weights untouched
    /// and returns [`TrainError::Diverged`].
    pub fn step(&mut self) -> Result<StepResult, TrainError> {
        if self.is_finished() {
            return Err(TrainError::Finished);
        }
        let step_started = Instant::now();
        if self.cursor == 0 {
            self.order.shuffle(&mut self.shuffle_rng);
            self.epoch_tally = Tally::default();
        }
        let end = (self.cursor + self.cfg.train.batch_size).min(self.order.len());
        let batch = self
            .train
            .batch(&self.order[self.cursor..end], &self.device)?;
        let (loss, logits) = batch.loss(&self.model)?;
        let loss_value = loss.to_scalar::<f32>()? as f64;
        if !loss_value.is_finite() {
            return Err(TrainError::Diverged {
                epoch: self.epoch + 1,
                step: self.step + 1,
                loss: loss_value,
            });
        }
        let grads = loss.backward()?;
        self.adam.step(&grads)?;
        let vocab = self.cfg.model.d_vocab_out();
        let tally = batch.tally(&logits.flatten_all()?.to_vec1::<f32>()?, vocab, loss_value);
        self.epoch_tally.merge(&tally);
        self.step += 1;
        self.samples += batch.size as u64;
        self.cursor = end;
        self.busy_s += step_started.elapsed().as_secs_f64();
        let step = StepMetrics {
            epoch: self.epoch + 1,
            step: self.step,
            loss: loss_value,
            acc: tally.acc(),
            samples: self.samples,
            busy_s: self.busy_s,
        };
        if self.cursor < self.order.len() {
            return Ok(StepResult { step, epoch: None });
        }
        self.cursor = 0;
        self.epoch += 1;
        let val = evaluate_set(&self.model, &self.val, &self.device)?;
        let train = self.epoch_tally;
        let metrics = EpochMetrics {
            epoch: self.epoch,
            train_loss: train.loss(),
            train_acc: train.acc(),
            train_acc_signal: train.acc_signal(),
            train_acc_noise: train.acc_noise(),
            val_loss: val.loss(),
            val_acc: val.acc(),
            val_acc_signal: val.acc_signal(),
            val_acc_noise: val.acc_noise(),
            elapsed_s: self.started.elapsed().as_secs_f64(),
        };
        Ok(StepResult {
            step,
            epoch: Some(metrics),
        })
    }

    /// A host copy of the current weights.
    pub fn weights(&self) -> Result<Weights, TrainError> {
        Ok(self.model.weights()?)
    }
}

/// Loss and accuracy of `model` on a whole prepared set, in chunks.
fn evaluate_set(
    model: &Transformer,
    set: &PreparedSet,
    device: &Device,
) -> candle_core::Result<Tally> {
    let n = set.data.len();
    // Bounded like every analysis pass; the multiset path aggregates within each chunk, which
    // is just as exact.
    let cfg = model.config();
    let chunk = if set.path == ForwardPath::Multiset {
        let per_row = 4 * cfg.n_heads * cfg.d_vocab;
        (crate::model::FORWARD_CHUNK_FLOATS / per_row.max(1)).clamp(1, n.max(1))
    } else {
        cfg.forward_chunk_rows(set.data.seq_len)
    };
    let indices: Vec<u32> = (0..n as u32).collect();
    let mut total = Tally::default();
    for part in indices.chunks(chunk) {
        let batch = set.batch(part, device)?;
        let (loss, logits) = batch.loss(model)?;
        let loss = loss.to_scalar::<f32>()? as f64;
        let logits = logits.flatten_all()?.to_vec1::<f32>()?;
        total.merge(&batch.tally(&logits, model.config().d_vocab_out(), loss));
    }
    Ok(total)
}

/// Evaluates `model` on `data` with the fastest exact path.
pub fn evaluate_dataset(model: &Transformer, data: Dataset) -> candle_core::Result<Tally> {
    let n = data.len();
    let path = super::PathChoice::Auto.for_model(model.config());
    let set = PreparedSet::new(data, path, n, model.device())?;
    evaluate_set(model, &set, model.device())
}
