//! Modular addition's fixed-query shortcut: the op ([`op`]) and the model's entry points to it.
//! The plan takes it ([`crate::model::Shortcut::FixedQuery`]) for one-layer models with learned
//! embeddings and standard positions, no LayerNorm, and a ReLU MLP or none, on the fused CPU
//! kernels.

mod backward;
mod op;

pub use op::FixedQueryShape;
use op::{FixedQueryLoss, PARAM_ORDER};

use candle_core::Tensor;

use crate::model::{ModelConfig, Transformer};

impl FixedQueryShape {
    /// The shortcut's shape for a model of `c` (which the plan has checked it fits).
    pub fn of(c: &ModelConfig) -> Self {
        Self {
            vocab: c.d_vocab,
            n_ctx: c.n_ctx,
            d_model: c.d_model,
            heads: c.n_heads,
            d_head: c.d_head,
            d_mlp: if c.has_mlp() { c.d_mlp() } else { 0 },
            classes: c.d_vocab_out(),
            attn_scale: c.attn_scale() as f32,
        }
    }
}

impl Transformer {
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
        let op = FixedQueryLoss::new(shape, with_grad);
        let report = op.report.clone();
        let loss = packed.apply_op3(&pairs.contiguous()?, &labels.contiguous()?, op)?;
        let correct = report.lock().unwrap_or_else(|e| e.into_inner()).correct;
        Ok((loss, correct))
    }

    /// The shortcut's shape and every parameter it reads, packed in its order (one copy, like a
    /// `cat`, so that gradients flow back to each); an error for a model it does not fit.
    fn fixed_query_params(&self) -> candle_core::Result<(FixedQueryShape, Tensor)> {
        let shape = self.plan.fixed_query().ok_or_else(|| {
            candle_core::Error::Msg("this model has no fixed-query shortcut".into())
        })?;
        let packed: Vec<Tensor> = PARAM_ORDER
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
}
