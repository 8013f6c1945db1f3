//! What training reports: one [`StepMetrics`] per optimiser step and one [`Metrics`] per
//! evaluation, in the task's own terms. Checkpoints store these records and training makes
//! them, so they live below both.

use serde::{Deserialize, Serialize};

use crate::analysis::ProgressMeasures;

/// One optimiser step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// 1-based epoch the step belongs to (the step itself for step-counted tasks).
    pub epoch: usize,
    /// 1-based global step.
    pub step: usize,
    /// Mean cross-entropy of the batch before the update.
    pub loss: f64,
    /// Accuracy of the batch before the update, where the step measures it.
    pub acc: Option<f64>,
    /// Samples seen so far in the run.
    pub samples: u64,
    /// Seconds spent in steps so far (pauses and evaluations excluded), for throughput and ETA.
    pub busy_s: f64,
}

/// One skip-trigram epoch: train metrics are running (pre-update) means over the epoch, as the
/// notebook's `train()` computes them, but true per-sample means; validation is measured after
/// the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub train_acc_signal: f64,
    pub train_acc_noise: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    pub val_acc_signal: f64,
    pub val_acc_noise: f64,
    /// Seconds since the run started.
    pub elapsed_s: f64,
}

/// One evaluation of the induction task on its fixed validation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InductionMetrics {
    pub step: usize,
    /// Mean training loss of the steps since the previous evaluation.
    pub train_loss: f64,
    /// Next-token loss predicting tokens `1..half` (floor ln V: nothing to learn).
    pub loss_first_half: f64,
    /// Next-token loss predicting tokens `half+1..2·half` (floor 0, by copying).
    pub loss_repeated_half: f64,
    /// `[layer][head]`: mean attention from each repeated position to the token after its
    /// earlier occurrence.
    pub induction_score: Vec<Vec<f64>>,
    /// `[layer][head]`: mean attention from each position to the one before it.
    pub prev_token_score: Vec<Vec<f64>>,
    /// Seconds of training so far (steps only; evaluations and pauses excluded).
    pub elapsed_s: f64,
}

/// One evaluation of modular addition on the whole training and test sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModularMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    /// √(Σ w²) over every parameter.
    pub weight_norm: f64,
    /// Seconds of training so far (steps only; evaluations and pauses excluded).
    pub elapsed_s: f64,
    /// Nanda et al.'s progress measures, for models with an MLP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressMeasures>,
}

/// One evaluation of a data-file task: loss and accuracy at the scored positions of the
/// validation sequences and of (up to [`TRAIN_EVAL_SEQUENCES`] of) the training ones, measured
/// after the epoch in the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequencesMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    /// The share of validation sequences with every scored position right.
    pub val_seq_acc: f64,
    /// Validation accuracy at each position where some sequence scores it (`null` elsewhere).
    pub acc_by_position: Vec<Option<f64>>,
    /// Seconds of training so far (steps only; evaluations and pauses excluded).
    pub elapsed_s: f64,
}

/// Training sequences an evaluation measures train loss and accuracy on (a fixed draw, when
/// there are more).
pub const TRAIN_EVAL_SEQUENCES: usize = 2048;

/// One evaluation. In files each kind is told apart by its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Metrics {
    SkipTrigram(EpochMetrics),
    Induction(InductionMetrics),
    ModularAddition(ModularMetrics),
    Sequences(SequencesMetrics),
}

impl Metrics {
    /// Training progress at this evaluation, in the task's unit (epochs, or steps).
    pub fn progress(&self) -> usize {
        match self {
            Metrics::SkipTrigram(m) => m.epoch,
            Metrics::Induction(m) => m.step,
            Metrics::ModularAddition(m) => m.epoch,
            Metrics::Sequences(m) => m.epoch,
        }
    }

    pub fn elapsed_s(&self) -> f64 {
        match self {
            Metrics::SkipTrigram(m) => m.elapsed_s,
            Metrics::Induction(m) => m.elapsed_s,
            Metrics::ModularAddition(m) => m.elapsed_s,
            Metrics::Sequences(m) => m.elapsed_s,
        }
    }

    /// The loss the task is judged by: validation, repeated-half, or test loss.
    pub fn headline_loss(&self) -> f64 {
        match self {
            Metrics::SkipTrigram(m) => m.val_loss,
            Metrics::Induction(m) => m.loss_repeated_half,
            Metrics::ModularAddition(m) => m.test_loss,
            Metrics::Sequences(m) => m.val_loss,
        }
    }

    pub fn skip_trigram(&self) -> Option<&EpochMetrics> {
        match self {
            Metrics::SkipTrigram(m) => Some(m),
            _ => None,
        }
    }
    pub fn induction(&self) -> Option<&InductionMetrics> {
        match self {
            Metrics::Induction(m) => Some(m),
            _ => None,
        }
    }
    pub fn modular(&self) -> Option<&ModularMetrics> {
        match self {
            Metrics::ModularAddition(m) => Some(m),
            _ => None,
        }
    }
    pub fn sequences(&self) -> Option<&SequencesMetrics> {
        match self {
            Metrics::Sequences(m) => Some(m),
            _ => None,
        }
    }
}

/// The metric history as CSV, one row per evaluation, with the task's own columns (per-head
/// scores as `induction_L{l}H{h}` and `prev_token_L{l}H{h}`).
pub fn history_csv(history: &[Metrics]) -> String {
    let row = |values: Vec<String>| values.join(",") + "\n";
    let mut out = String::new();
    match history.first() {
        None | Some(Metrics::SkipTrigram(_)) => {
            out += "epoch,train_loss,train_acc,train_acc_signal,train_acc_noise,val_loss,val_acc,val_acc_signal,val_acc_noise,elapsed_s\n";
            for m in history.iter().filter_map(Metrics::skip_trigram) {
                out += &row(vec![
                    m.epoch.to_string(),
                    m.train_loss.to_string(),
                    m.train_acc.to_string(),
                    m.train_acc_signal.to_string(),
                    m.train_acc_noise.to_string(),
                    m.val_loss.to_string(),
                    m.val_acc.to_string(),
                    m.val_acc_signal.to_string(),
                    m.val_acc_noise.to_string(),
                    m.elapsed_s.to_string(),
                ]);
            }
        }
        Some(Metrics::Induction(first)) => {
            let mut header = vec![
                "step".to_string(),
                "train_loss".into(),
                "loss_first_half".into(),
                "loss_repeated_half".into(),
            ];
            for name in ["induction", "prev_token"] {
                for (l, heads) in first.induction_score.iter().enumerate() {
                    header.extend((0..heads.len()).map(|h| format!("{name}_L{l}H{h}")));
                }
            }
            header.push("elapsed_s".into());
            out += &row(header);
            for m in history.iter().filter_map(Metrics::induction) {
                let mut values = vec![
                    m.step.to_string(),
                    m.train_loss.to_string(),
                    m.loss_first_half.to_string(),
                    m.loss_repeated_half.to_string(),
                ];
                for scores in [&m.induction_score, &m.prev_token_score] {
                    values.extend(scores.iter().flatten().map(|s| s.to_string()));
                }
                values.push(m.elapsed_s.to_string());
                out += &row(values);
            }
        }
        Some(Metrics::ModularAddition(_)) => {
            out += "epoch,train_loss,train_acc,test_loss,test_acc,weight_norm,restricted_loss,excluded_loss,key_frequencies,elapsed_s\n";
            for m in history.iter().filter_map(Metrics::modular) {
                let measure = |f: fn(&ProgressMeasures) -> f64| {
                    m.progress
                        .as_ref()
                        .map_or(String::new(), |p| f(p).to_string())
                };
                let keys = m.progress.as_ref().map_or(String::new(), |p| {
                    let keys: Vec<String> =
                        p.key_frequencies.iter().map(|k| k.to_string()).collect();
                    keys.join(" ")
                });
                out += &row(vec![
                    m.epoch.to_string(),
                    m.train_loss.to_string(),
                    m.train_acc.to_string(),
                    m.test_loss.to_string(),
                    m.test_acc.to_string(),
                    m.weight_norm.to_string(),
                    measure(|p| p.restricted_loss),
                    measure(|p| p.excluded_loss),
                    keys,
                    m.elapsed_s.to_string(),
                ]);
            }
        }
        Some(Metrics::Sequences(first)) => {
            let mut header: Vec<String> = [
                "epoch",
                "train_loss",
                "train_acc",
                "val_loss",
                "val_acc",
                "val_seq_acc",
            ]
            .map(String::from)
            .to_vec();
            header.extend((0..first.acc_by_position.len()).map(|p| format!("acc_pos{p}")));
            header.push("elapsed_s".into());
            out += &row(header);
            for m in history.iter().filter_map(Metrics::sequences) {
                let mut values = vec![
                    m.epoch.to_string(),
                    m.train_loss.to_string(),
                    m.train_acc.to_string(),
                    m.val_loss.to_string(),
                    m.val_acc.to_string(),
                    m.val_seq_acc.to_string(),
                ];
                values.extend(
                    m.acc_by_position
                        .iter()
                        .map(|a| a.map_or(String::new(), |a| a.to_string())),
                );
                values.push(m.elapsed_s.to_string());
                out += &row(values);
            }
        }
    }
    out
}

/// When the task's headline result first happened: the epoch skip-trigram validation signal
/// accuracy reached 99 %, the step the repeated-half loss fell under 10 % of ln V, or the
/// epoch modular-addition test accuracy reached 99 %, or the epoch a data-file task's
/// validation sequence accuracy reached 99 %.
pub fn milestone(history: &[Metrics], ln_vocab: f64) -> Option<usize> {
    history
        .iter()
        .find(|m| match m {
            Metrics::SkipTrigram(m) => m.val_acc_signal >= 0.99,
            Metrics::Induction(m) => m.loss_repeated_half < 0.1 * ln_vocab,
            Metrics::ModularAddition(m) => m.test_acc >= 0.99,
            Metrics::Sequences(m) => m.val_seq_acc >= 0.99,
        })
        .map(Metrics::progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_reads_back_as_itself() {
        let history = vec![
            Metrics::SkipTrigram(EpochMetrics {
                epoch: 1,
                train_loss: 2.0,
                train_acc: 0.1,
                train_acc_signal: 0.2,
                train_acc_noise: 0.05,
                val_loss: 1.9,
                val_acc: 0.2,
                val_acc_signal: 0.3,
                val_acc_noise: 0.1,
                elapsed_s: 0.5,
            }),
            Metrics::Induction(InductionMetrics {
                step: 25,
                train_loss: 3.3,
                loss_first_half: 3.4,
                loss_repeated_half: 0.2,
                induction_score: vec![vec![0.1, 0.2], vec![0.7, 0.8]],
                prev_token_score: vec![vec![0.9, 0.1], vec![0.0, 0.1]],
                elapsed_s: 0.1,
            }),
            Metrics::ModularAddition(ModularMetrics {
                epoch: 100,
                train_loss: 0.01,
                train_acc: 1.0,
                test_loss: 4.0,
                test_acc: 0.01,
                weight_norm: 30.0,
                elapsed_s: 2.0,
                progress: Some(ProgressMeasures {
                    fourier_norms: vec![0.5, 3.0],
                    key_frequencies: vec![2],
                    restricted_loss: 3.0,
                    excluded_loss: 5.0,
                }),
            }),
            Metrics::Sequences(SequencesMetrics {
                epoch: 3,
                train_loss: 0.2,
                train_acc: 0.95,
                val_loss: 0.3,
                val_acc: 0.93,
                val_seq_acc: 0.995,
                acc_by_position: vec![None, Some(0.9), Some(1.0)],
                elapsed_s: 1.5,
            }),
        ];
        let json = serde_json::to_string(&history).unwrap();
        let back: Vec<Metrics> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, history);
        assert_eq!(milestone(&history[1..2], 32f64.ln()), Some(25));
        assert_eq!(milestone(&history[2..3], 1.0), None);
        assert_eq!(milestone(&history[3..], 1.0), Some(3));
        let csv = history_csv(&history[3..]);
        assert_eq!(
            csv,
            "epoch,train_loss,train_acc,val_loss,val_acc,val_seq_acc,acc_pos0,acc_pos1,acc_pos2,elapsed_s\n\
             3,0.2,0.95,0.3,0.93,0.995,,0.9,1,1.5\n"
        );
        let csv = history_csv(&history[1..2]);
        assert!(csv.starts_with("step,train_loss,loss_first_half,loss_repeated_half,induction_L0H0,induction_L0H1,induction_L1H0"), "{csv}");
        assert!(
            csv.lines().nth(1).unwrap().ends_with(",0.9,0.1,0,0.1,0.1"),
            "{csv}"
        );
    }
}
