//! The Analyze tab's circuits of the weights in view: composition between layers, and each
//! head's full OV and QK circuits, copying score and singular directions.

use egui::{RichText, Ui};

use super::select_head;
use crate::app::views::HeadCircuits;
use crate::model::head_label;
use crate::ui::Frame;
use crate::ui::heatmap::{Heatmap, Scale, colour, legend};

pub(super) fn show(f: &mut Frame<'_>, ui: &mut Ui) {
    ui.heading("Circuits");
    let names = crate::ui::token_names(f.app);
    let circuits = match f.app.analysis.head_circuits.latest() {
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
        copying_score,
        ov_svd,
        composition,
        ..
    } = circuits;
    let layers = copying_score.len();
    let heads = copying_score.first().map_or(0, Vec::len);
    let (mut layer, mut head) = f.form.analyze.head;
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
            copying_score[layer][head]
        ))
        .on_hover_text(
            "the sum of the eigenvalues of the full OV circuit over the sum of their magnitudes: 1 copies the attended token \
             to the output, −1 suppresses it",
        );
    });
    ui.horizontal_wrapped(|ui| {
        ui.weak("copying scores:");
        for (l, scores) in copying_score.iter().enumerate() {
            for (h, &score) in scores.iter().enumerate() {
                let selected = (l, h) == (layer, head);
                let mut text = RichText::new(format!("{} {score:+.2}", head_label(l, h)));
                if !selected {
                    text = text.color(colour(Scale::Diverging { limit: 1.0 }, score));
                }
                if ui.selectable_label(selected, text).clicked() {
                    picked = Some((l, h));
                }
            }
        }
    });
    ui.columns(2, |cols| {
        for (col, (title, map, what, other)) in cols.iter_mut().zip([
            (
                "full OV circuit W_E W_V W_O W_U (rows source token, columns output logit)",
                &circuits.ov[layer][head],
                "source",
                "output",
            ),
            (
                "full QK circuit W_E W_Q W_K^T W_E^T (rows query token, columns key token)",
                &circuits.qk[layer][head],
                "query",
                "key",
            ),
        ]) {
            col.label(title);
            let scale = Scale::Diverging { limit: map.limit };
            let describe = |r: usize, c: usize, v: f32| format!("{what} {r}, {other} {c}: {v:.4}");
            let slot = egui::Id::unique("full circuit").with(what);
            Heatmap {
                max_width: Some(col.available_width()),
                // Drawn as a texture: any vocabulary fits the column.
                min_cell: 0.1,
                describe: Some(&describe),
                texture_key: Some((slot, circuits.id ^ (((layer * heads + head) as u64) << 1))),
                ..Heatmap::new(map.rows, map.cols, &map.values, scale)
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
        for d in &ov_svd[layer][head] {
            let tokens = |ts: &[(u32, f32)]| {
                ts.iter()
                    .map(|&(t, w)| format!("{} ({w:+.2})", names.label(t)))
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
        select_head(f, head);
    }
}
