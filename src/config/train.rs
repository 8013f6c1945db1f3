//! Training settings: presets, the optimiser and its hyperparameters, batching, frozen
//! parameters and the forward path.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Named runs. `notebook` and `fast` are training settings for the skip-trigram task; the others
/// are whole runs (task, model and training) that reproduce a known result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The notebook's settings: Adam lr 1e-3, 60 epochs, batch 10 000. Under-trains the task.
    Notebook,
    /// Learns every signal pair within seconds: Adam lr 1e-2, 60 epochs, batch 10 000.
    #[default]
    Fast,
    /// Induction heads form in a 2-layer attention-only model within a few hundred steps.
    Induction,
    /// TransformerLens's grokking demo: modular addition mod 113, 30 % of pairs, weight decay 1.
    Grokking,
    /// A smaller modular-addition run that memorises, plateaus and groks within a minute.
    GrokkingFast,
    /// Sorting five digits (the `sort` example data set), by a 2-layer attention-only model.
    Sort,
    /// Reversing five digits (the `reverse` example data set), by the same model.
    Reverse,
}

impl Preset {
    pub const ALL: [Preset; 7] = [
        Preset::Notebook,
        Preset::Fast,
        Preset::Induction,
        Preset::Grokking,
        Preset::GrokkingFast,
        Preset::Sort,
        Preset::Reverse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Notebook => "notebook",
            Preset::Fast => "fast",
            Preset::Induction => "induction",
            Preset::Grokking => "grokking",
            Preset::GrokkingFast => "grokking-fast",
            Preset::Sort => "sort",
            Preset::Reverse => "reverse",
        }
    }

    /// Whether the preset is training settings only (for the skip-trigram task).
    pub fn is_training_only(self) -> bool {
        matches!(self, Preset::Notebook | Preset::Fast)
    }

    pub fn train_config(self) -> TrainConfig {
        let base = TrainConfig::default();
        let adamw = TrainConfig {
            optimizer: Optimizer::AdamW,
            lr: 1e-3,
            weight_decay: 1.0,
            betas: [0.9, 0.98],
            // Full batch: every training pair in every step.
            batch_size: 1_000_000,
            eval_every: 100,
            freeze: vec!["*.b_*".into()],
            ..base.clone()
        };
        match self {
            Preset::Notebook => TrainConfig { lr: 1e-3, ..base },
            Preset::Fast => TrainConfig { lr: 1e-2, ..base },
            Preset::Induction => TrainConfig {
                lr: 1e-3,
                batch_size: 64,
                steps: 1_000,
                eval_every: 25,
                ..base
            },
            Preset::Grokking => TrainConfig {
                epochs: 25_000,
                ..adamw
            },
            // Same task; a narrower MLP, 3× the learning rate and twice the weight decay.
            Preset::GrokkingFast => TrainConfig {
                lr: 3e-3,
                weight_decay: 2.0,
                epochs: 3_000,
                eval_every: 50,
                ..adamw
            },
            Preset::Sort | Preset::Reverse => TrainConfig {
                optimizer: Optimizer::AdamW,
                lr: 1e-3,
                weight_decay: 0.01,
                batch_size: 128,
                epochs: 10,
                eval_every: 1,
                ..base
            },
        }
    }
}

/// The optimiser, with PyTorch's semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// `torch.optim.Adam`: weight decay is an L2 term added to the gradient.
    #[default]
    Adam,
    /// `torch.optim.AdamW`: weight decay shrinks the weights directly, decoupled from the moments.
    #[serde(rename = "adamw")]
    #[value(name = "adamw")]
    AdamW,
}

impl Optimizer {
    pub fn name(self) -> &'static str {
        match self {
            Optimizer::Adam => "Adam",
            Optimizer::AdamW => "AdamW",
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

impl PathChoice {
    /// The choice that applies to `model`, for sizing a run before its model exists (the
    /// model's plan makes the same choice when it is built): the shortcuts are exact only for
    /// the one-layer attention-only one-hot model without positions, so every other model
    /// takes the full path.
    pub fn for_model(self, model: &super::ModelConfig) -> Self {
        if model.is_one_layer_token_table() {
            self
        } else {
            PathChoice::Full
        }
    }
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
    pub optimizer: Optimizer,
    /// Adam's (beta1, beta2), torch's `betas`.
    pub betas: [f64; 2],
    /// Adam's epsilon, torch's `eps`.
    pub eps: f64,
    /// Parameters that stay as they are: TL names, where `*` matches any run of characters
    /// (`"*.b_*"` freezes every attention and MLP bias, `"unembed.b_U"` one tensor).
    pub freeze: Vec<String>,
    /// Training length for tasks that count steps on fresh batches (induction).
    pub steps: usize,
    /// Evaluate (and keep a snapshot) every this many epochs or steps, and at the end.
    pub eval_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            weight_decay: 0.0,
            batch_size: 10_000,
            epochs: 60,
            path: PathChoice::Auto,
            optimizer: Optimizer::Adam,
            betas: [0.9, 0.999],
            eps: 1e-8,
            freeze: Vec::new(),
            steps: 1_000,
            eval_every: 1,
        }
    }
}

impl TrainConfig {
    /// Whether a freeze pattern names the parameter `name`.
    pub fn is_frozen(&self, name: &str) -> bool {
        self.freeze.iter().any(|p| matches_pattern(p, name))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::field(name, "a positive number", v))
            }
        };
        let within = |name: &str, v: usize, max: usize| {
            if (1..=max).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::field(name, format!("between 1 and {max}"), v))
            }
        };
        positive("lr", self.lr)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(ConfigError::field(
                "weight_decay",
                "a number >= 0",
                self.weight_decay,
            ));
        }
        within("batch_size", self.batch_size, 10_000_000)?;
        for (i, b) in self.betas.iter().enumerate() {
            if !(b.is_finite() && (0.0..1.0).contains(b)) {
                return Err(ConfigError::field(format!("betas[{i}]"), "in [0, 1)", b));
            }
        }
        positive("eps", self.eps)?;
        within("epochs", self.epochs, 1_000_000)?;
        within("steps", self.steps, 100_000_000)?;
        within("eval_every", self.eval_every, 100_000_000)
    }
}

/// Whether a TL parameter name matches a freeze pattern (`*` matches any run of characters).
pub fn matches_pattern(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freeze_patterns_match_tl_names() {
        assert!(matches_pattern("*.b_*", "blocks.0.attn.b_Q"));
        assert!(matches_pattern("*.b_*", "unembed.b_U"));
        assert!(!matches_pattern("*.b_*", "blocks.0.attn.W_Q"));
        assert!(matches_pattern("embed.W_E", "embed.W_E"));
        assert!(!matches_pattern("embed.W_E", "unembed.W_E"));
        assert!(matches_pattern("blocks.*.mlp.*", "blocks.1.mlp.W_in"));
        assert!(!matches_pattern("a*a", "a"));
    }
}
