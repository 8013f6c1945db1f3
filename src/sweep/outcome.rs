//! A run's `result.json`: how it ended, when its milestones happened, its regime, and its last
//! numbers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metrics::{Metrics, milestone};
use crate::superposition::TmsMetrics;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Trained to the end, or to its milestone when the sweep stops there.
    Done,
    /// The loss became NaN or infinite.
    Diverged,
    /// It could not start or crashed (the message says why).
    Failed,
    /// Stopped by its time limit (Slurm's `--time`, or the local executor's).
    Timeout,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Diverged => "diverged",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
        }
    }
}

/// What `result.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `transformer` or `superposition`.
    pub model: String,
    /// The task's name (`modular_addition`, …; `sparse_features` for superposition).
    pub task: String,
    /// `epoch` or `step`: the unit of `trained` and the milestones.
    pub unit: String,
    /// Epochs or steps trained.
    pub trained: usize,
    /// Seconds the run took, start to end, evaluations included.
    pub wall_s: f64,
    /// When things first happened, in `unit`: `milestone` (the task's: see `toylens train
    /// --stop-at-milestone`) and, for each accuracy the task records, `<name>_99`: the first
    /// evaluation at 99 % or more. Absent: it never happened.
    pub milestones: BTreeMap<String, usize>,
    /// For tasks with a train and a test accuracy (modular addition): `comprehension`,
    /// `grokking`, `memorization` or `confusion` (see [`regime`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regime: Option<String>,
    /// The last evaluation's numbers, by name (lists as their mean, and `score` the task's
    /// headline score).
    pub metrics: BTreeMap<String, f64>,
}

/// Liu et al. (2022)'s four phases from when train and test accuracy first reached 99 %:
/// **confusion** (train never did), **memorization** (train did, test never did),
/// **comprehension** (test did within as long again as train took: `test ≤ 2 · train`) and
/// **grokking** (test did, later than that). Liu et al. use fixed step budgets instead; a
/// ratio keeps the classes meaningful whatever the run's length.
pub fn regime(train_99: Option<usize>, test_99: Option<usize>) -> &'static str {
    match (train_99, test_99) {
        (None, _) => "confusion",
        (Some(_), None) => "memorization",
        (Some(train), Some(test)) if test <= 2 * train.max(1) => "comprehension",
        (Some(_), Some(_)) => "grokking",
    }
}

/// The regimes in the order of their colours in the phase-diagram view.
pub const REGIMES: [&str; 4] = ["comprehension", "grokking", "memorization", "confusion"];

/// Every number of one evaluation's JSON, by name: lists (of numbers, or of lists) as their
/// mean.
fn numbers(value: &Value) -> BTreeMap<String, f64> {
    fn flatten(v: &Value, out: &mut Vec<f64>) {
        match v {
            Value::Number(n) => out.extend(n.as_f64()),
            Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    if let Value::Object(map) = value {
        for (key, v) in map {
            let mut all = Vec::new();
            flatten(v, &mut all);
            if !all.is_empty() && all.iter().all(|x| x.is_finite()) {
                out.insert(key.clone(), all.iter().sum::<f64>() / all.len() as f64);
            }
        }
    }
    out
}

/// The milestones, metrics and regime of a transformer run's history.
pub fn transformer_result(
    history: &[Metrics],
    ln_vocab: f64,
) -> (
    BTreeMap<String, usize>,
    BTreeMap<String, f64>,
    Option<String>,
) {
    let mut milestones = BTreeMap::new();
    if let Some(m) = milestone(history, ln_vocab) {
        milestones.insert("milestone".to_string(), m);
    }
    let values: Vec<Value> = history
        .iter()
        .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
        .collect();
    // Each accuracy: the first evaluation at 99 % or more.
    if let Some(Value::Object(first)) = values.first() {
        for key in first.keys().filter(|k| k.contains("acc")) {
            let reached = history.iter().zip(&values).find(|(_, v)| {
                v.get(key)
                    .and_then(Value::as_f64)
                    .is_some_and(|a| a >= 0.99)
            });
            if let Some((m, _)) = reached {
                milestones.insert(format!("{key}_99"), m.progress());
            }
        }
    }
    let mut metrics = values.last().map(numbers).unwrap_or_default();
    if let Some(last) = history.last() {
        metrics.insert("loss".into(), last.headline_loss());
        let score = match last {
            Metrics::SkipTrigram(m) => m.val_acc_signal,
            Metrics::Induction(m) => m
                .induction_score
                .last()
                .into_iter()
                .flatten()
                .fold(0.0, |a, &b| f64::max(a, b)),
            Metrics::ModularAddition(m) => m.test_acc,
            Metrics::Sequences(m) => m.val_seq_acc,
        };
        metrics.insert("score".into(), score);
    }
    let regime = matches!(history.last(), Some(Metrics::ModularAddition(_))).then(|| {
        regime(
            milestones.get("train_acc_99").copied(),
            milestones.get("test_acc_99").copied(),
        )
        .to_string()
    });
    (milestones, metrics, regime)
}

/// The metrics of a superposition run: its last evaluation's (lists as their mean: the loss and
/// D* over instances) and, from the trained weights `w [instances, features, hidden]`, the
/// features each instance represents (‖W_i‖ > 0.5), on average.
pub fn superposition_metrics(
    last: Option<&TmsMetrics>,
    w: &[f32],
    instances: usize,
    features: usize,
    hidden: usize,
) -> BTreeMap<String, f64> {
    let mut metrics = last
        .map(|m| numbers(&serde_json::to_value(m).unwrap_or(Value::Null)))
        .unwrap_or_default();
    let represented = w
        .chunks_exact(hidden)
        .filter(|row| row.iter().map(|v| v * v).sum::<f32>().sqrt() > 0.5)
        .count();
    if instances > 0 && w.len() == instances * features * hidden {
        metrics.insert(
            "features_represented".into(),
            represented as f64 / instances as f64,
        );
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ModularMetrics;

    fn modular(epoch: usize, train_acc: f64, test_acc: f64) -> Metrics {
        Metrics::ModularAddition(ModularMetrics {
            epoch,
            train_loss: 1.0 - train_acc,
            train_acc,
            test_loss: 1.0 - test_acc,
            test_acc,
            weight_norm: 10.0,
            elapsed_s: epoch as f64 / 100.0,
            progress: None,
        })
    }

    #[test]
    fn a_late_test_accuracy_is_grokking() {
        let history = vec![
            modular(100, 0.5, 0.01),
            modular(200, 1.0, 0.02),
            modular(300, 1.0, 0.5),
            modular(500, 1.0, 0.995),
        ];
        let (milestones, metrics, regime) = transformer_result(&history, 4.0);
        assert_eq!(milestones["train_acc_99"], 200);
        assert_eq!(milestones["test_acc_99"], 500);
        assert_eq!(milestones["milestone"], 500);
        assert_eq!(regime.as_deref(), Some("grokking"));
        assert_eq!(metrics["test_acc"], 0.995);
        assert_eq!(metrics["score"], 0.995);
        let (_, _, regime) = transformer_result(&history[..3], 4.0);
        assert_eq!(regime.as_deref(), Some("memorization"));
        let (_, _, regime) = transformer_result(&history[..1], 4.0);
        assert_eq!(regime.as_deref(), Some("confusion"));
        assert_eq!(super::regime(Some(200), Some(400)), "comprehension");
        assert_eq!(super::regime(Some(200), Some(401)), "grokking");
    }
}
