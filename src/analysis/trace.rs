//! Per-head numbers that show when each head learns its part, computed from one set of weights
//! (so from every epoch's snapshot).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::circuits;
use crate::model::{Capture, ModelError, Transformer};
use crate::task::SkipTrigramConfig;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeadTrace {
    /// Attention from the query (last) position to the two trigger positions (first and second to
    /// last), averaged over signal sequences. 1 means the head looks only at a and b.
    pub attn_to_triggers: f32,
    /// How much the head's OV circuit favours the right answer: for each trigger pair (a, b), the
    /// mean of the OV rows of a and b at the answer, minus their mean over the other labels,
    /// averaged over pairs. It is what the head would add if it attended to a and b equally.
    pub ov_margin: f32,
}

/// One [`HeadTrace`] per head. Uses every signal sequence when there are at most 5 000, else the
/// first 5 000 in enumeration order.
pub fn head_traces(
    model: &Transformer,
    task: &SkipTrigramConfig,
) -> Result<Vec<HeadTrace>, ModelError> {
    let cfg = model.config().clone();
    let seqs = task.signal_sequences(5_000);
    let p = task.seq_len;
    if seqs.is_empty() || p < 3 {
        return Err(ModelError::Config(format!(
            "head traces need signal sequences of at least 3 tokens (seq_len {p})"
        )));
    }
    // Summed in chunks, so memory stays bounded at any sequence length and head count.
    let mut sum = vec![0f32; cfg.n_heads];
    for chunk in seqs.chunks(cfg.forward_chunk_rows(p)) {
        let flat: Vec<u32> = chunk.iter().flatten().copied().collect();
        let tokens = Tensor::from_vec(flat, (chunk.len(), p), model.device())?;
        let (_, hooks) =
            model.forward_hooked(&tokens, Capture::Only(&["attn.hook_pattern"]), None)?;
        let pattern = hooks
            .into_iter()
            .find(|(n, _)| n == "blocks.0.attn.hook_pattern")
            .map(|(_, t)| t)
            .expect("forward captures the pattern"); // [b, h, q, k]
        let last_row = pattern.narrow(2, p - 1, 1)?.squeeze(2)?; // [b, h, k]
        let part = (last_row.narrow(2, 0, 1)? + last_row.narrow(2, p - 2, 1)?)?
            .squeeze(2)?
            .sum(0)?
            .to_vec1::<f32>()?;
        sum.iter_mut().zip(part).for_each(|(s, v)| *s += v);
    }
    let on_triggers: Vec<f32> = sum.iter().map(|s| s / seqs.len() as f32).collect();
    let c = circuits(&cfg, &model.weights()?).map_err(ModelError::Config)?;
    let first = task.trigger_tokens.first;
    let triggers: Vec<u32> = (first..=task.trigger_tokens.last).collect();
    let vocab = cfg.d_vocab;
    let margins = (0..cfg.n_heads).map(|h| {
        let mut total = 0.0f32;
        let mut n = 0.0f32;
        for &a in &triggers {
            for &b in &triggers {
                let Some(y) = task.answer(a, b) else { continue };
                let row = |out: usize| (c.ov[h][a as usize][out] + c.ov[h][b as usize][out]) / 2.0;
                let others: f32 = (0..vocab)
                    .filter(|&o| o != y as usize)
                    .map(row)
                    .sum::<f32>()
                    / (vocab - 1) as f32;
                total += row(y as usize) - others;
                n += 1.0;
            }
        }
        total / n.max(1.0)
    });
    Ok(on_triggers
        .into_iter()
        .zip(margins)
        .map(|(attn_to_triggers, ov_margin)| HeadTrace {
            attn_to_triggers,
            ov_margin,
        })
        .collect())
}
