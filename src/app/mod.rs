//! The desktop app: state, the message loop and the actions the UI asks for. Drawing lives in
//! [`crate::ui`]; this module owns what the UI shows and changes it only through [`Action`]s and
//! [`Message`]s.

pub mod files;
pub mod session;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::analysis::{Inspection, inspect};
use crate::checkpoint::Checkpoint;
use crate::device::{self, DeviceChoice};
use crate::task::{Dataset, parse_sequence};
use crate::train::{Command, Event, Preset, RunConfig, spawn_training_to};
use files::Purpose;
use session::{RunState, Session};

/// The checkpoint the app opens on: trained by `toylens train --preset fast --seed 0`.
pub const BUNDLED_CHECKPOINT: &[u8] = include_bytes!("../../assets/fast-seed0.safetensors");
pub const BUNDLED_NAME: &str = "fast-seed0.safetensors (bundled)";
pub const ICON_PNG: &[u8] = include_bytes!("../../assets/icon.png");
/// How often the window redraws while a run streams metrics.
const TRAINING_FRAME_INTERVAL: Duration = Duration::from_millis(333);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Tab {
    Data,
    Training,
    #[default]
    Inspect,
}

impl Tab {
    pub const ALL: [Tab; 3] = [Tab::Data, Tab::Training, Tab::Inspect];
    pub fn name(self) -> &'static str {
        match self {
            Tab::Data => "Data",
            Tab::Training => "Training",
            Tab::Inspect => "Inspect",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DataFilter {
    #[default]
    All,
    Signal,
    Noise,
}

/// What survives a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The config the side panel edits and Train uses.
    pub config: RunConfig,
    pub tab: Tab,
    pub log_loss: bool,
    pub show_step_loss: bool,
    pub sequence: String,
    pub device: String,
    pub show_frame_time: bool,
    pub data_filter: DataFilter,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            config: RunConfig::from_preset(Preset::Fast),
            tab: Tab::Inspect,
            log_loss: false,
            show_step_loss: true,
            sequence: "2 5 3 0".into(),
            device: "cpu".into(),
            show_frame_time: false,
            data_filter: DataFilter::All,
        }
    }
}

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
    Saved {
        path: PathBuf,
        result: Result<(), String>,
        version: u64,
    },
}

/// What the UI asks the app to do; applied once, after drawing.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Open,
    Save,
    SaveAs,
    OpenPath(PathBuf),
    SavePath(PathBuf),
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
}

/// A question the user must answer before something destructive happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    Close,
    NewRun,
    Reset,
    OpenOver(Purpose),
}

/// The inspector's cache: recomputed only when the text or the weights change.
#[derive(Default)]
pub struct InspectorState {
    pub computed_for: Option<(String, u64)>,
    pub error: Option<String>,
    pub last_valid: Option<Inspection>,
    /// A clicked head: its views are highlighted in every panel.
    pub focus_head: Option<usize>,
}

/// The data set shown in the Data tab, regenerated when the task or seed change.
#[derive(Default)]
pub struct DataView {
    pub key: Option<(String, u64)>,
    pub data: Option<Dataset>,
    pub error: Option<String>,
}

/// Frame times of the last few seconds, for the debug readout.
#[derive(Default)]
pub struct FrameTimes {
    pub recent_ms: VecDeque<f32>,
}

impl FrameTimes {
    fn push(&mut self, ms: f32) {
        if self.recent_ms.len() == 600 {
            self.recent_ms.pop_front();
        }
        self.recent_ms.push_back(ms);
    }
    /// The p-th percentile (0..=100) of recent frame times.
    pub fn percentile(&self, p: f32) -> Option<f32> {
        let mut v: Vec<f32> = self.recent_ms.iter().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f32::total_cmp);
        let i = ((p / 100.0) * (v.len() - 1) as f32).round() as usize;
        Some(v[i])
    }
}

pub struct ToylensApp {
    pub settings: Settings,
    pub session: Session,
    pub inspector: InspectorState,
    pub data_view: DataView,
    pub frame_times: FrameTimes,
    /// Status-bar message: the outcome of the last file operation or run.
    pub status: Option<(bool, String)>,
    /// Shown when no dialog backend exists (and always in tests): type a path instead.
    pub path_field: Option<(Purpose, String)>,
    pub confirm: Option<Confirm>,
    /// False in tests, which must never open a native dialog.
    pub dialogs_enabled: bool,
    pub busy_io: bool,
    tx: Sender<Message>,
    rx: Receiver<Message>,
    ctx: egui::Context,
    allow_close: bool,
    frame_started: Option<Instant>,
    actions: Vec<Action>,
}

impl ToylensApp {
    /// The app as eframe creates it: persisted settings, the bundled model, or `file` if given.
    pub fn new(cc: &eframe::CreationContext<'_>, file: Option<PathBuf>) -> Self {
        let settings: Settings = cc
            .storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            .unwrap_or_default();
        let mut app = Self::with_settings(cc.egui_ctx.clone(), settings);
        if let Some(path) = file {
            app.apply(Action::OpenPath(path));
        }
        app
    }

    /// The app with given settings, on the bundled model. Used directly by tests.
    pub fn with_settings(ctx: egui::Context, settings: Settings) -> Self {
        let (tx, rx) = channel();
        let session = Checkpoint::from_bytes(BUNDLED_CHECKPOINT)
            .map_err(|e| e.to_string())
            .and_then(|c| Session::from_checkpoint(c, None))
            .or_else(|_| Session::untrained(settings.config.clone()))
            .expect("the default config is valid");
        let mut app = Self {
            settings,
            session,
            inspector: InspectorState::default(),
            data_view: DataView::default(),
            frame_times: FrameTimes::default(),
            status: None,
            path_field: None,
            confirm: None,
            dialogs_enabled: true,
            busy_io: false,
            tx,
            rx,
            ctx,
            allow_close: false,
            frame_started: None,
            actions: Vec::new(),
        };
        app.status = Some((false, format!("opened {BUNDLED_NAME}")));
        app
    }

    /// Queues an action; it runs after the current frame is drawn.
    pub fn request(&mut self, action: Action) {
        self.actions.push(action);
    }

    fn wake(&self) -> impl Fn() + Send + 'static {
        let ctx = self.ctx.clone();
        move || ctx.request_repaint()
    }

    /// Drains messages from workers and dialogs.
    pub fn poll_messages(&mut self) {
        // A time budget keeps a flood of step events from stalling a frame.
        let deadline = Instant::now() + Duration::from_millis(8);
        while let Ok(message) = self.rx.try_recv() {
            self.handle(message);
            if Instant::now() > deadline {
                self.ctx.request_repaint();
                break;
            }
        }
    }

    /// Applies one message from a worker or a dialog.
    pub fn handle(&mut self, message: Message) {
        match message {
            Message::Training { run, event } => {
                let was_training = self.session.is_training();
                self.session.apply(run, event);
                if was_training && !self.session.is_training() {
                    self.log_run_performance();
                }
                if self.session.run.is_none()
                    && let Some(notice) = self.session.notice.take()
                {
                    let failed = notice.starts_with("training failed");
                    self.status = Some((failed, notice));
                }
            }
            Message::Picked {
                purpose,
                path,
                no_backend,
            } => match (path, no_backend) {
                (Some(p), _) => self.apply(match purpose {
                    Purpose::Open => Action::OpenPath(p),
                    Purpose::Save => Action::SavePath(p),
                }),
                (None, true) => {
                    self.status = Some((
                        true,
                        "no file dialog is available on this system: type a path instead".into(),
                    ));
                    self.path_field = Some((purpose, String::new()));
                }
                (None, false) => {}
            },
            Message::Opened { path, result } => {
                self.busy_io = false;
                match result.and_then(|c| Session::from_checkpoint(c, Some(path.clone()))) {
                    Ok(session) => {
                        self.session.replace(session);
                        self.settings.config = self.session.config.clone();
                        self.status = Some((false, format!("opened {}", path.display())));
                    }
                    // The current model stays exactly as it was.
                    Err(e) => self.status = Some((true, format!("could not open: {e}"))),
                }
            }
            Message::Saved {
                path,
                result,
                version,
            } => {
                self.busy_io = false;
                match result {
                    Ok(()) => {
                        self.session.file = Some(path.clone());
                        if version == self.session.version && !self.session.is_training() {
                            self.session.dirty = false;
                        }
                        self.status = Some((false, format!("saved {}", path.display())));
                    }
                    Err(e) => self.status = Some((true, format!("could not save: {e}"))),
                }
            }
        }
    }

    /// Logs how fast the finished run trained and how smooth the window stayed meanwhile
    /// (`RUST_LOG=info toylens` shows it), to compare with the headless CLI.
    fn log_run_performance(&self) {
        if let Some(last) = self.session.history.last() {
            let samples = last.epoch * self.session.config.task.train_size;
            log::info!(
                "run finished: {} epochs in {:.3} s of training ({:.0} samples/s); frame time p50 {:.1} ms, p95 {:.1} ms over the last {} frames",
                last.epoch,
                last.elapsed_s,
                samples as f64 / last.elapsed_s.max(1e-9),
                self.frame_times.percentile(50.0).unwrap_or(0.0),
                self.frame_times.percentile(95.0).unwrap_or(0.0),
                self.frame_times.recent_ms.len(),
            );
        }
    }

    fn start_training(&mut self) {
        self.frame_times.recent_ms.clear();
        let config = self.settings.config.clone();
        let (device, note) = device::resolve(
            self.settings
                .device
                .parse::<DeviceChoice>()
                .unwrap_or(DeviceChoice::Cpu),
        );
        let tx = self.tx.clone();
        let ctx = self.ctx.clone();
        let result = self.session.start_run(config, move |run, cfg| {
            let last_wake = std::cell::Cell::new(Instant::now() - TRAINING_FRAME_INTERVAL);
            spawn_training_to(cfg, None, device, move |event| {
                // Steps arrive thousands of times a second; the plots need a few redraws a second.
                // Each wake-up locks the egui context (the trainer would wait on it) and each frame
                // costs CPU the trainer could use (~130 ms on a software rasteriser).
                let urgent = !matches!(event, Event::Step(_) | Event::Epoch { .. });
                let _ = tx.send(Message::Training { run, event });
                if urgent || last_wake.get().elapsed() >= TRAINING_FRAME_INTERVAL {
                    last_wake.set(Instant::now());
                    ctx.request_repaint();
                }
            })
        });
        self.inspector.computed_for = None;
        self.status = Some(match result {
            Ok(()) => (false, note.unwrap_or_else(|| "training…".into())),
            Err(e) => (true, e),
        });
    }

    /// Runs an action now.
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Open if self.session.dirty => {
                self.confirm = Some(Confirm::OpenOver(Purpose::Open))
            }
            Action::Open => self.pick(Purpose::Open),
            Action::SaveAs => self.pick(Purpose::Save),
            Action::Save => match self.session.file.clone() {
                Some(path) => self.apply(Action::SavePath(path)),
                None => self.pick(Purpose::Save),
            },
            Action::OpenPath(path) => {
                self.path_field = None;
                self.busy_io = true;
                files::open(path, self.tx.clone(), self.wake());
            }
            Action::SavePath(path) => {
                self.path_field = None;
                if self.session.is_training() {
                    self.status = Some((true, "stop or pause training before saving".into()));
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
            Action::Train if self.session.dirty && !self.session.history.is_empty() => {
                self.confirm = Some(Confirm::NewRun)
            }
            Action::Train => self.start_training(),
            Action::Pause => self.session.send(Command::Pause),
            Action::Resume => self.session.send(Command::Resume),
            Action::Stop => self.session.send(Command::Stop),
            Action::Reset if self.session.dirty && !self.session.history.is_empty() => {
                self.confirm = Some(Confirm::Reset)
            }
            Action::Reset => match Session::untrained(self.settings.config.clone()) {
                Ok(fresh) => {
                    self.session.replace(fresh);
                    self.status = Some((false, "reset to an untrained model".into()));
                }
                Err(e) => self.status = Some((true, e)),
            },
            Action::ApplyPreset(preset) => {
                self.settings.config.train = preset.train_config();
            }
            Action::InspectSequence(tokens) => {
                self.settings.sequence = tokens
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" ");
                self.settings.tab = Tab::Inspect;
            }
            Action::ConfirmYes => {
                let Some(question) = self.confirm.take() else {
                    return;
                };
                // Answering yes discards the unsaved work, so the question is not asked again.
                self.session.dirty = false;
                match question {
                    Confirm::Close => {
                        self.allow_close = true;
                        self.ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    }
                    Confirm::NewRun => self.start_training(),
                    Confirm::Reset => self.apply(Action::Reset),
                    Confirm::OpenOver(purpose) => self.pick(purpose),
                }
            }
            Action::ConfirmNo => self.confirm = None,
        }
    }

    fn pick(&mut self, purpose: Purpose) {
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

    /// Recomputes the inspection if the sequence or the weights changed.
    pub fn refresh_inspector(&mut self) {
        let key = (self.settings.sequence.clone(), self.session.version);
        if self.inspector.computed_for.as_ref() == Some(&key) {
            return;
        }
        let cfg = &self.session.config.model;
        let result = parse_sequence(&self.settings.sequence, cfg.d_vocab, cfg.n_ctx)
            .map_err(|e| e.to_string())
            .and_then(|tokens| {
                inspect(&self.session.model, &self.session.config.task, &tokens)
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok(inspection) => {
                self.inspector.error = None;
                if let Some(h) = self.inspector.focus_head
                    && h >= inspection.head_logits_last.len()
                {
                    self.inspector.focus_head = None;
                }
                self.inspector.last_valid = Some(inspection);
            }
            // The last valid view stays on screen under the error.
            Err(e) => self.inspector.error = Some(e),
        }
        self.inspector.computed_for = Some(key);
    }

    /// Regenerates the Data tab's training set if the task or seed changed.
    pub fn refresh_data_view(&mut self) {
        let cfg = &self.settings.config;
        let key = (
            serde_json::to_string(&cfg.task).unwrap_or_default(),
            cfg.seed,
        );
        if self.data_view.key.as_ref() == Some(&key) {
            return;
        }
        match cfg
            .task
            .validate()
            .and_then(|_| cfg.task.train_set(cfg.seed))
        {
            Ok(data) => {
                self.data_view.data = Some(data);
                self.data_view.error = None;
            }
            Err(e) => self.data_view.error = Some(e.to_string()),
        }
        self.data_view.key = Some(key);
    }

    fn handle_close_request(&mut self, ctx: &egui::Context) {
        let close = ctx.input(|i| i.viewport().close_requested());
        if close && self.session.dirty && !self.allow_close {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.confirm = Some(Confirm::Close);
        }
    }

    fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if let Some(path) = dropped.into_iter().next() {
            self.apply(Action::OpenPath(path));
        }
    }

    /// Whether the current settings can be trained, and why not.
    pub fn config_error(&self) -> Option<String> {
        self.settings.config.validate().err()
    }

    pub fn run_state(&self) -> Option<&RunState> {
        self.session.run.as_ref().map(|r| &r.state)
    }
}

impl eframe::App for ToylensApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.frame_started = Some(Instant::now());
        log::trace!("repaint causes: {:?}", ctx.repaint_causes());
        self.poll_messages();
        self.handle_close_request(ctx);
        self.handle_dropped_files(ctx);
        self.refresh_inspector();
        if self.settings.tab == Tab::Data {
            self.refresh_data_view();
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        crate::ui::draw(self, ui);
        for action in std::mem::take(&mut self.actions) {
            self.apply(action);
        }
        if let Some(start) = self.frame_started.take() {
            self.frame_times
                .push(start.elapsed().as_secs_f32() * 1000.0);
        }
        if self.settings.show_frame_time {
            // Keep measuring while the readout is visible.
            ui.ctx().request_repaint_after(Duration::from_millis(250));
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings);
    }
}

/// Opens the window. `file` opens straight into that checkpoint.
pub fn run_native(file: Option<PathBuf>) -> eframe::Result {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("toylens")
        .with_inner_size([1280.0, 800.0])
        .with_min_inner_size([1024.0, 768.0])
        .with_drag_and_drop(true);
    if let Ok(icon) = eframe::icon_data::from_png_bytes(ICON_PNG) {
        viewport = viewport.with_icon(icon);
    }
    let options = eframe::NativeOptions {
        viewport,
        ..Default::default()
    };
    eframe::run_native(
        "toylens",
        options,
        Box::new(move |cc| Ok(Box::new(ToylensApp::new(cc, file)))),
    )
}
