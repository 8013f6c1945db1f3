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

use std::collections::HashMap;

use candle_core::Device;

use crate::analysis::{
    ExhaustiveReport, HeadTrace, Inspection, exhaustive, head_traces, inspect_ablated, mean_z,
};
use crate::checkpoint::Checkpoint;
use crate::device::{self, DeviceChoice};
use crate::model::{Ablation, AttnOnly, HeadMode, NdArray, Weights};
use crate::task::{Dataset, parse_sequence};
use crate::train::{Command, Event, Preset, RunConfig, history_csv, spawn_training_to};
use files::Purpose;
use session::{RunState, Series, Session};

/// The checkpoint the app opens on: trained by `toylens train --preset fast --seed 0`.
pub const BUNDLED_CHECKPOINT: &[u8] = include_bytes!("../../assets/fast-seed0.safetensors");
pub const BUNDLED_NAME: &str = "fast-seed0.safetensors (bundled)";
pub const ICON_PNG: &[u8] = include_bytes!("../../assets/icon.png");
/// When the process started, for the first-frame log line (set by `main`, or at first use).
pub static LAUNCHED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// How often a run's metrics redraw the window (input still redraws at once). Measured under
/// Xvfb's software rasteriser, where a frame of six plots costs ~100 ms of CPU: at 3 redraws a
/// second training ran at 77 % of the headless speed, at 1 it runs at 100 %.
const TRAINING_FRAME_INTERVAL: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Tab {
    Data,
    Training,
    #[default]
    Inspect,
    Circuits,
    Evaluate,
}

impl Tab {
    pub const ALL: [Tab; 5] = [
        Tab::Data,
        Tab::Training,
        Tab::Inspect,
        Tab::Circuits,
        Tab::Evaluate,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Tab::Data => "Data",
            Tab::Training => "Training",
            Tab::Inspect => "Inspect",
            Tab::Circuits => "Circuits",
            Tab::Evaluate => "Evaluate",
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
    /// Plot per-head interpretability metrics under the loss curves.
    pub show_head_traces: bool,
    /// Circuits: subtract each row's mean.
    pub circuits_mean_subtract: bool,
    /// Circuits: TransformerLens's bias-free `model.OV` / `model.QK` instead of the exact folded form.
    pub circuits_no_bias: bool,
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
            show_head_traces: true,
            circuits_mean_subtract: false,
            circuits_no_bias: false,
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
    Exported {
        path: PathBuf,
        result: Result<(), String>,
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
    /// Export the metric history as CSV.
    ExportCsv,
    /// Export a screen rectangle (a panel) as PNG.
    ExportPng(egui::Rect),
    /// Show the weights after this epoch (an index into the snapshots); `None` follows the latest.
    ViewEpoch(Option<usize>),
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
    /// The sequence, weights and ablation the cached result belongs to.
    pub computed_for: Option<String>,
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
    /// Indices of the samples the table shows, for the filter they were computed for.
    pub rows: Option<(DataFilter, Vec<usize>)>,
}

impl DataView {
    /// The sample indices passing `filter`, computed once per data set and filter.
    pub fn rows(&mut self, filter: DataFilter) -> &[usize] {
        let stale = self.rows.as_ref().is_none_or(|(f, _)| *f != filter);
        if stale {
            let rows = self.data.as_ref().map_or_else(Vec::new, |data| {
                (0..data.len())
                    .filter(|&i| match filter {
                        DataFilter::All => true,
                        DataFilter::Signal => data.is_signal[i],
                        DataFilter::Noise => !data.is_signal[i],
                    })
                    .collect()
            });
            self.rows = Some((filter, rows));
        }
        &self.rows.as_ref().expect("set above").1
    }
}

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

/// Caches of what the analysis views show, each keyed on what it depends on.
#[derive(Default)]
pub struct AnalysisState {
    /// One mode per head; applies to the inspector and the evaluation.
    pub ablation: Vec<HeadMode>,
    view_model: Option<((u64, usize), AttnOnly)>,
    mean_z: Option<(String, NdArray)>,
    /// Per-snapshot head traces of the current session.
    pub traces: Vec<(usize, Vec<HeadTrace>)>,
    traces_generation: u64,
    pub exhaustive: Option<(String, Result<ExhaustiveReport, String>)>,
}

/// A finished run or an opened checkpoint, kept for overlaying on the plots.
pub struct RunRecord {
    pub label: String,
    pub series: Series,
    pub shown: bool,
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
    pub scrubber: Scrubber,
    pub analysis: AnalysisState,
    pub runs: Vec<RunRecord>,
    /// A panel waiting for the path its screenshot goes to.
    pending_png: Option<egui::Rect>,
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
            scrubber: Scrubber::default(),
            analysis: AnalysisState::default(),
            runs: Vec::new(),
            pending_png: None,
            tx,
            rx,
            ctx,
            allow_close: false,
            frame_started: None,
            actions: Vec::new(),
        };
        app.status = Some((false, format!("opened {BUNDLED_NAME}")));
        app.remember_session_run(BUNDLED_NAME.into());
        app
    }

    /// Keeps the session's history for overlaying on the plots, under `label`.
    fn remember_session_run(&mut self, label: String) {
        if !self.session.history.is_empty() {
            self.runs.push(RunRecord {
                label,
                series: self.session.series.clone(),
                shown: false,
            });
        }
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
        // Handling a message is cheap (the model is updated once, below), so the queue is
        // drained; the time budget only guards a frame against a pathological flood.
        let deadline = Instant::now() + Duration::from_millis(50);
        while let Ok(message) = self.rx.try_recv() {
            self.handle(message);
            if Instant::now() > deadline {
                self.ctx.request_repaint();
                break;
            }
        }
        self.session.sync_model();
    }

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
                (Some(p), _) => self.path_chosen(purpose, p),
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
                        self.scrubber.index = None;
                        self.status = Some((false, format!("opened {}", path.display())));
                        let name = path.file_name().map_or_else(
                            || path.display().to_string(),
                            |n| n.to_string_lossy().into_owned(),
                        );
                        self.remember_session_run(format!("{name} · {}", self.session.label()));
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
            Message::Exported { path, result } => {
                self.status = Some(match result {
                    Ok(()) => (false, format!("exported {}", path.display())),
                    Err(e) => (true, format!("could not export: {e}")),
                });
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

    /// A path was picked (by dialog or typed) for `purpose`.
    pub fn path_chosen(&mut self, purpose: Purpose, path: PathBuf) {
        self.path_field = None;
        match purpose {
            Purpose::Open => self.apply(Action::OpenPath(path)),
            Purpose::Save => self.apply(Action::SavePath(path)),
            Purpose::ExportCsv => files::export(
                path,
                history_csv(&self.session.history).into_bytes(),
                self.tx.clone(),
                self.wake(),
            ),
            Purpose::ExportPng => {
                if let Some(rect) = self.pending_png.take() {
                    files::export_png(&self.ctx, rect, path, self.tx.clone(), self.wake());
                }
            }
        }
    }

    fn start_training(&mut self) {
        self.frame_times.recent_ms.clear();
        self.scrubber.index = None;
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
                // Steps arrive thousands of times a second; the plots need about one redraw a second.
                // Each wake-up locks the egui context (the trainer would wait on it) and each frame
                // costs CPU the trainer could use (~100 ms on a software rasteriser).
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

    /// The model for the weights in view (the session's own, or a cached copy of a snapshot).
    pub fn view_model(&mut self) -> &AttnOnly {
        let Some(i) = self.view_index() else {
            return &self.session.model;
        };
        let key = (self.session.generation, i);
        if self.analysis.view_model.as_ref().map(|(k, _)| *k) != Some(key) {
            let cfg = &self.session.config.model;
            match AttnOnly::new(cfg, &self.session.snapshots[i].weights, &Device::Cpu) {
                Ok(model) => self.analysis.view_model = Some((key, model)),
                Err(_) => return &self.session.model,
            }
        }
        &self.analysis.view_model.as_ref().expect("set above").1
    }

    /// A string that changes whenever the weights in view change.
    fn view_key(&self) -> String {
        match self.view_index() {
            Some(i) => format!("g{}e{i}", self.session.generation),
            None => format!("v{}", self.session.version),
        }
    }

    /// The ablation the views apply, with mean z computed (and cached) when needed.
    pub fn current_ablation(&mut self) -> Option<Ablation> {
        let heads = self.session.config.model.n_heads;
        self.analysis.ablation.resize(heads, HeadMode::Active);
        let modes = self.analysis.ablation.clone();
        if !modes.iter().any(|&m| m != HeadMode::Active) {
            return None;
        }
        let mut ablation = Ablation {
            modes,
            mean_z: None,
        };
        if ablation.needs_means() {
            let key = self.view_key();
            if self.analysis.mean_z.as_ref().map(|(k, _)| k) != Some(&key) {
                let task = self.session.config.task.clone();
                let seed = self.session.config.seed;
                let means = task
                    .val_set(seed)
                    .map_err(|e| e.to_string())
                    .and_then(|val| mean_z(self.view_model(), &val).map_err(|e| e.to_string()));
                match means {
                    Ok(m) => self.analysis.mean_z = Some((key, m)),
                    Err(e) => {
                        self.status = Some((true, format!("mean ablation unavailable: {e}")));
                        return None;
                    }
                }
            }
            ablation.mean_z = self.analysis.mean_z.as_ref().map(|(_, m)| m.clone());
        }
        Some(ablation)
    }

    /// Recomputes the inspection if the sequence, the weights in view or the ablation changed.
    pub fn refresh_inspector(&mut self) {
        let key = format!(
            "{}|{}|{:?}",
            self.settings.sequence,
            self.view_key(),
            self.analysis.ablation
        );
        if self.inspector.computed_for.as_ref() == Some(&key) {
            return;
        }
        let ablation = self.current_ablation();
        let task = self.session.config.task.clone();
        let cfg = self.session.config.model.clone();
        let sequence = self.settings.sequence.clone();
        let model = self.view_model();
        let result = parse_sequence(&sequence, cfg.d_vocab, cfg.n_ctx)
            .map_err(|e| e.to_string())
            .and_then(|tokens| {
                inspect_ablated(model, &task, &tokens, ablation.as_ref()).map_err(|e| e.to_string())
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

    /// Recomputes the exhaustive evaluation if the weights in view or the ablation changed.
    pub fn refresh_exhaustive(&mut self) {
        let key = format!("{}|{:?}", self.view_key(), self.analysis.ablation);
        if self.analysis.exhaustive.as_ref().map(|(k, _)| k) == Some(&key) {
            return;
        }
        let ablation = self.current_ablation();
        let task = self.session.config.task.clone();
        let seed = self.session.config.seed;
        let model = self.view_model();
        let report =
            exhaustive(model, &task, ablation.as_ref(), 2_000, seed).map_err(|e| e.to_string());
        self.analysis.exhaustive = Some((key, report));
    }

    /// Extends the per-epoch head traces to every snapshot (within a time budget per frame).
    pub fn refresh_traces(&mut self) {
        let misaligned = self.analysis.traces.last().is_some_and(|(epoch, _)| {
            self.session
                .snapshots
                .get(self.analysis.traces.len() - 1)
                .map(|s| s.epoch)
                != Some(*epoch)
        });
        if self.analysis.traces_generation != self.session.generation || misaligned {
            self.analysis.traces.clear();
            self.analysis.traces_generation = self.session.generation;
        }
        let cfg = self.session.config.model.clone();
        let task = self.session.config.task.clone();
        // A few milliseconds a frame: a long history fills in over a few frames instead of
        // stalling one.
        let deadline = Instant::now() + Duration::from_millis(4);
        let start = self.analysis.traces.len();
        for snapshot in &self.session.snapshots[start..] {
            if Instant::now() > deadline {
                break;
            }
            let traces = AttnOnly::new(&cfg, &snapshot.weights, &Device::Cpu)
                .map_err(|e| e.to_string())
                .and_then(|m| head_traces(&m, &task).map_err(|e| e.to_string()));
            match traces {
                Ok(t) => self.analysis.traces.push((snapshot.epoch, t)),
                Err(_) => break,
            }
        }
        // Catch up on an opened history; during a run, the run's own redraws carry it along.
        if self.analysis.traces.len() < self.session.snapshots.len() && !self.session.is_training()
        {
            self.ctx.request_repaint();
        }
    }

    /// Advances the scrubber while playing: ten epochs a second, stopping at the end.
    fn tick_scrubber(&mut self) {
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

    /// The colour range for `view`: held fixed while the scrubber's fixed mode is on.
    pub fn scale_limit(&mut self, view: &'static str, computed: f32) -> f32 {
        if self.scrubber.fixed_scale {
            *self.scrubber.fixed_limits.entry(view).or_insert(computed)
        } else {
            computed
        }
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
                self.data_view.rows = None;
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
        self.tick_scrubber();
        match self.settings.tab {
            Tab::Data => self.refresh_data_view(),
            Tab::Inspect => self.refresh_inspector(),
            Tab::Evaluate => self.refresh_exhaustive(),
            Tab::Training if self.settings.show_head_traces => self.refresh_traces(),
            _ => {}
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        crate::ui::draw(self, ui);
        if self.frame_times.recent_ms.is_empty()
            && let Some(launched) = LAUNCHED.get()
        {
            log::info!(
                "first frame drawn {:.0} ms after launch",
                launched.elapsed().as_secs_f64() * 1e3
            );
        }
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
