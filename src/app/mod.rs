//! The desktop app's state and behaviour, with no drawing: this module holds the state and the
//! frame's logic (messages in, jobs started); what the actions do is in [`commands`], the
//! derived views and their background jobs in [`views`] and [`jobs`], the persisted settings in
//! [`settings`]. The window itself (`eframe::App`) and every panel are in `crate::ui`, which
//! reads this state and queues [`Action`]s; nothing here imports the UI.

pub mod commands;
pub mod features;
pub mod files;
pub mod form;
pub mod jobs;
pub mod messages;
pub mod recovery;
pub mod session;
pub mod settings;
pub mod status;
pub mod superposition;
pub mod sweeps;
pub mod views;

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use crate::checkpoint::Checkpoint;
use crate::model::HeadMode;
pub use commands::{Action, Confirm};
use files::Purpose;
pub use form::Form;
pub use messages::Message;
use session::{RunState, Series, Session};
pub use settings::{DataFilter, SequenceFilter, Settings, Tab};
pub use status::Status;
use superposition::TmsWorkspace;
use views::{AnalysisState, InspectorState, Scrubber};

/// The checkpoint the app opens on: trained by `toylens train --preset fast --seed 0`.
pub const BUNDLED_CHECKPOINT: &[u8] = include_bytes!("../../assets/fast-seed0.safetensors");
pub const BUNDLED_NAME: &str = "fast-seed0.safetensors (bundled)";
pub const ICON_PNG: &[u8] = include_bytes!("../../assets/icon.png");
/// When the process started, for the first-frame log line (set by `main`, or at first use).
pub static LAUNCHED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// How often a run's metrics redraw the window (input still redraws at once): once a second
/// keeps a software rasteriser from taking the trainer's cores (benches/MEASUREMENTS.md).
const TRAINING_FRAME_INTERVAL: Duration = Duration::from_millis(1000);

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

/// The window's workspaces: the transformer's tabs, the superposition model's views, and the
/// features an SAE finds in either model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workspace {
    Transformer,
    Superposition,
    Features,
    /// A sweep folder's phase diagram.
    Sweep,
}

pub struct ToylensApp {
    pub settings: Settings,
    pub session: Session,
    pub inspector: InspectorState,
    pub analyze: views::AnalyzeSettings,
    pub frame_times: FrameTimes,
    /// Status-bar message: the outcome of the last file operation, run or action.
    pub status: Option<Status>,
    /// Shown when no dialog backend exists (and always in tests): type a path instead.
    pub path_field: Option<(Purpose, String)>,
    pub confirm: Option<Confirm>,
    /// False in tests, which must never open a native dialog.
    pub dialogs_enabled: bool,
    pub busy_io: bool,
    /// A Reset's untrained model is being built on a worker.
    pub resetting: bool,
    pub scrubber: Scrubber,
    pub analysis: AnalysisState,
    pub runs: Vec<RunRecord>,
    /// The Superposition workspace, once opened (by a preset or a superposition checkpoint).
    pub tms: Option<TmsWorkspace>,
    /// The SAE workspace: the SAE attached to the model in view, and its training.
    pub sae: features::SaeWorkspace,
    /// The sweep folder in view, once one is opened.
    pub sweep: Option<sweeps::SweepWorkspace>,
    /// Counts sweep openings, so that a closed sweep's reader is not heard.
    sweep_generation: u64,
    /// Which workspace the window shows.
    pub workspace: Workspace,
    /// Where a crash writes the model in view (`None`: nowhere).
    pub recovery_path: Option<PathBuf>,
    /// Makes the next frame panic: tests of the last line of defence use it.
    #[doc(hidden)]
    pub inject_panic: bool,
    /// A panel waiting for the path its screenshot goes to.
    pending_png: Option<egui::Rect>,
    tx: Sender<Message>,
    rx: Receiver<Message>,
    ctx: egui::Context,
    allow_close: bool,
    frame_started: Option<Instant>,
    /// Where the current frame's time went (messages, views, drawing, actions), for the slow-frame
    /// log line.
    frame_parts: [f32; 4],
    frame_cpu_start: f32,
    actions: Vec<Action>,
}

impl ToylensApp {
    /// The app as eframe creates it: persisted settings, the bundled model, or `file` if given,
    /// and the offer to reopen what a crash saved.
    pub fn new(cc: &eframe::CreationContext<'_>, file: Option<PathBuf>) -> Self {
        let settings: Settings = cc
            .storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            .unwrap_or_default();
        let mut app = Self::with_settings(cc.egui_ctx.clone(), settings);
        app.recovery_path = recovery::default_path();
        app.offer_recovery();
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
            .or_else(|_| Session::untrained(Default::default()))
            .expect("the default config is valid");
        let mut app = Self {
            settings,
            session,
            inspector: InspectorState::default(),
            analyze: Default::default(),
            frame_times: FrameTimes::default(),
            status: Some(Status::Info(format!("opened {BUNDLED_NAME}"))),
            path_field: None,
            confirm: None,
            dialogs_enabled: true,
            busy_io: false,
            resetting: false,
            scrubber: Scrubber::default(),
            analysis: AnalysisState::default(),
            runs: Vec::new(),
            tms: None,
            sae: Default::default(),
            sweep: None,
            sweep_generation: 0,
            workspace: Workspace::Transformer,
            recovery_path: None,
            inject_panic: false,
            pending_png: None,
            tx,
            rx,
            ctx,
            allow_close: false,
            frame_started: None,
            frame_parts: [0.0; 4],
            frame_cpu_start: 0.0,
            actions: Vec::new(),
        };
        app.remember_session_run(BUNDLED_NAME.into());
        app.restore_task_data();
        app
    }

    /// The settings' data-file task is saved without its data: an example is made again at
    /// once, a file is read on a worker (Train waits for it).
    fn restore_task_data(&mut self) {
        let Some(task) = self.settings.config.task.sequences() else {
            return;
        };
        if task.data().is_some() {
            return;
        }
        if task.example.is_some() {
            let mut task = task.clone();
            match task.load(std::path::Path::new(".")) {
                Ok(()) => self.settings.config.task = crate::task::TaskConfig::Sequences(task),
                Err(_) => self.settings.config = crate::train::RunConfig::default(),
            }
            return;
        }
        self.busy_io = true;
        files::read_data(
            files::DataUse::Restore,
            task.clone(),
            self.tx.clone(),
            self.wake(),
        );
    }

    /// Asks whether to reopen the model a crash saved, if there is one.
    pub fn offer_recovery(&mut self) {
        if let Some(path) = self.recovery_path.clone().filter(|p| p.is_file()) {
            self.confirm = Some(Confirm::Recover(path));
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

    /// Drains messages from workers, jobs and dialogs.
    pub fn poll_messages(&mut self) {
        // Handling a message is cheap (the model is updated once, below), so the queue is
        // drained; the time budget only guards a frame against a pathological flood.
        let deadline = Instant::now() + Duration::from_millis(20);
        while let Ok(message) = self.rx.try_recv() {
            self.handle(message);
            if Instant::now() > deadline {
                self.ctx.request_repaint();
                break;
            }
        }
        self.session.sync_weights();
    }

    /// Starts (or keeps) the background work of the tab in view.
    fn refresh_views(&mut self) {
        match self.settings.tab {
            Tab::Data => self.refresh_data_view(),
            Tab::Inspect => self.refresh_inspector(),
            Tab::Analyze => self.refresh_analyze(),
            Tab::Evaluate => self.refresh_exhaustive(),
            Tab::Circuits => self.refresh_circuits(),
            Tab::Training if self.settings.show_head_traces => self.refresh_traces(),
            Tab::Training => {}
        }
    }

    /// One ablation switch per head of the model in view (a model of another shape may just
    /// have been opened).
    fn fit_ablation(&mut self) {
        let model = &self.session.config.model;
        let heads = model.n_layers * model.n_heads;
        self.analysis.ablation.resize(heads, HeadMode::Active);
    }

    fn handle_close_request(&mut self, ctx: &egui::Context) {
        let close = ctx.input(|i| i.viewport().close_requested());
        if close && self.unsaved_work() && !self.allow_close {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.confirm = Some(Confirm::Close);
        }
    }

    fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Option<PathBuf> =
            ctx.input(|i| i.raw.dropped_files.first().map(|f| f.path().to_path_buf()));
        if let Some(path) = dropped {
            self.apply(Action::OpenDropped(path));
        }
    }

    pub fn run_state(&self) -> Option<RunState> {
        self.session.run.as_ref().map(|r| r.state)
    }

    /// Runs `f`; if it panics, saves the model in view to the recovery checkpoint, says where,
    /// and lets the panic go on.
    fn guarded(&mut self, f: impl FnOnce(&mut Self)) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(self))) {
            self.write_recovery();
            resume_unwind(panic);
        }
    }

    fn write_recovery(&self) {
        let Some(path) = &self.recovery_path else {
            return;
        };
        match recovery::write(path, &self.session.checkpoint()) {
            Ok(()) => eprintln!(
                "toylens crashed; the model in view and its history were saved to {}. \
                 The next start offers to reopen it.",
                path.display()
            ),
            Err(e) => eprintln!("toylens crashed and could not save the model in view: {e}"),
        }
    }

    fn logic_unguarded(&mut self, ctx: &egui::Context) {
        let start = Instant::now();
        self.frame_cpu_start = thread_cpu_ms();
        self.frame_started = Some(start);
        log::trace!("repaint causes: {:?}", ctx.repaint_causes());
        if std::mem::take(&mut self.inject_panic) {
            panic!("injected panic (testing crash recovery)");
        }
        self.poll_messages();
        let polled = Instant::now();
        self.handle_close_request(ctx);
        self.handle_dropped_files(ctx);
        self.tick_scrubber();
        if let Some(tms) = &mut self.tms
            && tms.tick(Instant::now())
        {
            ctx.request_repaint_after(superposition::PLAY_INTERVAL);
        }
        self.fit_ablation();
        self.refresh_views();
        self.frame_parts[0] = ms_between(start, polled);
        self.frame_parts[1] = ms_between(polled, Instant::now());
    }

    /// One frame's logic: messages in, window events, the views' jobs. Runs before drawing;
    /// a panic saves the model in view first.
    pub fn run_logic(&mut self, ctx: &egui::Context) {
        self.guarded(|app| app.logic_unguarded(ctx));
    }

    /// One frame's drawing by `draw` (the panels, which read the state and return actions), then
    /// the actions applied and the views they changed refreshed.
    pub fn run_frame(
        &mut self,
        ui: &mut egui::Ui,
        draw: impl FnOnce(&Self, &mut egui::Ui) -> Vec<Action>,
    ) {
        self.guarded(|app| app.ui_unguarded(ui, draw));
    }

    fn ui_unguarded(
        &mut self,
        ui: &mut egui::Ui,
        draw: impl FnOnce(&Self, &mut egui::Ui) -> Vec<Action>,
    ) {
        let drawing = Instant::now();
        let asked = draw(self, ui);
        self.actions.extend(asked);
        if self.frame_times.recent_ms.is_empty()
            && let Some(launched) = LAUNCHED.get()
        {
            log::info!(
                "first frame drawn {:.0} ms after launch",
                launched.elapsed().as_secs_f64() * 1e3
            );
        }
        let acting = Instant::now();
        let actions = std::mem::take(&mut self.actions);
        let names: Vec<String> = actions.iter().map(|a| format!("{a:?}")).collect();
        for action in actions {
            self.apply(action);
        }
        if !names.is_empty() {
            // What the actions changed (a typed sequence, a tab, an ablation) starts its jobs
            // now, not at the next input event.
            self.refresh_views();
        }
        self.frame_parts[2] = ms_between(drawing, acting);
        self.frame_parts[3] = ms_between(acting, Instant::now());
        if let Some(start) = self.frame_started.take() {
            let ms = start.elapsed().as_secs_f32() * 1000.0;
            if ms > 50.0 {
                let [messages, views, draw, act] = self.frame_parts;
                log::debug!(
                    "slow frame: {ms:.1} ms ({:.1} ms of this thread's CPU) on the {:?} tab (messages {messages:.1}, views {views:.1}, drawing {draw:.1}, actions {act:.1} ms {names:?})",
                    thread_cpu_ms() - self.frame_cpu_start,
                    self.settings.tab
                );
            }
            self.frame_times.push(ms);
        }
        if self.settings.show_frame_time && !self.session.is_training() {
            // Keep measuring while the readout is visible. Not while training: the trainer's
            // own wake-ups (one a second) give frames to measure, and faster redraws on a
            // software rasteriser slow the trainer.
            ui.ctx().request_repaint_after(Duration::from_millis(250));
        }
    }
}

/// CPU time this thread has used, in ms: a slow frame with little of it was waiting, not working.
fn thread_cpu_ms() -> f32 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f32 * 1e3 + t.tv_nsec as f32 / 1e6
}

fn ms_between(from: Instant, to: Instant) -> f32 {
    to.duration_since(from).as_secs_f32() * 1000.0
}
