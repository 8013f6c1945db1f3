//! The workspace's left panel: which model and hook the next SAE reads, its settings (edited as
//! a copy, returned whole when changed), Train and Stop, and the SAE in view's files.

use egui::{RichText, Ui};

use super::Frame;
use crate::app::Action;
use crate::app::features::{SaeAction, SaeDraft, SaeTarget, transformer_hooks};
use crate::sae::{Architecture, Positions};

pub(super) fn show(f: &mut Frame<'_>, ui: &mut Ui) {
    ui.heading("Features");
    ui.label(
        "Sparse autoencoders: latents f = ReLU(W_enc(x − b_dec) + b_enc), reconstruction \
         W_dec f + b_dec",
    );
    ui.separator();
    let sae = &f.app.sae;
    let mut draft = sae.draft.clone();
    let training = sae.is_training();
    ui.add_enabled_ui(!training, |ui| form(f, ui, &mut draft));
    if draft != sae.draft {
        f.act(Action::Sae(SaeAction::Edit(Box::new(draft))));
    }
    ui.separator();
    let inputs = f.app.sae_inputs(f.app.sae.draft.target);
    let blocker = f.app.sae.train_blocker(inputs.as_ref());
    ui.horizontal(|ui| {
        let train = ui
            .add_enabled(blocker.is_none(), egui::Button::new("Train"))
            .on_hover_text("train an SAE of these settings on the model in view")
            .on_disabled_hover_text(blocker.clone().unwrap_or_default());
        if train.clicked() {
            f.act(Action::Sae(SaeAction::Train));
        }
        if ui
            .add_enabled(training, egui::Button::new("Stop"))
            .clicked()
        {
            f.act(Action::Sae(SaeAction::Stop));
        }
    });
    if let (Some(reason), false) = (&blocker, training) {
        ui.colored_label(ui.visuals().warn_fg_color, reason);
    }
    ui.separator();
    attached(f, ui);
}

/// A labelled row of the settings grid.
fn row(ui: &mut Ui, label: &str, hint: &str, add: impl FnOnce(&mut Ui) -> egui::Response) {
    let label = ui.label(label).on_hover_text(hint);
    add(ui).labelled_by(label.id).on_hover_text(hint);
    ui.end_row();
}

fn form(f: &Frame<'_>, ui: &mut Ui, draft: &mut SaeDraft) {
    let hooks: Vec<String> = match draft.target {
        SaeTarget::Transformer => transformer_hooks(&f.app.session.config.model),
        SaeTarget::Superposition => f.app.tms.as_ref().map_or_else(Vec::new, |t| {
            (0..t.run.model.n_instances)
                .map(|i| format!("hook_hidden.{i}"))
                .collect()
        }),
    };
    egui::Grid::new("sae_form").num_columns(2).show(ui, |ui| {
        row(
            ui,
            "Model",
            "the model in view whose activation the SAE reads",
            |ui| {
                egui::ComboBox::from_id_salt("sae_target")
                    .selected_text(match draft.target {
                        SaeTarget::Transformer => "transformer",
                        SaeTarget::Superposition => "superposition",
                    })
                    .show_ui(ui, |ui| {
                        ui.selectable_value(
                            &mut draft.target,
                            SaeTarget::Transformer,
                            "transformer",
                        );
                        if f.app.tms.is_some() {
                            ui.selectable_value(
                                &mut draft.target,
                                SaeTarget::Superposition,
                                "superposition",
                            );
                        }
                    })
                    .response
            },
        );
        row(
            ui,
            "Hook",
            "the TransformerLens hook it reads (attn.hook_z flattened over heads), or a \
             superposition instance's hidden layer h = Wx",
            |ui| {
                egui::ComboBox::from_id_salt("sae_hook")
                    .selected_text(&draft.hook)
                    .height(400.0)
                    .show_ui(ui, |ui| {
                        for hook in &hooks {
                            ui.selectable_value(&mut draft.hook, hook.clone(), hook);
                        }
                    })
                    .response
            },
        );
        if draft.target == SaeTarget::Transformer {
            row(
                ui,
                "Positions",
                "which positions of each sequence it reads: every one, or the last (where \
                 modular addition and skip-trigram models answer)",
                |ui| {
                    ui.horizontal(|ui| {
                        ui.selectable_value(&mut draft.positions, Positions::All, "all");
                        ui.selectable_value(&mut draft.positions, Positions::Last, "last");
                    })
                    .response
                },
            );
        }
        let run = &mut draft.run;
        row(ui, "Latents", "d_sae: the SAE's width", |ui| {
            ui.add(egui::DragValue::new(&mut run.d_sae).range(1..=65_536))
        });
        let topk = matches!(run.architecture, Architecture::TopK { .. });
        row(
            ui,
            "Architecture",
            "standard: ReLU with an L1 penalty on activations × decoder norms (dead latents \
             resampled); TopK: the k largest pre-activations (dead latents trained by an \
             auxiliary loss)",
            |ui| {
                let mut pick_topk = topk;
                let r = ui
                    .horizontal(|ui| {
                        ui.selectable_value(&mut pick_topk, false, "standard");
                        ui.selectable_value(&mut pick_topk, true, "TopK");
                    })
                    .response;
                if pick_topk != topk {
                    run.architecture = if pick_topk {
                        Architecture::TopK {
                            k: 8.min(run.d_sae.max(1)),
                            aux_coefficient: 1.0,
                        }
                    } else {
                        Architecture::Standard {
                            l1_coefficient: 0.1,
                        }
                    };
                }
                r
            },
        );
        match &mut run.architecture {
            Architecture::Standard { l1_coefficient } => row(
                ui,
                "L1 coefficient",
                "λ: sparsity against reconstruction; scale it with the activations' size",
                |ui| {
                    ui.add(
                        egui::DragValue::new(l1_coefficient)
                            .range(0.0..=1e4)
                            .speed(0.01)
                            .max_decimals(5),
                    )
                },
            ),
            Architecture::TopK { k, .. } => {
                let most = run.d_sae.max(1);
                row(ui, "k", "latents active per input", |ui| {
                    ui.add(egui::DragValue::new(k).range(1..=most))
                })
            }
        }
        row(ui, "Steps", "Adam steps, each on a fresh batch", |ui| {
            ui.add(egui::DragValue::new(&mut run.steps).range(1..=1_000_000))
        });
        row(ui, "Batch", "activations per step", |ui| {
            ui.add(egui::DragValue::new(&mut run.batch_size).range(1..=65_536))
        });
        row(ui, "Learning rate", "Adam's", |ui| {
            ui.add(
                egui::DragValue::new(&mut run.lr)
                    .range(1e-6..=1.0)
                    .speed(1e-4)
                    .max_decimals(6),
            )
        });
        row(ui, "Evaluate every", "steps between evaluations", |ui| {
            ui.add(egui::DragValue::new(&mut run.eval_every).range(1..=1_000_000))
        });
        row(
            ui,
            "Seed",
            "the SAE's initialisation and its batches",
            |ui| ui.add(egui::DragValue::new(&mut run.seed)),
        );
    });
}

/// The SAE in view and its files.
fn attached(f: &mut Frame<'_>, ui: &mut Ui) {
    let idle = !f.app.busy_io && !f.app.sae.is_training();
    ui.horizontal(|ui| {
        if ui
            .add_enabled(idle, egui::Button::new("Open SAE…"))
            .on_hover_text(
                "an SAE folder (cfg.json, sae_weights.safetensors) saved by toylens or SAELens",
            )
            .clicked()
        {
            f.act(Action::Sae(SaeAction::Open));
        }
        let blocker = f.app.sae_save_blocker();
        if ui
            .add_enabled(blocker.is_none(), egui::Button::new("Save SAE…"))
            .on_hover_text("as SAELens saves it: a folder that SAE.load_from_disk reads")
            .on_disabled_hover_text(blocker.unwrap_or_default())
            .clicked()
        {
            f.act(Action::Sae(SaeAction::SaveAs));
        }
    });
    let Some(a) = &f.app.sae.attached else {
        return;
    };
    let sae = &a.sae;
    ui.add_space(4.0);
    ui.label(RichText::new("SAE in view").strong());
    egui::Grid::new("sae_attached")
        .num_columns(2)
        .show(ui, |ui| {
            let mut line = |k: &str, v: String| {
                ui.weak(k);
                ui.label(v);
                ui.end_row();
            };
            line("architecture", sae.architecture.saelens_name().into());
            if let Architecture::TopK { k, .. } = sae.architecture {
                line("k", k.to_string());
            }
            line("hook", sae.hook_name.clone());
            line(
                "d_in × d_sae",
                format!("{} × {}", sae.weights.d_in, sae.weights.d_sae),
            );
            if let Some(p) = sae.positions {
                line("positions", p.name().into());
            }
            line(
                "file",
                a.file
                    .as_ref()
                    .map_or_else(|| "not saved".into(), |p| p.display().to_string()),
            );
        });
    if ui
        .add_enabled(idle && !a.dirty, egui::Button::new("Detach"))
        .on_hover_text("close the SAE (the model is not changed)")
        .on_disabled_hover_text("save the SAE first: it has not been saved")
        .clicked()
    {
        f.act(Action::Sae(SaeAction::Detach));
    }
}
