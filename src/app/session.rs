//! The model the app is looking at: its config, weights, history and file, and the training run
//! that may be changing it. Plain state with no drawing, so it is easy to test and to reason about.

use std::path::PathBuf;

use egui_plot::PlotPoint;

use super::status::Status;
use crate::checkpoint::{Checkpoint, Snapshot, snapshot_limit, thinned};
use crate::metrics::{Metrics, StepMetrics};
use crate::model::Weights;
use crate::train::{Command, Event, FinishReason, RunConfig, TrainingHandle};

/// Per-step loss points kept for the plot (thinned beyond twice this).
const MAX_STEP_POINTS: usize = 200_000;

/// What the worker of the active run is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Paused,
}

/// A training run in progress.
pub struct ActiveRun {
    /// Events of older runs still in the channel carry another id and are dropped.
    pub id: u64,
    pub handle: TrainingHandle,
    pub state: RunState,
    pub total_epochs: usize,
    pub steps_per_epoch: usize,
    /// How the run computes ([`crate::train::Trainer::describe_path`]).
    pub path: String,
    pub last_step: Option<StepMetrics>,
}

impl ActiveRun {
    pub fn new(id: u64, handle: TrainingHandle, cfg: &RunConfig) -> Self {
        Self {
            id,
            handle,
            state: RunState::Running,
            total_epochs: cfg.total_units(),
            steps_per_epoch: cfg.steps_per_epoch(),
            path: String::new(),
            last_step: None,
        }
    }

    /// Training throughput so far, measured by the worker (pauses excluded).
    pub fn samples_per_s(&self) -> f64 {
        self.last_step
            .filter(|s| s.busy_s > 0.0)
            .map_or(0.0, |s| s.samples as f64 / s.busy_s)
    }

    /// Seconds left at the pace so far, if known.
    pub fn eta_s(&self) -> Option<f64> {
        let step = self.last_step?;
        let total = self.total_epochs * self.steps_per_epoch;
        let left = total.saturating_sub(step.step) as f64;
        (step.step > 0).then(|| left * step.busy_s / step.step as f64)
    }
}

/// Plot-ready series, appended as events arrive so that drawing copies nothing. x is the epoch
/// (the step, for step-counted tasks); each task fills its own curves.
#[derive(Debug, Default, Clone)]
pub struct Series {
    pub train_loss: Vec<PlotPoint>,
    pub val_loss: Vec<PlotPoint>,
    pub train_acc: Vec<PlotPoint>,
    pub val_acc: Vec<PlotPoint>,
    pub val_acc_signal: Vec<PlotPoint>,
    pub val_acc_noise: Vec<PlotPoint>,
    /// Induction: the two halves' losses, and every head's scores `[layer][head]`.
    pub loss_first_half: Vec<PlotPoint>,
    pub loss_repeated_half: Vec<PlotPoint>,
    pub induction_score: Vec<Vec<Vec<PlotPoint>>>,
    pub prev_token_score: Vec<Vec<Vec<PlotPoint>>>,
    /// Modular addition: test loss and accuracy, and the total weight norm.
    pub test_loss: Vec<PlotPoint>,
    pub test_acc: Vec<PlotPoint>,
    pub weight_norm: Vec<PlotPoint>,
    /// Progress measures: restricted and excluded loss, and the embedding's norm in each
    /// Fourier frequency `[k − 1]`.
    pub restricted_loss: Vec<PlotPoint>,
    pub excluded_loss: Vec<PlotPoint>,
    pub fourier_norms: Vec<Vec<PlotPoint>>,
    /// Data-file tasks: the validation sequence accuracy, and the accuracy at each scored
    /// position `[position]` (empty curves where it is not scored).
    pub val_seq_acc: Vec<PlotPoint>,
    pub acc_by_position: Vec<Vec<PlotPoint>>,
    /// x is the fractional epoch, so every plot shares one x axis.
    pub step_loss: Vec<PlotPoint>,
}

/// Appends `scores[l][h]` at `x` to `curves[l][h]`, growing `curves` to the scores' shape.
fn push_per_head(curves: &mut Vec<Vec<Vec<PlotPoint>>>, x: f64, scores: &[Vec<f64>]) {
    curves.resize_with(scores.len(), Vec::new);
    for (layer, values) in curves.iter_mut().zip(scores) {
        layer.resize_with(values.len(), Vec::new);
        for (curve, &y) in layer.iter_mut().zip(values) {
            curve.push(PlotPoint::new(x, y));
        }
    }
}

impl Series {
    pub fn push(&mut self, metrics: &Metrics) {
        let x = metrics.progress() as f64;
        let at = |y| PlotPoint::new(x, y);
        match metrics {
            Metrics::SkipTrigram(m) => {
                self.train_loss.push(at(m.train_loss));
                self.val_loss.push(at(m.val_loss));
                self.train_acc.push(at(m.train_acc));
                self.val_acc.push(at(m.val_acc));
                self.val_acc_signal.push(at(m.val_acc_signal));
                self.val_acc_noise.push(at(m.val_acc_noise));
            }
            Metrics::Induction(m) => {
                self.train_loss.push(at(m.train_loss));
                self.loss_first_half.push(at(m.loss_first_half));
                self.loss_repeated_half.push(at(m.loss_repeated_half));
                push_per_head(&mut self.induction_score, x, &m.induction_score);
                push_per_head(&mut self.prev_token_score, x, &m.prev_token_score);
            }
            Metrics::Sequences(m) => {
                self.train_loss.push(at(m.train_loss));
                self.val_loss.push(at(m.val_loss));
                self.train_acc.push(at(m.train_acc));
                self.val_acc.push(at(m.val_acc));
                self.val_seq_acc.push(at(m.val_seq_acc));
                self.acc_by_position
                    .resize_with(m.acc_by_position.len(), Vec::new);
                for (curve, acc) in self.acc_by_position.iter_mut().zip(&m.acc_by_position) {
                    if let Some(acc) = acc {
                        curve.push(at(*acc));
                    }
                }
            }
            Metrics::ModularAddition(m) => {
                self.train_loss.push(at(m.train_loss));
                self.test_loss.push(at(m.test_loss));
                self.train_acc.push(at(m.train_acc));
                self.test_acc.push(at(m.test_acc));
                self.weight_norm.push(at(m.weight_norm));
                if let Some(progress) = &m.progress {
                    self.restricted_loss.push(at(progress.restricted_loss));
                    self.excluded_loss.push(at(progress.excluded_loss));
                    let norms = &progress.fourier_norms;
                    self.fourier_norms.resize_with(norms.len(), Vec::new);
                    for (curve, &y) in self.fourier_norms.iter_mut().zip(norms) {
                        curve.push(at(y));
                    }
                }
            }
        }
    }

    /// The curve runs are compared by: validation, repeated-half or test loss.
    pub fn headline_loss(&self) -> &[PlotPoint] {
        [&self.val_loss, &self.loss_repeated_half, &self.test_loss]
            .into_iter()
            .find(|c| !c.is_empty())
            .map_or(&[], |c| c.as_slice())
    }

    pub fn from_history(history: &[Metrics]) -> Self {
        let mut s = Self::default();
        for m in history {
            s.push(m);
        }
        s
    }
}

/// The model in view and everything known about it: plain data, no tensors. Whatever computes
/// from the weights (every view) builds its own model on a background thread, so the UI thread
/// never waits on candle's thread pool while training or a job holds it.
pub struct Session {
    pub config: RunConfig,
    pub weights: Weights,
    pub history: Vec<Metrics>,
    pub series: Series,
    pub snapshots: Vec<Snapshot>,
    /// Where the model was opened from or last saved to.
    pub file: Option<PathBuf>,
    /// `file` was written by another program (a TransformerLens state dict, in safetensors or
    /// PyTorch's format): Save asks for a new path instead of overwriting it with toylens's.
    pub foreign_file: bool,
    /// Changed since it was last opened or saved.
    pub dirty: bool,
    /// Bumped whenever `weights` change, so views know to recompute.
    pub version: u64,
    /// The latest epoch's weights, not yet in view (see [`Session::sync_weights`]).
    pending_weights: Option<Weights>,
    /// Bumped whenever the session is replaced by another model (open, reset, new run).
    pub generation: u64,
    pub run: Option<ActiveRun>,
    /// The last error or notice of the run, for the status line.
    pub notice: Option<Status>,
    next_run_id: u64,
}

impl Session {
    pub fn from_checkpoint(ckpt: Checkpoint, file: Option<PathBuf>) -> Result<Self, String> {
        ckpt.config.validate_to_view().map_err(|e| e.to_string())?;
        ckpt.weights
            .validate(&ckpt.config.model)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            series: Series::from_history(&ckpt.history),
            config: ckpt.config,
            weights: ckpt.weights,
            history: ckpt.history,
            snapshots: ckpt.snapshots,
            foreign_file: file.is_some() && !ckpt.has_metadata,
            file,
            dirty: false,
            version: 0,
            pending_weights: None,
            generation: 0,
            run: None,
            notice: None,
            next_run_id: 1,
        })
    }

    /// A fresh, untrained model for `config`. The whole run config is checked, not just the model:
    /// every view computes from the session's task, so an invalid one must never become it.
    pub fn untrained(config: RunConfig) -> Result<Self, String> {
        config.validate().map_err(|e| e.to_string())?;
        let weights = Weights::init(&config.model, config.seed);
        Self::from_checkpoint(Checkpoint::new(config, weights), None)
    }

    /// Replaces the model with `other`, keeping the run-id counter so stale events stay stale.
    pub fn replace(&mut self, other: Session) {
        let next = self.next_run_id;
        let version = self.version + 1;
        let generation = self.generation + 1;
        super::jobs::drop_later(std::mem::replace(self, other));
        self.next_run_id = next;
        self.version = version;
        self.generation = generation;
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            config: self.config.clone(),
            weights: self.weights.clone(),
            epoch: self.history.last().map_or(0, Metrics::progress),
            history: self.history.clone(),
            snapshots: self.snapshots.clone(),
            has_metadata: true,
            origin: "toylens checkpoint".into(),
            data_note: None,
        }
    }

    pub fn is_training(&self) -> bool {
        self.run.is_some()
    }

    /// Starts training `config` from scratch. The caller wires `spawn` to its message channel.
    /// The worker initialises the weights; they arrive with its `Started` event (until then the
    /// new model's weights are zero), so the UI thread does no initialisation work.
    pub fn start_run(
        &mut self,
        config: RunConfig,
        spawn: impl FnOnce(u64, RunConfig) -> TrainingHandle,
    ) -> Result<(), String> {
        config.validate().map_err(|e| e.to_string())?;
        let zeros = Weights::zeros(&config.model);
        let fresh = Session::from_checkpoint(Checkpoint::new(config.clone(), zeros), None)?;
        self.replace(fresh);
        let id = self.next_run_id;
        self.next_run_id += 1;
        let handle = spawn(id, config.clone());
        self.run = Some(ActiveRun::new(id, handle, &config));
        self.dirty = true;
        Ok(())
    }

    /// Gives the model in view a task (a data file attached to it): its views measure the
    /// model on it, and saving writes it.
    pub fn attach_task(&mut self, task: crate::task::TaskConfig) {
        self.config.task = task;
        self.version += 1;
        self.dirty = true;
    }

    pub fn send(&self, command: Command) {
        if let Some(run) = &self.run {
            run.handle.send(command);
        }
    }

    fn set_weights(&mut self, weights: Weights) {
        self.pending_weights = None;
        self.weights = weights;
        self.version += 1;
    }

    /// Puts the newest epoch's weights in view, once per frame however many epochs arrived: with
    /// hundreds of epochs a second, every view recomputing per event would never keep up.
    pub fn sync_weights(&mut self) {
        if let Some(weights) = self.pending_weights.take() {
            self.set_weights(weights);
        }
    }

    /// Applies one event of run `id`. Returns true if anything changed.
    pub fn apply(&mut self, id: u64, event: Event) -> bool {
        let Some(run) = self.run.as_mut().filter(|r| r.id == id) else {
            return false;
        };
        match event {
            Event::Started {
                path,
                initial_weights,
                ..
            } => {
                run.path = path;
                self.snapshots = vec![Snapshot {
                    epoch: 0,
                    weights: initial_weights.clone(),
                }];
                self.set_weights(initial_weights);
            }
            Event::Step(step) => {
                run.last_step = Some(step);
                let x = (step.step as f64) / run.steps_per_epoch.max(1) as f64;
                self.series.step_loss.push(PlotPoint::new(x, step.loss));
            }
            Event::Evaluation { metrics, weights } => {
                self.series.push(&metrics);
                self.snapshots.push(Snapshot {
                    epoch: metrics.progress(),
                    weights: weights.clone(),
                });
                self.history.push(metrics);
                // Long runs keep their whole span at a coarser grain instead of growing without
                // bound, as checkpoints do (Checkpoint::push_snapshot).
                let limit = snapshot_limit(&self.config.model);
                if self.snapshots.len() > 2 * limit {
                    self.snapshots = thinned(&self.snapshots, limit);
                }
                if self.series.step_loss.len() > 2 * MAX_STEP_POINTS {
                    self.series.step_loss = thinned(&self.series.step_loss, MAX_STEP_POINTS);
                }
                self.pending_weights = Some(weights);
            }
            Event::Paused => run.state = RunState::Paused,
            Event::Resumed => run.state = RunState::Running,
            // The run is over; the last finite weights stay in view, to save, reset or train anew.
            Event::Diverged { message, weights } => {
                self.notice = Some(Status::Error(format!(
                    "{message}. The last finite weights are in view: save them, reset or train again"
                )));
                self.set_weights(weights);
                self.run = None;
            }
            Event::Finished {
                reason,
                weights,
                epochs_done,
            } => {
                let unit = self.config.task.unit().name();
                self.notice = Some(Status::Info(match reason {
                    FinishReason::Completed => format!("trained {epochs_done} {unit}s"),
                    FinishReason::Stopped => format!("stopped after {epochs_done} {unit}s"),
                }));
                self.set_weights(weights);
                self.run = None;
            }
            Event::Error(message) => {
                self.notice = Some(Status::Error(format!("training failed: {message}")));
                self.run = None;
            }
        }
        true
    }

    /// The file name for the status line, with a dirty marker.
    pub fn title(&self) -> String {
        let name = self
            .file
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "untitled".into());
        if self.dirty {
            format!("{name} •")
        } else {
            name
        }
    }

    /// A legend label for this run: preset-like lr, seed.
    pub fn label(&self) -> String {
        format!(
            "{} · seed {} · lr {} · {} {}s",
            self.config.task.kind().name(),
            self.config.seed,
            self.config.train.lr,
            self.config.total_units(),
            self.config.task.unit().name()
        )
    }
}
