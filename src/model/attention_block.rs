//! A whole attention layer for training as one CPU op with its own backward: the QKV
//! projection, causal attention and the output projection, from the layer's (normalised) input
//! `[rows, d_model]` and its parameters packed in one tensor, to its output `[rows, d_model]`
//! (`hook_attn_out`). In candle's autograd the same layer is about ten ops forward and twenty
//! backward, each allocating a zeroed gradient and adding into it; fused, the backward is one
//! op that recomputes what it needs and calls gemm directly, with transposes as strides.
//!
//! The packed parameters are the layer's own tensors, flattened in TL's layouts and joined:
//! `[W_Q | W_K | W_V (h × m × d each) | W_O (h × d × m) | b_Q | b_K | b_V (h × d each) | b_O (m)]`,
//! so that packing them is one copy, not a transpose per matrix in candle's graph.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::attention_core::{backward_any, forward_any, probs_len};
use super::cpu::{add_rows, column_sums, matmul, pool, slice};
use super::scratch;

/// The layer's shape.
#[derive(Debug, Clone, Copy)]
pub struct BlockShape {
    pub batch: usize,
    pub pos: usize,
    pub heads: usize,
    pub d_head: usize,
    pub d_model: usize,
    pub scale: f32,
    /// The layer's output is its input plus the attention's (`x + attn(x)`, the residual
    /// stream of an attention-only model without LayerNorm), so that the residual add and the
    /// sum of its two gradients are not separate ops in candle's graph.
    pub residual: bool,
}

/// What the forward computed and the backward needs.
struct Saved {
    qkv: Vec<f32>,
    z: Vec<f32>,
    probs: Vec<f32>,
}

impl Drop for Saved {
    fn drop(&mut self) {
        for buffer in [&mut self.qkv, &mut self.z, &mut self.probs] {
            scratch::give(std::mem::take(buffer));
        }
    }
}

/// The op: one per layer and forward pass. Its forward keeps q, k, v and z for its backward, so
/// the backward recomputes neither the QKV projection nor the attention.
pub struct AttentionBlock {
    pub shape: BlockShape,
    saved: std::sync::Mutex<Option<Saved>>,
}

impl AttentionBlock {
    pub fn new(shape: BlockShape) -> Self {
        Self {
            shape,
            saved: std::sync::Mutex::new(None),
        }
    }
}

impl BlockShape {
    fn rows(&self) -> usize {
        self.batch * self.pos
    }
    fn hd(&self) -> usize {
        self.heads * self.d_head
    }
    pub fn n_params(&self) -> usize {
        let (m, hd) = (self.d_model, self.hd());
        m * 3 * hd + 3 * hd + hd * m + m
    }

    /// The packed parameters' parts: W_Q, W_K, W_V together (TL's layouts), W_O, b_qkv, b_O.
    fn split<'a>(&self, params: &'a [f32]) -> (&'a [f32], &'a [f32], &'a [f32], &'a [f32]) {
        let (m, hd) = (self.d_model, self.hd());
        let (w_qkv, rest) = params.split_at(3 * hd * m);
        let (w_o, rest) = rest.split_at(hd * m);
        let (b_qkv, b_o) = rest.split_at(3 * hd);
        (w_qkv, w_o, b_qkv, b_o)
    }

    /// `W_Q, W_K, W_V` (`[h, m, d]` each, one after the other) as the `[m, 3hd]` matrix whose
    /// columns are every head's q, then k, then v.
    fn qkv_matrix(&self, native: &[f32]) -> Vec<f32> {
        let (m, h, d, hd) = (self.d_model, self.heads, self.d_head, self.hd());
        let mut out = vec![0f32; m * 3 * hd];
        for which in 0..3 {
            for head in 0..h {
                for i in 0..m {
                    let src = ((which * h + head) * m + i) * d;
                    let dst = i * 3 * hd + which * hd + head * d;
                    out[dst..dst + d].copy_from_slice(&native[src..src + d]);
                }
            }
        }
        out
    }

    /// The inverse of [`Self::qkv_matrix`]: `[m, 3hd]` back into the three `[h, m, d]`.
    fn qkv_native(&self, matrix: &[f32], native: &mut [f32]) {
        let (m, h, d, hd) = (self.d_model, self.heads, self.d_head, self.hd());
        for which in 0..3 {
            for head in 0..h {
                for i in 0..m {
                    let dst = ((which * h + head) * m + i) * d;
                    let src = i * 3 * hd + which * hd + head * d;
                    native[dst..dst + d].copy_from_slice(&matrix[src..src + d]);
                }
            }
        }
    }

    fn check(&self, x: &[f32], params: &[f32]) -> candle_core::Result<()> {
        if x.len() != self.rows() * self.d_model || params.len() != self.n_params() {
            candle_core::bail!(
                "attention block {self:?}: input of {} values, parameters of {}",
                x.len(),
                params.len()
            );
        }
        Ok(())
    }

    /// Buffers for q, k, v, z and the pattern, allocated by the calling thread: buffers made and
    /// freed on the same thread are reused by the allocator instead of faulted in fresh.
    fn alloc_saved(&self) -> Saved {
        let (n, hd) = (self.rows(), self.hd());
        Saved {
            qkv: scratch::take(n * 3 * hd),
            z: scratch::take(n * hd),
            probs: scratch::take(self.batch * probs_len(self.pos, self.heads)),
        }
    }

    /// Fills `saved`: qkv `[rows, 3hd]` (bias added), z `[rows, hd]` and the pattern.
    fn qkv_and_z(&self, x: &[f32], w_qkv: &[f32], b_qkv: &[f32], saved: &mut Saved) {
        let (n, m, hd) = (self.rows(), self.d_model, self.hd());
        let Saved { qkv, z, probs } = saved;
        matmul(qkv, (n, 3 * hd, m), (x, m, 1), (w_qkv, 3 * hd, 1), false);
        add_rows(qkv, b_qkv);
        let (p, h, d) = (self.pos, self.heads, self.d_head);
        let per_seq = probs_len(p, h);
        z.par_chunks_mut(p * hd)
            .zip(qkv.par_chunks(p * 3 * hd))
            .zip(probs.par_chunks_mut(per_seq))
            .for_each(|((z, qkv), probs)| forward_any(qkv, z, probs, p, h, d, self.scale));
    }
}

impl CustomOp2 for AttentionBlock {
    fn name(&self) -> &'static str {
        "attention-block"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let blk = &self.shape;
        let (x, params) = (slice(xs, xl)?, slice(ps, pl)?);
        blk.check(x, params)?;
        let (w_native, w_o, b_qkv, b_o) = blk.split(params);
        let w_qkv = blk.qkv_matrix(w_native);
        let w_qkv = w_qkv.as_slice();
        let (n, m, hd) = (blk.rows(), blk.d_model, blk.hd());
        let mut saved = blk.alloc_saved();
        let mut out = vec![0f32; n * m];
        pool().install(|| {
            blk.qkv_and_z(x, w_qkv, b_qkv, &mut saved);
            matmul(&mut out, (n, m, hd), (&saved.z, hd, 1), (w_o, m, 1), false);
            add_rows(&mut out, b_o);
            if blk.residual {
                // x + attn_out, as candle's add would round it.
                out.iter_mut().zip(x).for_each(|(o, x)| *o += x);
            }
        });
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
        Ok((CpuStorage::F32(out), Shape::from((n, m))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let saved = self.saved.lock().unwrap_or_else(|e| e.into_inner()).take();
        let op = AttentionBlockGrad {
            shape: self.shape,
            saved: std::sync::Mutex::new(saved),
        };
        let packed = x.apply_op3_no_bwd(params, &grad, &op)?;
        let n_x = self.shape.rows() * self.shape.d_model;
        let dx = packed.narrow(0, 0, n_x)?.reshape(x.shape())?;
        let dparams = packed.narrow(0, n_x, self.shape.n_params())?;
        Ok((Some(dx), Some(dparams)))
    }
}

/// `(x, params, d out)` to `[dx | d params]`, flat, with the forward's q, k, v and z when it
/// kept them (recomputed otherwise).
struct AttentionBlockGrad {
    shape: BlockShape,
    saved: std::sync::Mutex<Option<Saved>>,
}

impl CustomOp3 for AttentionBlockGrad {
    fn name(&self) -> &'static str {
        "attention-block-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let blk = &self.shape;
        let (x, params, dout) = (slice(xs, xl)?, slice(ps, pl)?, slice(gs, gl)?);
        blk.check(x, params)?;
        let (n, m, hd) = (blk.rows(), blk.d_model, blk.hd());
        if dout.len() != n * m {
            candle_core::bail!(
                "attention block: gradient of {} values, expected {}",
                dout.len(),
                n * m
            );
        }
        let (w_native, w_o, b_qkv, _) = blk.split(params);
        let w_qkv = blk.qkv_matrix(w_native);
        let w_qkv = w_qkv.as_slice();
        let saved = self.saved.lock().unwrap_or_else(|e| e.into_inner()).take();
        let saved = match saved {
            Some(s) if s.qkv.len() == n * 3 * hd && s.z.len() == n * hd => s,
            _ => {
                let mut s = blk.alloc_saved();
                pool().install(|| blk.qkv_and_z(x, w_qkv, b_qkv, &mut s));
                s
            }
        };
        // Every buffer is made here, on the calling thread, and freed here after the pool's work.
        let mut out = vec![0f32; n * m + blk.n_params()];
        let (mut dz, mut dqkv) = (scratch::take(n * hd), scratch::take(n * 3 * hd));
        pool().install(|| blk.backward(x, w_qkv, w_o, dout, &saved, &mut out, &mut dz, &mut dqkv));
        scratch::give(dz);
        scratch::give(dqkv);
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

impl BlockShape {
    /// The gradients into `out` (`[dx | d params]`), with `dz` and `dqkv` as scratch.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        x: &[f32],
        w_qkv: &[f32],
        w_o: &[f32],
        dout: &[f32],
        saved: &Saved,
        out: &mut [f32],
        dz: &mut [f32],
        dqkv: &mut [f32],
    ) {
        let blk = self;
        let (n, m, hd) = (blk.rows(), blk.d_model, blk.hd());
        let Saved { qkv, z, probs } = saved;
        let (dx, dparams) = out.split_at_mut(n * m);
        let (dw_native, rest) = dparams.split_at_mut(3 * hd * m);
        let (dw_o, rest) = rest.split_at_mut(hd * m);
        let (db_qkv, db_o) = rest.split_at_mut(3 * hd);
        // Output projection: dW_O = zᵀ·dout, db_O = Σ rows, dz = dout·W_Oᵀ.
        matmul(dw_o, (hd, m, n), (z, 1, hd), (dout, m, 1), false);
        column_sums(dout, m, db_o);
        matmul(dz, (n, hd, m), (dout, m, 1), (w_o, 1, m), false);
        // Attention.
        let (p, h, d) = (blk.pos, blk.heads, blk.d_head);
        dqkv.par_chunks_mut(p * 3 * hd)
            .zip(qkv.par_chunks(p * 3 * hd))
            .zip(dz.par_chunks(p * hd))
            .zip(probs.par_chunks(probs_len(p, h)))
            .for_each(|(((dqkv, qkv), dz), probs)| {
                backward_any(qkv, dz, probs, dqkv, p, h, d, blk.scale)
            });
        // QKV projection: dW_qkv = xᵀ·dqkv, db_qkv = Σ rows, dx = dqkv·W_qkvᵀ.
        let mut dw_qkv = scratch::take(m * 3 * hd);
        matmul(
            &mut dw_qkv,
            (m, 3 * hd, n),
            (x, 1, m),
            (dqkv, 3 * hd, 1),
            false,
        );
        blk.qkv_native(&dw_qkv, dw_native);
        scratch::give(dw_qkv);
        column_sums(dqkv, 3 * hd, db_qkv);
        matmul(
            dx,
            (n, m, 3 * hd),
            (dqkv, 3 * hd, 1),
            (w_qkv, 1, 3 * hd),
            false,
        );
        if blk.residual {
            // The residual path's gradient joins the attention's, as candle would sum them.
            dx.iter_mut().zip(dout).for_each(|(g, d)| *g += d);
        }
    }
}
