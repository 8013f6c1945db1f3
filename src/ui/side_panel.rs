//! Settings for the next run, the training controls and the model summary.

use egui::{DragValue, RichText, Ui};

use super::model_settings::{self, row};
use crate::app::session::RunState;
use crate::app::{Action, ToylensApp};
use crate::task::{TaskConfig, TaskKind, Unit};
use crate::train::{Optimizer, PathChoice, Preset};
use crate::ui::Frame;

pub fn show(f: &mut Frame<'_>, ui: &mut Ui) {
    egui::ScrollArea::vertical().show(ui, |ui| {
        controls(f, ui);
        ui.separator();
        let before = f.form.settings.config.clone();
        settings(f, ui);
        // The buttons above were drawn from the settings before this frame's edit.
        if f.form.settings.config != before {
            ui.ctx().request_repaint();
        }
        ui.separator();
        model_summary(f.app, ui);
    });
}

fn controls(f: &mut Frame<'_>, ui: &mut Ui) {
    ui.heading("Train");
    if f.form.settings.config.model == f.app.session.config.model {
        ui.checkbox(
            &mut f.form.settings.train_from_view,
            "Start from the weights in view",
        )
        .on_hover_text(
            "fine-tune: train the model in view further on the task, instead of a fresh \
             initialisation of the same model",
        );
    }
    let train_blocker = f.app.train_blocker();
    let reset_blocker = f.app.reset_blocker();
    let state = f.app.run_state();
    ui.horizontal_wrapped(|ui| {
        let train = ui
            .add_enabled(
                train_blocker.is_none(),
                egui::Button::new(RichText::new("Train").strong()),
            )
            .on_disabled_hover_text(train_blocker.unwrap_or_default());
        if train.clicked() {
            f.act(Action::Train);
        }
        match &state {
            Some(RunState::Running) => {
                if ui.button("Pause").clicked() {
                    f.act(Action::Pause);
                }
            }
            Some(RunState::Paused) => {
                if ui.button("Resume").clicked() {
                    f.act(Action::Resume);
                }
            }
            None => {
                ui.add_enabled(false, egui::Button::new("Pause"));
            }
        }
        if ui
            .add_enabled(state.is_some(), egui::Button::new("Stop"))
            .clicked()
        {
            f.act(Action::Stop);
        }
        if ui
            .add_enabled(reset_blocker.is_none(), egui::Button::new("Reset"))
            .on_hover_text("an untrained model with the settings below")
            .on_disabled_hover_text(reset_blocker.unwrap_or_default())
            .clicked()
        {
            f.act(Action::Reset);
        }
    });
}

/// What each preset does, for its button's tooltip.
fn preset_hint(preset: Preset) -> &'static str {
    match preset {
        Preset::Notebook => "skip-trigrams, the notebook's run: lr 1e-3, 60 epochs (under-trains)",
        Preset::Fast => "skip-trigrams, every signal pair learned in seconds: lr 1e-2, 60 epochs",
        Preset::Induction => {
            "induction heads in a 2-layer attention-only model (d_model 64, 4 heads, learned \
             positions): repeated random tokens, Adam lr 1e-3, batch 64, 1000 steps"
        }
        Preset::Grokking => {
            "TransformerLens's grokking demo: a + b mod 113, 30% of pairs, 1 layer with a ReLU MLP, \
             AdamW lr 1e-3, weight decay 1, full batch, biases frozen, 25 000 epochs"
        }
        Preset::GrokkingFast => {
            "the same task with a narrower MLP (d_mlp 256), lr 3e-3 and weight decay 2: memorises, \
             plateaus near chance and groks within a minute"
        }
        Preset::Sort => {
            "sort five digits (the sort example data: toylens data gen sort), 2-layer \
             attention-only model, AdamW lr 1e-3, batch 128, 10 epochs"
        }
        Preset::Reverse => {
            "reverse five digits (the reverse example data: toylens data gen reverse), the same \
             model and training"
        }
    }
}

fn settings(f: &mut Frame<'_>, ui: &mut Ui) {
    ui.horizontal_wrapped(|ui| {
        ui.label("Preset");
        for preset in Preset::ALL {
            let mut applied = f.form.settings.config.clone();
            applied.apply_preset(preset);
            let active = applied == f.form.settings.config;
            if ui
                .selectable_label(active, preset.name())
                .on_hover_text(preset_hint(preset))
                .clicked()
            {
                f.act(Action::ApplyPreset(preset));
            }
        }
    });
    let cfg = &mut f.form.settings.config;
    let mut task_changed = false;
    let (mut choose_data, mut attach_data) = (false, false);
    egui::CollapsingHeader::new("Task")
        .default_open(true)
        .show(ui, |ui| {
            egui::Grid::new("task_grid").num_columns(2).show(ui, |ui| {
                row(
                    ui,
                    "Seed",
                    "drives the data, the split, init and shuffling",
                    |ui| ui.add(DragValue::new(&mut cfg.seed)),
                );
                let kind = cfg.task.kind();
                let mut picked = kind;
                row(
                    ui,
                    "Task",
                    "another task brings its preset's model and training",
                    |ui| {
                        egui::ComboBox::from_id_salt("task_kind")
                            .selected_text(kind.title())
                            .show_ui(ui, |ui| {
                                for k in TaskKind::ALL {
                                    ui.selectable_value(&mut picked, k, k.title());
                                }
                                choose_data |= ui
                                    .selectable_label(kind == TaskKind::Sequences, "From a file…")
                                    .on_hover_text(
                                        "sequences from a JSON Lines or NumPy file, with a model \
                                         sized by them",
                                    )
                                    .clicked();
                            })
                            .response
                    },
                );
                let preset = match picked {
                    TaskKind::SkipTrigram => Some(Preset::Fast),
                    TaskKind::Induction => Some(Preset::Induction),
                    TaskKind::ModularAddition => Some(Preset::Grokking),
                    TaskKind::Sequences | TaskKind::None => None,
                };
                if picked != kind
                    && let Some(preset) = preset
                {
                    cfg.apply_preset(preset);
                }
                task_changed |= task_settings(ui, &mut cfg.task);
            });
            attach_data |= ui
                .button("Attach a dataset to the model in view…")
                .on_hover_text(
                    "read a data file and make it the task of the model in view: evaluate it \
                     there, and fine-tune it with Train",
                )
                .clicked();
        });
    if choose_data {
        f.act(Action::ChooseData);
    }
    if attach_data {
        f.act(Action::AttachData);
    }
    let cfg = &mut f.form.settings.config;
    if task_changed {
        cfg.fit_model_to_task();
    }
    egui::CollapsingHeader::new("Model")
        .default_open(true)
        .show(ui, |ui| {
            model_settings::model_settings(ui, &mut cfg.model, cfg.task.has_data());
        });
    egui::CollapsingHeader::new("Training")
        .default_open(true)
        .show(ui, |ui| {
            let unit = cfg.task.unit();
            egui::Grid::new("train_grid").num_columns(2).show(ui, |ui| {
                let t = &mut cfg.train;
                let lr_speed = t.lr.abs().max(1e-6) * 0.02;
                row(
                    ui,
                    "Optimizer",
                    "torch.optim.Adam (L2 decay) or AdamW (decoupled decay)",
                    |ui| {
                        egui::ComboBox::from_id_salt("optimizer")
                            .selected_text(t.optimizer.name())
                            .show_ui(ui, |ui| {
                                for o in [Optimizer::Adam, Optimizer::AdamW] {
                                    ui.selectable_value(&mut t.optimizer, o, o.name());
                                }
                            })
                            .response
                    },
                );
                row(ui, "Learning rate", "the optimiser's step size", |ui| {
                    ui.add(
                        DragValue::new(&mut t.lr)
                            .speed(lr_speed)
                            .range(-1.0..=10.0)
                            .custom_formatter(|v, _| format!("{v:.1e}")),
                    )
                });
                row(
                    ui,
                    "Weight decay",
                    "Adam: an L2 term in the gradient; AdamW: decoupled shrinking",
                    |ui| {
                        ui.add(
                            DragValue::new(&mut t.weight_decay)
                                .speed(0.001)
                                .range(-1.0..=10.0),
                        )
                    },
                );
                row(ui, "Batch size", "samples per step", |ui| {
                    ui.add(
                        DragValue::new(&mut t.batch_size)
                            .speed(100)
                            .range(0..=1_000_000),
                    )
                });
                match unit {
                    Unit::Epoch => row(ui, "Epochs", "passes over the training set", |ui| {
                        ui.add(DragValue::new(&mut t.epochs).range(0..=1_000_000))
                    }),
                    Unit::Step => row(ui, "Steps", "optimiser steps on fresh batches", |ui| {
                        ui.add(DragValue::new(&mut t.steps).speed(10).range(0..=10_000_000))
                    }),
                };
                row(
                    ui,
                    "Evaluate every",
                    "epochs (steps) between evaluations and snapshots",
                    |ui| ui.add(DragValue::new(&mut t.eval_every).range(0..=1_000_000)),
                );
                row(ui, "Beta 1", "Adam's first-moment decay", |ui| {
                    ui.add(
                        DragValue::new(&mut t.betas[0])
                            .speed(0.001)
                            .range(0.0..=0.9999),
                    )
                });
                row(ui, "Beta 2", "Adam's second-moment decay", |ui| {
                    ui.add(
                        DragValue::new(&mut t.betas[1])
                            .speed(0.0001)
                            .range(0.0..=0.99999),
                    )
                });
                row(
                    ui,
                    "Freeze",
                    "parameters that do not train: TL names, * matches anything (e.g. *.b_*), \
                     separated by commas",
                    |ui| freeze_editor(ui, &mut t.freeze),
                );
                row(
                    ui,
                    "Forward path",
                    "all paths are exact; auto picks the fastest",
                    |ui| {
                        egui::ComboBox::from_id_salt("path")
                            .selected_text(format!("{:?}", t.path))
                            .show_ui(ui, |ui| {
                                for p in [
                                    PathChoice::Auto,
                                    PathChoice::Multiset,
                                    PathChoice::LastPosition,
                                    PathChoice::Full,
                                ] {
                                    ui.selectable_value(&mut t.path, p, format!("{p:?}"));
                                }
                            })
                            .response
                    },
                );
            });
        });
    if let Some(error) = f.app.config_error() {
        ui.colored_label(ui.visuals().error_fg_color, error.to_string());
    }
}

/// The current task's own settings; true when one changed.
fn task_settings(ui: &mut Ui, task: &mut TaskConfig) -> bool {
    let mut changed = false;
    match task {
        TaskConfig::Sequences(t) => {
            let summary = match t.data() {
                Some(d) => format!(
                    "{}: {} sequences of {} tokens, {} token ids{}",
                    t.source(),
                    d.len(),
                    d.seq_len,
                    d.d_vocab,
                    if d.vocab.is_some() { " with names" } else { "" }
                ),
                None => format!("{}: not read", t.source()),
            };
            row(ui, "Data", "the sequences this task trains on", |ui| {
                ui.add(egui::Label::new(egui::RichText::new(summary).weak()).wrap())
            });
            changed |= row(
                ui,
                "Validation share",
                "sequences drawn into validation where the file names no split",
                |ui| ui.add(DragValue::new(&mut t.val_frac).speed(0.01).range(0.0..=0.9)),
            );
        }
        TaskConfig::None(_) => {
            row(ui, "", "", |ui| {
                ui.add(
                    egui::Label::new(
                        egui::RichText::new(
                            "The model came without a task: inspect and analyse it on typed \
                             sequences, or choose a task above to train one.",
                        )
                        .weak(),
                    )
                    .wrap(),
                )
            });
        }
        TaskConfig::SkipTrigram(t) => {
            changed |= row(ui, "Sequence length", "tokens per sample (>= 3)", |ui| {
                ui.add(DragValue::new(&mut t.seq_len).range(1..=64))
            });
            changed |= row(
                ui,
                "Signal probability",
                "share of samples that are signal",
                |ui| {
                    ui.add(
                        DragValue::new(&mut t.signal_prob)
                            .speed(0.01)
                            .range(0.0..=1.0),
                    )
                },
            );
            changed |= row(
                ui,
                "Noise tokens up to",
                "noise tokens are 5..=N; the vocabulary grows with N",
                |ui| ui.add(DragValue::new(&mut t.noise_tokens.last).range(5..=999)),
            );
            changed |= row(ui, "Train samples", "size of the training set", |ui| {
                ui.add(
                    DragValue::new(&mut t.train_size)
                        .speed(100)
                        .range(0..=10_000_000),
                )
            });
            changed |= row(
                ui,
                "Validation samples",
                "size of the validation set",
                |ui| {
                    ui.add(
                        DragValue::new(&mut t.val_size)
                            .speed(10)
                            .range(0..=1_000_000),
                    )
                },
            );
        }
        TaskConfig::Induction(t) => {
            changed |= row(
                ui,
                "Vocabulary",
                "the random tokens are drawn from 0..V",
                |ui| ui.add(DragValue::new(&mut t.vocab).range(1..=1_000)),
            );
            changed |= row(
                ui,
                "Half length",
                "random tokens before the repeat; sequences are twice as long",
                |ui| ui.add(DragValue::new(&mut t.half).range(1..=256)),
            );
            changed |= row(
                ui,
                "Gap up to",
                "random tokens between the half and its copy, 0 to this many per sequence: with \
                 a gap the copy is no fixed distance back, so only real induction (a \
                 previous-token head and an induction head) finds it",
                |ui| ui.add(DragValue::new(&mut t.gap_max).range(0..=256)),
            );
            changed |= row(
                ui,
                "Validation sequences",
                "fixed sequences every evaluation measures",
                |ui| ui.add(DragValue::new(&mut t.val_size).speed(10).range(0..=100_000)),
            );
        }
        TaskConfig::ModularAddition(t) => {
            changed |= row(
                ui,
                "Modulus p",
                "a + b mod p; tokens 0..p and '=' (p)",
                |ui| ui.add(DragValue::new(&mut t.p).range(1..=1_000)),
            );
            changed |= row(
                ui,
                "Train fraction",
                "share of the p² pairs trained on; the rest is the test set",
                |ui| {
                    ui.add(
                        DragValue::new(&mut t.train_frac)
                            .speed(0.01)
                            .range(0.0..=1.0),
                    )
                },
            );
        }
    }
    changed
}

fn model_summary(app: &ToylensApp, ui: &mut Ui) {
    egui::CollapsingHeader::new("Model summary")
        .default_open(true)
        .show(ui, |ui| {
            ui.small("The model in view (TransformerLens names).");
            model_settings::model_summary(ui, &app.session.config, app.settings.device.is_cpu());
        });
}

/// A comma-separated list of freeze patterns. The text being typed is kept as typed (in egui's
/// temporary memory) while the field has focus, so "a, " does not snap back to "a".
fn freeze_editor(ui: &mut Ui, freeze: &mut Vec<String>) -> egui::Response {
    let id = ui.make_persistent_id("freeze_text");
    let mut text = ui
        .data(|d| d.get_temp::<String>(id))
        .unwrap_or_else(|| freeze.join(", "));
    let response = ui.add(egui::TextEdit::singleline(&mut text).hint_text("e.g. *.b_*"));
    if response.changed() {
        *freeze = text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
    }
    if response.has_focus() {
        ui.data_mut(|d| d.insert_temp(id, text));
    } else {
        ui.data_mut(|d| d.remove::<String>(id));
    }
    response
}
