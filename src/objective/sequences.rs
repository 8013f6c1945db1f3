//! A model's next-token loss and accuracy on the sequences of a data file, at the positions the
//! file scores: what `toylens eval --data` reports, a data-file task's evaluations, and the
//! per-sequence grades the Data and Evaluate tabs show.

use candle_core::Tensor;
use serde::Serialize;

use crate::model::argmax;
use crate::model::kernels::softmax::cross_entropy_f64;
use crate::model::{Ablation, Capture, Transformer};
use crate::task::sequences::{SequenceData, UNSCORED};

/// What an evaluation on a data file measures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SequenceEval {
    pub sequences: usize,
    pub scored_positions: usize,
    /// Mean next-token cross-entropy over the scored positions.
    pub loss: f64,
    /// The share of scored positions whose target is the model's top prediction.
    pub acc: f64,
    /// The share of sequences with every scored position right.
    pub seq_acc: f64,
    /// Per position: the accuracy where it is scored (`None` where no sequence scores it).
    pub acc_by_position: Vec<Option<f64>>,
}

/// Each sequence's result: the model's top prediction at every scored position and its loss.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceGrades {
    /// The sequences graded (indices into the data).
    pub ids: Vec<u32>,
    /// `[ids × seq_len]`: the top prediction at each scored position, [`UNSCORED`] elsewhere.
    pub predictions: Vec<u32>,
    /// Each sequence's summed cross-entropy over its scored positions.
    pub loss_sum: Vec<f64>,
    /// Whether every scored position of the sequence is right.
    pub right: Vec<bool>,
}

impl SequenceGrades {
    /// The aggregate numbers of these grades on `data`.
    pub fn eval(&self, data: &SequenceData) -> SequenceEval {
        let len = data.seq_len;
        let (mut hits, mut scored) = (0usize, 0usize);
        let mut by_position = vec![(0usize, 0usize); len];
        for (s, &i) in self.ids.iter().enumerate() {
            let predicted = &self.predictions[s * len..(s + 1) * len];
            for (p, (&target, &guess)) in data
                .targets_of(i as usize)
                .iter()
                .zip(predicted)
                .enumerate()
            {
                if target == UNSCORED {
                    continue;
                }
                let hit = usize::from(target == guess);
                scored += 1;
                hits += hit;
                by_position[p].0 += 1;
                by_position[p].1 += hit;
            }
        }
        let n = scored.max(1) as f64;
        SequenceEval {
            sequences: self.ids.len(),
            scored_positions: scored,
            loss: self.loss_sum.iter().sum::<f64>() / n,
            acc: hits as f64 / n,
            seq_acc: self.right.iter().filter(|&&r| r).count() as f64
                / self.ids.len().max(1) as f64,
            acc_by_position: by_position
                .iter()
                .map(|&(n, r)| (n > 0).then(|| r as f64 / n as f64))
                .collect(),
        }
    }
}

/// Evaluates `model` on the sequences `ids` of `data` (all of them when `ids` is empty).
pub fn evaluate_sequences(
    model: &Transformer,
    data: &SequenceData,
    ids: &[u32],
) -> candle_core::Result<SequenceEval> {
    Ok(grade_sequences(model, data, ids)?.eval(data))
}

/// Grades `model` on the sequences `ids` of `data` (all of them when `ids` is empty), in chunks
/// of the model's analysis size.
pub fn grade_sequences(
    model: &Transformer,
    data: &SequenceData,
    ids: &[u32],
) -> candle_core::Result<SequenceGrades> {
    grade_sequences_ablated(model, data, ids, None)
}

/// [`grade_sequences`] with heads ablated.
pub fn grade_sequences_ablated(
    model: &Transformer,
    data: &SequenceData,
    ids: &[u32],
    ablation: Option<&Ablation>,
) -> candle_core::Result<SequenceGrades> {
    let cfg = model.config();
    let classes = cfg.d_vocab_out();
    if let Err(e) = data.check_model(cfg.d_vocab, classes, cfg.n_ctx) {
        candle_core::bail!("{e}");
    }
    let ids: Vec<u32> = if ids.is_empty() {
        (0..data.len() as u32).collect()
    } else {
        ids.to_vec()
    };
    let len = data.seq_len;
    let edits = model
        .ablation_edits(ablation, len)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let mut grades = SequenceGrades {
        predictions: vec![UNSCORED; ids.len() * len],
        loss_sum: vec![0.0; ids.len()],
        right: vec![true; ids.len()],
        ids: Vec::new(),
    };
    let rows = cfg.forward_chunk_rows(len);
    for (c, chunk) in ids.chunks(rows).enumerate() {
        let tokens: Vec<u32> = chunk
            .iter()
            .flat_map(|&i| data.sequence(i as usize).iter().copied())
            .collect();
        let input = Tensor::from_vec(tokens, (chunk.len(), len), model.device())?;
        let (logits, _) = model.forward_hooked(&input, Capture::Nothing, edits.as_ref())?;
        let logits = logits.flatten_all()?.to_vec1::<f32>()?;
        for (s, &i) in chunk.iter().enumerate() {
            let at = c * rows + s;
            for (p, &target) in data.targets_of(i as usize).iter().enumerate() {
                if target == UNSCORED {
                    continue;
                }
                let row = &logits[(s * len + p) * classes..(s * len + p + 1) * classes];
                let guess = argmax(row) as u32;
                grades.predictions[at * len + p] = guess;
                grades.loss_sum[at] += cross_entropy_f64(row, target as usize);
                grades.right[at] &= guess == target;
            }
        }
    }
    grades.ids = ids;
    Ok(grades)
}
