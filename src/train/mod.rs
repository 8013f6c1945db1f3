//! Training: configs and presets, the exact fast data paths, Adam, the step loop and the worker
//! thread that runs it behind one command type and one event type.

mod adam;
pub mod batches;
mod trainer;
pub mod worker;

pub use adam::Adam;
pub use batches::{ForwardPath, Tally};
pub use trainer::{StepResult, TrainError, Trainer, evaluate_dataset};
pub use worker::{
    Command, Event, FinishReason, TrainingHandle, panic_message, spawn_training, spawn_training_to,
    spawn_worker,
};

use serde::{Deserialize, Serialize};

use crate::model::ModelConfig;
use crate::task::TaskConfig;

/// Named training settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The notebook's settings: Adam lr 1e-3, 60 epochs, batch 10 000. Under-trains the task.
    Notebook,
    /// Learns every signal pair within seconds: Adam lr 1e-2, 60 epochs, batch 10 000.
    #[default]
    Fast,
}

impl Preset {
    pub const ALL: [Preset; 2] = [Preset::Notebook, Preset::Fast];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Notebook => "notebook",
            Preset::Fast => "fast",
        }
    }

    pub fn train_config(self) -> TrainConfig {
        let base = TrainConfig::default();
        match self {
            Preset::Notebook => TrainConfig { lr: 1e-3, ..base },
            Preset::Fast => TrainConfig { lr: 1e-2, ..base },
        }
    }
}

/// Which forward pass training uses. `Auto` picks the fastest exact one for the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PathChoice {
    #[default]
    Auto,
    /// Every position with the causal mask (the reference formulation).
    Full,
    /// Only the last query row, with row gathers.
    LastPosition,
    /// Distinct (last token, token multiset) rows with count weights.
    Multiset,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub lr: f64,
    /// L2 penalty added to the gradient, as `torch.optim.Adam(weight_decay=…)` does.
    pub weight_decay: f64,
    pub batch_size: usize,
    pub epochs: usize,
    pub path: PathChoice,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            weight_decay: 0.0,
            batch_size: 10_000,
            epochs: 60,
            path: PathChoice::Auto,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!("lr must be a positive number, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(format!(
                "weight_decay must be a number >= 0, got {}",
                self.weight_decay
            ));
        }
        if self.batch_size == 0 || self.batch_size > 10_000_000 {
            return Err(format!(
                "batch_size must be between 1 and 10000000, got {}",
                self.batch_size
            ));
        }
        if self.epochs == 0 || self.epochs > 1_000_000 {
            return Err(format!(
                "epochs must be between 1 and 1000000, got {}",
                self.epochs
            ));
        }
        Ok(())
    }
}

/// Activations one training step may hold: 4 GiB of f32, a sixth of this machine's memory.
pub const MAX_STEP_FLOATS: usize = 1 << 30;

/// Everything that defines a run. The same config and seed give bit-identical results on the CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Drives every random stream: train data, validation data, init and shuffling.
    pub seed: u64,
    pub task: TaskConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self::from_preset(Preset::default())
    }
}

impl RunConfig {
    pub fn from_preset(preset: Preset) -> Self {
        Self {
            seed: 0,
            task: TaskConfig::default(),
            model: ModelConfig::default(),
            train: preset.train_config(),
        }
    }

    /// Checks every part and that they fit together; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        self.task.validate().map_err(|e| format!("task: {e}"))?;
        self.model.validate().map_err(|e| e.to_string())?;
        self.train
            .validate()
            .map_err(|e| format!("training: {e}"))?;
        if self.model.d_vocab != self.task.vocab_size() {
            return Err(format!(
                "model d_vocab ({}) must equal the task's vocabulary size ({})",
                self.model.d_vocab,
                self.task.vocab_size()
            ));
        }
        let step_floats = self.step_floats();
        if step_floats > MAX_STEP_FLOATS {
            return Err(format!(
                "training: a step of batch_size {} would hold about {:.1} GB of activations \
                 (at most {} GB fit): lower batch_size, seq_len or the vocabulary",
                self.train.batch_size,
                step_floats as f64 * 4.0 / 1e9,
                (MAX_STEP_FLOATS * 4) >> 30
            ));
        }
        if self.task.seq_len > self.model.n_ctx {
            return Err(format!(
                "task seq_len ({}) is longer than the model's n_ctx ({})",
                self.task.seq_len, self.model.n_ctx
            ));
        }
        Ok(())
    }

    /// Parses a JSON config; missing fields take their defaults, unknown ones are errors.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| format!("config JSON: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Makes the model's vocabulary and context fit the task (used after editing the task).
    pub fn fit_model_to_task(&mut self) {
        let vocab = self.task.vocab_size();
        self.model.d_vocab = vocab;
        self.model.d_model = vocab;
        self.model.n_ctx = self.model.n_ctx.max(self.task.seq_len);
    }

    /// Floats of activations one training step holds (forward and backward, about 3× the
    /// forward's largest intermediates), for the path the config asks for. `Auto` takes the
    /// multiset path only where it has fewer rows, so it is counted as the last-position path.
    pub fn step_floats(&self) -> usize {
        let (m, p) = (&self.model, self.task.seq_len);
        let last_position = 4 * p * m.n_heads * m.d_head + 2 * m.n_heads * p + 2 * m.d_vocab;
        let per_row = match self.train.path {
            PathChoice::Full => m.forward_floats_per_sequence(p),
            PathChoice::LastPosition | PathChoice::Auto => last_position,
            PathChoice::Multiset => 4 * m.n_heads * m.d_vocab + 2 * m.d_vocab,
        };
        per_row
            .saturating_mul(self.train.batch_size.min(self.task.train_size))
            .saturating_mul(3)
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.task.train_size.div_ceil(self.train.batch_size)
    }
}

/// One optimiser step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// 1-based epoch the step belongs to.
    pub epoch: usize,
    /// 1-based global step.
    pub step: usize,
    /// Mean cross-entropy of the batch before the update.
    pub loss: f64,
    pub acc: f64,
    /// Samples seen so far in the run.
    pub samples: u64,
    /// Seconds spent in steps so far (pauses excluded), for throughput and ETA.
    pub busy_s: f64,
}

/// One epoch: train metrics are running (pre-update) means over the epoch, as the notebook's
/// `train()` computes them, but true per-sample means; validation is measured after the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub train_acc_signal: f64,
    pub train_acc_noise: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub val_acc_signal: f64,
    pub val_acc_noise: f64,
    /// Seconds since the run started.
    pub elapsed_s: f64,
}

/// The metric history as CSV, one row per epoch.
pub fn history_csv(history: &[EpochMetrics]) -> String {
    let mut out = String::from(
        "epoch,train_loss,train_acc,train_acc_signal,train_acc_noise,val_loss,val_acc,val_acc_signal,val_acc_noise,elapsed_s\n",
    );
    for m in history {
        out += &format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            m.epoch,
            m.train_loss,
            m.train_acc,
            m.train_acc_signal,
            m.train_acc_noise,
            m.val_loss,
            m.val_acc,
            m.val_acc_signal,
            m.val_acc_noise,
            m.elapsed_s
        );
    }
    out
}

/// The first epoch whose validation signal accuracy reached 99 %.
pub fn epoch_reaching_99(history: &[EpochMetrics]) -> Option<usize> {
    history
        .iter()
        .find(|m| m.val_acc_signal >= 0.99)
        .map(|m| m.epoch)
}

/// Trains `cfg` to the end on this thread and returns the checkpoint, with every epoch's
/// snapshot. `on_epoch` sees each epoch's metrics as they come.
pub fn train_to_checkpoint(
    cfg: RunConfig,
    device: &candle_core::Device,
    mut on_epoch: impl FnMut(&EpochMetrics),
) -> Result<crate::checkpoint::Checkpoint, TrainError> {
    use crate::checkpoint::{Checkpoint, Snapshot};
    let mut trainer = Trainer::new(cfg.clone(), device)?;
    let mut ckpt = Checkpoint::new(cfg, trainer.weights()?);
    ckpt.snapshots.push(Snapshot {
        epoch: 0,
        weights: ckpt.weights.clone(),
    });
    while !trainer.is_finished() {
        if let Some(m) = trainer.step()?.epoch {
            on_epoch(&m);
            ckpt.history.push(m);
            ckpt.push_snapshot(Snapshot {
                epoch: m.epoch,
                weights: trainer.weights()?,
            });
        }
    }
    ckpt.weights = trainer.weights()?;
    ckpt.epoch = trainer.epochs_done();
    Ok(ckpt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_validation() {
        let nb = RunConfig::from_preset(Preset::Notebook);
        assert_eq!(nb.train.lr, 1e-3);
        assert_eq!(nb.train.epochs, 60);
        assert_eq!(nb.train.batch_size, 10_000);
        nb.validate().unwrap();
        let mut bad = nb.clone();
        bad.model.d_vocab = 12;
        bad.model.d_model = 12;
        assert!(bad.validate().unwrap_err().contains("vocabulary size (11)"));
        bad = nb.clone();
        bad.train.lr = -1.0;
        assert!(bad.validate().unwrap_err().contains("lr"));
        bad = nb;
        bad.task.seq_len = 5;
        assert!(bad.validate().unwrap_err().contains("n_ctx"));
        bad.fit_model_to_task();
        bad.validate().unwrap();
    }

    #[test]
    fn config_json() {
        let cfg = RunConfig::from_json(r#"{"seed": 3, "train": {"lr": 0.05}}"#).unwrap();
        assert_eq!(cfg.seed, 3);
        assert_eq!(cfg.train.lr, 0.05);
        assert_eq!(cfg.train.epochs, 60);
        assert!(
            RunConfig::from_json(r#"{"sed": 3}"#)
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(RunConfig::from_json("{").is_err());
        assert!(RunConfig::from_json(r#"{"train": {"lr": "x"}}"#).is_err());
        let round = serde_json::to_string(&RunConfig::default()).unwrap();
        assert_eq!(RunConfig::from_json(&round).unwrap(), RunConfig::default());
    }
}
