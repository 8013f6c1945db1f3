//! Drawing, and the window ([`window`]). [`draw`] is a function of the app's state: every panel
//! gets a [`Frame`], which holds the state read-only, the [`Form`] the panels edit in place (the
//! settings form, the analysis inputs, the path being typed), and the [`Action`]s they ask for.
//! The app applies them after the frame, the edited form first; it alone starts jobs, does I/O
//! or changes the session (as egui's demo app has its panels return commands). Nothing under
//! `app` imports this module.

mod analyze_tab;
mod circuits_tab;
mod data_tab;
mod evaluate_tab;
pub mod heatmap;
mod inspect_tab;
mod model_settings;
mod side_panel;
mod spinner;
mod training_tab;
mod window;

pub use window::run_native;

use egui::{Color32, RichText, Ui};

use crate::app::files::Purpose;
use crate::app::session::RunState;
use crate::app::{Action, Confirm, Form, Tab, ToylensApp};
use crate::device::DeviceChoice;
use crate::metrics::Metrics;
use crate::model::{Ablation, HeadMode, head_label};
use crate::task::Unit;

/// One frame's drawing context: the app's state, read only; the form the panels edit in place
/// (a copy, taken back as one [`Action::Edit`]); and the actions they ask for.
pub struct Frame<'a> {
    pub app: &'a ToylensApp,
    pub form: Form,
    actions: Vec<Action>,
}

impl Frame<'_> {
    /// Asks the app to do `action` after the frame.
    pub fn act(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// The colour limit `view` is drawn with: `computed`, or the one the scrubber holds (which
    /// `computed` becomes when none is held yet).
    pub fn scale_limit(&mut self, view: &'static str, computed: f32) -> f32 {
        self.app.scale_limit(view, computed).unwrap_or_else(|| {
            self.act(Action::PinScaleLimit(view, computed));
            computed
        })
    }
}

/// Draws every panel of the window and returns what they ask the app to do, the edited form
/// first.
pub fn draw(app: &ToylensApp, ui: &mut Ui) -> Vec<Action> {
    let mut frame = Frame {
        app,
        form: app.form(),
        actions: Vec::new(),
    };
    panels(&mut frame, ui);
    let Frame {
        form, mut actions, ..
    } = frame;
    if form != app.form() {
        actions.insert(0, Action::Edit(Box::new(form)));
    }
    actions
}

fn panels(f: &mut Frame<'_>, ui: &mut Ui) {
    egui::Panel::top("top_bar").show(ui, |ui| top_bar(f, ui));
    egui::Panel::bottom("status_bar").show(ui, |ui| status_bar(f, ui));
    if f.app.session.snapshots.len() > 1 {
        egui::Panel::bottom("scrubber").show(ui, |ui| scrubber(f, ui));
    }
    egui::Panel::left("settings")
        .resizable(true)
        .default_size(300.0)
        .min_size(260.0)
        .show(ui, |ui| side_panel::show(f, ui));
    egui::CentralPanel::default().show(ui, |ui| {
        ui.horizontal(|ui| {
            for tab in Tab::ALL {
                let shown = f.form.settings.tab == tab;
                if ui
                    .selectable_label(shown, RichText::new(tab.name()).heading())
                    .clicked()
                    && !shown
                {
                    f.act(Action::ShowTab(tab));
                }
            }
        });
        ui.separator();
        match f.form.settings.tab {
            Tab::Data => data_tab::show(f, ui),
            Tab::Training => training_tab::show(f, ui),
            Tab::Inspect => inspect_tab::show(f, ui),
            Tab::Analyze => analyze_tab::show(f, ui),
            Tab::Circuits => circuits_tab::show(f, ui),
            Tab::Evaluate => evaluate_tab::show(f, ui),
        }
    });
    confirm_modal(f, ui);
}

fn top_bar(f: &mut Frame<'_>, ui: &mut Ui) {
    ui.horizontal(|ui| {
        ui.strong("toylens");
        ui.separator();
        let idle = !f.app.busy_io && !f.app.resetting;
        if ui.add_enabled(idle, egui::Button::new("Open…")).clicked() {
            f.act(Action::Open);
        }
        let save_blocker = f.app.save_blocker().unwrap_or_default();
        let can_save = save_blocker.is_empty();
        if ui
            .add_enabled(can_save, egui::Button::new("Save…"))
            .on_disabled_hover_text(&save_blocker)
            .clicked()
        {
            f.act(Action::Save);
        }
        if ui
            .add_enabled(can_save, egui::Button::new("Save as…"))
            .on_disabled_hover_text(&save_blocker)
            .clicked()
        {
            f.act(Action::SaveAs);
        }
        ui.separator();
        let device_label = ui.label("Device");
        egui::ComboBox::from_id_salt("device")
            .selected_text(f.form.settings.device.to_string())
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut f.form.settings.device, DeviceChoice::Cpu, "cpu");
                if crate::device::cuda_available() {
                    ui.selectable_value(
                        &mut f.form.settings.device,
                        DeviceChoice::Cuda(0),
                        "cuda:0",
                    );
                }
            })
            .response
            .labelled_by(device_label.id);
        ui.separator();
        ui.label(status_line(f.app));
    });
    if let Some((purpose, text)) = &mut f.form.path_field {
        let purpose = *purpose;
        let mut submit = None;
        let mut cancel = false;
        ui.horizontal(|ui| {
            let label = ui.label(match purpose {
                Purpose::Open => "Open path",
                _ => "Save to path",
            });
            let edit = ui.add(
                egui::TextEdit::singleline(text)
                    .hint_text("/path/to/model.safetensors")
                    .desired_width(420.0),
            );
            let edit = edit.labelled_by(label.id);
            // A field that just appeared takes the keyboard, so the path can be typed at once.
            if ui.memory(|m| m.focused().is_none()) {
                edit.request_focus();
            }
            let enter = (edit.has_focus() || edit.lost_focus())
                && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let go = ui.button(match purpose {
                Purpose::Open => "Open",
                _ => "Save",
            });
            if (go.clicked() || enter) && !text.trim().is_empty() {
                submit = Some(std::path::PathBuf::from(text.trim()));
            }
            cancel = ui.button("Cancel").clicked();
        });
        if let Some(path) = submit {
            f.act(Action::PathChosen(purpose, path));
        }
        if cancel {
            f.act(Action::CancelPathField);
        }
    }
}

/// "epoch 12/60 · step 120 · 2.1M samples/s · ETA 3 s · model.safetensors •"
pub fn status_line(app: &ToylensApp) -> String {
    let mut parts = Vec::new();
    match &app.session.run {
        Some(run) => {
            let (epoch, step) = run.last_step.map_or((0, 0), |s| (s.epoch, s.step));
            match app.session.config.task.unit() {
                Unit::Epoch => {
                    parts.push(format!("epoch {epoch}/{}", run.total_epochs));
                    parts.push(format!("step {step}"));
                }
                Unit::Step => parts.push(format!("step {step}/{}", run.total_epochs)),
            }
            parts.push(format!("{} samples/s", human(run.samples_per_s())));
            match &run.state {
                RunState::Running => {
                    if let Some(eta) = run.eta_s() {
                        parts.push(format!("ETA {}", human_duration(eta)));
                    }
                }
                RunState::Paused => parts.push("paused".into()),
            }
        }
        None => {
            let trained = app.session.history.last().map_or(0, Metrics::progress);
            let unit = app.session.config.task.unit().name();
            parts.push(if trained == 0 && app.session.file.is_some() {
                "no training history".into()
            } else if trained == 0 {
                "untrained".into()
            } else {
                format!("{trained} {unit}s trained")
            });
        }
    }
    parts.push(app.session.title());
    parts.join(" · ")
}

/// The training-history scrubber: every analysis view shows the weights of the chosen epoch.
fn scrubber(f: &mut Frame<'_>, ui: &mut Ui) {
    let n = f.app.session.snapshots.len();
    ui.horizontal(|ui| {
        let label = ui.label(match f.app.session.config.task.unit() {
            Unit::Epoch => "Epoch",
            Unit::Step => "Step",
        });
        let mut index = f.app.view_index().unwrap_or(n - 1);
        let following = f.app.view_index().is_none();
        let slider = ui
            .add(
                egui::Slider::new(&mut index, 0..=n - 1)
                    .custom_formatter(|i, _| {
                        f.app
                            .session
                            .snapshots
                            .get(i as usize)
                            .map_or_else(String::new, |s| s.epoch.to_string())
                    })
                    .show_value(true),
            )
            .labelled_by(label.id)
            .on_hover_text("every view shows the weights after this epoch");
        if slider.changed() {
            f.act(Action::ViewEpoch(Some(index)));
        }
        let play = if f.app.scrubber.playing {
            "Pause"
        } else {
            "Play"
        };
        if ui
            .button(play)
            .on_hover_text("step through the epochs")
            .clicked()
        {
            if !f.app.scrubber.playing && (following || index + 1 >= n) {
                f.act(Action::ViewEpoch(Some(0)));
            }
            f.act(Action::Play(!f.app.scrubber.playing));
        }
        if ui
            .selectable_label(following, "Latest")
            .on_hover_text("follow the newest weights (live while training)")
            .clicked()
        {
            f.act(Action::ViewEpoch(None));
        }
        ui.checkbox(&mut f.form.fixed_scale, "fixed colour range")
            .on_hover_text("hold every colour scale where it is now, so epochs compare");
        ui.weak(format!("showing {}", f.app.view_label()));
    });
}

/// The row above every analysis view: ablation switches, which weights are shown, PNG export of
/// `panel`, and the ablation banner when one is active.
pub fn analysis_toolbar(f: &mut Frame<'_>, ui: &mut Ui, panel: egui::Rect) {
    ui.horizontal_wrapped(|ui| {
        ablation_controls(f, ui);
        ui.separator();
        ui.label(format!("weights: {}", f.app.view_label()));
        if ui.button("Save PNG…").clicked() {
            f.act(Action::ExportPng(panel));
        }
    });
    ablation_banner(f.app, ui);
}

/// "Position [n] (the last) token t": picks the position a view shows, `None` in `slot`
/// following the last one. Returns the position shown.
pub fn position_picker(
    ui: &mut Ui,
    title: RichText,
    tokens: &[u32],
    slot: &mut Option<usize>,
) -> usize {
    let last = tokens.len() - 1;
    let mut position = slot.unwrap_or(last).min(last);
    ui.horizontal(|ui| {
        let label = ui.label(title);
        let drag = ui
            .add_enabled(
                last > 0,
                egui::DragValue::new(&mut position).range(0..=last),
            )
            .labelled_by(label.id)
            .on_hover_text("the prediction for the token after this position");
        if drag.changed() {
            *slot = (position != last).then_some(position);
        }
        if position == last {
            ui.weak("(the last)");
        } else if ui.small_button("last").clicked() {
            *slot = None;
            position = last;
        }
        ui.weak(format!("token {}", tokens[position]));
    });
    position
}

/// Per-head ablation switches for every layer, shared by the analysis views.
pub fn ablation_controls(f: &mut Frame<'_>, ui: &mut Ui) {
    let (layers, heads) = (
        f.app.session.config.model.n_layers,
        f.app.session.config.model.n_heads,
    );
    ui.label("Ablate:").on_hover_text(
        "replace a head's z (TL's hook_z) by zero or by its mean over the validation set",
    );
    for layer in 0..layers {
        for h in 0..heads {
            let index = layer * heads + h;
            let current = f
                .app
                .analysis
                .ablation
                .get(index)
                .copied()
                .unwrap_or_default();
            let mut mode = current;
            let name = if layers == 1 {
                format!("head {h}")
            } else {
                head_label(layer, h)
            };
            let label = ui.label(name);
            egui::ComboBox::from_id_salt(("ablate", layer, h))
                .selected_text(match mode {
                    HeadMode::Active => "on",
                    HeadMode::Zero => "zero",
                    HeadMode::Mean => "mean",
                })
                .width(52.0)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut mode, HeadMode::Active, "on");
                    ui.selectable_value(&mut mode, HeadMode::Zero, "zero");
                    ui.selectable_value(&mut mode, HeadMode::Mean, "mean")
                        .on_hover_text("replace z by its mean over the validation set");
                })
                .response
                .labelled_by(label.id);
            if mode != current {
                f.act(Action::Ablate { head: index, mode });
            }
        }
    }
}

/// A loud reminder that the numbers shown are not the model's own.
pub fn ablation_banner(app: &ToylensApp, ui: &mut Ui) {
    let model = &app.session.config.model;
    let ablation = Ablation {
        n_heads: model.n_heads,
        modes: app.analysis.ablation.clone(),
        mean_z: None,
    };
    if ablation.is_active() {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            RichText::new(format!("ABLATION ACTIVE: {}", ablation.describe())).strong(),
        );
    }
}

fn status_bar(f: &mut Frame<'_>, ui: &mut Ui) {
    ui.horizontal(|ui| {
        if let Some(status) = &f.app.status {
            let color = if status.is_error() {
                ui.visuals().error_fg_color
            } else {
                ui.visuals().weak_text_color()
            };
            ui.colored_label(color, status.text());
        }
        if f.app.views_busy() || f.app.busy_io || f.app.resetting {
            ui.add(spinner::CalmSpinner);
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            ui.checkbox(&mut f.form.settings.show_frame_time, "frame time");
            if f.form.settings.show_frame_time {
                let (p50, p95) = (
                    f.app.frame_times.percentile(50.0).unwrap_or(0.0),
                    f.app.frame_times.percentile(95.0).unwrap_or(0.0),
                );
                ui.monospace(format!("p50 {p50:.1} ms  p95 {p95:.1} ms"));
            }
        });
    });
}

fn confirm_modal(f: &mut Frame<'_>, ui: &mut Ui) {
    let Some(question) = &f.app.confirm else {
        return;
    };
    let (heading, no) = match question {
        Confirm::Recover(_) => ("A model was recovered", "Discard it"),
        _ => ("Unsaved changes", "Cancel"),
    };
    let (text, yes) = match question {
        Confirm::Close => ("Quit and discard the unsaved model?", "Discard and quit"),
        Confirm::NewRun => (
            "Start a new run and discard the unsaved model?",
            "Discard and train",
        ),
        Confirm::Reset => ("Reset and discard the unsaved model?", "Discard and reset"),
        Confirm::OpenOver(_) | Confirm::OpenFile(_) => (
            "Open another file and discard the unsaved model?",
            "Discard and open",
        ),
        Confirm::Recover(_) => (
            "toylens crashed last time and saved the model that was in view. Reopen it?",
            "Reopen",
        ),
    };
    let response = egui::Modal::new(egui::Id::unique("confirm")).show(ui.ctx(), |ui| {
        ui.heading(heading);
        ui.label(text);
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            if ui
                .button(RichText::new(yes).color(Color32::from_rgb(200, 60, 60)))
                .clicked()
            {
                f.act(Action::ConfirmYes);
            }
            if ui.button(no).clicked() {
                f.act(Action::ConfirmNo);
            }
        });
    });
    if response.should_close() {
        f.act(Action::ConfirmNo);
    }
}

/// A background view's latest result: a spinner saying `busy` while the result for the current
/// inputs is still computing, the error if it failed, `None` until there is a result to draw.
pub fn job_result<'a, K: Clone + PartialEq, T>(
    ui: &mut Ui,
    slot: &'a crate::app::jobs::Derived<K, T>,
    key: &K,
    busy: &str,
) -> Option<&'a T> {
    if !slot.is_current(key) {
        ui.horizontal(|ui| {
            ui.add(spinner::CalmSpinner);
            ui.weak(busy);
        });
    }
    match slot.latest()? {
        Ok(result) => Some(result),
        Err(e) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
            None
        }
    }
}

/// 1234567 -> "1.2M".
pub fn human(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.1}G", x / 1e9),
        x if x >= 1e6 => format!("{:.1}M", x / 1e6),
        x if x >= 1e3 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

pub fn human_duration(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.0} s")
    } else if s < 3600.0 {
        format!("{:.0} min {:.0} s", (s / 60.0).floor(), s % 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}
