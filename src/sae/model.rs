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
    /// `Σ_b ‖x_b − mean x‖²`, for explained variance.
    pub variance: f64,
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
    pub fn loss_and_grads(
        &self,
        x: &[f32],
        rows: usize,
        architecture: Architecture,
        dead: &[bool],
    ) -> (StepOutput, SaeGrads) {
        let (d, s) = (self.d_in, self.d_sae);
        assert_eq!(x.len(), rows * d, "a batch of [rows, d_in] activations");
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
        let mut f = pre.clone();
        activate(&mut f, s, architecture);
        let x_hat = self.decode(&f, rows);
        let scale = 1.0 / rows as f32;

        let mut out = StepOutput {
            fired: vec![0; s],
            ..Default::default()
        };
        // ∂x̂ = 2 (x̂ − x) / B, and the mse.
        let mut d_xhat = vec![0.0; rows * d];
        let mut mean = vec![0f64; d];
        for r in x.chunks_exact(d) {
            mean.iter_mut().zip(r).for_each(|(m, &v)| *m += v as f64);
        }
        mean.iter_mut().for_each(|m| *m /= rows as f64);
        for ((g, (&xh, &xv)), j) in d_xhat
            .iter_mut()
            .zip(x_hat.iter().zip(x))
            .zip((0..d).cycle())
        {
            let e = xh - xv;
            out.mse += (e * e) as f64;
            out.variance += (xv as f64 - mean[j]).powi(2);
            *g = 2.0 * e * scale;
        }
        out.mse /= rows as f64;
        for row in f.chunks_exact(s) {
            for (i, &v) in row.iter().enumerate() {
                if v > 0.0 {
                    out.fired[i] += 1;
                    out.active += 1;
                    out.l1 += v as f64;
                }
            }
        }

        // ∂f = ∂x̂ W_decᵀ (+ the penalty's part), ∂W_dec = fᵀ ∂x̂.
        let mut d_f = vec![0.0; rows * s];
        matmul(
            &mut d_f,
            (rows, s, d),
            (&d_xhat, d, 1),
            (&self.w_dec, 1, d),
            false,
        );
        let mut grads = SaeGrads {
            w_enc: vec![0.0; d * s],
            b_enc: vec![0.0; s],
            w_dec: vec![0.0; s * d],
            b_dec: vec![0.0; d],
        };
        matmul(
            &mut grads.w_dec,
            (s, d, rows),
            (&f, 1, s),
            (&d_xhat, d, 1),
            false,
        );
        let mut d_pre = vec![0.0; rows * s];
        match architecture {
            Architecture::Standard { l1_coefficient } => {
                let lambda = l1_coefficient as f32;
                let norms = self.decoder_norms();
                let mut weighted = 0f64;
                let mut f_sums = vec![0f32; s];
                for ((dp, (&df, &fv)), i) in
                    d_pre.iter_mut().zip(d_f.iter().zip(&f)).zip((0..s).cycle())
                {
                    if fv > 0.0 {
                        *dp = df + lambda * norms[i] * scale;
                        weighted += (fv * norms[i]) as f64;
                        f_sums[i] += fv;
                    }
                }
                out.penalty = lambda as f64 * weighted / rows as f64;
                // ∂(λ Σ f_i ‖W_dec,i‖ / B)/∂W_dec,i = λ (Σ_b f_bi / B) W_dec,i / ‖W_dec,i‖.
                for (i, (g, w)) in grads
                    .w_dec
                    .chunks_exact_mut(d)
                    .zip(self.w_dec.chunks_exact(d))
                    .enumerate()
                {
                    let c = lambda * f_sums[i] * scale / norms[i].max(1e-12);
                    g.iter_mut().zip(w).for_each(|(g, &w)| *g += c * w);
                }
            }
            Architecture::TopK {
                aux_coefficient, ..
            } => {
                for (dp, (&df, &fv)) in d_pre.iter_mut().zip(d_f.iter().zip(&f)) {
                    if fv > 0.0 {
                        *dp = df;
                    }
                }
                let residual: Vec<f32> = x.iter().zip(&x_hat).map(|(a, b)| a - b).collect();
                out.penalty = self.aux_loss(
                    (&pre, &residual, rows),
                    aux_coefficient as f32,
                    dead,
                    (&mut d_pre, &mut grads.w_dec),
                );
            }
        }
        // ∂W_enc = (x − b_dec)ᵀ ∂pre, ∂b_enc = Σ_b ∂pre, ∂b_dec = Σ_b ∂x̂ − W_enc Σ_b ∂pre.
        matmul(
            &mut grads.w_enc,
            (d, s, rows),
            (&centred, 1, d),
            (&d_pre, s, 1),
            false,
        );
        for row in d_pre.chunks_exact(s) {
            grads.b_enc.iter_mut().zip(row).for_each(|(g, &v)| *g += v);
        }
        for row in d_xhat.chunks_exact(d) {
            grads.b_dec.iter_mut().zip(row).for_each(|(g, &v)| *g += v);
        }
        for (j, g) in grads.b_dec.iter_mut().enumerate() {
            let w = &self.w_enc[j * s..(j + 1) * s];
            *g -= w.iter().zip(&grads.b_enc).map(|(a, b)| a * b).sum::<f32>();
        }
        (out, grads)
    }

    /// TopK's auxiliary loss (AuxK): the `d_in / 2` largest pre-activations among the dead
    /// latents reconstruct, through W_dec, what the live ones missed. Adds its gradients into
    /// `∂pre` and `∂W_dec`; returns the loss.
    fn aux_loss(
        &self,
        (pre, residual, rows): (&[f32], &[f32], usize),
        coefficient: f32,
        dead: &[bool],
        (d_pre, d_w_dec): (&mut [f32], &mut [f32]),
    ) -> f64 {
        let (d, s) = (self.d_in, self.d_sae);
        let dead_count = dead.iter().filter(|&&x| x).count();
        if dead_count == 0 || coefficient == 0.0 {
            return 0.0;
        }
        let k_aux = (d / 2).max(1);
        let weight = coefficient * (dead_count as f32 / k_aux as f32).min(1.0);
        let k_aux = k_aux.min(dead_count);
        let mut acts = vec![0f32; rows * s];
        for (row, out) in pre.chunks_exact(s).zip(acts.chunks_exact_mut(s)) {
            let mut order: Vec<usize> = (0..s).filter(|&i| dead[i]).collect();
            order.select_nth_unstable_by(k_aux - 1, |&a, &b| row[b].total_cmp(&row[a]));
            for &i in &order[..k_aux] {
                out[i] = row[i];
            }
        }
        let mut recon = vec![0f32; rows * d];
        matmul(
            &mut recon,
            (rows, d, s),
            (&acts, s, 1),
            (&self.w_dec, d, 1),
            false,
        );
        let scale = 1.0 / rows as f32;
        let mut loss = 0f64;
        let mut d_recon = vec![0f32; rows * d];
        for ((g, &r), &e) in d_recon.iter_mut().zip(&recon).zip(residual) {
            let diff = r - e;
            loss += (diff * diff) as f64;
            *g = 2.0 * weight * diff * scale;
        }
        // Through the selected pre-activations (as they are, not through a ReLU) and W_dec.
        let mut d_acts = vec![0f32; rows * s];
        matmul(
            &mut d_acts,
            (rows, s, d),
            (&d_recon, d, 1),
            (&self.w_dec, 1, d),
            false,
        );
        for ((dp, &da), &a) in d_pre.iter_mut().zip(&d_acts).zip(&acts) {
            if a != 0.0 {
                *dp += da;
            }
        }
        matmul(d_w_dec, (s, d, rows), (&acts, 1, s), (&d_recon, d, 1), true);
        weight as f64 * loss / rows as f64
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
