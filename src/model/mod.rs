//! A candle implementation of TransformerLens's `HookedTransformer` for small models: any number
//! of layers, attention with optional MLPs, LayerNorm or none, learned or no positions (standard
//! or shortformer), learned or one-hot embeddings. Names, shapes and hooks are TL's.
//!
//! The model is built from small parts, each in its own file: embeddings ([`embed`]), attention
//! ([`attention`]), MLP ([`mlp`]), LayerNorm ([`layer_norm`]) and hooks ([`hooks`]).
//! [`Transformer::forward_hooked`] is the general path, the reference every other path is tested
//! against. For the one-layer attention-only one-hot model without positions (the skip-trigram
//! model), [`fast`] adds two exact shortcuts for last-position logits.

mod ablation;
mod attention;
mod attention_block;
mod attention_core;
mod bias;
mod cache;
mod causal_softmax;
mod cpu;
mod direct_lm;
mod edits;
mod embed;
mod fast;
mod fixed_query;
mod gather;
mod hooks;
mod layer_norm;
mod lm_loss;
mod mlp;
mod ordered;
mod scratch;
mod weights;

pub use ablation::{Ablation, HeadMode, head_label};
pub use cache::{ActivationCache, Decomposition, NdArray, argmax, predictions, softmax};
pub(crate) use cpu::pool as cpu_pool;
pub use direct_lm::{HostGrads, HostParams};
pub use edits::{Blend, Edits};
pub use fixed_query::FixedQueryShape;
pub(crate) use scratch::release as release_scratch;
pub use weights::{Weights, attn};

pub use crate::config::{
    ActFn, Embeddings, FORWARD_CHUNK_FLOATS, ModelConfig, Normalization, ParamSpec, Positions,
};

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use thiserror::Error;

use crate::matmul::Matmul;
use attention::{AttentionParams, causal_mask};
pub use hooks::Capture;
use hooks::Hooks;
use mlp::MlpParams;

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

/// Whether modular addition's fixed-query shortcut is implemented for `c`: one layer, learned
/// embeddings and standard positions, no LayerNorm, a ReLU MLP or none.
pub fn fixed_query_fits(c: &ModelConfig) -> bool {
    c.n_layers == 1
        && c.n_ctx >= 3
        && c.normalization_type.is_none()
        && c.positional_embedding_type == Positions::Standard
        && c.embeddings == Embeddings::Learned
        && (!c.has_mlp() || c.act_fn == Some(ActFn::Relu))
}

/// The model: every parameter as a candle `Var` on one device, plus frozen buffers.
pub struct Transformer {
    cfg: ModelConfig,
    device: Device,
    specs: Vec<ParamSpec>,
    vars: Vec<Var>,
    index: HashMap<String, usize>,
    /// The frozen one-hot `W_E` (= `W_U`), `[d_vocab, d_vocab]`, for one-hot models.
    identity: Option<Tensor>,
    /// Additive causal mask `[n_ctx, n_ctx]`.
    mask: Tensor,
}

impl Transformer {
    pub fn new(cfg: &ModelConfig, weights: &Weights, device: &Device) -> Result<Self, ModelError> {
        cfg.validate().map_err(ModelError::Config)?;
        weights.validate(cfg)?;
        let specs = cfg.params();
        let vars = specs
            .iter()
            .map(|p| Var::from_slice(weights.get(&p.name), p.shape.as_slice(), device))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let index = specs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect();
        let identity = match cfg.embeddings {
            Embeddings::OneHot => Some(Tensor::eye(cfg.d_vocab, DType::F32, device)?),
            Embeddings::Learned => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            device: device.clone(),
            specs,
            vars,
            index,
            identity,
            mask: causal_mask(cfg.n_ctx, device)?,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The element type the model computes in (f32).
    pub fn dtype(&self) -> DType {
        self.mask.dtype()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every parameter's name and shape, in TL's state-dict order (as [`Self::vars`]).
    pub fn specs(&self) -> &[ParamSpec] {
        &self.specs
    }

    /// The variables the optimiser updates, in [`Self::specs`] order.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The parameter `name` (a TL name this config defines; see [`ModelConfig::params`]).
    pub fn param(&self, name: &str) -> &Tensor {
        let i = self
            .index
            .get(name)
            .unwrap_or_else(|| panic!("the model has no parameter {name}"));
        self.vars[*i].as_tensor()
    }

    /// A host copy of the current weights.
    pub fn weights(&self) -> candle_core::Result<Weights> {
        let mut w = Weights::default();
        for (spec, var) in self.specs.iter().zip(&self.vars) {
            w.insert(
                spec.name.clone(),
                var.as_tensor()
                    .flatten_all()?
                    .to_dtype(DType::F32)?
                    .to_vec1::<f32>()?,
            );
        }
        Ok(w)
    }

    /// Overwrites the parameters in place.
    pub fn set_weights(&self, weights: &Weights) -> Result<(), ModelError> {
        weights.validate(&self.cfg)?;
        for (spec, var) in self.specs.iter().zip(&self.vars) {
            let t =
                Tensor::from_slice(weights.get(&spec.name), spec.shape.as_slice(), &self.device)?;
            var.set(&t)?;
        }
        Ok(())
    }

    fn attention_params(&self, layer: usize) -> AttentionParams<'_> {
        let p = |s: &str| self.param(&attn(layer, s));
        AttentionParams {
            w_q: p("W_Q"),
            w_k: p("W_K"),
            w_v: p("W_V"),
            w_o: p("W_O"),
            b_q: p("b_Q"),
            b_k: p("b_K"),
            b_v: p("b_V"),
            b_o: p("b_O"),
        }
    }

    fn mlp_params(&self, layer: usize) -> MlpParams<'_> {
        let p = |s: &str| self.param(&format!("blocks.{layer}.mlp.{s}"));
        MlpParams {
            w_in: p("W_in"),
            b_in: p("b_in"),
            w_out: p("W_out"),
            b_out: p("b_out"),
        }
    }

    /// The block's or the final LayerNorm, `name` being `blocks.{l}.ln1`, `…ln2` or `ln_final`;
    /// the identity without normalization.
    fn normalize(&self, x: &Tensor, name: &str, hooks: &mut Hooks) -> candle_core::Result<Tensor> {
        match self.cfg.normalization_type {
            None => Ok(x.clone()),
            Some(Normalization::LnPre) => layer_norm::layer_norm(x, None, hooks, name),
            Some(Normalization::Ln) => {
                let (w, b) = (
                    self.param(&format!("{name}.w")),
                    self.param(&format!("{name}.b")),
                );
                layer_norm::layer_norm(x, Some((w, b)), hooks, name)
            }
        }
    }

    /// The general forward pass. `tokens` is `[batch, pos]` (u32, pos ≤ n_ctx); returns the logits
    /// `[batch, pos, d_vocab_out]` and the TL hook activations `capture` asks for, with their
    /// batch dimension. `edits` change activations at hook points (ablation, patching).
    pub fn forward_hooked(
        &self,
        tokens: &Tensor,
        capture: Capture,
        edits: Option<&Edits>,
    ) -> candle_core::Result<(Tensor, Vec<(String, Tensor)>)> {
        let (resid, mut hooks) = self.final_residual(tokens, capture, edits)?;
        hooks.add(|| "unembed.hook_in".into(), &resid);
        let logits = self.unembed(&resid, hooks.order(resid.device()))?;
        hooks.add(|| "unembed.hook_out".into(), &logits);
        Ok((logits, hooks.into_vec()))
    }

    /// Next-token cross-entropy at every position but the last, as TL's
    /// `lm_cross_entropy_loss` (a scalar that backpropagates into the model). On the CPU with
    /// learned embeddings the unembedding and the loss run as one fused op.
    pub fn next_token_loss(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        let (b, p) = tokens.dims2()?;
        let fused = crate::device::fused_cpu_ops(&self.device)
            && self.dtype() == DType::F32
            && self.cfg.embeddings == Embeddings::Learned
            && p >= 2;
        if !fused {
            return crate::train::loss::next_token_loss(&self.forward(tokens)?, tokens);
        }
        let (resid, _) = self.final_residual(tokens, Capture::Nothing, None)?;
        let m = self.cfg.d_model;
        let packed = Tensor::cat(
            &[
                self.param("unembed.W_U").flatten_all()?,
                self.param("unembed.b_U").flatten_all()?,
            ],
            0,
        )?;
        let op = lm_loss::NextTokenLoss::new(lm_loss::LossShape {
            batch: b,
            pos: p,
            d_model: m,
            vocab: self.cfg.d_vocab_out(),
        });
        resid
            .reshape((b * p, m))?
            .contiguous()?
            .apply_op3(&packed, &tokens.contiguous()?, op)
    }

    /// The shape of modular addition's fixed-query shortcut ([`fixed_query`]), where it is exact
    /// and implemented ([`fixed_query_fits`]) and the model is f32 on the CPU.
    pub fn fixed_query_shape(&self) -> Option<FixedQueryShape> {
        let c = &self.cfg;
        let fits = crate::device::fused_cpu_ops(&self.device)
            && self.dtype() == DType::F32
            && fixed_query_fits(c);
        fits.then(|| FixedQueryShape {
            vocab: c.d_vocab,
            n_ctx: c.n_ctx,
            d_model: c.d_model,
            heads: c.n_heads,
            d_head: c.d_head,
            d_mlp: if c.has_mlp() { c.d_mlp() } else { 0 },
            classes: c.d_vocab_out(),
            attn_scale: c.attn_scale() as f32,
        })
    }

    /// The mean cross-entropy of `a b =` → label at the last position through the fixed-query
    /// shortcut, and how many samples the model answers right. `pairs` is `[n, 2]` (u32, `=` is
    /// the last token id), `labels` `[n]`. With `with_grad` the loss backpropagates into every
    /// parameter; without, it is an evaluation.
    pub fn fixed_query_loss(
        &self,
        pairs: &Tensor,
        labels: &Tensor,
        with_grad: bool,
    ) -> candle_core::Result<(Tensor, usize)> {
        let (shape, packed) = self.fixed_query_params()?;
        let op = fixed_query::FixedQueryLoss::new(shape, with_grad);
        let report = op.report.clone();
        let loss = packed.apply_op3(&pairs.contiguous()?, &labels.contiguous()?, op)?;
        let correct = report.lock().unwrap_or_else(|e| e.into_inner()).correct;
        Ok((loss, correct))
    }

    /// The shortcut's shape and every parameter it reads, packed in its order (one copy, like a
    /// `cat`, so that gradients flow back to each); an error for a model it does not fit.
    fn fixed_query_params(&self) -> candle_core::Result<(FixedQueryShape, Tensor)> {
        let shape = self.fixed_query_shape().ok_or_else(|| {
            candle_core::Error::Msg("this model has no fixed-query shortcut".into())
        })?;
        let packed: Vec<Tensor> = fixed_query::PARAM_ORDER
            .iter()
            .filter(|name| self.index.contains_key(**name))
            .map(|name| self.param(name).flatten_all())
            .collect::<candle_core::Result<_>>()?;
        Ok((shape, Tensor::cat(&packed, 0)?))
    }

    /// Through the fixed-query shortcut: the MLP's activations `[n, d_mlp]` (TL's
    /// `blocks.0.mlp.hook_post` at the last position) and the logits `[n, d_vocab_out]` there,
    /// for the pairs `[n, 2]` of `a b =` inputs.
    pub fn fixed_query_activations(&self, pairs: &[u32]) -> candle_core::Result<(Tensor, Tensor)> {
        let (shape, packed) = self.fixed_query_params()?;
        let packed = packed.to_vec1::<f32>()?;
        if let Some(&t) = pairs.iter().find(|&&t| t as usize >= shape.vocab) {
            candle_core::bail!("token {t} is outside the vocabulary");
        }
        let n = pairs.len() / 2;
        let (post, logits) = shape.activations(&packed, pairs);
        Ok((
            Tensor::from_vec(post, (n, shape.d_mlp), &self.device)?,
            Tensor::from_vec(logits, (n, shape.classes), &self.device)?,
        ))
    }

    /// The residual stream after the last block and `ln_final` (TL's `unembed.hook_in`).
    fn final_residual(
        &self,
        tokens: &Tensor,
        capture: Capture,
        edits: Option<&Edits>,
    ) -> candle_core::Result<(Tensor, Hooks)> {
        let (b, p) = tokens.dims2()?;
        if p == 0 || p > self.cfg.n_ctx {
            candle_core::bail!(
                "a sequence of {p} tokens does not fit the model's n_ctx {}",
                self.cfg.n_ctx
            );
        }
        let mut hooks = Hooks::new(capture);
        let embed = self.embed(tokens)?;
        hooks.add(|| "hook_embed".into(), &embed);
        let positions = self.cfg.positional_embedding_type;
        // Standard positions join the residual stream as one fused add; shortformer positions
        // are added to the queries' and keys' input, so they are kept as a tensor.
        let pos_embed =
            if positions == Positions::Shortformer || hooks.wants(|| "hook_pos_embed".into()) {
                Some(self.pos_embed(b, p)?)
            } else {
                None
            };
        if let Some(pos) = &pos_embed {
            hooks.add(|| "hook_pos_embed".into(), pos);
        }
        let mut resid = match positions {
            Positions::Standard => self.add_positions(&embed)?,
            Positions::Shortformer | Positions::None => embed,
        };
        let shortformer = match positions {
            Positions::Shortformer => pos_embed.as_ref(),
            _ => None,
        };
        let mask = self.mask.narrow(0, 0, p)?.narrow(1, 0, p)?;
        let scale = self.cfg.attn_scale();
        for layer in 0..self.cfg.n_layers {
            let block = format!("blocks.{layer}");
            if let Some(edits) = edits {
                resid = edits::apply_all(&edits.resid_pre_at(layer), &resid)?;
            }
            hooks.add(|| format!("{block}.hook_resid_pre"), &resid);
            let plain_stream = !self.cfg.has_mlp()
                && self.cfg.normalization_type.is_none()
                && shortformer.is_none()
                && edits.is_none();
            if plain_stream {
                let p = self.attention_params(layer);
                if let Some(out) = attention::fused_residual_layer(&p, &resid, scale, &hooks) {
                    resid = out?;
                    continue; // (nothing is captured)
                }
            }
            // TL normalises the query, key and value inputs separately; they are the same
            // stream here, so once is enough.
            let normed = self.normalize(&resid, &format!("{block}.ln1"), &mut hooks)?;
            let query_key_input = match shortformer {
                Some(pos) => (&normed + pos)?,
                None => normed.clone(),
            };
            let attn_out = attention::attention(
                &self.attention_params(layer),
                &query_key_input,
                &query_key_input,
                &normed,
                &mask,
                scale,
                &edits.map(|e| e.z_at(layer)).unwrap_or_default(),
                &mut hooks,
                &format!("{block}.attn"),
            )?;
            hooks.add(|| format!("{block}.hook_attn_out"), &attn_out);
            resid = if self.cfg.has_mlp() {
                let mid = (&resid + &attn_out)?;
                hooks.add(|| format!("{block}.hook_resid_mid"), &mid);
                let normed = self.normalize(&mid, &format!("{block}.ln2"), &mut hooks)?;
                let act = self.cfg.act_fn.ok_or_else(|| {
                    candle_core::Error::Msg("a model with MLPs needs act_fn".into())
                })?;
                let mlp_out = mlp::mlp(
                    &self.mlp_params(layer),
                    &normed,
                    act,
                    &mut hooks,
                    &format!("{block}.mlp"),
                )?;
                hooks.add(|| format!("{block}.hook_mlp_out"), &mlp_out);
                (mid + mlp_out)?
            } else {
                (&resid + &attn_out)?
            };
            hooks.add(|| format!("{block}.hook_resid_post"), &resid);
        }
        let resid = self.normalize(&resid, "ln_final", &mut hooks)?;
        Ok((resid, hooks))
    }

    /// Logits `[batch, pos, d_vocab_out]` from the general path.
    pub fn forward(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        Ok(self.forward_hooked(tokens, Capture::Nothing, None)?.0)
    }

    /// Last-position logits `[batch, d_vocab_out]` from the general path.
    pub fn forward_last_general(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_last_ablated(tokens, None)
    }

    /// Last-position logits `[batch, d_vocab_out]` with heads ablated.
    pub fn forward_last_ablated(
        &self,
        tokens: &Tensor,
        ablation: Option<&Ablation>,
    ) -> candle_core::Result<Tensor> {
        let edits = self
            .ablation_edits(ablation, tokens.dim(1)?)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let (logits, _) = self.forward_hooked(tokens, Capture::Nothing, edits.as_ref())?;
        let p = tokens.dim(1)?;
        logits.narrow(1, p - 1, 1)?.squeeze(1)
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
    /// with TL's shapes (leading batch dimension of 1), plus the logit decomposition where it is
    /// exact.
    pub fn run_with_cache(&self, tokens: &[u32]) -> Result<ActivationCache, ModelError> {
        self.run_with_cache_ablated(tokens, None)
    }

    /// An ablation as the edits of a forward pass over `positions` tokens (none when nothing
    /// is ablated), after checking that it fits the model and, for mean ablation, the length.
    pub fn ablation_edits(
        &self,
        ablation: Option<&Ablation>,
        positions: usize,
    ) -> Result<Option<Edits>, ModelError> {
        let Some(a) = ablation else {
            return Ok(None);
        };
        a.check(&self.cfg)?;
        if !a.is_active() {
            return Ok(None);
        }
        a.check_positions(positions)?;
        Ok(Some(a.edits(positions, self.cfg.d_head, &self.device)?))
    }

    /// [`Self::run_with_cache`] with heads ablated.
    pub fn run_with_cache_ablated(
        &self,
        tokens: &[u32],
        ablation: Option<&Ablation>,
    ) -> Result<ActivationCache, ModelError> {
        self.check_tokens(tokens)?;
        let edits = self.ablation_edits(ablation, tokens.len())?;
        let input = Tensor::from_slice(tokens, (1, tokens.len()), &self.device)?;
        let (logits, hooks) = self.forward_hooked(&input, Capture::All, edits.as_ref())?;
        let mut cache = ActivationCache::new(tokens.to_vec(), NdArray::from_tensor(&logits)?);
        let decomposition = if self.cfg.has_exact_decomposition() {
            Some(self.decompose(tokens, &hooks)?)
        } else {
            None
        };
        for (name, t) in hooks {
            cache.insert(&name, NdArray::from_tensor(&t)?);
        }
        cache.decomposition = decomposition;
        Ok(cache)
    }

    /// The last position's logits split into their sources, for a one-layer model without
    /// LayerNorm: direct path (embeddings), each head, biases, and the MLP.
    fn decompose(
        &self,
        tokens: &[u32],
        hooks: &[(String, Tensor)],
    ) -> Result<Decomposition, ModelError> {
        let p = tokens.len();
        let hook = |name: &str| -> Result<&Tensor, ModelError> {
            hooks
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| ModelError::Config(format!("the forward pass captured no {name}")))
        };
        let last = |t: &Tensor| t.narrow(1, p - 1, 1)?.squeeze(1)?.squeeze(0); // [b=1, p, ..] → [..]
        let w_u = self.w_u()?;
        let result = hook("blocks.0.attn.hook_result")?; // [1, p, h, m]
        let head_out_last = last(result)?; // [h, m]
        let head_logits_last = head_out_last.mm(&w_u)?;
        let mut direct = last(hook("hook_embed")?)?;
        if self.cfg.positional_embedding_type == Positions::Standard {
            direct = (direct + last(hook("hook_pos_embed")?)?)?;
        }
        let direct_logits_last = direct.unsqueeze(0)?.mm(&w_u)?.squeeze(0)?;
        let bias_logits = (self
            .param(&attn(0, "b_O"))
            .unsqueeze(0)?
            .mm(&w_u)?
            .squeeze(0)?
            + self.b_u()?)?;
        let mlp_logits_last = if self.cfg.has_mlp() {
            let out = last(hook("blocks.0.hook_mlp_out")?)?;
            Some(NdArray::from_tensor(&out.unsqueeze(0)?.mm(&w_u)?.squeeze(0)?)?.data)
        } else {
            None
        };
        Ok(Decomposition {
            head_out_last: NdArray::from_tensor(&head_out_last)?,
            head_logits_last: NdArray::from_tensor(&head_logits_last)?,
            direct_logits_last: NdArray::from_tensor(&direct_logits_last)?.data,
            bias_logits: NdArray::from_tensor(&bias_logits)?.data,
            mlp_logits_last,
        })
    }
}

/// The largest |value| of a tensor (for tests that compare two computations).
#[cfg(test)]
pub(crate) fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .and_then(|a| a.flatten_all())
        .and_then(|a| a.max(0))
        .and_then(|a| a.to_scalar::<f32>())
        .expect("a finite f32 tensor")
}

#[cfg(test)]
mod tests;
