//! What the app does for the UI: the [`Action`]s panels return and the questions they may ask
//! first ([`Confirm`]). With the messages from workers ([`super::messages`]) and `logic()`, only
//! these change the app's state.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::files::{self, DataUse, Purpose};
use super::session::Session;
use super::settings::Tab;
use super::status::Status;
use super::superposition::TmsAction;
use super::{Form, Message, TRAINING_FRAME_INTERVAL, ToylensApp, recovery};
use crate::device;
use crate::metrics::history_csv;
use crate::model::HeadMode;
use crate::seed::{Stream, stream_rng};
use crate::task::{SequencesConfig, TaskKind};
use crate::train::{Command, Event, Preset, spawn_training_to};

/// What the UI asks the app to do; applied once, after drawing.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Open,
    Save,
    SaveAs,
    OpenPath(PathBuf),
    SavePath(PathBuf),
    /// Pick a data file and train a new model on it.
    ChooseData,
    /// Pick a data file for the model in view (evaluate it, fine-tune it).
    AttachData,
    /// A file dropped on the window (asks first if the model in view is unsaved).
    OpenDropped(PathBuf),
    Train,
    Pause,
    Resume,
    Stop,
    /// Back to an untrained model of the current settings.
    Reset,
    ApplyPreset(Preset),
    /// Show this sequence in the inspector.
    InspectSequence(Vec<u32>),
    ConfirmYes,
    ConfirmNo,
    /// Export the metric history as CSV.
    ExportCsv,
    /// Export a screen rectangle (a panel) as PNG.
    ExportPng(egui::Rect),
    /// Show the weights after this epoch (an index into the snapshots); `None` follows the latest.
    ViewEpoch(Option<usize>),
    ShowTab(Tab),
    /// A path typed into the path field for what it was asked for.
    PathChosen(Purpose, PathBuf),
    CancelPathField,
    /// Set one head's ablation (`head` counts heads over all layers).
    Ablate {
        head: usize,
        mode: HeadMode,
    },
    /// Focus a head (layer, head) in the inspector, or none.
    FocusHead(Option<(usize, usize)>),
    /// Show a head's circuits in the Analyze tab, and focus it.
    SelectHead((usize, usize)),
    /// The form the panels edited this frame (applied before the frame's other actions).
    Edit(Box<Form>),
    /// Play or pause the scrubber.
    Play(bool),
    /// Hold a view's colour limit while the scrubber's fixed colour range is on.
    PinScaleLimit(&'static str, f32),
    /// What the Superposition workspace asks for.
    Tms(TmsAction),
    /// What the Features workspace asks for.
    Sae(super::features::SaeAction),
    /// Show a workspace.
    Show(super::Workspace),
    Sweep(super::sweeps::SweepAction),
}

/// A question the user must answer before something destructive happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    Close,
    NewRun,
    Reset,
    OpenOver(Purpose),
    OpenFile(PathBuf),
    /// A model saved when the app crashed last time: reopen it?
    Recover(PathBuf),
}

impl ToylensApp {
    /// Why Train cannot start now.
    pub fn train_blocker(&self) -> Option<String> {
        if self.session.is_training() {
            return Some("a run is in progress".into());
        }
        if self.resetting {
            return Some("the model is being reset".into());
        }
        self.config_error()
            .map(|e| format!("fix the settings first: {e}"))
    }

    /// Whether Train starts from the weights in view: asked for, and they are weights of the
    /// model the settings describe.
    pub fn fine_tunes(&self) -> bool {
        self.settings.train_from_view && self.settings.config.model == self.session.config.model
    }

    /// Why Reset cannot run now: the same conditions as Train, since both build a model from the
    /// settings.
    pub fn reset_blocker(&self) -> Option<String> {
        self.train_blocker()
    }

    /// Why Save cannot run now.
    pub fn save_blocker(&self) -> Option<String> {
        if self.busy_io {
            Some("a file operation is in progress".into())
        } else if self.resetting {
            Some("the model is being reset".into())
        } else if self.session.is_training() {
            Some("stop or pause training first".into())
        } else {
            None
        }
    }

    /// Whether the settings can be trained, and why not.
    pub fn config_error(&self) -> Option<String> {
        self.settings.config.validate().err().map(|e| e.to_string())
    }

    /// A path was picked (by dialog or typed) for `purpose`.
    pub(super) fn path_chosen(&mut self, purpose: Purpose, path: PathBuf) {
        self.path_field = None;
        match purpose {
            Purpose::Open => self.apply(Action::OpenPath(path)),
            Purpose::Save => self.apply(Action::SavePath(path)),
            Purpose::SaveTms => self.save_tms(path),
            Purpose::OpenSae => self.open_sae(path),
            Purpose::OpenSweep => self.open_sweep(path),
            Purpose::SaveSae => self.save_sae(path),
            Purpose::ExportCsv => {
                let csv = match (&self.tms, &self.sweep) {
                    (Some(tms), _) if self.workspace == super::Workspace::Superposition => {
                        tms.history_csv()
                    }
                    (_, Some(sweep)) if self.workspace == super::Workspace::Sweep => {
                        sweep.summary.csv()
                    }
                    _ => history_csv(&self.session.history),
                };
                files::export(path, csv.into_bytes(), self.tx.clone(), self.wake())
            }
            Purpose::TrainData | Purpose::AttachData => {
                let use_ = if purpose == Purpose::TrainData {
                    DataUse::NewRun
                } else {
                    DataUse::Attach
                };
                self.busy_io = true;
                self.status = Some(Status::Info(format!("reading {}…", path.display())));
                let task = SequencesConfig::file(path, None);
                files::read_data(use_, task, self.tx.clone(), self.wake());
            }
            Purpose::ExportPng => {
                if let Some(rect) = self.pending_png.take() {
                    files::export_png(&self.ctx, rect, path, self.tx.clone(), self.wake());
                }
            }
        }
    }

    fn start_training(&mut self) {
        if let Some(reason) = self.train_blocker() {
            self.status = Some(Status::Error(format!("cannot train: {reason}")));
            return;
        }
        self.frame_times.recent_ms.clear();
        self.scrubber.index = None;
        let config = self.settings.config.clone();
        // Fine-tuning: the weights in view, where they are of the model the settings train.
        let init = self.fine_tunes().then(|| self.view_weights().clone());
        let (device, note) = device::resolve(self.settings.device);
        let tx = self.tx.clone();
        let ctx = self.ctx.clone();
        let before = self.session.config.task.kind();
        let result = self.session.start_run(config, move |run, cfg| {
            let last_wake = std::cell::Cell::new(Instant::now() - TRAINING_FRAME_INTERVAL);
            spawn_training_to(cfg, init, device, move |event| {
                // Steps arrive thousands of times a second; the plots need about one redraw a second.
                // Each wake-up locks the egui context (the trainer would wait on it) and each frame
                // costs CPU the trainer could use (much of it on a software rasteriser).
                let urgent = !matches!(event, Event::Step(_) | Event::Evaluation { .. });
                let _ = tx.send(Message::Training { run, event });
                if urgent {
                    ctx.request_repaint();
                } else if last_wake.get().elapsed() >= TRAINING_FRAME_INTERVAL {
                    last_wake.set(Instant::now());
                    // A delayed request draws one frame; an immediate one draws two (egui's
                    // settling frame), and on a software rasteriser that second frame of plots
                    // took CPU the trainer uses.
                    ctx.request_repaint_after(Duration::from_millis(1));
                }
            })
        });
        self.inspector.computed_for = None;
        self.follow_task(before);
        self.status = Some(match result {
            Ok(()) => Status::Info(note.unwrap_or_else(|| "training…".into())),
            Err(e) => Status::Error(e),
        });
    }

    /// When the model in view changed task, the inspector's sequence becomes one of the new task's
    /// (the same one for the same seed), so it shows something meaningful at once.
    pub(super) fn follow_task(&mut self, before: TaskKind) {
        let task = &self.session.config.task;
        let model = &self.session.config.model;
        // A model with no task keeps a typed sequence that it can read.
        let readable = || {
            let names = task.token_names();
            crate::task::parse_sequence(&self.settings.sequence, names, model.d_vocab, model.n_ctx)
                .is_ok()
        };
        if task.kind() != before && (task.has_data() || !readable()) {
            let mut rng = stream_rng(self.session.config.seed, Stream::Analysis);
            let tokens = task.random_sequence(true, &mut rng);
            self.settings.sequence = crate::task::format_sequence(&tokens, task.token_names());
        }
    }

    /// Replaces the model with an untrained one of the settings, if they are valid.
    fn reset_now(&mut self) {
        if let Some(reason) = self.reset_blocker() {
            self.status = Some(Status::Error(format!("cannot reset: {reason}")));
            return;
        }
        // Drawing a large model's initial weights (4 M normal samples at the widest settings)
        // takes longer than a frame may: a worker builds the model, `reset_ready` shows it.
        self.resetting = true;
        self.status = Some(Status::Info("resetting…".into()));
        let config = self.settings.config.clone();
        let spawned = super::jobs::run_off_ui(
            self.tx.clone(),
            self.wake(),
            move || Session::untrained(config).map(Box::new),
            Message::ResetReady,
        );
        if let Err(e) = spawned {
            self.resetting = false;
            self.status = Some(Status::Error(format!("cannot reset: {e}")));
        }
    }

    /// Runs an action now.
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Open if self.session.dirty => {
                self.confirm = Some(Confirm::OpenOver(Purpose::Open))
            }
            Action::Open => self.pick(Purpose::Open),
            Action::SaveAs => self.pick(Purpose::Save),
            Action::ChooseData => self.pick(Purpose::TrainData),
            Action::AttachData if self.session.is_training() => {
                self.status = Some(Status::Error(
                    "cannot attach data while training: stop or pause first".into(),
                ))
            }
            Action::AttachData => self.pick(Purpose::AttachData),
            // Never over a file another program wrote: toylens's format would replace it.
            Action::Save => match self.session.file.clone() {
                Some(path) if !self.session.foreign_file => self.apply(Action::SavePath(path)),
                _ => self.pick(Purpose::Save),
            },
            Action::OpenDropped(_) | Action::OpenPath(_) if self.resetting => {
                self.status = Some(Status::Error(
                    "cannot open: the model is being reset".into(),
                ))
            }
            // A sweep folder replaces no model: it opens in its own workspace.
            Action::OpenDropped(path) | Action::OpenPath(path)
                if crate::sweep::SweepFolder::is_sweep(&path) =>
            {
                self.open_sweep(path)
            }
            Action::OpenDropped(path) if self.session.dirty => {
                self.confirm = Some(Confirm::OpenFile(path))
            }
            Action::OpenDropped(path) | Action::OpenPath(path) => {
                self.path_field = None;
                self.busy_io = true;
                files::open(path, self.tx.clone(), self.wake());
            }
            Action::SavePath(path) => {
                self.path_field = None;
                if let Some(reason) = self.save_blocker() {
                    self.status = Some(Status::Error(format!("cannot save: {reason}")));
                    return;
                }
                self.busy_io = true;
                files::save(
                    self.session.checkpoint(),
                    path,
                    self.session.version,
                    self.tx.clone(),
                    self.wake(),
                );
            }
            // Fine-tuning keeps the weights in view (they are the run's epoch 0): nothing is lost.
            Action::Train
                if self.session.dirty && !self.fine_tunes() && self.train_blocker().is_none() =>
            {
                self.confirm = Some(Confirm::NewRun)
            }
            Action::Train => self.start_training(),
            Action::Pause => self.session.send(Command::Pause),
            Action::Resume => self.session.send(Command::Resume),
            Action::Stop => self.session.send(Command::Stop),
            Action::Reset if self.session.dirty && self.reset_blocker().is_none() => {
                self.confirm = Some(Confirm::Reset)
            }
            Action::Reset => self.reset_now(),
            Action::ApplyPreset(preset) => self.settings.config.apply_preset(preset),
            Action::InspectSequence(tokens) => {
                let names = self.session.config.task.token_names();
                self.settings.sequence = crate::task::format_sequence(&tokens, names);
                self.settings.tab = Tab::Inspect;
                self.workspace = super::Workspace::Transformer;
            }
            // Yes goes ahead without asking again. The dirty flag is left alone: it clears only
            // when another model actually replaces this one (or this one is saved).
            Action::ConfirmYes => match self.confirm.take() {
                Some(Confirm::Close) => {
                    self.allow_close = true;
                    self.ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                }
                Some(Confirm::NewRun) => self.start_training(),
                Some(Confirm::Reset) => self.reset_now(),
                Some(Confirm::OpenOver(purpose)) => self.pick(purpose),
                Some(Confirm::OpenFile(path)) | Some(Confirm::Recover(path)) => {
                    self.apply(Action::OpenPath(path))
                }
                None => {}
            },
            Action::ConfirmNo => {
                if let Some(Confirm::Recover(path)) = self.confirm.take() {
                    recovery::discard(&path);
                }
            }
            Action::ExportCsv => self.pick(Purpose::ExportCsv),
            Action::ExportPng(rect) => {
                self.pending_png = Some(rect);
                self.pick(Purpose::ExportPng);
            }
            Action::ViewEpoch(index) => {
                self.scrubber.index = index;
                if index.is_none() {
                    self.scrubber.playing = false;
                }
            }
            Action::ShowTab(tab) => self.settings.tab = tab,
            Action::PathChosen(purpose, path) => self.path_chosen(purpose, path),
            Action::CancelPathField => self.path_field = None,
            Action::Ablate { head, mode } => {
                if let Some(slot) = self.analysis.ablation.get_mut(head) {
                    *slot = mode;
                }
            }
            Action::FocusHead(focus) => {
                self.inspector.focus_head = focus.map(|(_, h)| h);
                if let Some((layer, _)) = focus {
                    self.inspector.focus_layer = layer;
                }
            }
            Action::Edit(form) => self.take_form(*form),
            Action::Tms(action) => self.apply_tms(action),
            Action::Sae(action) => self.apply_sae(action),
            Action::Show(workspace) => self.show_workspace(workspace),
            Action::Sweep(action) => self.apply_sweep(action),
            Action::Play(playing) => self.scrubber.playing = playing,
            Action::PinScaleLimit(view, limit) => {
                if self.scrubber.fixed_scale {
                    self.scrubber.fixed_limits.entry(view).or_insert(limit);
                }
            }
            Action::SelectHead((layer, head)) => {
                self.analyze.head = (layer, head);
                self.apply(Action::FocusHead(Some((layer, head))));
            }
        }
    }

    /// Asks for a path: a native dialog on a worker, or the typed path field.
    pub(super) fn pick(&mut self, purpose: Purpose) {
        if !self.dialogs_enabled {
            self.path_field = Some((purpose, String::new()));
            return;
        }
        let dir = self
            .session
            .file
            .as_ref()
            .and_then(|p| p.parent())
            .map(|p| p.to_path_buf());
        files::pick(purpose, dir, self.tx.clone(), self.wake());
    }
}
