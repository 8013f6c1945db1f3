//! Modular addition's exact shortcut, as one CPU op with its own backward.
//!
//! Every input is `a b =` and only the last position is scored. Its query is always `=` at
//! position 2, so it is the same vector for every sample, and each key and value is a function
//! of one token at one position: the attention of the scored position is a softmax over three
//! scores read from small per-token tables (`[vocab, heads]` for positions 0 and 1, one value
//! for position 2), and its output a mix of three rows of per-token tables of `v · W_O`. Only
//! that position's residual stream goes through the MLP and the unembedding. The result is the
//! general path's loss and gradients, to float rounding (tests/fixed_query.rs checks both), at a
//! third of its work: the MLP and the unembedding at one position instead of three, and no
//! per-sample attention projections.
//!
//! The op takes every parameter packed in [`PARAM_ORDER`] (TL's names and layouts), the pairs
//! `[N, 2]` and the labels `[N]`, and returns the mean cross-entropy. Its forward also computes
//! the gradient of every parameter (when asked) so that the backward only scales it.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::model::kernels::cpu::{matmul, pool, slice};
use crate::model::kernels::softmax::softmax_in_place;

/// The parameters the op reads, in packing order (`{mlp}` only for models with MLPs).
pub const PARAM_ORDER: [&str; 16] = [
    "embed.W_E",
    "pos_embed.W_pos",
    "blocks.0.attn.W_Q",
    "blocks.0.attn.W_K",
    "blocks.0.attn.W_V",
    "blocks.0.attn.W_O",
    "blocks.0.attn.b_Q",
    "blocks.0.attn.b_K",
    "blocks.0.attn.b_V",
    "blocks.0.attn.b_O",
    "blocks.0.mlp.W_in",
    "blocks.0.mlp.b_in",
    "blocks.0.mlp.W_out",
    "blocks.0.mlp.b_out",
    "unembed.W_U",
    "unembed.b_U",
];

/// The model's sizes. `d_mlp` is 0 for an attention-only model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedQueryShape {
    pub vocab: usize,
    pub n_ctx: usize,
    pub d_model: usize,
    pub heads: usize,
    pub d_head: usize,
    pub d_mlp: usize,
    pub classes: usize,
    pub attn_scale: f32,
}

/// Where each parameter starts in the packed vector.
#[derive(Debug, Clone, Copy)]
pub(super) struct Offsets {
    pub(super) w_e: usize,
    pub(super) w_pos: usize,
    pub(super) w_q: usize,
    pub(super) w_k: usize,
    pub(super) w_v: usize,
    pub(super) w_o: usize,
    pub(super) b_q: usize,
    pub(super) b_k: usize,
    pub(super) b_v: usize,
    pub(super) b_o: usize,
    pub(super) w_in: usize,
    pub(super) b_in: usize,
    pub(super) w_out: usize,
    pub(super) b_out: usize,
    pub(super) w_u: usize,
    pub(super) b_u: usize,
    pub(super) total: usize,
}

impl FixedQueryShape {
    /// `(vocab, d_model, heads, d_head, d_mlp, classes)`, the names every loop below uses.
    pub(super) fn dims(&self) -> (usize, usize, usize, usize, usize, usize) {
        (
            self.vocab,
            self.d_model,
            self.heads,
            self.d_head,
            self.d_mlp,
            self.classes,
        )
    }

    /// Sizes of the packed parameters, in [`PARAM_ORDER`] (MLP entries 0 without MLPs).
    pub fn sizes(&self) -> [usize; 16] {
        let (v, d, h, e, m, c) = self.dims();
        [
            v * d,
            self.n_ctx * d,
            h * d * e,
            h * d * e,
            h * d * e,
            h * e * d,
            h * e,
            h * e,
            h * e,
            d,
            d * m,
            m,
            m * d,
            if m > 0 { d } else { 0 },
            d * c,
            c,
        ]
    }

    pub(super) fn offsets(&self) -> Offsets {
        let mut at = [0usize; 17];
        for (i, size) in self.sizes().iter().enumerate() {
            at[i + 1] = at[i] + size;
        }
        Offsets {
            w_e: at[0],
            w_pos: at[1],
            w_q: at[2],
            w_k: at[3],
            w_v: at[4],
            w_o: at[5],
            b_q: at[6],
            b_k: at[7],
            b_v: at[8],
            b_o: at[9],
            w_in: at[10],
            b_in: at[11],
            w_out: at[12],
            b_out: at[13],
            w_u: at[14],
            b_u: at[15],
            total: at[16],
        }
    }
}

/// What a forward measured, for the caller to read after the op ran.
#[derive(Debug, Default)]
pub struct FixedQueryReport {
    /// Samples whose largest logit is the label.
    pub correct: usize,
}

/// The op. `with_grad` makes the forward compute the gradients too (for training).
pub struct FixedQueryLoss {
    pub shape: FixedQueryShape,
    pub with_grad: bool,
    pub report: Arc<Mutex<FixedQueryReport>>,
    grad: Mutex<Option<Vec<f32>>>,
}

impl FixedQueryLoss {
    pub fn new(shape: FixedQueryShape, with_grad: bool) -> Self {
        Self {
            shape,
            with_grad,
            report: Arc::default(),
            grad: Mutex::new(None),
        }
    }
}

/// The per-token tables of one forward.
pub(super) struct Tables {
    /// Position-`j` inputs `W_E[t] + W_pos[j]`, `[vocab, d]` each, and `=`'s input `c` `[d]`.
    pub(super) x: [Vec<f32>; 2],
    pub(super) c: Vec<f32>,
    /// The query of each head `[h, e]`, and `W_K[h] q_h` `[h, d]`.
    pub(super) q: Vec<f32>,
    pub(super) wk: Vec<f32>,
    /// Scores `[vocab, h]` for positions 0 and 1, `[h]` for position 2 (scaled).
    pub(super) s: [Vec<f32>; 3],
    /// Values `[h, vocab, e]` (`[h, e]` for position 2) and their images `v W_O`
    /// `[h, vocab, d]` (`[h, d]`).
    pub(super) v: [Vec<f32>; 3],
    pub(super) ov: [Vec<f32>; 3],
}

impl FixedQueryShape {
    fn tables(&self, p: &[f32], o: &Offsets, query: usize) -> Tables {
        let (vocab, d, h, e) = (self.vocab, self.d_model, self.heads, self.d_head);
        let w_e = &p[o.w_e..o.w_e + vocab * d];
        let pos = |j: usize| &p[o.w_pos + j * d..o.w_pos + (j + 1) * d];
        let x: [Vec<f32>; 2] = std::array::from_fn(|j| {
            let mut x = w_e.to_vec();
            for row in x.chunks_exact_mut(d) {
                row.iter_mut().zip(pos(j)).for_each(|(a, b)| *a += b);
            }
            x
        });
        let c: Vec<f32> = w_e[query * d..(query + 1) * d]
            .iter()
            .zip(pos(2))
            .map(|(a, b)| a + b)
            .collect();
        let mut q = p[o.b_q..o.b_q + h * e].to_vec();
        let mut wk = vec![0f32; h * d];
        let mut kb = vec![0f32; h];
        for hh in 0..h {
            let w_q = &p[o.w_q + hh * d * e..o.w_q + (hh + 1) * d * e];
            matmul(
                &mut q[hh * e..(hh + 1) * e],
                (1, e, d),
                (&c, d, 1),
                (w_q, e, 1),
                true,
            );
            let w_k = &p[o.w_k + hh * d * e..o.w_k + (hh + 1) * d * e];
            let qh = &q[hh * e..(hh + 1) * e];
            matmul(
                &mut wk[hh * d..(hh + 1) * d],
                (d, 1, e),
                (w_k, e, 1),
                (qh, 1, 1),
                false,
            );
            kb[hh] = p[o.b_k + hh * e..o.b_k + (hh + 1) * e]
                .iter()
                .zip(qh)
                .map(|(a, b)| a * b)
                .sum();
        }
        let scale = self.attn_scale;
        let score = |x: &[f32], rows: usize| {
            let mut s = vec![0f32; rows * h];
            matmul(&mut s, (rows, h, d), (x, d, 1), (&wk, 1, d), false);
            for row in s.chunks_exact_mut(h) {
                row.iter_mut()
                    .zip(&kb)
                    .for_each(|(v, b)| *v = (*v + b) / scale);
            }
            s
        };
        let s = [score(&x[0], vocab), score(&x[1], vocab), score(&c, 1)];
        let values = |x: &[f32], rows: usize| {
            let mut v = vec![0f32; h * rows * e];
            let mut ov = vec![0f32; h * rows * d];
            for hh in 0..h {
                let vh = &mut v[hh * rows * e..(hh + 1) * rows * e];
                let b_v = &p[o.b_v + hh * e..o.b_v + (hh + 1) * e];
                for row in vh.chunks_exact_mut(e) {
                    row.copy_from_slice(b_v);
                }
                let w_v = &p[o.w_v + hh * d * e..o.w_v + (hh + 1) * d * e];
                matmul(vh, (rows, e, d), (x, d, 1), (w_v, e, 1), true);
                let w_o = &p[o.w_o + hh * e * d..o.w_o + (hh + 1) * e * d];
                let ovh = &mut ov[hh * rows * d..(hh + 1) * rows * d];
                matmul(ovh, (rows, d, e), (vh, e, 1), (w_o, d, 1), false);
            }
            (v, ov)
        };
        let (v0, ov0) = values(&x[0], vocab);
        let (v1, ov1) = values(&x[1], vocab);
        let (v2, ov2) = values(&c, 1);
        Tables {
            x,
            c,
            q,
            wk,
            s,
            v: [v0, v1, v2],
            ov: [ov0, ov1, ov2],
        }
    }
}

/// What the forward pass leaves for the loss and the backward.
pub(super) struct Forward {
    pub(super) t: Tables,
    /// Attention weights `[n, h, 3]`.
    pub(super) w: Vec<f32>,
    /// The residual stream after attention `[n, d]`, the MLP's pre- and post-activations
    /// `[n, d_mlp]`, the residual stream after the MLP `[n, d]` and the logits `[n, classes]`.
    pub(super) mid: Vec<f32>,
    pub(super) pre: Vec<f32>,
    pub(super) post: Vec<f32>,
    pub(super) resid: Vec<f32>,
    pub(super) logits: Vec<f32>,
}

/// Softmax over the three keys of each head: `w[h * 3 + j]`.
pub(super) fn attention_weights(t: &Tables, h: usize, a: usize, b: usize, w: &mut [f32]) {
    for hh in 0..h {
        let s = [t.s[0][a * h + hh], t.s[1][b * h + hh], t.s[2][hh]];
        let weights = &mut w[hh * 3..hh * 3 + 3];
        weights.copy_from_slice(&s);
        softmax_in_place(weights, 1.0);
    }
}

/// The rows of the `ov` tables sample (a, b) mixes, per head and key.
pub(super) fn ov_row<'a>(
    t: &'a Tables,
    sh: &FixedQueryShape,
    hh: usize,
    j: usize,
    tok: usize,
) -> &'a [f32] {
    let d = sh.d_model;
    let rows = if j == 2 { 1 } else { sh.vocab };
    let start = (hh * rows + tok) * d;
    &t.ov[j][start..start + d]
}

impl FixedQueryShape {
    /// The scored position's forward pass for the pairs `[n, 2]`.
    pub(super) fn forward(&self, p: &[f32], pairs: &[u32]) -> Forward {
        let (vocab, d, h, _, m, classes) = self.dims();
        let o = self.offsets();
        let n = pairs.len() / 2;
        let query = vocab - 1;
        let t = self.tables(p, &o, query);
        // Attention at the scored position: weights [n, h, 3] and the residual stream after it.
        let mut w = vec![0f32; n * h * 3];
        let mut mid = vec![0f32; n * d];
        let b_o = &p[o.b_o..o.b_o + d];
        mid.par_chunks_mut(d)
            .zip(w.par_chunks_mut(h * 3))
            .zip(pairs.par_chunks(2))
            .for_each(|((row, w), pair)| {
                let (a, b) = (pair[0] as usize, pair[1] as usize);
                attention_weights(&t, h, a, b, w);
                for (i, r) in row.iter_mut().enumerate() {
                    *r = t.c[i] + b_o[i];
                }
                for hh in 0..h {
                    for (j, tok) in [(0, a), (1, b), (2, 0)] {
                        let wj = w[hh * 3 + j];
                        for (r, v) in row.iter_mut().zip(ov_row(&t, self, hh, j, tok)) {
                            *r += wj * v;
                        }
                    }
                }
            });
        // MLP at that position only.
        let mut pre = vec![0f32; n * m];
        let mut post = vec![0f32; n * m];
        let mut resid = mid.clone();
        if m > 0 {
            let (w_in, b_in) = (&p[o.w_in..o.w_in + d * m], &p[o.b_in..o.b_in + m]);
            for row in pre.chunks_exact_mut(m) {
                row.copy_from_slice(b_in);
            }
            matmul(&mut pre, (n, m, d), (&mid, d, 1), (w_in, m, 1), true);
            post.par_chunks_mut(m)
                .zip(pre.par_chunks(m))
                .for_each(|(q, r)| q.iter_mut().zip(r).for_each(|(a, b)| *a = b.max(0.0)));
            let (w_out, b_out) = (&p[o.w_out..o.w_out + m * d], &p[o.b_out..o.b_out + d]);
            for row in resid.chunks_exact_mut(d) {
                row.iter_mut().zip(b_out).for_each(|(a, b)| *a += b);
            }
            matmul(&mut resid, (n, d, m), (&post, m, 1), (w_out, d, 1), true);
        }
        // Unembedding and loss; dlogits in place of the logits.
        let (w_u, b_u) = (&p[o.w_u..o.w_u + d * classes], &p[o.b_u..o.b_u + classes]);
        let mut logits = vec![0f32; n * classes];
        for row in logits.chunks_exact_mut(classes) {
            row.copy_from_slice(b_u);
        }
        matmul(
            &mut logits,
            (n, classes, d),
            (&resid, d, 1),
            (w_u, classes, 1),
            true,
        );
        Forward {
            t,
            w,
            mid,
            pre,
            post,
            resid,
            logits,
        }
    }

    /// The MLP's activations `[n, d_mlp]` and the logits `[n, classes]` at the scored position
    /// for the pairs `[n, 2]`, from the packed parameters.
    pub fn activations(&self, p: &[f32], pairs: &[u32]) -> (Vec<f32>, Vec<f32>) {
        let out = pool().install(|| self.forward(p, pairs));
        (out.post, out.logits)
    }
}

impl CustomOp3 for FixedQueryLoss {
    fn name(&self) -> &'static str {
        "fixed-query-loss"
    }

    fn cpu_fwd(
        &self,
        ps: &CpuStorage,
        pl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let sh = self.shape;
        let (params, pairs, labels) = (slice(ps, pl)?, slice(xs, xl)?, slice(ys, yl)?);
        if params.len() != sh.offsets().total || pairs.len() != 2 * labels.len() {
            candle_core::bail!("fixed-query loss {sh:?}: inputs of the wrong size");
        }
        if labels.is_empty() || sh.n_ctx < 3 || sh.vocab < 2 {
            candle_core::bail!("fixed-query loss: no samples, or a model too small for `a b =`");
        }
        if let Some(&t) = pairs.iter().find(|&&t| t as usize >= sh.vocab) {
            candle_core::bail!("fixed-query loss: token {t} is outside the vocabulary");
        }
        if let Some(&y) = labels.iter().find(|&&y| y as usize >= sh.classes) {
            candle_core::bail!("fixed-query loss: label {y} is outside the classes");
        }
        let (loss, correct, grad) =
            pool().install(|| sh.loss_and_grad(params, pairs, labels, self.with_grad));
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .correct = correct;
        *self.grad.lock().unwrap_or_else(|e| e.into_inner()) = grad;
        Ok((CpuStorage::F32(vec![loss as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        params: &Tensor,
        _pairs: &Tensor,
        _labels: &Tensor,
        _loss: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let scale = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        let mut g = self
            .grad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| {
                candle_core::Error::Msg(
                    "fixed-query loss: the forward ran without gradients".into(),
                )
            })?;
        if scale != 1.0 {
            g.iter_mut().for_each(|v| *v *= scale);
        }
        Ok((
            Some(Tensor::from_vec(g, params.shape(), params.device())?),
            None,
            None,
        ))
    }
}
