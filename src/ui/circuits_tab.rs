//! The circuit form: each head's OV and QK circuits over the whole vocabulary, and the direct path.

use egui::{RichText, Ui};

use super::heatmap::{Heatmap, Scale, legend};
use crate::app::Action;
use crate::ui::Frame;

pub fn show(f: &mut Frame<'_>, ui: &mut Ui) {
    // The whole tab, for "Save PNG…".
    let panel = ui.max_rect();
    ui.horizontal(|ui| {
        ui.checkbox(&mut f.form.settings.circuits_no_bias, "TransformerLens convention (no biases)")
            .on_hover_text(
                "off: biases folded in, (W_V + b_V) W_O and (W_Q + b_Q)(W_K + b_K)^T, the exact output and \
                 score for one-hot tokens. on: TL's model.OV / model.QK, which leave the biases out",
            );
        ui.checkbox(&mut f.form.settings.circuits_mean_subtract, "subtract each row's mean");
        ui.separator();
        ui.label(format!("weights: {}", f.app.view_label()));
        if ui.button("Save PNG…").clicked() {
            f.act(Action::ExportPng(panel));
        }
    });
    ui.label(
        RichText::new(
            "OV: row = source token (the key a head attends to), column = output logit it pushes. \
             QK: row = query token (the destination, here the last position), column = key token (the source). \
             TransformerLens's orientation; the Framework paper writes both transposed.",
        )
        .weak(),
    );
    let key = f.app.circuits_key();
    let Some(view) = super::job_result(
        ui,
        &f.app.analysis.circuits,
        &key,
        "computing the circuits of these weights…",
    ) else {
        return;
    };
    let (view_ov_limit, view_qk_limit) = (view.ov_limit, view.qk_limit);
    let ov_limit = f.scale_limit("ov", view_ov_limit);
    let qk_limit = f.scale_limit("qk", view_qk_limit);
    let Some(Ok(view)) = f.app.analysis.circuits.latest() else {
        return;
    };
    let (vocab, view_id) = (view.vocab, view.id);
    let (ov_flat, qk_flat) = (&view.ov, &view.qk);
    let focus = f.app.inspector.focus_in_layer_0();
    let names = super::token_names(f.app);
    egui::ScrollArea::vertical().show(ui, |ui| {
        let width = (ui.available_width() / 2.0 - 20.0).max(200.0);
        for h in 0..ov_flat.len().min(qk_flat.len()) {
            let title = format!("head {h}");
            ui.label(if focus == Some(h) {
                RichText::new(title)
                    .strong()
                    .color(ui.visuals().selection.stroke.color)
            } else {
                RichText::new(title).strong()
            });
            ui.horizontal_top(|ui| {
                let name = |t: usize| super::token_label(names, t as u32);
                let ov_text = |src: usize, out: usize, v: f32| {
                    format!(
                        "head {h} attending to token {} writes {v:+.4} to the logit of {}",
                        name(src),
                        name(out)
                    )
                };
                let qk_text = |q: usize, k: usize, v: f32| {
                    format!(
                        "head {h}: query token {} scores key token {} at {v:+.4}",
                        name(q),
                        name(k)
                    )
                };
                type Describe<'a> = &'a dyn Fn(usize, usize, f32) -> String;
                let maps: [(&str, &[f32], f32, Describe); 2] = [
                    (
                        "OV: source token -> output logit",
                        &ov_flat[h],
                        ov_limit,
                        &ov_text,
                    ),
                    (
                        "QK: query token × key token, attention score",
                        &qk_flat[h],
                        qk_limit,
                        &qk_text,
                    ),
                ];
                for (title, values, limit, describe) in maps {
                    // A large vocabulary's map fits the width as one texture; its colours
                    // depend on the weights, the options and the (possibly held) scale.
                    let slot = egui::Id::unique("circuits map").with((h, title));
                    let key = view_id ^ (limit.to_bits() as u64).rotate_left(17);
                    ui.vertical(|ui| {
                        ui.small(title);
                        let scale = Scale::Diverging { limit };
                        let mut map = Heatmap::new(vocab, vocab, values, scale);
                        if names.is_named() && vocab <= 64 {
                            let labels: Vec<String> = (0..vocab).map(name).collect();
                            map = map.labels(labels.clone(), labels);
                        }
                        map.cell = 30.0;
                        map.min_cell = 0.1;
                        map.texture_key = Some((slot, key));
                        map.max_width = Some(width);
                        map.show_values = vocab <= 12;
                        map.describe = Some(describe);
                        map.show(ui);
                        legend(ui, scale);
                    });
                }
            });
            ui.add_space(8.0);
        }
        ui.label(RichText::new("Direct path W_E W_U").strong());
        ui.small("The identity: the last token adds 1 to its own logit, whatever the heads do.");
        let mut map = Heatmap::new(vocab, vocab, &view.direct, Scale::Diverging { limit: 1.0 });
        map.cell = 16.0;
        map.show(ui);
    });
}
