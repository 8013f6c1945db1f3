//! Causal attention for training, fused into one CPU op with its own backward: from the
//! projected queries, keys and values `[batch, pos, 3, head, d_head]` (as one matmul writes them)
//! to `z` `[batch, pos, head, d_head]`, without materialising the `[batch, head, query, key]`
//! scores and pattern or transposing q, k and v. Composed from candle's ops the same step is a
//! dozen ops forward and twice that backward, each allocating and accumulating a gradient; fused
//! it is one pass each way, parallel over the batch.
//!
//! The arithmetic is exactly the definition: `s = q·k / scale` for keys up to the query,
//! `p = softmax(s)`, `z = Σ p v`; backward recomputes `p` rather than storing it. Tests prove it
//! equal to the composed path in values and gradients; the activation cache (`run_with_cache`)
//! keeps the composed path, whose intermediates are TL's hooks.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// `qkv [b, p, 3, h, d]` to `z [b, p, h, d]`.
pub struct CausalAttention {
    pub scale: f32,
}

fn dims(layout: &Layout) -> candle_core::Result<(usize, usize, usize, usize, usize, usize)> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("fused attention needs contiguous qkv".into()))?;
    match *layout.dims() {
        [b, p, 3, h, d] => Ok((start, end, b, p, h, d)),
        ref other => candle_core::bail!("fused attention needs [b, p, 3, h, d], got {other:?}"),
    }
}

fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// One head of one sequence, copied out of the interleaved `[p, 3, h, d]` rows so that every
/// inner loop runs over contiguous memory: q, k, v as `[p, d]` and k, v transposed as `[d, p]`
/// (a query's scores over the keys, and dz's products with the values, are then sums of
/// contiguous rows, which vectorise).
struct Head {
    p: usize,
    d: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    kt: Vec<f32>,
    vt: Vec<f32>,
}

impl Head {
    fn new(p: usize, d: usize) -> Self {
        Self {
            p,
            d,
            q: vec![0.0; p * d],
            k: vec![0.0; p * d],
            v: vec![0.0; p * d],
            kt: vec![0.0; p * d],
            vt: vec![0.0; p * d],
        }
    }

    /// Loads head `head` of `qkv` (one sequence, `[p, 3, h, d]`).
    fn load(&mut self, qkv: &[f32], h: usize, head: usize) {
        let (p, d) = (self.p, self.d);
        for t in 0..p {
            let row = |which: usize| ((t * 3 + which) * h + head) * d;
            self.q[t * d..(t + 1) * d].copy_from_slice(&qkv[row(0)..row(0) + d]);
            self.k[t * d..(t + 1) * d].copy_from_slice(&qkv[row(1)..row(1) + d]);
            self.v[t * d..(t + 1) * d].copy_from_slice(&qkv[row(2)..row(2) + d]);
            for i in 0..d {
                self.kt[i * p + t] = self.k[t * d + i];
                self.vt[i * p + t] = self.v[t * d + i];
            }
        }
    }

    /// `Σ_i x[i] · rows_t[i][..n]`: the products of `x` with the first `n` rows of the
    /// untransposed matrix, through the transposed one.
    fn products(&self, x: &[f32], rows_t: &[f32], n: usize, out: &mut [f32]) {
        out[..n].fill(0.0);
        for (i, &c) in x.iter().enumerate() {
            axpy(c, &rows_t[i * self.p..i * self.p + n], &mut out[..n]);
        }
    }

    /// The softmax row of query `q` into `out[..=q]`.
    fn pattern_row(&self, q: usize, scale: f32, out: &mut [f32]) {
        let d = self.d;
        self.products(&self.q[q * d..(q + 1) * d], &self.kt, q + 1, out);
        let mut max = f32::NEG_INFINITY;
        for o in out[..=q].iter_mut() {
            *o /= scale;
            max = max.max(*o);
        }
        let mut sum = 0f32;
        for o in out[..=q].iter_mut() {
            *o = (*o - max).exp();
            sum += *o;
        }
        let r = 1.0 / sum;
        for o in out[..=q].iter_mut() {
            *o *= r;
        }
    }
}

impl CustomOp1 for CausalAttention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end, b, p, h, d) = dims(layout)?;
        let qkv = &s.as_slice::<f32>()?[start..end];
        let mut z = vec![0f32; b * p * h * d];
        z.par_chunks_mut(p * h * d)
            .zip(qkv.par_chunks(p * 3 * h * d))
            .for_each(|(z, qkv)| {
                let mut head_data = Head::new(p, d);
                let mut probs = vec![0f32; p];
                for head in 0..h {
                    head_data.load(qkv, h, head);
                    for q in 0..p {
                        head_data.pattern_row(q, self.scale, &mut probs);
                        let out = &mut z[(q * h + head) * d..(q * h + head + 1) * d];
                        for (k, &w) in probs[..=q].iter().enumerate() {
                            axpy(w, &head_data.v[k * d..(k + 1) * d], out);
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(z), Shape::from((b, p, h, d))))
    }

    fn bwd(&self, qkv: &Tensor, _z: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        Ok(Some(qkv.apply_op2_no_bwd(
            &grad,
            &CausalAttentionGrad { scale: self.scale },
        )?))
    }
}

/// `(qkv, dz)` to `d qkv`.
struct CausalAttentionGrad {
    scale: f32,
}

impl CustomOp2 for CausalAttentionGrad {
    fn name(&self) -> &'static str {
        "causal-attention-grad"
    }

    fn cpu_fwd(
        &self,
        s: &CpuStorage,
        layout: &Layout,
        g: &CpuStorage,
        g_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end, b, p, h, d) = dims(layout)?;
        let qkv = &s.as_slice::<f32>()?[start..end];
        let (gs, ge) = g_layout.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("fused attention needs a contiguous dz".into())
        })?;
        let dz = &g.as_slice::<f32>()?[gs..ge];
        if dz.len() != b * p * h * d {
            candle_core::bail!(
                "fused attention: dz has {} values, expected {}",
                dz.len(),
                b * p * h * d
            );
        }
        let mut dqkv = vec![0f32; qkv.len()];
        dqkv.par_chunks_mut(p * 3 * h * d)
            .zip(qkv.par_chunks(p * 3 * h * d))
            .zip(dz.par_chunks(p * h * d))
            .for_each(|((dqkv, qkv), dz)| {
                let mut head_data = Head::new(p, d);
                let (mut probs, mut dprobs) = (vec![0f32; p], vec![0f32; p]);
                // This head's gradients, [p, d] each, scattered back at the end.
                let (mut dq, mut dk, mut dv) =
                    (vec![0f32; p * d], vec![0f32; p * d], vec![0f32; p * d]);
                for head in 0..h {
                    head_data.load(qkv, h, head);
                    dq.fill(0.0);
                    dk.fill(0.0);
                    dv.fill(0.0);
                    for q in 0..p {
                        head_data.pattern_row(q, self.scale, &mut probs);
                        let dz_q = &dz[(q * h + head) * d..(q * h + head + 1) * d];
                        // dP = dz·v; dv += p·dz.
                        head_data.products(dz_q, &head_data.vt, q + 1, &mut dprobs);
                        for k in 0..=q {
                            axpy(probs[k], dz_q, &mut dv[k * d..(k + 1) * d]);
                        }
                        // dS = p (dP − Σ p dP) / scale; dq += dS·k; dk += dS·q.
                        let mean: f32 = probs[..=q]
                            .iter()
                            .zip(&dprobs[..=q])
                            .map(|(a, b)| a * b)
                            .sum();
                        let query = &head_data.q[q * d..(q + 1) * d];
                        for k in 0..=q {
                            let ds = probs[k] * (dprobs[k] - mean) / self.scale;
                            axpy(
                                ds,
                                &head_data.k[k * d..(k + 1) * d],
                                &mut dq[q * d..(q + 1) * d],
                            );
                            axpy(ds, query, &mut dk[k * d..(k + 1) * d]);
                        }
                    }
                    for t in 0..p {
                        for (which, grad) in [(0, &dq), (1, &dk), (2, &dv)] {
                            let row = ((t * 3 + which) * h + head) * d;
                            dqkv[row..row + d].copy_from_slice(&grad[t * d..(t + 1) * d]);
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(dqkv), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device, Var};

    /// The fused op against attention composed from candle's ops, in values and gradients.
    #[test]
    fn matches_composed_attention_and_its_gradient() {
        let dev = Device::Cpu;
        let (b, p, h, d) = (3, 6, 2, 5);
        let scale = (d as f64).sqrt();
        let qkv =
            Var::from_tensor(&Tensor::randn(0f32, 1.5, (b, p, 3, h, d), &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (b, p, h, d), &dev).unwrap();
        let fused = qkv
            .as_tensor()
            .apply_op1(CausalAttention {
                scale: scale as f32,
            })
            .unwrap();
        let part = |i: usize| {
            qkv.as_tensor()
                .narrow(2, i, 1)
                .unwrap()
                .squeeze(2)
                .unwrap()
                .permute((0, 2, 1, 3))
                .unwrap()
                .contiguous()
                .unwrap() // [b, h, p, d]
        };
        let (q, k, v) = (part(0), part(1), part(2));
        let mask: Vec<f32> = (0..p * p)
            .map(|i| {
                if i % p > i / p {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (p, p), &dev).unwrap();
        let scores = (q.matmul(&k.t().unwrap().contiguous().unwrap()).unwrap() / scale)
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
        let pattern = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
        let composed = pattern.matmul(&v).unwrap().permute((0, 2, 1, 3)).unwrap();
        let max = |t: Tensor| {
            t.abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(max((&fused - &composed).unwrap()) < 1e-5);
        let g1 = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (composed * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let d = (g1.get(qkv.as_tensor()).unwrap() - g2.get(qkv.as_tensor()).unwrap()).unwrap();
        assert!(max(d) < 1e-5);
    }
}
