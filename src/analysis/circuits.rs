//! The circuit form of the weights: for every head, the OV circuit (what a source token makes the
//! head write, read as logits) and the QK circuit (the attention score of every query/key token
//! pair), plus the direct path. Computed from the weights alone, with no data.

use serde::Serialize;

use crate::model::{ModelConfig, Param, Weights};

/// All circuits of a model. Indices follow TransformerLens: `ov[h][src][out]` is `W_E W_V[h]
/// W_O[h] W_U` (row = source token, column = output logit; the Framework paper writes the
/// transpose) and `qk[h][query][key]` is `W_E W_Q[h] W_K[h]ᵀ W_Eᵀ / sqrt(d_head)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Circuits {
    /// With the biases folded in, `(W_V[h] + b_V[h]) W_O[h]`: with one-hot tokens this is exactly
    /// what the head writes for each source token it attends to.
    pub ov: Vec<Vec<Vec<f32>>>,
    /// With the biases folded in, `(W_Q[h] + b_Q[h])(W_K[h] + b_K[h])ᵀ / sqrt(d_head)`: the exact
    /// score of each query/key token pair.
    pub qk: Vec<Vec<Vec<f32>>>,
    /// TransformerLens's `model.OV`, without biases.
    pub ov_no_bias: Vec<Vec<Vec<f32>>>,
    /// TransformerLens's `model.QK` scaled by 1/sqrt(d_head), without biases.
    pub qk_no_bias: Vec<Vec<Vec<f32>>>,
    /// `W_E W_U`: the identity for this model.
    pub direct: Vec<Vec<f32>>,
}

/// Row `t` of `W[h]` (`[h, rows, d]` row-major), plus `bias[h]` if given.
fn row(w: &[f32], bias: Option<&[f32]>, h: usize, t: usize, rows: usize, d: usize) -> Vec<f32> {
    (0..d)
        .map(|k| w[(h * rows + t) * d + k] + bias.map_or(0.0, |b| b[h * d + k]))
        .collect()
}

pub fn circuits(cfg: &ModelConfig, w: &Weights) -> Circuits {
    let (h_n, v_n, d_n) = (cfg.n_heads, cfg.d_vocab, cfg.d_head);
    let scale = 1.0 / (d_n as f32).sqrt();
    let ov_of = |bias: bool| -> Vec<Vec<Vec<f32>>> {
        (0..h_n)
            .map(|h| {
                (0..v_n)
                    .map(|src| {
                        let v = row(&w.w_v, bias.then_some(&w.b_v[..]), h, src, v_n, d_n);
                        // (v · W_O[h]) · W_U, with W_U the identity.
                        (0..cfg.d_model)
                            .map(|m| {
                                (0..d_n)
                                    .map(|k| v[k] * w.w_o[(h * d_n + k) * cfg.d_model + m])
                                    .sum()
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    };
    let qk_of = |bias: bool| -> Vec<Vec<Vec<f32>>> {
        (0..h_n)
            .map(|h| {
                let keys: Vec<Vec<f32>> = (0..v_n)
                    .map(|k| row(&w.w_k, bias.then_some(&w.b_k[..]), h, k, v_n, d_n))
                    .collect();
                (0..v_n)
                    .map(|q| {
                        let query = row(&w.w_q, bias.then_some(&w.b_q[..]), h, q, v_n, d_n);
                        keys.iter()
                            .map(|key| {
                                scale * query.iter().zip(key).map(|(a, b)| a * b).sum::<f32>()
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    };
    debug_assert_eq!(w.get(Param::WO).len(), h_n * d_n * cfg.d_model);
    Circuits {
        ov: ov_of(true),
        qk: qk_of(true),
        ov_no_bias: ov_of(false),
        qk_no_bias: qk_of(false),
        direct: (0..v_n)
            .map(|s| (0..v_n).map(|o| if s == o { 1.0 } else { 0.0 }).collect())
            .collect(),
    }
}
