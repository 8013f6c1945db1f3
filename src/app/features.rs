//! The Features workspace's state: a sparse autoencoder attached to the model in view (the
//! transformer's, or the superposition model's), the next SAE run's settings, the worker that
//! trains one ([`SaeTrainer::drive`], the CLI's loop), and each latent's dashboard, summarised
//! on a worker ([`summarise`]). What the workers report comes back as [`Message::Sae`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use super::Message;
use super::status::Status;
use crate::checkpoint::SaeCheckpoint;
use crate::config::ModelConfig;
use crate::model::{Splice, Transformer, Weights};
use crate::sae::features::{Feature, summarise};
use crate::sae::{
    Activations, Architecture, Positions, SaeMetrics, SaeRun, SaeTrainer, TmsHidden,
    TransformerHook, hook_width,
};
use crate::superposition::{TmsRun, TmsWeights};
use crate::task::TaskConfig;
use crate::train::panic_message;

/// A run wakes the window at most this often.
const WAKE_INTERVAL: Duration = Duration::from_millis(200);
/// Activations the dashboards are summarised over (in batches of [`SUMMARY_BATCH`]), and the
/// examples kept per latent.
pub const SUMMARY_INPUTS: usize = 32_768;
const SUMMARY_BATCH: usize = 4_096;
pub const SUMMARY_EXAMPLES: usize = 12;

/// Which model in view an SAE reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaeTarget {
    Transformer,
    Superposition,
}

/// The next SAE run's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SaeDraft {
    pub target: SaeTarget,
    pub hook: String,
    pub positions: Positions,
    pub run: SaeRun,
}

impl Default for SaeDraft {
    fn default() -> Self {
        Self {
            target: SaeTarget::Transformer,
            hook: "blocks.0.hook_resid_post".into(),
            positions: Positions::All,
            run: SaeRun {
                steps: 2_000,
                eval_every: 100,
                ..SaeRun::standard(256, 0.1)
            },
        }
    }
}

/// How the feature table is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeatureSort {
    #[default]
    Index,
    /// Most often firing first.
    Density,
    /// Strongest first.
    MaxActivation,
}

/// The SAE in view: its weights, what it reads, where it came from.
#[derive(Debug, Clone)]
pub struct AttachedSae {
    pub sae: Arc<SaeCheckpoint>,
    pub target: SaeTarget,
    pub file: Option<PathBuf>,
    /// Trained since last saved.
    pub dirty: bool,
    /// Changes with every new SAE: the dashboards and the inspector's features belong to one.
    pub version: u64,
}

/// What the workers report.
pub enum SaeEvent {
    Progress {
        job: u64,
        metrics: SaeMetrics,
    },
    /// The run ended (finished, stopped, diverged or failed), with the SAE as it is then.
    Ended {
        job: u64,
        result: Result<bool, String>,
        sae: Option<SaeCheckpoint>,
    },
    /// Every latent's dashboard, for the SAE of `version`.
    Summarised {
        version: u64,
        result: Result<Vec<Feature>, String>,
    },
    Opened {
        path: PathBuf,
        result: Result<SaeCheckpoint, String>,
    },
    Saved {
        path: PathBuf,
        version: u64,
        result: Result<(), String>,
    },
}

/// What the workspace's panels ask for.
#[derive(Debug, Clone, PartialEq)]
pub enum SaeAction {
    Edit(Box<SaeDraft>),
    Train,
    Stop,
    /// The latent whose dashboard is shown.
    Select(Option<usize>),
    Sort(FeatureSort),
    /// Summarise the latents again (on fresh activations of the model in view).
    Summarise,
    Open,
    Save,
    SaveAs,
    Detach,
}

/// The model an SAE reads, copied on the UI thread for a worker.
#[derive(Clone)]
pub enum ModelInputs {
    Transformer {
        cfg: ModelConfig,
        weights: Weights,
        task: TaskConfig,
    },
    Superposition {
        run: TmsRun,
        weights: Arc<TmsWeights>,
    },
}

impl ModelInputs {
    /// The activations at `hook`, built on a worker.
    pub fn source(&self, hook: &str, positions: Positions) -> Result<Box<dyn Activations>, String> {
        match self {
            ModelInputs::Transformer { cfg, weights, task } => {
                let model = Transformer::new(cfg, weights, &candle_core::Device::Cpu)
                    .map_err(|e| e.to_string())?;
                let hook = TransformerHook::new(Arc::new(model), task.clone(), hook, positions)?;
                Ok(Box::new(hook))
            }
            ModelInputs::Superposition { run, weights } => {
                Ok(Box::new(TmsHidden::at_hook(run, weights, hook)?))
            }
        }
    }
}

/// The hooks an SAE can read in a transformer of `cfg`.
pub fn transformer_hooks(cfg: &ModelConfig) -> Vec<String> {
    (0..cfg.n_layers)
        .flat_map(|l| Splice::hooks(l, cfg.has_mlp()))
        .collect()
}

/// The dashboards of the SAE in view.
#[derive(Default)]
pub enum Summary {
    #[default]
    None,
    Running(u64),
    Ready(u64, Arc<Vec<Feature>>),
    Failed(u64, String),
}

/// A training run's worker.
struct Job {
    id: u64,
    stop: Arc<AtomicBool>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The Features workspace.
#[derive(Default)]
pub struct SaeWorkspace {
    pub draft: SaeDraft,
    pub attached: Option<AttachedSae>,
    /// The metrics of the run in progress or of the attached SAE.
    pub history: Vec<SaeMetrics>,
    pub summary: Summary,
    pub selected: Option<usize>,
    pub sort: FeatureSort,
    job: Option<Job>,
}

impl SaeWorkspace {
    pub fn is_training(&self) -> bool {
        self.job.is_some()
    }

    /// The dashboards, when ready for the SAE in view.
    pub fn features(&self) -> Option<&Arc<Vec<Feature>>> {
        match (&self.summary, &self.attached) {
            (Summary::Ready(v, features), Some(a)) if *v == a.version => Some(features),
            _ => None,
        }
    }

    /// The latents' order in the table.
    pub fn order(&self, features: &[Feature]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..features.len()).collect();
        match self.sort {
            FeatureSort::Index => {}
            FeatureSort::Density => {
                order.sort_by(|&a, &b| features[b].density.total_cmp(&features[a].density))
            }
            FeatureSort::MaxActivation => order.sort_by(|&a, &b| {
                features[b]
                    .max_activation
                    .total_cmp(&features[a].max_activation)
            }),
        }
        order
    }

    /// Why Train cannot start on `inputs` now.
    pub fn train_blocker(&self, inputs: Option<&ModelInputs>) -> Option<String> {
        if self.is_training() {
            return Some("an SAE is training".into());
        }
        let Some(inputs) = inputs else {
            return Some("there is no superposition model in view".into());
        };
        let d_in = match inputs {
            ModelInputs::Transformer { cfg, task, .. } => {
                if !task.has_data() {
                    return Some(
                        "the model has no task: attach a dataset, or train one on a task".into(),
                    );
                }
                hook_width(cfg, &self.draft.hook)
            }
            ModelInputs::Superposition { run, .. } => {
                TmsHidden::instance_of(&self.draft.hook, run.model.n_instances)
                    .map(|_| run.model.n_hidden)
                    .ok_or_else(|| {
                        format!("pick one of the model's hooks, not {}", self.draft.hook)
                    })
            }
        };
        match d_in {
            Err(e) => Some(e),
            Ok(d_in) => self.draft.run.validate(d_in).err(),
        }
    }

    /// Starts training the draft's SAE on `inputs` on a worker thread.
    pub fn train(
        &mut self,
        inputs: ModelInputs,
        model_name: String,
        tx: Sender<Message>,
        wake: impl Fn() + Send + 'static,
    ) -> Status {
        if let Some(reason) = self.train_blocker(Some(&inputs)) {
            return Status::Error(format!("cannot train the SAE: {reason}"));
        }
        let id = next_id();
        let stop = Arc::new(AtomicBool::new(false));
        self.job = Some(Job {
            id,
            stop: stop.clone(),
        });
        self.history.clear();
        let draft = self.draft.clone();
        let status = format!(
            "training an SAE of {} latents on {}, {} steps",
            draft.run.d_sae, draft.hook, draft.run.steps
        );
        spawn_training(id, draft, inputs, model_name, stop, tx, wake);
        Status::Info(status)
    }

    pub fn stop(&mut self) {
        if let Some(job) = &self.job {
            job.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Attaches `sae` (trained here, or opened) and starts summarising its latents.
    pub fn attach(
        &mut self,
        sae: SaeCheckpoint,
        target: SaeTarget,
        file: Option<PathBuf>,
        dirty: bool,
    ) -> u64 {
        let version = next_id();
        self.history = sae.history.clone();
        self.selected = None;
        self.attached = Some(AttachedSae {
            sae: Arc::new(sae),
            target,
            file,
            dirty,
            version,
        });
        version
    }

    /// Summarises the attached SAE's latents on `inputs` on a worker.
    pub fn summarise(
        &mut self,
        inputs: ModelInputs,
        tx: Sender<Message>,
        wake: impl Fn() + Send + 'static,
    ) {
        let Some(attached) = &self.attached else {
            return;
        };
        let (version, sae) = (attached.version, attached.sae.clone());
        self.summary = Summary::Running(version);
        std::thread::Builder::new()
            .name("toylens-sae-features".into())
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let positions = sae.positions.unwrap_or(Positions::All);
                    let mut source = inputs.source(&sae.hook_name, positions)?;
                    summarise(
                        &sae.weights,
                        sae.architecture,
                        source.as_mut(),
                        SUMMARY_INPUTS / SUMMARY_BATCH,
                        SUMMARY_BATCH,
                        SUMMARY_EXAMPLES,
                        0,
                    )
                }))
                .unwrap_or_else(|p| Err(format!("summarising failed: {}", panic_message(&*p))));
                let _ = tx.send(Message::Sae(SaeEvent::Summarised { version, result }));
                wake();
            })
            .expect("a thread for the SAE's features");
    }

    /// Takes a worker's event; returns the status line it brings and whether the attached
    /// SAE changed (its dashboards are then due).
    pub fn apply(&mut self, event: SaeEvent) -> (Option<Status>, bool) {
        let ours = |job: u64| self.job.as_ref().is_some_and(|j| j.id == job);
        match event {
            SaeEvent::Progress { job, metrics } if ours(job) => {
                self.history.push(metrics);
                (None, false)
            }
            SaeEvent::Ended { job, result, sae } if ours(job) => {
                self.job = None;
                let target = self.draft.target;
                let status = match &result {
                    Ok(true) => Status::Info(format!(
                        "trained the SAE: {}",
                        self.history.last().map_or_else(String::new, describe)
                    )),
                    Ok(false) => Status::Info(format!(
                        "stopped the SAE after {} steps",
                        sae.as_ref()
                            .map_or(0, |s| s.history.last().map_or(0, |m| m.step))
                    )),
                    Err(e) => Status::Error(e.clone()),
                };
                let changed = sae.is_some();
                if let Some(sae) = sae {
                    self.attach(sae, target, None, true);
                }
                (Some(status), changed)
            }
            SaeEvent::Summarised { version, result } => {
                if matches!(self.summary, Summary::Running(v) if v == version) {
                    self.summary = match result {
                        Ok(features) => {
                            // A dashboard in view from the start: the latent that fires most.
                            if self.selected.is_none_or(|i| i >= features.len()) {
                                self.selected = (0..features.len())
                                    .max_by(|&a, &b| {
                                        features[a].density.total_cmp(&features[b].density)
                                    })
                                    .filter(|&i| features[i].density > 0.0);
                            }
                            Summary::Ready(version, Arc::new(features))
                        }
                        Err(e) => Summary::Failed(version, e),
                    };
                }
                (None, false)
            }
            SaeEvent::Saved {
                path,
                version,
                result,
            } => {
                let status = match result {
                    Ok(()) => {
                        if let Some(a) = self.attached.as_mut().filter(|a| a.version == version) {
                            a.file = Some(path.clone());
                            a.dirty = false;
                        }
                        Status::Info(format!("saved the SAE to {}", path.display()))
                    }
                    Err(e) => Status::Error(format!("cannot save the SAE: {e}")),
                };
                (Some(status), false)
            }
            // Opening is the app's to apply: it checks the SAE against the model in view.
            SaeEvent::Opened { .. } | SaeEvent::Progress { .. } | SaeEvent::Ended { .. } => {
                (None, false)
            }
        }
    }
}

/// One evaluation in words, for the status line.
pub fn describe(m: &SaeMetrics) -> String {
    let mut s = format!(
        "step {}: explained variance {:.3}, L0 {:.1}, dead {}",
        m.step, m.explained_variance, m.l0, m.dead
    );
    if let Some(ce) = m.ce {
        s += &format!(", CE loss recovered {:.3}", ce.recovered());
    }
    if let Some((found, of)) = m.recovered {
        s += &format!(", {found}/{of} features recovered");
    }
    s
}

/// Trains on a worker thread, reporting every evaluation; a panic ends the run with its
/// message instead of taking the app down.
fn spawn_training(
    id: u64,
    draft: SaeDraft,
    inputs: ModelInputs,
    model_name: String,
    stop: Arc<AtomicBool>,
    tx: Sender<Message>,
    wake: impl Fn() + Send + 'static,
) {
    std::thread::Builder::new()
        .name("toylens-sae".into())
        .spawn(move || {
            let mut last_wake = Instant::now() - WAKE_INTERVAL;
            let mut trainer: Option<SaeTrainer> = None;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let source = inputs.source(&draft.hook, draft.positions)?;
                let t = trainer
                    .insert(SaeTrainer::new(draft.run.clone(), source).map_err(|e| e.to_string())?);
                t.drive(&stop, |_, metrics| {
                    let _ = tx.send(Message::Sae(SaeEvent::Progress {
                        job: id,
                        metrics: metrics.clone(),
                    }));
                    if last_wake.elapsed() >= WAKE_INTERVAL {
                        last_wake = Instant::now();
                        wake();
                    }
                })
                .map_err(|e| e.to_string())
            }));
            let result = match result {
                Ok(r) => r,
                Err(panic) => Err(format!("training failed: {}", panic_message(&*panic))),
            };
            let sae = trainer
                .filter(|t| t.step_count() > 0)
                .map(|t| SaeCheckpoint {
                    architecture: t.run().architecture,
                    weights: t.weights().clone(),
                    hook_name: t.hook_name(),
                    model_name,
                    run: Some(t.run().clone()),
                    history: t.history().to_vec(),
                    positions: (draft.target == SaeTarget::Transformer).then_some(draft.positions),
                });
            let _ = tx.send(Message::Sae(SaeEvent::Ended {
                job: id,
                result,
                sae,
            }));
            wake();
        })
        .expect("a thread for training the SAE");
}

/// Reads an SAE folder on a worker thread.
pub fn open(path: PathBuf, tx: Sender<Message>, wake: impl Fn() + Send + 'static) {
    std::thread::spawn(move || {
        let result = SaeCheckpoint::load(&path).map_err(|e| e.to_string());
        let _ = tx.send(Message::Sae(SaeEvent::Opened { path, result }));
        wake();
    });
}

/// Writes an SAE folder on a worker thread (each file whole or not at all).
pub fn save(
    sae: Arc<SaeCheckpoint>,
    version: u64,
    path: PathBuf,
    tx: Sender<Message>,
    wake: impl Fn() + Send + 'static,
) {
    std::thread::spawn(move || {
        let result = sae.save(&path).map_err(|e| e.to_string());
        let _ = tx.send(Message::Sae(SaeEvent::Saved {
            path,
            version,
            result,
        }));
        wake();
    });
}

/// The draft's defaults for reading `inputs`: a hook the model has, and an SAE that fits it.
fn draft_for(target: SaeTarget, inputs: &ModelInputs) -> SaeDraft {
    let base = SaeDraft::default();
    match inputs {
        ModelInputs::Transformer { cfg, task, .. } => {
            // The MLP's neurons where the model has them (the grokking model's features live
            // there), else the residual stream after the last block.
            let hook = if cfg.has_mlp() {
                "blocks.0.mlp.hook_post".to_string()
            } else {
                format!("blocks.{}.hook_resid_post", cfg.n_layers.saturating_sub(1))
            };
            let d_in = hook_width(cfg, &hook).unwrap_or(cfg.d_model);
            // TopK needs no coefficient tuned to the activations' scale.
            let d_sae = (4 * d_in).clamp(16, 4096);
            SaeDraft {
                target,
                hook,
                positions: Positions::for_task(task),
                run: SaeRun {
                    d_sae,
                    architecture: Architecture::TopK {
                        k: 8.min(d_sae),
                        aux_coefficient: 1.0,
                    },
                    batch_size: 4_096,
                    ..base.run
                },
            }
        }
        // The ground-truth recipe: twice as many latents as features, λ 0.1, 6000 steps (2000
        // recover about 60 of 100 features; 6000 all of them).
        ModelInputs::Superposition { run, .. } => SaeDraft {
            target,
            hook: "hook_hidden.0".into(),
            positions: Positions::All,
            run: SaeRun {
                eval_every: 250,
                ..SaeRun::standard((2 * run.model.n_features).clamp(2, 4096), 0.1)
            },
        },
    }
}

impl super::ToylensApp {
    /// The model an SAE of `target` reads, copied for a worker (`None`: no superposition model
    /// in view).
    pub fn sae_inputs(&self, target: SaeTarget) -> Option<ModelInputs> {
        match target {
            SaeTarget::Transformer => {
                let (cfg, weights) = self.job_inputs();
                Some(ModelInputs::Transformer {
                    cfg,
                    weights,
                    task: self.session.config.task.clone(),
                })
            }
            SaeTarget::Superposition => self.tms.as_ref().map(|tms| {
                let last = tms.snapshots.last().expect("a workspace has a snapshot");
                ModelInputs::Superposition {
                    run: tms.run.clone(),
                    weights: last.weights.clone(),
                }
            }),
        }
    }

    /// Shows `workspace`; the Features workspace first reads the model the window showed.
    pub(super) fn show_workspace(&mut self, workspace: super::Workspace) {
        use super::Workspace;
        match workspace {
            Workspace::Superposition if self.tms.is_none() => {
                self.tms = Some(super::superposition::TmsWorkspace::new(
                    crate::superposition::TmsPreset::Intro,
                ));
            }
            Workspace::Features if !self.sae.is_training() && self.sae.attached.is_none() => {
                let target = if self.workspace == Workspace::Superposition && self.tms.is_some() {
                    SaeTarget::Superposition
                } else {
                    SaeTarget::Transformer
                };
                if let Some(inputs) = self.sae_inputs(target) {
                    self.sae.draft = draft_for(target, &inputs);
                }
            }
            _ => {}
        }
        self.workspace = workspace;
    }

    /// Why the SAE cannot be saved now.
    pub fn sae_save_blocker(&self) -> Option<String> {
        if self.busy_io {
            Some("a file operation is in progress".into())
        } else if self.sae.attached.is_none() {
            Some("there is no SAE to save: train or open one".into())
        } else {
            None
        }
    }

    /// Applies what the Features workspace asked for.
    pub(super) fn apply_sae(&mut self, action: SaeAction) {
        match action {
            SaeAction::Edit(draft) => {
                if !self.sae.is_training() {
                    // A new target gets that model's defaults.
                    if draft.target != self.sae.draft.target {
                        if let Some(inputs) = self.sae_inputs(draft.target) {
                            self.sae.draft = draft_for(draft.target, &inputs);
                        }
                    } else {
                        self.sae.draft = *draft;
                    }
                }
            }
            SaeAction::Train => {
                let target = self.sae.draft.target;
                let Some(inputs) = self.sae_inputs(target) else {
                    self.status = Some(Status::Error(
                        "cannot train the SAE: there is no superposition model in view".into(),
                    ));
                    return;
                };
                let name = match target {
                    SaeTarget::Transformer => self.session.file.as_ref(),
                    SaeTarget::Superposition => self.tms.as_ref().and_then(|t| t.file.as_ref()),
                }
                .and_then(|p| p.file_stem())
                .map_or_else(
                    || "toylens".to_string(),
                    |s| s.to_string_lossy().into_owned(),
                );
                let (tx, wake) = (self.tx.clone(), self.wake());
                self.status = Some(self.sae.train(inputs, name, tx, wake));
            }
            SaeAction::Stop => self.sae.stop(),
            SaeAction::Select(latent) => self.sae.selected = latent,
            SaeAction::Sort(sort) => self.sae.sort = sort,
            SaeAction::Summarise => self.summarise_sae(),
            SaeAction::Open => self.pick(super::files::Purpose::OpenSae),
            SaeAction::Save => match self.sae.attached.as_ref().and_then(|a| a.file.clone()) {
                Some(path) => self.save_sae(path),
                None => self.pick(super::files::Purpose::SaveSae),
            },
            SaeAction::SaveAs => self.pick(super::files::Purpose::SaveSae),
            SaeAction::Detach => {
                let unsaved = self.sae.attached.as_ref().is_some_and(|a| a.dirty);
                if !self.sae.is_training() && !unsaved {
                    self.sae.attached = None;
                    self.sae.history.clear();
                    self.sae.summary = Summary::None;
                    self.sae.selected = None;
                }
            }
        }
    }

    /// Summarises the attached SAE's latents on the model it reads.
    fn summarise_sae(&mut self) {
        let Some(target) = self.sae.attached.as_ref().map(|a| a.target) else {
            return;
        };
        match self.sae_inputs(target) {
            Some(inputs) => {
                let (tx, wake) = (self.tx.clone(), self.wake());
                self.sae.summarise(inputs, tx, wake);
            }
            None => {
                if let Some(a) = &self.sae.attached {
                    self.sae.summary = Summary::Failed(
                        a.version,
                        "the superposition model it reads is no longer in view".into(),
                    );
                }
            }
        }
    }

    /// Takes a worker's report.
    pub(super) fn sae_event(&mut self, event: SaeEvent) {
        if let SaeEvent::Opened { path, result } = event {
            self.busy_io = false;
            self.status = Some(
                match result.and_then(|sae| self.attach_opened(sae, &path)) {
                    Ok(()) => Status::Info(format!("opened the SAE in {}", path.display())),
                    Err(e) => {
                        Status::Error(format!("cannot open the SAE in {}: {e}", path.display()))
                    }
                },
            );
            return;
        }
        if let SaeEvent::Saved { .. } = event {
            self.busy_io = false;
        }
        let ended = matches!(event, SaeEvent::Ended { .. });
        let (status, changed) = self.sae.apply(event);
        if let Some(status) = status {
            self.status = Some(status);
        }
        if ended && !self.sae.is_training() {
            // How smooth the window stayed while the SAE trained (`RUST_LOG=info toylens`).
            let times = &self.frame_times;
            log::info!(
                "SAE run ended: {} steps in {:.1} s; frame time p50 {:.1} ms, p95 {:.1} ms, max \
                 {:.1} ms over the last {} frames",
                self.sae.history.last().map_or(0, |m| m.step),
                self.sae.history.last().map_or(0.0, |m| m.elapsed_s),
                times.percentile(50.0).unwrap_or(0.0),
                times.percentile(95.0).unwrap_or(0.0),
                times.percentile(100.0).unwrap_or(0.0),
                times.recent_ms.len(),
            );
        }
        if changed {
            self.summarise_sae();
        }
    }

    /// Attaches an SAE read from disk, if it reads the model in view; nothing changes if not.
    fn attach_opened(&mut self, sae: SaeCheckpoint, path: &std::path::Path) -> Result<(), String> {
        if self.sae.is_training() {
            return Err("an SAE is training: stop it first".into());
        }
        let target = if sae.hook_name.starts_with("hook_hidden.") {
            let tms = self
                .tms
                .as_ref()
                .ok_or("it reads a superposition model's hidden layer: open or train one first")?;
            let fits = TmsHidden::instance_of(&sae.hook_name, tms.run.model.n_instances).is_some()
                && sae.weights.d_in == tms.run.model.n_hidden;
            if !fits {
                return Err(format!(
                    "it reads {} of width {}; the superposition model in view has {} \
                     instances of {} dimensions",
                    sae.hook_name,
                    sae.weights.d_in,
                    tms.run.model.n_instances,
                    tms.run.model.n_hidden
                ));
            }
            SaeTarget::Superposition
        } else {
            crate::sae::hook::fits_transformer(
                &sae.weights,
                &sae.hook_name,
                &self.session.config.model,
            )?;
            SaeTarget::Transformer
        };
        self.sae
            .attach(sae, target, Some(path.to_path_buf()), false);
        self.summarise_sae();
        Ok(())
    }

    pub(super) fn open_sae(&mut self, path: PathBuf) {
        if self.busy_io {
            self.status = Some(Status::Error(
                "cannot open: a file operation is in progress".into(),
            ));
            return;
        }
        self.busy_io = true;
        open(path, self.tx.clone(), self.wake());
    }

    pub(super) fn save_sae(&mut self, path: PathBuf) {
        if let Some(reason) = self.sae_save_blocker() {
            self.status = Some(Status::Error(format!("cannot save the SAE: {reason}")));
            return;
        }
        let attached = self.sae.attached.as_ref().expect("checked by the blocker");
        self.busy_io = true;
        save(
            attached.sae.clone(),
            attached.version,
            path,
            self.tx.clone(),
            self.wake(),
        );
    }
}
