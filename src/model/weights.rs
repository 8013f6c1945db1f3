//! The model's parameters as plain host data, under TransformerLens's state-dict names. This is
//! what crosses threads, goes into snapshots and checkpoints: it never shares storage with the
//! optimiser's tensors.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use super::ModelError;
use crate::config::{Init, ModelConfig};
use crate::seed::{Stream, stream_rng};

/// TL's name of an attention parameter of a layer, e.g. `attn(0, "W_Q")` is `blocks.0.attn.W_Q`.
pub fn attn(layer: usize, short: &str) -> String {
    format!("blocks.{layer}.attn.{short}")
}

/// Every parameter of a model, by TL name, each row-major in TL's shape.
///
/// A value: a clone shares each tensor's values until one of them writes to it (copy on
/// write), so a snapshot, a job's inputs or a checkpoint of a large model costs no copy on the UI
/// thread (tens of MB at a vocabulary of 1000, which stalled frames).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Weights(BTreeMap<String, Arc<Vec<f32>>>);

impl Weights {
    /// The values of `name`. Weights are validated against their config wherever they enter
    /// (init, checkpoint, model), so a name the config defines is always present.
    pub fn get(&self, name: &str) -> &[f32] {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("weights have no tensor {name}"))
            .as_slice()
    }

    pub fn try_get(&self, name: &str) -> Option<&[f32]> {
        self.0.get(name).map(|v| v.as_slice())
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Vec<f32>> {
        self.0.get_mut(name).map(Arc::make_mut)
    }

    pub fn insert(&mut self, name: impl Into<String>, values: Vec<f32>) {
        self.0.insert(name.into(), Arc::new(values));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[f32])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Vec<f32>)> {
        self.0
            .iter_mut()
            .map(|(k, v)| (k.as_str(), Arc::make_mut(v)))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All zeros (LayerNorm weights too), shaped for `cfg`.
    pub fn zeros(cfg: &ModelConfig) -> Self {
        Self(
            cfg.params()
                .into_iter()
                .map(|p| {
                    let n = p.numel();
                    (p.name, Arc::new(vec![0.0; n]))
                })
                .collect(),
        )
    }

    /// TL's default init from `seed`: every `W_*` normal(0, init_range), drawn in state-dict
    /// order from the seed's init stream; biases zero; LayerNorm weights one. Deterministic on
    /// every device.
    pub fn init(cfg: &ModelConfig, seed: u64) -> Self {
        let mut rng = stream_rng(seed, Stream::Init);
        // A zero std is allowed (all-zero init); Normal rejects only negative or NaN std.
        let normal =
            Normal::new(0.0f64, cfg.init_range()).unwrap_or(Normal::new(0.0, 0.0).unwrap());
        let mut out = BTreeMap::new();
        for p in cfg.params() {
            let n = p.numel();
            let values = match p.init {
                Init::Normal => (0..n).map(|_| normal.sample(&mut rng) as f32).collect(),
                Init::Zeros => vec![0.0; n],
                Init::Ones => vec![1.0; n],
            };
            out.insert(p.name, Arc::new(values));
        }
        Self(out)
    }

    /// Checks the weights hold exactly `cfg`'s parameters, each of the right size and finite.
    pub fn validate(&self, cfg: &ModelConfig) -> Result<(), ModelError> {
        let specs = cfg.params();
        for p in &specs {
            let Some(values) = self.0.get(&p.name) else {
                return Err(ModelError::Weights(format!("{} is missing", p.name)));
            };
            if values.len() != p.numel() {
                return Err(ModelError::Weights(format!(
                    "{} has {} values, expected {} (shape {:?})",
                    p.name,
                    values.len(),
                    p.numel(),
                    p.shape
                )));
            }
            if let Some(i) = values.iter().position(|x| !x.is_finite()) {
                return Err(ModelError::Weights(format!(
                    "{} holds a non-finite value ({}) at flat index {i}",
                    p.name, values[i]
                )));
            }
        }
        if let Some(extra) = self.0.keys().find(|k| !specs.iter().any(|p| &p.name == *k)) {
            return Err(ModelError::Weights(format!(
                "{extra} is not a parameter of this model"
            )));
        }
        Ok(())
    }

    pub fn all_finite(&self) -> bool {
        self.0.values().all(|v| v.iter().all(|x| x.is_finite()))
    }
}
