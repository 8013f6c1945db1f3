//! A model's next-token loss and accuracy on the sequences of a data file, at the positions the
//! file scores: what `toylens eval --data` reports.

use candle_core::Tensor;
use serde::Serialize;

use crate::model::argmax;
use crate::model::kernels::softmax::cross_entropy_f64;
use crate::model::{Capture, Transformer};
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

/// Evaluates `model` on the sequences `ids` of `data` (all of them when `ids` is empty), in
/// chunks of the model's analysis size.
pub fn evaluate_sequences(
    model: &Transformer,
    data: &SequenceData,
    ids: &[u32],
) -> candle_core::Result<SequenceEval> {
    let cfg = model.config();
    let classes = cfg.d_vocab_out();
    if let Err(e) = data.check_model(cfg.d_vocab, classes, cfg.n_ctx) {
        candle_core::bail!("{e}");
    }
    let all: Vec<u32>;
    let ids = if ids.is_empty() {
        all = (0..data.len() as u32).collect();
        &all
    } else {
        ids
    };
    let len = data.seq_len;
    let (mut loss, mut right, mut scored) = (0.0, 0usize, 0usize);
    let mut whole = 0usize;
    let mut by_position = vec![(0usize, 0usize); len];
    for chunk in ids.chunks(cfg.forward_chunk_rows(len)) {
        let tokens: Vec<u32> = chunk
            .iter()
            .flat_map(|&i| data.sequence(i as usize).iter().copied())
            .collect();
        let input = Tensor::from_vec(tokens, (chunk.len(), len), model.device())?;
        let (logits, _) = model.forward_hooked(&input, Capture::Nothing, None)?;
        let logits = logits.flatten_all()?.to_vec1::<f32>()?;
        for (s, &i) in chunk.iter().enumerate() {
            let mut all_right = true;
            for (p, &target) in data.targets_of(i as usize).iter().enumerate() {
                if target == UNSCORED {
                    continue;
                }
                let row = &logits[(s * len + p) * classes..(s * len + p + 1) * classes];
                let hit = argmax(row) == target as usize;
                loss += cross_entropy_f64(row, target as usize);
                scored += 1;
                right += usize::from(hit);
                by_position[p].0 += 1;
                by_position[p].1 += usize::from(hit);
                all_right &= hit;
            }
            whole += usize::from(all_right);
        }
    }
    let n = scored.max(1) as f64;
    Ok(SequenceEval {
        sequences: ids.len(),
        scored_positions: scored,
        loss: loss / n,
        acc: right as f64 / n,
        seq_acc: whole as f64 / ids.len().max(1) as f64,
        acc_by_position: by_position
            .iter()
            .map(|&(n, r)| (n > 0).then(|| r as f64 / n as f64))
            .collect(),
    })
}
