//! Activations as plain host data, so that nothing downstream (CLI, UI, tests) touches a tensor.

use std::collections::BTreeMap;

use candle_core::Tensor;
use serde::Serialize;

use super::plan::Kernels;

/// A dense row-major f32 array with its shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NdArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl NdArray {
    pub fn from_tensor(t: &Tensor) -> candle_core::Result<Self> {
        Ok(Self {
            shape: t.dims().to_vec(),
            data: t
                .flatten_all()?
                .to_dtype(candle_core::DType::F32)?
                .to_vec1::<f32>()?,
        })
    }

    pub fn empty() -> Self {
        Self {
            shape: vec![0],
            data: Vec::new(),
        }
    }

    fn strides(&self) -> Vec<usize> {
        let mut strides = vec![1; self.shape.len()];
        for i in (0..self.shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * self.shape[i + 1];
        }
        strides
    }

    /// The element at a full index. Panics on a wrong index, like slice indexing.
    pub fn at(&self, index: &[usize]) -> f32 {
        assert_eq!(index.len(), self.shape.len(), "index rank");
        let offset: usize = index.iter().zip(self.strides()).map(|(i, s)| i * s).sum();
        self.data[offset]
    }

    /// The contiguous row at a leading index, for example `rows(&[0, 2])` of `[b, h, q, k]` is the
    /// `[q, k]` block of batch 0, head 2, flattened.
    pub fn rows(&self, leading: &[usize]) -> &[f32] {
        let strides = self.strides();
        let offset: usize = leading.iter().zip(&strides).map(|(i, s)| i * s).sum();
        let len = strides[leading.len() - 1];
        &self.data[offset..offset + len]
    }

    /// Nested `Vec`s of a 2-D array.
    pub fn to_vec2(&self) -> Vec<Vec<f32>> {
        let cols = *self.shape.last().unwrap_or(&0);
        self.data.chunks(cols.max(1)).map(|r| r.to_vec()).collect()
    }
}

/// The last position's logits of a one-layer model without LayerNorm, split by source:
/// `logits_last == direct_logits_last + Σ_h head_logits_last[h] + bias_logits (+ mlp_logits_last)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decomposition {
    /// `[n_heads, d_model]`: each head's output at the last position, z·W_O[h], without b_O.
    pub head_out_last: NdArray,
    /// `[n_heads, d_vocab_out]`: `head_out_last @ W_U`.
    pub head_logits_last: NdArray,
    /// `[d_vocab_out]`: the direct path, `(W_E[last] + W_pos[last]) @ W_U` (standard positions).
    pub direct_logits_last: Vec<f32>,
    /// `[d_vocab_out]`: `b_O @ W_U + b_U`, counted once.
    pub bias_logits: Vec<f32>,
    /// `[d_vocab_out]`: the MLP's output at the last position through `W_U`, when there is one.
    pub mlp_logits_last: Option<Vec<f32>>,
}

/// A fresh cache for one forward pass. `hooks` is keyed by TransformerLens hook names with TL's
/// shapes (batch dimension first, size 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivationCache {
    pub tokens: Vec<u32>,
    /// `[1, pos, d_vocab_out]`.
    pub logits: NdArray,
    pub hooks: BTreeMap<String, NdArray>,
    /// Where it is exact (one layer, no LayerNorm).
    pub decomposition: Option<Decomposition>,
}

impl ActivationCache {
    pub(super) fn new(tokens: Vec<u32>, logits: NdArray) -> Self {
        Self {
            tokens,
            logits,
            hooks: BTreeMap::new(),
            decomposition: None,
        }
    }

    pub(super) fn insert(&mut self, name: &str, value: NdArray) {
        self.hooks.insert(name.to_string(), value);
    }

    /// A TL hook, e.g. `blocks.0.attn.hook_pattern`.
    pub fn get(&self, hook: &str) -> Option<&NdArray> {
        self.hooks.get(hook)
    }

    /// The logits at the last position, `[d_vocab_out]`.
    pub fn logits_last(&self) -> &[f32] {
        self.logits_at(self.tokens.len() - 1)
    }

    /// The logits at `pos`, `[d_vocab_out]`.
    pub fn logits_at(&self, pos: usize) -> &[f32] {
        self.logits.rows(&[0, pos])
    }

    /// The attention pattern of `head` in `layer`, `[query][key]` (masked entries are 0).
    pub fn pattern(&self, layer: usize, head: usize) -> Vec<Vec<f32>> {
        let pattern = &self.hooks[&format!("blocks.{layer}.attn.hook_pattern")];
        let p = self.tokens.len();
        pattern
            .rows(&[0, head])
            .chunks(p)
            .map(|r| r.to_vec())
            .collect()
    }

    /// The predicted token: the argmax of the last logits (first index on ties).
    pub fn predicted_token(&self) -> u32 {
        argmax(self.logits_last()) as u32
    }
}

/// The highest-scoring class of each row of `logits [rows, classes]`: with candle's kernels (a
/// GPU) by candle's argmax, so that only the answers cross to the host, not the logits; with the
/// fused CPU kernels by [`argmax`].
pub fn predictions(
    logits: &candle_core::Tensor,
    kernels: Kernels,
) -> candle_core::Result<Vec<u32>> {
    if kernels == Kernels::FusedCpu {
        let classes = logits.dim(1)?;
        let host = logits.flatten_all()?.to_vec1::<f32>()?;
        Ok(host
            .chunks_exact(classes)
            .map(|r| argmax(r) as u32)
            .collect())
    } else {
        logits.argmax(1)?.to_vec1::<u32>()
    }
}

/// Index of the largest value, the first one on ties; NaN never wins.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best
}
