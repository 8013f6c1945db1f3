//! Modular addition's loss and accuracy on a set of pairs: by the fixed-query shortcut where the
//! model's plan has it, else the general path.

use candle_core::{Device, Tensor};

use crate::model::{Ablation, Kernels, Transformer, predictions};
use crate::task::PairSplit;

/// The inputs of the pairs `ids` — `a b =` tokens `[n, 3]`, or just `a b` `[n, 2]` for the
/// shortcut — and their labels `[n]`.
pub fn pairs_on_device(
    split: &PairSplit,
    ids: &[u32],
    shortcut: bool,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let width = if shortcut { 2 } else { 3 };
    let tokens = split.inputs(ids, !shortcut);
    let labels: Vec<u32> = ids.iter().map(|&i| split.label(i)).collect();
    Ok((
        Tensor::from_vec(tokens, (ids.len(), width), device)?,
        Tensor::from_vec(labels, ids.len(), device)?,
    ))
}

/// The mean loss (a scalar tensor that backpropagates when `with_grad`) and the number of
/// right answers on a batch, by the shortcut or the general path.
pub fn batch_loss(
    model: &Transformer,
    (inputs, labels): &(Tensor, Tensor),
    shortcut: bool,
    with_grad: bool,
) -> candle_core::Result<(Tensor, usize)> {
    if shortcut {
        return model.fixed_query_loss(inputs, labels, with_grad);
    }
    let logits = model.forward_last_general(inputs)?;
    let loss = candle_nn::loss::cross_entropy(&logits, labels)?;
    Ok((loss, correct_count(&logits, labels, model.plan().kernels)?))
}

fn correct_count(logits: &Tensor, labels: &Tensor, kernels: Kernels) -> candle_core::Result<usize> {
    let labels = labels.to_vec1::<u32>()?;
    let answers = predictions(logits, kernels)?;
    Ok(answers.iter().zip(&labels).filter(|(a, l)| a == l).count())
}

/// Pairs per evaluation chunk of `model`, by the shortcut where it applies (every pass over
/// many pairs uses it: loss and accuracy, right answers, the progress measures).
pub fn pairs_per_chunk(model: &Transformer) -> usize {
    let cfg = model.config();
    if model.plan().fixed_query().is_some() {
        // The shortcut holds a few rows of d_mlp and the classes per sample; small enough that
        // an evaluation adds little to a training run's memory.
        let per_row = 4 * (cfg.d_mlp() + cfg.d_model + cfg.d_vocab_out());
        (crate::model::FORWARD_CHUNK_FLOATS / 16 / per_row).clamp(1, 4_096)
    } else {
        cfg.forward_chunk_rows(3)
    }
}

/// Whether `model` answers each of the pairs `ids` right, in chunks, by the shortcut where it
/// applies.
pub fn right_answers(
    model: &Transformer,
    split: &PairSplit,
    ids: &[u32],
) -> candle_core::Result<Vec<bool>> {
    let shortcut = model.plan().fixed_query().is_some();
    let mut right = Vec::with_capacity(ids.len());
    for part in ids.chunks(pairs_per_chunk(model)) {
        let logits = if shortcut {
            model.fixed_query_activations(&split.inputs(part, false))?.1
        } else {
            model.forward_last_general(&pairs_on_device(split, part, false, model.device())?.0)?
        };
        for (answer, &i) in predictions(&logits, model.plan().kernels)?
            .into_iter()
            .zip(part)
        {
            right.push(answer == split.label(i));
        }
    }
    Ok(right)
}

/// Mean cross-entropy and accuracy of `model` on the pairs `ids`, in chunks, by the shortcut
/// where it applies.
/// Mean loss and accuracy on the pairs `ids` with heads ablated: through the general path (the
/// fixed-query shortcut has no hook to edit), `a b =` in chunks.
pub fn loss_and_accuracy_ablated(
    model: &Transformer,
    split: &PairSplit,
    ids: &[u32],
    ablation: &Ablation,
) -> candle_core::Result<(f64, f64)> {
    let (mut loss_sum, mut correct) = (0.0, 0usize);
    for part in ids.chunks(pairs_per_chunk(model)) {
        let inputs = Tensor::from_vec(split.inputs(part, true), (part.len(), 3), model.device())?;
        let labels: Vec<u32> = part.iter().map(|&i| split.label(i)).collect();
        let logits = model.forward_last_ablated(&inputs, Some(ablation))?;
        let targets = Tensor::from_slice(&labels, part.len(), model.device())?;
        let loss = candle_nn::loss::cross_entropy(&logits, &targets)?.to_scalar::<f32>()?;
        loss_sum += loss as f64 * part.len() as f64;
        correct += predictions(&logits, model.plan().kernels)?
            .iter()
            .zip(&labels)
            .filter(|(p, l)| p == l)
            .count();
    }
    let n = ids.len().max(1) as f64;
    Ok((loss_sum / n, correct as f64 / n))
}

pub fn loss_and_accuracy(
    model: &Transformer,
    split: &PairSplit,
    ids: &[u32],
) -> candle_core::Result<(f64, f64)> {
    let shortcut = model.plan().fixed_query().is_some();
    let (mut loss_sum, mut correct) = (0.0, 0usize);
    for part in ids.chunks(pairs_per_chunk(model)) {
        let batch = pairs_on_device(split, part, shortcut, model.device())?;
        let (loss, right) = batch_loss(model, &batch, shortcut, false)?;
        loss_sum += loss.to_scalar::<f32>()? as f64 * part.len() as f64;
        correct += right;
    }
    let n = ids.len().max(1) as f64;
    Ok((loss_sum / n, correct as f64 / n))
}
