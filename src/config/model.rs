//! The model's shape: the fields of TransformerLens's `HookedTransformerConfig` that matter for
//! small models, with TL's names, meanings and defaults, plus two toylens choices TL expresses
//! only through weight values (one-hot embeddings, no positions).
//!
//! In a JSON model section a missing field takes TL's default (`attn_only` false,
//! `normalization_type` "LN", `positional_embedding_type` "standard", `init_range`
//! 0.8/√d_model, …). In code, [`ModelConfig::default`] is toylens's first model, the one-layer
//! attention-only skip-trigram model.

use serde::{Deserialize, Serialize};

use super::ConfigError;

use crate::task::{MAX_SEQ_LEN, MAX_VOCAB};

/// TL's `act_fn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActFn {
    Relu,
    /// Exact, with erf (`F.gelu`).
    Gelu,
    /// The tanh approximation GPT-2 uses.
    GeluNew,
}

impl ActFn {
    pub const ALL: [ActFn; 3] = [ActFn::Relu, ActFn::Gelu, ActFn::GeluNew];

    pub fn name(self) -> &'static str {
        match self {
            ActFn::Relu => "relu",
            ActFn::Gelu => "gelu",
            ActFn::GeluNew => "gelu_new",
        }
    }
}

/// TL's `normalization_type` (absent is `null`: no LayerNorm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Normalization {
    /// LayerNorm with a learned weight and bias.
    #[serde(rename = "LN")]
    Ln,
    /// LayerNorm without weight and bias (centre and scale only).
    #[serde(rename = "LNPre")]
    LnPre,
}

impl Normalization {
    pub fn name(self) -> &'static str {
        match self {
            Normalization::Ln => "LN",
            Normalization::LnPre => "LNPre",
        }
    }
}

/// TL's `positional_embedding_type`, plus toylens's "none" (W_pos fixed at zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// Learned `W_pos`, added to the residual stream.
    Standard,
    /// Learned `W_pos`, added to the input of the queries and keys only.
    Shortformer,
    /// No positional information: `W_pos` is zero and frozen (TL sees "standard" and zeros).
    None,
}

impl Positions {
    pub const ALL: [Positions; 3] = [Positions::Standard, Positions::Shortformer, Positions::None];

    pub fn name(self) -> &'static str {
        match self {
            Positions::Standard => "standard",
            Positions::Shortformer => "shortformer",
            Positions::None => "none",
        }
    }
}

/// Whether `W_E` and `W_U` are learned or frozen identities (tokens in as one-hot vectors, the
/// residual stream read out as logits, `b_U` zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Embeddings {
    Learned,
    OneHot,
}

/// What initialises a parameter (TL's default init: normal weights, zero biases, LN weights one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    Normal,
    Zeros,
    Ones,
}

/// One parameter: its TL state-dict name and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The most parameters a model may have (1 GiB of f32 with Adam's two moments and gradients).
pub const MAX_PARAMS: usize = 64 << 20;
pub const MAX_LAYERS: usize = 48;
pub const MAX_HEADS: usize = 64;
pub const MAX_D_MODEL: usize = 4_096;
pub const MAX_D_HEAD: usize = 1_024;
pub const MAX_D_MLP: usize = 16_384;
/// LayerNorm's epsilon, TL's default.
pub const LN_EPS: f64 = 1e-5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default = "defaults::n_layers")]
    pub n_layers: usize,
    #[serde(default = "defaults::d_model")]
    pub d_model: usize,
    #[serde(default = "defaults::n_heads")]
    pub n_heads: usize,
    #[serde(default = "defaults::d_head")]
    pub d_head: usize,
    #[serde(default = "defaults::d_vocab")]
    pub d_vocab: usize,
    /// `None` (TL's -1): the same as `d_vocab`.
    #[serde(default)]
    pub d_vocab_out: Option<usize>,
    #[serde(default = "defaults::n_ctx")]
    pub n_ctx: usize,
    #[serde(default)]
    pub attn_only: bool,
    /// `None`: 4 × d_model, as TL.
    #[serde(default)]
    pub d_mlp: Option<usize>,
    /// Needed when the blocks have MLPs.
    #[serde(default)]
    pub act_fn: Option<ActFn>,
    #[serde(default = "defaults::normalization")]
    pub normalization_type: Option<Normalization>,
    #[serde(default = "defaults::positions")]
    pub positional_embedding_type: Positions,
    #[serde(default = "defaults::embeddings")]
    pub embeddings: Embeddings,
    #[serde(default = "defaults::yes")]
    pub use_attn_scale: bool,
    /// `None`: √d_head.
    #[serde(default)]
    pub attn_scale: Option<f64>,
    /// Standard deviation of the normal init of every `W_*`; `None`: 0.8/√d_model, as TL.
    #[serde(default)]
    pub init_range: Option<f64>,
}

mod defaults {
    use super::*;
    pub fn n_layers() -> usize {
        1
    }
    pub fn d_model() -> usize {
        ModelConfig::default().d_model
    }
    pub fn n_heads() -> usize {
        ModelConfig::default().n_heads
    }
    pub fn d_head() -> usize {
        ModelConfig::default().d_head
    }
    pub fn d_vocab() -> usize {
        ModelConfig::default().d_vocab
    }
    pub fn n_ctx() -> usize {
        ModelConfig::default().n_ctx
    }
    pub fn normalization() -> Option<Normalization> {
        Some(Normalization::Ln)
    }
    pub fn positions() -> Positions {
        Positions::Standard
    }
    pub fn embeddings() -> Embeddings {
        Embeddings::Learned
    }
    pub fn yes() -> bool {
        true
    }
}

impl Default for ModelConfig {
    /// The notebook's skip-trigram model: 3 heads of size 1 over a vocabulary of 11.
    fn default() -> Self {
        Self::skip_trigram(11, 4, 3, 1)
    }
}

impl ModelConfig {
    /// The skip-trigram model: one layer, attention only, one-hot embeddings, no positions, no
    /// LayerNorm, init std 0.02.
    pub fn skip_trigram(d_vocab: usize, n_ctx: usize, n_heads: usize, d_head: usize) -> Self {
        Self {
            n_layers: 1,
            d_model: d_vocab,
            n_heads,
            d_head,
            d_vocab,
            d_vocab_out: None,
            n_ctx,
            attn_only: true,
            d_mlp: None,
            act_fn: None,
            normalization_type: None,
            positional_embedding_type: Positions::None,
            embeddings: Embeddings::OneHot,
            use_attn_scale: true,
            attn_scale: None,
            init_range: Some(0.02),
        }
    }

    /// A TransformerLens model with learned embeddings and positions and no LayerNorm;
    /// attention only unless `d_mlp` is given (then with a ReLU MLP).
    pub fn learned(
        d_vocab: usize,
        n_ctx: usize,
        n_layers: usize,
        d_model: usize,
        n_heads: usize,
        d_mlp: Option<usize>,
    ) -> Self {
        Self {
            n_layers,
            d_model,
            n_heads,
            d_head: d_model / n_heads,
            d_vocab,
            d_vocab_out: None,
            n_ctx,
            attn_only: d_mlp.is_none(),
            d_mlp,
            act_fn: d_mlp.map(|_| ActFn::Relu),
            normalization_type: None,
            positional_embedding_type: Positions::Standard,
            embeddings: Embeddings::Learned,
            use_attn_scale: true,
            attn_scale: None,
            init_range: None,
        }
    }

    pub fn d_vocab_out(&self) -> usize {
        self.d_vocab_out.unwrap_or(self.d_vocab)
    }

    pub fn d_mlp(&self) -> usize {
        self.d_mlp.unwrap_or(4 * self.d_model)
    }

    pub fn has_mlp(&self) -> bool {
        !self.attn_only
    }

    pub fn init_range(&self) -> f64 {
        self.init_range
            .unwrap_or_else(|| 0.8 / (self.d_model.max(1) as f64).sqrt())
    }

    /// What scores are divided by: `attn_scale` (√d_head by default), or 1 without scaling.
    pub fn attn_scale(&self) -> f64 {
        if self.use_attn_scale {
            self.attn_scale
                .unwrap_or_else(|| (self.d_head as f64).sqrt())
        } else {
            1.0
        }
    }

    /// The skip-trigram shape, where toylens's exact fast paths (last-position gathers, token
    /// multisets) and the exact head-to-logit decomposition apply.
    pub fn is_one_layer_token_table(&self) -> bool {
        self.n_layers == 1
            && self.attn_only
            && self.embeddings == Embeddings::OneHot
            && self.positional_embedding_type == Positions::None
            && self.normalization_type.is_none()
    }

    /// Whether logits split exactly into direct path + heads + biases (+ MLP): one layer, no
    /// LayerNorm.
    pub fn has_exact_decomposition(&self) -> bool {
        self.n_layers == 1 && self.normalization_type.is_none()
    }

    /// Every parameter, in TL's state-dict order (which is also the order of the init draws).
    pub fn params(&self) -> Vec<ParamSpec> {
        let (m, h, d) = (self.d_model, self.n_heads, self.d_head);
        let mut out = Vec::new();
        let mut add =
            |name: String, shape: Vec<usize>, init: Init| out.push(ParamSpec { name, shape, init });
        if self.embeddings == Embeddings::Learned {
            add("embed.W_E".into(), vec![self.d_vocab, m], Init::Normal);
        }
        if self.positional_embedding_type != Positions::None {
            add("pos_embed.W_pos".into(), vec![self.n_ctx, m], Init::Normal);
        }
        let ln = self.normalization_type == Some(Normalization::Ln);
        for l in 0..self.n_layers {
            let b = format!("blocks.{l}");
            if ln {
                add(format!("{b}.ln1.w"), vec![m], Init::Ones);
                add(format!("{b}.ln1.b"), vec![m], Init::Zeros);
                if self.has_mlp() {
                    add(format!("{b}.ln2.w"), vec![m], Init::Ones);
                    add(format!("{b}.ln2.b"), vec![m], Init::Zeros);
                }
            }
            for w in ["W_Q", "W_K", "W_V"] {
                add(format!("{b}.attn.{w}"), vec![h, m, d], Init::Normal);
            }
            add(format!("{b}.attn.W_O"), vec![h, d, m], Init::Normal);
            for bias in ["b_Q", "b_K", "b_V"] {
                add(format!("{b}.attn.{bias}"), vec![h, d], Init::Zeros);
            }
            add(format!("{b}.attn.b_O"), vec![m], Init::Zeros);
            if self.has_mlp() {
                let f = self.d_mlp();
                add(format!("{b}.mlp.W_in"), vec![m, f], Init::Normal);
                add(format!("{b}.mlp.b_in"), vec![f], Init::Zeros);
                add(format!("{b}.mlp.W_out"), vec![f, m], Init::Normal);
                add(format!("{b}.mlp.b_out"), vec![m], Init::Zeros);
            }
        }
        if ln {
            add("ln_final.w".into(), vec![m], Init::Ones);
            add("ln_final.b".into(), vec![m], Init::Zeros);
        }
        if self.embeddings == Embeddings::Learned {
            add(
                "unembed.W_U".into(),
                vec![m, self.d_vocab_out()],
                Init::Normal,
            );
            add("unembed.b_U".into(), vec![self.d_vocab_out()], Init::Zeros);
        }
        out
    }

    /// Number of parameters (frozen ones included).
    pub fn n_params(&self) -> usize {
        self.params().iter().map(ParamSpec::numel).sum()
    }

    /// Checks every field and that they fit together; the message names the field to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value, max) in [
            ("n_layers", self.n_layers, MAX_LAYERS),
            ("d_model", self.d_model, MAX_D_MODEL),
            ("n_heads", self.n_heads, MAX_HEADS),
            ("d_head", self.d_head, MAX_D_HEAD),
            ("d_vocab", self.d_vocab, MAX_VOCAB),
            ("d_vocab_out", self.d_vocab_out(), MAX_VOCAB),
            ("n_ctx", self.n_ctx, MAX_SEQ_LEN),
        ] {
            if value == 0 || value > max {
                return Err(ConfigError::field(
                    name,
                    format!("between 1 and {max}"),
                    value,
                ));
            }
        }
        if self.has_mlp() {
            let f = self.d_mlp();
            if f == 0 || f > MAX_D_MLP {
                return Err(ConfigError::field(
                    "d_mlp",
                    format!("between 1 and {MAX_D_MLP}"),
                    f,
                ));
            }
            if self.act_fn.is_none() {
                return Err(ConfigError::Mismatch(
                    "act_fn (relu, gelu or gelu_new) must be given when the blocks have MLPs \
                     (attn_only is false)"
                        .into(),
                ));
            }
        }
        if self.embeddings == Embeddings::OneHot {
            if self.d_model != self.d_vocab {
                return Err(ConfigError::Mismatch(format!(
                    "with one-hot embeddings d_model ({}) must equal d_vocab ({})",
                    self.d_model, self.d_vocab
                )));
            }
            if self.d_vocab_out() != self.d_vocab {
                return Err(ConfigError::Mismatch(format!(
                    "with one-hot embeddings d_vocab_out ({}) must equal d_vocab ({})",
                    self.d_vocab_out(),
                    self.d_vocab
                )));
            }
        }
        if let Some(s) = self.attn_scale
            && !(s.is_finite() && s > 0.0)
        {
            return Err(ConfigError::field("attn_scale", "a positive number", s));
        }
        let init = self.init_range();
        if !(init.is_finite() && (0.0..=100.0).contains(&init)) {
            return Err(ConfigError::field("init_range", "between 0 and 100", init));
        }
        let n = self.params_saturating();
        if n > MAX_PARAMS {
            return Err(ConfigError::TooLarge(format!(
                "the model would have {n} parameters; at most {MAX_PARAMS} are supported"
            )));
        }
        Ok(())
    }

    /// A one-line description for summaries and logs.
    pub fn describe(&self) -> String {
        let mlp = if self.has_mlp() {
            format!(
                ", MLP {} {}",
                self.d_mlp(),
                self.act_fn.map_or("?", ActFn::name)
            )
        } else {
            ", attention only".into()
        };
        let norm = self
            .normalization_type
            .map_or("no LayerNorm", Normalization::name);
        let embed = match self.embeddings {
            Embeddings::Learned => "learned embeddings",
            Embeddings::OneHot => "one-hot embeddings",
        };
        format!(
            "{} layer{}, d_model {}, {} heads × {}{mlp}, {norm}, {} positions, {embed}",
            self.n_layers,
            if self.n_layers == 1 { "" } else { "s" },
            self.d_model,
            self.n_heads,
            self.d_head,
            self.positional_embedding_type.name()
        )
    }
}

#[cfg(test)]
mod tests;
