//! The Sweep workspace: a sweep folder's phase diagram. A reader thread re-reads the folder
//! every second (the results, and the histories of the selected cell's runs) and sends what
//! changed; the map over any two axes of any summary metric is derived here when the results
//! or the choice change, and drawn by `crate::ui::sweeps`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

mod reader;

use super::{Action, Message, Status, ToylensApp, Workspace};
use crate::sweep::{CHECKPOINT, Progress, REGIMES, Summary, SweepFolder};
use reader::spawn_reader;

/// How often the reader looks at the folder.
const READ_EVERY: Duration = Duration::from_secs(1);
/// The pseudo-metric that colours cells by their runs' regime.
pub const REGIME: &str = "regime";
/// The pseudo-metric of a run's end: done, diverged, failed, timeout.
pub const STATUS: &str = "status";

/// One run's evaluations, each as its numbers by name.
#[derive(Debug, Clone, PartialEq)]
pub struct RunHistory {
    pub index: usize,
    pub seed: u64,
    pub evaluations: Vec<BTreeMap<String, f64>>,
}

impl RunHistory {
    /// The evaluations' progress key: `epoch` or `step`.
    pub fn progress_key(&self) -> &'static str {
        match self.evaluations.first() {
            Some(e) if e.contains_key("epoch") => "epoch",
            _ => "step",
        }
    }
}

/// What the reader reports.
#[derive(Debug)]
pub enum SweepEvent {
    Opened {
        path: PathBuf,
        result: Result<SweepFolder, String>,
    },
    Read {
        /// The opening this read belongs to (a reader of a closed sweep may still report).
        generation: u64,
        summary: Summary,
        histories: Vec<RunHistory>,
        /// The points Slurm has queued or running, with their state (none without Slurm jobs).
        queue: BTreeMap<usize, String>,
    },
}

/// What the panels ask of the workspace.
#[derive(Debug, Clone, PartialEq)]
pub enum SweepAction {
    /// Pick a sweep folder.
    Open,
    SetX(usize),
    /// `None`: one row.
    SetY(Option<usize>),
    /// The value shown of an axis that is neither x nor y.
    Fix {
        axis: usize,
        value: usize,
    },
    Metric(String),
    /// A cell (column, row), or none.
    Select(Option<(usize, usize)>),
    CurveMetric(String),
    /// Colour numbers by their logarithm.
    LogScale(bool),
    /// Open a run's checkpoint (with its history) in its model's workspace.
    OpenRun(usize),
    ExportCsv,
}

/// A cell's value.
#[derive(Debug, Clone, PartialEq)]
pub enum CellValue {
    /// No run of the cell has finished (or the metric is missing from them).
    Empty,
    /// The median over its runs.
    Number(f64),
    /// The most common category (regime or status) over its runs.
    Category(String),
}

/// A run of a cell, for the hover text and the run list.
#[derive(Debug, Clone, PartialEq)]
pub struct CellRun {
    pub index: usize,
    pub seed: u64,
    /// `done`, …; `None` while it has no result.
    pub status: Option<String>,
    /// The metric's value, as text.
    pub value: Option<String>,
    /// How far it has come, where it started without a result yet.
    pub progress: Option<Progress>,
    /// Its Slurm task's state while Slurm has it queued or running (`PENDING`, `RUNNING`).
    pub queue: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub value: CellValue,
    pub runs: Vec<CellRun>,
    /// Where the runs' categories disagree: each finished run's, in seed order (the map draws
    /// them side by side); empty where they agree.
    pub split: Vec<String>,
}

impl Cell {
    /// Whether any of its runs has started without a result yet.
    pub fn under_way(&self) -> bool {
        self.runs.iter().any(|r| r.progress.is_some())
    }
}

/// The map over the chosen axes: row-major cells, row 0 the first value of the y axis.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PhaseMap {
    pub cols: Vec<String>,
    pub rows: Vec<String>,
    pub cells: Vec<Cell>,
    /// The finite numbers' range, for the colour scale.
    pub range: Option<(f64, f64)>,
    /// Colours follow log10 of the values (asked for, and every value positive).
    pub log: bool,
}

impl PhaseMap {
    pub fn cell(&self, col: usize, row: usize) -> Option<&Cell> {
        self.cells.get(row * self.cols.len() + col)
    }

    /// Where `x` sits on the colour scale, from 0 (the smallest cell) to 1 (the largest), on
    /// a log scale where [`Self::log`].
    pub fn position(&self, x: f64) -> f64 {
        let Some((lo, hi)) = self.range else {
            return 1.0;
        };
        let f = |v: f64| if self.log { v.log10() } else { v };
        if hi > lo {
            ((f(x) - f(lo)) / (f(hi) - f(lo))).clamp(0.0, 1.0)
        } else {
            1.0
        }
    }
}

/// The open sweep.
pub struct SweepWorkspace {
    pub folder: SweepFolder,
    pub summary: Summary,
    pub x: usize,
    pub y: Option<usize>,
    /// For every axis, the value index shown where it is neither x nor y.
    pub fixed: Vec<usize>,
    /// Every axis's values as the view labels them ([`axis_labels`]).
    pub labels: Vec<Vec<String>>,
    pub metric: String,
    /// Whether the metric was chosen (else it follows what the results offer).
    metric_chosen: bool,
    pub log_scale: bool,
    pub map: PhaseMap,
    pub selected: Option<(usize, usize)>,
    pub histories: Vec<RunHistory>,
    /// The points Slurm has queued or running, with their state, as the reader last asked.
    pub queue: BTreeMap<usize, String>,
    pub curve_metric: String,
    /// Whether the reader has reported once.
    pub read_once: bool,
    generation: u64,
    /// The runs whose histories the reader reads (the selected cell's), and a counter it
    /// watches to read again at once when they change.
    watched: Arc<Mutex<Vec<usize>>>,
    poke: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for SweepWorkspace {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The label of an axis value: strings bare, numbers as JSON writes them.
pub fn value_label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An axis's values as the view labels them: fractional numbers with the fewest significant
/// digits that keep them apart (`0.47` for 0.47000000000000003 beside 0.46 and 0.48; a value
/// typed as `0.001` stays `0.001`), everything else as [`value_label`] writes it.
pub fn axis_labels(values: &[Value]) -> Vec<String> {
    let fractional = |v: &Value| v.as_f64().filter(|x| x.fract() != 0.0 && x.is_finite());
    let at = |digits: usize| -> Vec<String> {
        values
            .iter()
            .map(|v| match fractional(v) {
                // Rounded to `digits` significant digits, then written as briefly as Rust
                // writes that number.
                Some(x) => {
                    let rounded: f64 = format!("{x:.*e}", digits - 1).parse().unwrap_or(x);
                    if rounded.abs() < 1e-4 {
                        format!("{rounded:e}")
                    } else {
                        format!("{rounded}")
                    }
                }
                None => value_label(v),
            })
            .collect()
    };
    // Apart as numbers too: `1` for 1.04 beside `1.0` would not do.
    let distinct = |labels: &[String]| {
        let keys: std::collections::BTreeSet<String> = labels
            .iter()
            .map(|l| {
                l.parse::<f64>()
                    .map_or_else(|_| l.clone(), |x| x.to_string())
            })
            .collect();
        keys.len() == labels.len()
    };
    (1..=17)
        .map(at)
        .find(|labels| distinct(labels))
        .unwrap_or_else(|| values.iter().map(value_label).collect())
}

/// A run's value of the metric in view.
enum Datum {
    Text(String),
    Number(f64),
}

/// A number as a cell's hover shows it: whole numbers whole, `never` for a milestone not reached.
pub fn number_label(x: f64) -> String {
    if x.is_infinite() {
        "never".into()
    } else if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x}")
    } else if x != 0.0 && x.abs() < 1e-3 {
        format!("{x:.2e}")
    } else {
        // Four decimals at most, without trailing zeros: 2.5, 0.9929, 18.5.
        let text = format!("{x:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

impl SweepWorkspace {
    fn new(folder: SweepFolder, generation: u64) -> Self {
        let axes = &folder.file.spec.axes;
        // The first two axes with more than one value, else the first ones.
        let varied: Vec<usize> = (0..axes.len())
            .filter(|&a| axes[a].values.len() > 1)
            .collect();
        let x = varied.first().copied().unwrap_or(0);
        let y = varied.get(1).copied();
        let fixed = vec![0; axes.len()];
        let labels = axes.iter().map(|a| axis_labels(&a.values)).collect();
        Self {
            summary: Summary {
                fields: axes.iter().map(|a| a.field.clone()).collect(),
                rows: Vec::new(),
                pending: folder.len(),
                started: BTreeMap::new(),
                unreadable: Vec::new(),
            },
            folder,
            x,
            y,
            fixed,
            labels,
            metric: String::new(),
            metric_chosen: false,
            log_scale: false,
            map: PhaseMap::default(),
            selected: None,
            histories: Vec::new(),
            queue: BTreeMap::new(),
            curve_metric: String::new(),
            read_once: false,
            generation,
            watched: Arc::new(Mutex::new(Vec::new())),
            poke: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn root(&self) -> &Path {
        &self.folder.root
    }

    /// The metrics a cell can show: the regime (where runs have one), each milestone and
    /// metric, the wall time, and the status.
    pub fn metric_choices(&self) -> Vec<String> {
        let (metrics, milestones) = self.summary.metric_names();
        let mut out = Vec::new();
        if self.summary.rows.iter().any(|r| r.result.regime.is_some()) {
            out.push(REGIME.to_string());
        }
        out.extend(milestones);
        out.extend(metrics);
        out.extend(["wall_s", "trained", STATUS].map(String::from));
        out
    }

    /// The metrics a run's curves can show (the numbers of its evaluations).
    pub fn curve_choices(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .histories
            .iter()
            .flat_map(|h| {
                h.evaluations
                    .first()
                    .into_iter()
                    .flat_map(|e| e.keys().cloned())
            })
            .filter(|k| !["epoch", "step", "elapsed_s"].contains(&k.as_str()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The points of cell (col, row) under the current choice of axes and fixed values: one per
    /// seed, found from the grid's order rather than by searching the points.
    pub fn cell_points(&self, col: usize, row: usize) -> Vec<usize> {
        let spec = &self.folder.file.spec;
        let chosen: Vec<usize> = (0..spec.axes.len())
            .map(|a| {
                if a == self.x {
                    col
                } else if Some(a) == self.y {
                    row
                } else {
                    self.fixed.get(a).copied().unwrap_or(0)
                }
            })
            .collect();
        if chosen
            .iter()
            .zip(&spec.axes)
            .any(|(&v, axis)| v >= axis.values.len())
        {
            return Vec::new();
        }
        (0..spec.seeds.len())
            .map(|seed| spec.index_of(&chosen, seed))
            .filter(|&i| i < self.folder.len())
            .collect()
    }

    /// Derives the map from the results and the choice of axes and metric.
    fn rebuild(&mut self) {
        let choices = self.metric_choices();
        if !self.metric_chosen || !choices.contains(&self.metric) {
            // Until one is chosen: the regime, else the task's milestone, else its score (or,
            // for superposition, the features represented).
            self.metric = [REGIME, "milestone", "score", "features_represented", STATUS]
                .iter()
                .find(|m| choices.iter().any(|c| c == *m))
                .map_or_else(|| STATUS.to_string(), |m| m.to_string());
        }
        let labels = |a: Option<usize>| -> Vec<String> {
            a.and_then(|a| self.labels.get(a))
                .cloned()
                .unwrap_or_else(|| vec![String::new()])
        };
        let cols = if self.labels.is_empty() {
            vec![String::new()]
        } else {
            labels(Some(self.x))
        };
        let rows = labels(self.y);
        let by_index: BTreeMap<usize, &crate::sweep::Row> =
            self.summary.rows.iter().map(|r| (r.index, r)).collect();
        let (_, milestones) = self.summary.metric_names();
        let mut cells = Vec::with_capacity(cols.len() * rows.len());
        let mut lo_hi: Option<(f64, f64)> = None;
        for row in 0..rows.len() {
            for col in 0..cols.len() {
                let mut numbers = Vec::new();
                let mut categories: BTreeMap<String, usize> = BTreeMap::new();
                let mut in_order = Vec::new();
                let mut runs = Vec::new();
                for index in self.cell_points(col, row) {
                    let point = &self.folder.file.points[index];
                    let result = by_index.get(&index).map(|r| &r.result);
                    let value = result.and_then(|r| match self.metric.as_str() {
                        REGIME => r.regime.clone().map(Datum::Text),
                        STATUS => Some(Datum::Text(r.status.name().into())),
                        "wall_s" => Some(Datum::Number(r.wall_s)),
                        "trained" => Some(Datum::Number(r.trained as f64)),
                        // A milestone a finished run never reached is infinitely late.
                        m if milestones.iter().any(|x| x == m) => Some(Datum::Number(
                            r.milestones.get(m).map_or(f64::INFINITY, |&v| v as f64),
                        )),
                        m => r.metrics.get(m).map(|&v| Datum::Number(v)),
                    });
                    match &value {
                        Some(Datum::Text(s)) => {
                            *categories.entry(s.clone()).or_default() += 1;
                            in_order.push(s.clone());
                        }
                        Some(Datum::Number(v)) => numbers.push(*v),
                        None => {}
                    }
                    runs.push(CellRun {
                        index,
                        seed: point.seed,
                        status: result.map(|r| r.status.name().to_string()),
                        value: value.map(|v| match v {
                            Datum::Text(s) => s,
                            Datum::Number(x) => number_label(x),
                        }),
                        progress: self.summary.started.get(&index).cloned(),
                        queue: self.queue.get(&index).cloned(),
                    });
                }
                let value = if let Some((category, _)) = categories
                    .iter()
                    .max_by_key(|(name, n)| (**n, std::cmp::Reverse(*name)))
                {
                    CellValue::Category(category.clone())
                } else if let Some(m) = median(&mut numbers) {
                    if m.is_finite() {
                        lo_hi = Some(lo_hi.map_or((m, m), |(lo, hi)| (lo.min(m), hi.max(m))));
                    }
                    CellValue::Number(m)
                } else {
                    CellValue::Empty
                };
                let split = if categories.len() > 1 {
                    in_order
                } else {
                    Vec::new()
                };
                cells.push(Cell { value, runs, split });
            }
        }
        self.map = PhaseMap {
            cols,
            rows,
            cells,
            range: lo_hi,
            log: self.log_scale && lo_hi.is_some_and(|(lo, _)| lo > 0.0),
        };
        if let Some((c, r)) = self.selected
            && (c >= self.map.cols.len() || r >= self.map.rows.len())
        {
            self.selected = None;
        }
        self.watch_selected();
    }

    /// Points the reader at the selected cell's runs.
    fn watch_selected(&mut self) {
        let runs = self
            .selected
            .map(|(c, r)| self.cell_points(c, r))
            .unwrap_or_default();
        let mut watched = self.watched.lock().expect("the watch list");
        if *watched != runs {
            *watched = runs;
            self.poke.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A category's place among the colours: the regimes first, then the statuses.
    pub fn category_rank(name: &str) -> usize {
        REGIMES
            .iter()
            .chain(["done", "diverged", "failed", "timeout"].iter())
            .position(|r| *r == name)
            .unwrap_or(usize::MAX)
    }
}

impl ToylensApp {
    /// Opens the sweep folder at `path` on a worker.
    pub(super) fn open_sweep(&mut self, path: PathBuf) {
        self.path_field = None;
        self.status = Some(Status::Info(format!(
            "opening the sweep {}…",
            path.display()
        )));
        let (tx, wake) = (self.tx.clone(), self.wake());
        std::thread::spawn(move || {
            let result = SweepFolder::open(&path).map_err(|e| e.to_string());
            let _ = tx.send(Message::Sweep(SweepEvent::Opened { path, result }));
            wake();
        });
    }

    pub(super) fn sweep_event(&mut self, event: SweepEvent) {
        match event {
            SweepEvent::Opened { path, result } => match result {
                Ok(folder) => {
                    self.sweep_generation += 1;
                    let sweep = SweepWorkspace::new(folder, self.sweep_generation);
                    spawn_reader(
                        sweep.generation,
                        sweep.folder.clone(),
                        sweep.watched.clone(),
                        sweep.poke.clone(),
                        sweep.stop.clone(),
                        self.tx.clone(),
                        self.wake(),
                    );
                    self.status = Some(Status::Info(format!(
                        "opened the sweep {} ({} runs)",
                        path.display(),
                        sweep.folder.len()
                    )));
                    self.sweep = Some(sweep);
                    self.workspace = Workspace::Sweep;
                }
                Err(e) => self.status = Some(Status::Error(format!("cannot open the sweep: {e}"))),
            },
            SweepEvent::Read {
                generation,
                summary,
                histories,
                queue,
            } => {
                let Some(sweep) = self.sweep.as_mut().filter(|s| s.generation == generation) else {
                    return;
                };
                let watched = sweep.watched.lock().map(|w| w.clone()).unwrap_or_default();
                sweep.summary = summary;
                sweep.queue = queue;
                // Histories read for an earlier selection wait for the next read.
                if histories
                    .iter()
                    .map(|h| h.index)
                    .eq(watched.iter().copied())
                {
                    sweep.histories = histories;
                }
                sweep.read_once = true;
                sweep.rebuild();
                let choices = sweep.curve_choices();
                if !choices.contains(&sweep.curve_metric) {
                    let preferred = ["test_acc", "val_acc", "loss", "loss_repeated_half"];
                    sweep.curve_metric = preferred
                        .iter()
                        .find(|p| choices.iter().any(|c| c == *p))
                        .map(|p| p.to_string())
                        .or_else(|| choices.first().cloned())
                        .unwrap_or_default();
                }
            }
        }
    }

    pub(super) fn apply_sweep(&mut self, action: SweepAction) {
        if action == SweepAction::Open {
            self.pick(super::files::Purpose::OpenSweep);
            return;
        }
        let Some(sweep) = self.sweep.as_mut() else {
            return;
        };
        let axes = sweep.folder.file.spec.axes.len();
        match action {
            SweepAction::Open => {}
            SweepAction::SetX(a) if a < axes => {
                if sweep.y == Some(a) {
                    sweep.y = (sweep.x != a).then_some(sweep.x);
                }
                sweep.x = a;
                sweep.selected = None;
            }
            SweepAction::SetY(a) if a.is_none_or(|a| a < axes) => {
                if a == Some(sweep.x) {
                    return;
                }
                sweep.y = a;
                sweep.selected = None;
            }
            SweepAction::Fix { axis, value }
                if axis < axes && value < sweep.folder.file.spec.axes[axis].values.len() =>
            {
                sweep.fixed[axis] = value;
            }
            SweepAction::Metric(m) => {
                sweep.metric = m;
                sweep.metric_chosen = true;
            }
            SweepAction::Select(cell) => {
                sweep.selected = cell;
                sweep.histories.clear();
            }
            SweepAction::LogScale(on) => sweep.log_scale = on,
            SweepAction::CurveMetric(m) => {
                sweep.curve_metric = m;
                return;
            }
            SweepAction::OpenRun(index) if index < sweep.folder.len() => {
                let path = sweep.folder.run_dir(index).join(CHECKPOINT);
                if path.is_file() {
                    // As a dropped file: an unsaved model is not replaced without asking.
                    self.apply(Action::OpenDropped(path));
                } else {
                    self.status = Some(Status::Error(format!(
                        "run {index} has no checkpoint yet (it is still running or never ran)"
                    )));
                }
                return;
            }
            SweepAction::ExportCsv => {
                self.pick(super::files::Purpose::ExportCsv);
                return;
            }
            _ => return,
        }
        sweep.rebuild();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(values: Value) -> Vec<String> {
        axis_labels(values.as_array().unwrap())
    }

    #[test]
    fn axis_labels_are_as_short_as_keeps_the_values_apart() {
        // Sums of binary fractions come out long; three digits keep these apart.
        let noisy: Vec<f64> = (45..49).map(|i| 0.01 * i as f64).collect();
        assert_eq!(noisy[2].to_string(), "0.47000000000000003");
        assert_eq!(labels(json!(noisy)), ["0.45", "0.46", "0.47", "0.48"]);
        // Values typed as written stay so; close ones get the digits they need.
        assert_eq!(
            labels(json!([0.0003, 0.001, 0.003])),
            ["0.0003", "0.001", "0.003"]
        );
        assert_eq!(labels(json!([1.0001, 1.0002])), ["1.0001", "1.0002"]);
        assert_eq!(labels(json!([1.0, 1.04])), ["1.0", "1.04"]);
        assert_eq!(labels(json!([3e-5, 1e-6])), ["3e-5", "1e-6"]);
        // Whole numbers, strings and booleans as they are.
        assert_eq!(labels(json!([11, 113])), ["11", "113"]);
        assert_eq!(labels(json!(["fast", "grokking"])), ["fast", "grokking"]);
        assert_eq!(labels(json!([true, false])), ["true", "false"]);
        // Equal values cannot be told apart at any precision: written in full.
        assert_eq!(labels(json!([0.5, 0.5])), ["0.5", "0.5"]);
    }
}
