//! The induction task's evaluation: the two halves' losses and every head's induction and
//! previous-token scores, summed over sequences.

use candle_core::Tensor;

use crate::model::kernels::softmax::cross_entropy_f64;
use crate::model::{Ablation, Capture, Transformer};
use crate::task::InductionConfig;

/// Sequences per direct forward pass in an evaluation: the training batch's size.
const DIRECT_CHUNK_ROWS: usize = 64;

/// What an evaluation measures, summed over sequences.
pub struct InductionEval {
    pub loss_first_half: f64,
    pub loss_repeated_half: f64,
    /// `[layer][head]`.
    pub induction_score: Vec<Vec<f64>>,
    pub prev_token_score: Vec<Vec<f64>>,
}

/// The induction task's metrics of `model` on `tokens` (flat, whole sequences), in chunks.
pub fn evaluate_induction(
    model: &Transformer,
    task: &InductionConfig,
    tokens: &[u32],
) -> candle_core::Result<InductionEval> {
    evaluate_induction_ablated(model, task, tokens, None)
}

/// [`evaluate_induction`] with heads ablated.
pub fn evaluate_induction_ablated(
    model: &Transformer,
    task: &InductionConfig,
    tokens: &[u32],
    ablation: Option<&Ablation>,
) -> candle_core::Result<InductionEval> {
    evaluate(model, task, tokens, ablation, true)
}

fn evaluate(
    model: &Transformer,
    task: &InductionConfig,
    tokens: &[u32],
    ablation: Option<&Ablation>,
    allow_direct: bool,
) -> candle_core::Result<InductionEval> {
    let cfg = model.config();
    let (len, half) = (task.seq_len(), task.half);
    let edits = model
        .ablation_edits(ablation, len)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let (layers, heads) = (cfg.n_layers, cfg.n_heads);
    let vocab = cfg.d_vocab_out();
    let mut first = (0.0, 0usize);
    let mut repeated = (0.0, 0usize);
    let mut induction = vec![vec![0.0; heads]; layers];
    let mut prev = vec![vec![0.0; heads]; layers];
    // Without ablation the plainest models run the direct forward pass (the training step's
    // kernels, much faster than the graph), a training batch's worth at a time.
    let direct = (allow_direct && ablation.is_none() && model.direct_step_fits())
        .then(|| model.host_params());
    let rows = match direct {
        Some(_) => DIRECT_CHUNK_ROWS,
        None => cfg.forward_chunk_rows(len),
    };
    let count = tokens.len() / len;
    for chunk in tokens.chunks(rows * len) {
        let b = chunk.len() / len;
        // Where each sequence's copy starts (`half`, unless the task has gaps).
        let starts: Vec<usize> = chunk
            .chunks_exact(len)
            .map(|seq| task.repeat_start(seq))
            .collect();
        // Logits `[b·len, vocab]` and each layer's pattern `[b, head, q, k]`, rows `stride` apart.
        let (logits, patterns, stride) = match &direct {
            Some(params) => {
                let out = model.direct_forward(params, chunk, b, len)?;
                (out.logits, out.patterns, out.stride)
            }
            None => {
                let input = Tensor::from_slice(chunk, (b, len), model.device())?;
                let capture = Capture::Only(&["attn.hook_pattern"]);
                let (logits, hooks) = model.forward_hooked(&input, capture, edits.as_ref())?;
                let mut patterns = Vec::with_capacity(layers);
                for l in 0..layers {
                    let name = format!("blocks.{l}.attn.hook_pattern");
                    let Some((_, pattern)) = hooks.iter().find(|(n, _)| *n == name) else {
                        candle_core::bail!("the forward pass did not capture {name}");
                    };
                    patterns.push(pattern.flatten_all()?.to_vec1::<f32>()?);
                }
                (logits.flatten_all()?.to_vec1::<f32>()?, patterns, len)
            }
        };
        for (s, seq) in chunk.chunks_exact(len).enumerate() {
            let repeated_half = starts[s]..starts[s] + half - 1;
            for i in 0..len - 1 {
                let row = &logits[(s * len + i) * vocab..(s * len + i + 1) * vocab];
                let nll = cross_entropy_f64(row, seq[i + 1] as usize);
                if task.first_half_predictions().contains(&i) {
                    first = (first.0 + nll, first.1 + 1);
                } else if repeated_half.contains(&i) {
                    repeated = (repeated.0 + nll, repeated.1 + 1);
                }
            }
        }
        for ((induction, prev), pattern) in induction.iter_mut().zip(&mut prev).zip(&patterns) {
            for (i, matrix) in pattern.chunks_exact(len * stride).enumerate() {
                let (h, start) = (i % heads, starts[i / heads]);
                // Each copied token attends to the token after its earlier occurrence.
                for q in start..start + half {
                    induction[h] += matrix[q * stride + q - start + 1] as f64;
                }
                for q in 1..len {
                    prev[h] += matrix[q * stride + q - 1] as f64;
                }
            }
        }
    }
    let mean = |(sum, n): (f64, usize)| sum / n.max(1) as f64;
    let scale = |scores: &mut Vec<Vec<f64>>, per_seq: usize| {
        let n = (count * per_seq).max(1) as f64;
        scores.iter_mut().flatten().for_each(|s| *s /= n);
    };
    scale(&mut induction, half);
    scale(&mut prev, len - 1);
    Ok(InductionEval {
        loss_first_half: mean(first),
        loss_repeated_half: mean(repeated),
        induction_score: induction,
        prev_token_score: prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Embeddings, ModelConfig, Positions};
    use crate::model::Weights;
    use candle_core::Device;

    /// The direct forward pass gives the graph's losses and scores, to rounding, on sequences
    /// with and without gaps before their copy, over more than one chunk.
    #[test]
    fn the_direct_evaluation_equals_the_graphs() {
        for gap_max in [0, 2] {
            let task = InductionConfig {
                vocab: 13,
                half: 5,
                gap_max,
                val_size: DIRECT_CHUNK_ROWS + 7,
            };
            let cfg = ModelConfig {
                n_layers: 2,
                d_model: 16,
                n_heads: 2,
                d_head: 8,
                d_vocab: 13,
                n_ctx: task.seq_len(),
                attn_only: true,
                positional_embedding_type: Positions::Standard,
                embeddings: Embeddings::Learned,
                init_range: Some(0.6),
                ..ModelConfig::default()
            };
            let model = Transformer::new(&cfg, &Weights::init(&cfg, 2), &Device::Cpu).unwrap();
            let tokens = task.val_set(1);
            let direct = evaluate(&model, &task, &tokens, None, true).unwrap();
            let graph = evaluate(&model, &task, &tokens, None, false).unwrap();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1.0);
            assert!(close(direct.loss_first_half, graph.loss_first_half));
            assert!(close(direct.loss_repeated_half, graph.loss_repeated_half));
            for (a, b) in [
                (&direct.induction_score, &graph.induction_score),
                (&direct.prev_token_score, &graph.prev_token_score),
            ] {
                for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
                    assert!(close(*x, *y), "gap {gap_max}: {x} against {y}");
                }
            }
            assert!(graph.induction_score[1].iter().all(|&s| s > 0.0));
        }
    }
}
