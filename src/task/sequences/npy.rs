//! NumPy data: a `.npy` of token ids `[N, T]`, or a `.npz` with `tokens` and optionally
//! `loss_mask` (both `[N, T]`), read with candle's npy reader.

use std::path::Path;

use candle_core::{DType, Tensor};

use super::{DataError, SequenceData, UNSCORED, targets_from_mask};
use crate::device::error_line;

/// The integer values of an `[N, T]` array, with what it is called for messages.
fn integers(path: &Path, name: &'static str, t: &Tensor) -> Result<(usize, Vec<i64>), DataError> {
    let bad = |message: String| DataError::new(path, message).field(name);
    let (_, len) = t.dims2().map_err(|_| {
        bad(format!(
            "has shape {:?}; it must be [sequences, positions]",
            t.dims()
        ))
    })?;
    match t.dtype() {
        DType::U8 | DType::U32 | DType::I64 => {}
        other => {
            return Err(bad(format!(
                "holds {other:?} values; token ids and masks must be integers"
            )));
        }
    }
    let values = t
        .to_dtype(DType::I64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<i64>())
        .map_err(|e| bad(format!("cannot be read: {e}")))?;
    Ok((len, values))
}

pub(super) fn read(path: &Path, vocab: Option<Vec<String>>) -> Result<SequenceData, DataError> {
    let unreadable = |e: candle_core::Error| {
        DataError::new(
            path,
            format!("not a NumPy file toylens can read: {}", error_line(&e)),
        )
    };
    let is_npz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    let (tokens, mask) = if is_npz {
        let arrays = Tensor::read_npz(path).map_err(unreadable)?;
        let find = |name: &str| arrays.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        let tokens = find("tokens").ok_or_else(|| {
            let names: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
            DataError::new(
                path,
                format!("holds no array named \"tokens\" (it holds {names:?})"),
            )
        })?;
        (tokens.clone(), find("loss_mask").cloned())
    } else {
        (Tensor::read_npy(path).map_err(unreadable)?, None)
    };
    let (len, ids) = integers(path, "tokens", &tokens)?;
    let n = ids.len() / len.max(1);
    let limit = vocab.as_ref().map_or(super::MAX_VOCAB, Vec::len);
    let tokens: Vec<u32> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            if id < 0 || id as usize >= limit {
                Err(DataError::new(
                    path,
                    format!(
                        "sequence {}, position {}: token {id} is outside the vocabulary (ids 0 to {})",
                        i / len,
                        i % len,
                        limit - 1
                    ),
                )
                .field("tokens"))
            } else {
                Ok(id as u32)
            }
        })
        .collect::<Result<_, _>>()?;
    let mask = match &mask {
        Some(m) => {
            let (mask_len, values) = integers(path, "loss_mask", m)?;
            if mask_len != len || values.len() != tokens.len() {
                return Err(DataError::new(
                    path,
                    format!(
                        "has shape {:?}; it must match tokens' [{n}, {len}]",
                        m.dims()
                    ),
                )
                .field("loss_mask"));
            }
            if let Some(i) = values.iter().position(|&v| !(0..=1).contains(&v)) {
                return Err(DataError::new(
                    path,
                    format!(
                        "sequence {}, position {}: {} is not 0 or 1",
                        i / len,
                        i % len,
                        values[i]
                    ),
                )
                .field("loss_mask"));
            }
            Some(values.iter().map(|&v| v as u8).collect::<Vec<u8>>())
        }
        None => None,
    };
    let mut targets = Vec::with_capacity(tokens.len());
    for (row, seq) in tokens.chunks_exact(len.max(1)).enumerate() {
        let row_mask = mask.as_ref().map(|m| &m[row * len..(row + 1) * len]);
        let t = targets_from_mask(seq, row_mask)
            .map_err(|e| DataError::new(path, format!("sequence {row}: {e}")).field("loss_mask"))?;
        if t.iter().all(|&t| t == UNSCORED) {
            return Err(DataError::new(
                path,
                format!("sequence {row}: no position is scored"),
            ));
        }
        targets.extend(t);
    }
    let d_vocab = match &vocab {
        Some(v) => v.len(),
        None => tokens.iter().max().map_or(0, |&m| m as usize + 1),
    };
    Ok(SequenceData {
        vocab,
        d_vocab,
        seq_len: len,
        tokens,
        targets,
        given_split: vec![None; n],
        ..Default::default()
    })
}
