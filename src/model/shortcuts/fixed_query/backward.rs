//! The fixed-query op's loss and its gradient, step by step backwards through the forward pass:
//! the logits' cross-entropy, the unembedding and the MLP at the scored position, the per-token
//! attention tables, the heads' projections, and the embeddings.

use rayon::prelude::*;

use super::op::{FixedQueryShape, Forward, Offsets, Tables, ov_row};
use crate::model::argmax;
use crate::model::kernels::cpu::{column_sums, matmul};
use crate::model::kernels::softmax::{cross_entropy, max_and_exp_sum, softmax_in_place};

/// Per head and position `j`: the gradient of the `v W_O` table rows (`dov`) and of the scores
/// (`ds`), each summed over the samples that read them.
type TableGrads = ([Vec<f32>; 3], [Vec<f32>; 3]);

impl FixedQueryShape {
    /// Loss (mean cross-entropy), correct count and, if asked, the gradient of the packed
    /// parameters, for the pairs `[n, 2]` and labels.
    pub(super) fn loss_and_grad(
        &self,
        p: &[f32],
        pairs: &[u32],
        labels: &[u32],
        with_grad: bool,
    ) -> (f64, usize, Option<Vec<f32>>) {
        let o = self.offsets();
        let mut fwd = self.forward(p, pairs);
        let (loss, correct) = logits_loss(&mut fwd.logits, self.classes, labels, with_grad);
        if !with_grad {
            return (loss, correct, None);
        }
        let mut g = vec![0f32; o.total];
        let dmid = self.unembed_and_mlp_backward(p, &o, &mut fwd, &mut g);
        // The residual stream before attention is `c` for every sample.
        let mut dc = vec![0f32; self.d_model];
        column_sums(&dmid, self.d_model, &mut dc);
        g[o.b_o..o.b_o + self.d_model].copy_from_slice(&dc);
        let (dov, ds) = self.table_grads(&fwd.t, &fwd.w, &dmid, pairs);
        let dx = self.heads_backward(p, &o, &fwd.t, (&dov, &ds), dc, &mut g);
        self.embeddings_backward(&o, &dx, &mut g);
        (loss, correct, Some(g))
    }

    /// From the logits' gradient (in `fwd.logits`) back through the unembedding and the MLP:
    /// their parameters' gradients into `g`, and the gradient of the residual stream after
    /// attention `[n, d]`. (The MLP's activations become its gradient's buffer.)
    fn unembed_and_mlp_backward(
        &self,
        p: &[f32],
        o: &Offsets,
        fwd: &mut Forward,
        g: &mut [f32],
    ) -> Vec<f32> {
        let (_, d, _, _, m, classes) = self.dims();
        let n = fwd.logits.len() / classes;
        let dlogits = &fwd.logits;
        let w_u = &p[o.w_u..o.w_u + d * classes];
        matmul(
            &mut g[o.w_u..o.w_u + d * classes],
            (d, classes, n),
            (&fwd.resid, 1, d),
            (dlogits, classes, 1),
            false,
        );
        column_sums(dlogits, classes, &mut g[o.b_u..o.b_u + classes]);
        let mut dmid = vec![0f32; n * d];
        matmul(
            &mut dmid,
            (n, d, classes),
            (dlogits, classes, 1),
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
                (&fwd.post, 1, m),
                (&dmid, d, 1),
                false,
            );
            column_sums(&dmid, d, &mut g[o.b_out..o.b_out + d]);
            let mut dpre = std::mem::take(&mut fwd.post);
            matmul(&mut dpre, (n, m, d), (&dmid, d, 1), (w_out, 1, d), false);
            dpre.par_chunks_mut(m)
                .zip(fwd.pre.par_chunks(m))
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
                (&fwd.mid, 1, d),
                (&dpre, m, 1),
                false,
            );
            column_sums(&dpre, m, &mut g[o.b_in..o.b_in + m]);
            matmul(&mut dmid, (n, d, m), (&dpre, m, 1), (w_in, 1, m), true);
        }
        dmid
    }

    /// The gradients of the score and `ov` tables from the residual stream's `dmid`, summed over
    /// samples per thread.
    fn table_grads(&self, t: &Tables, w: &[f32], dmid: &[f32], pairs: &[u32]) -> TableGrads {
        let (vocab, d, h, _, _, _) = self.dims();
        let n = dmid.len() / d;
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
        dmid.par_chunks(chunk * d)
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
                            let row = ov_row(t, self, hh, j, toks[j]);
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
            })
    }

    /// From the tables' gradients to each head's W_Q, W_K, W_V, W_O and biases (into `g`), and
    /// to each position's input: `dx[j]` is `[vocab, d]` for positions 0 and 1 and `[d]` for
    /// `=` (starting from `dc`, the gradient it gets past attention).
    fn heads_backward(
        &self,
        p: &[f32],
        o: &Offsets,
        t: &Tables,
        (dov, ds): (&[Vec<f32>; 3], &[Vec<f32>; 3]),
        dc: Vec<f32>,
        g: &mut [f32],
    ) -> [Vec<f32>; 3] {
        let (vocab, d, h, e, _, _) = self.dims();
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
        dx
    }

    /// Inputs to embeddings: `X_j(t) = W_E[t] + W_pos[j]`, `c = W_E[=] + W_pos[2]`.
    fn embeddings_backward(&self, o: &Offsets, dx: &[Vec<f32>; 3], g: &mut [f32]) {
        let (vocab, d, ..) = self.dims();
        let query = vocab - 1;
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
    }
}

/// The mean cross-entropy of each logit row against its label and how many rows predict their
/// label; with `with_grad`, each row becomes its gradient (softmax / n, less 1/n at the label).
fn logits_loss(
    logits: &mut [f32],
    classes: usize,
    labels: &[u32],
    with_grad: bool,
) -> (f64, usize) {
    let inv_n = 1.0 / labels.len() as f32;
    let (loss_sum, correct) = logits
        .par_chunks_mut(classes)
        .zip(labels.par_iter())
        .map(|(row, &y)| {
            let y = y as usize;
            let (best, target) = (argmax(row), row[y]);
            let (max, sum) = if with_grad {
                let pieces = softmax_in_place(row, inv_n);
                row[y] -= inv_n;
                pieces
            } else {
                max_and_exp_sum(row)
            };
            (cross_entropy(max, sum, target), usize::from(best == y))
        })
        .reduce(|| (0.0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    (loss_sum / labels.len() as f64, correct)
}
