//! The controls every analysis view shares: the toolbar (ablation switches, the weights in view,
//! PNG export), the ablation banner, and the position picker.

use egui::{RichText, Ui};

use super::Frame;
use crate::app::{Action, ToylensApp};
use crate::model::{Ablation, HeadMode, head_label};

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
    (tokens, names): (&[u32], crate::task::TokenNames),
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
        ui.weak(format!(
            "token {}",
            super::token_label(names, tokens[position])
        ));
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
