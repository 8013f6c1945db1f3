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
    pub(super) fn rows(&self, x: &[f32], pre: &[f32]) -> Partial {
        #[cfg(target_arch = "x86_64")]
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
        let fused = pre.is_empty();
        let rows = x.len() / d;
        // The fused encoder's group of inputs: their firing latents, `s` slots each.
        let mut group_slots = vec![(0usize, 0f32); if fused { GROUP_ROWS * s } else { 0 }];
        let mut group_live = [0usize; GROUP_ROWS];
        let mut group_xc = vec![0f32; GROUP_ROWS * d];
        let all_x = x;
        for r in 0..rows {
            #[cfg(target_arch = "x86_64")]
            if fused && r % GROUP_ROWS == 0 {
                let n = GROUP_ROWS.min(rows - r);
                // SAFETY: `fused` is set only where the CPU has AVX-512F; the buffers hold a
                // group's inputs and slots.
                unsafe {
                    encode_rows_avx512(
                        &all_x[r * d..(r + n) * d],
                        w,
                        &mut group_xc,
                        &mut group_slots,
                        &mut group_live,
                    )
                };
            }
            let x = &all_x[r * d..(r + 1) * d];
            for j in 0..d {
                xc[j] = x[j] - w.b_dec[j];
            }
            let pre = if fused {
                &[][..]
            } else {
                &pre[r * s..(r + 1) * s]
            };
            // The active latents (i, f_i).
            let live = match self.architecture {
                Architecture::Standard { .. } if fused => group_live[r % GROUP_ROWS],
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
            let active = if fused {
                let at = (r % GROUP_ROWS) * s;
                &group_slots[at..at + live]
            } else {
                &slots[..live]
            };
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

/// A standard SAE's firing latents for up to [`GROUP_ROWS`] inputs `x [n, d_in]`:
/// `ReLU((x − b_dec) W_enc + b_enc)`, four blocks of sixteen latents for every input at a time
/// (sixteen independent sums, so that the FMAs overlap, and each W_enc load serves every input),
/// each block's positive entries stored into the input's `s` slots of `slots` as they leave the
/// registers, their counts into `live`. `xc` is scratch for the centred inputs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn encode_rows_avx512(
    x: &[f32],
    w: &SaeWeights,
    xc: &mut [f32],
    slots: &mut [(usize, f32)],
    live: &mut [usize; GROUP_ROWS],
) {
    use std::arch::x86_64::*;
    const BLOCKS: usize = 4;
    let (d, s) = (w.d_in, w.d_sae);
    let n = x.len() / d;
    assert!((1..=GROUP_ROWS).contains(&n) && x.len() == n * d);
    assert!(xc.len() == GROUP_ROWS * d && slots.len() == GROUP_ROWS * s);
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
    let mask_at = |at: usize| -> __mmask16 {
        match s.saturating_sub(at) {
            0 => 0,
            left if left >= 16 => 0xffff,
            left => ((1u32 << left) - 1) as u16,
        }
    };
    let mut values = [0f32; 16];
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
                if fires == 0 {
                    continue;
                }
                // SAFETY: `values` holds 16 floats.
                unsafe { _mm512_storeu_ps(values.as_mut_ptr(), pre[b]) };
                let mut bits = fires;
                while bits != 0 {
                    let lane = bits.trailing_zeros() as usize;
                    slots[r * s + live[r]] = (at[b] + lane, values[lane]);
                    live[r] += 1;
                    bits &= bits - 1;
                }
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
