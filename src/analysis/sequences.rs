//! A data-file task's evaluation of a model, for the Evaluate tab: loss and accuracies on the
//! validation sequences, accuracy by position, the confusion of the scored targets, and the
//! sequences with the highest loss.

use std::sync::Arc;

use crate::model::{Ablation, Transformer};
use crate::objective::{SequenceEval, grade_sequences_ablated};
use crate::task::sequences::{SequenceData, UNSCORED};

/// Sequences the report lists as the worst.
pub const WORST_SEQUENCES: usize = 30;
/// Token ids the confusion matrix shows at most (the most frequent targets).
pub const CONFUSION_TOKENS: usize = 40;

/// What the Evaluate tab shows of a data-file task.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceReport {
    /// The sequences evaluated (a view shows a report of older data until the new one is in).
    pub data: Arc<SequenceData>,
    pub eval: SequenceEval,
    /// The token ids of the confusion matrix's rows (targets) and columns (predictions): the
    /// most frequent scored targets, in id order.
    pub tokens: Vec<u32>,
    /// `[tokens × tokens]`: how often target `r` was predicted as `c`.
    pub confusion: Vec<u32>,
    /// Scored positions whose target or prediction is outside [`Self::tokens`].
    pub outside: usize,
    /// The sequences with the highest mean loss at their scored positions: (id, mean loss,
    /// whether every scored position is right).
    pub worst: Vec<(u32, f64, bool)>,
}

/// The report of `model` on the sequences `ids` of `data`.
pub fn sequence_report(
    model: &Transformer,
    data: &Arc<SequenceData>,
    ids: &[u32],
    ablation: Option<&Ablation>,
) -> candle_core::Result<SequenceReport> {
    let grades = grade_sequences_ablated(model, data, ids, ablation)?;
    let len = data.seq_len;
    let mut frequency = vec![0usize; data.d_vocab.max(model.config().d_vocab_out())];
    for &i in &grades.ids {
        for &t in data.targets_of(i as usize) {
            if t != UNSCORED {
                frequency[t as usize] += 1;
            }
        }
    }
    let mut tokens: Vec<u32> = (0..frequency.len() as u32)
        .filter(|&t| frequency[t as usize] > 0)
        .collect();
    tokens.sort_by_key(|&t| std::cmp::Reverse(frequency[t as usize]));
    tokens.truncate(CONFUSION_TOKENS);
    tokens.sort_unstable();
    let slot = |t: u32| tokens.binary_search(&t).ok();
    let k = tokens.len();
    let (mut confusion, mut outside) = (vec![0u32; k * k], 0);
    let mut worst = Vec::with_capacity(grades.ids.len());
    for (s, &i) in grades.ids.iter().enumerate() {
        let predicted = &grades.predictions[s * len..(s + 1) * len];
        let mut scored = 0usize;
        for (&target, &guess) in data.targets_of(i as usize).iter().zip(predicted) {
            if target == UNSCORED {
                continue;
            }
            scored += 1;
            match (slot(target), slot(guess)) {
                (Some(r), Some(c)) => confusion[r * k + c] += 1,
                _ => outside += 1,
            }
        }
        worst.push((
            i,
            grades.loss_sum[s] / scored.max(1) as f64,
            grades.right[s],
        ));
    }
    worst.sort_by(|a, b| b.1.total_cmp(&a.1));
    worst.truncate(WORST_SEQUENCES);
    Ok(SequenceReport {
        data: data.clone(),
        eval: grades.eval(data),
        tokens,
        confusion,
        outside,
        worst,
    })
}
