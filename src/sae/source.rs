//! Where an SAE's activations come from: batches made on demand by running the model, so memory
//! stays bounded whatever the run's length.

use super::model::{Architecture, SaeWeights};
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
    fn fill(&mut self, x: &mut Vec<f32>, rows: usize, seed: u64) -> Result<(), String>;
    /// The true feature directions in activation space (`[features, d_in]`), where the model
    /// has them: a superposition model's rows of W.
    fn true_features(&self) -> Option<Vec<f32>> {
        None
    }
    /// What made row `row` of the last batch.
    fn origin(&self, row: usize) -> Option<Origin>;
    /// The model's cross-entropy on its task's validation data clean, with the hook
    /// zero-ablated, and with `sae`'s reconstruction spliced in, where the model has a task
    /// loss (transformers).
    fn ce_losses(&mut self, sae: &SaeWeights, architecture: Architecture) -> Option<CeLosses> {
        let _ = (sae, architecture);
        None
    }
    /// The unembedding `W_U [d_in, d_vocab_out]` where the hook lies in the residual stream:
    /// a latent's direct effect on the logits is its decoder row times it.
    fn unembed(&self) -> Option<Vec<f32>> {
        None
    }
    /// Each latent's dominant Fourier frequency over every input pair, where the model does
    /// modular addition and the SAE reads its answer position.
    fn latent_frequencies(
        &self,
        sae: &SaeWeights,
        architecture: Architecture,
    ) -> Option<Vec<Option<super::fourier::Frequency>>> {
        let _ = (sae, architecture);
        None
    }
}

/// What produced one activation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A superposition model's input: its active features and their values.
    Features(Vec<(usize, f32)>),
    /// A transformer's sequence, and the position the activation is at.
    Token { sequence: Vec<u32>, position: usize },
}

/// Cross-entropies that give the CE loss recovered.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CeLosses {
    pub clean: f64,
    pub zero_ablated: f64,
    pub spliced: f64,
}

impl CeLosses {
    /// `(CE zero-ablated − CE spliced) / (CE zero-ablated − CE clean)`: 1 when the
    /// reconstruction loses nothing, 0 when it is as bad as zeros.
    pub fn recovered(&self) -> f64 {
        (self.zero_ablated - self.spliced) / (self.zero_ablated - self.clean)
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
    /// The instance a superposition model's hook `hook_hidden.I` names, if the model (of
    /// `instances`) has it.
    pub fn instance_of(hook: &str, instances: usize) -> Option<usize> {
        hook.strip_prefix("hook_hidden.")
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|&i| i < instances)
    }

    /// The hidden layer at `hook`, or why the model has no such hook.
    pub fn at_hook(run: &TmsRun, weights: &TmsWeights, hook: &str) -> Result<Self, String> {
        let instances = run.model.n_instances;
        Self::instance_of(hook, instances)
            .and_then(|i| Self::new(run, weights, i))
            .ok_or_else(|| {
                format!(
                    "a superposition model's hooks are hook_hidden.0 to hook_hidden.{} (its \
                     instances), not \"{hook}\"",
                    instances.saturating_sub(1)
                )
            })
    }

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

    fn fill(&mut self, x: &mut Vec<f32>, rows: usize, seed: u64) -> Result<(), String> {
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
        Ok(())
    }

    fn true_features(&self) -> Option<Vec<f32>> {
        Some(self.w.clone())
    }

    fn origin(&self, row: usize) -> Option<Origin> {
        if row >= self.batch.rows() {
            return None;
        }
        Some(Origin::Features(match &self.batch {
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
        }))
    }
}
