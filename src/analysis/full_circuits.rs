//! Every head's circuits through the embeddings, for any model (TL's conventions: no biases,
//! no positions, no LayerNorm): the full OV circuit `W_E W_V W_O W_U`, the full QK circuit
//! `W_E W_Q W_Kᵀ W_Eᵀ`, the copying score of the OV circuit, and its singular directions read
//! out as tokens.

use nalgebra::{DMatrix, DMatrixView, DVector};
use serde::Serialize;

use super::linalg::HostWeights;
use crate::model::{ModelConfig, Weights};

/// How many singular directions, and tokens per direction, the readout keeps.
pub const SVD_DIRECTIONS: usize = 4;
pub const SVD_TOKENS: usize = 4;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FullCircuits {
    /// `[layer][head][d_vocab][d_vocab_out]`: row = source token, column = output logit.
    pub ov_full: Vec<Vec<Vec<Vec<f32>>>>,
    /// `[layer][head][d_vocab][d_vocab]`: row = query token, column = key token (unscaled).
    pub qk_full: Vec<Vec<Vec<Vec<f32>>>>,
    /// `[layer][head]`: Σλ / Σ|λ| over the eigenvalues λ of the full OV circuit (its real
    /// part): 1 for a head that copies the token it attends to, −1 for one that suppresses it.
    /// Where `d_vocab_out` differs from `d_vocab`, over the first `min` tokens of both.
    pub copying_score: Vec<Vec<f32>>,
    /// `[layer][head]`: the largest singular directions of the full OV circuit.
    pub ov_svd: Vec<Vec<Vec<SingularDirection>>>,
}

/// One singular direction of a full OV circuit: the source tokens it reads and the output
/// logits it writes, each with its weight in the singular vector (signs chosen so that the
/// largest source weight is positive).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SingularDirection {
    pub value: f32,
    pub sources: Vec<(u32, f32)>,
    pub outputs: Vec<(u32, f32)>,
}

/// The full circuits of every head, from the weights alone.
pub fn full_circuits(cfg: &ModelConfig, weights: &Weights) -> Result<FullCircuits, String> {
    let host = HostWeights::new(cfg, weights);
    let (w_e, w_u) = (host.w_e(), host.w_u());
    // The copying score needs a square circuit: where the vocabularies differ (modular
    // addition reads `=` but never predicts it), it is taken over the tokens in both.
    let shared = cfg.d_vocab.min(cfg.d_vocab_out());
    let mut out = FullCircuits {
        ov_full: Vec::new(),
        qk_full: Vec::new(),
        copying_score: Vec::new(),
        ov_svd: Vec::new(),
    };
    for l in 0..cfg.n_layers {
        let (mut ov_layer, mut qk_layer, mut copy_layer, mut svd_layer) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for h in 0..cfg.n_heads {
            // The OV circuit as factors: a = W_E W_V [vocab, d], b = W_O W_U [d, vocab_out].
            let a = &w_e * host.head(l, "W_V", h);
            let b = host.head(l, "W_O", h) * &w_u;
            ov_layer.push(rows(&(&a * &b)));
            let q = &w_e * host.head(l, "W_Q", h);
            let k = &w_e * host.head(l, "W_K", h);
            qk_layer.push(rows(&(&q * k.transpose())));
            copy_layer.push(copying_score(&a.rows(0, shared), &b.columns(0, shared)));
            svd_layer.push(singular_directions(&a, &b)?);
        }
        out.ov_full.push(ov_layer);
        out.qk_full.push(qk_layer);
        out.copying_score.push(copy_layer);
        out.ov_svd.push(svd_layer);
    }
    Ok(out)
}

/// The eigenvalues of `a b` that are not zero are those of `b a` (`[d, d]`, small): their
/// sum's real part over the sum of their magnitudes, as TL's `FactoredMatrix.eigenvalues`.
fn copying_score(a: &DMatrixView<f64>, b: &DMatrixView<f64>) -> f32 {
    let eigen = (b * a).complex_eigenvalues();
    let sum: f64 = eigen.iter().map(|z| z.re).sum();
    let magnitude: f64 = eigen.iter().map(|z| z.norm()).sum();
    (sum / magnitude) as f32
}

/// The largest singular directions of `a b` through thin QR factorisations: with `a = Qa Ra`
/// and `bᵀ = Qb Rb`, `a b = Qa (Ra Rbᵀ) Qbᵀ`, so the SVD of the small middle gives the rest.
fn singular_directions(
    a: &DMatrix<f64>,
    b: &DMatrix<f64>,
) -> Result<Vec<SingularDirection>, String> {
    let qr_a = a.clone().qr();
    let qr_b = b.transpose().qr();
    let middle = qr_a.r() * qr_b.r().transpose();
    let svd = middle.svd(true, true);
    let (u, v_t) = match (&svd.u, &svd.v_t) {
        (Some(u), Some(v_t)) => (u, v_t),
        _ => return Err("the OV circuit's SVD did not converge".into()),
    };
    let left = qr_a.q() * u; // [vocab, r]
    let right = qr_b.q() * v_t.transpose(); // [vocab_out, r]
    let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
    order.sort_by(|&i, &j| svd.singular_values[j].total_cmp(&svd.singular_values[i]));
    Ok(order
        .into_iter()
        .take(SVD_DIRECTIONS)
        .map(|i| {
            let (mut src, mut dst) = (left.column(i).into_owned(), right.column(i).into_owned());
            let largest = src.iamax();
            if src[largest] < 0.0 {
                src = -src;
                dst = -dst;
            }
            SingularDirection {
                value: svd.singular_values[i] as f32,
                sources: top_tokens(&src),
                outputs: top_tokens(&dst),
            }
        })
        .collect())
}

/// The `SVD_TOKENS` entries of largest magnitude, largest first.
fn top_tokens(v: &DVector<f64>) -> Vec<(u32, f32)> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[j].abs().total_cmp(&v[i].abs()));
    order
        .into_iter()
        .take(SVD_TOKENS)
        .map(|i| (i as u32, v[i] as f32))
        .collect()
}

fn rows(m: &DMatrix<f64>) -> Vec<Vec<f32>> {
    (0..m.nrows())
        .map(|r| m.row(r).iter().map(|&x| x as f32).collect())
        .collect()
}
