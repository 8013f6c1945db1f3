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

use super::rows::{Partial, RowContext, fused_width, has_avx512f};
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
        let fused = matches!(architecture, Architecture::Standard { .. })
            && has_avx512f()
            && fused_width(self.d_in).is_some();
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
        let dp = match fused_width(d) {
            Some(width) if fused => width,
            _ => d.next_multiple_of(8),
        };
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
        for (d, s, rows) in [
            (20, 200, 257),
            (7, 33, 64),
            (16, 16, 5),
            (33, 70, 100),
            (64, 90, 31),
        ] {
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
