//! The Superposition workspace: the settings and run controls on the left, the paper's pictures
//! of the run in view in the middle, the scrubber below. Like every panel it reads the app's
//! state and returns actions ([`TmsAction`]); the workspace's worker does the training.

mod phase_map;
mod settings;
mod views;

use egui::Ui;

use super::Frame;
use crate::app::Action;
use crate::app::superposition::{TmsAction, TmsWorkspace};

/// Draws the workspace's panels (the top and status bars are the window's).
pub(super) fn panels(f: &mut Frame<'_>, tms: &TmsWorkspace, ui: &mut Ui) {
    if tms.snapshots.len() > 1 {
        egui::Panel::bottom("tms_scrubber").show(ui, |ui| scrubber(f, tms, ui));
    }
    egui::Panel::left("tms_settings")
        .resizable(true)
        .default_size(300.0)
        .min_size(260.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| settings::show(f, tms, ui));
        });
    egui::CentralPanel::default().show(ui, |ui| views::show(f, tms, ui));
}

/// The model after each evaluation: play them in order, or pick one.
fn scrubber(f: &mut Frame<'_>, tms: &TmsWorkspace, ui: &mut Ui) {
    let act = |f: &mut Frame<'_>, a: TmsAction| f.act(Action::Tms(a));
    ui.horizontal(|ui| {
        let playing = tms.playing.is_some();
        if ui
            .button(if playing { "Pause" } else { "Play" })
            .on_hover_text("play the run from its first evaluation: every view follows")
            .clicked()
        {
            act(f, TmsAction::Play(!playing));
        }
        let last = tms.snapshots.len() - 1;
        let mut index = tms.shown_index();
        let label = ui.label("Step");
        let width = (ui.available_width() - 220.0).max(120.0);
        ui.spacing_mut().slider_width = width;
        let slider = ui
            .add(
                egui::Slider::new(&mut index, 0..=last)
                    .show_value(false)
                    .custom_formatter(|_, _| String::new()),
            )
            .labelled_by(label.id);
        if slider.changed() {
            act(
                f,
                TmsAction::View(if index == last { None } else { Some(index) }),
            );
        }
        ui.monospace(format!(
            "{:>6} / {}",
            tms.shown().step,
            tms.snapshots[last].step
        ));
        if ui
            .add_enabled(tms.view.is_some(), egui::Button::new("Latest"))
            .clicked()
        {
            act(f, TmsAction::View(None));
        }
    });
}
