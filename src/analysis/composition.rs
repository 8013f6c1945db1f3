//! Composition scores between heads (the Framework paper's ‖W_A W_B‖_F / (‖W_A‖_F ‖W_B‖_F)),
//! as TransformerLens's `model.all_composition_scores(mode)` defines them: the earlier head's
//! OV circuit `W_V W_O` composed with the later head's `W_Q W_Kᵀ` (Q), `W_K W_Qᵀ` (K) or
//! `W_V W_O` (V).

use nalgebra::DMatrix;
use serde::Serialize;

use super::linalg::HostWeights;
use crate::model::{ModelConfig, Weights};

/// Q-, K- and V-composition, each `[layer][head][layer][head]` as TL indexes it (the earlier
/// head first); 0 where the first layer is not earlier than the second.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[allow(non_snake_case)]
pub struct Composition {
    pub Q: Vec<Vec<Vec<Vec<f32>>>>,
    pub K: Vec<Vec<Vec<Vec<f32>>>>,
    pub V: Vec<Vec<Vec<Vec<f32>>>>,
}

/// A `d_model × d_model` matrix held as its factors `a [d_model, r] · b [r, d_model]`, with
/// the Gram matrices that give Frobenius norms of products without forming them.
struct Factored {
    a: DMatrix<f64>,
    b: DMatrix<f64>,
    /// `aᵀa` and `b bᵀ`, `[r, r]`.
    a_gram: DMatrix<f64>,
    b_gram: DMatrix<f64>,
}

impl Factored {
    fn new(a: DMatrix<f64>, b: DMatrix<f64>) -> Self {
        Self {
            a_gram: a.transpose() * &a,
            b_gram: &b * b.transpose(),
            a,
            b,
        }
    }

    /// ‖a b‖_F = √tr(aᵀa · b bᵀ).
    fn norm(&self) -> f64 {
        self.a_gram.component_mul(&self.b_gram).sum().sqrt()
    }

    /// ‖(a b)(c d)‖_F with `m = b c`: √tr(aᵀa · m · d dᵀ · mᵀ).
    fn product_norm(&self, right: &Factored) -> f64 {
        let m = &self.b * &right.a;
        let inner = &self.a_gram * &m * &right.b_gram * m.transpose();
        inner.trace().max(0.0).sqrt()
    }
}

/// The three composition scores of every pair of heads.
pub fn composition(cfg: &ModelConfig, weights: &Weights) -> Composition {
    let host = HostWeights::new(cfg, weights);
    let (layers, heads) = (cfg.n_layers, cfg.n_heads);
    let per_head = |f: &dyn Fn(usize, usize) -> Factored| -> Vec<Vec<Factored>> {
        (0..layers)
            .map(|l| (0..heads).map(|h| f(l, h)).collect())
            .collect()
    };
    let ov = per_head(&|l, h| Factored::new(host.head(l, "W_V", h), host.head(l, "W_O", h)));
    let qk =
        per_head(&|l, h| Factored::new(host.head(l, "W_Q", h), host.head(l, "W_K", h).transpose()));
    let kq =
        per_head(&|l, h| Factored::new(host.head(l, "W_K", h), host.head(l, "W_Q", h).transpose()));
    let scores = |right: &Vec<Vec<Factored>>| -> Vec<Vec<Vec<Vec<f32>>>> {
        (0..layers)
            .map(|l1| {
                (0..heads)
                    .map(|h1| {
                        (0..layers)
                            .map(|l2| {
                                (0..heads)
                                    .map(|h2| {
                                        if l1 >= l2 {
                                            return 0.0;
                                        }
                                        let (left, right) = (&ov[l1][h1], &right[l2][h2]);
                                        (left.product_norm(right) / (left.norm() * right.norm()))
                                            as f32
                                    })
                                    .collect()
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    };
    Composition {
        Q: scores(&qk),
        K: scores(&kq),
        V: scores(&ov),
    }
}
