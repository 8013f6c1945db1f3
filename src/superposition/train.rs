//! Training a superposition run: fresh sparse batches every step (each instance's drawn on its
//! own thread), the exact loss and gradients, and PyTorch's AdamW.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::config::{TmsConfigError, TmsRun};
use super::data::Batch;
use super::metrics::{TmsMetrics, dims_per_feature, geometry};
use super::model::{TmsGrads, TmsWeights, batch_seed, loss_and_grads_drawing};

/// PyTorch's AdamW on the host: decoupled weight decay, then Adam with bias correction.
#[derive(Debug, Clone)]
struct AdamW {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl AdamW {
    fn new(len: usize) -> Self {
        Self {
            m: vec![0.0; len],
            v: vec![0.0; len],
            t: 0,
        }
    }

    /// One update of `params` (W then b, concatenated in `grads`' order).
    fn step(&mut self, params: [&mut [f32]; 2], grads: [&[f32]; 2], run: &TmsRun) {
        self.t += 1;
        let t = &run.train;
        let scalars = AdamScalars::at(self.t, t.lr, t.betas, t.eps, t.weight_decay);
        let mut offset = 0;
        for (p, g) in params.into_iter().zip(grads) {
            let (m, v) = (
                &mut self.m[offset..offset + p.len()],
                &mut self.v[offset..offset + p.len()],
            );
            offset += p.len();
            adam_update(p, g, m, v, scalars);
        }
    }
}

/// AdamW's scalars for update `t` (from 1), as PyTorch's AdamW computes them: shared by the
/// superposition and SAE trainers (an SAE's Adam has no weight decay).
#[derive(Clone, Copy)]
pub(crate) struct AdamScalars {
    b1: f32,
    b2: f32,
    decay: f32,
    step_size: f32,
    bias2: f32,
    eps: f32,
}

impl AdamScalars {
    pub(crate) fn at(t: i32, lr: f64, betas: [f64; 2], eps: f64, weight_decay: f64) -> Self {
        let (b1, b2, lr) = (betas[0] as f32, betas[1] as f32, lr as f32);
        Self {
            b1,
            b2,
            decay: 1.0 - lr * weight_decay as f32,
            step_size: lr / (1.0 - b1.powi(t)),
            bias2: (1.0 - b2.powi(t)).sqrt(),
            eps: eps as f32,
        }
    }
}

/// AdamW's update of one run of elements, compiled for AVX2 where the CPU has it (its square
/// roots and divisions eight at a time: a tenth of a step's time, one thread, before).
pub(crate) fn adam_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamScalars) {
    #[cfg(target_arch = "x86_64")]
    if crate::model::kernels::cpu::has_avx2() {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamScalars) {
            adam_update_plain(p, g, m, v, s)
        }
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2(p, g, m, v, s) };
    }
    adam_update_plain(p, g, m, v, s)
}

#[inline(always)]
fn adam_update_plain(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamScalars) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
        *p *= s.decay;
        *m = s.b1 * *m + (1.0 - s.b1) * g;
        *v = s.b2 * *v + (1.0 - s.b2) * g * g;
        *p -= s.step_size * *m / (v.sqrt() / s.bias2 + s.eps);
    }
}

/// How [`TmsTrainer::drive`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every step ran.
    Finished,
    /// Asked to stop before the last step.
    Stopped,
}

/// A run in progress.
pub struct TmsTrainer {
    run: TmsRun,
    weights: TmsWeights,
    adam: AdamW,
    probabilities: Vec<f64>,
    importance: Vec<f32>,
    batches: Vec<Batch>,
    /// The last step's gradients, reused.
    grads: TmsGrads,
    step: usize,
    loss_since_eval: (Vec<f64>, usize),
    busy_s: f64,
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TmsError {
    #[error("invalid settings: {0}")]
    Config(#[from] TmsConfigError),
    #[error(
        "training diverged at step {step}: the loss became {loss} (the weights keep their last \
         finite values); lower the learning rate"
    )]
    Diverged { step: usize, loss: f64 },
    #[error("training is already complete")]
    Finished,
}

impl TmsTrainer {
    pub fn new(run: TmsRun) -> Result<Self, TmsError> {
        run.validate()?;
        let weights = TmsWeights::init(&run.model, run.seed);
        Ok(Self::with_weights(run, weights))
    }

    /// A run from given weights (of `run`'s model, validated by the caller).
    pub fn with_weights(run: TmsRun, weights: TmsWeights) -> Self {
        let instances = run.model.n_instances;
        Self {
            adam: AdamW::new(weights.w.len() + weights.b.len()),
            probabilities: run.probabilities(),
            importance: run.importances().iter().map(|&i| i as f32).collect(),
            batches: vec![Batch::default(); instances],
            grads: TmsGrads::default(),
            step: 0,
            loss_since_eval: (vec![0.0; instances], 0),
            busy_s: 0.0,
            weights,
            run,
        }
    }

    pub fn run(&self) -> &TmsRun {
        &self.run
    }
    pub fn weights(&self) -> &TmsWeights {
        &self.weights
    }
    pub fn steps_done(&self) -> usize {
        self.step
    }
    pub fn is_finished(&self) -> bool {
        self.step >= self.run.train.steps
    }

    /// Trains until the run ends or `stop` is set (checked every step), calling `each` after
    /// every evaluation: the one loop of the CLI and the app's worker. A diverging run stops
    /// with its error, its weights the last finite ones.
    pub fn drive(
        &mut self,
        stop: &AtomicBool,
        mut each: impl FnMut(&Self, &TmsMetrics),
    ) -> Result<Ended, TmsError> {
        while !self.is_finished() {
            if stop.load(Ordering::Relaxed) {
                return Ok(Ended::Stopped);
            }
            if let Some(metrics) = self.step()? {
                each(self, &metrics);
            }
        }
        Ok(Ended::Finished)
    }

    /// The loss and gradients of the next step's batches (each instance's drawn on the thread
    /// that uses it) into `self.grads`, without an update.
    fn compute_grads(&mut self) {
        let (rows, n) = (self.run.train.batch_size, self.run.model.n_features);
        let (seed, step) = (self.run.seed, self.step as u64);
        let task = &self.run.task;
        let pairs = (task.correlated_pairs, task.anticorrelated_pairs);
        let probabilities = &self.probabilities;
        loss_and_grads_drawing(
            &self.run.model,
            &self.weights,
            &self.importance,
            &mut self.batches,
            |i, batch| {
                batch.draw(
                    rows,
                    n,
                    probabilities[i],
                    pairs,
                    batch_seed(seed, step, i as u64),
                )
            },
            &mut self.grads,
        )
    }

    /// One step; an evaluation when it ends an evaluation period (and at the last step). A
    /// non-finite loss leaves the weights as they were.
    pub fn step(&mut self) -> Result<Option<TmsMetrics>, TmsError> {
        if self.is_finished() {
            return Err(TmsError::Finished);
        }
        let started = Instant::now();
        self.compute_grads();
        let grads = &self.grads;
        let loss: f64 = grads.loss.iter().sum();
        if !grads.all_finite() {
            return Err(TmsError::Diverged {
                step: self.step + 1,
                loss,
            });
        }
        let TmsWeights { w, b } = &mut self.weights;
        self.adam.step([w, b], [&grads.w, &grads.b], &self.run);
        self.step += 1;
        let (sums, count) = &mut self.loss_since_eval;
        sums.iter_mut().zip(&grads.loss).for_each(|(s, l)| *s += l);
        *count += 1;
        self.busy_s += started.elapsed().as_secs_f64();
        let due = self.step.is_multiple_of(self.run.train.eval_every) || self.is_finished();
        Ok(due.then(|| self.evaluate()))
    }

    /// The mean loss since the last evaluation and every instance's D*.
    fn evaluate(&mut self) -> TmsMetrics {
        let (sums, count) = std::mem::replace(
            &mut self.loss_since_eval,
            (vec![0.0; self.run.model.n_instances], 0),
        );
        let per_instance: Vec<f64> = sums.iter().map(|s| s / count.max(1) as f64).collect();
        TmsMetrics {
            step: self.step,
            loss: per_instance.iter().sum(),
            loss_per_instance: per_instance,
            dims_per_feature: self.dims_per_feature(),
            elapsed_s: self.busy_s,
        }
    }

    /// D* of every instance.
    pub fn dims_per_feature(&self) -> Vec<f64> {
        let (n, m) = (self.run.model.n_features, self.run.model.n_hidden);
        self.weights
            .w
            .chunks_exact(n * m)
            .map(|w| dims_per_feature(w, m))
            .collect()
    }

    /// Instance `i`'s geometry now.
    pub fn geometry(&self, i: usize) -> super::metrics::Geometry {
        let (n, m) = (self.run.model.n_features, self.run.model.n_hidden);
        geometry(&self.weights.w[i * n * m..(i + 1) * n * m], n, m)
    }
}
