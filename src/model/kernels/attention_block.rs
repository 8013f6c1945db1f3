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
use super::cpu::{add_rows, column_sums, matmul, pool, slice, with_avx2};
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
pub(crate) struct Saved {
    qkv: Vec<f32>,
    z: Vec<f32>,
    /// The pattern, per sequence `[head, query, key rounded up]` (see `probs_len`).
    pub(crate) probs: Vec<f32>,
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

    /// The packed parameters' parts' lengths, in [`LAYER_PARAMS`]' order.
    fn part_lens(&self) -> [usize; 8] {
        let (m, hd) = (self.d_model, self.hd());
        [hd * m, hd * m, hd * m, hd * m, hd, hd, hd, m]
    }

    /// The packed parameters' parts, in TL's layouts.
    fn split<'a>(&self, mut params: &'a [f32]) -> LayerParams<'a> {
        Layer::from(self.part_lens().map(|n| {
            let (part, rest) = params.split_at(n);
            params = rest;
            part
        }))
    }

    /// The packed gradients' parts, laid out as [`Self::split`]'s.
    fn split_mut<'a>(&self, mut grads: &'a mut [f32]) -> LayerGrads<'a> {
        Layer::from(self.part_lens().map(|n| {
            let (part, rest) = std::mem::take(&mut grads).split_at_mut(n);
            grads = rest;
            part
        }))
    }

    /// The layer's weights as the kernels take them: W_Q, W_K, W_V (`[h, m, d]` each) as the
    /// `[m, 3hd]` matrix whose columns are every head's q, then k, then v, and their biases
    /// joined likewise.
    pub(crate) fn prepare<'a>(&self, p: &LayerParams<'a>) -> Prepared<'a> {
        let (m, h, d, hd) = (self.d_model, self.heads, self.d_head, self.hd());
        let mut w_qkv = vec![0f32; m * 3 * hd];
        for (which, native) in [p.w_q, p.w_k, p.w_v].into_iter().enumerate() {
            for head in 0..h {
                for i in 0..m {
                    let src = (head * m + i) * d;
                    let dst = i * 3 * hd + which * hd + head * d;
                    w_qkv[dst..dst + d].copy_from_slice(&native[src..src + d]);
                }
            }
        }
        Prepared {
            w_qkv,
            b_qkv: [p.b_q, p.b_k, p.b_v].concat(),
            w_o: p.w_o,
            b_o: p.b_o,
        }
    }

    /// W_Q, W_K and W_V's gradients from the `[m, 3hd]` one (the kernels' layout): the inverse
    /// of [`Self::prepare`]'s reordering.
    pub(crate) fn qkv_weight_grads(&self, matrix: &[f32], grads: &mut LayerGrads) {
        let natives = [&mut *grads.w_q, &mut *grads.w_k, &mut *grads.w_v];
        let (m, h, d, hd) = (self.d_model, self.heads, self.d_head, self.hd());
        for (which, native) in natives.into_iter().enumerate() {
            for head in 0..h {
                for i in 0..m {
                    let dst = (head * m + i) * d;
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
    pub(crate) fn alloc_saved(&self) -> Saved {
        let (n, hd) = (self.rows(), self.hd());
        Saved {
            qkv: scratch::take(n * 3 * hd),
            z: scratch::take(n * hd),
            probs: scratch::take(self.batch * probs_len(self.pos, self.heads)),
        }
    }

    /// Fills `saved`: qkv `[rows, 3hd]` (bias added), z `[rows, hd]` and the pattern.
    fn qkv_and_z(&self, x: &[f32], w: &Prepared, saved: &mut Saved) {
        let (n, m, hd) = (self.rows(), self.d_model, self.hd());
        matmul(
            &mut saved.qkv,
            (n, 3 * hd, m),
            (x, m, 1),
            (&w.w_qkv, 3 * hd, 1),
            false,
        );
        add_rows(&mut saved.qkv, &w.b_qkv);
        self.attend(saved);
    }

    /// z and the pattern from the q, k and v in `saved`.
    fn attend(&self, saved: &mut Saved) {
        let Saved { qkv, z, probs } = saved;
        let (p, h, d, hd) = (self.pos, self.heads, self.d_head, self.hd());
        let per_seq = probs_len(p, h);
        z.par_chunks_mut(p * hd)
            .zip(qkv.par_chunks(p * 3 * hd))
            .zip(probs.par_chunks_mut(per_seq))
            .for_each(|((z, qkv), probs)| forward_any(qkv, z, probs, p, h, d, self.scale));
    }

    /// The output projection of `saved`'s z, plus `x` for a residual layer.
    fn project_out(&self, x: &[f32], w: &Prepared, saved: &Saved, out: &mut [f32]) {
        let (n, m, hd) = (self.rows(), self.d_model, self.hd());
        matmul(out, (n, m, hd), (&saved.z, hd, 1), (w.w_o, m, 1), false);
        add_rows(out, w.b_o);
        if self.residual {
            // x + attn_out, as candle's add would round it.
            with_avx2(|| out.iter_mut().zip(x).for_each(|(o, x)| *o += x));
        }
    }

    /// The layer's output `[rows, d_model]` into `out`, keeping in `saved` what the backward
    /// needs. Runs on the fused ops' pool.
    pub(crate) fn forward(&self, x: &[f32], w: &Prepared, saved: &mut Saved, out: &mut [f32]) {
        pool().install(|| {
            self.qkv_and_z(x, w, saved);
            self.project_out(x, w, saved, out);
        });
    }

    /// [`Self::forward`] with q, k and v (bias included) already computed by `fill_qkv` into
    /// the `[rows, 3hd]` buffer it is given.
    pub(crate) fn forward_from_qkv(
        &self,
        x: &[f32],
        w: &Prepared,
        saved: &mut Saved,
        out: &mut [f32],
        fill_qkv: impl FnOnce(&mut [f32]),
    ) {
        fill_qkv(&mut saved.qkv);
        pool().install(|| {
            self.attend(saved);
            self.project_out(x, w, saved, out);
        });
    }
}

/// A layer's parameters' names in TL's `blocks.{l}.attn.*`, in the order they are packed.
pub(crate) const LAYER_PARAMS: [&str; 8] = ["W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O"];

/// One value per parameter of a layer: its host values (`LayerParams`) or gradients
/// (`LayerGrads`), in TL's layouts (`W_Q` `[h, m, d]`, …, `b_O` `[m]`).
pub(crate) struct Layer<T> {
    pub w_q: T,
    pub w_k: T,
    pub w_v: T,
    pub w_o: T,
    pub b_q: T,
    pub b_k: T,
    pub b_v: T,
    pub b_o: T,
}

impl<T> From<[T; 8]> for Layer<T> {
    /// From values in [`LAYER_PARAMS`]' order.
    fn from([w_q, w_k, w_v, w_o, b_q, b_k, b_v, b_o]: [T; 8]) -> Self {
        Self {
            w_q,
            w_k,
            w_v,
            w_o,
            b_q,
            b_k,
            b_v,
            b_o,
        }
    }
}

pub(crate) type LayerParams<'a> = Layer<&'a [f32]>;
pub(crate) type LayerGrads<'a> = Layer<&'a mut [f32]>;

/// A layer's weights as the kernels read them ([`BlockShape::prepare`]).
pub(crate) struct Prepared<'a> {
    /// W_Q, W_K and W_V as `[m, 3hd]`.
    pub w_qkv: Vec<f32>,
    /// b_Q, b_K and b_V joined, `[3hd]`.
    pub b_qkv: Vec<f32>,
    w_o: &'a [f32],
    b_o: &'a [f32],
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
        let weights = blk.prepare(&blk.split(params));
        let (n, m) = (blk.rows(), blk.d_model);
        let mut saved = blk.alloc_saved();
        let mut out = vec![0f32; n * m];
        blk.forward(x, &weights, &mut saved, &mut out);
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
        let weights = blk.prepare(&blk.split(params));
        let saved = self.saved.lock().unwrap_or_else(|e| e.into_inner()).take();
        let saved = match saved {
            Some(s) if s.qkv.len() == n * 3 * hd && s.z.len() == n * hd => s,
            _ => {
                let mut s = blk.alloc_saved();
                pool().install(|| blk.qkv_and_z(x, &weights, &mut s));
                s
            }
        };
        let mut out = vec![0f32; n * m + blk.n_params()];
        let (dx, dparams) = out.split_at_mut(n * m);
        blk.backward(x, &weights, dout, &saved, dx, blk.split_mut(dparams));
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

impl BlockShape {
    /// The gradients of the input (`dx`) and of the parameters, from the output's (`dout`).
    /// Runs on the fused ops' pool; its scratch is taken and given back on the calling thread.
    pub(crate) fn backward(
        &self,
        x: &[f32],
        w: &Prepared,
        dout: &[f32],
        saved: &Saved,
        dx: &mut [f32],
        mut grads: LayerGrads,
    ) {
        let (n, m, hd) = (self.rows(), self.d_model, self.hd());
        let mut dqkv = scratch::take(n * 3 * hd);
        let mut dw_qkv = scratch::take(m * 3 * hd);
        self.backward_from_qkv(w, dout, saved, &mut grads, &mut dqkv);
        pool().install(|| {
            // QKV projection: dW_qkv = xᵀ·dqkv, dx = dqkv·W_qkvᵀ.
            matmul(
                &mut dw_qkv,
                (m, 3 * hd, n),
                (x, 1, m),
                (&dqkv, 3 * hd, 1),
                false,
            );
            self.qkv_weight_grads(&dw_qkv, &mut grads);
            let w_qkv = (&w.w_qkv[..], 1, 3 * hd);
            matmul(dx, (n, m, 3 * hd), (&dqkv, 3 * hd, 1), w_qkv, false);
            if self.residual {
                // The residual path's gradient joins the attention's, as candle would sum them.
                with_avx2(|| dx.iter_mut().zip(dout).for_each(|(g, d)| *g += d));
            }
        });
        for buffer in [dqkv, dw_qkv] {
            scratch::give(buffer);
        }
    }

    /// The backward down to q, k and v: the gradients of W_O, b_O and the QKV biases into
    /// `grads`, and of q, k and v into `dqkv`. [`Self::backward`] goes on through the QKV
    /// projection; a layer whose q, k and v came from tables (`forward_from_qkv`) goes back
    /// through those instead. Runs on the fused ops' pool.
    pub(crate) fn backward_from_qkv(
        &self,
        w: &Prepared,
        dout: &[f32],
        saved: &Saved,
        grads: &mut LayerGrads,
        dqkv: &mut [f32],
    ) {
        let (n, m, hd) = (self.rows(), self.d_model, self.hd());
        let mut dz = scratch::take(n * hd);
        pool().install(|| {
            let Saved { qkv, z, probs } = saved;
            // Output projection: dW_O = zᵀ·dout, db_O = Σ rows, dz = dout·W_Oᵀ.
            matmul(grads.w_o, (hd, m, n), (z, 1, hd), (dout, m, 1), false);
            column_sums(dout, m, grads.b_o);
            matmul(&mut dz, (n, hd, m), (dout, m, 1), (w.w_o, 1, m), false);
            // Attention.
            let (p, h, d) = (self.pos, self.heads, self.d_head);
            dqkv.par_chunks_mut(p * 3 * hd)
                .zip(qkv.par_chunks(p * 3 * hd))
                .zip(dz.par_chunks(p * hd))
                .zip(probs.par_chunks(probs_len(p, h)))
                .for_each(|(((dqkv, qkv), dz), probs)| {
                    backward_any(qkv, dz, probs, dqkv, p, h, d, self.scale)
                });
            // The QKV biases: dqkv's column sums, split into b_Q, b_K and b_V.
            let mut db_qkv = vec![0f32; 3 * hd];
            column_sums(dqkv, 3 * hd, &mut db_qkv);
            for (which, out) in [&mut *grads.b_q, &mut *grads.b_k, &mut *grads.b_v]
                .into_iter()
                .enumerate()
            {
                out.copy_from_slice(&db_qkv[which * hd..(which + 1) * hd]);
            }
        });
        scratch::give(dz);
    }
}
