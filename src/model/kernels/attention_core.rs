//! Causal attention for training, fused into one CPU op with its own backward: from the
//! projected queries, keys and values `[batch, pos, 3, head, d_head]` (as one matmul writes them)
//! to `z` `[batch, pos, head, d_head]`, without materialising the `[batch, head, query, key]`
//! scores and pattern in the graph: each head's q, k and v are read where they lie, with only
//! its small kᵀ and vᵀ copied out. Composed from candle's ops the same step is a dozen ops
//! forward and twice that backward, each allocating and accumulating a gradient; fused it is one
//! pass each way, parallel over the batch.
//!
//! The arithmetic is exactly the definition: `s = q·k / scale` for keys up to the query,
//! `p = softmax(s)`, `z = Σ p v`; backward takes `p` from the forward where the attention layer
//! kept it, and recomputes it otherwise. Tests prove it
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

/// `a · b + c`, fused where the CPU has FMA (the `FUSED` instantiation only runs there).
#[inline(always)]
fn madd<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED { a.mul_add(b, c) } else { a * b + c }
}

/// `out[..width] = Σ_j coefs[j] · b[j·ldb .. j·ldb + width]`: one output row of a small matrix
/// product, eight columns at a time summed in registers (`[f32; 8]` is one AVX register), so a
/// call is a few vector FMAs per coefficient and no pass over memory; the last `width % 8`
/// columns go one by one. `b`'s rows may lie strided in a wider buffer (one head's rows in the
/// interleaved q, k and v), so nothing is copied out first.
#[inline(always)]
fn row_product<const FUSED: bool>(
    coefs: &[f32],
    b: &[f32],
    ldb: usize,
    width: usize,
    out: &mut [f32],
) {
    product::<FUSED>(coefs.len(), |j| coefs[j], b, ldb, width, out)
}

/// [`row_product`] with the `n` coefficients given by `coef(j)` (a column of a matrix, say).
#[inline(always)]
fn product<const FUSED: bool>(
    n: usize,
    coef: impl Fn(usize) -> f32,
    b: &[f32],
    ldb: usize,
    width: usize,
    out: &mut [f32],
) {
    let coef = &coef;
    let rows = |col: usize, len: usize| {
        (0..n).map(move |j| (coef(j), &b[j * ldb + col..j * ldb + col + len]))
    };
    let mut col = 0;
    // Two blocks at a time: two independent FMA chains hide each other's latency.
    while col + 2 * LANES <= width {
        let (mut a0, mut a1) = ([0f32; LANES], [0f32; LANES]);
        for (c, r) in rows(col, 2 * LANES) {
            for l in 0..LANES {
                a0[l] = madd::<FUSED>(c, r[l], a0[l]);
                a1[l] = madd::<FUSED>(c, r[LANES + l], a1[l]);
            }
        }
        out[col..col + LANES].copy_from_slice(&a0);
        out[col + LANES..col + 2 * LANES].copy_from_slice(&a1);
        col += 2 * LANES;
    }
    if col + LANES <= width {
        let mut acc = [0f32; LANES];
        for (c, r) in rows(col, LANES) {
            for l in 0..LANES {
                acc[l] = madd::<FUSED>(c, r[l], acc[l]);
            }
        }
        out[col..col + LANES].copy_from_slice(&acc);
        col += LANES;
    }
    if col < width {
        let n = width - col;
        let mut acc = [0f32; LANES];
        for (c, r) in rows(col, n) {
            for l in 0..n {
                acc[l] = madd::<FUSED>(c, r[l], acc[l]);
            }
        }
        out[col..width].copy_from_slice(&acc[..n]);
    }
}

const LANES: usize = 8;

/// `e^x` to within 2 ulp (Cephes' `expf`: `x = n·ln 2 + r`, a degree-6 polynomial in `r`, and
/// `2^n` from the exponent bits), branch-free so that a loop of it is vector code. libm's `expf`
/// is a call per element, which with its spills dominated the fused forward (figures: benches/MEASUREMENTS.md).
/// Inputs are clamped to [-87.3, 88], where the result is a normal float (the softmax takes
/// `x ≤ 0`; `e^x` of a very negative score is ~1e-38, not 0, which no softmax can tell apart).
#[inline(always)]
#[allow(clippy::manual_clamp)] // `max` drops a NaN, which the conversion below relies on
fn exp<const FUSED: bool>(x: f32) -> f32 {
    let x = x.max(-87.336_54).min(88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    // r = x − n·ln 2, with ln 2 split in two so that n·C1 is exact.
    let r = madd::<FUSED>(n, 2.121_944_4e-4, madd::<FUSED>(n, -0.693_359_4, x));
    let mut y = 1.987_569_1e-4;
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        y = madd::<FUSED>(y, r, c);
    }
    let y = madd::<FUSED>(y, r * r, r) + 1.0;
    // SAFETY: the clamp keeps n finite (`max` drops a NaN) and within ±127, so the conversion
    // is exact; the checked `as` would not vectorise.
    let n = unsafe { n.to_int_unchecked::<i32>() };
    y * f32::from_bits(((n + 127) as u32) << 23)
}

fn round_up(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// One head of one sequence: the transposes `kᵀ` and `vᵀ` `[d, pp]` (`pp` rounds p up to whole
/// vectors; the padding stays zero, so a product over padded columns adds nothing) and the
/// pattern. q, k and v themselves are read where they lie, in the interleaved `[p, 3, h, d]` rows.
struct Head {
    p: usize,
    d: usize,
    h: usize,
    pp: usize,
    kt: Vec<f32>,
    vt: Vec<f32>,
    /// The pattern, `[p, pp]` (row q holds keys `..=q`; what follows is scratch).
    probs: Vec<f32>,
}

impl Head {
    fn new(p: usize, h: usize, d: usize) -> Self {
        let pp = round_up(p);
        Self {
            p,
            d,
            h,
            pp,
            kt: vec![0.0; d * pp],
            vt: vec![0.0; d * pp],
            probs: vec![0.0; p * pp],
        }
    }

    /// Where row `t` of q (`which` 0), k (1) or v (2) of head `head` starts in a sequence's
    /// `[p, 3, h, d]` values; consecutive rows are `3·h·d` apart.
    #[inline(always)]
    fn row(&self, t: usize, which: usize, head: usize) -> usize {
        ((t * 3 + which) * self.h + head) * self.d
    }

    /// Head `head`'s kᵀ (for the pattern) and vᵀ (for the backward), as asked.
    #[inline(always)]
    fn load_transposes(&mut self, qkv: &[f32], head: usize, with_kt: bool, with_vt: bool) {
        let (d, pp) = (self.d, self.pp);
        for t in 0..self.p {
            if with_kt {
                let k = &qkv[self.row(t, 1, head)..][..d];
                for (i, &x) in k.iter().enumerate() {
                    self.kt[i * pp + t] = x;
                }
            }
            if with_vt {
                let v = &qkv[self.row(t, 2, head)..][..d];
                for (i, &x) in v.iter().enumerate() {
                    self.vt[i * pp + t] = x;
                }
            }
        }
    }

    /// Head `head`'s pattern, from its queries and the loaded kᵀ.
    #[inline(always)]
    fn compute_pattern<const FUSED: bool>(&mut self, qkv: &[f32], head: usize, scale: f32) {
        let (p, d, pp) = (self.p, self.d, self.pp);
        for q in 0..p {
            let query = &qkv[self.row(q, 0, head)..][..d];
            let row = &mut self.probs[q * pp..(q + 1) * pp];
            // Scores of query q: Σ_i q[i] · kᵀ[i][..=q].
            row_product::<FUSED>(query, &self.kt, pp, round_up(q + 1), row);
            let mut max = f32::NEG_INFINITY;
            for o in row[..=q].iter_mut() {
                *o /= scale;
                max = max.max(*o);
            }
            // exp over whole vectors (the keys past q are scratch), then the sum in order.
            for o in row[..round_up(q + 1)].iter_mut() {
                *o = exp::<FUSED>(*o - max);
            }
            let mut sum = 0f32;
            for o in row[..=q].iter() {
                sum += *o;
            }
            let r = 1.0 / sum;
            for o in row[..=q].iter_mut() {
                *o *= r;
            }
        }
    }
}

/// z for one sequence: `qkv` `[p, 3, h, d]` to `z` `[p, h, d]`.
#[inline(always)]
fn forward_sequence<const FUSED: bool>(
    qkv: &[f32],
    z: &mut [f32],
    probs_out: &mut [f32],
    p: usize,
    h: usize,
    d: usize,
    scale: f32,
) {
    let mut hd = Head::new(p, h, d);
    let (pp, ld) = (hd.pp, 3 * h * d);
    for head in 0..h {
        hd.load_transposes(qkv, head, true, false);
        hd.compute_pattern::<FUSED>(qkv, head, scale);
        if !probs_out.is_empty() {
            let n = p * pp;
            probs_out[head * n..(head + 1) * n].copy_from_slice(&hd.probs);
        }
        let values = &qkv[hd.row(0, 2, head)..];
        for q in 0..p {
            // z[q] = Σ_k p[q][k] · v[k], written where it belongs.
            let out = &mut z[(q * h + head) * d..(q * h + head + 1) * d];
            row_product::<FUSED>(&hd.probs[q * pp..q * pp + q + 1], values, ld, d, out);
        }
    }
}

/// d qkv for one sequence from its `qkv` and `dz`; every value of `dqkv` is written.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_sequence<const FUSED: bool>(
    qkv: &[f32],
    dz: &[f32],
    probs_in: &[f32],
    dqkv: &mut [f32],
    p: usize,
    h: usize,
    d: usize,
    scale: f32,
) {
    let mut hd = Head::new(p, h, d);
    let (pp, ld) = (hd.pp, 3 * h * d);
    let mut ds = vec![0f32; p * pp];
    for head in 0..h {
        if probs_in.is_empty() {
            hd.load_transposes(qkv, head, true, true);
            hd.compute_pattern::<FUSED>(qkv, head, scale);
        } else {
            hd.load_transposes(qkv, head, false, true);
            let n = p * pp;
            hd.probs
                .copy_from_slice(&probs_in[head * n..(head + 1) * n]);
        }
        let dz_row = |t: usize| &dz[(t * h + head) * d..(t * h + head + 1) * d];
        for q in 0..p {
            // dP[q][k] = dz[q] · v[k]; dS = p (dP − Σ p dP) / scale.
            let row = &mut ds[q * pp..(q + 1) * pp];
            row_product::<FUSED>(dz_row(q), &hd.vt, pp, round_up(q + 1), row);
            let probs = &hd.probs[q * pp..q * pp + q + 1];
            let mean: f32 = probs.iter().zip(&row[..=q]).map(|(a, b)| a * b).sum();
            for (o, &w) in row[..=q].iter_mut().zip(probs) {
                *o = w * (*o - mean) / scale;
            }
        }
        // dq[q] = Σ_{k ≤ q} dS[q][k] · k[k].
        let keys = &qkv[hd.row(0, 1, head)..];
        for q in 0..p {
            let out = &mut dqkv[hd.row(q, 0, head)..][..d];
            row_product::<FUSED>(&ds[q * pp..q * pp + q + 1], keys, ld, d, out);
        }
        // dk[k] = Σ_{q ≥ k} dS[q][k] · q[q]; dv[k] = Σ_{q ≥ k} p[q][k] · dz[q]: products with
        // columns of dS and P as coefficients, so nothing is transposed.
        for k in 0..p {
            let (ds, probs) = (&ds, &hd.probs);
            let out = &mut dqkv[hd.row(k, 1, head)..][..d];
            let queries = &qkv[hd.row(k, 0, head)..];
            product::<FUSED>(p - k, |j| ds[(k + j) * pp + k], queries, ld, d, out);
            let out = &mut dqkv[hd.row(k, 2, head)..][..d];
            let grads = &dz[(k * h + head) * d..];
            product::<FUSED>(p - k, |j| probs[(k + j) * pp + k], grads, h * d, d, out);
        }
    }
}

/// The same kernels compiled for AVX2 with FMA, chosen at run time where the CPU has them.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn forward(
        qkv: &[f32],
        z: &mut [f32],
        probs: &mut [f32],
        p: usize,
        h: usize,
        d: usize,
        scale: f32,
    ) {
        super::forward_sequence::<true>(qkv, z, probs, p, h, d, scale)
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn backward(
        qkv: &[f32],
        dz: &[f32],
        probs: &[f32],
        dqkv: &mut [f32],
        p: usize,
        h: usize,
        d: usize,
        scale: f32,
    ) {
        super::backward_sequence::<true>(qkv, dz, probs, dqkv, p, h, d, scale)
    }

    pub fn available() -> bool {
        super::super::cpu::has_avx2_fma()
    }
}

/// How far apart the rows of a saved pattern lie: `p` rounded up to whole vectors.
pub(crate) fn key_stride(p: usize) -> usize {
    round_up(p)
}

/// Floats of one sequence's saved pattern: `h` heads of `[p, round_up(p)]`.
pub(crate) fn probs_len(p: usize, h: usize) -> usize {
    h * p * round_up(p)
}

/// z for one sequence; writes the pattern into `probs` unless it is empty.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_any(
    qkv: &[f32],
    z: &mut [f32],
    probs: &mut [f32],
    p: usize,
    h: usize,
    d: usize,
    scale: f32,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { avx2::forward(qkv, z, probs, p, h, d, scale) };
    }
    forward_sequence::<false>(qkv, z, probs, p, h, d, scale)
}

/// d qkv for one sequence; takes the forward's pattern from `probs` unless it is empty.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_any(
    qkv: &[f32],
    dz: &[f32],
    probs: &[f32],
    dqkv: &mut [f32],
    p: usize,
    h: usize,
    d: usize,
    scale: f32,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { avx2::backward(qkv, dz, probs, dqkv, p, h, d, scale) };
    }
    backward_sequence::<false>(qkv, dz, probs, dqkv, p, h, d, scale)
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
            .for_each(|(z, qkv)| forward_any(qkv, z, &mut [], p, h, d, self.scale));
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
            .for_each(|((dqkv, qkv), dz)| backward_any(qkv, dz, &[], dqkv, p, h, d, self.scale));
        Ok((CpuStorage::F32(dqkv), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests;
