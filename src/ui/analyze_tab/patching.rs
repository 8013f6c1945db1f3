//! The Analyze tab's activation patching: a corrupted sequence, the metric's tokens, and the
//! heatmaps of what each patched activation restores.

use egui::Ui;

use super::select_head;
use crate::analysis::{Analysis, Patching};
use crate::model::{argmax, head_label};
use crate::task::format_sequence;
use crate::ui::Frame;
use crate::ui::heatmap::{Heatmap, Scale, legend};

pub(super) fn show(f: &mut Frame<'_>, a: &Analysis, ui: &mut Ui) {
    ui.heading("Activation patching");
    ui.horizontal_wrapped(|ui| {
        let label = ui.label("Corrupted sequence");
        ui.add(
            egui::TextEdit::singleline(&mut f.form.analyze.corrupt)
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
            let vocab = f.app.session.config.model.d_vocab;
            let names = f.app.session.config.task.token_names();
            f.form.analyze.corrupt =
                format_sequence(&corrupt_answer(&a.tokens, answer, vocab), names);
        }
        let vocab = f.app.session.config.model.d_vocab_out() as u32;
        let auto = a.patching.as_ref().map(|p| (p.answer, p.wrong));
        for (name, slot, fallback, hint) in [
            (
                "answer",
                &mut f.form.analyze.answer,
                auto.map(|x| x.0),
                "auto: the clean prediction",
            ),
            (
                "wrong",
                &mut f.form.analyze.wrong,
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
                crate::ui::token_label(f.app.session.config.task.token_names(), a.tokens[c])
            ),
        )
    };
    let (_, clicked) = Heatmap {
        show_values: true,
        max_width: Some(ui.available_width()),
        describe: Some(&describe),
        ..Heatmap::new(layers, a.tokens.len(), &values, scale).labels(
            layer_labels.clone(),
            a.tokens
                .iter()
                .map(|&t| crate::ui::token_label(f.app.session.config.task.token_names(), t))
                .collect(),
        )
    }
    .show_clickable(ui);
    if let Some((_, pos)) = clicked {
        f.form.analyze.position = Some(pos);
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
        select_head(f, head);
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
