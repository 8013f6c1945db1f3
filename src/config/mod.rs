//! Every setting of a run, in one place: the model's shape ([`ModelConfig`], TransformerLens's
//! fields), the task ([`TaskConfig`]), training ([`TrainConfig`]) and the [`RunConfig`] that
//! ties them together. Nothing here depends on the model, training or checkpoints.

mod model;
mod tl;
mod train;

pub use model::{
    ActFn, Embeddings, FORWARD_CHUNK_FLOATS, Init, LN_EPS, ModelConfig, Normalization, ParamSpec,
    Positions,
};
pub use tl::{model_from_tl_json, model_to_tl_json};
pub use train::{Optimizer, PathChoice, Preset, TrainConfig, matches_pattern};

use serde::{Deserialize, Serialize};

pub use crate::task::TaskConfig;

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

    /// Checks each part on its own: enough to inspect the model, not to train it.
    pub fn validate_parts(&self) -> Result<(), String> {
        self.task.validate().map_err(|e| format!("task: {e}"))?;
        self.model.validate().map_err(|e| format!("model: {e}"))?;
        self.train.validate().map_err(|e| format!("training: {e}"))
    }

    /// Checks every part and that they fit together; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_parts()?;
        if self.model.d_vocab != self.task.vocab_size() {
            return Err(format!(
                "model d_vocab ({}) must equal the task's vocabulary size ({})",
                self.model.d_vocab,
                self.task.vocab_size()
            ));
        }
        if self.model.d_vocab_out() != self.task.vocab_size() {
            return Err(format!(
                "model d_vocab_out ({}) must equal the task's vocabulary size ({})",
                self.model.d_vocab_out(),
                self.task.vocab_size()
            ));
        }
        let fast = matches!(
            self.train.path,
            PathChoice::LastPosition | PathChoice::Multiset
        );
        if fast && !self.model.is_one_layer_token_table() {
            return Err(format!(
                "training: the {:?} path is exact only for the one-layer attention-only model with \
                 one-hot embeddings and no positions; use auto or full",
                self.train.path
            ));
        }
        let params = self.model.params();
        for pattern in &self.train.freeze {
            if !params.iter().any(|p| matches_pattern(pattern, &p.name)) {
                return Err(format!(
                    "training: freeze pattern {pattern:?} matches no parameter of this model"
                ));
            }
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
        self.model.d_vocab_out = None;
        if self.model.embeddings == Embeddings::OneHot {
            self.model.d_model = vocab;
        }
        self.model.n_ctx = self.model.n_ctx.max(self.task.seq_len);
    }

    /// Floats of activations one training step holds (forward and backward, about 3× the
    /// forward's largest intermediates), for the path the config asks for. `Auto` takes the
    /// multiset path only where it has fewer rows, so it is counted as the last-position path.
    pub fn step_floats(&self) -> usize {
        let (m, p) = (&self.model, self.task.seq_len);
        let last_position = 4 * p * m.n_heads * m.d_head + 2 * m.n_heads * p + 2 * m.d_vocab;
        let per_row = match self.train.path.for_model(m) {
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
