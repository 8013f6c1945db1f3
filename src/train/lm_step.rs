//! The next-token loss of a batch of sequences and its gradients: the step of the language-model
//! tasks (induction), shared by the trainer and `bench --lm-step`.
//!
//! On the CPU the batch is split into two halves whose forward and backward passes run at once,
//! one per core, each on its own candle graph; the loss and the gradients are their means. A
//! step of a small model is some twenty short parallel sections (each matrix product, each
//! layer's attention) with candle's own ops between them on one thread, and waking the second
//! core for each section cost as much as it brought. Two halves keep both cores busy from the
//! first op to the last, with two joins (forward, backward). There are always two halves, whatever the number of
//! cores, so a run's numbers do not depend on the machine.

use candle_core::Tensor;
use candle_core::backprop::GradStore;

use crate::model::Transformer;

/// Batches smaller than this run whole.
const MIN_SPLIT_BATCH: usize = 8;

/// The mean next-token loss of `tokens` `[batch, pos]` and its gradients.
pub fn next_token_loss_and_grads(
    model: &Transformer,
    tokens: &Tensor,
) -> candle_core::Result<(f64, GradStore)> {
    let batch = tokens.dim(0)?;
    if !crate::device::fused_cpu_ops(model.device()) || batch < MIN_SPLIT_BATCH {
        let loss = model.next_token_loss(tokens)?;
        super::profile::mark("forward and loss", loss.device());
        let value = loss.to_scalar::<f32>()? as f64;
        let grads = loss.backward()?;
        super::profile::mark("backward", loss.device());
        return Ok((value, grads));
    }
    let first = batch / 2;
    let halves = [
        tokens.narrow(0, 0, first)?,
        tokens.narrow(0, first, batch - first)?,
    ];
    // Each half's share of the mean: its fraction of the sequences, all of one length.
    let weights = [
        first as f64 / batch as f64,
        (batch - first) as f64 / batch as f64,
    ];
    // Both halves on the fused ops' threads; the phases are marked on this one.
    let pool = crate::model::cpu_pool();
    let (a, b) = pool.install(|| {
        rayon::join(
            || model.next_token_loss(&halves[0]),
            || model.next_token_loss(&halves[1]),
        )
    });
    let losses = [a?, b?];
    super::profile::mark("forward and loss", model.device());
    let (a, b) = pool.install(|| rayon::join(|| losses[0].backward(), || losses[1].backward()));
    let (mut grads, other) = (a?, b?);
    let mut value = 0.0;
    for (loss, w) in losses.iter().zip(weights) {
        value += w * loss.to_scalar::<f32>()? as f64;
    }
    for var in model.vars() {
        let t = var.as_tensor();
        let joined = match (grads.get(t), other.get(t)) {
            (Some(g), Some(h)) => (g.affine(weights[0], 0.0)? + h.affine(weights[1], 0.0)?)?,
            (Some(g), None) => g.affine(weights[0], 0.0)?,
            (None, Some(h)) => h.affine(weights[1], 0.0)?,
            (None, None) => continue,
        };
        grads.insert(t, joined);
    }
    super::profile::mark("backward", model.device());
    Ok((value, grads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Embeddings, ModelConfig, Positions};
    use crate::model::Weights;
    use candle_core::Device;

    /// The halves' mean equals the whole batch's loss and gradients, to rounding.
    #[test]
    fn two_halves_give_the_whole_batchs_loss_and_gradients() {
        let cfg = ModelConfig {
            n_layers: 2,
            d_model: 16,
            n_heads: 2,
            d_head: 8,
            d_vocab: 11,
            n_ctx: 6,
            attn_only: true,
            positional_embedding_type: Positions::Standard,
            embeddings: Embeddings::Learned,
            init_range: Some(0.4),
            ..ModelConfig::default()
        };
        let model = Transformer::new(&cfg, &Weights::init(&cfg, 3), &Device::Cpu).unwrap();
        // An odd batch: halves of 4 and 5 sequences, weighted by their sizes.
        let tokens: Vec<u32> = (0..9 * 6).map(|i| (i * 7 + i / 5) % 11).collect();
        let tokens = Tensor::from_vec(tokens, (9, 6), &Device::Cpu).unwrap();
        let (value, grads) = next_token_loss_and_grads(&model, &tokens).unwrap();
        let whole = model.next_token_loss(&tokens).unwrap();
        let want = whole.to_scalar::<f32>().unwrap() as f64;
        assert!((value - want).abs() < 1e-6, "{value} against {want}");
        let whole_grads = whole.backward().unwrap();
        for var in model.vars() {
            let (g, w) = (
                grads.get(var.as_tensor()).unwrap(),
                whole_grads.get(var.as_tensor()).unwrap(),
            );
            let diff = crate::model::max_abs(&(g - w).unwrap());
            let scale = crate::model::max_abs(w);
            assert!(
                scale > 0.0 && diff <= 1e-6 * scale.max(1.0),
                "{diff} of {scale}"
            );
        }
    }
}
