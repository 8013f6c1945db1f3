//! How a model computes, decided once.
//!
//! toylens computes the same numbers several ways: candle's composed graph (the general path in
//! [`super::forward`], the reference every other way is tested against), its own fused CPU
//! kernels ([`super::kernels`]), and exact shortcuts for particular models
//! ([`super::shortcuts`]). [`Plan::new`] is the one place that chooses among them, from the
//! model's config, its device and its element type. The model keeps its plan
//! ([`super::Transformer::plan`]) and every caller reads it; nothing else re-derives a choice.
//!
//! Two things are decided per call, because they belong to the call and not to the model: a
//! forward pass that captures or edits activations takes the composed attention (the fused
//! kernels expose no intermediates), and a training batch under [`MIN_SPLIT_BATCH`] sequences
//! runs whole instead of in two halves.

use std::fmt;

use candle_core::{DType, Device};

use super::kernels::cpu;
use super::shortcuts::FixedQueryShape;
use crate::config::{ActFn, Embeddings, ModelConfig, Positions};

/// Batches smaller than this run the LM step whole, not in two halves.
pub const MIN_SPLIT_BATCH: usize = 8;

/// Which kernels do the arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// toylens's fused CPU ops: hand-written forward and backward passes on host slices.
    FusedCpu,
    /// candle's ops alone: on a GPU, or on the CPU following a GPU's rules
    /// ([`crate::device::gpu_rules`], which the tests use to run a GPU's code without one).
    Candle,
}

/// How a layer's attention runs when nothing is captured or edited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// `x + attention(x)` as one fused op: attention-only layers without LayerNorm read and
    /// write the residual stream directly.
    FusedResidual,
    /// The whole attention (projections, pattern, z, output) as one fused op.
    Fused,
    /// Shortformer positions: queries and keys read another input than values, so candle
    /// projects them and the causal attention core is fused.
    FusedCore,
    /// candle's composed ops.
    Composed,
}

/// How the next-token loss is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LmLoss {
    /// The unembedding and the cross-entropy as one fused op (learned embeddings).
    FusedUnembed,
    /// candle's logits, log-softmax and gather.
    Composed,
}

/// How a training step of a next-token (LM) task gets its loss and gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LmStep {
    /// The fused kernels run straight on the parameters' host memory, outside candle's graph,
    /// half the batch per core ([`super::shortcuts::direct_step`]).
    Direct,
    /// Two halves of the batch as candle graphs, one per core.
    GraphHalves,
    /// The whole batch as one candle graph.
    Graph,
}

/// An exact shortcut the model's objectives can take instead of the full forward pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shortcut {
    None,
    /// The one-layer attention-only one-hot model without positions (the skip-trigram model):
    /// last-position logits from per-token tables, and from token multisets
    /// ([`super::shortcuts::token_table`]).
    TokenTable,
    /// Modular addition's `a b =` model: the last position from per-token tables
    /// ([`super::shortcuts::fixed_query`]).
    FixedQuery(FixedQueryShape),
}

/// Where Adam's update runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdamUpdate {
    /// On the host, over the parameters' memory, split over the cores.
    Host,
    /// As tensor ops on the device.
    Device,
}

/// Everything [`Plan::new`] decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub kernels: Kernels,
    pub attention: AttentionKernel,
    pub lm_loss: LmLoss,
    pub lm_step: LmStep,
    pub shortcut: Shortcut,
    pub adam: AdamUpdate,
    /// Whether the host kernels run their AVX2 code (row loops and Adam; the attention core's
    /// also needs FMA).
    pub avx2: bool,
}

impl Plan {
    /// How a model of `cfg` computes on `device` in `dtype`.
    pub fn new(cfg: &ModelConfig, device: &Device, dtype: DType) -> Self {
        Self::decide(cfg, device.is_cpu() && dtype == DType::F32)
    }

    /// How a float32 model of `cfg` would compute on the CPU (`on_cpu`) or a GPU, for showing
    /// the plan of a model before it is built (the app's model summary).
    pub fn for_f32(cfg: &ModelConfig, on_cpu: bool) -> Self {
        Self::decide(cfg, on_cpu)
    }

    /// The one decision: `host_f32` says whether the model is float32 on the CPU, where the
    /// fused kernels run unless the process follows a GPU's rules.
    fn decide(cfg: &ModelConfig, host_f32: bool) -> Self {
        let fused = host_f32 && !crate::device::gpu_rules();
        let kernels = if fused {
            Kernels::FusedCpu
        } else {
            Kernels::Candle
        };
        let plain = !cfg.has_mlp() && cfg.normalization_type.is_none();
        let shortformer = cfg.positional_embedding_type == Positions::Shortformer;
        let attention = match (fused, shortformer) {
            (false, _) => AttentionKernel::Composed,
            (true, true) => AttentionKernel::FusedCore,
            (true, false) if plain => AttentionKernel::FusedResidual,
            (true, false) => AttentionKernel::Fused,
        };
        let learned = cfg.embeddings == Embeddings::Learned;
        let lm_loss = if fused && learned {
            LmLoss::FusedUnembed
        } else {
            LmLoss::Composed
        };
        let lm_step = if !fused {
            LmStep::Graph
        } else if plain && learned && cfg.positional_embedding_type == Positions::Standard {
            LmStep::Direct
        } else {
            LmStep::GraphHalves
        };
        let shortcut = if cfg.is_one_layer_token_table() {
            Shortcut::TokenTable
        } else if fused && fixed_query_fits(cfg) {
            Shortcut::FixedQuery(FixedQueryShape::of(cfg))
        } else {
            Shortcut::None
        };
        Self {
            kernels,
            attention,
            lm_loss,
            lm_step,
            shortcut,
            adam: if fused {
                AdamUpdate::Host
            } else {
                AdamUpdate::Device
            },
            avx2: fused && cpu::has_avx2(),
        }
    }

    /// Whether the fused CPU kernels run.
    pub fn fused(&self) -> bool {
        self.kernels == Kernels::FusedCpu
    }

    /// Whether a forward pass that captures every hook sums in index order, as the CPU does
    /// ([`super::kernels::ordered`]): off the fused kernels (a GPU), so that the inspector's
    /// cache matches TL's.
    pub fn ordered_cache(&self) -> bool {
        !self.fused()
    }

    /// The modular-addition shortcut's shape, where the plan takes it.
    pub fn fixed_query(&self) -> Option<FixedQueryShape> {
        match self.shortcut {
            Shortcut::FixedQuery(shape) => Some(shape),
            _ => None,
        }
    }
}

/// Whether modular addition's fixed-query shortcut is exact and implemented for `c`: one layer,
/// learned embeddings and standard positions, no LayerNorm, a ReLU MLP or none.
fn fixed_query_fits(c: &ModelConfig) -> bool {
    c.n_layers == 1
        && c.n_ctx >= 3
        && c.normalization_type.is_none()
        && c.positional_embedding_type == Positions::Standard
        && c.embeddings == Embeddings::Learned
        && (!c.has_mlp() || c.act_fn == Some(ActFn::Relu))
}

impl Plan {
    /// The LM step in words.
    pub fn lm_step_words(&self) -> &'static str {
        match self.lm_step {
            LmStep::Direct => "direct LM step",
            LmStep::GraphHalves => "LM step in two graph halves",
            LmStep::Graph => "LM step as one graph",
        }
    }

    /// The attention kernel in words.
    pub fn attention_words(&self) -> &'static str {
        match self.attention {
            AttentionKernel::FusedResidual => "fused attention with the residual add",
            AttentionKernel::Fused => "fused attention",
            AttentionKernel::FusedCore => "fused attention core",
            AttentionKernel::Composed => "composed attention",
        }
    }

    /// The next-token loss in words.
    pub fn lm_loss_words(&self) -> &'static str {
        match self.lm_loss {
            LmLoss::FusedUnembed => "fused unembed + loss",
            LmLoss::Composed => "composed loss",
        }
    }

    /// The shortcut in words (empty without one).
    pub fn shortcut_words(&self) -> &'static str {
        match self.shortcut {
            Shortcut::TokenTable => "token-table shortcut",
            Shortcut::FixedQuery(_) => "fixed-query shortcut",
            Shortcut::None => "",
        }
    }

    /// Adam's update in words, with the kernels when they are candle's.
    pub fn update_words(&self) -> &'static str {
        match (self.adam, self.avx2) {
            (AdamUpdate::Host, true) => "AVX2 host Adam",
            (AdamUpdate::Host, false) => "host Adam",
            (AdamUpdate::Device, _) => "device Adam, candle kernels",
        }
    }
}

/// The whole plan in words ("direct LM step, fused attention with the residual add, fused
/// unembed + loss, AVX2 host Adam"). A task's objective uses only some of it: see
/// `objective::ForwardPath::describe`, which `toylens train` prints.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = vec![
            self.lm_step_words(),
            self.attention_words(),
            self.lm_loss_words(),
            self.update_words(),
        ];
        if self.shortcut != Shortcut::None {
            parts.insert(0, self.shortcut_words());
        }
        if self.ordered_cache() {
            parts.push("index-ordered cache");
        }
        write!(f, "{}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Normalization;

    fn induction_like() -> ModelConfig {
        ModelConfig {
            n_layers: 2,
            d_model: 16,
            n_heads: 2,
            d_head: 8,
            d_vocab: 13,
            n_ctx: 12,
            attn_only: true,
            positional_embedding_type: Positions::Standard,
            embeddings: Embeddings::Learned,
            ..ModelConfig::default()
        }
    }

    #[test]
    fn each_config_gets_its_path() {
        let cpu = Plan::new(&induction_like(), &Device::Cpu, DType::F32);
        assert_eq!(cpu.kernels, Kernels::FusedCpu);
        assert_eq!(cpu.lm_step, LmStep::Direct);
        assert_eq!(cpu.attention, AttentionKernel::FusedResidual);
        assert_eq!(cpu.lm_loss, LmLoss::FusedUnembed);
        assert_eq!(cpu.shortcut, Shortcut::None);
        assert!(
            cpu.to_string()
                .starts_with("direct LM step, fused attention with")
        );

        let ln = ModelConfig {
            normalization_type: Some(Normalization::Ln),
            ..induction_like()
        };
        let plan = Plan::new(&ln, &Device::Cpu, DType::F32);
        assert_eq!(plan.lm_step, LmStep::GraphHalves);
        assert_eq!(plan.attention, AttentionKernel::Fused);

        let shortformer = ModelConfig {
            positional_embedding_type: Positions::Shortformer,
            ..induction_like()
        };
        let plan = Plan::new(&shortformer, &Device::Cpu, DType::F32);
        assert_eq!(plan.attention, AttentionKernel::FusedCore);
        assert_eq!(plan.lm_step, LmStep::GraphHalves);

        // Another element type leaves the fused kernels, whose inputs are f32 slices.
        let f64_plan = Plan::new(&induction_like(), &Device::Cpu, DType::F64);
        assert_eq!(f64_plan.kernels, Kernels::Candle);
        assert_eq!(f64_plan.lm_step, LmStep::Graph);
        assert_eq!(f64_plan.adam, AdamUpdate::Device);

        let modular = ModelConfig {
            n_layers: 1,
            n_ctx: 3,
            d_mlp: Some(32),
            attn_only: false,
            act_fn: Some(ActFn::Relu),
            ..induction_like()
        };
        let plan = Plan::new(&modular, &Device::Cpu, DType::F32);
        assert!(matches!(plan.shortcut, Shortcut::FixedQuery(_)));
        let gelu = ModelConfig {
            act_fn: Some(ActFn::Gelu),
            ..modular
        };
        assert_eq!(
            Plan::new(&gelu, &Device::Cpu, DType::F32).shortcut,
            Shortcut::None
        );
    }
}
