//! The Analyze tab: the sequence in view taken apart the way TransformerLens users do it: direct
//! logit attribution, the logit lens, activation patching, head detectors, composition between
//! layers and every head's circuits. Everything follows the scrubber and the ablation.

mod circuits;
mod patching;

use egui::{Color32, RichText, Ui};

use super::heatmap::{Heatmap, Scale, legend};
use crate::analysis::{Analysis, HeadKind};
use crate::app::Action;
use crate::model::{argmax, head_label, softmax};
use crate::ui::Frame;

const PREDICTED: Color32 = Color32::from_rgb(66, 133, 244);
const CHOSEN: Color32 = Color32::from_rgb(52, 168, 83);
/// Tokens the logit lens shows: the final prediction's top ones.
const LENS_TOKENS: usize = 10;

pub fn show(f: &mut Frame<'_>, ui: &mut Ui) {
    let panel = ui.max_rect();
    super::inspect_tab::sequence_row(f, ui);
    super::analysis_toolbar(f, ui, panel);
    match f.app.analyze_key() {
        Err(e) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        Ok(key) if !f.app.analysis.analyze.is_current(&key) => {
            ui.weak(if f.app.analysis.mean_z.is_running() {
                "updating: computing mean z over the validation set for mean ablation…"
            } else {
                "updating…"
            });
        }
        Ok(_) => {}
    }
    let analysis = match f.app.analysis.analyze.latest() {
        Some(Ok(a)) => a.clone(),
        Some(Err(e)) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
            return;
        }
        None => return,
    };
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.columns(2, |cols| {
            attribution(f, &analysis, &mut cols[0]);
            logit_lens(&analysis, super::token_names(f.app), &mut cols[1]);
        });
        ui.separator();
        patching::show(f, &analysis, ui);
        ui.separator();
        head_detectors(f, &analysis, ui);
        ui.separator();
        circuits::show(f, ui);
    });
}

fn attribution(f: &mut Frame<'_>, a: &Analysis, ui: &mut Ui) {
    let at = &a.attribution;
    ui.heading("Direct logit attribution");
    // The analysis is at the position it was computed for; the picker asks for another.
    let mut slot = f.form.analyze.position.or(Some(at.position));
    let names = super::token_names(f.app);
    super::position_picker(ui, RichText::new("Position"), (&a.tokens, names), &mut slot);
    if slot != f.form.analyze.position.or(Some(at.position)) {
        f.form.analyze.position = slot;
    }
    let predicted = argmax(&at.logits);
    let vocab = at.logits.len();
    let mut chosen = f
        .form
        .analyze
        .token
        .filter(|&t| (t as usize) < vocab)
        .unwrap_or(predicted as u32);
    ui.horizontal(|ui| {
        ui.label(
            RichText::new(format!("predicted {}", names.label(predicted as u32))).color(PREDICTED),
        );
        let label = ui.label(RichText::new("compare with token").color(CHOSEN));
        if ui
            .add(egui::DragValue::new(&mut chosen).range(0..=vocab as u32 - 1))
            .labelled_by(label.id)
            .changed()
        {
            f.form.analyze.token = Some(chosen);
        }
        if names.is_named() {
            ui.label(RichText::new(names.label(chosen)).color(CHOSEN));
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
                RichText::new(format!("to logit {}", names.label(predicted as u32)))
                    .color(PREDICTED)
                    .strong(),
            );
            if compare {
                ui.label(
                    RichText::new(format!("to logit {}", names.label(chosen)))
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
        "rows + constant = {sum:.4}; the logit of {} is {:.4} (largest gap over all tokens {:.1e})",
        names.label(predicted as u32),
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

fn logit_lens(a: &Analysis, names: crate::task::TokenNames, ui: &mut Ui) {
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
                at.lens_labels[r],
                super::token_label(names, order[c] as u32),
                at.logit_lens[r][order[c]]
            )
        }),
        ..Heatmap::new(
            rows.len(),
            order.len(),
            &values,
            Scale::Sequential { max: 1.0 },
        )
        .labels(
            rows,
            order
                .iter()
                .map(|&t| super::token_label(names, t as u32))
                .collect(),
        )
    }
    .show(ui);
    legend(ui, Scale::Sequential { max: 1.0 });
    ui.weak(
        "Probability of the final top tokens if the model stopped before each layer: the \
         residual stream through ln_final (with its own statistics) and W_U.",
    );
}

/// Focuses a head in this tab and in the inspector.
fn select_head(f: &mut Frame<'_>, head: (usize, usize)) {
    f.act(Action::SelectHead(head));
}

fn head_detectors(f: &mut Frame<'_>, a: &Analysis, ui: &mut Ui) {
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
                select_head(f, head);
            }
        }
    });
    legend(ui, scale);
}
