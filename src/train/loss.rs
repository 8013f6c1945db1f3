//! Next-token cross-entropy, as TransformerLens's `lm_cross_entropy_loss` computes it.

use candle_core::{D, Tensor};

/// Mean cross-entropy of predicting `tokens[:, i + 1]` from `logits[:, i]` at every position
/// but the last: `logits` `[batch, pos, d_vocab_out]`, `tokens` `[batch, pos]` (u32).
pub fn next_token_loss(logits: &Tensor, tokens: &Tensor) -> candle_core::Result<Tensor> {
    let (b, p, v) = logits.dims3()?;
    if p < 2 {
        candle_core::bail!("next-token loss needs sequences of at least 2 tokens, got {p}");
    }
    let predictions = logits.narrow(1, 0, p - 1)?.reshape((b * (p - 1), v))?;
    let targets = tokens.narrow(1, 1, p - 1)?.flatten_all()?;
    let log_probs = candle_nn::ops::log_softmax(&predictions, D::Minus1)?;
    log_probs
        .gather(&targets.unsqueeze(1)?, 1)?
        .mean_all()?
        .neg()
}
