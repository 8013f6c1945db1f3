//! The inspector: type a sequence, see the logits, every head's attention and where each logit
//! comes from. Recomputed from the current weights whenever the text or the weights change.

use egui::{Color32, RichText, Ui};
use egui_plot::{Bar, BarChart, Plot};

use super::heatmap::{Heatmap, Scale, legend};
use crate::analysis::Inspection;
use crate::app::{Action, Tab, ToylensApp};
use crate::task::{TaskConfig, format_sequence};
use crate::ui::Frame;

const PREDICTED: Color32 = Color32::from_rgb(66, 133, 244);
const EXPECTED: Color32 = Color32::from_rgb(52, 168, 83);
const OTHER: Color32 = Color32::from_gray(150);

pub fn show(f: &mut Frame<'_>, ui: &mut Ui) {
    // The whole tab, for "Save PNG…".
    let panel = ui.max_rect();
    sequence_row(f, ui);
    super::analysis_toolbar(f, ui, panel);
    // A still note, not a spinner: for small models the result lands a frame later, and an
    // animation would only flicker.
    if f.app.inspector.waiting {
        ui.weak(if f.app.analysis.mean_z.is_running() {
            "updating: computing mean z over the validation set for mean ablation…"
        } else {
            "updating…"
        });
    }
    if let Some(error) = &f.app.inspector.error {
        ui.colored_label(ui.visuals().error_fg_color, error.to_string());
        if f.app.inspector.last_valid.is_some() {
            ui.weak("showing the last valid sequence");
        }
    }
    let Some(result) = f.app.inspector.last_valid.clone() else {
        return;
    };
    egui::ScrollArea::vertical().show(ui, |ui| {
        summary(f.app, &result, ui);
        ui.columns(2, |cols| {
            let position = logits_position(f, &result, &mut cols[0]);
            logits_chart(&result, position, super::token_names(f.app), &mut cols[0]);
            cols[1].heading("Attention patterns");
            attention(f, &result, &mut cols[1]);
        });
        if let Some(latents) = f.app.inspector.latents.clone() {
            ui.separator();
            super::features::latents_at_positions(f, &result, &latents, ui);
        }
        ui.separator();
        if result.head_logits_last.is_some() {
            ui.columns(2, |cols| {
                cols[0].heading("Head-to-logit decomposition");
                decomposition(f, &result, &mut cols[0]);
                cols[1].heading("Per-head output (z·W_O, without b_O)");
                head_outputs(f, &result, &mut cols[1]);
            });
        } else {
            ui.heading("Head-to-logit decomposition");
            ui.weak(
                "This split of the logits is exact only for one-layer models without LayerNorm; \
                 this model has more layers or normalises before the unembedding.",
            );
            ui.horizontal(|ui| {
                ui.weak("The Analyze tab attributes the logits of any model, through its layers and LayerNorm:");
                if ui.button("Direct logit attribution").clicked() {
                    f.act(Action::ShowTab(Tab::Analyze));
                }
            });
        }
    });
}

/// The sequence field and the task's random-sequence buttons (shared with the Analyze tab:
/// both show the same sequence).
pub fn sequence_row(f: &mut Frame<'_>, ui: &mut Ui) {
    ui.horizontal_wrapped(|ui| {
        let label = ui.label("Sequence");
        let edit = ui.add(
            egui::TextEdit::singleline(&mut f.form.settings.sequence)
                .id_salt("sequence")
                .hint_text("e.g. 2 5 3 0")
                .desired_width(320.0)
                .font(egui::TextStyle::Monospace),
        );
        edit.labelled_by(label.id);
        let task = f.app.session.config.task.clone();
        let mut rng = rand::rng();
        let buttons: &[(&str, bool)] = match task {
            TaskConfig::SkipTrigram(_) => &[("Random signal", true), ("Random noise", false)],
            TaskConfig::Induction(_) => &[("Random repeated sequence", true)],
            TaskConfig::ModularAddition(_) => &[("Random pair", true)],
            TaskConfig::Sequences(_) => &[("Random sequence from the data", true)],
            TaskConfig::None(_) => &[("Random tokens", true)],
        };
        for &(label, signal) in buttons {
            if ui.button(label).clicked() {
                let mut tokens = task.random_sequence(signal, &mut rng);
                // A repeated sequence up to the copy's last token: the last position then
                // predicts a repeated token, which the task determines.
                if let TaskConfig::Induction(t) = &task {
                    tokens.truncate(t.repeat_start(&tokens) + t.half - 1);
                }
                f.form.settings.sequence = format_sequence(&tokens, task.token_names());
            }
        }
        ui.weak(format!(
            "{}; tokens 0..={}, up to {}, spaces or commas",
            task.sequence_hint(),
            f.app.session.config.model.d_vocab - 1,
            f.app.session.config.model.n_ctx
        ));
    });
}

fn summary(app: &ToylensApp, r: &Inspection, ui: &mut Ui) {
    let p = r.probs_last[r.predicted_token as usize];
    let live = if app.session.is_training() {
        " (live: weights of the latest epoch)"
    } else {
        ""
    };
    let name = |t: u32| super::token_label(super::token_names(app), t);
    ui.horizontal(|ui| {
        ui.label(
            RichText::new(format!("Predicted {}", name(r.predicted_token)))
                .heading()
                .color(PREDICTED),
        );
        ui.label(format!("p = {p:.3}"));
        match r.expected {
            Some(e) if e == r.predicted_token => {
                ui.label(
                    RichText::new(format!("expected {}: correct", name(e)))
                        .color(EXPECTED)
                        .strong(),
                );
            }
            Some(e) => {
                ui.label(
                    RichText::new(format!("expected {}: wrong", name(e)))
                        .color(ui.visuals().error_fg_color)
                        .strong(),
                );
            }
            None => {
                ui.weak(match app.session.config.task {
                    TaskConfig::SkipTrigram(_) => {
                        "not a signal sequence: no right answer (noise labels are random)"
                    }
                    TaskConfig::Induction(_) => {
                        "no right answer here: the next token is determined only inside the \
                         repeated half"
                    }
                    TaskConfig::ModularAddition(_) => "not of the form a b =: no right answer",
                    TaskConfig::Sequences(_) => {
                        "no sequence of the data begins so and scores the next position: \
                         nothing is expected"
                    }
                    TaskConfig::None(_) => "the model has no task: nothing is expected",
                });
            }
        }
        ui.weak(live);
    });
}

/// The heading of the logits panel with its position picker; returns the position shown.
fn logits_position(f: &mut Frame<'_>, r: &Inspection, ui: &mut Ui) -> usize {
    let title = RichText::new("Logits at position").heading();
    let names = super::token_names(f.app);
    super::position_picker(
        ui,
        title,
        (&r.tokens, names),
        &mut f.form.inspector_position,
    )
}

fn logits_chart(r: &Inspection, position: usize, names: crate::task::TokenNames, ui: &mut Ui) {
    let name = |t: usize| super::token_label(names, t as u32);
    let last = position + 1 == r.tokens.len();
    let logits = &r.logits[position];
    let probs = if last {
        r.probs_last.clone()
    } else {
        crate::model::softmax(logits)
    };
    let predicted = crate::model::argmax(logits) as u32;
    let expected = r.expected.filter(|_| last);
    let bars: Vec<Bar> = logits
        .iter()
        .enumerate()
        .map(|(t, &l)| {
            let color = if t as u32 == predicted {
                PREDICTED
            } else if Some(t as u32) == expected {
                EXPECTED
            } else {
                OTHER
            };
            Bar::new(t as f64, l as f64)
                .width(0.7)
                .fill(color)
                .name(format!(
                    "token {}: logit {l:.4}, p {:.4}",
                    name(t),
                    probs[t]
                ))
        })
        .collect();
    let plot = Plot::new("logits")
        .height(200.0)
        .allow_scroll(false)
        .allow_zoom(false)
        .allow_drag(false)
        .x_axis_label("token");
    let plot = match names.is_named() {
        // Ticks at whole tokens read as the tokens' names.
        true => plot
            .x_grid_spacer(egui_plot::uniform_grid_spacer(|_| [1.0, 5.0, 10.0]))
            .x_axis_formatter(move |mark, _| {
                let t = mark.value.round();
                if (mark.value - t).abs() < 1e-6 && t >= 0.0 {
                    super::token_label(names, t as u32)
                } else {
                    String::new()
                }
            }),
        false => plot,
    };
    plot.show(ui, |p| {
        p.bar_chart(
            BarChart::new("logits", bars).element_formatter(Box::new(|bar, _| bar.name.clone())),
        );
    });
    // Every probability is listed for small vocabularies; large ones list the top ten.
    let mut order: Vec<usize> = (0..probs.len()).collect();
    if probs.len() > 24 {
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        order.truncate(10);
    }
    ui.horizontal_wrapped(|ui| {
        ui.small(if probs.len() > 24 {
            "top 10:"
        } else {
            "softmax:"
        });
        for t in order {
            let text = RichText::new(format!("{}:{:.2}", name(t), probs[t]))
                .monospace()
                .small();
            if t as u32 == predicted {
                ui.label(text.color(PREDICTED).strong());
            } else {
                ui.label(text);
            }
        }
    });
    ui.horizontal(|ui| {
        ui.colored_label(PREDICTED, "predicted");
        if expected.is_some() {
            ui.colored_label(EXPECTED, "expected answer");
        }
    });
}

/// Labels "position:token" for a pattern's rows and columns, tokens by name where the task
/// names them.
fn position_labels(tokens: &[u32], names: crate::task::TokenNames) -> Vec<String> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, &t)| format!("{i}:{}", super::token_label(names, t)))
        .collect()
}

/// Every layer's heads as a grid of small patterns (a row per layer); a click enlarges one.
fn attention(f: &mut Frame<'_>, r: &Inspection, ui: &mut Ui) {
    let p = r.tokens.len();
    let layers = r.patterns.len();
    let heads = r.patterns.first().map_or(0, Vec::len).max(1);
    ui.small(if layers > 1 {
        "a row per layer, a column per head; rows of a map: query position, columns: key \
         position. Click a head to enlarge it."
    } else {
        "rows: query position, columns: key position (position:token). Click a head to focus \
         and enlarge it."
    });
    let names = super::token_names(f.app);
    let labels = position_labels(&r.tokens, names);
    let label_width = if layers > 1 { 56.0 } else { 0.0 };
    let thumb_width =
        ((ui.available_width() - label_width) / heads as f32 - 8.0).clamp(24.0, 240.0);
    let thumbnails = f.app.inspector.thumbnails.clone();
    let focus = f
        .app
        .inspector
        .focus_head
        .map(|h| (f.app.inspector.focus_layer, h));
    let mut clicked = None;
    egui::Grid::new("patterns").spacing([6.0, 6.0]).show(ui, |ui| {
        if layers > 1 {
            ui.label("");
        }
        for h in 0..heads {
            let title = RichText::new(format!("head {h}")).strong();
            ui.label(if focus.is_some_and(|(_, fh)| fh == h) { title.color(PREDICTED) } else { title });
        }
        ui.end_row();
        for (l, layer) in thumbnails.iter().enumerate() {
            if layers > 1 {
                let title = RichText::new(format!("layer {l}")).strong();
                ui.label(if focus.is_some_and(|(fl, _)| fl == l) {
                    title.color(PREDICTED)
                } else {
                    title
                });
            }
            for (h, thumb) in layer.iter().enumerate() {
                let b = thumb.block;
                let describe = |row: usize, col: usize, v: f32| {
                    if b == 1 {
                        format!(
                            "layer {l} head {h}: query {row} (token {}) -> key {col} (token {}): {v:.5}",
                            r.tokens[row], r.tokens[col]
                        )
                    } else {
                        format!(
                            "layer {l} head {h}: queries {}..={}, keys {}..={}: largest weight {v:.4}",
                            row * b,
                            ((row + 1) * b).min(p) - 1,
                            col * b,
                            ((col + 1) * b).min(p) - 1
                        )
                    }
                };
                let masked = |row: usize, col: usize| thumb.masked(row, col);
                let mut map = Heatmap::new(
                    thumb.side,
                    thumb.side,
                    &thumb.values,
                    Scale::Sequential { max: 1.0 },
                );
                // Labels only where they fit; the enlarged map always has them.
                if layers == 1 && p <= 12 {
                    map = map.labels(labels.clone(), labels.clone());
                } else {
                    map.axis_labels = layers == 1 && p <= 24;
                }
                map.cell = 40.0;
                map.max_width = Some(thumb_width);
                map.min_cell = 2.0;
                map.masked = Some(&masked);
                map.show_values = layers == 1 && p <= 6;
                map.describe = Some(&describe);
                if focus == Some((l, h)) {
                    map.highlight_row = Some(thumb.side - 1);
                }
                if map.show(ui).clicked() {
                    clicked = Some((l, h));
                }
            }
            ui.end_row();
        }
    });
    if let Some(head) = clicked {
        // A second click on the focused head lets it go.
        f.act(Action::FocusHead((focus != Some(head)).then_some(head)));
    }
    legend(ui, Scale::Sequential { max: 1.0 });
    let enlarge = layers > 1 || p > 12;
    if let Some((l, h)) = focus.filter(|_| enlarge)
        && let Some(pattern) = r.patterns.get(l).and_then(|layer| layer.get(h))
    {
        ui.separator();
        ui.horizontal(|ui| {
            ui.strong(format!("layer {l} head {h}"));
            if ui.small_button("close").clicked() {
                f.act(Action::FocusHead(None));
            }
        });
        let values: Vec<f32> = pattern.iter().flatten().copied().collect();
        let describe = |q: usize, k: usize, v: f32| {
            format!(
                "query {q} (token {}) -> key {k} (token {}): {v:.5}",
                super::token_label(names, r.tokens[q]),
                super::token_label(names, r.tokens[k])
            )
        };
        let masked = |q: usize, k: usize| k > q;
        let mut map = Heatmap::new(p, p, &values, Scale::Sequential { max: 1.0 })
            .labels(labels.clone(), labels);
        // About 420 px tall, as long as cells stay readable.
        map.cell = (420.0 / p as f32).clamp(10.0, 40.0);
        map.max_width = Some(ui.available_width());
        map.masked = Some(&masked);
        map.show_values = p <= 10;
        map.describe = Some(&describe);
        map.show(ui);
    }
}

fn decomposition(f: &mut Frame<'_>, r: &Inspection, ui: &mut Ui) {
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
        limit: f.scale_limit(
            "decomposition",
            Scale::diverging_limit(values.iter().copied()),
        ),
    };
    let names = super::token_names(f.app);
    let describe = |row: usize, col: usize, v: f32| {
        let what = match row {
            0 => "direct path (embeddings · W_U)".to_string(),
            r if r <= heads => format!("head {}", r - 1),
            r if mlp_rows == 1 && r == heads + 1 => "MLP output · W_U".to_string(),
            r if r == heads + mlp_rows + 1 => "b_O · W_U + b_U (once, not per head)".to_string(),
            _ => "logit (the sum of the rows above)".to_string(),
        };
        format!(
            "{what} -> token {}: {v:+.5}",
            super::token_label(names, col as u32)
        )
    };
    let mut map = Heatmap::new(rows, vocab, &values, scale).row_labels(row_labels);
    if names.is_named() {
        let columns = (0..vocab as u32)
            .map(|t| super::token_label(names, t))
            .collect();
        map.col_labels = Some(columns);
    }
    map.cell = 36.0;
    map.max_width = Some(ui.available_width());
    map.show_values = vocab <= 16;
    map.describe = Some(&describe);
    map.highlight_row = f.app.inspector.focus_in_layer_0().map(|h| h + 1);
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

fn head_outputs(f: &mut Frame<'_>, r: &Inspection, ui: &mut Ui) {
    let Some(head_out) = &r.head_out_last else {
        return;
    };
    let heads = head_out.len();
    let d_model = head_out.first().map_or(0, |h| h.len());
    let values: Vec<f32> = head_out.iter().flatten().copied().collect();
    let scale = Scale::Diverging {
        limit: f.scale_limit("head_out", Scale::diverging_limit(values.iter().copied())),
    };
    let describe =
        |h: usize, m: usize, v: f32| format!("head {h} writes {v:+.5} to residual dimension {m}");
    let mut map = Heatmap::new(heads, d_model, &values, scale)
        .row_labels((0..heads).map(|h| format!("head {h}")).collect());
    map.cell = 36.0;
    map.max_width = Some(ui.available_width());
    map.show_values = d_model <= 16;
    map.describe = Some(&describe);
    map.highlight_row = f.app.inspector.focus_in_layer_0();
    map.show(ui);
    legend(ui, scale);
    if f.app.session.config.model.embeddings == crate::model::Embeddings::OneHot {
        ui.small("W_U is the identity, so residual dimension m is the logit of token m.");
    }
}
