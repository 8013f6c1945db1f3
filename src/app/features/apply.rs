//! What the Features workspace's actions and its workers' reports do to the app: the draft's
//! defaults for the model in view, Train, Open and Save, and attaching an SAE only where it
//! fits the model.

use std::path::PathBuf;

use super::workers::{open, save};
use super::{ModelInputs, SaeAction, SaeDraft, SaeEvent, SaeTarget, Summary};
use crate::app::status::Status;
use crate::checkpoint::SaeCheckpoint;
use crate::sae::{Architecture, Positions, SaeRun, TmsHidden, hook_width};

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

impl crate::app::ToylensApp {
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
    pub(in crate::app) fn show_workspace(&mut self, workspace: crate::app::Workspace) {
        use crate::app::Workspace;
        match workspace {
            Workspace::Superposition if self.tms.is_none() => {
                self.tms = Some(crate::app::superposition::TmsWorkspace::new(
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
    pub(in crate::app) fn apply_sae(&mut self, action: SaeAction) {
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
            SaeAction::Open => self.pick(crate::app::files::Purpose::OpenSae),
            SaeAction::Save => match self.sae.attached.as_ref().and_then(|a| a.file.clone()) {
                Some(path) => self.save_sae(path),
                None => self.pick(crate::app::files::Purpose::SaveSae),
            },
            SaeAction::SaveAs => self.pick(crate::app::files::Purpose::SaveSae),
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
    pub(in crate::app) fn sae_event(&mut self, event: SaeEvent) {
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

    pub(in crate::app) fn open_sae(&mut self, path: PathBuf) {
        if self.busy_io {
            self.status = Some(Status::Error(
                "cannot open: a file operation is in progress".into(),
            ));
            return;
        }
        self.busy_io = true;
        open(path, self.tx.clone(), self.wake());
    }

    pub(in crate::app) fn save_sae(&mut self, path: PathBuf) {
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
