//! The inspector: type a sequence, see the logits, every head's attention and where each logit
//! comes from. Recomputed from the current weights whenever the text or the weights change.

use egui::{Color32, RichText, Ui};
use egui_plot::{Bar, BarChart, Plot};

use super::heatmap::{Heatmap, Scale, legend};
use crate::analysis::Inspection;
use crate::app::ToylensApp;

const PREDICTED: Color32 = Color32::from_rgb(66, 133, 244);
const EXPECTED: Color32 = Color32::from_rgb(52, 168, 83);
const OTHER: Color32 = Color32::from_gray(150);

pub fn show(app: &mut ToylensApp, ui: &mut Ui) {
    // The whole tab, for "Save PNG…".
    let panel = ui.max_rect();
    ui.horizontal(|ui| {
        let label = ui.label("Sequence");
        let edit = ui.add(
            egui::TextEdit::singleline(&mut app.settings.sequence)
                .hint_text("e.g. 2 5 3 0")
                .desired_width(180.0)
                .font(egui::TextStyle::Monospace),
        );
        edit.labelled_by(label.id);
        let task = app.session.config.task.clone();
        let mut rng = rand::rng();
        if ui.button("Random signal").clicked() {
            app.settings.sequence = join(&task.random_sequence(true, &mut rng));
        }
        if ui.button("Random noise").clicked() {
            app.settings.sequence = join(&task.random_sequence(false, &mut rng));
        }
        ui.weak(format!(
            "tokens 0..={}, up to {} of them, spaces or commas",
            app.session.config.model.d_vocab - 1,
            app.session.config.model.n_ctx
        ));
    });
    super::analysis_toolbar(app, ui, panel);
    app.refresh_inspector();
    // A still note, not a spinner: for small models the result lands a frame later, and an
    // animation would only flicker.
    if app.inspector.waiting {
        ui.weak(if app.analysis.mean_z.is_running() {
            "updating: computing mean z over the validation set for mean ablation…"
        } else {
            "updating…"
        });
    }
    if let Some(error) = &app.inspector.error {
        ui.colored_label(ui.visuals().error_fg_color, error.to_string());
        if app.inspector.last_valid.is_some() {
            ui.weak("showing the last valid sequence");
        }
    }
    let Some(result) = app.inspector.last_valid.clone() else {
        return;
    };
    egui::ScrollArea::vertical().show(ui, |ui| {
        summary(app, &result, ui);
        ui.columns(2, |cols| {
            cols[0].heading("Logits at the last position");
            logits_chart(&result, &mut cols[0]);
            cols[1].heading("Attention patterns");
            attention(app, &result, &mut cols[1]);
        });
        ui.separator();
        ui.columns(2, |cols| {
            cols[0].heading("Head-to-logit decomposition");
            decomposition(app, &result, &mut cols[0]);
            cols[1].heading("Per-head output (z·W_O, without b_O)");
            head_outputs(app, &result, &mut cols[1]);
        });
    });
}

fn join(tokens: &[u32]) -> String {
    tokens
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn summary(app: &ToylensApp, r: &Inspection, ui: &mut Ui) {
    let p = r.probs_last[r.predicted_token as usize];
    let live = if app.session.is_training() {
        " (live: weights of the latest epoch)"
    } else {
        ""
    };
    ui.horizontal(|ui| {
        ui.label(
            RichText::new(format!("Predicted {}", r.predicted_token))
                .heading()
                .color(PREDICTED),
        );
        ui.label(format!("p = {p:.3}"));
        match r.expected {
            Some(e) if e == r.predicted_token => {
                ui.label(
                    RichText::new(format!("expected {e}: correct"))
                        .color(EXPECTED)
                        .strong(),
                );
            }
            Some(e) => {
                ui.label(
                    RichText::new(format!("expected {e}: wrong"))
                        .color(ui.visuals().error_fg_color)
                        .strong(),
                );
            }
            None => {
                ui.weak("not a signal sequence: no right answer (noise labels are random)");
            }
        }
        ui.weak(live);
    });
}

fn logits_chart(r: &Inspection, ui: &mut Ui) {
    let bars: Vec<Bar> = r
        .logits_last
        .iter()
        .enumerate()
        .map(|(t, &l)| {
            let color = if t as u32 == r.predicted_token {
                PREDICTED
            } else if Some(t as u32) == r.expected {
                EXPECTED
            } else {
                OTHER
            };
            Bar::new(t as f64, l as f64)
                .width(0.7)
                .fill(color)
                .name(format!("token {t}: logit {l:.4}, p {:.4}", r.probs_last[t]))
        })
        .collect();
    Plot::new("logits")
        .height(200.0)
        .allow_scroll(false)
        .allow_zoom(false)
        .allow_drag(false)
        .x_axis_label("token")
        .show(ui, |p| {
            p.bar_chart(
                BarChart::new("logits", bars)
                    .element_formatter(Box::new(|bar, _| bar.name.clone())),
            );
        });
    ui.horizontal_wrapped(|ui| {
        ui.small("softmax:");
        for (t, prob) in r.probs_last.iter().enumerate() {
            let text = RichText::new(format!("{t}:{prob:.2}")).monospace().small();
            if t as u32 == r.predicted_token {
                ui.label(text.color(PREDICTED).strong());
            } else {
                ui.label(text);
            }
        }
    });
    ui.horizontal(|ui| {
        ui.colored_label(PREDICTED, "predicted");
        if r.expected.is_some() {
            ui.colored_label(EXPECTED, "expected answer");
        }
    });
}

fn attention(app: &mut ToylensApp, r: &Inspection, ui: &mut Ui) {
    let p = r.tokens.len();
    let labels: Vec<String> = r
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{i}:{t}"))
        .collect();
    ui.small(
        "rows: query position, columns: key position (position:token). Click a head to focus it.",
    );
    let masked = |q: usize, k: usize| k > q;
    let heads = r.pattern.len().max(1);
    let per_head = ((ui.available_width() - 8.0 * heads as f32) / heads as f32).max(120.0);
    ui.horizontal_wrapped(|ui| {
        for (h, pattern) in r.pattern.iter().enumerate() {
            let values: Vec<f32> = pattern.iter().flatten().copied().collect();
            ui.vertical(|ui| {
                let focused = app.inspector.focus_head == Some(h);
                let title = RichText::new(format!("head {h}")).strong();
                ui.label(if focused {
                    title.color(PREDICTED)
                } else {
                    title
                });
                let describe = |q: usize, k: usize, v: f32| {
                    format!(
                        "head {h}: query {q} (token {}) -> key {k} (token {}): {v:.5}",
                        r.tokens[q], r.tokens[k]
                    )
                };
                let mut map = Heatmap::new(p, p, &values, Scale::Sequential { max: 1.0 })
                    .labels(labels.clone(), labels.clone());
                map.cell = 40.0;
                map.max_width = Some(per_head);
                map.masked = Some(&masked);
                map.show_values = p <= 6;
                map.describe = Some(&describe);
                if focused {
                    map.highlight_row = Some(p - 1);
                }
                if map.show(ui).clicked() {
                    app.inspector.focus_head = if focused { None } else { Some(h) };
                }
            });
        }
    });
    legend(ui, Scale::Sequential { max: 1.0 });
}

fn decomposition(app: &mut ToylensApp, r: &Inspection, ui: &mut Ui) {
    let (Some(direct), Some(head_logits), Some(bias)) =
        (&r.direct_logits_last, &r.head_logits_last, &r.bias_logits)
    else {
        ui.weak(
            "The head-to-logit decomposition is exact only for one-layer models without \
             LayerNorm.",
        );
        return;
    };
    let vocab = r.logits_last.len();
    let heads = head_logits.len();
    let mut values = direct.clone();
    let mut row_labels = vec!["direct".to_string()];
    for (h, row) in head_logits.iter().enumerate() {
        values.extend(row);
        row_labels.push(format!("head {h}"));
    }
    let mlp_rows = usize::from(r.mlp_logits_last.is_some());
    if let Some(mlp) = &r.mlp_logits_last {
        values.extend(mlp);
        row_labels.push("MLP".into());
    }
    values.extend(bias);
    row_labels.push("biases".into());
    values.extend(&r.logits_last);
    row_labels.push("= logits".into());
    let rows = heads + mlp_rows + 3;
    let scale = Scale::Diverging {
        limit: app.scale_limit(
            "decomposition",
            Scale::diverging_limit(values.iter().copied()),
        ),
    };
    let describe = |row: usize, col: usize, v: f32| {
        let what = match row {
            0 => "direct path (embeddings · W_U)".to_string(),
            r if r <= heads => format!("head {}", r - 1),
            r if mlp_rows == 1 && r == heads + 1 => "MLP output · W_U".to_string(),
            r if r == heads + mlp_rows + 1 => "b_O · W_U + b_U (once, not per head)".to_string(),
            _ => "logit (the sum of the rows above)".to_string(),
        };
        format!("{what} -> token {col}: {v:+.5}")
    };
    let mut map = Heatmap::new(rows, vocab, &values, scale).row_labels(row_labels);
    map.cell = 36.0;
    map.max_width = Some(ui.available_width());
    map.show_values = vocab <= 16;
    map.describe = Some(&describe);
    map.highlight_row = app.inspector.focus_head.map(|h| h + 1);
    map.show(ui);
    legend(ui, scale);
    let error = r.decomposition_error().unwrap_or(f32::NAN);
    let ok = error <= 1e-4;
    ui.colored_label(
        if ok {
            EXPECTED
        } else {
            ui.visuals().error_fg_color
        },
        format!(
            "check: direct + Σ heads + biases − logits = {error:.1e} (max over tokens) {}",
            if ok { "(ok)" } else { "(mismatch)" }
        ),
    );
}

fn head_outputs(app: &mut ToylensApp, r: &Inspection, ui: &mut Ui) {
    let Some(head_out) = &r.head_out_last else {
        return;
    };
    let heads = head_out.len();
    let d_model = head_out.first().map_or(0, |h| h.len());
    let values: Vec<f32> = head_out.iter().flatten().copied().collect();
    let scale = Scale::Diverging {
        limit: app.scale_limit("head_out", Scale::diverging_limit(values.iter().copied())),
    };
    let describe =
        |h: usize, m: usize, v: f32| format!("head {h} writes {v:+.5} to residual dimension {m}");
    let mut map = Heatmap::new(heads, d_model, &values, scale)
        .row_labels((0..heads).map(|h| format!("head {h}")).collect());
    map.cell = 36.0;
    map.max_width = Some(ui.available_width());
    map.show_values = d_model <= 16;
    map.describe = Some(&describe);
    map.highlight_row = app.inspector.focus_head;
    map.show(ui);
    legend(ui, scale);
    ui.small("W_U is the identity, so residual dimension m is the logit of token m.");
}
