//! The Analyze tab: the sequence in view taken apart the way TransformerLens users do it: direct
//! logit attribution, the logit lens, activation patching, head detectors, composition between
//! layers and every head's circuits. Everything follows the scrubber and the ablation.

use egui::{Color32, RichText, Ui};

use super::heatmap::{Heatmap, Scale, legend};
use crate::analysis::{Analysis, HeadKind, Patching};
use crate::app::ToylensApp;
use crate::app::views::HeadCircuits;
use crate::model::{argmax, head_label, softmax};
use crate::task::format_sequence;

const PREDICTED: Color32 = Color32::from_rgb(66, 133, 244);
const CHOSEN: Color32 = Color32::from_rgb(52, 168, 83);
/// Tokens the logit lens shows: the final prediction's top ones.
const LENS_TOKENS: usize = 10;

pub fn show(app: &mut ToylensApp, ui: &mut Ui) {
    let panel = ui.max_rect();
    super::inspect_tab::sequence_row(app, ui);
    super::analysis_toolbar(app, ui, panel);
    app.refresh_analyze();
    let key_error = app.analyze_key().err();
    if let Some(e) = &key_error {
        ui.colored_label(ui.visuals().error_fg_color, e);
    }
    let current = app
        .analyze_key()
        .ok()
        .is_some_and(|k| app.analysis.analyze.is_current(&k));
    if !current && key_error.is_none() {
        ui.weak(if app.analysis.mean_z.is_running() {
            "updating: computing mean z over the validation set for mean ablation…"
        } else {
            "updating…"
        });
    }
    let analysis = match app.analysis.analyze.latest() {
        Some(Ok(a)) => a.clone(),
        Some(Err(e)) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
            return;
        }
        None => return,
    };
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.columns(2, |cols| {
            attribution(app, &analysis, &mut cols[0]);
            logit_lens(&analysis, &mut cols[1]);
        });
        ui.separator();
        patching(app, &analysis, ui);
        ui.separator();
        head_detectors(app, &analysis, ui);
        ui.separator();
        circuits(app, ui);
    });
}

fn attribution(app: &mut ToylensApp, a: &Analysis, ui: &mut Ui) {
    let at = &a.attribution;
    ui.heading("Direct logit attribution");
    // The analysis is at the position it was computed for; the picker asks for another.
    let mut slot = app.analyze.position.or(Some(at.position));
    super::position_picker(ui, RichText::new("Position"), &a.tokens, &mut slot);
    if slot != app.analyze.position.or(Some(at.position)) {
        app.analyze.position = slot;
    }
    let predicted = argmax(&at.logits);
    let vocab = at.logits.len();
    let mut chosen = app
        .analyze
        .token
        .filter(|&t| (t as usize) < vocab)
        .unwrap_or(predicted as u32);
    ui.horizontal(|ui| {
        ui.label(RichText::new(format!("predicted {predicted}")).color(PREDICTED));
        let label = ui.label(RichText::new("compare with token").color(CHOSEN));
        if ui
            .add(egui::DragValue::new(&mut chosen).range(0..=vocab as u32 - 1))
            .labelled_by(label.id)
            .changed()
        {
            app.analyze.token = Some(chosen);
        }
    });
    let rows: Vec<(&str, f32, f32)> = at
        .labels
        .iter()
        .zip(&at.dla)
        .map(|(l, r)| (l.as_str(), r[predicted], r[chosen as usize]))
        .chain(std::iter::once((
            "constant",
            at.dla_constant[predicted],
            at.dla_constant[chosen as usize],
        )))
        .collect();
    let limit = rows
        .iter()
        .fold(0.0f32, |m, r| m.max(r.1.abs()).max(r.2.abs()))
        .max(1e-6);
    let compare = chosen as usize != predicted;
    egui::Grid::new("dla")
        .striped(true)
        .spacing([12.0, 2.0])
        .show(ui, |ui| {
            ui.strong("component");
            ui.label(
                RichText::new(format!("to logit {predicted}"))
                    .color(PREDICTED)
                    .strong(),
            );
            if compare {
                ui.label(
                    RichText::new(format!("to logit {chosen}"))
                        .color(CHOSEN)
                        .strong(),
                );
                ui.strong("difference");
            }
            ui.end_row();
            for (label, p, c) in rows {
                ui.monospace(label);
                value_bar(ui, p, limit, PREDICTED);
                if compare {
                    value_bar(ui, c, limit, CHOSEN);
                    ui.monospace(format!("{:+.3}", p - c));
                }
                ui.end_row();
            }
        });
    // The rows plus the constant are the logits, exactly: show the check.
    let sum: f32 = at.dla.iter().map(|r| r[predicted]).sum::<f32>() + at.dla_constant[predicted];
    ui.weak(format!(
        "rows + constant = {sum:.4}; the logit of {predicted} is {:.4} (largest gap over all tokens {:.1e})",
        at.logits[predicted],
        at.sum_error()
    ));
    ui.weak(
        "Each component of the residual stream through the final LayerNorm (centred, divided by \
         this input's scale, times its weight) and W_U, as TransformerLens's apply_ln_to_stack.",
    );
}

/// A signed value with a bar from the centre of a fixed-width cell, scaled to `limit`.
fn value_bar(ui: &mut Ui, value: f32, limit: f32, color: Color32) {
    ui.horizontal(|ui| {
        let (rect, _) = ui.allocate_exact_size(egui::vec2(110.0, 14.0), egui::Sense::hover());
        let painter = ui.painter_at(rect);
        let mid = rect.center().x;
        let end = mid + (value / limit).clamp(-1.0, 1.0) * rect.width() / 2.0;
        painter.rect_filled(
            egui::Rect::from_x_y_ranges(mid.min(end)..=mid.max(end), rect.y_range()),
            0.0,
            color,
        );
        painter.vline(
            mid,
            rect.y_range(),
            ui.visuals().widgets.noninteractive.bg_stroke,
        );
        ui.monospace(format!("{value:>8.3}"));
    });
}

fn logit_lens(a: &Analysis, ui: &mut Ui) {
    let at = &a.attribution;
    ui.heading("Logit lens");
    let Some(last) = at.logit_lens.last() else {
        return;
    };
    let mut order: Vec<usize> = (0..last.len()).collect();
    order.sort_by(|&i, &j| last[j].total_cmp(&last[i]));
    order.truncate(LENS_TOKENS);
    let probs: Vec<Vec<f32>> = at.logit_lens.iter().map(|l| softmax(l)).collect();
    let values: Vec<f32> = probs
        .iter()
        .flat_map(|p| order.iter().map(move |&t| p[t]))
        .collect();
    let rows = at.lens_labels.clone();
    Heatmap {
        show_values: true,
        max_width: Some(ui.available_width()),
        describe: Some(&|r, c, v| {
            format!(
                "{}: token {} has probability {v:.4} (logit {:.3})",
                at.lens_labels[r], order[c], at.logit_lens[r][order[c]]
            )
        }),
        ..Heatmap::new(
            rows.len(),
            order.len(),
            &values,
            Scale::Sequential { max: 1.0 },
        )
        .labels(rows, order.iter().map(|t| t.to_string()).collect())
    }
    .show(ui);
    legend(ui, Scale::Sequential { max: 1.0 });
    ui.weak(
        "Probability of the final top tokens if the model stopped before each layer: the \
         residual stream through ln_final (with its own statistics) and W_U.",
    );
}

fn patching(app: &mut ToylensApp, a: &Analysis, ui: &mut Ui) {
    ui.heading("Activation patching");
    ui.horizontal_wrapped(|ui| {
        let label = ui.label("Corrupted sequence");
        ui.add(
            egui::TextEdit::singleline(&mut app.analyze.corrupt)
                // A stable id: the messages above it come and go as one types.
                .id_salt("corrupted sequence")
                .hint_text("same length; empty for none")
                .desired_width(200.0)
                .font(egui::TextStyle::Monospace),
        )
        .labelled_by(label.id);
        if ui
            .button("Corrupt the answer")
            .on_hover_text(
                "replace every earlier copy of the predicted token (or else the first token) \
                 with a token the sequence lacks",
            )
            .clicked()
        {
            let answer = argmax(&a.attribution.logits) as u32;
            let vocab = app.session.config.model.d_vocab;
            app.analyze.corrupt = format_sequence(&corrupt_answer(&a.tokens, answer, vocab));
        }
        let vocab = app.session.config.model.d_vocab_out() as u32;
        let auto = a.patching.as_ref().map(|p| (p.answer, p.wrong));
        for (name, slot, fallback, hint) in [
            (
                "answer",
                &mut app.analyze.answer,
                auto.map(|x| x.0),
                "auto: the clean prediction",
            ),
            (
                "wrong",
                &mut app.analyze.wrong,
                auto.map(|x| x.1),
                "auto: the corrupted run's top token other than the answer",
            ),
        ] {
            let label = ui.label(name);
            let mut value = slot.or(fallback).unwrap_or(0);
            if ui
                .add(egui::DragValue::new(&mut value).range(0..=vocab - 1))
                .labelled_by(label.id)
                .changed()
            {
                *slot = Some(value);
            }
            if slot.is_some() {
                if ui.small_button("auto").on_hover_text(hint).clicked() {
                    *slot = None;
                }
            } else {
                ui.weak("(auto)");
            }
        }
    });
    let Some(p) = &a.patching else {
        ui.weak(
            "Type a corrupted sequence of the same length to see which activations of the clean \
             run restore its answer.",
        );
        return;
    };
    ui.label(format!(
        "metric = logit({}) − logit({}) at the last position: clean {:.3}, corrupted {:.3}. \
         Cells: patched metric normalised, 0 = corrupted, 1 = clean.",
        p.answer, p.wrong, p.metric_clean, p.metric_corrupt
    ));
    let layers = p.resid_pre.len();
    let normalised = |rows: &[Vec<f32>]| -> Vec<f32> {
        rows.iter()
            .flatten()
            .map(|&v| p.normalised(v).unwrap_or(0.0))
            .collect()
    };
    if p.normalised(p.metric_clean).is_none() {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            "the clean and corrupted runs score the same: nothing to restore",
        );
    }
    let scale = Scale::Diverging { limit: 1.0 };
    let layer_labels: Vec<String> = (0..layers).map(|l| format!("layer {l}")).collect();
    ui.label("resid_pre, layer × position (click a cell to attribute at that position)");
    let values = normalised(&p.resid_pre);
    let describe = |r: usize, c: usize, _v: f32| {
        describe_patch(
            p,
            p.resid_pre[r][c],
            format!(
                "blocks.{r}.hook_resid_pre at position {c} (token {})",
                a.tokens[c]
            ),
        )
    };
    let (_, clicked) = Heatmap {
        show_values: true,
        max_width: Some(ui.available_width()),
        describe: Some(&describe),
        ..Heatmap::new(layers, a.tokens.len(), &values, scale).labels(
            layer_labels.clone(),
            a.tokens.iter().map(|t| t.to_string()).collect(),
        )
    }
    .show_clickable(ui);
    if let Some((_, pos)) = clicked {
        app.analyze.position = Some(pos);
    }
    ui.label(
        "head output (hook_z at every position), layer × head (click a head for its circuits)",
    );
    let values = normalised(&p.head_out);
    let heads = p.head_out.first().map_or(0, Vec::len);
    let describe = |r: usize, c: usize, _v: f32| {
        describe_patch(p, p.head_out[r][c], format!("{}'s z", head_label(r, c)))
    };
    let (_, clicked) = Heatmap {
        show_values: true,
        describe: Some(&describe),
        ..Heatmap::new(layers, heads, &values, scale)
            .labels(layer_labels, (0..heads).map(|h| format!("H{h}")).collect())
    }
    .show_clickable(ui);
    if let Some(head) = clicked {
        select_head(app, head);
    }
    legend(ui, scale);
}

fn describe_patch(p: &Patching, value: f32, what: String) -> String {
    match p.normalised(value) {
        Some(n) => format!(
            "clean {what} patched in: metric {value:.4} ({:.0} % of the way back)",
            n * 100.0
        ),
        None => format!("clean {what} patched in: metric {value:.4}"),
    }
}

/// Focuses a head in this tab and in the inspector.
fn select_head(app: &mut ToylensApp, (layer, head): (usize, usize)) {
    app.analyze.head = (layer, head);
    app.inspector.focus_layer = layer;
    app.inspector.focus_head = Some(head);
}

fn head_detectors(app: &mut ToylensApp, a: &Analysis, ui: &mut Ui) {
    ui.heading("Head detectors");
    ui.weak(
        "TransformerLens's detection patterns on this sequence and its \"mul\" score: the share \
         of each head's attention that falls on the pattern (1: all of it). Click a head for its \
         circuits.",
    );
    let layers = a.heads.previous_token.len();
    let heads = a.heads.previous_token.first().map_or(0, Vec::len);
    let scale = Scale::Sequential { max: 1.0 };
    ui.columns(3, |cols| {
        for (col, kind) in cols.iter_mut().zip(HeadKind::ALL) {
            col.label(RichText::new(kind.title()).strong());
            let values: Vec<f32> = a.heads.of(kind).iter().flatten().copied().collect();
            let describe = |r: usize, c: usize, v: f32| {
                format!("{} {} score {v:.4}", head_label(r, c), kind.title())
            };
            let (_, clicked) = Heatmap {
                show_values: true,
                max_width: Some(col.available_width()),
                describe: Some(&describe),
                ..Heatmap::new(layers, heads, &values, scale).labels(
                    (0..layers).map(|l| format!("layer {l}")).collect(),
                    (0..heads).map(|h| format!("H{h}")).collect(),
                )
            }
            .show_clickable(col);
            if let Some(head) = clicked {
                select_head(app, head);
            }
        }
    });
    legend(ui, scale);
}

fn circuits(app: &mut ToylensApp, ui: &mut Ui) {
    ui.heading("Circuits");
    let circuits = match app.analysis.head_circuits.latest() {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
            return;
        }
        None => {
            ui.weak("computing…");
            return;
        }
    };
    let HeadCircuits {
        full, composition, ..
    } = circuits;
    let layers = full.copying_score.len();
    let heads = full.copying_score.first().map_or(0, Vec::len);
    let (mut layer, mut head) = app.analyze.head;
    if layer >= layers || head >= heads {
        (layer, head) = (0, 0);
    }
    let mut picked = None;
    if let Some(c) = composition {
        ui.label(RichText::new("Composition scores").strong());
        ui.weak(
            "|W_OV(earlier) · W(later)| / (|W_OV| |W|) in Frobenius norms, as TransformerLens's \
             all_composition_scores: rows the earlier head, columns the later one.",
        );
        let earlier: Vec<(usize, usize)> = (0..layers - 1)
            .flat_map(|l| (0..heads).map(move |h| (l, h)))
            .collect();
        let later: Vec<(usize, usize)> = (1..layers)
            .flat_map(|l| (0..heads).map(move |h| (l, h)))
            .collect();
        let mut limit = 0.0f32;
        let grids: Vec<(&str, Vec<f32>)> = [("Q", &c.Q), ("K", &c.K), ("V", &c.V)]
            .into_iter()
            .map(|(mode, s)| {
                let values: Vec<f32> = earlier
                    .iter()
                    .flat_map(|&(l1, h1)| later.iter().map(move |&(l2, h2)| s[l1][h1][l2][h2]))
                    .collect();
                limit = values.iter().fold(limit, |m, v| m.max(v.abs()));
                (mode, values)
            })
            .collect();
        let scale = Scale::Sequential {
            max: limit.max(1e-6),
        };
        let name = |&(l, h): &(usize, usize)| head_label(l, h);
        ui.columns(3, |cols| {
            for (col, (mode, values)) in cols.iter_mut().zip(&grids) {
                col.label(RichText::new(format!("{mode}-composition")).strong());
                let masked = |r: usize, c: usize| later[c].0 <= earlier[r].0;
                let describe = |r: usize, c: usize, v: f32| {
                    format!(
                        "{} into {} {mode}-composition {v:.4}",
                        name(&earlier[r]),
                        name(&later[c])
                    )
                };
                let (_, clicked) = Heatmap {
                    show_values: true,
                    cell: 36.0,
                    max_width: Some(col.available_width()),
                    masked: Some(&masked),
                    describe: Some(&describe),
                    ..Heatmap::new(earlier.len(), later.len(), values, scale).labels(
                        earlier.iter().map(name).collect(),
                        later.iter().map(name).collect(),
                    )
                }
                .show_clickable(col);
                if let Some((_, c)) = clicked {
                    picked = Some(later[c]);
                }
            }
        });
        legend(ui, scale);
    }
    ui.horizontal(|ui| {
        let label = ui.label("Head");
        egui::ComboBox::from_id_salt("analyze_head")
            .selected_text(head_label(layer, head))
            .show_ui(ui, |ui| {
                for l in 0..layers {
                    for h in 0..heads {
                        if ui
                            .selectable_label((l, h) == (layer, head), head_label(l, h))
                            .clicked()
                        {
                            picked = Some((l, h));
                        }
                    }
                }
            })
            .response
            .labelled_by(label.id);
        ui.label(format!(
            "copying score {:.3}",
            full.copying_score[layer][head]
        ))
        .on_hover_text(
            "the sum of the eigenvalues of the full OV circuit over the sum of their magnitudes: 1 copies the attended token \
             to the output, −1 suppresses it",
        );
    });
    ui.horizontal_wrapped(|ui| {
        ui.weak("copying scores:");
        for l in 0..layers {
            for h in 0..heads {
                let score = full.copying_score[l][h];
                let selected = (l, h) == (layer, head);
                let mut text = RichText::new(format!("{} {score:+.2}", head_label(l, h)));
                if !selected {
                    text = text.color(Scale::Diverging { limit: 1.0 }.color(score));
                }
                if ui.selectable_label(selected, text).clicked() {
                    picked = Some((l, h));
                }
            }
        }
    });
    let vocab_out = full.ov_full[layer][head].first().map_or(0, Vec::len);
    let vocab = full.ov_full[layer][head].len();
    ui.columns(2, |cols| {
        for (col, (title, (values, limit), what, other, size)) in cols.iter_mut().zip([
            (
                "full OV circuit W_E W_V W_O W_U (rows source token, columns output logit)",
                &circuits.ov_flat[layer][head],
                "source",
                "output",
                vocab_out,
            ),
            (
                "full QK circuit W_E W_Q W_K^T W_E^T (rows query token, columns key token)",
                &circuits.qk_flat[layer][head],
                "query",
                "key",
                vocab,
            ),
        ]) {
            col.label(title);
            let scale = Scale::Diverging { limit: *limit };
            let describe = |r: usize, c: usize, v: f32| format!("{what} {r}, {other} {c}: {v:.4}");
            let slot = egui::Id::unique("full circuit").with(what);
            Heatmap {
                max_width: Some(col.available_width()),
                // Drawn as a texture: any vocabulary fits the column.
                min_cell: 0.1,
                describe: Some(&describe),
                texture_key: Some((slot, circuits.id ^ (((layer * heads + head) as u64) << 1))),
                ..Heatmap::new(vocab, size, values, scale)
            }
            .show(col);
            legend(col, scale);
        }
    });
    ui.label(RichText::new("Largest singular directions of the full OV circuit").strong());
    egui::Grid::new("svd").striped(true).show(ui, |ui| {
        ui.strong("σ");
        ui.strong("reads source tokens");
        ui.strong("writes output tokens");
        ui.end_row();
        for d in &full.ov_svd[layer][head] {
            let tokens = |ts: &[(u32, f32)]| {
                ts.iter()
                    .map(|(t, w)| format!("{t} ({w:+.2})"))
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            ui.monospace(format!("{:.3}", d.value));
            ui.monospace(tokens(&d.sources));
            ui.monospace(tokens(&d.outputs));
            ui.end_row();
        }
    });
    if let Some(head) = picked {
        select_head(app, head);
    }
}

/// The sequence with the answer taken away: every earlier copy of `answer` (what an induction
/// head would copy) replaced by a token the sequence lacks; without one, the first token.
fn corrupt_answer(tokens: &[u32], answer: u32, vocab: usize) -> Vec<u32> {
    let last = tokens.len() - 1;
    let mut positions: Vec<usize> = (0..last).filter(|&i| tokens[i] == answer).collect();
    if positions.is_empty() {
        positions.push(0);
    }
    let fresh = (0..vocab as u32)
        .map(|k| (answer + 1 + k) % vocab as u32)
        .find(|t| !tokens.contains(t))
        .unwrap_or((tokens[positions[0]] + 1) % vocab as u32);
    let mut out = tokens.to_vec();
    for i in positions {
        out[i] = fresh;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::corrupt_answer;

    #[test]
    fn corruption_takes_the_answer_away() {
        // Induction: 7 follows the earlier 3, so every earlier 7 goes.
        let clean = [3, 7, 2, 9, 7, 3];
        let c = corrupt_answer(&clean, 7, 20);
        assert_eq!(c, [3, 8, 2, 9, 8, 3]);
        // An answer not in the sequence: the first token changes, to one the sequence lacks.
        assert_eq!(corrupt_answer(&[1, 2, 3], 4, 5), [0, 2, 3]);
        assert_ne!(corrupt_answer(&[4], 4, 5), [4]);
        // A sequence holding every token keeps its length and changes.
        assert_ne!(corrupt_answer(&[0, 1], 1, 2), [0, 1]);
    }
}
