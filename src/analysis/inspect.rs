//! Everything about one sequence: logits, patterns, the logit decomposition.

use serde::Serialize;

use crate::model::{Ablation, AttnOnly, ModelError, softmax};
use crate::task::TaskConfig;

/// Everything the inspector shows for one sequence. Field names match the fixture's
/// (`cases.json`), so the CLI's `--json` can be compared with TransformerLens directly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    pub tokens: Vec<u32>,
    /// `[pos][vocab]`.
    pub logits: Vec<Vec<f32>>,
    pub logits_last: Vec<f32>,
    /// Softmax of `logits_last`.
    pub probs_last: Vec<f32>,
    pub predicted_token: u32,
    /// The task's answer when the sequence is a well-formed signal sequence.
    pub expected: Option<u32>,
    /// `[head][query][key]`; entries above the diagonal are 0.
    pub pattern: Vec<Vec<Vec<f32>>>,
    /// `[pos][head][d_head]`.
    pub z: Vec<Vec<Vec<f32>>>,
    /// `[head][d_model]`: z·W_O[h] at the last position, without b_O.
    pub head_out_last: Vec<Vec<f32>>,
    /// `[head][vocab]`.
    pub head_logits_last: Vec<Vec<f32>>,
    pub direct_logits_last: Vec<f32>,
    pub bias_logits: Vec<f32>,
}

impl Inspection {
    /// The largest gap between the logits and the sum of their parts (direct + heads + b_O).
    pub fn decomposition_error(&self) -> f32 {
        self.logits_last
            .iter()
            .enumerate()
            .map(|(v, &l)| {
                let parts = self.direct_logits_last[v]
                    + self.bias_logits[v]
                    + self.head_logits_last.iter().map(|h| h[v]).sum::<f32>();
                (l - parts).abs()
            })
            .fold(0.0, f32::max)
    }
}

/// Runs `tokens` through `model` and collects the inspection.
pub fn inspect(
    model: &AttnOnly,
    task: &TaskConfig,
    tokens: &[u32],
) -> Result<Inspection, ModelError> {
    inspect_ablated(model, task, tokens, None)
}

/// [`inspect`] with heads ablated: an ablated head's row of the decomposition shows what it
/// writes under the ablation (0 for zero ablation).
pub fn inspect_ablated(
    model: &AttnOnly,
    task: &TaskConfig,
    tokens: &[u32],
    ablation: Option<&Ablation>,
) -> Result<Inspection, ModelError> {
    let cache = model.run_with_cache_ablated(tokens, ablation)?;
    let p = tokens.len();
    let heads = cache.n_heads();
    let z = &cache.hooks["blocks.0.attn.hook_z"]; // [1, pos, head, d_head]
    let d_head = z.shape[3];
    let logits_last = cache.logits_last().to_vec();
    Ok(Inspection {
        tokens: tokens.to_vec(),
        logits: (0..p)
            .map(|i| cache.logits.rows(&[0, i]).to_vec())
            .collect(),
        probs_last: softmax(&logits_last),
        predicted_token: cache.predicted_token(),
        expected: task.expected_answer(tokens),
        pattern: (0..heads).map(|h| cache.pattern(h)).collect(),
        z: (0..p)
            .map(|i| z.rows(&[0, i]).chunks(d_head).map(|c| c.to_vec()).collect())
            .collect(),
        head_out_last: cache.head_out_last.to_vec2(),
        head_logits_last: cache.head_logits_last.to_vec2(),
        direct_logits_last: cache.direct_logits_last.clone(),
        bias_logits: cache.bias_logits.clone(),
        logits_last,
    })
}
