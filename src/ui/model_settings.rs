//! The model's settings (TransformerLens's config fields) and the summary of its parameters.

use egui::{DragValue, Ui};

use crate::config::{
    ActFn, Embeddings, ModelConfig, Normalization, Positions, RunConfig, matches_pattern,
};
use crate::model::Plan;
use crate::objective::describe_run;

/// A labelled row in a settings grid; true when the widget changed the value.
pub fn row(
    ui: &mut Ui,
    label: &str,
    hover: &str,
    add: impl FnOnce(&mut Ui) -> egui::Response,
) -> bool {
    let l = ui.label(label).on_hover_text(hover);
    let r = add(ui).labelled_by(l.id);
    ui.end_row();
    r.changed()
}

fn combo<T: Copy + PartialEq>(
    ui: &mut Ui,
    id: &str,
    value: &mut T,
    options: &[(T, &str)],
) -> egui::Response {
    let selected = options
        .iter()
        .find(|(v, _)| v == value)
        .map_or("?", |(_, name)| *name);
    let mut changed = false;
    let mut response = egui::ComboBox::from_id_salt(id)
        .selected_text(selected)
        .show_ui(ui, |ui| {
            for (v, name) in options {
                changed |= ui.selectable_value(value, *v, *name).changed();
            }
        })
        .response;
    if changed {
        response.mark_changed();
    }
    response
}

/// The model section of the settings. The vocabulary and context come from the task, or are the
/// model's own when it has none (`has_task`).
pub fn model_settings(ui: &mut Ui, m: &mut ModelConfig, has_task: bool) {
    let source = if has_task {
        "from the task"
    } else {
        "the model's own"
    };
    egui::Grid::new("model_grid").num_columns(2).show(ui, |ui| {
        row(ui, "Layers", "transformer blocks (n_layers)", |ui| {
            ui.add(DragValue::new(&mut m.n_layers).range(1..=12))
        });
        row(
            ui,
            "Embeddings",
            "learned W_E and W_U, or frozen one-hot identities (d_model = d_vocab)",
            |ui| {
                combo(
                    ui,
                    "embeddings",
                    &mut m.embeddings,
                    &[
                        (Embeddings::Learned, "learned"),
                        (Embeddings::OneHot, "one-hot"),
                    ],
                )
            },
        );
        row(ui, "d_model", "width of the residual stream", |ui| {
            ui.add_enabled(
                m.embeddings == Embeddings::Learned,
                DragValue::new(&mut m.d_model).range(1..=1024),
            )
            .on_disabled_hover_text("one-hot embeddings: d_model is the vocabulary size")
        });
        row(ui, "Heads", "attention heads per layer (n_heads)", |ui| {
            ui.add(DragValue::new(&mut m.n_heads).range(1..=16))
        });
        row(ui, "d_head", "dimension of each head", |ui| {
            ui.add(DragValue::new(&mut m.d_head).range(1..=128))
        });
        let mut mlp = m.has_mlp();
        if row(ui, "MLP", "an MLP after each attention layer", |ui| {
            ui.checkbox(&mut mlp, "")
        }) {
            m.attn_only = !mlp;
        }
        if m.has_mlp() {
            let mut d_mlp = m.d_mlp();
            if row(
                ui,
                "d_mlp",
                "hidden width of each MLP (TL: 4 × d_model)",
                |ui| ui.add(DragValue::new(&mut d_mlp).range(1..=4096)),
            ) {
                m.d_mlp = Some(d_mlp);
            }
            let mut act = m.act_fn.unwrap_or(ActFn::Relu);
            if row(ui, "Activation", "act_fn", |ui| {
                combo(
                    ui,
                    "act_fn",
                    &mut act,
                    &[
                        (ActFn::Relu, "relu"),
                        (ActFn::Gelu, "gelu"),
                        (ActFn::GeluNew, "gelu_new"),
                    ],
                )
            }) {
                m.act_fn = Some(act);
            }
        }
        row(
            ui,
            "Normalization",
            "LayerNorm before attention, MLP and unembedding (normalization_type)",
            |ui| {
                combo(
                    ui,
                    "normalization",
                    &mut m.normalization_type,
                    &[
                        (None, "none"),
                        (Some(Normalization::Ln), "LN"),
                        (Some(Normalization::LnPre), "LNPre"),
                    ],
                )
            },
        );
        row(
            ui,
            "Positions",
            "standard: added to the residual stream; shortformer: to queries and keys only; \
             none: no positional information",
            |ui| {
                combo(
                    ui,
                    "positions",
                    &mut m.positional_embedding_type,
                    &[
                        (Positions::Standard, "standard"),
                        (Positions::Shortformer, "shortformer"),
                        (Positions::None, "none"),
                    ],
                )
            },
        );
        let mut init = m.init_range();
        if row(
            ui,
            "Init range",
            "std of the normal init of every W_* (TL: 0.8/sqrt(d_model))",
            |ui| ui.add(DragValue::new(&mut init).speed(0.001).range(0.0..=1.0)),
        ) {
            m.init_range = Some(init);
        }
        ui.label("d_vocab");
        ui.label(format!("{} ({source})", m.d_vocab));
        ui.end_row();
        ui.label("n_ctx");
        ui.label(format!("{} ({source})", m.n_ctx));
        ui.end_row();
    });
    // What the choices imply, applied in the same frame as the change, so that the buttons
    // drawn next frame see a settled config.
    if m.embeddings == Embeddings::OneHot {
        m.d_model = m.d_vocab;
        m.d_vocab_out = None;
    }
    if m.has_mlp() && m.act_fn.is_none() {
        m.act_fn = Some(ActFn::Relu);
    }
}

/// Every parameter of the model in view, with its TL name and shape, and whether it trains.
pub fn model_summary(ui: &mut Ui, run: &RunConfig, on_cpu: bool) {
    let (cfg, train) = (&run.model, &run.train);
    ui.small(cfg.describe());
    let specs = cfg.params();
    let frozen = |name: &str| train.freeze.iter().any(|p| matches_pattern(p, name));
    egui::Grid::new("params").striped(true).show(ui, |ui| {
        ui.strong("parameter");
        ui.strong("shape");
        ui.strong("trains");
        ui.end_row();
        let fixed_row = |ui: &mut Ui, name: &str, shape: Vec<usize>, why: &str| {
            ui.monospace(name);
            ui.monospace(format!("{shape:?}"));
            ui.label("fixed").on_hover_text(why);
            ui.end_row();
        };
        let (v, m) = (cfg.d_vocab, cfg.d_model);
        if cfg.embeddings == Embeddings::OneHot {
            fixed_row(
                ui,
                "embed.W_E",
                vec![v, m],
                "the identity: tokens enter one-hot",
            );
        }
        if cfg.positional_embedding_type == Positions::None {
            fixed_row(
                ui,
                "pos_embed.W_pos",
                vec![cfg.n_ctx, m],
                "zero: no positions",
            );
        }
        for p in &specs {
            ui.monospace(&p.name);
            ui.monospace(format!("{:?}", p.shape));
            let b_k = p.name.ends_with("attn.b_K");
            if frozen(&p.name) {
                ui.label("frozen")
                    .on_hover_text("matched by a freeze pattern");
            } else if b_k {
                ui.label("yes*").on_hover_text(
                    "b_K cannot affect the pattern: softmax ignores a shift shared by every key, \
                     so its gradient is exactly 0",
                );
            } else {
                ui.label("yes");
            }
            ui.end_row();
        }
        if cfg.embeddings == Embeddings::OneHot {
            fixed_row(
                ui,
                "unembed.W_U",
                vec![m, v],
                "the identity: the residual stream is the logits",
            );
            fixed_row(ui, "unembed.b_U", vec![v], "zero");
        }
    });
    let trainable: usize = specs
        .iter()
        .filter(|p| !frozen(&p.name))
        .map(|p| p.numel())
        .sum();
    ui.label(format!(
        "{trainable} trainable parameters of {}",
        cfg.n_params()
    ));
    let plan = Plan::for_f32(&run.model, on_cpu);
    ui.label(format!("Computes by: {}", describe_run(run, &plan)))
        .on_hover_text("how toylens trains this model on the chosen device (its plan)");
}
