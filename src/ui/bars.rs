//! The window's frame around the tabs: the top bar (files, device, the run's status line and
//! the path field), the status bar, the training-history scrubber and the confirmation modal.

use egui::{Color32, RichText, Ui};

use super::{Frame, human, human_duration, spinner};
use crate::app::features::SaeAction;
use crate::app::files::Purpose;
use crate::app::session::RunState;
use crate::app::superposition::TmsAction;
use crate::app::{Action, Confirm, ToylensApp, Workspace};
use crate::device::DeviceChoice;
use crate::metrics::Metrics;
use crate::task::Unit;

pub(super) fn top_bar(f: &mut Frame<'_>, ui: &mut Ui) {
    ui.horizontal(|ui| {
        ui.strong("toylens");
        ui.separator();
        let idle = !f.app.busy_io && !f.app.resetting;
        if ui.add_enabled(idle, egui::Button::new("Open…")).clicked() {
            f.act(Action::Open);
        }
        let workspace = f.app.workspace;
        let tms_shown = workspace == Workspace::Superposition && f.app.tms.is_some();
        let features_shown = workspace == Workspace::Features;
        let save_blocker = if workspace == Workspace::Sweep {
            Some("a sweep's runs write their own folders: nothing to save here".to_string())
        } else if features_shown {
            f.app.sae_save_blocker()
        } else if tms_shown {
            f.app
                .busy_io
                .then(|| "a file operation is in progress".to_string())
        } else {
            f.app.save_blocker()
        }
        .unwrap_or_default();
        let can_save = save_blocker.is_empty();
        if ui
            .add_enabled(can_save, egui::Button::new("Save…"))
            .on_disabled_hover_text(&save_blocker)
            .clicked()
        {
            f.act(if features_shown {
                Action::Sae(SaeAction::Save)
            } else if tms_shown {
                Action::Tms(TmsAction::Save)
            } else {
                Action::Save
            });
        }
        if ui
            .add_enabled(can_save, egui::Button::new("Save as…"))
            .on_disabled_hover_text(&save_blocker)
            .clicked()
        {
            f.act(if features_shown {
                Action::Sae(SaeAction::SaveAs)
            } else if tms_shown {
                Action::Tms(TmsAction::SaveAs)
            } else {
                Action::SaveAs
            });
        }
        ui.separator();
        // The workspaces: the transformer's tabs, the superposition model's views, and the
        // features an SAE finds in either.
        for (shown, label, hint) in [
            (
                Workspace::Transformer,
                "Transformer",
                "train and take apart a transformer",
            ),
            (
                Workspace::Superposition,
                "Superposition",
                "Toy Models of Superposition: features packed into fewer dimensions",
            ),
            (
                Workspace::Features,
                "Features",
                "sparse autoencoders: the features a model computes, found in one of its \
                 activations",
            ),
            (
                Workspace::Sweep,
                "Sweep",
                "a sweep folder's phase diagram: which regime each run of a grid lands in",
            ),
        ] {
            let current = match shown {
                Workspace::Superposition => tms_shown,
                _ => workspace == shown,
            };
            if ui
                .selectable_label(current, label)
                .on_hover_text(hint)
                .clicked()
                && !current
            {
                f.act(Action::Show(shown));
            }
        }
        ui.separator();
        if features_shown {
            ui.label(super::features::status_line(f.app));
            return;
        }
        if workspace == Workspace::Sweep {
            if let Some(sweep) = &f.app.sweep {
                ui.label(super::sweeps::status_line(sweep));
            }
            return;
        }
        if let Some(tms) = f.app.tms.as_ref().filter(|_| tms_shown) {
            ui.label(tms_status_line(tms));
            return;
        }
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
                Purpose::OpenSae => "Open SAE folder",
                Purpose::SaveSae => "Save SAE into folder",
                Purpose::TrainData | Purpose::AttachData => "Data file path",
                _ => "Save to path",
            });
            let edit = ui.add(
                egui::TextEdit::singleline(text)
                    .hint_text(match purpose {
                        Purpose::TrainData | Purpose::AttachData => "/path/to/data.jsonl",
                        Purpose::OpenSae | Purpose::SaveSae => "/path/to/sae/",
                        _ => "/path/to/model.safetensors",
                    })
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
                Purpose::Open | Purpose::TrainData | Purpose::AttachData | Purpose::OpenSae => {
                    "Open"
                }
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
/// The superposition model in view, in a line: its shape, training, and file.
fn tms_status_line(tms: &crate::app::superposition::TmsWorkspace) -> String {
    let model = &tms.run.model;
    let latest = tms.snapshots.last().map_or(0, |s| s.step);
    let file = tms.file.as_ref().and_then(|p| p.file_name()).map_or_else(
        || "untitled".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let state = if tms.is_training() {
        format!("training, step {latest} of {}", tms.run.train.steps)
    } else if latest == 0 {
        "untrained".to_string()
    } else {
        format!("{latest} steps trained")
    };
    format!(
        "{} instances of {} features into {} · {state} · {file}{}",
        model.n_instances,
        model.n_features,
        model.n_hidden,
        if tms.dirty { " (unsaved)" } else { "" }
    )
}

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
pub(super) fn scrubber(f: &mut Frame<'_>, ui: &mut Ui) {
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

pub(super) fn status_bar(f: &mut Frame<'_>, ui: &mut Ui) {
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

pub(super) fn confirm_modal(f: &mut Frame<'_>, ui: &mut Ui) {
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
