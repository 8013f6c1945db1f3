//! Settings for the next run, the training controls and the model summary.

use egui::{DragValue, RichText, Ui};

use crate::app::session::RunState;
use crate::app::{Action, ToylensApp};
use crate::model::Param;
use crate::train::{PathChoice, Preset};

pub fn show(app: &mut ToylensApp, ui: &mut Ui) {
    egui::ScrollArea::vertical().show(ui, |ui| {
        controls(app, ui);
        ui.separator();
        settings(app, ui);
        ui.separator();
        model_summary(app, ui);
    });
}

fn controls(app: &mut ToylensApp, ui: &mut Ui) {
    ui.heading("Train");
    let train_blocker = app.train_blocker();
    let reset_blocker = app.reset_blocker();
    let state = app.run_state();
    ui.horizontal_wrapped(|ui| {
        let train = ui
            .add_enabled(
                train_blocker.is_none(),
                egui::Button::new(RichText::new("Train").strong()),
            )
            .on_disabled_hover_text(train_blocker.unwrap_or_default());
        if train.clicked() {
            app.request(Action::Train);
        }
        match &state {
            Some(RunState::Running) => {
                if ui.button("Pause").clicked() {
                    app.request(Action::Pause);
                }
            }
            Some(RunState::Paused) => {
                if ui.button("Resume").clicked() {
                    app.request(Action::Resume);
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
            app.request(Action::Stop);
        }
        if ui
            .add_enabled(reset_blocker.is_none(), egui::Button::new("Reset"))
            .on_hover_text("an untrained model with the settings below")
            .on_disabled_hover_text(reset_blocker.unwrap_or_default())
            .clicked()
        {
            app.request(Action::Reset);
        }
    });
}

/// A labelled row in the settings grid.
fn row(ui: &mut Ui, label: &str, hover: &str, add: impl FnOnce(&mut Ui) -> egui::Response) -> bool {
    let l = ui.label(label).on_hover_text(hover);
    let r = add(ui).labelled_by(l.id);
    ui.end_row();
    r.changed()
}

fn settings(app: &mut ToylensApp, ui: &mut Ui) {
    ui.horizontal(|ui| {
        ui.label("Preset");
        for preset in Preset::ALL {
            let active = app.settings.config.train == preset.train_config();
            if ui
                .selectable_label(active, preset.name())
                .on_hover_text(match preset {
                    Preset::Notebook => "the notebook's run: lr 1e-3, 60 epochs (under-trains)",
                    Preset::Fast => "learns every signal pair in seconds: lr 1e-2, 60 epochs",
                })
                .clicked()
            {
                app.request(Action::ApplyPreset(preset));
            }
        }
    });
    let cfg = &mut app.settings.config;
    let mut task_changed = false;
    egui::CollapsingHeader::new("Task")
        .default_open(true)
        .show(ui, |ui| {
            egui::Grid::new("task_grid").num_columns(2).show(ui, |ui| {
                row(
                    ui,
                    "Seed",
                    "drives train data, validation data, init and shuffling",
                    |ui| ui.add(DragValue::new(&mut cfg.seed)),
                );
                let t = &mut cfg.task;
                task_changed |= row(ui, "Sequence length", "tokens per sample (>= 3)", |ui| {
                    ui.add(DragValue::new(&mut t.seq_len).range(1..=64))
                });
                task_changed |= row(
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
                task_changed |= row(
                    ui,
                    "Noise tokens up to",
                    "noise tokens are 5..=N; the vocabulary grows with N",
                    |ui| ui.add(DragValue::new(&mut t.noise_tokens.last).range(5..=999)),
                );
                task_changed |= row(ui, "Train samples", "size of the training set", |ui| {
                    ui.add(
                        DragValue::new(&mut t.train_size)
                            .speed(100)
                            .range(0..=10_000_000),
                    )
                });
                task_changed |= row(
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
            });
        });
    if task_changed {
        cfg.fit_model_to_task();
    }
    egui::CollapsingHeader::new("Model")
        .default_open(true)
        .show(ui, |ui| {
            egui::Grid::new("model_grid").num_columns(2).show(ui, |ui| {
                let m = &mut cfg.model;
                row(ui, "Heads", "attention heads", |ui| {
                    ui.add(DragValue::new(&mut m.n_heads).range(0..=16))
                });
                row(ui, "d_head", "dimension of each head", |ui| {
                    ui.add(DragValue::new(&mut m.d_head).range(0..=64))
                });
                row(
                    ui,
                    "Init range",
                    "std of the normal init of W_Q, W_K, W_V, W_O",
                    |ui| {
                        ui.add(
                            DragValue::new(&mut m.init_range)
                                .speed(0.001)
                                .range(0.0..=1.0),
                        )
                    },
                );
                ui.label("d_vocab = d_model");
                ui.label(format!("{} (one-hot, from the task)", m.d_vocab));
                ui.end_row();
            });
        });
    egui::CollapsingHeader::new("Training")
        .default_open(true)
        .show(ui, |ui| {
            egui::Grid::new("train_grid").num_columns(2).show(ui, |ui| {
                let t = &mut cfg.train;
                let lr_speed = t.lr.abs().max(1e-6) * 0.02;
                row(ui, "Learning rate", "Adam step size", |ui| {
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
                    "L2, as torch.optim.Adam applies it",
                    |ui| {
                        ui.add(
                            DragValue::new(&mut t.weight_decay)
                                .speed(0.0001)
                                .range(-1.0..=1.0),
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
                row(ui, "Epochs", "passes over the training set", |ui| {
                    ui.add(DragValue::new(&mut t.epochs).range(0..=1_000_000))
                });
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
    if let Some(error) = app.config_error() {
        ui.colored_label(ui.visuals().error_fg_color, error.to_string());
    }
}

fn model_summary(app: &ToylensApp, ui: &mut Ui) {
    let cfg = &app.session.config.model;
    egui::CollapsingHeader::new("Model summary")
        .default_open(true)
        .show(ui, |ui| {
            ui.small("The model in view (TransformerLens names).");
            egui::Grid::new("params").striped(true).show(ui, |ui| {
                ui.strong("parameter");
                ui.strong("shape");
                ui.strong("trains");
                ui.end_row();
                let frozen = [
                    ("embed.W_E", vec![cfg.d_vocab, cfg.d_model]),
                    ("pos_embed.W_pos", vec![cfg.n_ctx, cfg.d_model]),
                ];
                for (name, shape) in &frozen {
                    ui.monospace(*name);
                    ui.monospace(format!("{shape:?}"));
                    ui.label("frozen");
                    ui.end_row();
                }
                for p in Param::ALL {
                    ui.monospace(p.tl_name());
                    ui.monospace(format!("{:?}", p.shape(cfg)));
                    ui.label(if p == Param::BK { "yes*" } else { "yes" })
                        .on_hover_text(if p == Param::BK {
                            "b_K cannot affect the pattern: softmax ignores a shift shared by every key, so its gradient is exactly 0"
                        } else {
                            "updated by Adam"
                        });
                    ui.end_row();
                }
                for (name, shape) in [
                    ("unembed.W_U", vec![cfg.d_model, cfg.d_vocab]),
                    ("unembed.b_U", vec![cfg.d_vocab]),
                ] {
                    ui.monospace(name);
                    ui.monospace(format!("{shape:?}"));
                    ui.label("frozen");
                    ui.end_row();
                }
            });
            ui.label(format!("{} trainable parameters", cfg.n_params()));
        });
}
