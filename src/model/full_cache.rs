//! One sequence's full activation cache (TL's `run_with_cache`), and the last position's
//! logits split by source where that split is exact.

use candle_core::Tensor;

use super::hooks::Capture;
use super::{
    Ablation, ActivationCache, Decomposition, ModelError, NdArray, Positions, Transformer, attn,
};
use crate::matmul::Matmul;

impl Transformer {
    /// Runs one sequence and returns a fresh cache of every activation, keyed by TL hook names
    /// with TL's shapes (leading batch dimension of 1), plus the logit decomposition where it is
    /// exact.
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
