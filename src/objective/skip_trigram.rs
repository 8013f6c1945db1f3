//! The skip-trigram task's loss and accuracy on a whole data set.

use candle_core::Device;

use super::batches::{ForwardPath, PreparedSet, Tally};
use crate::config::PathChoice;
use crate::model::Transformer;
use crate::task::Dataset;

/// Loss and accuracy of `model` on a whole prepared set, in chunks.
pub fn evaluate_set(
    model: &Transformer,
    set: &PreparedSet,
    device: &Device,
) -> candle_core::Result<Tally> {
    let n = set.data.len();
    // Bounded like every analysis pass; the multiset path aggregates within each chunk, which
    // is just as exact.
    let cfg = model.config();
    let chunk = if set.path == ForwardPath::Multiset {
        let per_row = 4 * cfg.n_heads * cfg.d_vocab;
        (crate::model::FORWARD_CHUNK_FLOATS / per_row.max(1)).clamp(1, n.max(1))
    } else {
        cfg.forward_chunk_rows(set.data.seq_len)
    };
    let indices: Vec<u32> = (0..n as u32).collect();
    let mut total = Tally::default();
    for part in indices.chunks(chunk) {
        let batch = set.batch(part, device)?;
        let (loss, logits) = batch.loss(model)?;
        let loss = loss.to_scalar::<f32>()? as f64;
        total.merge(&batch.tally(&logits, loss, model.plan().kernels)?);
    }
    Ok(total)
}

/// Evaluates `model` on `data` with the fastest exact path.
pub fn evaluate_dataset(model: &Transformer, data: Dataset) -> candle_core::Result<Tally> {
    let n = data.len();
    let set = PreparedSet::new(data, PathChoice::Auto, n, model.plan(), model.device())?;
    evaluate_set(model, &set, model.device())
}
