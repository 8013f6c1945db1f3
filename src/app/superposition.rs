//! The Superposition workspace's state: the next run's settings, the run in view (its weights
//! after every evaluation, for the scrubber, and each instance's geometry then), and the worker
//! that trains it. A run trains on its own thread ([`TmsTrainer::drive`], the loop the CLI
//! uses); what it reports comes back as [`Message::Tms`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use super::Message;
use super::status::Status;
use crate::checkpoint::TmsCheckpoint;
use crate::superposition::{
    Ended, Geometry, TmsMetrics, TmsPreset, TmsRun, TmsTrainer, TmsWeights, geometry, norms_only,
};
use crate::train::panic_message;

/// The weights held for the scrubber, at most: past this, every other snapshot is dropped
/// (the first and the latest kept), so memory stays bounded whatever the run's length.
const MAX_SNAPSHOT_FLOATS: usize = 32 << 20;
const MAX_SNAPSHOTS: usize = 400;

/// A run wakes the window at most this often: live enough to watch, and rare enough that a
/// software-rendered window leaves the trainer its cores.
const WAKE_INTERVAL: Duration = Duration::from_millis(200);

/// Each feature's superposition and dimensionality compare it with every other feature
/// (`instances·n²·m` multiply-adds a snapshot); past this many, a snapshot keeps the norms and D*
/// only, so that no snapshot holds up the window (about 20 ms here).
pub const GEOMETRY_BUDGET: usize = 20_000_000;

/// How long each snapshot shows while the scrubber plays.
pub const PLAY_INTERVAL: Duration = Duration::from_millis(60);

/// The model after one evaluation: its weights and every instance's geometry.
#[derive(Debug, Clone)]
pub struct TmsSnapshot {
    pub step: usize,
    pub weights: Arc<TmsWeights>,
    pub geometry: Arc<Vec<Geometry>>,
}

impl TmsSnapshot {
    /// The floats of its weights.
    fn floats(&self) -> usize {
        self.weights.w.len() + self.weights.b.len()
    }

    fn of(run: &TmsRun, step: usize, weights: TmsWeights) -> Self {
        let (n, m) = (run.model.n_features, run.model.n_hidden);
        let pairs = run
            .model
            .n_instances
            .saturating_mul(n * n)
            .saturating_mul(m);
        let geometry = weights
            .w
            .chunks_exact(n * m)
            .map(|w| {
                if pairs <= GEOMETRY_BUDGET {
                    geometry(w, n, m)
                } else {
                    norms_only(w, n, m)
                }
            })
            .collect();
        Self {
            step,
            weights: Arc::new(weights),
            geometry: Arc::new(geometry),
        }
    }
}

/// What the training worker reports.
pub enum TmsEvent {
    /// The run's untrained model, built on the worker: it replaces the model in view.
    Started {
        job: u64,
        run: Box<TmsRun>,
        snapshot: TmsSnapshot,
    },
    /// An evaluation: its metrics and the model then (`None` while the window has not yet
    /// taken the snapshots sent before: they are held to a few, however large the model).
    Progress {
        job: u64,
        metrics: TmsMetrics,
        snapshot: Option<TmsSnapshot>,
    },
    /// The run ended (finished, stopped, diverged, or its worker failed), with its final
    /// weights (a stopped run's are past its last evaluation; a diverged run's the last finite
    /// ones).
    Ended {
        job: u64,
        result: Result<Ended, String>,
        last: Option<TmsSnapshot>,
    },
}

/// What the workspace's panels ask for.
#[derive(Debug, Clone, PartialEq)]
pub enum TmsAction {
    /// Load a preset's settings into the form (and open the workspace).
    Preset(TmsPreset),
    /// The settings form, as edited this frame.
    Edit(Box<TmsRun>),
    Train,
    Stop,
    /// The instance the per-instance views show.
    Select(usize),
    /// Show the model after this evaluation (an index into the snapshots); `None`: the latest.
    View(Option<usize>),
    Play(bool),
    Save,
    SaveAs,
    ExportCsv,
}

/// A run's worker: its id (events of older ones are ignored), its stop flag, and how many
/// floats of its snapshots are on their way to the window.
struct Job {
    id: u64,
    stop: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
}

/// The weights a run sends ahead of the window taking them, at most (in floats; one snapshot
/// always may go): a small model's every snapshot, a huge model's one or two.
const MAX_IN_FLIGHT_FLOATS: usize = 16 << 20;

/// The Superposition workspace.
pub struct TmsWorkspace {
    /// The next run's settings, as the form edits them.
    pub draft: TmsRun,
    /// The run in view.
    pub run: TmsRun,
    pub snapshots: Vec<TmsSnapshot>,
    pub history: Vec<TmsMetrics>,
    pub instance: usize,
    /// The snapshot in view; `None` follows the latest.
    pub view: Option<usize>,
    /// Playing the snapshots, and when the last one was shown.
    pub playing: Option<Instant>,
    pub file: Option<PathBuf>,
    /// Trained since last saved.
    pub dirty: bool,
    job: Option<Job>,
}

/// Ids for runs, unique in the process: a worker's events name the run they belong to.
static NEXT_JOB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl TmsWorkspace {
    /// The workspace on a preset's untrained model.
    pub fn new(preset: TmsPreset) -> Self {
        let run = TmsRun::from_preset(preset);
        Self::untrained(run)
    }

    fn untrained(run: TmsRun) -> Self {
        let weights = TmsWeights::init(&run.model, run.seed);
        Self {
            snapshots: vec![TmsSnapshot::of(&run, 0, weights)],
            draft: run.clone(),
            run,
            history: Vec::new(),
            instance: 0,
            view: None,
            playing: None,
            file: None,
            dirty: false,
            job: None,
        }
    }

    /// The workspace on a checkpoint: its final weights (the history has no earlier ones).
    pub fn from_checkpoint(checkpoint: TmsCheckpoint, file: PathBuf) -> Self {
        let TmsCheckpoint {
            run,
            weights,
            step,
            history,
        } = checkpoint;
        Self {
            snapshots: vec![TmsSnapshot::of(&run, step, weights)],
            draft: run.clone(),
            run,
            history,
            instance: 0,
            view: None,
            playing: None,
            file: Some(file),
            dirty: false,
            job: None,
        }
    }

    pub fn is_training(&self) -> bool {
        self.job.is_some()
    }

    /// The snapshot index in view.
    pub fn shown_index(&self) -> usize {
        let last = self.snapshots.len() - 1;
        self.view.unwrap_or(last).min(last)
    }

    /// The snapshot in view.
    pub fn shown(&self) -> &TmsSnapshot {
        &self.snapshots[self.shown_index()]
    }

    /// Why Train cannot start now.
    pub fn train_blocker(&self) -> Option<String> {
        if self.is_training() {
            return Some("a run is in progress".into());
        }
        self.draft
            .validate()
            .err()
            .map(|e| format!("fix the settings first: {e}"))
    }

    /// Starts a run of the draft's settings on a worker thread, which builds its untrained
    /// model (a large one takes a while) and sends it to replace the model in view.
    pub fn train(&mut self, tx: Sender<Message>, wake: impl Fn() + Send + 'static) -> Status {
        if let Some(reason) = self.train_blocker() {
            return Status::Error(format!("cannot train: {reason}"));
        }
        let run = self.draft.clone();
        let id = NEXT_JOB.fetch_add(1, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicUsize::new(0));
        self.job = Some(Job {
            id,
            stop: stop.clone(),
            in_flight: in_flight.clone(),
        });
        spawn(id, run.clone(), (stop, in_flight), tx, wake);
        Status::Info(format!(
            "training {} features into {} dimensions, {} instances, {} steps",
            run.model.n_features, run.model.n_hidden, run.model.n_instances, run.train.steps
        ))
    }

    /// Asks the run to stop after its current step.
    pub fn stop(&mut self) {
        if let Some(job) = &self.job {
            job.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Takes a worker's event; returns the status line it brings, if any.
    pub fn apply(&mut self, event: TmsEvent) -> Option<Status> {
        let ours = |job: u64| self.job.as_ref().is_some_and(|j| j.id == job);
        match event {
            TmsEvent::Started { job, run, snapshot } if ours(job) => {
                self.instance = self.instance.min(run.model.n_instances - 1);
                self.run = *run;
                self.snapshots = vec![snapshot];
                self.history.clear();
                self.view = None;
                self.playing = None;
                self.dirty = true;
                None
            }
            TmsEvent::Progress {
                job,
                metrics,
                snapshot,
            } if ours(job) => {
                self.history.push(metrics);
                if let Some(snapshot) = snapshot {
                    if let Some(job) = &self.job {
                        job.in_flight
                            .fetch_sub(snapshot.floats(), Ordering::Relaxed);
                    }
                    self.push_snapshot(snapshot);
                }
                None
            }
            TmsEvent::Ended { job, result, last }
                if self.job.as_ref().is_some_and(|j| j.id == job) =>
            {
                self.job = None;
                if let Some(last) =
                    last.filter(|l| l.step > self.snapshots.last().map_or(0, |s| s.step))
                {
                    self.push_snapshot(last);
                }
                let steps = self.snapshots.last().map_or(0, |s| s.step);
                Some(match result {
                    Ok(Ended::Finished) => Status::Info(format!(
                        "trained {steps} steps in {:.1} s",
                        self.history.last().map_or(0.0, |m| m.elapsed_s)
                    )),
                    Ok(Ended::Stopped) => Status::Info(format!("stopped after {steps} steps")),
                    Err(e) => Status::Error(e),
                })
            }
            _ => None,
        }
    }

    fn push_snapshot(&mut self, snapshot: TmsSnapshot) {
        let floats = snapshot.weights.w.len() + snapshot.weights.b.len();
        let cap = (MAX_SNAPSHOT_FLOATS / floats.max(1)).clamp(2, MAX_SNAPSHOTS);
        self.snapshots.push(snapshot);
        if self.snapshots.len() > cap {
            // Keep the first, every other one after it, and the latest.
            let last = self.snapshots.pop().expect("just pushed");
            let mut k = 0;
            self.snapshots.retain(|_| {
                k += 1;
                k % 2 == 1
            });
            self.snapshots.push(last);
            self.view = None;
        }
    }

    /// Moves the playing scrubber on; returns whether to draw again soon.
    pub fn tick(&mut self, now: Instant) -> bool {
        let Some(last) = self.playing else {
            return false;
        };
        if now.duration_since(last) >= PLAY_INTERVAL {
            let next = self.shown_index() + 1;
            if next >= self.snapshots.len() {
                self.playing = None;
                self.view = None;
                return false;
            }
            self.view = Some(next);
            self.playing = Some(now);
        }
        true
    }

    /// The checkpoint of the run in view: its latest weights and its history.
    pub fn checkpoint(&self) -> TmsCheckpoint {
        let last = self.snapshots.last().expect("a workspace has a snapshot");
        TmsCheckpoint {
            run: self.run.clone(),
            weights: (*last.weights).clone(),
            step: last.step,
            history: self.history.clone(),
        }
    }

    /// The history as CSV: a row per evaluation and instance.
    pub fn history_csv(&self) -> String {
        crate::superposition::metrics::history_csv(&self.history, &self.run.probabilities())
    }
}

/// Trains on a worker thread, reporting every evaluation; a panic in the trainer ends the run
/// with its message instead of taking the app down.
fn spawn(
    id: u64,
    run: TmsRun,
    (stop, in_flight): (Arc<AtomicBool>, Arc<AtomicUsize>),
    tx: Sender<Message>,
    wake: impl Fn() + Send + 'static,
) {
    std::thread::Builder::new()
        .name("toylens-superposition".into())
        .spawn(move || {
            let mut last_wake = Instant::now() - WAKE_INTERVAL;
            let mut trainer = None;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let t = trainer.insert(TmsTrainer::new(run.clone())?);
                let snapshot = TmsSnapshot::of(&run, 0, t.weights().clone());
                let _ = tx.send(Message::Tms(TmsEvent::Started {
                    job: id,
                    run: Box::new(run.clone()),
                    snapshot,
                }));
                wake();
                t.drive(&stop, |trainer, metrics| {
                    let size = trainer.weights().w.len() + trainer.weights().b.len();
                    let ahead = in_flight.load(Ordering::Relaxed);
                    let snapshot =
                        (ahead == 0 || ahead + size <= MAX_IN_FLIGHT_FLOATS).then(|| {
                            in_flight.fetch_add(size, Ordering::Relaxed);
                            let weights = trainer.weights().clone();
                            TmsSnapshot::of(trainer.run(), trainer.steps_done(), weights)
                        });
                    let _ = tx.send(Message::Tms(TmsEvent::Progress {
                        job: id,
                        metrics: metrics.clone(),
                        snapshot,
                    }));
                    if last_wake.elapsed() >= WAKE_INTERVAL {
                        last_wake = Instant::now();
                        wake();
                    }
                })
            }));
            let result = match result {
                Ok(Ok(ended)) => Ok(ended),
                Ok(Err(e)) => Err(e.to_string()),
                Err(panic) => Err(format!("training failed: {}", panic_message(&*panic))),
            };
            // The run's final weights, whatever snapshots went before (none if it never began).
            let last = trainer.and_then(|t| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    TmsSnapshot::of(t.run(), t.steps_done(), t.weights().clone())
                }))
                .ok()
            });
            let _ = tx.send(Message::Tms(TmsEvent::Ended {
                job: id,
                result,
                last,
            }));
            wake();
        })
        .expect("a thread for training");
}

impl super::ToylensApp {
    /// Applies what the Superposition workspace asked for.
    pub(super) fn apply_tms(&mut self, action: TmsAction) {
        match action {
            TmsAction::Preset(preset) => {
                self.workspace = super::Workspace::Superposition;
                match &mut self.tms {
                    // A trained or training model stays in view; the next run takes the preset.
                    Some(tms) if tms.is_training() || tms.dirty => {
                        tms.draft = TmsRun::from_preset(preset)
                    }
                    _ => self.tms = Some(TmsWorkspace::new(preset)),
                }
            }
            action => {
                let (tx, wake) = (self.tx.clone(), self.wake());
                let Some(tms) = &mut self.tms else {
                    return;
                };
                match action {
                    TmsAction::Edit(run) => tms.draft = *run,
                    TmsAction::Train => self.status = Some(tms.train(tx, wake)),
                    TmsAction::Stop => tms.stop(),
                    TmsAction::Select(i) => {
                        tms.instance = i.min(tms.run.model.n_instances.saturating_sub(1))
                    }
                    TmsAction::View(index) => {
                        tms.view = index.map(|i| i.min(tms.snapshots.len() - 1));
                        tms.playing = None;
                    }
                    TmsAction::Play(true) => {
                        if tms.view.is_none() || tms.shown_index() + 1 >= tms.snapshots.len() {
                            tms.view = Some(0);
                        }
                        tms.playing = Some(Instant::now());
                    }
                    TmsAction::Play(false) => tms.playing = None,
                    TmsAction::Save => match tms.file.clone() {
                        Some(path) => self.save_tms(path),
                        None => self.pick(super::files::Purpose::SaveTms),
                    },
                    TmsAction::SaveAs => self.pick(super::files::Purpose::SaveTms),
                    TmsAction::ExportCsv => self.pick(super::files::Purpose::ExportCsv),
                    TmsAction::Preset(_) => unreachable!("handled above"),
                }
            }
        }
    }

    /// Saves the superposition model in view to `path` on a worker.
    pub(super) fn save_tms(&mut self, path: PathBuf) {
        self.path_field = None;
        if self.busy_io {
            self.status = Some(Status::Error(
                "cannot save: a file operation is in progress".into(),
            ));
            return;
        }
        let Some(tms) = &self.tms else {
            return;
        };
        self.busy_io = true;
        super::files::save_tms(tms.checkpoint(), path, self.tx.clone(), self.wake());
    }

    /// Whether closing would lose work: a transformer, superposition model or SAE not saved.
    pub fn unsaved_work(&self) -> bool {
        self.session.dirty
            || self.tms.as_ref().is_some_and(|t| t.dirty)
            || self.sae.attached.as_ref().is_some_and(|a| a.dirty)
    }
}
