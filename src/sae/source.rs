//! Where an SAE's activations come from: batches made on demand by running the model, so memory
//! stays bounded whatever the run's length.

use crate::model::kernels::cpu::matmul;
use crate::superposition::data::Batch;
use crate::superposition::{TmsRun, TmsWeights};

/// A model's activations at one hook, batch by batch.
pub trait Activations: Send {
    /// The activation's width (the SAE's `d_in`).
    fn d_in(&self) -> usize;
    /// The hook's name, as SAELens's `cfg.json` records it.
    fn hook_name(&self) -> String;
    /// `rows` fresh activations `[rows, d_in]` into `x`, from the stream `seed`.
    fn fill(&mut self, x: &mut Vec<f32>, rows: usize, seed: u64);
    /// The true feature directions in activation space (`[features, d_in]`), where the model
    /// has them: a superposition model's rows of W.
    fn true_features(&self) -> Option<Vec<f32>> {
        None
    }
    /// What made row `row` of the last batch, where the model's inputs are features: its
    /// active features and their values.
    fn input_features(&self, row: usize) -> Option<Vec<(usize, f32)>> {
        let _ = row;
        None
    }
}

/// A superposition model's hidden layer `h = W x` on its own sparse features, for one instance.
pub struct TmsHidden {
    instance: usize,
    n: usize,
    m: usize,
    /// The instance's `W [n, m]`.
    w: Vec<f32>,
    p: f64,
    pairs: (usize, usize),
    batch: Batch,
}

impl TmsHidden {
    /// Instance `instance` of a trained model; `None` past its instances.
    pub fn new(run: &TmsRun, weights: &TmsWeights, instance: usize) -> Option<Self> {
        let (n, m) = (run.model.n_features, run.model.n_hidden);
        if instance >= run.model.n_instances {
            return None;
        }
        Some(Self {
            instance,
            n,
            m,
            w: weights.w[instance * n * m..(instance + 1) * n * m].to_vec(),
            p: run.probabilities()[instance],
            pairs: (run.task.correlated_pairs, run.task.anticorrelated_pairs),
            batch: Batch::default(),
        })
    }
}

impl Activations for TmsHidden {
    fn d_in(&self) -> usize {
        self.m
    }

    fn hook_name(&self) -> String {
        format!("hook_hidden.{}", self.instance)
    }

    fn fill(&mut self, x: &mut Vec<f32>, rows: usize, seed: u64) {
        let (n, m) = (self.n, self.m);
        self.batch.draw(rows, n, self.p, self.pairs, seed);
        x.clear();
        x.resize(rows * m, 0.0);
        match &self.batch {
            Batch::Dense { x: features, .. } => {
                matmul(x, (rows, m, n), (features, n, 1), (&self.w, m, 1), false)
            }
            Batch::Sparse(s) => {
                for (b, h) in x.chunks_exact_mut(m).enumerate() {
                    let (features, values) = s.row(b);
                    for (&f, &v) in features.iter().zip(values) {
                        let row = &self.w[f as usize * m..(f as usize + 1) * m];
                        h.iter_mut().zip(row).for_each(|(h, &w)| *h += v * w);
                    }
                }
            }
        }
    }

    fn true_features(&self) -> Option<Vec<f32>> {
        Some(self.w.clone())
    }

    fn input_features(&self, row: usize) -> Option<Vec<(usize, f32)>> {
        if row >= self.batch.rows() {
            return None;
        }
        Some(match &self.batch {
            Batch::Dense { x, .. } => x[row * self.n..(row + 1) * self.n]
                .iter()
                .enumerate()
                .filter(|(_, v)| **v != 0.0)
                .map(|(f, &v)| (f, v))
                .collect(),
            Batch::Sparse(s) => {
                let (features, values) = s.row(row);
                features
                    .iter()
                    .map(|&f| f as usize)
                    .zip(values.iter().copied())
                    .collect()
            }
        })
    }
}
