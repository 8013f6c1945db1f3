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

use crate::model::argmax;
use crate::model::kernels::cpu::{column_sums, matmul, pool, slice};
use crate::model::kernels::softmax::{cross_entropy, max_and_exp_sum, softmax_in_place};

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
struct Offsets {
    w_e: usize,
    w_pos: usize,
    w_q: usize,
    w_k: usize,
    w_v: usize,
    w_o: usize,
    b_q: usize,
    b_k: usize,
    b_v: usize,
    b_o: usize,
    w_in: usize,
    b_in: usize,
    w_out: usize,
    b_out: usize,
    w_u: usize,
    b_u: usize,
    total: usize,
}

impl FixedQueryShape {
    /// `(vocab, d_model, heads, d_head, d_mlp, classes)`, the names every loop below uses.
    fn dims(&self) -> (usize, usize, usize, usize, usize, usize) {
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

    fn offsets(&self) -> Offsets {
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
struct Tables {
    /// Position-`j` inputs `W_E[t] + W_pos[j]`, `[vocab, d]` each, and `=`'s input `c` `[d]`.
    x: [Vec<f32>; 2],
    c: Vec<f32>,
    /// The query of each head `[h, e]`, and `W_K[h] q_h` `[h, d]`.
    q: Vec<f32>,
    wk: Vec<f32>,
    /// Scores `[vocab, h]` for positions 0 and 1, `[h]` for position 2 (scaled).
    s: [Vec<f32>; 3],
    /// Values `[h, vocab, e]` (`[h, e]` for position 2) and their images `v W_O`
    /// `[h, vocab, d]` (`[h, d]`).
    v: [Vec<f32>; 3],
    ov: [Vec<f32>; 3],
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
struct Forward {
    t: Tables,
    /// Attention weights `[n, h, 3]`.
    w: Vec<f32>,
    /// The residual stream after attention `[n, d]`, the MLP's pre- and post-activations
    /// `[n, d_mlp]`, the residual stream after the MLP `[n, d]` and the logits `[n, classes]`.
    mid: Vec<f32>,
    pre: Vec<f32>,
    post: Vec<f32>,
    resid: Vec<f32>,
    logits: Vec<f32>,
}

/// Softmax over the three keys of each head: `w[h * 3 + j]`.
fn attention_weights(t: &Tables, h: usize, a: usize, b: usize, w: &mut [f32]) {
    for hh in 0..h {
        let s = [t.s[0][a * h + hh], t.s[1][b * h + hh], t.s[2][hh]];
        let weights = &mut w[hh * 3..hh * 3 + 3];
        weights.copy_from_slice(&s);
        softmax_in_place(weights, 1.0);
    }
}

/// The rows of the `ov` tables sample (a, b) mixes, per head and key.
fn ov_row<'a>(t: &'a Tables, sh: &FixedQueryShape, hh: usize, j: usize, tok: usize) -> &'a [f32] {
    let d = sh.d_model;
    let rows = if j == 2 { 1 } else { sh.vocab };
    let start = (hh * rows + tok) * d;
    &t.ov[j][start..start + d]
}

impl FixedQueryShape {
    /// The scored position's forward pass for the pairs `[n, 2]`.
    fn forward(&self, p: &[f32], pairs: &[u32]) -> Forward {
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

    /// Loss (mean cross-entropy), correct count and, if asked, the gradient of the packed
    /// parameters, for the pairs `[n, 2]` and labels.
    fn run(
        &self,
        p: &[f32],
        pairs: &[u32],
        labels: &[u32],
        with_grad: bool,
    ) -> (f64, usize, Option<Vec<f32>>) {
        let (vocab, d, h, e, m, classes) = self.dims();
        let o = self.offsets();
        let n = labels.len();
        let query = vocab - 1;
        let Forward {
            t,
            w,
            mid,
            pre,
            post,
            resid,
            mut logits,
        } = self.forward(p, pairs);
        let w_u = &p[o.w_u..o.w_u + d * classes];
        let inv_n = 1.0 / n as f32;
        let (loss_sum, correct) = logits
            .par_chunks_mut(classes)
            .zip(labels.par_iter())
            .map(|(row, &y)| {
                let y = y as usize;
                let (best, target) = (argmax(row), row[y]);
                let (max, sum) = if with_grad {
                    // The loss's gradient: softmax / n, less 1/n at the label.
                    let pieces = softmax_in_place(row, inv_n);
                    row[y] -= inv_n;
                    pieces
                } else {
                    max_and_exp_sum(row)
                };
                let loss = cross_entropy(max, sum, target);
                (loss, usize::from(best == y))
            })
            .reduce(|| (0.0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let loss = loss_sum / n as f64;
        if !with_grad {
            return (loss, correct, None);
        }
        let dlogits = logits;
        let mut g = vec![0f32; o.total];
        // Unembedding.
        matmul(
            &mut g[o.w_u..o.w_u + d * classes],
            (d, classes, n),
            (&resid, 1, d),
            (&dlogits, classes, 1),
            false,
        );
        column_sums(&dlogits, classes, &mut g[o.b_u..o.b_u + classes]);
        let mut dmid = vec![0f32; n * d];
        matmul(
            &mut dmid,
            (n, d, classes),
            (&dlogits, classes, 1),
            (w_u, 1, classes),
            false,
        );
        // MLP: dres flows to W_out and, through the ReLU, to W_in; dmid gets both paths.
        if m > 0 {
            let w_out = &p[o.w_out..o.w_out + m * d];
            let w_in = &p[o.w_in..o.w_in + d * m];
            matmul(
                &mut g[o.w_out..o.w_out + m * d],
                (m, d, n),
                (&post, 1, m),
                (&dmid, d, 1),
                false,
            );
            column_sums(&dmid, d, &mut g[o.b_out..o.b_out + d]);
            let mut dpre = post; // reused as the buffer
            matmul(&mut dpre, (n, m, d), (&dmid, d, 1), (w_out, 1, d), false);
            dpre.par_chunks_mut(m)
                .zip(pre.par_chunks(m))
                .for_each(|(g, x)| {
                    g.iter_mut().zip(x).for_each(|(g, x)| {
                        if *x <= 0.0 {
                            *g = 0.0;
                        }
                    })
                });
            matmul(
                &mut g[o.w_in..o.w_in + d * m],
                (d, m, n),
                (&mid, 1, d),
                (&dpre, m, 1),
                false,
            );
            column_sums(&dpre, m, &mut g[o.b_in..o.b_in + m]);
            matmul(&mut dmid, (n, d, m), (&dpre, m, 1), (w_in, 1, m), true);
        }
        // The residual stream before attention is `c` for every sample.
        let mut dc = vec![0f32; d];
        column_sums(&dmid, d, &mut dc);
        g[o.b_o..o.b_o + d].copy_from_slice(&dc);
        // Attention: gradients of the score and `ov` tables, summed over samples per thread.
        let table = |j: usize| if j == 2 { h * d } else { h * vocab * d };
        let zero = || {
            (
                [
                    vec![0f32; table(0)],
                    vec![0f32; table(1)],
                    vec![0f32; table(2)],
                ],
                [vec![0f32; vocab * h], vec![0f32; vocab * h], vec![0f32; h]],
            )
        };
        let chunk = n.div_ceil(rayon::current_num_threads().max(1) * 4).max(1);
        let (dov, ds) = dmid
            .par_chunks(chunk * d)
            .zip(w.par_chunks(chunk * h * 3))
            .zip(pairs.par_chunks(chunk * 2))
            .map(|((dmid, w), pairs)| {
                let (mut dov, mut ds) = zero();
                for ((g, w), pair) in dmid
                    .chunks_exact(d)
                    .zip(w.chunks_exact(h * 3))
                    .zip(pairs.chunks_exact(2))
                {
                    let toks = [pair[0] as usize, pair[1] as usize, 0];
                    for hh in 0..h {
                        let mut dw = [0f32; 3];
                        for j in 0..3 {
                            let row = ov_row(&t, self, hh, j, toks[j]);
                            dw[j] = row.iter().zip(g).map(|(a, b)| a * b).sum();
                            let rows = if j == 2 { 1 } else { vocab };
                            let start = (hh * rows + toks[j]) * d;
                            let wj = w[hh * 3 + j];
                            for (acc, gv) in dov[j][start..start + d].iter_mut().zip(g) {
                                *acc += wj * gv;
                            }
                        }
                        let wsum: f32 = (0..3).map(|j| w[hh * 3 + j] * dw[j]).sum();
                        for j in 0..3 {
                            let dsj = w[hh * 3 + j] * (dw[j] - wsum);
                            let at = if j == 2 { hh } else { toks[j] * h + hh };
                            ds[j][at] += dsj;
                        }
                    }
                }
                (dov, ds)
            })
            .reduce(zero, |(mut a, mut b), (c, e2)| {
                for (x, y) in a.iter_mut().zip(&c) {
                    x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
                }
                for (x, y) in b.iter_mut().zip(&e2) {
                    x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
                }
                (a, b)
            });
        // Tables to parameters. dX[j] collects each position's input gradient ([vocab, d],
        // [d] for `=`), dq the queries'.
        let mut dx = [vec![0f32; vocab * d], vec![0f32; vocab * d], dc];
        let mut dq = vec![0f32; h * e];
        let scale = self.attn_scale;
        for hh in 0..h {
            let w_o = &p[o.w_o + hh * e * d..o.w_o + (hh + 1) * e * d];
            let w_v = &p[o.w_v + hh * d * e..o.w_v + (hh + 1) * d * e];
            let w_k = &p[o.w_k + hh * d * e..o.w_k + (hh + 1) * d * e];
            let qh = &t.q[hh * e..(hh + 1) * e];
            let wkh = &t.wk[hh * d..(hh + 1) * d];
            // ux[i] = Σ_j Σ_t u_j[t] X_j(t)[i] and its total weight, for dW_K and dq.
            let mut ux = vec![0f32; d];
            let mut u_total = 0f32;
            for j in 0..3 {
                let rows = if j == 2 { 1 } else { vocab };
                let x: &[f32] = if j == 2 { &t.c } else { &t.x[j] };
                let vh = &t.v[j][hh * rows * e..(hh + 1) * rows * e];
                let dovh = &dov[j][hh * rows * d..(hh + 1) * rows * d];
                // ov = v W_O: dW_O += vᵀ dov, dv = dov W_Oᵀ.
                matmul(
                    &mut g[o.w_o + hh * e * d..o.w_o + (hh + 1) * e * d],
                    (e, d, rows),
                    (vh, 1, e),
                    (dovh, d, 1),
                    true,
                );
                let mut dv = vec![0f32; rows * e];
                matmul(&mut dv, (rows, e, d), (dovh, d, 1), (w_o, 1, d), false);
                // v = x W_V + b_V.
                matmul(
                    &mut g[o.w_v + hh * d * e..o.w_v + (hh + 1) * d * e],
                    (d, e, rows),
                    (x, 1, d),
                    (&dv, e, 1),
                    true,
                );
                for row in dv.chunks_exact(e) {
                    g[o.b_v + hh * e..o.b_v + (hh + 1) * e]
                        .iter_mut()
                        .zip(row)
                        .for_each(|(a, b)| *a += b);
                }
                matmul(&mut dx[j], (rows, d, e), (&dv, e, 1), (w_v, 1, e), true);
                // s = (x · W_K q + b_K · q) / scale.
                for tok in 0..rows {
                    let u = ds[j][if j == 2 { hh } else { tok * h + hh }] / scale;
                    if u == 0.0 {
                        continue;
                    }
                    u_total += u;
                    let xr = &x[tok * d..(tok + 1) * d];
                    ux.iter_mut().zip(xr).for_each(|(a, b)| *a += u * b);
                    dx[j][tok * d..(tok + 1) * d]
                        .iter_mut()
                        .zip(wkh)
                        .for_each(|(a, b)| *a += u * b);
                }
            }
            // dW_K[h] = ux ⊗ q_h; db_K[h] = u_total q_h; dq_h = ux W_K[h] + u_total b_K[h].
            let dw_k = &mut g[o.w_k + hh * d * e..o.w_k + (hh + 1) * d * e];
            for (i, row) in dw_k.chunks_exact_mut(e).enumerate() {
                row.iter_mut().zip(qh).for_each(|(a, q)| *a += ux[i] * q);
            }
            let b_k = &p[o.b_k + hh * e..o.b_k + (hh + 1) * e];
            for k in 0..e {
                g[o.b_k + hh * e + k] += u_total * qh[k];
                dq[hh * e + k] = u_total * b_k[k];
            }
            matmul(
                &mut dq[hh * e..(hh + 1) * e],
                (1, e, d),
                (&ux, d, 1),
                (w_k, e, 1),
                true,
            );
            // q = c W_Q + b_Q.
            let dqh = &dq[hh * e..(hh + 1) * e];
            let dw_q = &mut g[o.w_q + hh * d * e..o.w_q + (hh + 1) * d * e];
            for (i, row) in dw_q.chunks_exact_mut(e).enumerate() {
                row.iter_mut().zip(dqh).for_each(|(a, q)| *a += t.c[i] * q);
            }
            g[o.b_q + hh * e..o.b_q + (hh + 1) * e]
                .iter_mut()
                .zip(dqh)
                .for_each(|(a, b)| *a += b);
            let w_q = &p[o.w_q + hh * d * e..o.w_q + (hh + 1) * d * e];
            matmul(&mut dx[2], (1, d, e), (dqh, e, 1), (w_q, 1, e), true);
        }
        // Inputs to embeddings: X_j(t) = W_E[t] + W_pos[j], c = W_E[=] + W_pos[2].
        for (j, dx_j) in dx.iter().take(2).enumerate() {
            for (tok, row) in dx_j.chunks_exact(d).enumerate() {
                let at = o.w_e + tok * d;
                g[at..at + d].iter_mut().zip(row).for_each(|(a, b)| *a += b);
                let at = o.w_pos + j * d;
                g[at..at + d].iter_mut().zip(row).for_each(|(a, b)| *a += b);
            }
        }
        for at in [o.w_e + query * d, o.w_pos + 2 * d] {
            g[at..at + d]
                .iter_mut()
                .zip(&dx[2])
                .for_each(|(a, b)| *a += b);
        }
        (loss, correct, Some(g))
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
            pool().install(|| sh.run(params, pairs, labels, self.with_grad));
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
