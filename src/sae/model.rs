//! An SAE's weights, its encoder and decoder, and its training loss and gradients on a batch of
//! activations, computed on the host with matrix products. SAELens's conventions throughout:
//!
//! ```text
//! pre = (x − b_dec) W_enc + b_enc          [B, d_sae]
//! f   = ReLU(pre)                          (standard)
//!     = ReLU of each row's k largest pre   (topk; the others 0)
//! x̂   = f W_dec + b_dec                    [B, d_in]
//! mse = Σ_b ‖x̂_b − x_b‖² / B                (summed over d_in, averaged over the batch)
//! l1  = λ Σ_b Σ_i f_bi ‖W_dec,i‖ / B         (standard)
//! aux = c · min(dead / k_aux, 1) · Σ_b ‖ê_b − (x_b − x̂_b)‖² / B   (topk, AuxK: ê from the
//!       k_aux = d_in / 2 largest pre-activations of dead latents, through W_dec, no bias)
//! ```

use rand::SeedableRng;
use rand_distr::{Distribution, Uniform};

use crate::model::kernels::cpu::matmul;

/// How the latents are computed from their pre-activations.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Architecture {
    /// ReLU, with the L1 penalty on activations weighted by decoder norms.
    Standard { l1_coefficient: f64 },
    /// The k largest pre-activations of each input, through a ReLU; dead latents learn from
    /// the auxiliary loss.
    TopK { k: usize, aux_coefficient: f64 },
}

impl Architecture {
    /// SAELens's name for it (`cfg.json`'s `architecture`).
    pub fn saelens_name(&self) -> &'static str {
        match self {
            Architecture::Standard { .. } => "standard",
            Architecture::TopK { .. } => "topk",
        }
    }
}

/// `W_enc [d_in, d_sae]`, `b_enc [d_sae]`, `W_dec [d_sae, d_in]`, `b_dec [d_in]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SaeWeights {
    pub d_in: usize,
    pub d_sae: usize,
    pub w_enc: Vec<f32>,
    pub b_enc: Vec<f32>,
    pub w_dec: Vec<f32>,
    pub b_dec: Vec<f32>,
}

/// The gradients in the weights' layout.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SaeGrads {
    pub w_enc: Vec<f32>,
    pub b_enc: Vec<f32>,
    pub w_dec: Vec<f32>,
    pub b_dec: Vec<f32>,
}

/// A batch's losses (each as the total loss counts it) and what the metrics need.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepOutput {
    pub mse: f64,
    /// The sparsity penalty (standard) or the auxiliary loss (topk).
    pub penalty: f64,
    /// Active latents summed over the batch (L0 × B) and `Σ f` (L1 × B).
    pub active: usize,
    pub l1: f64,
    /// How many of the batch's inputs each latent fired on.
    pub fired: Vec<u32>,
}

impl StepOutput {
    pub fn loss(&self) -> f64 {
        self.mse + self.penalty
    }
}

impl SaeWeights {
    /// SAELens's initialisation with Anthropic's April 2024 scaling: each decoder row uniform
    /// (kaiming-uniform bound) rescaled to norm `decoder_norm`, the encoder its transpose, both
    /// biases zero.
    pub fn init(d_in: usize, d_sae: usize, decoder_norm: f32, seed: u64) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        // kaiming_uniform_ with a = √5 on a [d_sae, d_in] tensor: bound 1/√fan_in.
        let bound = 1.0 / (d_in as f32).sqrt();
        let uniform = Uniform::new_inclusive(-bound, bound).expect("a finite bound");
        let mut w_dec: Vec<f32> = (0..d_sae * d_in)
            .map(|_| uniform.sample(&mut rng))
            .collect();
        for row in w_dec.chunks_exact_mut(d_in) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v *= decoder_norm / norm);
        }
        let mut w_enc = vec![0.0; d_in * d_sae];
        for (i, row) in w_dec.chunks_exact(d_in).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                w_enc[j * d_sae + i] = v;
            }
        }
        Self {
            d_in,
            d_sae,
            w_enc,
            b_enc: vec![0.0; d_sae],
            w_dec,
            b_dec: vec![0.0; d_in],
        }
    }

    pub fn all_finite(&self) -> bool {
        [&self.w_enc, &self.b_enc, &self.w_dec, &self.b_dec]
            .iter()
            .all(|v| v.iter().all(|x| x.is_finite()))
    }

    /// Each decoder row's norm.
    pub fn decoder_norms(&self) -> Vec<f32> {
        self.w_dec
            .chunks_exact(self.d_in)
            .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
            .collect()
    }

    /// `pre = (x − b_dec) W_enc + b_enc` for `rows` inputs.
    pub fn pre_activations(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let (d, s) = (self.d_in, self.d_sae);
        let centred: Vec<f32> = x
            .chunks_exact(d)
            .flat_map(|r| r.iter().zip(&self.b_dec).map(|(a, b)| a - b))
            .collect();
        let mut pre = vec![0.0; rows * s];
        for row in pre.chunks_exact_mut(s) {
            row.copy_from_slice(&self.b_enc);
        }
        matmul(
            &mut pre,
            (rows, s, d),
            (&centred, d, 1),
            (&self.w_enc, s, 1),
            true,
        );
        pre
    }

    /// The latents of `rows` inputs.
    pub fn encode(&self, x: &[f32], rows: usize, architecture: Architecture) -> Vec<f32> {
        let mut f = self.pre_activations(x, rows);
        activate(&mut f, self.d_sae, architecture);
        f
    }

    /// `x̂ = f W_dec + b_dec`.
    pub fn decode(&self, f: &[f32], rows: usize) -> Vec<f32> {
        let (d, s) = (self.d_in, self.d_sae);
        let mut out = vec![0.0; rows * d];
        for row in out.chunks_exact_mut(d) {
            row.copy_from_slice(&self.b_dec);
        }
        matmul(&mut out, (rows, d, s), (f, s, 1), (&self.w_dec, d, 1), true);
        out
    }

    /// The loss of a batch `x [rows, d_in]` and its gradients. `dead` marks the latents that
    /// have not fired lately (the auxiliary loss of topk uses them).
    ///
    /// Only the encoder's product is dense. Everything after it runs over each input's active
    /// latents (and AuxK's dead ones): `x̂` sums their decoder rows, and `∂W_dec`, `∂f`,
    /// `∂W_enc` and `∂b_enc` are updates of one row each, so their cost follows L0 instead of
    /// d_sae. The batch's rows are split between the cores, each summing its own gradients.
    pub fn loss_and_grads(
        &self,
        x: &[f32],
        rows: usize,
        architecture: Architecture,
        dead: &[bool],
    ) -> (StepOutput, SaeGrads) {
        // Where the CPU has AVX-512, a standard SAE's encoder runs inside each row's work (the
        // firing latents gathered as they are computed): the batch's pre-activations are never
        // written out and read back.
        let fused = matches!(architecture, Architecture::Standard { .. }) && has_avx512f();
        self.loss_and_grads_on(x, rows, architecture, dead, fused)
    }

    /// [`Self::loss_and_grads`] with the encoder fused into the rows' work or not.
    fn loss_and_grads_on(
        &self,
        x: &[f32],
        rows: usize,
        architecture: Architecture,
        dead: &[bool],
        fused: bool,
    ) -> (StepOutput, SaeGrads) {
        use rayon::prelude::*;
        let (d, s) = (self.d_in, self.d_sae);
        assert_eq!(x.len(), rows * d, "a batch of [rows, d_in] activations");
        assert_eq!(dead.len(), s, "a dead flag per latent");
        let pre = if fused {
            Vec::new()
        } else {
            self.pre_activations(x, rows)
        };
        let dp = d.next_multiple_of(8);
        let mut w_dec_p = vec![0f32; s * dp];
        for (padded, row) in w_dec_p.chunks_exact_mut(dp).zip(self.w_dec.chunks_exact(d)) {
            padded[..d].copy_from_slice(row);
        }
        let mut b_dec_p = vec![0f32; dp];
        b_dec_p[..d].copy_from_slice(&self.b_dec);
        let context = RowContext {
            weights: self,
            dp,
            w_dec_p,
            b_dec_p,
            architecture,
            dead,
            dead_count: dead.iter().filter(|&&x| x).count(),
            norms: self.decoder_norms(),
            scale: 1.0 / rows as f32,
        };
        let chunk = rows
            .div_ceil(crate::model::kernels::cpu::pool().current_num_threads())
            .max(1);
        let partials: Vec<Partial> = crate::model::kernels::cpu::pool().install(|| {
            if fused {
                x.par_chunks(chunk * d)
                    .map(|x| context.rows(x, &[]))
                    .collect()
            } else {
                x.par_chunks(chunk * d)
                    .zip(pre.par_chunks(chunk * s))
                    .map(|(x, pre)| context.rows(x, pre))
                    .collect()
            }
        });
        let mut total = Partial::new(dp, s);
        for p in &partials {
            total.add(p);
        }
        let mut out = StepOutput {
            mse: total.mse / rows as f64,
            penalty: 0.0,
            active: total.active,
            l1: total.l1,
            fired: total.fired,
        };
        let mut grads = SaeGrads {
            w_enc: vec![0.0; d * s],
            b_enc: total.b_enc,
            w_dec: total
                .rows
                .chunks_exact(2 * dp)
                .flat_map(|r| r[..d].to_vec())
                .collect(),
            b_dec: total.b_dec[..d].to_vec(),
        };
        match architecture {
            Architecture::Standard { l1_coefficient } => {
                let lambda = l1_coefficient as f32;
                out.penalty = lambda as f64 * total.weighted_l1 / rows as f64;
                // ∂(λ Σ f_i ‖W_dec,i‖ / B)/∂W_dec,i = λ (Σ_b f_bi / B) W_dec,i / ‖W_dec,i‖.
                for (i, (g, w)) in grads
                    .w_dec
                    .chunks_exact_mut(d)
                    .zip(self.w_dec.chunks_exact(d))
                    .enumerate()
                {
                    let c = lambda * total.f_sums[i] * context.scale / context.norms[i].max(1e-12);
                    g.iter_mut().zip(w).for_each(|(g, &w)| *g += c * w);
                }
            }
            Architecture::TopK { .. } => out.penalty = total.aux / rows as f64,
        }
        // ∂W_enc from its transpose; ∂b_dec = Σ_b ∂x̂ − W_enc Σ_b ∂pre.
        for (i, row) in total.rows.chunks_exact(2 * dp).enumerate() {
            for (j, &v) in row[dp..dp + d].iter().enumerate() {
                grads.w_enc[j * s + i] = v;
            }
        }
        for (j, g) in grads.b_dec.iter_mut().enumerate() {
            let w = &self.w_enc[j * s..(j + 1) * s];
            *g -= w.iter().zip(&grads.b_enc).map(|(a, b)| a * b).sum::<f32>();
        }
        (out, grads)
    }
}

/// What every row of a batch shares in [`SaeWeights::loss_and_grads`].
struct RowContext<'a> {
    weights: &'a SaeWeights,
    /// `d_in` rounded up to whole vectors of 8, and W_dec's rows and b_dec padded to it with
    /// zeros: each row update is then a few whole vector operations.
    dp: usize,
    w_dec_p: Vec<f32>,
    b_dec_p: Vec<f32>,
    architecture: Architecture,
    dead: &'a [bool],
    dead_count: usize,
    norms: Vec<f32>,
    scale: f32,
}

/// One core's sums over its rows.
struct Partial {
    mse: f64,
    active: usize,
    l1: f64,
    weighted_l1: f64,
    aux: f64,
    fired: Vec<u32>,
    f_sums: Vec<f32>,
    /// `[d_sae, 2·dp]`: each latent's `∂W_dec` row then its `∂W_encᵀ` row, side by side so
    /// that one active latent's updates touch one stretch of memory (rows padded as
    /// [`RowContext`]'s); `∂b_enc`, and `Σ_b ∂x̂` for `∂b_dec`.
    rows: Vec<f32>,
    b_enc: Vec<f32>,
    b_dec: Vec<f32>,
}

impl Partial {
    fn new(d: usize, s: usize) -> Self {
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

    fn add(&mut self, o: &Partial) {
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
    fn rows(&self, x: &[f32], pre: &[f32]) -> Partial {
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

fn has_avx512f() -> bool {
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

/// The latents from pre-activations `[rows, d_sae]`, in place.
pub fn activate(pre: &mut [f32], d_sae: usize, architecture: Architecture) {
    match architecture {
        Architecture::Standard { .. } => pre.iter_mut().for_each(|v| *v = v.max(0.0)),
        Architecture::TopK { k, .. } => {
            let k = k.min(d_sae);
            let mut order: Vec<usize> = Vec::with_capacity(d_sae);
            for row in pre.chunks_exact_mut(d_sae) {
                order.clear();
                order.extend(0..d_sae);
                if k < d_sae {
                    order.select_nth_unstable_by(k, |&a, &b| row[b].total_cmp(&row[a]));
                }
                let mut keep = vec![false; d_sae];
                order[..k].iter().for_each(|&i| keep[i] = true);
                for (v, keep) in row.iter_mut().zip(keep) {
                    *v = if keep { v.max(0.0) } else { 0.0 };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoder fused into the rows' work gives the gemm path's loss and gradients, on
    /// widths that fill no whole block of sixteen latents or vector of eight.
    #[test]
    fn the_fused_encoder_equals_the_products() {
        if !has_avx512f() {
            eprintln!("no AVX-512 here: the fused encoder does not run");
            return;
        }
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for (d, s, rows) in [(20, 200, 257), (7, 33, 64), (16, 16, 5), (33, 70, 100)] {
            let mut w = SaeWeights::init(d, s, 0.3, 1);
            w.b_enc
                .iter_mut()
                .for_each(|b| *b = rng.random_range(-0.2..0.1));
            w.b_dec
                .iter_mut()
                .for_each(|b| *b = rng.random_range(-0.1..0.1));
            let x: Vec<f32> = (0..rows * d).map(|_| rng.random_range(-1.0..1.0)).collect();
            let architecture = Architecture::Standard {
                l1_coefficient: 0.05,
            };
            let dead = vec![false; s];
            let (a, ga) = w.loss_and_grads_on(&x, rows, architecture, &dead, true);
            let (b, gb) = w.loss_and_grads_on(&x, rows, architecture, &dead, false);
            assert!(
                a.active > 0 && a.active < rows * s,
                "{d} {s}: some latents fire"
            );
            assert_eq!(a.fired, b.fired, "{d} {s}");
            assert!((a.loss() - b.loss()).abs() <= 1e-5 * b.loss().abs().max(1.0));
            for (got, want) in [
                (&ga.w_enc, &gb.w_enc),
                (&ga.b_enc, &gb.b_enc),
                (&ga.w_dec, &gb.w_dec),
                (&ga.b_dec, &gb.b_dec),
            ] {
                let scale = want.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
                let diff = got
                    .iter()
                    .zip(want)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(diff <= 1e-5 * scale, "{d} {s}: {diff} of {scale}");
            }
        }
    }
}
