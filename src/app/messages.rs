//! What reaches the UI thread from elsewhere: training events, picked paths, opened and saved
//! files, a Reset's model and finished view jobs, as one [`Message`] type, and how the app takes
//! each.

use std::path::PathBuf;

use super::files::{DataUse, Purpose};
use super::jobs::Computed;
use super::session::Session;
use super::status::Status;
use super::superposition::{TmsEvent, TmsWorkspace};
use super::{RunRecord, ToylensApp, recovery};
use crate::checkpoint::{Checkpoint, TmsCheckpoint};
use crate::task::{SequencesConfig, TaskConfig};
use crate::train::{Event, RunConfig};

/// Everything that reaches the UI thread from elsewhere.
pub enum Message {
    Training {
        run: u64,
        event: Event,
    },
    Picked {
        purpose: Purpose,
        path: Option<PathBuf>,
        no_backend: bool,
    },
    Opened {
        path: PathBuf,
        result: Result<Checkpoint, String>,
    },
    /// A data file was read (or failed to be), for a new run or the model in view.
    DataRead {
        use_: DataUse,
        result: Result<SequencesConfig, String>,
    },
    /// A Reset's untrained model, built on a worker.
    ResetReady(Result<Box<Session>, String>),
    Saved {
        path: PathBuf,
        result: Result<(), String>,
        version: u64,
    },
    Exported {
        path: PathBuf,
        result: Result<(), String>,
    },
    /// A derived view's background job finished.
    Computed(Computed),
    /// The superposition run's worker reports.
    Tms(TmsEvent),
    /// The SAE workspace's workers report.
    Sae(super::features::SaeEvent),
    /// The sweep workspace's reader reports.
    Sweep(super::sweeps::SweepEvent),
    /// A superposition checkpoint was read (or failed to be).
    OpenedTms {
        path: PathBuf,
        result: Result<TmsCheckpoint, String>,
    },
    /// A superposition checkpoint was written (or failed to be).
    SavedTms {
        path: PathBuf,
        result: Result<(), String>,
    },
}

impl ToylensApp {
    /// Applies one message from a worker or a dialog.
    pub fn handle(&mut self, message: Message) {
        match message {
            Message::Training { run, event } => {
                let was_training = self.session.is_training();
                self.session.apply(run, event);
                if was_training && !self.session.is_training() {
                    self.log_run_performance();
                    let label = format!("run {} · {}", self.runs.len() + 1, self.session.label());
                    self.remember_session_run(label);
                    if let Some(notice) = self.session.notice.take() {
                        self.status = Some(notice);
                    }
                }
            }
            Message::Picked {
                purpose,
                path,
                no_backend,
            } => match (path, no_backend) {
                (Some(p), _) => self.path_chosen(purpose, p),
                (None, true) => {
                    self.status = Some(Status::Error(
                        "no file dialog is available on this system: type a path instead".into(),
                    ));
                    self.path_field = Some((purpose, String::new()));
                }
                (None, false) => {}
            },
            Message::Opened { path, result } => self.opened(path, result),
            Message::DataRead { use_, result } => self.data_read(use_, result),
            Message::ResetReady(result) => self.reset_ready(result),
            Message::Saved {
                path,
                result,
                version,
            } => {
                self.busy_io = false;
                match result {
                    Ok(()) => {
                        self.session.file = Some(path.clone());
                        self.session.foreign_file = false;
                        // Only the version that was written is saved; training on since is not.
                        if version == self.session.version && !self.session.is_training() {
                            self.session.dirty = false;
                        }
                        self.status = Some(Status::Info(format!("saved {}", path.display())));
                    }
                    Err(e) => self.status = Some(Status::Error(format!("could not save: {e}"))),
                }
            }
            Message::Exported { path, result } => {
                self.status = Some(match result {
                    Ok(()) => Status::Info(format!("exported {}", path.display())),
                    Err(e) => Status::Error(format!("could not export: {e}")),
                });
            }
            Message::Computed(computed) => self.receive(computed),
            Message::Sae(event) => self.sae_event(event),
            Message::Sweep(event) => self.sweep_event(event),
            Message::Tms(event) => {
                if let Some(status) = self.tms.as_mut().and_then(|t| t.apply(event)) {
                    self.status = Some(status);
                }
            }
            Message::OpenedTms { path, result } => {
                self.busy_io = false;
                match result {
                    Ok(checkpoint) if self.tms.as_ref().is_some_and(|t| t.is_training()) => {
                        drop(checkpoint);
                        self.status = Some(Status::Error(format!(
                            "cannot open {}: stop the superposition run first",
                            path.display()
                        )));
                    }
                    Ok(checkpoint) => {
                        self.tms = Some(TmsWorkspace::from_checkpoint(checkpoint, path.clone()));
                        self.workspace = super::Workspace::Superposition;
                        self.status = Some(Status::Info(format!(
                            "opened {} (a superposition model)",
                            path.display()
                        )));
                    }
                    Err(e) => {
                        self.status = Some(Status::Error(format!(
                            "could not open {}: {e}",
                            path.display()
                        )))
                    }
                }
            }
            Message::SavedTms { path, result } => {
                self.busy_io = false;
                self.status = Some(match result {
                    Ok(()) => {
                        if let Some(tms) = &mut self.tms {
                            tms.file = Some(path.clone());
                            tms.dirty = tms.is_training();
                        }
                        Status::Info(format!("saved {}", path.display()))
                    }
                    Err(e) => Status::Error(format!("could not save: {e}")),
                });
            }
        }
    }

    /// A checkpoint was read (or failed to be). On failure the model in view stays as it was.
    fn opened(&mut self, path: PathBuf, result: Result<Checkpoint, String>) {
        self.busy_io = false;
        let recovered = self.recovery_path.as_ref() == Some(&path);
        let foreign = match &result {
            Ok(c) if !c.has_metadata => Some(c.origin.clone()),
            _ => None,
        };
        let data_note = result.as_ref().ok().and_then(|c| c.data_note.clone());
        let file = (!recovered).then(|| path.clone());
        match result.and_then(|c| Session::from_checkpoint(c, file)) {
            Ok(session) => {
                let before = self.session.config.task.kind();
                self.session.replace(session);
                self.settings.config = self.session.config.clone();
                self.follow_task(before);
                self.scrubber.index = None;
                // A sweep's run opens in the transformer's tabs.
                if self.workspace == super::Workspace::Sweep {
                    self.workspace = super::Workspace::Transformer;
                }
                let name = path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                self.status = Some(Status::Info(if recovered {
                    // Recovered work has no file of its own yet: it is unsaved until saved.
                    self.session.dirty = true;
                    recovery::discard(&path);
                    "reopened the model recovered after the crash: save it to keep it".into()
                } else if let Some(origin) = foreign {
                    format!(
                        "opened {}: a TransformerLens state dict ({origin}); Save asks for a \
                         new path, so the file is kept as it is",
                        path.display()
                    )
                } else {
                    format!("opened {}", path.display())
                }));
                if let Some(note) = data_note {
                    // Opened, but without its task: say why, as a warning that stays.
                    self.status = Some(Status::Error(format!("opened {}; {note}", path.display())));
                }
                self.remember_session_run(format!("{name} · {}", self.session.label()));
            }
            Err(e) => self.status = Some(Status::Error(format!("could not open: {e}"))),
        }
    }

    /// A data file was read: the settings train a new model on it, or the model in view takes it
    /// as its task (checked against the model first). On failure nothing changes.
    fn data_read(&mut self, use_: DataUse, result: Result<SequencesConfig, String>) {
        self.busy_io = false;
        let task = match result {
            Ok(task) => task,
            Err(e) => {
                if use_ == DataUse::Restore {
                    // The settings' file is gone: the settings fall back to the defaults.
                    self.settings.config = RunConfig::default();
                }
                self.status = Some(Status::Error(format!("could not read the data: {e}")));
                return;
            }
        };
        let described = task
            .data()
            .map(|d| {
                format!(
                    "{}: {} sequences of {} tokens",
                    task.short_name(),
                    d.len(),
                    d.seq_len
                )
            })
            .unwrap_or_default();
        match use_ {
            DataUse::Restore => {
                if self.settings.config.task.sequences() == Some(&task) {
                    self.settings.config.task = TaskConfig::Sequences(task);
                }
            }
            DataUse::NewRun => {
                self.settings.config = RunConfig::for_sequences(task, self.settings.config.seed);
                self.settings.train_from_view = false;
                self.status = Some(Status::Info(format!(
                    "read {described}; Train trains a new model on it"
                )));
            }
            DataUse::Attach => {
                let model = &self.session.config.model;
                let fits = task.data().map_or(Err("not read".to_string()), |d| {
                    d.check_model(model.d_vocab, model.d_vocab_out(), model.n_ctx)
                });
                if let Err(e) = fits {
                    self.status = Some(Status::Error(format!(
                        "cannot attach {}: {e}",
                        task.short_name()
                    )));
                    return;
                }
                let had_task = self.session.config.task.has_data();
                self.session.attach_task(TaskConfig::Sequences(task));
                let mut settings = self.session.config.clone();
                if !had_task {
                    settings.train = RunConfig::sequences_training();
                }
                self.settings.config = settings;
                self.settings.train_from_view = true;
                self.status = Some(Status::Info(format!(
                    "attached {described} to the model in view: the Evaluate and Data tabs \
                     measure it, and Train fine-tunes it"
                )));
            }
        }
    }

    /// Logs how fast the finished run trained and how smooth the window stayed meanwhile
    /// (`RUST_LOG=info toylens` shows it), to compare with the headless CLI.
    fn log_run_performance(&self) {
        if let Some(last) = self.session.history.last() {
            log::info!(
                "run finished: {} {}s, {:.3} s at the last evaluation; frame time p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms over the last {} frames",
                last.progress(),
                self.session.config.task.unit().name(),
                last.elapsed_s(),
                self.frame_times.percentile(50.0).unwrap_or(0.0),
                self.frame_times.percentile(95.0).unwrap_or(0.0),
                self.frame_times.percentile(100.0).unwrap_or(0.0),
                self.frame_times.recent_ms.len(),
            );
        }
    }

    /// Keeps the session's history for overlaying on the plots, under `label`.
    pub(super) fn remember_session_run(&mut self, label: String) {
        if !self.session.history.is_empty() {
            self.runs.push(RunRecord {
                label,
                series: self.session.series.clone(),
                shown: false,
            });
        }
    }

    /// A Reset's model arrived: it replaces the one in view (nothing else could meanwhile, since
    /// Train, Reset, Open and Save wait for it).
    fn reset_ready(&mut self, result: Result<Box<Session>, String>) {
        self.resetting = false;
        match result {
            Ok(fresh) => {
                let before = self.session.config.task.kind();
                self.session.replace(*fresh);
                self.follow_task(before);
                self.scrubber.index = None;
                self.status = Some(Status::Info("reset to an untrained model".into()));
            }
            Err(e) => self.status = Some(Status::Error(format!("cannot reset: {e}"))),
        }
    }
}
