//! A Toy Models of Superposition run: the model (`n_instances` independent ReLU- or linear-output
//! models `x' = act(WᵀWx + b)`), its sparse features (each instance's feature probability and
//! the features' importance), and training.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most features, hidden dimensions and instances' weights a run may hold: W is
/// `[instances, features, hidden]` floats, and a batch's activations `[batch, features]` per
/// instance.
pub const MAX_WEIGHTS: usize = 50_000_000;
/// Most floats one step's activations may take (each instance's `[batch, features]` twice).
pub const MAX_STEP_FLOATS: usize = 200_000_000;
/// Most evaluations a run may make: each is kept in its history.
pub const MAX_EVALUATIONS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Error)]
#[error("{0}")]
pub struct TmsConfigError(pub String);

/// The output non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// `x' = ReLU(WᵀWx + b)`, the paper's model with superposition.
    #[default]
    Relu,
    /// `x' = WᵀWx + b`, which keeps only the most important features, orthogonal.
    Linear,
}

/// The kind of a superposition model, in JSON `"kind": "tms"`: what tells a run config of this
/// model from a transformer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    #[default]
    Tms,
}

/// The model family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmsModel {
    #[serde(default)]
    pub kind: ModelKind,
    pub n_features: usize,
    pub n_hidden: usize,
    pub n_instances: usize,
    #[serde(default)]
    pub output: Output,
}

/// Each instance's feature probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probability {
    /// One probability for every instance.
    Constant(f64),
    /// From the first to the last instance, evenly on a log scale: `[hi, lo]` gives instance
    /// `k` of `I` the probability `hi · (lo / hi)^(k / (I − 1))`.
    LogSpaced([f64; 2]),
    /// One per instance.
    List(Vec<f64>),
}

/// Each feature's importance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Importance {
    /// Feature `i` weighs `decay^i` (1: all equal), in every instance.
    Decay(f64),
    /// One per feature, in every instance.
    List(Vec<f64>),
    /// One list per instance.
    PerInstance(Vec<Vec<f64>>),
}

/// The data: each feature uniform on [0, 1) with its instance's probability, else 0. The first
/// `correlated_pairs` pairs of features are active together (one coin per pair), the next
/// `anticorrelated_pairs` pairs never together (the pair active with probability 2p, then one
/// of its two at random): the paper's section on correlated features. Either way each feature is
/// active with probability p, and its value is its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseFeatures {
    pub feature_probability: Probability,
    pub importance: Importance,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub correlated_pairs: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub anticorrelated_pairs: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Training: AdamW with a constant learning rate, fresh batches every step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TmsTraining {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    /// Measure the features' geometry every this many steps.
    pub eval_every: usize,
}

impl Default for TmsTraining {
    fn default() -> Self {
        Self {
            steps: 10_000,
            batch_size: 1024,
            lr: 1e-3,
            weight_decay: 0.01,
            betas: [0.9, 0.999],
            eps: 1e-8,
            eval_every: 100,
        }
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmsRun {
    #[serde(default)]
    pub seed: u64,
    pub model: TmsModel,
    pub task: SparseFeatures,
    #[serde(default)]
    pub train: TmsTraining,
}

/// The superposition presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TmsPreset {
    /// 5 features into 2 hidden dimensions, importance 0.9^i, seven feature probabilities.
    #[value(name = "tms-intro")]
    Intro,
    /// 200 features into 20, 20 instances from probability 1 to 0.05: the feature geometry.
    #[value(name = "tms-geometry")]
    Geometry,
    /// 2 features into 1, an instance per point of a grid of feature probability × the second
    /// feature's relative importance: the phase diagram.
    #[value(name = "tms-phase")]
    Phase,
}

/// The phase diagram's grid: feature probabilities (columns) from 1 down to 0.01 and relative
/// importances of the second feature (rows) from 0.1 up to 10, both evenly on a log scale.
pub const PHASE_GRID: usize = 16;

/// Column `c`'s feature probability and row `r`'s relative importance of the phase grid.
pub fn phase_point(r: usize, c: usize) -> (f64, f64) {
    let t = |k: usize| k as f64 / (PHASE_GRID - 1) as f64;
    (0.01f64.powf(t(c)), 0.1 * 100f64.powf(t(r)))
}

impl TmsRun {
    /// Whether the run is the phase-diagram preset's grid (whatever its training settings):
    /// its instances are then the cells of [`phase_point`]'s map.
    pub fn is_phase_grid(&self) -> bool {
        let phase = Self::from_preset(TmsPreset::Phase);
        self.model == phase.model && self.task == phase.task
    }

    /// Whether a run config's JSON is a superposition run's (its model's `kind` is `tms`).
    pub fn is_tms_json(value: &serde_json::Value) -> bool {
        value.pointer("/model/kind").and_then(|k| k.as_str()) == Some("tms")
    }

    /// A superposition run config, checked.
    pub fn from_json(text: &str) -> Result<Self, TmsConfigError> {
        let run: Self =
            serde_json::from_str(text).map_err(|e| TmsConfigError(format!("config: {e}")))?;
        run.validate()?;
        Ok(run)
    }

    pub fn from_preset(preset: TmsPreset) -> Self {
        match preset {
            TmsPreset::Intro => Self {
                seed: 0,
                model: TmsModel {
                    kind: ModelKind::Tms,
                    n_features: 5,
                    n_hidden: 2,
                    n_instances: 7,
                    output: Output::Relu,
                },
                task: SparseFeatures {
                    feature_probability: Probability::List(vec![
                        1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001,
                    ]),
                    importance: Importance::Decay(0.9),
                    correlated_pairs: 0,
                    anticorrelated_pairs: 0,
                },
                train: TmsTraining {
                    steps: 5_000,
                    eval_every: 50,
                    ..TmsTraining::default()
                },
            },
            TmsPreset::Phase => {
                let cells = PHASE_GRID * PHASE_GRID;
                let point = |k: usize| phase_point(k / PHASE_GRID, k % PHASE_GRID);
                Self {
                    seed: 0,
                    model: TmsModel {
                        kind: ModelKind::Tms,
                        n_features: 2,
                        n_hidden: 1,
                        n_instances: cells,
                        output: Output::Relu,
                    },
                    task: SparseFeatures {
                        feature_probability: Probability::List(
                            (0..cells).map(|k| point(k).0).collect(),
                        ),
                        importance: Importance::PerInstance(
                            (0..cells).map(|k| vec![1.0, point(k).1]).collect(),
                        ),
                        correlated_pairs: 0,
                        anticorrelated_pairs: 0,
                    },
                    train: TmsTraining {
                        steps: 5_000,
                        eval_every: 250,
                        ..TmsTraining::default()
                    },
                }
            }
            TmsPreset::Geometry => Self {
                seed: 0,
                model: TmsModel {
                    kind: ModelKind::Tms,
                    n_features: 200,
                    n_hidden: 20,
                    n_instances: 20,
                    output: Output::Relu,
                },
                task: SparseFeatures {
                    feature_probability: Probability::LogSpaced([1.0, 0.05]),
                    importance: Importance::Decay(1.0),
                    correlated_pairs: 0,
                    anticorrelated_pairs: 0,
                },
                train: TmsTraining::default(),
            },
        }
    }

    /// Each instance's feature probability.
    pub fn probabilities(&self) -> Vec<f64> {
        let n = self.model.n_instances;
        match &self.task.feature_probability {
            Probability::Constant(p) => vec![*p; n],
            Probability::LogSpaced([hi, lo]) => (0..n)
                .map(|k| {
                    let t = if n > 1 {
                        k as f64 / (n - 1) as f64
                    } else {
                        0.0
                    };
                    hi * (lo / hi).powf(t)
                })
                .collect(),
            Probability::List(list) => list.clone(),
        }
    }

    /// Each instance's importance of each feature, `[instances × features]`.
    pub fn importances(&self) -> Vec<f64> {
        let (i, n) = (self.model.n_instances, self.model.n_features);
        let shared: Vec<f64> = match &self.task.importance {
            Importance::Decay(d) => (0..n).map(|f| d.powi(f as i32)).collect(),
            Importance::List(list) => list.clone(),
            Importance::PerInstance(lists) => return lists.concat(),
        };
        (0..i).flat_map(|_| shared.iter().copied()).collect()
    }

    /// Checks every setting; the message says what to change.
    pub fn validate(&self) -> Result<(), TmsConfigError> {
        let err = |m: String| Err(TmsConfigError(m));
        let m = &self.model;
        if m.n_features == 0 || m.n_hidden == 0 || m.n_instances == 0 {
            return err(format!(
                "n_features ({}), n_hidden ({}) and n_instances ({}) must each be at least 1",
                m.n_features, m.n_hidden, m.n_instances
            ));
        }
        if m.n_hidden > m.n_features {
            return err(format!(
                "n_hidden ({}) must not exceed n_features ({}): superposition is about fewer \
                 dimensions than features",
                m.n_hidden, m.n_features
            ));
        }
        let weights = (m.n_instances as u128) * (m.n_features as u128) * (m.n_hidden as u128);
        if weights > MAX_WEIGHTS as u128 {
            return err(format!(
                "{} instances × {} features × {} hidden are {weights} weights; at most \
                 {MAX_WEIGHTS} fit",
                m.n_instances, m.n_features, m.n_hidden
            ));
        }
        let t = &self.train;
        let step = (t.batch_size as u128) * (m.n_features as u128) * (m.n_instances as u128) * 2;
        if t.batch_size == 0 || step > MAX_STEP_FLOATS as u128 {
            return err(format!(
                "batch_size {} × {} features × {} instances does not fit a step (at most \
                 {MAX_STEP_FLOATS} floats, and at least one sample)",
                t.batch_size, m.n_features, m.n_instances
            ));
        }
        let probs = self.probabilities();
        if probs.len() != m.n_instances {
            return err(format!(
                "feature_probability lists {} values for {} instances",
                probs.len(),
                m.n_instances
            ));
        }
        if let Some(p) = probs.iter().find(|p| !(**p > 0.0 && **p <= 1.0)) {
            return err(format!("a feature probability must be in (0, 1], got {p}"));
        }
        let task = &self.task;
        let paired = task
            .correlated_pairs
            .saturating_add(task.anticorrelated_pairs)
            .saturating_mul(2);
        if paired > m.n_features {
            return err(format!(
                "{} correlated and {} anticorrelated pairs are {paired} features; there are {}",
                task.correlated_pairs, task.anticorrelated_pairs, m.n_features
            ));
        }
        if task.anticorrelated_pairs > 0
            && let Some(p) = probs.iter().find(|p| **p > 0.5)
        {
            return err(format!(
                "an anticorrelated pair is active with probability 2p, so p must be at most 1/2 \
                 with anticorrelated pairs; got {p}"
            ));
        }
        let lists: Vec<usize> = match &self.task.importance {
            Importance::Decay(_) => vec![m.n_features],
            Importance::List(l) => vec![l.len()],
            Importance::PerInstance(ls) if ls.len() != m.n_instances => {
                return err(format!(
                    "importance lists {} instances' values for {} instances",
                    ls.len(),
                    m.n_instances
                ));
            }
            Importance::PerInstance(ls) => ls.iter().map(Vec::len).collect(),
        };
        if let Some(len) = lists.iter().find(|&&l| l != m.n_features) {
            return err(format!(
                "importance lists {len} values for {} features",
                m.n_features
            ));
        }
        // The values as given, not the instances × features they expand to: the form checks
        // the settings every frame.
        let given: Box<dyn Iterator<Item = f64> + '_> = match &self.task.importance {
            // decay^i is monotonic in i: the decay and its last power say it all.
            Importance::Decay(d) => Box::new([*d, d.powi((m.n_features - 1) as i32)].into_iter()),
            Importance::List(list) => Box::new(list.iter().copied()),
            Importance::PerInstance(lists) => Box::new(lists.iter().flatten().copied()),
        };
        if let Some(i) = given.into_iter().find(|i| !(i.is_finite() && *i >= 0.0)) {
            return err(format!(
                "an importance must be finite and at least 0, got {i}"
            ));
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return err(format!("lr must be positive, got {}", t.lr));
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return err(format!(
                "weight_decay must be at least 0, got {}",
                t.weight_decay
            ));
        }
        if t.betas.iter().any(|b| !(0.0..1.0).contains(b)) || t.eps.is_nan() || t.eps <= 0.0 {
            return err("betas must be in [0, 1) and eps positive".into());
        }
        if t.steps == 0 || t.eval_every == 0 {
            return err("steps and eval_every must be at least 1".into());
        }
        // Each evaluation is kept (its loss and D* per instance): a bounded number of them.
        if t.steps / t.eval_every > MAX_EVALUATIONS {
            return err(format!(
                "{} steps with an evaluation every {} are {} evaluations; at most \
                 {MAX_EVALUATIONS}: evaluate less often",
                t.steps,
                t.eval_every,
                t.steps / t.eval_every
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_bad_settings_say_what_to_change() {
        for preset in [TmsPreset::Intro, TmsPreset::Geometry, TmsPreset::Phase] {
            let run = TmsRun::from_preset(preset);
            run.validate().unwrap();
            let text = serde_json::to_string(&run).unwrap();
            assert!(TmsRun::is_tms_json(&serde_json::from_str(&text).unwrap()));
            assert_eq!(TmsRun::from_json(&text).unwrap(), run);
        }
        let written = r#"{"model": {"kind": "tms", "n_features": 200, "n_hidden": 20, "n_instances": 20, "output": "relu"},
            "task": {"feature_probability": {"log_spaced": [1.0, 0.05]}, "importance": {"decay": 1.0}},
            "train": {"steps": 100}}"#;
        let run = TmsRun::from_json(written).unwrap();
        assert_eq!(run.train.steps, 100);
        assert_eq!(run.model, TmsRun::from_preset(TmsPreset::Geometry).model);
        assert!(TmsRun::from_json(r#"{"model": {"kind": "tms", "n_features": 0, "n_hidden": 1, "n_instances": 1}, "task": {"feature_probability": {"constant": 0.5}, "importance": {"decay": 1.0}}}"#)
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
        let geometry = TmsRun::from_preset(TmsPreset::Geometry);
        let p = geometry.probabilities();
        assert_eq!(p.len(), 20);
        assert!((p[0] - 1.0).abs() < 1e-12 && (p[19] - 0.05).abs() < 1e-12);
        // The reference's p_k = 20^(−k/19).
        assert!((p[7] - 20f64.powf(-7.0 / 19.0)).abs() < 1e-12);
        let intro = TmsRun::from_preset(TmsPreset::Intro);
        assert!((intro.importances()[2] - 0.81).abs() < 1e-12);
        let bad = |edit: &dyn Fn(&mut TmsRun), needle: &str| {
            let mut run = TmsRun::from_preset(TmsPreset::Intro);
            edit(&mut run);
            let err = run.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err} lacks {needle}");
        };
        bad(&|r| r.model.n_features = 0, "must each be at least 1");
        bad(&|r| r.model.n_hidden = 6, "must not exceed n_features");
        bad(
            &|r| r.task.correlated_pairs = 3,
            "3 correlated and 0 anticorrelated pairs are 6 features; there are 5",
        );
        bad(
            &|r| r.task.anticorrelated_pairs = 1,
            "p must be at most 1/2 with anticorrelated pairs; got 1",
        );
        bad(
            &|r| r.task.feature_probability = Probability::Constant(0.0),
            "must be in (0, 1]",
        );
        bad(
            &|r| r.task.feature_probability = Probability::Constant(1.5),
            "must be in (0, 1]",
        );
        bad(
            &|r| r.task.feature_probability = Probability::List(vec![0.5]),
            "lists 1 values for 7 instances",
        );
        bad(
            &|r| {
                r.model.n_features = 1_000_000_000;
                r.task.importance = Importance::Decay(1.0);
            },
            "weights; at most",
        );
        bad(&|r| r.train.lr = -1.0, "lr must be positive");
        bad(
            &|r| r.task.importance = Importance::Decay(f64::NAN),
            "importance must be finite",
        );
    }
}
