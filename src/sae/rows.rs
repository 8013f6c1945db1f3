//! The per-input work of an SAE step ([`SaeWeights::loss_and_grads`]): each input's firing
//! latents (found by the fused AVX-512 encoder, or from the batch's pre-activations), its
//! reconstruction from their decoder rows, and the gradient updates of those rows only, summed
//! per core.

use super::model::{Architecture, SaeWeights};

/// What every row of a batch shares in [`SaeWeights::loss_and_grads`].
pub(super) struct RowContext<'a> {
    pub(super) weights: &'a SaeWeights,
    /// `d_in` rounded up to whole vectors of 8, and W_dec's rows and b_dec padded to it with
    /// zeros: each row update is then a few whole vector operations.
    pub(super) dp: usize,
    pub(super) w_dec_p: Vec<f32>,
    pub(super) b_dec_p: Vec<f32>,
    pub(super) architecture: Architecture,
    pub(super) dead: &'a [bool],
    pub(super) dead_count: usize,
    pub(super) norms: Vec<f32>,
    pub(super) scale: f32,
}

/// One core's sums over its rows.
pub(super) struct Partial {
    pub(super) mse: f64,
    pub(super) active: usize,
    pub(super) l1: f64,
    pub(super) weighted_l1: f64,
    pub(super) aux: f64,
    pub(super) fired: Vec<u32>,
    pub(super) f_sums: Vec<f32>,
    /// `[d_sae, 2·dp]`: each latent's `∂W_dec` row then its `∂W_encᵀ` row, side by side so
    /// that one active latent's updates touch one stretch of memory (rows padded as
    /// [`RowContext`]'s); `∂b_enc`, and `Σ_b ∂x̂` for `∂b_dec`.
    pub(super) rows: Vec<f32>,
    pub(super) b_enc: Vec<f32>,
    pub(super) b_dec: Vec<f32>,
}

impl Partial {
    pub(super) fn new(d: usize, s: usize) -> Self {
        Self {
            mse: 0.0,
            active: 0,
            l1: 0.0,
            weighted_l1: 0.0,
            aux: 0.0,
            fired: vec![0; s],
            f_sums: vec![0.0; s],
            rows: vec![0.0; s * 2 * d],
            b_enc: vec![0.0; s],
            b_dec: vec![0.0; d],
        }
    }

    pub(super) fn add(&mut self, o: &Partial) {
        self.mse += o.mse;
        self.active += o.active;
        self.l1 += o.l1;
        self.weighted_l1 += o.weighted_l1;
        self.aux += o.aux;
        let add = |a: &mut [f32], b: &[f32]| a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        self.fired
            .iter_mut()
            .zip(&o.fired)
            .for_each(|(a, b)| *a += b);
        add(&mut self.f_sums, &o.f_sums);
        add(&mut self.rows, &o.rows);
        add(&mut self.b_enc, &o.b_enc);
        add(&mut self.b_dec, &o.b_dec);
    }
}

/// `y += a x` over whole vectors of 8 (both of a length that is a multiple of 8).
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    let (y, _) = y.as_chunks_mut::<8>();
    let (x, _) = x.as_chunks::<8>();
    for (y, x) in y.iter_mut().zip(x) {
        *y = std::array::from_fn(|l| y[l] + a * x[l]);
    }
}

/// `a · b` over whole vectors of 8, in eight partial sums so that it vectorises.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a, _) = a.as_chunks::<8>();
    let (b, _) = b.as_chunks::<8>();
    for (a, b) in a.iter().zip(b) {
        lanes = std::array::from_fn(|l| lanes[l] + a[l] * b[l]);
    }
    // A tree of three additions, not a chain of seven (each waiting on the last).
    let four: [f32; 4] = std::array::from_fn(|l| lanes[l] + lanes[l + 4]);
    (four[0] + four[2]) + (four[1] + four[3])
}

impl RowContext<'_> {
    /// The sums over rows `x [·, d_in]` with their pre-activations `pre [·, d_sae]`: compiled
    /// for AVX2 and FMA where the CPU has them (the row updates then run eight floats at a time).
    ///
    /// With no `pre`, a standard SAE's encoder runs inside the rows' work ([`fused_width`]
    /// says where it can).
    pub(super) fn rows(&self, x: &[f32], pre: &[f32]) -> Partial {
        #[cfg(target_arch = "x86_64")]
        if pre.is_empty() {
            assert!(has_avx512f() && Some(self.dp) == fused_width(self.weights.d_in));
            // SAFETY: the CPU has AVX-512F, and rows are padded to `16 · V` floats.
            return unsafe {
                match self.dp / 16 {
                    1 => self.rows_fused::<1>(x),
                    2 => self.rows_fused::<2>(x),
                    3 => self.rows_fused::<3>(x),
                    _ => self.rows_fused::<4>(x),
                }
            };
        }
        if crate::model::kernels::cpu::has_avx2_fma() {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2(c: &RowContext, x: &[f32], pre: &[f32]) -> Partial {
                c.rows_by_width(x, pre)
            }
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return unsafe { avx2(self, x, pre) };
        }
        self.rows_by_width(x, pre)
    }

    #[inline(always)]
    fn rows_by_width(&self, x: &[f32], pre: &[f32]) -> Partial {
        match self.dp / 8 {
            1 => self.rows_plain::<1>(x, pre),
            2 => self.rows_plain::<2>(x, pre),
            3 => self.rows_plain::<3>(x, pre),
            4 => self.rows_plain::<4>(x, pre),
            _ => self.rows_plain::<0>(x, pre),
        }
    }

    /// The rows' work with rows of `8 · V` floats (`V = 0`: `self.dp`, whatever it is): a
    /// width known when compiling makes every row update a few unrolled vector operations.
    #[inline(always)]
    fn rows_plain<const V: usize>(&self, x: &[f32], pre: &[f32]) -> Partial {
        let w = self.weights;
        let dp = if V > 0 { 8 * V } else { self.dp };
        debug_assert_eq!(dp, self.dp);
        let (d, s) = (w.d_in, w.d_sae);
        let mut p = Partial::new(dp, s);
        // Room for every latent, written over row by row: `live` of them are the row's.
        let mut slots = vec![(0usize, 0f32); s];
        let mut order = Vec::with_capacity(s);
        let mut aux = Vec::new();
        let padded = || vec![0f32; dp];
        let (mut xc, mut x_hat, mut dx) = (padded(), padded(), padded());
        let (mut recon, mut d_recon) = (padded(), padded());
        let w_dec = |i: usize| &self.w_dec_p[i * dp..(i + 1) * dp];
        let k_aux = (d / 2).max(1);
        let rows = x.len() / d;
        let all_x = x;
        for r in 0..rows {
            let x = &all_x[r * d..(r + 1) * d];
            for j in 0..d {
                xc[j] = x[j] - w.b_dec[j];
            }
            let pre = &pre[r * s..(r + 1) * s];
            // The active latents (i, f_i).
            let live = match self.architecture {
                Architecture::Standard { .. } => {
                    // Branch-free: whether a latent fires is unpredictable.
                    let mut n = 0;
                    for (i, &v) in pre.iter().enumerate() {
                        slots[n] = (i, v);
                        n += usize::from(v > 0.0);
                    }
                    n
                }
                Architecture::TopK { k, .. } => {
                    top(pre, k.min(s), |i| i < s, &mut order);
                    let mut n = 0;
                    for &i in order.iter().filter(|&&i| pre[i] > 0.0) {
                        slots[n] = (i, pre[i]);
                        n += 1;
                    }
                    n
                }
            };
            let active = &slots[..live];
            // x̂ = b_dec + Σ f_i W_dec,i, and ∂x̂ = 2 (x̂ − x) / B.
            x_hat.copy_from_slice(&self.b_dec_p);
            for &(i, v) in active {
                axpy(&mut x_hat, v, w_dec(i));
            }
            // Each row's squares summed in f32, the rows' sums in f64.
            let mut squares = 0f32;
            for j in 0..d {
                let e = x_hat[j] - x[j];
                squares += e * e;
                dx[j] = 2.0 * e * self.scale;
                p.b_dec[j] += dx[j];
            }
            p.mse += squares as f64;
            let l1_term = match self.architecture {
                Architecture::Standard { l1_coefficient } => l1_coefficient as f32 * self.scale,
                Architecture::TopK { .. } => 0.0,
            };
            let (mut row_l1, mut row_weighted_l1) = (0f32, 0f32);
            for &(i, v) in active {
                let d_pre = dot(&dx, w_dec(i)) + l1_term * self.norms[i];
                let (g_dec, g_enc) = p.rows[i * 2 * dp..(i + 1) * 2 * dp].split_at_mut(dp);
                axpy(g_dec, v, &dx);
                p.b_enc[i] += d_pre;
                axpy(g_enc, d_pre, &xc);
                p.fired[i] += 1;
                p.f_sums[i] += v;
                // The row's sums in f32, added to the batch's f64 sums once per row.
                row_l1 += v;
                row_weighted_l1 += v * self.norms[i];
            }
            p.l1 += row_l1 as f64;
            p.weighted_l1 += row_weighted_l1 as f64;
            p.active += live;
            // AuxK: the largest pre-activations of dead latents reconstruct the residual.
            if let Architecture::TopK {
                aux_coefficient, ..
            } = self.architecture
                && self.dead_count > 0
                && aux_coefficient > 0.0
            {
                let weight =
                    aux_coefficient as f32 * (self.dead_count as f32 / k_aux as f32).min(1.0);
                top(
                    pre,
                    k_aux.min(self.dead_count),
                    |i| self.dead[i],
                    &mut order,
                );
                aux.clear();
                aux.extend(order.iter().map(|&i| (i, pre[i])));
                recon.iter_mut().for_each(|r| *r = 0.0);
                for &(i, a) in &aux {
                    axpy(&mut recon, a, w_dec(i));
                }
                for j in 0..d {
                    let diff = recon[j] - (x[j] - x_hat[j]);
                    p.aux += (weight * diff * diff) as f64;
                    d_recon[j] = 2.0 * weight * diff * self.scale;
                }
                for &(i, a) in &aux {
                    let d_pre = dot(&d_recon, w_dec(i));
                    let (g_dec, g_enc) = p.rows[i * 2 * dp..(i + 1) * 2 * dp].split_at_mut(dp);
                    axpy(g_dec, a, &d_recon);
                    p.b_enc[i] += d_pre;
                    axpy(g_enc, d_pre, &xc);
                }
            }
        }
        p
    }
}

/// Inputs the fused encoder takes at once: each load of W_enc serves all of them.
const GROUP_ROWS: usize = 4;

/// The padded row width the fused AVX-512 path uses for inputs of `d_in` floats: whole vectors
/// of 16, up to four of them (wider inputs take the gemm path, whose encoder is as fast there).
pub(super) fn fused_width(d_in: usize) -> Option<usize> {
    (1..=64).contains(&d_in).then(|| d_in.next_multiple_of(16))
}

#[cfg(target_arch = "x86_64")]
impl RowContext<'_> {
    /// A standard SAE's rows with its encoder fused in, on AVX-512 with rows of `16 · V` floats.
    /// Each input's centred value, reconstruction and `∂x̂` live in registers; its firing
    /// latents come from [`encode_rows_avx512`] as two flat lists (indices, values).
    // `v` indexes registers and, times 16, memory: a range reads best.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn rows_fused<const V: usize>(&self, x: &[f32]) -> Partial {
        use std::arch::x86_64::*;
        let w = self.weights;
        let (d, s, dp) = (w.d_in, w.d_sae, self.dp);
        assert!(dp == 16 * V && d <= dp && d > dp - 16);
        assert!(self.w_dec_p.len() == s * dp && self.b_dec_p.len() == dp);
        let Architecture::Standard { l1_coefficient } = self.architecture else {
            unreachable!("only a standard SAE's encoder is fused")
        };
        let l1_term = l1_coefficient as f32 * self.scale;
        let rows = x.len() / d;
        let mut p = Partial::new(dp, s);
        assert!(p.rows.len() == s * 2 * dp);
        // Each input's slots, with room for a whole vector past its last latent.
        let stride = s + 16;
        let mut ids = vec![0u32; GROUP_ROWS * stride];
        let mut values = vec![0f32; GROUP_ROWS * stride];
        let mut live = [0usize; GROUP_ROWS];
        let mut xc_group = vec![0f32; GROUP_ROWS * d];
        let lanes: [__mmask16; V] = std::array::from_fn(|v| {
            let left = d - 16 * v;
            if left >= 16 {
                0xffff
            } else {
                ((1u32 << left) - 1) as u16
            }
        });
        let zero = _mm512_setzero_ps();
        let two_scale = _mm512_set1_ps(2.0 * self.scale);
        // SAFETY (every load and store here and in the block below): b_dec_p holds `dp` floats; each input row is
        // read only through `lanes`, which stop at `d`; a latent `i < s` (the encoder's
        // indices are) has `dp` floats of W_dec at `i · dp` and `2 · dp` of gradient rows at
        // `i · 2 · dp`.
        let b_dec: [__m512; V] =
            std::array::from_fn(|v| unsafe { _mm512_loadu_ps(self.b_dec_p.as_ptr().add(16 * v)) });
        let mut b_dec_sum = [zero; V];
        // SAFETY: as above; p.b_dec holds `dp` floats too.
        unsafe {
            let w_dec = self.w_dec_p.as_ptr();
            let grads = p.rows.as_mut_ptr();
            for start in (0..rows).step_by(GROUP_ROWS) {
                let n = GROUP_ROWS.min(rows - start);
                let group = &x[start * d..(start + n) * d];
                // The CPU has AVX-512F; the buffers hold a group's inputs and slots.
                encode_rows_avx512(group, w, &mut xc_group, &mut ids, &mut values, &mut live);
                for (r, x) in group.chunks_exact(d).enumerate() {
                    let xv: [__m512; V] = std::array::from_fn(|v| {
                        _mm512_maskz_loadu_ps(lanes[v], x.as_ptr().add(16 * v))
                    });
                    let xc: [__m512; V] = std::array::from_fn(|v| _mm512_sub_ps(xv[v], b_dec[v]));
                    let ids = &ids[r * stride..r * stride + live[r]];
                    let values = &values[r * stride..r * stride + live[r]];
                    // x̂ = b_dec + Σ f_i W_dec,i, in two sums so that the FMAs overlap.
                    let (mut even, mut odd) = ([zero; V], [zero; V]);
                    let mut pairs = ids.chunks_exact(2).zip(values.chunks_exact(2));
                    for (i, f) in &mut pairs {
                        let (a, b) = (w_dec.add(i[0] as usize * dp), w_dec.add(i[1] as usize * dp));
                        let (fa, fb) = (_mm512_set1_ps(f[0]), _mm512_set1_ps(f[1]));
                        for v in 0..V {
                            even[v] = _mm512_fmadd_ps(fa, _mm512_loadu_ps(a.add(16 * v)), even[v]);
                            odd[v] = _mm512_fmadd_ps(fb, _mm512_loadu_ps(b.add(16 * v)), odd[v]);
                        }
                    }
                    if ids.len() % 2 == 1 {
                        let (i, f) = (ids[ids.len() - 1], values[ids.len() - 1]);
                        let a = w_dec.add(i as usize * dp);
                        for v in 0..V {
                            even[v] = _mm512_fmadd_ps(
                                _mm512_set1_ps(f),
                                _mm512_loadu_ps(a.add(16 * v)),
                                even[v],
                            );
                        }
                    }
                    // The error (zero in the padding), its squares, and ∂x̂ = 2 (x̂ − x) / B.
                    let error: [__m512; V] = std::array::from_fn(|v| {
                        _mm512_sub_ps(
                            _mm512_add_ps(_mm512_add_ps(b_dec[v], even[v]), odd[v]),
                            xv[v],
                        )
                    });
                    let mut squares = _mm512_mul_ps(error[0], error[0]);
                    for e in &error[1..] {
                        squares = _mm512_fmadd_ps(*e, *e, squares);
                    }
                    p.mse += _mm512_reduce_add_ps(squares) as f64;
                    let dx: [__m512; V] =
                        std::array::from_fn(|v| _mm512_mul_ps(error[v], two_scale));
                    for v in 0..V {
                        b_dec_sum[v] = _mm512_add_ps(b_dec_sum[v], dx[v]);
                    }
                    // Each firing latent's updates: ∂W_dec,i += f_i ∂x̂, ∂pre_i = ∂x̂ · W_dec,i
                    // + λ ‖W_dec,i‖ / B, ∂W_enc,i += ∂pre_i (x − b_dec), ∂b_enc,i += ∂pre_i.
                    let (mut row_l1, mut row_weighted_l1) = (0f32, 0f32);
                    for (&i, &f) in ids.iter().zip(values) {
                        let i = i as usize;
                        let row = w_dec.add(i * dp);
                        let mut product = _mm512_mul_ps(dx[0], _mm512_loadu_ps(row));
                        for v in 1..V {
                            product =
                                _mm512_fmadd_ps(dx[v], _mm512_loadu_ps(row.add(16 * v)), product);
                        }
                        let norm = self.norms[i];
                        let d_pre = _mm512_reduce_add_ps(product) + l1_term * norm;
                        let g = grads.add(i * 2 * dp);
                        let (fv, dv) = (_mm512_set1_ps(f), _mm512_set1_ps(d_pre));
                        for v in 0..V {
                            let at = g.add(16 * v);
                            _mm512_storeu_ps(at, _mm512_fmadd_ps(fv, dx[v], _mm512_loadu_ps(at)));
                            let at = g.add(dp + 16 * v);
                            _mm512_storeu_ps(at, _mm512_fmadd_ps(dv, xc[v], _mm512_loadu_ps(at)));
                        }
                        p.b_enc[i] += d_pre;
                        p.fired[i] += 1;
                        p.f_sums[i] += f;
                        row_l1 += f;
                        row_weighted_l1 += f * norm;
                    }
                    p.l1 += row_l1 as f64;
                    p.weighted_l1 += row_weighted_l1 as f64;
                    p.active += ids.len();
                }
            }
            for v in 0..V {
                _mm512_storeu_ps(p.b_dec.as_mut_ptr().add(16 * v), b_dec_sum[v]);
            }
        }
        p
    }
}

/// A standard SAE's firing latents for up to [`GROUP_ROWS`] inputs `x [n, d_in]`:
/// `ReLU((x − b_dec) W_enc + b_enc)`, four blocks of sixteen latents for every input at a time
/// (sixteen independent sums, so that the FMAs overlap, and each W_enc load serves every input).
/// Each block's positive entries are packed in a register and stored whole at the end of the
/// input's list (`d_sae + 16` slots each in `ids` and `values`): no branch per latent. Their
/// counts go into `live`; `xc` is scratch for the centred inputs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn encode_rows_avx512(
    x: &[f32],
    w: &SaeWeights,
    xc: &mut [f32],
    ids: &mut [u32],
    values: &mut [f32],
    live: &mut [usize; GROUP_ROWS],
) {
    use std::arch::x86_64::*;
    const BLOCKS: usize = 4;
    let (d, s) = (w.d_in, w.d_sae);
    let stride = s + 16;
    let n = x.len() / d;
    assert!((1..=GROUP_ROWS).contains(&n) && x.len() == n * d);
    assert!(xc.len() == GROUP_ROWS * d);
    assert!(ids.len() == GROUP_ROWS * stride && values.len() == GROUP_ROWS * stride);
    assert!(w.w_enc.len() == d * s && w.b_enc.len() == s && w.b_dec.len() == d);
    // Rows past `n` stay zero: their sums are computed and never read.
    xc.iter_mut().for_each(|v| *v = 0.0);
    for (r, row) in x.chunks_exact(d).enumerate() {
        for j in 0..d {
            xc[r * d + j] = row[j] - w.b_dec[j];
        }
    }
    *live = [0; GROUP_ROWS];
    let zero = _mm512_setzero_ps();
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mask_at = |at: usize| -> __mmask16 {
        match s.saturating_sub(at) {
            0 => 0,
            left if left >= 16 => 0xffff,
            left => ((1u32 << left) - 1) as u16,
        }
    };
    for start in (0..s).step_by(16 * BLOCKS) {
        let lanes: [__mmask16; BLOCKS] = std::array::from_fn(|b| mask_at(start + 16 * b));
        let at: [usize; BLOCKS] = std::array::from_fn(|b| (start + 16 * b).min(s));
        // SAFETY: every load reads only its block's `lanes`, which lie within b_enc and within
        // each row of W_enc (a block past the end has no lanes).
        let pre: [[__m512; BLOCKS]; GROUP_ROWS] = unsafe {
            let bias: [__m512; BLOCKS] = std::array::from_fn(|b| {
                _mm512_maskz_loadu_ps(lanes[b], w.b_enc.as_ptr().add(at[b]))
            });
            let mut acc = [bias; GROUP_ROWS];
            for j in 0..d {
                let row = w.w_enc.as_ptr().add(j * s);
                let wv: [__m512; BLOCKS] =
                    std::array::from_fn(|b| _mm512_maskz_loadu_ps(lanes[b], row.add(at[b])));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let xv = _mm512_set1_ps(xc[r * d + j]);
                    for b in 0..BLOCKS {
                        acc[b] = _mm512_fmadd_ps(xv, wv[b], acc[b]);
                    }
                }
            }
            acc
        };
        for (r, pre) in pre.iter().enumerate().take(n) {
            for b in 0..BLOCKS {
                let fires = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(lanes[b], pre[b], zero);
                let index = _mm512_add_epi32(_mm512_set1_epi32(at[b] as i32), iota);
                // The input's list holds `live[r] ≤ at[b]` latents so far: a whole vector
                // from there ends within its `s + 16` slots.
                let end = r * stride + live[r];
                assert!(end + 16 <= (r + 1) * stride);
                // SAFETY: `end + 16` slots lie within both lists (asserted just above).
                unsafe {
                    _mm512_storeu_ps(
                        values.as_mut_ptr().add(end),
                        _mm512_maskz_compress_ps(fires, pre[b]),
                    );
                    _mm512_storeu_si512(
                        ids.as_mut_ptr().add(end).cast(),
                        _mm512_maskz_compress_epi32(fires, index),
                    );
                }
                live[r] += fires.count_ones() as usize;
            }
        }
    }
}

pub(super) fn has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The `k` latents with the largest pre-activations among those `eligible`, into `order`.
fn top(pre: &[f32], k: usize, eligible: impl Fn(usize) -> bool, order: &mut Vec<usize>) {
    order.clear();
    order.extend((0..pre.len()).filter(|&i| eligible(i)));
    if k == 0 {
        order.clear();
    } else if k < order.len() {
        order.select_nth_unstable_by(k - 1, |&a, &b| pre[b].total_cmp(&pre[a]));
        order.truncate(k);
    }
}
