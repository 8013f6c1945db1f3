//! A candle implementation of TransformerLens's `HookedTransformer` for small models: any number
//! of layers, attention with optional MLPs, LayerNorm or none, learned or no positions (standard
//! or shortformer), learned or one-hot embeddings. Names, shapes and hooks are TL's.
//!
//! How a model computes is decided once, by [`Plan::new`] ([`plan`]), and kept on the model.
//! The layout follows that split:
//! - the model's parts, each in its own file: embeddings ([`embed`]), attention ([`attention`]),
//!   MLP ([`mlp`]), LayerNorm ([`layer_norm`]), hooks ([`hooks`]) and activation edits
//!   ([`edits`], [`ablation`]);
//! - the general path ([`forward`]): candle's composed graph, the reference every other path is
//!   tested against, and the full activation cache of one sequence ([`full_cache`]);
//! - [`kernels`]: toylens's fused CPU ops (attention, bias, softmax, the LM loss) and the
//!   index-ordered GPU products, each a candle custom op with its own backward;
//! - [`shortcuts`]: exact alternatives to the general path for particular models (the
//!   token-table and fixed-query shortcuts, the direct LM step), each tested equal to it.

mod ablation;
mod attention;
mod cache;
mod edits;
mod embed;
mod forward;
mod full_cache;
mod hooks;
pub mod kernels;
mod layer_norm;
mod mlp;
pub mod plan;
pub mod shortcuts;
mod weights;

pub use ablation::{Ablation, HeadMode, head_label};
pub use cache::{ActivationCache, Decomposition, NdArray, argmax, predictions};
pub use edits::{Blend, Edits, Splice, SpliceFn};
pub(crate) use kernels::cpu::pool as cpu_pool;
pub use kernels::lm_loss::lm_cross_entropy_loss;
pub(crate) use kernels::scratch::release as release_scratch;
pub use kernels::softmax::softmax;
pub use plan::{AdamUpdate, AttentionKernel, Kernels, LmLoss, LmStep, Plan, Shortcut};
pub use shortcuts::FixedQueryShape;
pub use shortcuts::direct_step::{HostGrads, HostParams};
pub use weights::{Weights, attn};

pub use crate::config::{
    ActFn, Embeddings, FORWARD_CHUNK_FLOATS, ModelConfig, Normalization, ParamSpec, Positions,
};

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use thiserror::Error;

use attention::{AttentionParams, causal_mask};
pub use hooks::Capture;
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

/// The model: every parameter as a candle `Var` on one device, plus frozen buffers and the plan
/// of how it computes.
pub struct Transformer {
    cfg: ModelConfig,
    device: Device,
    plan: Plan,
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
        cfg.validate()
            .map_err(|e| ModelError::Config(e.to_string()))?;
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
            plan: Plan::new(cfg, device, DType::F32),
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

    /// How this model computes (see [`plan`]).
    pub fn plan(&self) -> &Plan {
        &self.plan
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
