//! Training an SAE: Adam on batches of fresh activations, dead latents tracked over a window of
//! activations and revived (resampled for the standard architecture, by the auxiliary loss for
//! TopK), evaluations on a fixed batch. One driver for the CLI and the app.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::metrics::{SaeMetrics, log_density, measure};
use super::model::{Architecture, SaeWeights};
use super::source::Activations;
use crate::superposition::train::{AdamScalars, adam_update};

/// An SAE run's settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaeRun {
    pub d_sae: usize,
    pub architecture: Architecture,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub eval_every: usize,
    /// A latent that fired on none of this many activations is dead.
    pub dead_window: usize,
    /// Standard SAEs: dead latents are resampled every this many steps, in the first half of
    /// the run (0: never).
    pub resample_every: usize,
    /// Each decoder row's norm at initialisation (Anthropic's April 2024 update: 0.1).
    pub decoder_init_norm: f32,
}

impl SaeRun {
    /// The settings the ground-truth check uses, for `d_sae` latents.
    pub fn standard(d_sae: usize, l1_coefficient: f64) -> Self {
        Self {
            d_sae,
            architecture: Architecture::Standard { l1_coefficient },
            steps: 6_000,
            batch_size: 4_096,
            lr: 1e-3,
            seed: 0,
            eval_every: 500,
            dead_window: 1_000_000,
            resample_every: 1_000,
            decoder_init_norm: 0.1,
        }
    }

    pub fn validate(&self, d_in: usize) -> Result<(), String> {
        let limit = |what: &str, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("{what} must be between {lo} and {hi}, got {v}"))
            }
        };
        limit("d_sae", self.d_sae, 1, 1 << 16)?;
        limit("steps", self.steps, 1, 10_000_000)?;
        limit("batch_size", self.batch_size, 1, 1 << 16)?;
        limit("eval_every", self.eval_every, 1, usize::MAX)?;
        limit("dead_window", self.dead_window, 1, usize::MAX)?;
        if d_in == 0 || d_in * self.d_sae > 50_000_000 {
            return Err(format!(
                "an SAE of {d_in} × {} weights is too large (at most 50 million)",
                self.d_sae
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!("lr must be positive, got {}", self.lr));
        }
        if !(self.decoder_init_norm.is_finite() && self.decoder_init_norm > 0.0) {
            return Err("decoder_init_norm must be positive".into());
        }
        match self.architecture {
            Architecture::Standard { l1_coefficient } => {
                if !(l1_coefficient.is_finite() && l1_coefficient >= 0.0) {
                    return Err(format!("l1 must be at least 0, got {l1_coefficient}"));
                }
            }
            Architecture::TopK { k, aux_coefficient } => {
                limit("k", k, 1, self.d_sae)?;
                if !(aux_coefficient.is_finite() && aux_coefficient >= 0.0) {
                    return Err("the auxiliary loss coefficient must be at least 0".into());
                }
            }
        }
        Ok(())
    }
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SaeError {
    #[error("invalid settings: {0}")]
    Config(String),
    #[error("cannot read the activations: {0}")]
    Source(String),
    #[error(
        "training diverged at step {step}: the loss became {loss} (the weights keep their last \
         finite values); lower the learning rate"
    )]
    Diverged { step: usize, loss: f64 },
    #[error("training is already complete")]
    Finished,
}

/// Adam's moments for the four tensors, in [`SaeWeights`]' order.
struct Adam {
    m: [Vec<f32>; 4],
    v: [Vec<f32>; 4],
    t: i32,
}

/// Trains one SAE on one source of activations.
pub struct SaeTrainer {
    run: SaeRun,
    weights: SaeWeights,
    adam: Adam,
    source: Box<dyn Activations>,
    batch: Vec<f32>,
    /// Activations since each latent last fired.
    since_fired: Vec<u64>,
    /// Firing counts and inputs since the last evaluation.
    fired: Vec<u64>,
    inputs: u64,
    step: usize,
    busy_s: f64,
    history: Vec<SaeMetrics>,
}

impl SaeTrainer {
    pub fn new(run: SaeRun, source: Box<dyn Activations>) -> Result<Self, SaeError> {
        let d_in = source.d_in();
        run.validate(d_in).map_err(SaeError::Config)?;
        // TopK keeps unit decoder rows throughout; the standard SAE starts them small.
        let norm = match run.architecture {
            Architecture::TopK { .. } => 1.0,
            Architecture::Standard { .. } => run.decoder_init_norm,
        };
        let weights = SaeWeights::init(d_in, run.d_sae, norm, run.seed);
        let zeros = |w: &SaeWeights| {
            [
                vec![0.0; w.w_enc.len()],
                vec![0.0; w.b_enc.len()],
                vec![0.0; w.w_dec.len()],
                vec![0.0; w.b_dec.len()],
            ]
        };
        Ok(Self {
            adam: Adam {
                m: zeros(&weights),
                v: zeros(&weights),
                t: 0,
            },
            since_fired: vec![0; run.d_sae],
            fired: vec![0; run.d_sae],
            inputs: 0,
            weights,
            run,
            source,
            batch: Vec::new(),
            step: 0,
            busy_s: 0.0,
            history: Vec::new(),
        })
    }

    pub fn run(&self) -> &SaeRun {
        &self.run
    }

    pub fn weights(&self) -> &SaeWeights {
        &self.weights
    }

    pub fn step_count(&self) -> usize {
        self.step
    }

    pub fn history(&self) -> &[SaeMetrics] {
        &self.history
    }

    pub fn hook_name(&self) -> String {
        self.source.hook_name()
    }

    pub fn is_finished(&self) -> bool {
        self.step >= self.run.steps
    }

    fn dead(&self) -> Vec<bool> {
        let window = self.run.dead_window as u64;
        self.since_fired.iter().map(|&s| s >= window).collect()
    }

    /// One step on a fresh batch; an evaluation when it ends an evaluation period (and at the
    /// last step). A non-finite loss leaves the weights as they were.
    pub fn step(&mut self) -> Result<Option<SaeMetrics>, SaeError> {
        if self.is_finished() {
            return Err(SaeError::Finished);
        }
        let started = Instant::now();
        let rows = self.run.batch_size;
        let seed = crate::superposition::model::batch_seed(self.run.seed, self.step as u64, 1);
        self.source
            .fill(&mut self.batch, rows, seed)
            .map_err(SaeError::Source)?;
        let dead = self.dead();
        let (out, grads) =
            self.weights
                .loss_and_grads(&self.batch, rows, self.run.architecture, &dead);
        let loss = out.loss();
        let finite = |v: &[f32]| v.iter().all(|g| g.is_finite());
        if !loss.is_finite()
            || ![&grads.w_enc, &grads.b_enc, &grads.w_dec, &grads.b_dec]
                .iter()
                .all(|g| finite(g))
        {
            return Err(SaeError::Diverged {
                step: self.step + 1,
                loss,
            });
        }
        self.adam_step([&grads.w_enc, &grads.b_enc, &grads.w_dec, &grads.b_dec]);
        if let Architecture::TopK { .. } = self.run.architecture {
            normalise_decoder_rows(&mut self.weights);
        }
        for ((since, total), &f) in self
            .since_fired
            .iter_mut()
            .zip(&mut self.fired)
            .zip(&out.fired)
        {
            *since = if f > 0 { 0 } else { *since + rows as u64 };
            *total += f as u64;
        }
        self.inputs += rows as u64;
        self.step += 1;
        let resample = self.run.resample_every;
        if matches!(self.run.architecture, Architecture::Standard { .. })
            && resample > 0
            && self.step.is_multiple_of(resample)
            && self.step <= self.run.steps / 2
        {
            self.resample_dead(seed);
        }
        self.busy_s += started.elapsed().as_secs_f64();
        let due = self.step.is_multiple_of(self.run.eval_every) || self.is_finished();
        if !due {
            return Ok(None);
        }
        self.evaluate().map(Some)
    }

    /// Runs every remaining step unless `stop` is set, calling `each` after every evaluation.
    pub fn drive(
        &mut self,
        stop: &AtomicBool,
        mut each: impl FnMut(&Self, &SaeMetrics),
    ) -> Result<bool, SaeError> {
        while !self.is_finished() {
            if stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            if let Some(metrics) = self.step()? {
                each(self, &metrics);
            }
        }
        Ok(true)
    }

    fn adam_step(&mut self, grads: [&[f32]; 4]) {
        let Adam { m, v, t } = &mut self.adam;
        *t += 1;
        let scalars = AdamScalars::at(*t, self.run.lr, [0.9, 0.999], 1e-8, 0.0);
        let w = &mut self.weights;
        let params = [&mut w.w_enc, &mut w.b_enc, &mut w.w_dec, &mut w.b_dec];
        for (((p, g), m), v) in params.into_iter().zip(grads).zip(m).zip(v) {
            adam_update(p, g, m, v, scalars);
        }
    }

    /// Anthropic's resampling (Towards Monosemanticity): each dead latent's decoder row becomes
    /// the unit residual of an input drawn with probability ∝ its squared loss, its encoder
    /// column that direction at a fifth of the live columns' mean norm, its bias 0, its Adam
    /// moments reset.
    fn resample_dead(&mut self, seed: u64) {
        use rand::{Rng, SeedableRng};
        let is_dead = self.dead();
        let dead: Vec<usize> = (0..is_dead.len()).filter(|&i| is_dead[i]).collect();
        if dead.is_empty() {
            return;
        }
        let (d, s) = (self.weights.d_in, self.weights.d_sae);
        let rows = self.run.batch_size;
        let f = self
            .weights
            .encode(&self.batch, rows, self.run.architecture);
        let x_hat = self.weights.decode(&f, rows);
        let residual: Vec<f32> = self.batch.iter().zip(&x_hat).map(|(a, b)| a - b).collect();
        let weights: Vec<f64> = residual
            .chunks_exact(d)
            .map(|r| (r.iter().map(|v| v * v).sum::<f32>() as f64).powi(2))
            .collect();
        let total: f64 = weights.iter().sum();
        if total <= 0.0 || !total.is_finite() {
            return;
        }
        let live_norm = {
            let norms: Vec<f32> = (0..s)
                .filter(|&i| !is_dead[i])
                .map(|i| {
                    (0..d)
                        .map(|j| self.weights.w_enc[j * s + i].powi(2))
                        .sum::<f32>()
                        .sqrt()
                })
                .collect();
            if norms.is_empty() {
                1.0
            } else {
                norms.iter().sum::<f32>() / norms.len() as f32
            }
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        for &i in &dead {
            let mut target = rng.random::<f64>() * total;
            let mut pick = rows - 1;
            for (b, &w) in weights.iter().enumerate() {
                if target < w {
                    pick = b;
                    break;
                }
                target -= w;
            }
            let r = &residual[pick * d..(pick + 1) * d];
            let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            for (j, &rj) in r.iter().enumerate() {
                let u = rj / norm;
                self.weights.w_dec[i * d + j] = u;
                self.weights.w_enc[j * s + i] = 0.2 * live_norm * u;
                for k in [0, 2] {
                    let at = if k == 0 { j * s + i } else { i * d + j };
                    self.adam.m[k][at] = 0.0;
                    self.adam.v[k][at] = 0.0;
                }
            }
            self.weights.b_enc[i] = 0.0;
            self.adam.m[1][i] = 0.0;
            self.adam.v[1][i] = 0.0;
            self.since_fired[i] = 0;
        }
    }

    /// The metrics on a fixed evaluation batch, with the firing rates since the last one.
    fn evaluate(&mut self) -> Result<SaeMetrics, SaeError> {
        let rows = self.run.batch_size;
        let mut x = Vec::new();
        self.source
            .fill(&mut x, rows, self.run.seed ^ 0xE7A1)
            .map_err(SaeError::Source)?;
        let truth = self.source.true_features();
        let (measured, _) = measure(
            &self.weights,
            self.run.architecture,
            &x,
            rows,
            truth.as_deref(),
        );
        let metrics = SaeMetrics {
            step: self.step,
            dead: self.dead().iter().filter(|&&d| d).count(),
            log_density: log_density(&self.fired, self.inputs),
            ce: self.source.ce_losses(&self.weights, self.run.architecture),
            elapsed_s: self.busy_s,
            ..measured
        };
        self.fired.iter_mut().for_each(|f| *f = 0);
        self.inputs = 0;
        self.history.push(metrics.clone());
        Ok(metrics)
    }
}

/// Each decoder row scaled to unit norm (TopK: the decoder's scale then cannot drift, and the
/// saved SAE needs no rescaling by decoder norms).
fn normalise_decoder_rows(w: &mut SaeWeights) {
    for row in w.w_dec.chunks_exact_mut(w.d_in) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 1e-12 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
}
