//! The Features workspace's state: a sparse autoencoder attached to the model in view (the
//! transformer's, or the superposition model's), the next SAE run's settings, the worker that
//! trains one ([`crate::sae::SaeTrainer::drive`], the CLI's loop), and each latent's dashboard,
//! summarised on a worker ([`crate::sae::features::summarise`]). What the workers report comes back as [`Message::Sae`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

mod apply;
mod workers;

use super::Message;
use super::status::Status;
use crate::checkpoint::SaeCheckpoint;
use crate::config::ModelConfig;
use crate::model::{Splice, Transformer, Weights};
use crate::sae::features::Feature;
use crate::sae::{
    Activations, Positions, SaeMetrics, SaeRun, TmsHidden, TransformerHook, hook_width,
};
use crate::superposition::{TmsRun, TmsWeights};
use crate::task::TaskConfig;

/// A run wakes the window at most this often.
pub(super) const WAKE_INTERVAL: Duration = Duration::from_millis(200);
/// Activations the dashboards are summarised over (in batches of [`SUMMARY_BATCH`]), and the
/// examples kept per latent.
pub const SUMMARY_INPUTS: usize = 32_768;
pub(super) const SUMMARY_BATCH: usize = 4_096;
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
        workers::spawn_training(id, draft, inputs, model_name, stop, tx, wake);
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
        workers::spawn_summary(version, sae, inputs, tx, wake);
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
