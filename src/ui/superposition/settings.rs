//! The workspace's left panel: presets, the next run's settings (edited as a copy, returned
//! whole when changed), Train and Stop, and the file actions.

use egui::{RichText, Ui};

use super::Frame;
use crate::app::Action;
use crate::app::superposition::{TmsAction, TmsWorkspace};
use crate::superposition::config::{Importance, Probability};
use crate::superposition::{Output, TmsPreset, TmsRun};

fn preset_name(preset: TmsPreset) -> &'static str {
    match preset {
        TmsPreset::Intro => "Intro 5 into 2",
        TmsPreset::Geometry => "Geometry 200 into 20",
        TmsPreset::Phase => "Phase diagram 2 into 1",
    }
}

fn preset_hint(preset: TmsPreset) -> &'static str {
    match preset {
        TmsPreset::Intro => {
            "the paper's first figure: 5 features into 2 dimensions, importance 0.9^i, seven \
             instances from feature probability 1 (two dedicated features) to 0.001 (all five \
             in a pentagon); 5 000 steps"
        }
        TmsPreset::Geometry => {
            "the feature-geometry experiment: 200 features into 20 dimensions, 20 instances \
             from probability 1 to 0.05, 10 000 steps; dimensions per feature stick at 1/2, \
             2/5, 3/8…"
        }
        TmsPreset::Phase => {
            "the phase diagram: 2 features into 1 dimension, an instance per cell of a 16 × 16 \
             grid of feature probability × the second feature's relative importance"
        }
    }
}

pub(super) fn show(f: &mut Frame<'_>, tms: &TmsWorkspace, ui: &mut Ui) {
    ui.heading("Superposition");
    ui.label("Toy Models of Superposition (Elhage et al. 2022): x' = ReLU(W^T W x + b)");
    ui.add_space(4.0);
    ui.horizontal_wrapped(|ui| {
        ui.label("Preset");
        for preset in [TmsPreset::Intro, TmsPreset::Geometry, TmsPreset::Phase] {
            let active = tms.draft == TmsRun::from_preset(preset);
            if ui
                .selectable_label(active, preset_name(preset))
                .on_hover_text(preset_hint(preset))
                .clicked()
            {
                f.act(Action::Tms(TmsAction::Preset(preset)));
            }
        }
    });
    ui.separator();
    let mut draft = tms.draft.clone();
    let training = tms.is_training();
    ui.add_enabled_ui(!training, |ui| form(ui, &mut draft));
    if draft != tms.draft {
        f.act(Action::Tms(TmsAction::Edit(Box::new(draft))));
    }
    ui.separator();
    run_controls(f, tms, ui);
}

/// A labelled row of the settings grid.
fn row(ui: &mut Ui, label: &str, hint: &str, add: impl FnOnce(&mut Ui) -> egui::Response) {
    let label = ui.label(label).on_hover_text(hint);
    add(ui).labelled_by(label.id).on_hover_text(hint);
    ui.end_row();
}

fn form(ui: &mut Ui, run: &mut TmsRun) {
    egui::CollapsingHeader::new("Model")
        .default_open(true)
        .show(ui, |ui| {
            egui::Grid::new("tms_model").num_columns(2).show(ui, |ui| {
                let m = &mut run.model;
                row(ui, "Features", "n: the features to represent", |ui| {
                    ui.add(drag(&mut m.n_features, 1..=100_000))
                });
                row(
                    ui,
                    "Hidden dimensions",
                    "m: fewer than the features, so that they must share",
                    |ui| ui.add(drag(&mut m.n_hidden, 1..=10_000)),
                );
                row(
                    ui,
                    "Instances",
                    "independent models trained side by side, each with its own feature \
                     probability",
                    |ui| ui.add(drag(&mut m.n_instances, 1..=1024)),
                );
                row(ui, "Output", "ReLU (the paper's) or linear", |ui| {
                    egui::ComboBox::from_id_salt("tms_output")
                        .selected_text(match m.output {
                            Output::Relu => "ReLU(W^T W x + b)",
                            Output::Linear => "W^T W x + b",
                        })
                        .show_ui(ui, |ui| {
                            ui.selectable_value(&mut m.output, Output::Relu, "ReLU(W^T W x + b)");
                            ui.selectable_value(&mut m.output, Output::Linear, "W^T W x + b")
                        })
                        .response
                });
            });
        });
    egui::CollapsingHeader::new("Features")
        .default_open(true)
        .show(ui, |ui| {
            egui::Grid::new("tms_task").num_columns(2).show(ui, |ui| {
                let task = &mut run.task;
                let p = &mut task.feature_probability;
                match p {
                    Probability::LogSpaced([hi, lo]) => {
                        row(
                            ui,
                            "Probability, first",
                            "the first instance's feature probability; the others log-spaced \
                             down to the last's",
                            |ui| ui.add(probability(hi)),
                        );
                        row(
                            ui,
                            "Probability, last",
                            "the last instance's feature probability",
                            |ui| ui.add(probability(lo)),
                        );
                    }
                    Probability::Constant(v) => {
                        row(
                            ui,
                            "Probability",
                            "every instance's feature probability",
                            |ui| ui.add(probability(v)),
                        );
                    }
                    Probability::List(list) => {
                        let text = format!("{} values (the preset's)", list.len());
                        row(ui, "Probability", "one per instance", |ui| ui.label(text));
                    }
                }
                ui.label("");
                if ui
                    .button("Log-spaced from 1 to 0.01")
                    .on_hover_text("the probabilities from 1 down to 0.01, evenly on a log scale")
                    .clicked()
                {
                    *p = Probability::LogSpaced([1.0, 0.01]);
                }
                ui.end_row();
                let pairs_hint = "pairs of features at the start, active together \
                                  (correlated) or never together (anticorrelated)";
                row(ui, "Correlated pairs", pairs_hint, |ui| {
                    ui.add(drag(&mut task.correlated_pairs, 0..=50_000))
                });
                row(ui, "Anticorrelated pairs", pairs_hint, |ui| {
                    ui.add(drag(&mut task.anticorrelated_pairs, 0..=50_000))
                });
                match &mut task.importance {
                    Importance::Decay(d) => row(
                        ui,
                        "Importance decay",
                        "feature i weighs decay^i (1: all equal)",
                        |ui| ui.add(drag(d, 0.0..=1.0).speed(0.005)),
                    ),
                    Importance::List(l) => {
                        let text = format!("{} values", l.len());
                        row(ui, "Importance", "one per feature", |ui| ui.label(text))
                    }
                    Importance::PerInstance(l) => {
                        let text = format!("per instance ({} lists)", l.len());
                        row(ui, "Importance", "one list per instance", |ui| {
                            ui.label(text)
                        })
                    }
                }
            });
        });
    egui::CollapsingHeader::new("Training")
        .default_open(true)
        .show(ui, |ui| {
            egui::Grid::new("tms_train").num_columns(2).show(ui, |ui| {
                let t = &mut run.train;
                row(
                    ui,
                    "Steps",
                    "optimiser steps, each on a fresh batch",
                    |ui| ui.add(drag(&mut t.steps, 1..=10_000_000).speed(100)),
                );
                row(ui, "Batch size", "samples per step and instance", |ui| {
                    ui.add(drag(&mut t.batch_size, 1..=65_536))
                });
                row(ui, "Learning rate", "AdamW's, constant", |ui| {
                    ui.add(drag(&mut t.lr, 1e-6..=1.0).speed(1e-4).max_decimals(6))
                });
                row(ui, "Weight decay", "AdamW's decoupled weight decay", |ui| {
                    ui.add(drag(&mut t.weight_decay, 0.0..=1.0).speed(1e-3))
                });
                row(
                    ui,
                    "Snapshot every",
                    "steps between evaluations: each keeps the weights for the scrubber",
                    |ui| ui.add(drag(&mut t.eval_every, 1..=1_000_000)),
                );
                row(ui, "Seed", "the initial weights' and batches' seed", |ui| {
                    ui.add(egui::DragValue::new(&mut run.seed))
                });
            });
        });
}

fn probability(p: &mut f64) -> egui::DragValue<'_> {
    drag(p, 1e-6..=1.0).speed(0.001).max_decimals(6)
}

fn run_controls(f: &mut Frame<'_>, tms: &TmsWorkspace, ui: &mut Ui) {
    let act = |f: &mut Frame<'_>, a: TmsAction| f.act(Action::Tms(a));
    if let Some(reason) = tms.train_blocker().filter(|_| !tms.is_training()) {
        ui.colored_label(ui.visuals().error_fg_color, reason);
    }
    ui.horizontal(|ui| {
        if tms.is_training() {
            if ui.button(RichText::new("Stop").strong()).clicked() {
                act(f, TmsAction::Stop);
            }
        } else if ui
            .add_enabled(
                tms.train_blocker().is_none(),
                egui::Button::new(RichText::new("Train").strong()),
            )
            .on_hover_text("train a new model of these settings from scratch")
            .clicked()
        {
            act(f, TmsAction::Train);
        }
        if ui
            .button("Export CSV…")
            .on_hover_text("every evaluation's loss and D* per instance")
            .clicked()
        {
            act(f, TmsAction::ExportCsv);
        }
    });
    let total = tms.run.train.steps.max(1);
    if tms.is_training() || !tms.history.is_empty() {
        let latest = tms.snapshots.last().map_or(0, |s| s.step);
        ui.add(
            egui::ProgressBar::new(latest as f32 / total as f32)
                .text(format!("step {latest} of {total}")),
        );
        if let Some(m) = tms.history.last() {
            ui.label(format!(
                "{:.1} s of training, {:.2} ms per step",
                m.elapsed_s,
                1e3 * m.elapsed_s / m.step.max(1) as f64
            ));
        }
    }
    ui.add_space(6.0);
    ui.weak(
        "Open… reads a superposition checkpoint (toylens train --preset tms-…). Save keeps the \
         latest weights, the settings and the history.",
    );
}

/// A drag value limited to `range` while dragged, which leaves a value from a file or a preset
/// as it is when outside (the settings check then says what is wrong, rather than the form
/// changing it unseen).
fn drag<N: egui::emath::Numeric>(
    value: &mut N,
    range: std::ops::RangeInclusive<N>,
) -> egui::DragValue<'_> {
    egui::DragValue::new(value)
        .range(range)
        .clamp_existing_to_range(false)
}
