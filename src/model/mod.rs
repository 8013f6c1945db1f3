//! The one-layer attention-only transformer, in TransformerLens conventions.
//!
//! `W_E` and `W_U` are frozen identities (one-hot tokens in, the residual stream read out as logits),
//! there is no positional embedding and no layer norm. Parameter names and shapes are TL's:
//! `blocks.0.attn.W_Q` is `[n_heads, d_model, d_head]` and so on.
//!
//! Three forward passes compute the same last-position logits:
//! - [`AttnOnly::forward`], the general path: every position, causal mask, activations captured on
//!   request. It is the reference every other path is tested against.
//! - [`AttnOnly::forward_last`]: only the last query row, which is all the loss uses. The last query
//!   sees every key, so no mask is needed, and with one-hot tokens each projection is a row gather.
//! - [`AttnOnly::forward_multiset`]: with no positional embedding the last position depends only
//!   on the last token and the multiset of the tokens, so a batch collapses to its distinct
//!   (last token, token counts) rows; attention weights for a token type are scaled by its count.

mod ablation;
mod cache;

pub use ablation::{Ablation, HeadMode};
pub use cache::{ActivationCache, NdArray, argmax, softmax};

use candle_core::{D, DType, Device, Tensor, Var};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::seed::{Stream, stream_rng};
use crate::task::MAX_VOCAB;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub d_vocab: usize,
    pub d_model: usize,
    pub n_ctx: usize,
    pub n_heads: usize,
    pub d_head: usize,
    pub n_layers: usize,
    /// Standard deviation of the normal init of W_Q, W_K, W_V, W_O (biases start at zero).
    pub init_range: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            d_vocab: 11,
            d_model: 11,
            n_ctx: 4,
            n_heads: 3,
            d_head: 1,
            n_layers: 1,
            init_range: 0.02,
        }
    }
}

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("{0}")]
    Tokens(String),
    #[error("weights do not fit the config: {0}")]
    Weights(String),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

impl ModelConfig {
    pub fn validate(&self) -> Result<(), ModelError> {
        let err = |m: String| Err(ModelError::Config(m));
        if self.d_model != self.d_vocab {
            return err(format!(
                "the embedding is a frozen one-hot, so d_model ({}) must equal d_vocab ({})",
                self.d_model, self.d_vocab
            ));
        }
        if self.n_layers != 1 {
            return err(format!(
                "only one layer is supported, got n_layers = {}",
                self.n_layers
            ));
        }
        for (name, value, max) in [
            ("d_vocab", self.d_vocab, MAX_VOCAB),
            ("n_ctx", self.n_ctx, crate::task::MAX_SEQ_LEN),
            ("n_heads", self.n_heads, 64),
            ("d_head", self.d_head, 1024),
        ] {
            if value == 0 || value > max {
                return err(format!("{name} must be between 1 and {max}, got {value}"));
            }
        }
        if !(0.0..=100.0).contains(&self.init_range) {
            return err(format!(
                "init_range must be between 0 and 100, got {}",
                self.init_range
            ));
        }
        Ok(())
    }

    /// TL's `attn_scale`: scores are divided by it.
    pub fn attn_scale(&self) -> f64 {
        (self.d_head as f64).sqrt()
    }

    /// Number of trainable parameters.
    pub fn n_params(&self) -> usize {
        Param::ALL.iter().map(|p| p.numel(self)).sum()
    }

    /// Floats of the largest intermediates of a full forward pass (with the activation cache)
    /// over one sequence of `seq_len`: scores and pattern, logits, and q, k, v, z.
    pub fn forward_floats_per_sequence(&self, seq_len: usize) -> usize {
        let per_position = (2 * self.n_heads * seq_len)
            .max(2 * self.d_vocab)
            .max(4 * self.n_heads * self.d_head);
        (seq_len * per_position).max(1)
    }

    /// How many sequences one analysis forward pass takes at once: up to 10 000, fewer when a
    /// pass over that many would hold more than [`FORWARD_CHUNK_FLOATS`], so analysis memory
    /// stays bounded at any model and sequence size.
    pub fn forward_chunk_rows(&self, seq_len: usize) -> usize {
        (FORWARD_CHUNK_FLOATS / self.forward_floats_per_sequence(seq_len)).clamp(1, 10_000)
    }
}

/// The intermediates of one analysis forward pass stay within this many floats (256 MiB).
pub const FORWARD_CHUNK_FLOATS: usize = 64 << 20;

/// The trainable parameters, in TL's order of creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Param {
    WQ,
    WK,
    WV,
    WO,
    BQ,
    BK,
    BV,
    BO,
}

impl Param {
    pub const ALL: [Param; 8] = [
        Param::WQ,
        Param::WK,
        Param::WV,
        Param::WO,
        Param::BQ,
        Param::BK,
        Param::BV,
        Param::BO,
    ];

    /// The short name, as in `model.W_Q`.
    pub fn name(self) -> &'static str {
        match self {
            Param::WQ => "W_Q",
            Param::WK => "W_K",
            Param::WV => "W_V",
            Param::WO => "W_O",
            Param::BQ => "b_Q",
            Param::BK => "b_K",
            Param::BV => "b_V",
            Param::BO => "b_O",
        }
    }

    /// The TransformerLens state-dict key.
    pub fn tl_name(self) -> String {
        format!("blocks.0.attn.{}", self.name())
    }

    pub fn shape(self, cfg: &ModelConfig) -> Vec<usize> {
        let (h, m, d) = (cfg.n_heads, cfg.d_model, cfg.d_head);
        match self {
            Param::WQ | Param::WK | Param::WV => vec![h, m, d],
            Param::WO => vec![h, d, m],
            Param::BQ | Param::BK | Param::BV => vec![h, d],
            Param::BO => vec![m],
        }
    }

    pub fn numel(self, cfg: &ModelConfig) -> usize {
        self.shape(cfg).iter().product()
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A plain host copy of every trainable parameter, in TL layout (row-major). This is what crosses
/// threads and goes into snapshots: it never shares storage with the optimiser's tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    #[serde(rename = "W_Q")]
    pub w_q: Vec<f32>,
    #[serde(rename = "W_K")]
    pub w_k: Vec<f32>,
    #[serde(rename = "W_V")]
    pub w_v: Vec<f32>,
    #[serde(rename = "W_O")]
    pub w_o: Vec<f32>,
    #[serde(rename = "b_Q")]
    pub b_q: Vec<f32>,
    #[serde(rename = "b_K")]
    pub b_k: Vec<f32>,
    #[serde(rename = "b_V")]
    pub b_v: Vec<f32>,
    #[serde(rename = "b_O")]
    pub b_o: Vec<f32>,
}

impl Weights {
    pub fn get(&self, p: Param) -> &[f32] {
        match p {
            Param::WQ => &self.w_q,
            Param::WK => &self.w_k,
            Param::WV => &self.w_v,
            Param::WO => &self.w_o,
            Param::BQ => &self.b_q,
            Param::BK => &self.b_k,
            Param::BV => &self.b_v,
            Param::BO => &self.b_o,
        }
    }

    pub fn get_mut(&mut self, p: Param) -> &mut Vec<f32> {
        match p {
            Param::WQ => &mut self.w_q,
            Param::WK => &mut self.w_k,
            Param::WV => &mut self.w_v,
            Param::WO => &mut self.w_o,
            Param::BQ => &mut self.b_q,
            Param::BK => &mut self.b_k,
            Param::BV => &mut self.b_v,
            Param::BO => &mut self.b_o,
        }
    }

    /// All zeros, shaped for `cfg`.
    pub fn zeros(cfg: &ModelConfig) -> Self {
        let z = |p: Param| vec![0.0; p.numel(cfg)];
        Self {
            w_q: z(Param::WQ),
            w_k: z(Param::WK),
            w_v: z(Param::WV),
            w_o: z(Param::WO),
            b_q: z(Param::BQ),
            b_k: z(Param::BK),
            b_v: z(Param::BV),
            b_o: z(Param::BO),
        }
    }

    /// The initial weights for `seed`: normal(0, init_range) for W_Q, W_K, W_V, W_O, drawn in that
    /// order from the seed's init stream; zero biases. Deterministic on every device.
    pub fn init(cfg: &ModelConfig, seed: u64) -> Self {
        let mut rng = stream_rng(seed, Stream::Init);
        let mut w = Self::zeros(cfg);
        // A zero std is allowed (all-zero init); Normal rejects only negative or NaN std.
        let normal = Normal::new(0.0f64, cfg.init_range).unwrap_or(Normal::new(0.0, 0.0).unwrap());
        for p in [Param::WQ, Param::WK, Param::WV, Param::WO] {
            for x in w.get_mut(p).iter_mut() {
                *x = normal.sample(&mut rng) as f32;
            }
        }
        w
    }

    /// Checks every tensor has the size `cfg` asks for and holds only finite values.
    pub fn validate(&self, cfg: &ModelConfig) -> Result<(), ModelError> {
        for p in Param::ALL {
            let (got, want) = (self.get(p).len(), p.numel(cfg));
            if got != want {
                return Err(ModelError::Weights(format!(
                    "{} has {got} values, expected {want} (shape {:?})",
                    p.name(),
                    p.shape(cfg)
                )));
            }
            if let Some(i) = self.get(p).iter().position(|x| !x.is_finite()) {
                return Err(ModelError::Weights(format!(
                    "{} holds a non-finite value ({}) at flat index {i}",
                    p.name(),
                    self.get(p)[i]
                )));
            }
        }
        Ok(())
    }

    pub fn all_finite(&self) -> bool {
        Param::ALL
            .iter()
            .all(|&p| self.get(p).iter().all(|x| x.is_finite()))
    }
}

/// The model: trainable parameters as candle `Var`s on one device, plus frozen buffers.
pub struct AttnOnly {
    cfg: ModelConfig,
    device: Device,
    params: Vec<Var>,
    /// Frozen one-hot embedding `[d_vocab, d_model]` (the identity).
    w_e: Tensor,
    /// Frozen unembedding `[d_model, d_vocab]` (the identity).
    w_u: Tensor,
    /// Additive causal mask `[n_ctx, n_ctx]`: 0 on and below the diagonal, -inf above (as in TL).
    mask: Tensor,
}

impl AttnOnly {
    pub fn new(cfg: &ModelConfig, weights: &Weights, device: &Device) -> Result<Self, ModelError> {
        cfg.validate()?;
        weights.validate(cfg)?;
        let params = Param::ALL
            .iter()
            .map(|&p| Var::from_slice(weights.get(p), p.shape(cfg), device))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let n = cfg.n_ctx;
        let mask: Vec<f32> = (0..n * n)
            .map(|i| {
                if i % n > i / n {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        Ok(Self {
            cfg: cfg.clone(),
            device: device.clone(),
            params,
            w_e: Tensor::eye(cfg.d_vocab, DType::F32, device)?,
            w_u: Tensor::eye(cfg.d_model, DType::F32, device)?,
            mask: Tensor::from_vec(mask, (n, n), device)?,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The variables the optimiser updates, in [`Param::ALL`] order.
    pub fn vars(&self) -> &[Var] {
        &self.params
    }

    pub fn param(&self, p: Param) -> &Tensor {
        self.params[p.index()].as_tensor()
    }

    /// A host copy of the current weights.
    pub fn weights(&self) -> candle_core::Result<Weights> {
        let mut w = Weights::zeros(&self.cfg);
        for p in Param::ALL {
            *w.get_mut(p) = self.param(p).flatten_all()?.to_vec1::<f32>()?;
        }
        Ok(w)
    }

    /// Overwrites the parameters in place.
    pub fn set_weights(&self, weights: &Weights) -> Result<(), ModelError> {
        weights.validate(&self.cfg)?;
        for p in Param::ALL {
            let t = Tensor::from_slice(weights.get(p), p.shape(&self.cfg), &self.device)?;
            self.params[p.index()].set(&t)?;
        }
        Ok(())
    }

    /// `W[h, m, d]` as a `[m, h*d]` matrix, so `x @ it` projects every head at once.
    fn heads_as_matrix(&self, p: Param) -> candle_core::Result<Tensor> {
        let (h, m, d) = (self.cfg.n_heads, self.cfg.d_model, self.cfg.d_head);
        self.param(p)
            .permute((1, 0, 2))?
            .contiguous()?
            .reshape((m, h * d))
    }

    /// `W[h, m, d] + b[h, d]` as a per-token table `[d_vocab, h, d]`: with one-hot tokens, the
    /// projection of token `t` is row `t`.
    fn token_table(&self, w: Param, b: Param) -> candle_core::Result<Tensor> {
        self.param(w)
            .permute((1, 0, 2))?
            .contiguous()?
            .broadcast_add(self.param(b))
    }

    /// `W_O [h, d, m]` as `[h*d, m]`.
    fn w_o_matrix(&self) -> candle_core::Result<Tensor> {
        let (h, m, d) = (self.cfg.n_heads, self.cfg.d_model, self.cfg.d_head);
        self.param(Param::WO).reshape((h * d, m))
    }

    /// The general forward pass. `tokens` is `[batch, pos]` (u32, pos ≤ n_ctx); returns the logits
    /// `[batch, pos, d_vocab]` and, if `capture`, every TL hook activation.
    pub fn forward(
        &self,
        tokens: &Tensor,
        capture: bool,
    ) -> candle_core::Result<(Tensor, Vec<(&'static str, Tensor)>)> {
        self.forward_ablated(tokens, capture, None)
    }

    /// [`Self::forward`] with heads ablated: an ablated head's z (TL's `hook_z`) is replaced by
    /// zeros or by its mean before W_O, so everything downstream, the cache included, sees it.
    pub fn forward_ablated(
        &self,
        tokens: &Tensor,
        capture: bool,
        ablation: Option<&Ablation>,
    ) -> candle_core::Result<(Tensor, Vec<(&'static str, Tensor)>)> {
        let (b, p) = tokens.dims2()?;
        let (h, m, d) = (self.cfg.n_heads, self.cfg.d_model, self.cfg.d_head);
        if p > self.cfg.n_ctx {
            candle_core::bail!(
                "sequence of {p} tokens is longer than n_ctx {}",
                self.cfg.n_ctx
            );
        }
        let embed = self
            .w_e
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((b, p, m))?;
        let resid_pre = embed.clone(); // + W_pos, which is zero
        let x = resid_pre.reshape((b * p, m))?;
        let project = |w: Param, bias: Param| -> candle_core::Result<Tensor> {
            x.matmul(&self.heads_as_matrix(w)?)?
                .broadcast_add(&self.param(bias).reshape(h * d)?)?
                .reshape((b, p, h, d))
        };
        let q = project(Param::WQ, Param::BQ)?;
        let k = project(Param::WK, Param::BK)?;
        let v = project(Param::WV, Param::BV)?;
        let q_bh = q.permute((0, 2, 1, 3))?.contiguous()?; // [b, h, p, d]
        let k_bh = k.permute((0, 2, 3, 1))?.contiguous()?; // [b, h, d, p]
        let scores = (q_bh.matmul(&k_bh)? / self.cfg.attn_scale())?; // [b, h, q, k]
        let mask = self.mask.narrow(0, 0, p)?.narrow(1, 0, p)?;
        let masked = scores.broadcast_add(&mask)?;
        let pattern = candle_nn::ops::softmax(&masked, D::Minus1)?;
        let v_bh = v.permute((0, 2, 1, 3))?.contiguous()?; // [b, h, k, d]
        let mut z_bh = pattern.matmul(&v_bh)?; // [b, h, q, d]
        if let Some(ablation) = ablation.filter(|a| a.is_active()) {
            let (keep, replacement) = ablation.tensors(h, p, d, &self.device)?;
            z_bh = z_bh.broadcast_mul(&keep)?.broadcast_add(&replacement)?;
        }
        let z = z_bh.permute((0, 2, 1, 3))?; // [b, q, h, d]
        // Per-head write to the residual stream, without b_O: [h, b*p, d] @ [h, d, m].
        let result = z_bh
            .permute((1, 0, 2, 3))?
            .contiguous()?
            .reshape((h, b * p, d))?
            .matmul(self.param(Param::WO))?
            .reshape((h, b, p, m))?
            .permute((1, 2, 0, 3))?; // [b, p, h, m]
        let attn_out = result.sum(2)?.broadcast_add(self.param(Param::BO))?;
        let resid_post = (&resid_pre + &attn_out)?;
        let logits = resid_post
            .reshape((b * p, m))?
            .matmul(&self.w_u)?
            .reshape((b, p, self.cfg.d_vocab))?;
        let hooks = if capture {
            vec![
                ("hook_embed", embed),
                ("blocks.0.hook_resid_pre", resid_pre),
                ("blocks.0.attn.hook_q", q),
                ("blocks.0.attn.hook_k", k),
                ("blocks.0.attn.hook_v", v),
                ("attn_scores_unmasked", scores),
                ("blocks.0.attn.hook_attn_scores", masked),
                ("blocks.0.attn.hook_pattern", pattern),
                ("blocks.0.attn.hook_z", z),
                ("blocks.0.attn.hook_result", result),
                ("blocks.0.hook_attn_out", attn_out),
                ("blocks.0.hook_resid_post", resid_post),
            ]
        } else {
            Vec::new()
        };
        Ok((logits, hooks))
    }

    /// Last-position logits `[batch, d_vocab]` from the general path.
    pub fn forward_last_general(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_last_ablated(tokens, None)
    }

    /// Last-position logits `[batch, d_vocab]` with heads ablated.
    pub fn forward_last_ablated(
        &self,
        tokens: &Tensor,
        ablation: Option<&Ablation>,
    ) -> candle_core::Result<Tensor> {
        let (logits, _) = self.forward_ablated(tokens, false, ablation)?;
        let p = tokens.dim(1)?;
        logits.narrow(1, p - 1, 1)?.squeeze(1)
    }

    /// Last-position logits `[batch, d_vocab]`, computing only the last query row.
    pub fn forward_last(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        let (b, p) = tokens.dims2()?;
        let (h, d) = (self.cfg.n_heads, self.cfg.d_head);
        let last = tokens.narrow(1, p - 1, 1)?.squeeze(1)?.contiguous()?;
        let flat = tokens.flatten_all()?;
        let q = self
            .token_table(Param::WQ, Param::BQ)?
            .index_select(&last, 0)?; // [b, h, d]
        let k = self
            .token_table(Param::WK, Param::BK)?
            .index_select(&flat, 0)?
            .reshape((b, p, h, d))?;
        let v = self
            .token_table(Param::WV, Param::BV)?
            .index_select(&flat, 0)?
            .reshape((b, p, h, d))?;
        let scores = (k.broadcast_mul(&q.unsqueeze(1)?)?.sum(D::Minus1)? / self.cfg.attn_scale())?; // [b, p, h]
        let pattern = candle_nn::ops::softmax(&scores, 1)?;
        let z = v.broadcast_mul(&pattern.unsqueeze(D::Minus1)?)?.sum(1)?; // [b, h, d]
        let out = z
            .reshape((b, h * d))?
            .matmul(&self.w_o_matrix()?)?
            .broadcast_add(self.param(Param::BO))?;
        // W_U is the identity, so the logits are the residual stream: one-hot(last) + attn_out.
        out + self.w_e.index_select(&last, 0)?
    }

    /// Last-position logits `[rows, d_vocab]` for distinct (last token, token multiset) rows.
    /// `last` is `[rows]` (u32); `log_counts` is `[rows, d_vocab]`, the log of how often each token
    /// occurs in the row's sequence (−inf for absent tokens). Exact because the model has no
    /// positional embedding: keys of the same token get the same score and value.
    pub fn forward_multiset(
        &self,
        last: &Tensor,
        log_counts: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let rows = last.dim(0)?;
        let (h, d) = (self.cfg.n_heads, self.cfg.d_head);
        let q = self
            .token_table(Param::WQ, Param::BQ)?
            .index_select(last, 0)?
            .permute((1, 0, 2))?
            .contiguous()?; // [h, rows, d]
        let keys = self
            .token_table(Param::WK, Param::BK)?
            .permute((1, 2, 0))?
            .contiguous()?; // [h, d, vocab]
        let values = self
            .token_table(Param::WV, Param::BV)?
            .permute((1, 0, 2))?
            .contiguous()?; // [h, vocab, d]
        let scores = (q.matmul(&keys)? / self.cfg.attn_scale())?; // [h, rows, vocab]
        // softmax(score + log count) is the attention mass on each token type.
        let pattern = candle_nn::ops::softmax(&scores.broadcast_add(log_counts)?, D::Minus1)?;
        let z = pattern.matmul(&values)?; // [h, rows, d]
        let out = z
            .permute((1, 0, 2))?
            .contiguous()?
            .reshape((rows, h * d))?
            .matmul(&self.w_o_matrix()?)?
            .broadcast_add(self.param(Param::BO))?;
        out + self.w_e.index_select(last, 0)?
    }

    /// Checks a token sequence fits the model.
    pub fn check_tokens(&self, tokens: &[u32]) -> Result<(), ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::Tokens("the sequence is empty".into()));
        }
        if tokens.len() > self.cfg.n_ctx {
            return Err(ModelError::Tokens(format!(
                "the sequence has {} tokens; the model takes at most {}",
                tokens.len(),
                self.cfg.n_ctx
            )));
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.cfg.d_vocab) {
            return Err(ModelError::Tokens(format!(
                "token {t} is out of the vocabulary (0..={})",
                self.cfg.d_vocab - 1
            )));
        }
        Ok(())
    }

    /// Runs one sequence and returns a fresh cache of every activation, keyed by TL hook names
    /// with TL's shapes (leading batch dimension of 1), plus the logit decomposition.
    pub fn run_with_cache(&self, tokens: &[u32]) -> Result<ActivationCache, ModelError> {
        self.run_with_cache_ablated(tokens, None)
    }

    /// [`Self::run_with_cache`] with heads ablated.
    pub fn run_with_cache_ablated(
        &self,
        tokens: &[u32],
        ablation: Option<&Ablation>,
    ) -> Result<ActivationCache, ModelError> {
        self.check_tokens(tokens)?;
        if let Some(a) = ablation {
            a.check(&self.cfg)?;
        }
        let input = Tensor::from_slice(tokens, (1, tokens.len()), &self.device)?;
        let (logits, hooks) = self.forward_ablated(&input, true, ablation)?;
        let p = tokens.len();
        let last_of = |t: &Tensor, dim: usize| t.narrow(dim, p - 1, 1);
        let result = hooks
            .iter()
            .find(|(n, _)| *n == "blocks.0.attn.hook_result")
            .map(|(_, t)| t.clone())
            .expect("forward always captures hook_result");
        // [h, m]: each head's write at the last position, without b_O.
        let head_out_last = last_of(&result, 1)?.squeeze(1)?.squeeze(0)?;
        let head_logits_last = head_out_last.matmul(&self.w_u)?;
        let last_token = Tensor::from_slice(&tokens[p - 1..], 1, &self.device)?;
        let direct_logits_last = self
            .w_e
            .index_select(&last_token, 0)?
            .matmul(&self.w_u)?
            .squeeze(0)?;
        let bias_logits = self
            .param(Param::BO)
            .unsqueeze(0)?
            .matmul(&self.w_u)?
            .squeeze(0)?;
        let mut cache = ActivationCache::new(tokens.to_vec(), NdArray::from_tensor(&logits)?);
        for (name, t) in hooks {
            cache.insert(name, NdArray::from_tensor(&t)?);
        }
        cache.head_out_last = NdArray::from_tensor(&head_out_last)?;
        cache.head_logits_last = NdArray::from_tensor(&head_logits_last)?;
        cache.direct_logits_last = NdArray::from_tensor(&direct_logits_last)?.data;
        cache.bias_logits = NdArray::from_tensor(&bias_logits)?.data;
        Ok(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_explains_itself() {
        let cfg = ModelConfig {
            d_model: 12,
            ..Default::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("d_model (12) must equal d_vocab (11)"), "{e}");
        let cfg = ModelConfig {
            n_layers: 2,
            ..Default::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("n_layers"));
        let cfg = ModelConfig {
            n_heads: 0,
            ..Default::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("n_heads"));
        assert_eq!(ModelConfig::default().n_params(), 3 * 11 * 4 + 3 * 3 + 11);
    }

    #[test]
    fn init_is_seeded_and_scaled() {
        let cfg = ModelConfig::default();
        let a = Weights::init(&cfg, 1);
        assert_eq!(a, Weights::init(&cfg, 1));
        assert_ne!(a, Weights::init(&cfg, 2));
        assert!(a.b_q.iter().chain(&a.b_o).all(|&x| x == 0.0));
        let all: Vec<f32> = [&a.w_q, &a.w_k, &a.w_v, &a.w_o]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let std = (all.iter().map(|x| x * x).sum::<f32>() / all.len() as f32).sqrt();
        assert!((0.015..0.025).contains(&std), "std {std}");
    }

    #[test]
    fn weights_round_trip_through_the_model() {
        let cfg = ModelConfig::default();
        let w = Weights::init(&cfg, 5);
        let model = AttnOnly::new(&cfg, &w, &Device::Cpu).unwrap();
        assert_eq!(model.weights().unwrap(), w);
        let mut bad = w.clone();
        bad.w_q[3] = f32::NAN;
        assert!(AttnOnly::new(&cfg, &bad, &Device::Cpu).is_err());
        bad = w.clone();
        bad.b_o.pop();
        assert!(model.set_weights(&bad).is_err());
    }

    #[test]
    fn bad_tokens_are_errors() {
        let cfg = ModelConfig::default();
        let model = AttnOnly::new(&cfg, &Weights::init(&cfg, 0), &Device::Cpu).unwrap();
        assert!(model.run_with_cache(&[]).is_err());
        assert!(model.run_with_cache(&[1, 2, 3, 4, 5]).is_err());
        assert!(model.run_with_cache(&[11]).is_err());
        assert!(model.run_with_cache(&[2, 5, 3, 0]).is_ok());
    }
}
