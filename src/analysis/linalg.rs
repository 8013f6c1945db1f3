//! The weights as f64 host matrices (nalgebra) for the analyses that read weights: circuits,
//! composition, attribution. f64 keeps products of several matrices far inside TL's tolerance.

use nalgebra::{DMatrix, DVector};

use crate::model::{Embeddings, ModelConfig, Weights, attn};

/// A row-major f32 block as an f64 matrix.
pub fn matrix(data: &[f32], rows: usize, cols: usize) -> DMatrix<f64> {
    DMatrix::from_row_iterator(rows, cols, data[..rows * cols].iter().map(|&x| x as f64))
}

pub fn vector(data: &[f32]) -> DVector<f64> {
    DVector::from_iterator(data.len(), data.iter().map(|&x| x as f64))
}

/// Read access to a model's weights by TL's names and shapes.
pub struct HostWeights<'a> {
    pub cfg: &'a ModelConfig,
    pub weights: &'a Weights,
}

impl<'a> HostWeights<'a> {
    pub fn new(cfg: &'a ModelConfig, weights: &'a Weights) -> Self {
        Self { cfg, weights }
    }

    /// `W_E` `[d_vocab, d_model]` (the identity for one-hot models).
    pub fn w_e(&self) -> DMatrix<f64> {
        match self.cfg.embeddings {
            Embeddings::OneHot => DMatrix::identity(self.cfg.d_vocab, self.cfg.d_model),
            Embeddings::Learned => matrix(
                self.weights.get("embed.W_E"),
                self.cfg.d_vocab,
                self.cfg.d_model,
            ),
        }
    }

    /// `W_U` `[d_model, d_vocab_out]` (the identity for one-hot models).
    pub fn w_u(&self) -> DMatrix<f64> {
        let out = self.cfg.d_vocab_out();
        match self.cfg.embeddings {
            Embeddings::OneHot => DMatrix::identity(self.cfg.d_model, out),
            Embeddings::Learned => matrix(self.weights.get("unembed.W_U"), self.cfg.d_model, out),
        }
    }

    /// `b_U` `[d_vocab_out]` (zero for one-hot models).
    pub fn b_u(&self) -> DVector<f64> {
        match self.weights.try_get("unembed.b_U") {
            Some(b) => vector(b),
            None => DVector::zeros(self.cfg.d_vocab_out()),
        }
    }

    /// The `[d_model]` vector `name`, or `None` if the model has no such parameter.
    pub fn vector(&self, name: &str) -> Option<DVector<f64>> {
        self.weights.try_get(name).map(vector)
    }

    /// Head `head`'s block of an attention weight: `W_Q`/`W_K`/`W_V` `[d_model, d_head]`,
    /// `W_O` `[d_head, d_model]`.
    pub fn head(&self, layer: usize, short: &str, head: usize) -> DMatrix<f64> {
        let (m, d) = (self.cfg.d_model, self.cfg.d_head);
        let all = self.weights.get(&attn(layer, short));
        let block = &all[head * m * d..(head + 1) * m * d];
        if short == "W_O" {
            matrix(block, d, m)
        } else {
            matrix(block, m, d)
        }
    }
}
