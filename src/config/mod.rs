//! Every setting of a run, in one place: the model's shape ([`ModelConfig`], TransformerLens's
//! fields), the task ([`TaskConfig`]), training ([`TrainConfig`]) and the [`RunConfig`] that
//! ties them together. Nothing here depends on the model, training or checkpoints.

mod error;
mod model;
mod sizing;
mod tl;
mod train;

pub use error::ConfigError;
pub use model::{
    ActFn, Embeddings, Init, LN_EPS, ModelConfig, Normalization, ParamSpec, Positions,
};
pub use sizing::{FORWARD_CHUNK_FLOATS, MAX_STEP_FLOATS};
pub use tl::{model_from_tl_json, model_to_tl_json};
pub use train::{Optimizer, PathChoice, Preset, TrainConfig, matches_pattern};

use serde::{Deserialize, Serialize};

use crate::task::sequences::{Example, ExampleData};
pub use crate::task::{
    InductionConfig, ModularAdditionConfig, NoTask, SequencesConfig, SkipTrigramConfig, TaskConfig,
    TaskError, TaskKind, Unit,
};

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
    /// The preset's whole run. `notebook` and `fast` train the notebook's skip-trigram model.
    pub fn from_preset(preset: Preset) -> Self {
        let (task, model) = match preset {
            Preset::Notebook | Preset::Fast => (TaskConfig::default(), ModelConfig::default()),
            Preset::Induction => (
                TaskConfig::Induction(InductionConfig::default()),
                ModelConfig::learned(32, 20, 2, 64, 4, None),
            ),
            Preset::Grokking => modular_addition(113, 0.3, 128, 4, 512),
            Preset::GrokkingFast => modular_addition(113, 0.3, 128, 4, 256),
            Preset::Sort => example_run(Example::Sort),
            Preset::Reverse => example_run(Example::Reverse),
        };
        Self {
            seed: 0,
            task,
            model,
            train: preset.train_config(),
        }
    }

    /// Applies `preset`: a training-only preset changes just the training settings of a
    /// skip-trigram run; any other preset replaces task, model and training. The seed stays.
    pub fn apply_preset(&mut self, preset: Preset) {
        if preset.is_training_only() && self.task.kind() == TaskKind::SkipTrigram {
            self.train = preset.train_config();
        } else {
            *self = Self {
                seed: self.seed,
                ..Self::from_preset(preset)
            };
        }
    }

    /// Training length in the task's unit (epochs or steps).
    pub fn total_units(&self) -> usize {
        match self.task.unit() {
            Unit::Epoch => self.train.epochs,
            Unit::Step => self.train.steps,
        }
    }

    /// Checks each part on its own: enough to inspect the model, not to train it.
    pub fn validate_parts(&self) -> Result<(), ConfigError> {
        self.task.validate()?;
        self.model.validate().map_err(ConfigError::in_model)?;
        self.train.validate().map_err(ConfigError::in_training)
    }

    /// Checks every part and that they fit together; the message says what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_parts()?;
        let (vocab, vocab_out) = (self.task.vocab_size(), self.task.vocab_out());
        if let TaskConfig::Sequences(_) = self.task {
            // A data file's model may be larger than its data need (a model trained elsewhere
            // on a larger vocabulary, say); each id and target must fit it.
            if self.model.d_vocab < vocab || self.model.d_vocab_out() < vocab_out {
                return Err(ConfigError::Mismatch(format!(
                    "the data use {vocab} token ids; the model's d_vocab ({}) and d_vocab_out \
                     ({}) must be at least that",
                    self.model.d_vocab,
                    self.model.d_vocab_out()
                )));
            }
        } else if self.model.d_vocab != vocab {
            return Err(ConfigError::Mismatch(format!(
                "model d_vocab ({}) must equal the task's vocabulary size ({vocab})",
                self.model.d_vocab,
            )));
        } else if self.model.d_vocab_out() != vocab_out {
            return Err(ConfigError::Mismatch(format!(
                "model d_vocab_out ({}) must equal the task's number of classes ({vocab_out})",
                self.model.d_vocab_out(),
            )));
        }
        let fast = matches!(
            self.train.path,
            PathChoice::LastPosition | PathChoice::Multiset
        );
        if fast
            && (!self.model.is_one_layer_token_table() || self.task.kind() != TaskKind::SkipTrigram)
        {
            return Err(ConfigError::Mismatch(format!(
                "the {:?} path is exact only for skip-trigrams on the one-layer \
                 attention-only model with one-hot embeddings and no positions; use auto or full",
                self.train.path
            ))
            .in_training());
        }
        let params = self.model.params();
        for pattern in &self.train.freeze {
            if !params.iter().any(|p| matches_pattern(pattern, &p.name)) {
                return Err(ConfigError::Mismatch(format!(
                    "freeze pattern {pattern:?} matches no parameter of this model"
                ))
                .in_training());
            }
        }
        let step_floats = self.step_floats();
        if step_floats > MAX_STEP_FLOATS {
            return Err(ConfigError::TooLarge(format!(
                "a step of batch_size {} would hold about {:.1} GB of activations \
                 (at most {} GB fit): lower batch_size, the sequence length or the vocabulary",
                self.train.batch_size,
                step_floats as f64 * 4.0 / 1e9,
                (MAX_STEP_FLOATS * 4) >> 30
            ))
            .in_training());
        }
        if self.task.seq_len() > self.model.n_ctx {
            return Err(ConfigError::Mismatch(format!(
                "the task's sequences ({} tokens) are longer than the model's n_ctx ({})",
                self.task.seq_len(),
                self.model.n_ctx
            )));
        }
        if !self.task.has_data() {
            return Err(ConfigError::Task(TaskError::NoData("train on")));
        }
        Ok(())
    }

    /// Checks what viewing a model needs: all that [`Self::validate`] does, except that a model
    /// without a task may be viewed (only training it needs one).
    pub fn validate_to_view(&self) -> Result<(), ConfigError> {
        match self.validate() {
            Err(ConfigError::Task(TaskError::NoData(_))) => Ok(()),
            other => other,
        }
    }

    /// Parses a JSON config; missing fields take their defaults, unknown ones are errors. A
    /// data file it names is read relative to the working directory.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        Self::from_json_in(text, std::path::Path::new("."))
    }

    /// Parses a JSON config whose data paths are relative to `base` (the config file's
    /// folder), and reads the data. For a data-file task, what the config leaves out of the
    /// model and training takes the defaults for such data: the model's `d_vocab` and `n_ctx`
    /// come from the data.
    pub fn from_json_in(text: &str, base: &std::path::Path) -> Result<Self, ConfigError> {
        Self::parse_in(text, base, false)
    }

    /// [`Self::from_json_in`] with the model's vocabulary and context then fitted to the task
    /// (as `train --p` does): for a sweep that changes the task's settings.
    pub fn from_json_fitting_model(
        text: &str,
        base: &std::path::Path,
    ) -> Result<Self, ConfigError> {
        Self::parse_in(text, base, true)
    }

    fn parse_in(text: &str, base: &std::path::Path, fit: bool) -> Result<Self, ConfigError> {
        let json = |e: serde_json::Error| ConfigError::Json(e.to_string());
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(json)?;
        let mut task: Option<TaskConfig> = match value.get("task") {
            Some(t) => Some(serde_json::from_value(t.clone()).map_err(json)?),
            None => None,
        };
        if let Some(task) = &mut task {
            task.load_data(base)
                .map_err(|e| ConfigError::Task(TaskError::Setting(e.to_string())))?;
        }
        if let (Some(t @ TaskConfig::Sequences(_)), serde_json::Value::Object(map)) =
            (&task, &mut value)
        {
            let model = sequences_model(t.vocab_size(), t.seq_len());
            for (key, defaults) in [
                ("model", serde_json::to_value(model).map_err(json)?),
                (
                    "train",
                    serde_json::to_value(sequences_training()).map_err(json)?,
                ),
            ] {
                let mut merged = defaults;
                if let (serde_json::Value::Object(m), Some(serde_json::Value::Object(given))) =
                    (&mut merged, map.get(key))
                {
                    m.extend(given.clone());
                }
                map.insert(key.into(), merged);
            }
        }
        let mut cfg: Self = serde_json::from_value(value).map_err(json)?;
        if let Some(task) = task {
            cfg.task = task;
        }
        if fit {
            cfg.task.validate()?;
            cfg.fit_model_to_task();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// How a data-file task trains by default (the sort preset's training).
    pub fn sequences_training() -> TrainConfig {
        Preset::Sort.train_config()
    }

    /// A run on the sequences of a data-file task (read already): the default model and
    /// training for such data, sized by them.
    pub fn for_sequences(task: SequencesConfig, seed: u64) -> Self {
        let task = TaskConfig::Sequences(task);
        Self {
            seed,
            model: sequences_model(task.vocab_size(), task.seq_len()),
            task,
            train: sequences_training(),
        }
    }

    /// Makes the model's vocabulary and context fit the task (used after editing the task).
    pub fn fit_model_to_task(&mut self) {
        let (vocab, vocab_out) = (self.task.vocab_size(), self.task.vocab_out());
        self.model.d_vocab = vocab;
        self.model.d_vocab_out = (vocab_out != vocab).then_some(vocab_out);
        if self.model.embeddings == Embeddings::OneHot {
            self.model.d_model = vocab;
        }
        self.model.n_ctx = self.model.n_ctx.max(self.task.seq_len());
    }

    /// Samples one training step sees.
    pub fn step_batch(&self) -> usize {
        match &self.task {
            TaskConfig::SkipTrigram(t) => self.train.batch_size.min(t.train_size),
            TaskConfig::Induction(_) => self.train.batch_size,
            TaskConfig::ModularAddition(t) => self.train.batch_size.min(t.train_count()),
            TaskConfig::Sequences(t) => self.train.batch_size.min(t.train_count(self.seed).max(1)),
            // Nothing trains; sized as a batch would be.
            TaskConfig::None(_) => self.train.batch_size,
        }
    }

    /// Optimiser steps per epoch (1 for step-counted tasks, whose "epoch" is one step).
    pub fn steps_per_epoch(&self) -> usize {
        match &self.task {
            TaskConfig::SkipTrigram(t) => t.train_size.div_ceil(self.train.batch_size),
            TaskConfig::Induction(_) => 1,
            TaskConfig::ModularAddition(t) => t.train_count().div_ceil(self.train.batch_size),
            TaskConfig::Sequences(t) => t.train_count(self.seed).div_ceil(self.train.batch_size),
            TaskConfig::None(_) => 1,
        }
    }
}

/// The model a data-file task trains by default: two attention-only layers of width 64 with four
/// heads, learned embeddings and positions (the induction preset's kind, which the direct LM
/// step computes).
fn sequences_model(vocab: usize, seq_len: usize) -> ModelConfig {
    ModelConfig::learned(vocab.max(1), seq_len.max(1), 2, 64, 4, None)
}

/// How a data-file task trains by default.
fn sequences_training() -> TrainConfig {
    RunConfig::sequences_training()
}

/// The sort or reverse example (`toylens data gen <name>` with its defaults) and its model.
fn example_run(name: Example) -> (TaskConfig, ModelConfig) {
    let task = SequencesConfig::example(ExampleData {
        name,
        digits: 5,
        samples: 20_000,
        seed: 0,
    });
    let model = sequences_model(11, 11);
    (TaskConfig::Sequences(task), model)
}

/// A modular-addition run as in TransformerLens's grokking demo: one layer with a ReLU MLP, no
/// LayerNorm, learned positions.
fn modular_addition(
    p: usize,
    train_frac: f64,
    d_model: usize,
    n_heads: usize,
    d_mlp: usize,
) -> (TaskConfig, ModelConfig) {
    let mut model = ModelConfig::learned(p + 1, 3, 1, d_model, n_heads, Some(d_mlp));
    model.d_vocab_out = Some(p);
    (
        TaskConfig::ModularAddition(ModularAdditionConfig { p, train_frac }),
        model,
    )
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
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("vocabulary size (11)")
        );
        for preset in Preset::ALL {
            let cfg = RunConfig::from_preset(preset);
            cfg.validate()
                .unwrap_or_else(|e| panic!("{}: {e}", preset.name()));
            let json = serde_json::to_string(&cfg).unwrap();
            assert_eq!(RunConfig::from_json(&json).unwrap(), cfg);
        }
        let grok = RunConfig::from_preset(Preset::Grokking);
        assert_eq!((grok.model.d_vocab, grok.model.d_vocab_out()), (114, 113));
        assert_eq!(grok.steps_per_epoch(), 1);
        let mut mixed = grok.clone();
        mixed.apply_preset(Preset::Fast);
        assert_eq!(mixed, RunConfig::from_preset(Preset::Fast));
        bad = nb.clone();
        bad.train.lr = -1.0;
        assert!(bad.validate().unwrap_err().to_string().contains("lr"));
        bad = nb;
        bad.task.skip_trigram_mut().unwrap().seq_len = 5;
        assert!(bad.validate().unwrap_err().to_string().contains("n_ctx"));
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
                .to_string()
                .contains("unknown field")
        );
        assert!(RunConfig::from_json("{").is_err());
        assert!(RunConfig::from_json(r#"{"train": {"lr": "x"}}"#).is_err());
        let round = serde_json::to_string(&RunConfig::default()).unwrap();
        assert_eq!(RunConfig::from_json(&round).unwrap(), RunConfig::default());
    }
}
