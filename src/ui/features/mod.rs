//! The Features workspace: an SAE's settings and files on the left; its training curves, the
//! latents' density histogram, the feature table and the selected latent's dashboard in the
//! middle. Like every panel it reads the app's state and returns actions ([`SaeAction`]); the
//! workspace's workers train and summarise.

mod dashboard;
mod settings;

use egui::{RichText, Ui};

use super::Frame;
use crate::app::ToylensApp;
use crate::app::features::{SaeAction, SaeTarget, Summary, describe};

pub(super) fn panels(f: &mut Frame<'_>, ui: &mut Ui) {
    egui::Panel::left("sae_settings")
        .resizable(true)
        .default_size(300.0)
        .min_size(260.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| settings::show(f, ui));
        });
    // The selected latent's dashboard, beside the table, as a feature page.
    if let Some(features) = f.app.sae.features().cloned() {
        egui::Panel::right("sae_latent")
            .resizable(true)
            .default_size(460.0)
            .min_size(320.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .auto_shrink([false, false])
                    .show(ui, |ui| dashboard::selected(f, &features, ui));
            });
    }
    egui::CentralPanel::default().show(ui, |ui| {
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| views(f, ui));
    });
}

/// "training · step 400/2000 · EV 0.93 · L0 8.0" or the SAE in view.
pub(super) fn status_line(app: &ToylensApp) -> String {
    let sae = &app.sae;
    let latest = sae.history.last();
    if sae.is_training() {
        let steps = sae.draft.run.steps;
        return match latest {
            Some(m) => format!("training the SAE ({steps} steps) · {}", describe(m)),
            None => "training the SAE · reading the first activations…".into(),
        };
    }
    match &sae.attached {
        Some(a) => {
            let name = a
                .file
                .as_ref()
                .map_or_else(|| "unsaved SAE".into(), |p| p.display().to_string());
            format!(
                "{} SAE, {} latents on {} · {name}{}",
                a.sae.architecture.saelens_name(),
                a.sae.weights.d_sae,
                a.sae.hook_name,
                if a.dirty { " •" } else { "" }
            )
        }
        None => "no SAE: train one on a hook of the model in view, or open one".into(),
    }
}

fn views(f: &mut Frame<'_>, ui: &mut Ui) {
    let sae = &f.app.sae;
    if sae.history.is_empty() && sae.attached.is_none() {
        ui.add_space(24.0);
        ui.heading("No SAE yet");
        ui.label(
            "Pick a hook on the left and press Train: a sparse autoencoder learns an \
             overcomplete, sparse code for that activation, and each of its latents is shown \
             here with the inputs it fires on most. Or open an SAE folder saved by toylens or \
             SAELens.",
        );
        return;
    }
    let width = ui.available_width();
    dashboard::curves(sae, ui, width);
    ui.add_space(6.0);
    if let Some(a) = &sae.attached {
        let target = match a.target {
            SaeTarget::Transformer => "the transformer in view",
            SaeTarget::Superposition => "the superposition model in view",
        };
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("Latents of {} on {target}", a.sae.hook_name)).strong());
            if ui
                .add_enabled(
                    !matches!(sae.summary, Summary::Running(_)),
                    egui::Button::new("Summarise again"),
                )
                .on_hover_text(
                    "the dashboards again, on fresh activations of the model now in view",
                )
                .clicked()
            {
                f.act(crate::app::Action::Sae(SaeAction::Summarise));
            }
        });
        match &sae.summary {
            Summary::Running(_) => {
                ui.horizontal(|ui| {
                    ui.add(super::spinner::CalmSpinner);
                    ui.weak("summarising every latent on fresh activations…");
                });
            }
            Summary::Failed(v, e) if *v == a.version => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            _ => {}
        }
        if let Some(features) = sae.features().cloned() {
            dashboard::density_histogram(&features, ui, width);
            ui.add_space(6.0);
            dashboard::table(f, &features, ui);
        }
    } else if sae.is_training() {
        ui.weak("the latents' dashboards follow when training ends");
    }
}

/// The attached SAE's latents at each position of the sequence, strongest first; a click shows
/// the latent's dashboard in the Features workspace.
pub(super) fn latents_at_positions(
    f: &mut Frame<'_>,
    result: &crate::analysis::Inspection,
    latents: &crate::app::views::SaeLatents,
    ui: &mut Ui,
) {
    egui::CollapsingHeader::new(format!("SAE latents at {}", latents.hook))
        .default_open(true)
        .show(ui, |ui| {
            let rows = match &latents.positions {
                Ok(rows) => rows,
                Err(e) => {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                    return;
                }
            };
            let names = super::token_names(f.app);
            for (q, (active, &t)) in rows.iter().zip(&result.tokens).enumerate() {
                ui.horizontal(|ui| {
                    let label = RichText::new(format!("{q:>3} {:<6}", names.label(t))).monospace();
                    ui.label(label);
                    if active.is_empty() {
                        ui.weak("none active");
                    }
                    for &(latent, value) in active {
                        if ui
                            .small_button(format!("#{latent} {value:.2}"))
                            .on_hover_text("show this latent's dashboard (Features)")
                            .clicked()
                        {
                            f.act(crate::app::Action::Sae(SaeAction::Select(Some(latent))));
                            f.act(crate::app::Action::Show(crate::app::Workspace::Features));
                        }
                    }
                });
            }
        });
}
