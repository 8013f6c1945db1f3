//! Evaluation beyond a sampled validation set: with heads ablated, and over every signal sequence
//! the task can produce.

use candle_core::{D, Tensor};
use serde::Serialize;

use crate::model::{Ablation, Capture, ModelError, NdArray, Transformer, argmax};
use crate::objective::{Tally, evaluate_dataset};
use crate::seed::{Stream, stream_rng};
use crate::task::{Dataset, SkipTrigramConfig};

/// More signal sequences than this are not enumerated (length 9 with the default task has 1.2M).
pub const MAX_EXHAUSTIVE: usize = 1_000_000;

/// Mean of every layer's `hook_z` over `tokens` (sequences of `p` tokens, flat),
/// `[layer, pos, head, d_head]`: what mean ablation substitutes.
pub fn mean_z(model: &Transformer, tokens: &[u32], p: usize) -> candle_core::Result<NdArray> {
    let rows = model.config().forward_chunk_rows(p);
    let mut sum: Option<Tensor> = None;
    for chunk in tokens.chunks(rows * p) {
        let n = chunk.len() / p;
        let tokens = Tensor::from_slice(chunk, (n, p), model.device())?;
        let (_, hooks) = model.forward_hooked(&tokens, Capture::Only(&["attn.hook_z"]), None)?;
        // Every layer's [b, p, h, d] summed over the batch and stacked: [layer, p, h, d].
        let layers = hooks
            .iter()
            .map(|(_, z)| z.sum(0))
            .collect::<candle_core::Result<Vec<_>>>()?;
        // Detached: the weights are trainable variables, so an attached sum would keep every
        // chunk's whole forward graph alive (hundreds of MB per chunk at large sizes).
        let part = Tensor::stack(&layers, 0)?.detach();
        sum = Some(match sum {
            Some(s) => (s + part)?.detach(),
            None => part,
        });
    }
    let sum = sum.ok_or_else(|| candle_core::Error::Msg("no data to average".into()))?;
    NdArray::from_tensor(&(sum / (tokens.len() / p) as f64)?)
}

/// Loss and accuracy on `data`, with heads ablated (the general path) or not (the fastest path).
pub fn evaluate_ablated(
    model: &Transformer,
    data: &Dataset,
    ablation: Option<&Ablation>,
) -> candle_core::Result<Tally> {
    let Some(ablation) = ablation.filter(|a| a.is_active()) else {
        return evaluate_dataset(model, data.clone());
    };
    let p = data.seq_len;
    let rows = model.config().forward_chunk_rows(p);
    let mut tally = Tally::default();
    for (c, chunk) in data.tokens.chunks(rows * p).enumerate() {
        let n = chunk.len() / p;
        let offset = c * rows;
        let tokens = Tensor::from_slice(chunk, (n, p), model.device())?;
        let labels = Tensor::from_slice(&data.labels[offset..offset + n], n, model.device())?;
        let logits = model.forward_last_ablated(&tokens, Some(ablation))?;
        let loss = candle_nn::loss::cross_entropy(&logits, &labels)?.to_scalar::<f32>()? as f64;
        let preds = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        tally.loss_sum += loss * n as f64;
        for (i, pred) in preds.into_iter().enumerate() {
            let correct = pred == data.labels[offset + i];
            tally.add(
                data.is_signal[offset + i],
                1.0,
                if correct { 1.0 } else { 0.0 },
            );
        }
    }
    Ok(tally)
}

/// A signal sequence the model answers wrongly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Miss {
    pub tokens: Vec<u32>,
    pub expected: u32,
    pub predicted: u32,
}

/// Accuracy on every signal sequence, by trigger pair and by label, and on sampled noise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExhaustiveReport {
    /// The trigger tokens, in the order of `pair_accuracy`'s rows and columns.
    pub triggers: Vec<u32>,
    /// `[a - first][b - first]`: accuracy over every sequence with `a` first and `b` second to last.
    pub pair_accuracy: Vec<Vec<f64>>,
    /// `[label]`: accuracy on sequences whose answer is `label`; `null` if no pair maps to it.
    pub label_accuracy: Vec<Option<f64>>,
    /// `[expected label][predicted token]`: counts over every signal sequence.
    pub confusion: Vec<Vec<u32>>,
    pub signal_sequences: usize,
    pub signal_accuracy: f64,
    pub noise_samples: usize,
    /// Accuracy on noise samples, whose labels are random: the ceiling is `noise_chance`.
    pub noise_accuracy: f64,
    pub noise_chance: f64,
    /// Every wrongly answered signal sequence (at most 500).
    pub misses: Vec<Miss>,
    /// The ablation in force, "" if none.
    pub ablation: String,
}

/// Last-position predictions for every sequence of `seqs` (all of one length).
fn predict(
    model: &Transformer,
    seqs: &[Vec<u32>],
    ablation: Option<&Ablation>,
) -> candle_core::Result<Vec<u32>> {
    let mut preds = Vec::with_capacity(seqs.len());
    let rows = model
        .config()
        .forward_chunk_rows(seqs.first().map_or(1, Vec::len));
    for chunk in seqs.chunks(rows) {
        let p = chunk[0].len();
        let flat: Vec<u32> = chunk.iter().flatten().copied().collect();
        let tokens = Tensor::from_vec(flat, (chunk.len(), p), model.device())?;
        let logits = model.forward_last_ablated(&tokens, ablation)?;
        let rows = logits.to_vec2::<f32>()?;
        preds.extend(rows.iter().map(|r| argmax(r) as u32));
    }
    Ok(preds)
}

pub fn exhaustive(
    model: &Transformer,
    task: &SkipTrigramConfig,
    ablation: Option<&Ablation>,
    noise_samples: usize,
    seed: u64,
) -> Result<ExhaustiveReport, ModelError> {
    task.validate()
        .map_err(|e| ModelError::Config(format!("task: {e}")))?;
    let n_trig = task.trigger_tokens.len();
    if task
        .signal_sequence_count()
        .is_none_or(|c| c > MAX_EXHAUSTIVE)
    {
        return Err(ModelError::Config(format!(
            "the task has more than {MAX_EXHAUSTIVE} signal sequences; shorten seq_len or the noise range"
        )));
    }
    let ablation = ablation.filter(|a| a.is_active());
    let seqs = task.all_signal_sequences();
    let preds = predict(model, &seqs, ablation)?;
    let vocab = model.config().d_vocab;
    let first = task.trigger_tokens.first;
    let mut pair_hits = vec![vec![(0usize, 0usize); n_trig]; n_trig];
    let mut label_hits = vec![(0usize, 0usize); vocab];
    let mut confusion = vec![vec![0u32; vocab]; vocab];
    let mut misses = Vec::new();
    let mut correct_total = 0;
    for (seq, &pred) in seqs.iter().zip(&preds) {
        let expected = task
            .expected_answer(seq)
            .expect("every enumerated sequence is signal");
        let ok = pred == expected;
        let (a, b) = (seq[0], seq[seq.len() - 2]);
        let cell = &mut pair_hits[(a - first) as usize][(b - first) as usize];
        cell.0 += ok as usize;
        cell.1 += 1;
        label_hits[expected as usize].0 += ok as usize;
        label_hits[expected as usize].1 += 1;
        confusion[expected as usize][pred as usize] += 1;
        correct_total += ok as usize;
        if !ok && misses.len() < 500 {
            misses.push(Miss {
                tokens: seq.clone(),
                expected,
                predicted: pred,
            });
        }
    }
    let noise_task = SkipTrigramConfig {
        signal_prob: 0.0,
        ..task.clone()
    };
    let noise = noise_task
        .generate(
            noise_samples.max(1),
            &mut stream_rng(seed, Stream::Analysis),
        )
        .map_err(|e| ModelError::Config(e.to_string()))?;
    let noise_tally = evaluate_ablated(model, &noise, ablation)?;
    Ok(ExhaustiveReport {
        triggers: (task.trigger_tokens.first..=task.trigger_tokens.last).collect(),
        pair_accuracy: pair_hits
            .iter()
            .map(|row| {
                row.iter()
                    .map(|&(c, n)| c as f64 / n.max(1) as f64)
                    .collect()
            })
            .collect(),
        label_accuracy: label_hits
            .iter()
            .map(|&(c, n)| (n > 0).then(|| c as f64 / n as f64))
            .collect(),
        confusion,
        signal_sequences: seqs.len(),
        signal_accuracy: correct_total as f64 / seqs.len().max(1) as f64,
        noise_samples: noise.len(),
        noise_accuracy: noise_tally.acc(),
        noise_chance: 1.0 / vocab as f64,
        misses,
        ablation: ablation.map(|a| a.describe()).unwrap_or_default(),
    })
}
