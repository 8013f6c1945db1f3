//! The derived views: what the analysis tabs show, computed from the weights in view and the
//! settings. Each (the inspector, the Data tab's data set, mean z, the exhaustive evaluation,
//! circuits, head traces) runs as a background job ([`super::jobs`]) keyed by its inputs (typed
//! keys, [`ViewKey`] for the weights in view); the frame's logic starts the jobs, the panels only
//! read their results, and no frame does tensor work.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use candle_core::Device;

mod analyze;
mod data;
mod inspector;

pub use analyze::{AnalyzeKey, AnalyzeSettings, HeadCircuits};
pub use data::{
    DataKey, DataSummary, DataView, GRADED_SEQUENCES, PairGrid, RIGHT, SequenceTable, TEST_PAIR,
    TRAIN_PAIR, WRONG, pair_colour,
};
pub use inspector::{
    Inspected, InspectorKey, InspectorState, LATENTS_SHOWN, SaeLatents, THUMBNAIL_SIDE, Thumbnail,
};

use super::ToylensApp;
use super::jobs::{self, Computed, Derived};
use crate::analysis::{
    ExhaustiveReport, HeadTrace, SequenceReport, circuits, exhaustive, head_traces, mean_z,
    sequence_report,
};
use crate::model::{Ablation, HeadMode, ModelConfig, NdArray, Transformer, Weights};

/// The evaluation's inputs: the weights in view and the ablation.
/// Which weights a view shows: a snapshot of the session's history, or its latest weights.
/// Changes whenever the weights in view change, so it keys every view computed from them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ViewKey {
    /// Snapshot `index` of the session's `generation` (a new run or file starts a new one).
    Snapshot { generation: u64, index: usize },
    /// The latest weights, at this version of the session.
    Latest { version: u64 },
}

/// The Evaluate tab's inputs: the weights in view and the ablation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExhaustiveKey {
    pub view: ViewKey,
    pub ablation: Vec<HeadMode>,
}

#[derive(Debug, Clone, PartialEq, Hash)]
pub struct CircuitsKey {
    pub view: ViewKey,
    pub no_bias: bool,
    pub mean_subtract: bool,
}

/// Every head's OV and QK circuit ready to draw: flat row-major `[vocab × vocab]` per head.
pub struct CircuitsView {
    pub vocab: usize,
    pub ov: Vec<Vec<f32>>,
    pub qk: Vec<Vec<f32>>,
    pub direct: Vec<f32>,
    /// The largest |value| of all OV maps and of all QK maps (their shared colour scales).
    pub ov_limit: f32,
    pub qk_limit: f32,
    /// Changes with the inputs: keys the maps' textures.
    pub id: u64,
}

impl CircuitsView {
    pub fn compute(
        cfg: &ModelConfig,
        weights: &Weights,
        key: &CircuitsKey,
    ) -> Result<Self, String> {
        let c = circuits(cfg, weights)?;
        let (ov, qk) = if key.no_bias {
            (c.ov_no_bias, c.qk_no_bias)
        } else {
            (c.ov, c.qk)
        };
        let flat = |maps: Vec<Vec<Vec<f32>>>| -> Vec<Vec<f32>> {
            maps.into_iter()
                .map(|map| {
                    map.into_iter()
                        .flat_map(|row| {
                            let mean = if key.mean_subtract {
                                row.iter().sum::<f32>() / row.len().max(1) as f32
                            } else {
                                0.0
                            };
                            row.into_iter().map(move |v| v - mean)
                        })
                        .collect()
                })
                .collect()
        };
        let (ov, qk) = (flat(ov), flat(qk));
        let limit = |maps: &[Vec<f32>]| {
            crate::palette::Scale::diverging_limit(maps.iter().flatten().copied())
        };
        Ok(Self {
            vocab: cfg.d_vocab,
            id: hash_of(key),
            ov_limit: limit(&ov),
            qk_limit: limit(&qk),
            ov,
            qk,
            direct: c.direct.into_iter().flatten().collect(),
        })
    }
}

/// Head traces of a run of consecutive snapshots of one session.
pub struct TraceBatch {
    pub generation: u64,
    /// Index of the first snapshot.
    pub start: usize,
    pub result: Result<Vec<(usize, Vec<HeadTrace>)>, String>,
}

/// Snapshots' weights copied into one trace job at most (a job of a large model holds fewer).
const TRACE_JOB_BYTES: usize = 64 << 20;

/// The training-history scrubber.
#[derive(Default)]
pub struct Scrubber {
    /// Index into the session's snapshots; `None` shows the latest weights.
    pub index: Option<usize>,
    pub playing: bool,
    last_tick: Option<Instant>,
    /// Hold every colour scale at the range it had when switched on, to compare epochs.
    pub fixed_scale: bool,
    pub fixed_limits: HashMap<&'static str, f32>,
}

/// The analysis views' settings and results.
#[derive(Default)]
pub struct AnalysisState {
    /// One mode per head; applies to the inspector and the evaluation.
    pub ablation: Vec<HeadMode>,
    pub mean_z: Derived<ViewKey, NdArray>,
    pub exhaustive: Derived<ExhaustiveKey, ExhaustiveReport>,
    /// A data-file task's evaluation of the model in view on its validation sequences.
    pub sequence_report: Derived<ExhaustiveKey, SequenceReport>,
    pub circuits: Derived<CircuitsKey, CircuitsView>,
    /// Shared with the frames that draw it, which no longer copy it each frame.
    pub analyze: Derived<AnalyzeKey, std::sync::Arc<crate::analysis::Analysis>>,
    pub head_circuits: Derived<ViewKey, HeadCircuits>,
    pub data: Derived<DataKey, DataView>,
    /// Per-snapshot head traces of the current session.
    pub traces: Vec<(usize, Vec<HeadTrace>)>,
    traces_generation: u64,
    traces_running: bool,
}

/// The ablation the views apply.
pub enum AblationView {
    Off,
    Ready(Ablation),
    /// Mean ablation waits for its means.
    Waiting,
    Failed(String),
}

impl AblationView {
    /// The ablation to compute with (`Ok(None)`: none), or why there is none yet: `Err(None)`
    /// while mean ablation's means are on their way, `Err(Some(reason))` when they failed.
    pub fn ready(self) -> Result<Option<Ablation>, Option<String>> {
        match self {
            AblationView::Off => Ok(None),
            AblationView::Ready(a) => Ok(Some(a)),
            AblationView::Waiting => Err(None),
            AblationView::Failed(e) => Err(Some(e)),
        }
    }
}

impl ToylensApp {
    /// Runs `work` as a background job whose result comes back through `deliver`.
    fn job<T: 'static>(
        &self,
        work: impl FnOnce() -> Result<T, String> + Send + 'static,
        deliver: impl FnOnce(Result<T, String>) -> Computed + Send + 'static,
    ) {
        jobs::spawn(self.tx.clone(), self.wake(), work, deliver);
    }

    /// Takes a finished job's result.
    pub fn receive(&mut self, computed: Computed) {
        let a = &mut self.analysis;
        match computed {
            Computed::Inspection(key, result) => self.inspected(key, result),
            Computed::Data(key, result) => a.data.finish(key, result),
            Computed::MeanZ(key, result) => a.mean_z.finish(key, result),
            Computed::Exhaustive(key, result) => a.exhaustive.finish(key, result),
            Computed::SequenceReport(key, result) => a.sequence_report.finish(key, result),
            Computed::Circuits(key, result) => a.circuits.finish(key, result),
            Computed::Analysis(key, result) => {
                a.analyze.finish(key, result.map(std::sync::Arc::new))
            }
            Computed::HeadCircuits(key, result) => a.head_circuits.finish(key, result),
            Computed::Traces(batch) => {
                a.traces_running = false;
                let aligned =
                    batch.generation == a.traces_generation && batch.start == a.traces.len();
                match batch.result {
                    Ok(traces) if aligned => a.traces.extend(traces),
                    Ok(_) => {}
                    Err(e) => log::warn!("head traces: {e}"),
                }
            }
        }
    }

    /// The snapshot index in view, if the scrubber is not on the latest weights.
    pub fn view_index(&self) -> Option<usize> {
        self.scrubber
            .index
            .filter(|&i| i < self.session.snapshots.len())
    }

    /// The epoch whose weights every analysis view shows ("latest" or "epoch k").
    pub fn view_label(&self) -> String {
        match self.view_index() {
            Some(i) => format!("epoch {}", self.session.snapshots[i].epoch),
            None if self.session.is_training() => "latest epoch (live)".into(),
            None => "final weights".into(),
        }
    }

    /// The weights every analysis view shows.
    pub fn view_weights(&self) -> &Weights {
        match self.view_index() {
            Some(i) => &self.session.snapshots[i].weights,
            None => &self.session.weights,
        }
    }

    /// Which weights are in view.
    pub fn view_key(&self) -> ViewKey {
        match self.view_index() {
            Some(index) => ViewKey::Snapshot {
                generation: self.session.generation,
                index,
            },
            None => ViewKey::Latest {
                version: self.session.version,
            },
        }
    }

    /// The ablation the views apply; starts computing the means when mean ablation needs them.
    pub fn current_ablation(&mut self) -> AblationView {
        let model = &self.session.config.model;
        let heads = model.n_heads;
        self.analysis
            .ablation
            .resize(model.n_layers * heads, HeadMode::Active);
        let modes = self.analysis.ablation.clone();
        if modes.iter().all(|&m| m == HeadMode::Active) {
            return AblationView::Off;
        }
        let mut ablation = Ablation {
            n_heads: heads,
            modes,
            mean_z: None,
        };
        if ablation.needs_means() {
            let key = self.view_key();
            match self.analysis.mean_z.get(&key) {
                Some(Ok(means)) => ablation.mean_z = Some(means.clone()),
                Some(Err(e)) => return AblationView::Failed(format!("mean ablation: {e}")),
                None => {
                    if self.analysis.mean_z.claim(&key) {
                        let (cfg, weights) = self.job_inputs();
                        let (task, seed) =
                            (self.session.config.task.clone(), self.session.config.seed);
                        self.job(
                            move || {
                                let model = cpu_model(&cfg, &weights)?;
                                let val =
                                    task.validation_tokens(seed).map_err(|e| e.to_string())?;
                                mean_z(&model, &val, task.seq_len()).map_err(|e| e.to_string())
                            },
                            move |r| Computed::MeanZ(key, r),
                        );
                    }
                    return AblationView::Waiting;
                }
            }
        }
        AblationView::Ready(ablation)
    }

    /// The model config and a copy of the weights in view, for a job.
    pub(crate) fn job_inputs(&self) -> (ModelConfig, Weights) {
        (
            self.session.config.model.clone(),
            self.view_weights().clone(),
        )
    }

    pub fn exhaustive_key(&self) -> ExhaustiveKey {
        ExhaustiveKey {
            view: self.view_key(),
            ablation: self.analysis.ablation.clone(),
        }
    }

    /// Starts the exhaustive evaluation (for a data file's task, the evaluation on its
    /// validation sequences) if the weights in view or the ablation changed.
    pub fn refresh_exhaustive(&mut self) {
        if self.session.config.task.sequences().is_some() {
            return self.refresh_sequence_report();
        }
        if self.session.config.task.skip_trigram().is_none() {
            return;
        }
        let ablation = match self.current_ablation().ready() {
            Ok(a) => a,
            Err(failure) => {
                let key = self.exhaustive_key();
                if let Some(e) = failure.filter(|_| !self.analysis.exhaustive.is_current(&key)) {
                    self.analysis.exhaustive.finish(key, Err(e));
                }
                return;
            }
        };
        let key = self.exhaustive_key();
        if !self.analysis.exhaustive.claim(&key) {
            return;
        }
        let (cfg, weights) = self.job_inputs();
        let (task, seed) = (self.session.config.task.clone(), self.session.config.seed);
        self.job(
            move || {
                let Some(task) = task.skip_trigram() else {
                    return Err(
                        "the exhaustive evaluation enumerates skip-trigram sequences; \
                                this run's task has its metrics on the Training tab"
                            .into(),
                    );
                };
                let model = cpu_model(&cfg, &weights)?;
                exhaustive(&model, task, ablation.as_ref(), 2_000, seed).map_err(|e| e.to_string())
            },
            move |r| Computed::Exhaustive(key, r),
        );
    }

    /// Starts evaluating the model in view on its data file's validation sequences if the
    /// weights or the ablation changed.
    fn refresh_sequence_report(&mut self) {
        let key = self.exhaustive_key();
        let ablation = match self.current_ablation().ready() {
            Ok(a) => a,
            Err(failure) => {
                if let Some(e) = failure.filter(|_| !self.analysis.sequence_report.is_current(&key))
                {
                    self.analysis.sequence_report.finish(key, Err(e));
                }
                return;
            }
        };
        if !self.analysis.sequence_report.claim(&key) {
            return;
        }
        let (cfg, weights) = self.job_inputs();
        let (task, seed) = (self.session.config.task.clone(), self.session.config.seed);
        self.job(
            move || {
                let task = task
                    .sequences()
                    .ok_or("the model in view has no data file")?;
                let data = task.data().ok_or("the data file is not read")?;
                let (_, val) = task.split(seed);
                let model = cpu_model(&cfg, &weights)?;
                sequence_report(&model, data, &val, ablation.as_ref())
                    .map_err(|e| crate::device::error_line(&e))
            },
            move |r| Computed::SequenceReport(key, r),
        );
    }

    pub fn circuits_key(&self) -> CircuitsKey {
        CircuitsKey {
            view: self.view_key(),
            no_bias: self.settings.circuits_no_bias,
            mean_subtract: self.settings.circuits_mean_subtract,
        }
    }

    /// Starts computing the circuits if the weights in view or the options changed.
    pub fn refresh_circuits(&mut self) {
        let key = self.circuits_key();
        if !self.analysis.circuits.claim(&key) {
            return;
        }
        let (cfg, weights) = self.job_inputs();
        let options = key.clone();
        self.job(
            move || CircuitsView::compute(&cfg, &weights, &options),
            move |r| Computed::Circuits(key, r),
        );
    }

    /// Extends the per-epoch head traces towards every snapshot, one job of a few at a time.
    pub fn refresh_traces(&mut self) {
        let a = &mut self.analysis;
        let snapshots = &self.session.snapshots;
        let misaligned = a.traces.last().is_some_and(|(epoch, _)| {
            snapshots.get(a.traces.len() - 1).map(|s| s.epoch) != Some(*epoch)
        });
        if a.traces_generation != self.session.generation || misaligned {
            a.traces.clear();
            a.traces_generation = self.session.generation;
        }
        let start = a.traces.len();
        if a.traces_running || start >= snapshots.len() {
            return;
        }
        let cfg = self.session.config.model.clone();
        let per_snapshot = cfg.n_params().max(1) * std::mem::size_of::<f32>();
        let count = (TRACE_JOB_BYTES / per_snapshot).clamp(1, 64);
        let batch: Vec<(usize, Weights)> = snapshots[start..]
            .iter()
            .take(count)
            .map(|s| (s.epoch, s.weights.clone()))
            .collect();
        // The head traces measure skip-trigram behaviour; other tasks report their per-head
        // scores in their metrics.
        let Some(task) = self.session.config.task.skip_trigram().cloned() else {
            return;
        };
        a.traces_running = true;
        let generation = self.session.generation;
        self.job(
            move || {
                batch
                    .iter()
                    .map(|(epoch, weights)| {
                        let model = cpu_model(&cfg, weights)?;
                        let t = head_traces(&model, &task).map_err(|e| e.to_string())?;
                        Ok((*epoch, t))
                    })
                    .collect()
            },
            move |result| {
                Computed::Traces(TraceBatch {
                    generation,
                    start,
                    result,
                })
            },
        );
    }

    /// Advances the scrubber while playing: ten epochs a second, stopping at the end.
    pub fn tick_scrubber(&mut self) {
        if !self.scrubber.playing {
            self.scrubber.last_tick = None;
            return;
        }
        let n = self.session.snapshots.len();
        let now = Instant::now();
        let due = self
            .scrubber
            .last_tick
            .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(100));
        if due {
            self.scrubber.last_tick = Some(now);
            let next = self.scrubber.index.map_or(0, |i| i + 1);
            if next >= n {
                self.scrubber.playing = false;
                self.scrubber.index = Some(n.saturating_sub(1));
            } else {
                self.scrubber.index = Some(next);
            }
        }
        self.ctx.request_repaint_after(Duration::from_millis(100));
    }

    /// The colour range for `view`: the one held while the scrubber's fixed mode is on, else
    /// `computed`. `None` when the mode is on and nothing is held yet (the caller pins
    /// `computed` with [`super::Action::PinScaleLimit`]).
    pub fn scale_limit(&self, view: &'static str, computed: f32) -> Option<f32> {
        if self.scrubber.fixed_scale {
            self.scrubber.fixed_limits.get(view).copied()
        } else {
            Some(computed)
        }
    }

    /// Whether any view other than the inspector is still computing (for the busy spinner and
    /// tests). The inspector has its own still "updating…" note: a spinner would keep repainting.
    pub fn views_busy(&self) -> bool {
        let a = &self.analysis;
        a.mean_z.is_running()
            || a.exhaustive.is_running()
            || a.sequence_report.is_running()
            || a.circuits.is_running()
            || a.analyze.is_running()
            || a.head_circuits.is_running()
            || a.data.is_running()
            || a.traces_running
    }
}

/// A hash of a view's inputs, to key what is drawn from its result (textures).
pub fn hash_of(value: &impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// A CPU model of `weights`, for a job.
fn cpu_model(cfg: &ModelConfig, weights: &Weights) -> Result<Transformer, String> {
    Transformer::new(cfg, weights, &Device::Cpu).map_err(|e| e.to_string())
}
