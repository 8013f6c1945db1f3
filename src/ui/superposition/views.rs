//! The paper's pictures of the model in view (the scrubber's snapshot): per instance WᵀW and b,
//! the feature norms coloured by superposition, and for two hidden dimensions every instance's
//! feature directions as arrows; over all instances the "sticky" plot of dimensions per feature
//! and the loss; for the phase-diagram run its map (`phase_map.rs`).

use egui::{Color32, Rect, RichText, Sense, Stroke, Ui, vec2};
use egui_plot::{Bar, BarChart, HLine, Line, Plot, PlotPoint, PlotPoints, Points, Text, VLine};

use super::Frame;
use crate::app::Action;
use crate::app::superposition::{TmsAction, TmsWorkspace};
use crate::superposition::{FRACTIONS, gram};
use crate::ui::heatmap::{Heatmap, Scale};

/// WᵀW is drawn up to this many features (n² cells)…
const MAX_MATRIX_FEATURES: usize = 512;
/// …and this many multiply-adds (n²·m, each frame).
const MAX_MATRIX_WORK: usize = 4_000_000;
/// Feature norms are bars up to this many features, a line of block maxima past it.
const MAX_BARS: usize = 1024;

pub(super) fn show(f: &mut Frame<'_>, tms: &TmsWorkspace, ui: &mut Ui) {
    let panel = ui.max_rect();
    header(f, tms, ui, panel);
    ui.separator();
    egui::ScrollArea::vertical().show(ui, |ui| {
        let width = ui.available_width();
        let half = (width / 2.0 - 12.0).max(240.0);
        if tms.run.is_phase_grid() {
            ui.horizontal_top(|ui| {
                ui.vertical(|ui| super::phase_map::show(f, tms, ui, half));
                ui.vertical(|ui| loss_plot(tms, ui, half, 300.0));
            });
            ui.separator();
        }
        if tms.run.model.n_hidden == 2 && !tms.run.is_phase_grid() {
            arrows(f, tms, ui, width);
            ui.separator();
        }
        if !tms.run.is_phase_grid() {
            ui.horizontal_top(|ui| {
                ui.vertical(|ui| sticky(tms, ui, half));
                ui.vertical(|ui| loss_plot(tms, ui, half, 300.0));
            });
            ui.separator();
        }
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| matrix(tms, ui, half));
            ui.vertical(|ui| norms(tms, ui, half));
        });
    });
}

/// A colour per instance, around the hue circle.
pub fn instance_colour(i: usize, count: usize) -> Color32 {
    let hue = 0.85 * i as f32 / count.max(1) as f32;
    egui::ecolor::Hsva::new(hue, 0.75, 0.85, 1.0).into()
}

/// Superposition Σ_{j≠i} (Ŵ_i·W_j)² as a colour: dark blue at 0 (a dedicated dimension) to
/// yellow at 1 and above (as much interference as a whole feature).
fn superposition_colour(s: f64) -> Color32 {
    if s.is_nan() {
        return Color32::from_gray(140);
    }
    let t = s.clamp(0.0, 1.0) as f32;
    let (a, b) = ([30.0, 40.0, 110.0], [250.0, 205.0, 60.0]);
    let c = |k: usize| (a[k] + (b[k] - a[k]) * t).round() as u8;
    Color32::from_rgb(c(0), c(1), c(2))
}

fn header(f: &mut Frame<'_>, tms: &TmsWorkspace, ui: &mut Ui, panel: Rect) {
    let model = &tms.run.model;
    let probabilities = tms.run.probabilities();
    let shown = tms.shown();
    ui.horizontal_wrapped(|ui| {
        let name = ui.label(RichText::new("Instance").strong());
        let i = tms.instance.min(model.n_instances - 1);
        let label = |k: usize| format!("{k}: p = {}", short(probabilities[k]));
        egui::ComboBox::from_id_salt("tms_instance")
            .selected_text(label(i))
            .height(400.0)
            .show_ui(ui, |ui| {
                for k in 0..model.n_instances {
                    if ui.selectable_label(k == i, label(k)).clicked() {
                        f.act(Action::Tms(TmsAction::Select(k)));
                    }
                }
            })
            .response
            .labelled_by(name.id);
        let g = &shown.geometry[i];
        ui.label(format!(
            "{} features into {} dimensions · step {} · D* = {:.3}",
            model.n_features, model.n_hidden, shown.step, g.dims_per_feature
        ));
        if let Some(m) = tms.history.iter().rev().find(|m| m.step <= shown.step) {
            ui.label(format!("· loss {:.3e}", m.loss_per_instance[i]));
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui
                .button("Export PNG…")
                .on_hover_text("this panel as an image")
                .clicked()
            {
                f.act(Action::ExportPng(panel));
            }
        });
    });
}

/// A probability in few characters: 1, 0.3, 0.003, 2e-4.
pub(super) fn short(p: f64) -> String {
    if p >= 1e-3 {
        let text = format!("{p:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{p:.0e}")
    }
}

/// Every instance's features as arrows in the plane of its two hidden dimensions (the paper's
/// first figure), coloured by feature; click one to select it.
fn arrows(f: &mut Frame<'_>, tms: &TmsWorkspace, ui: &mut Ui, width: f32) {
    let model = &tms.run.model;
    let (n, m) = (model.n_features, model.n_hidden);
    let probabilities = tms.run.probabilities();
    let w = &tms.shown().weights.w;
    ui.label(RichText::new("Feature directions W_i in the hidden plane").strong())
        .on_hover_text(
            "each arrow is one feature's column of W (its direction in the 2 hidden \
             dimensions); dense features get dedicated orthogonal directions, sparse ones \
             crowd into antipodal pairs and pentagons",
        );
    let size = (width / model.n_instances.min(8) as f32 - 8.0).clamp(90.0, 160.0);
    ui.horizontal_wrapped(|ui| {
        for i in 0..model.n_instances {
            let (rect, response) = ui.allocate_exact_size(vec2(size, size + 16.0), Sense::click());
            if response.clicked() {
                f.act(Action::Tms(TmsAction::Select(i)));
            }
            let painter = ui.painter_at(rect);
            let selected = i == tms.instance;
            let visuals = ui.visuals();
            painter.rect_stroke(
                rect.shrink(1.0),
                4.0,
                Stroke::new(
                    if selected { 2.0 } else { 1.0 },
                    if selected {
                        visuals.selection.stroke.color
                    } else {
                        visuals.weak_text_color().gamma_multiply(0.4)
                    },
                ),
                egui::StrokeKind::Inside,
            );
            painter.text(
                rect.center_top() + vec2(0.0, 3.0),
                egui::Align2::CENTER_TOP,
                format!("p = {}", short(probabilities[i])),
                egui::FontId::proportional(11.0),
                visuals.text_color(),
            );
            let centre = rect.center() + vec2(0.0, 8.0);
            let rows = &w[i * n * m..(i + 1) * n * m];
            let longest = rows
                .chunks_exact(2)
                .map(|r| r[0].hypot(r[1]))
                .fold(1.0f32, f32::max);
            let scale = size * 0.4 / longest;
            painter.circle_stroke(
                centre,
                scale,
                Stroke::new(1.0, visuals.weak_text_color().gamma_multiply(0.3)),
            );
            for (k, r) in rows.chunks_exact(2).enumerate() {
                let tip = centre + vec2(r[0], -r[1]) * scale;
                let colour = instance_colour(k, n);
                painter.line_segment([centre, tip], Stroke::new(2.0, colour));
                painter.circle_filled(tip, 2.5, colour);
            }
        }
    });
}

/// WᵀW of the selected instance (features × features; in toylens's layout W is `[n, m]`, so the
/// matrix is W Wᵀ) and b below it.
fn matrix(tms: &TmsWorkspace, ui: &mut Ui, width: f32) {
    let model = &tms.run.model;
    let (n, m) = (model.n_features, model.n_hidden);
    let i = tms.instance.min(model.n_instances - 1);
    let shown = tms.shown();
    ui.label(RichText::new("W^T W and b").strong())
        .on_hover_text(
            "W^T W: how much each feature (row) reads each other feature (column) back; the \
         diagonal is |W_i|², off-diagonal cells are interference. Red negative, blue positive",
        );
    if n > MAX_MATRIX_FEATURES || n * n * m > MAX_MATRIX_WORK {
        ui.weak(format!(
            "{n} features × {m} dimensions: W^T W is drawn up to {MAX_MATRIX_FEATURES} features \
             and n²·m of {MAX_MATRIX_WORK}"
        ));
        return;
    }
    let w = &shown.weights.w[i * n * m..(i + 1) * n * m];
    let wtw = gram(w, n, m);
    let limit = Scale::diverging_limit(wtw.iter().copied());
    let key = crate::app::views::hash_of(&(shown.step, i, n, "wtw"));
    let side = width.min(420.0);
    let mut map = Heatmap::new(n, n, &wtw, Scale::Diverging { limit });
    map.max_width = Some(side);
    map.min_cell = 0.5;
    map.cell = (side / n as f32).min(40.0);
    map.axis_labels = n <= 40;
    map.texture_key = Some((egui::Id::unique("tms_wtw"), key));
    map.show_values = n <= 6;
    let describe = |r: usize, c: usize, v: f32| format!("W_{r} · W_{c} = {v:.4}");
    map.describe = Some(&describe);
    map.show(ui);
    ui.add_space(4.0);
    let b = &shown.weights.b[i * n..(i + 1) * n];
    let limit = Scale::diverging_limit(b.iter().copied());
    let mut strip = Heatmap::new(1, n, b, Scale::Diverging { limit });
    strip.max_width = Some(side);
    strip.min_cell = 0.5;
    strip.cell = (side / n as f32).min(40.0);
    strip.axis_labels = false;
    strip.show_values = n <= 6;
    strip.texture_key = Some((
        egui::Id::unique("tms_b"),
        crate::app::views::hash_of(&(shown.step, i, n, "b")),
    ));
    let describe = |_: usize, c: usize, v: f32| format!("b_{c} = {v:.4}");
    strip.describe = Some(&describe);
    strip.show(ui);
    ui.weak(format!("b (from {:.3} to {:.3})", min(b), max(b)));
}

fn min(v: &[f32]) -> f32 {
    v.iter().copied().fold(f32::INFINITY, f32::min)
}
fn max(v: &[f32]) -> f32 {
    v.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// The paper's bar chart: each feature's norm ‖W_i‖ (1: fully represented), coloured by how
/// much it shares its direction with the others.
fn norms(tms: &TmsWorkspace, ui: &mut Ui, width: f32) {
    let i = tms.instance.min(tms.run.model.n_instances - 1);
    let g = &tms.shown().geometry[i];
    ui.label(RichText::new("Feature norms |W_i|, coloured by superposition").strong())
        .on_hover_text(
            "bar height: |W_i| (about 1 for a represented feature, 0 for a dropped one); \
             colour: the sum over the other features j of (Ŵ_i·W_j)², dark blue when the feature has its own dimension, \
             yellow when it shares one",
        );
    if g.superposition.is_empty() {
        ui.weak("too many features to compare every pair: bars in grey");
    }
    let plot = Plot::new("tms_norms")
        .width(width)
        .height(240.0)
        .allow_scroll(false)
        .x_axis_label("feature")
        .y_axis_label("|W_i|")
        .include_y(0.0)
        .include_y(1.1);
    if g.norms.len() > MAX_BARS {
        // A bar per feature would be more bars than pixels: the largest norm of each block of
        // features, as a line.
        let per = g.norms.len().div_ceil(MAX_BARS);
        let points: Vec<[f64; 2]> = g
            .norms
            .chunks(per)
            .enumerate()
            .map(|(k, block)| [(k * per) as f64, block.iter().copied().fold(0.0, f64::max)])
            .collect();
        ui.weak(format!(
            "{} features: the largest |W_i| of each {per}",
            g.norms.len()
        ));
        plot.show(ui, |p| p.line(Line::new("|W_i|", PlotPoints::from(points))));
    } else {
        let bars: Vec<Bar> = g
            .norms
            .iter()
            .zip(g.superposition.iter().chain(std::iter::repeat(&f64::NAN)))
            .enumerate()
            .map(|(k, (&norm, &s))| {
                Bar::new(k as f64, norm)
                    .width(0.85)
                    .fill(superposition_colour(s))
                    .name(format!(
                        "feature {k}\n|W_i| {norm:.3}\nsuperposition {s:.3}"
                    ))
            })
            .collect();
        plot.show(ui, |p| {
            p.bar_chart(
                BarChart::new("|W_i|", bars).element_formatter(Box::new(|bar, _| bar.name.clone())),
            )
        });
    }
    ui.horizontal(|ui| {
        for (s, label) in [(0.0, "dedicated (0)"), (0.5, "0.5"), (1.0, "shares (≥ 1)")] {
            let (rect, _) = ui.allocate_exact_size(vec2(12.0, 12.0), Sense::hover());
            ui.painter().rect_filled(rect, 2.0, superposition_colour(s));
            ui.weak(label);
        }
    });
}

/// Dimensions per feature D* = m/‖W‖_F² of every instance against 1/p, over each feature's own
/// dimensionality D_i: the paper's "sticky" plot, with lines at the fractions where it sticks.
fn sticky(tms: &TmsWorkspace, ui: &mut Ui, width: f32) {
    let probabilities = tms.run.probabilities();
    let shown = tms.shown();
    ui.label(RichText::new("Dimensions per feature against 1/p").strong())
        .on_hover_text(
            "line: each instance's D* = m / |W|_F²; dots: each feature's dimensionality D_i = \
             |W_i|² / Σ_j (Ŵ_i·W_j)². They stick at 1, 3/4, 2/3, 1/2, 2/5, 3/8 (the dashed lines): \
             features arranged as digons, triangles, tetrahedra, pentagons…",
        );
    let x = |k: usize| (1.0 / probabilities[k]).log10();
    let dstar: Vec<[f64; 2]> = shown
        .geometry
        .iter()
        .enumerate()
        .map(|(k, g)| [x(k), g.dims_per_feature.min(2.0)])
        .collect();
    let features: Vec<[f64; 2]> = shown
        .geometry
        .iter()
        .enumerate()
        .flat_map(|(k, g)| {
            g.dimensionality
                .iter()
                .zip(&g.norms)
                .filter(|(_, n)| **n > 0.1)
                .map(move |(&d, _)| [x(k), d])
        })
        .collect();
    let text = ui.visuals().text_color();
    let x_right = (0..probabilities.len()).map(x).fold(0.0, f64::max) + 0.05;
    Plot::new("tms_sticky")
        .width(width)
        .height(300.0)
        .allow_scroll(false)
        .include_y(0.0)
        .include_y(1.05)
        .x_axis_label("1/p (log)")
        .y_axis_label("dimensions per feature")
        .x_axis_formatter(|mark, _| short_power(mark.value))
        .show(ui, |p| {
            for (name, y) in FRACTIONS {
                p.hline(
                    HLine::new(name, y)
                        .color(Color32::from_gray(150))
                        .style(egui_plot::LineStyle::dashed_loose()),
                );
                p.text(
                    Text::new(name, PlotPoint::new(x_right, y), name)
                        .anchor(egui::Align2::RIGHT_BOTTOM)
                        .color(Color32::from_gray(170)),
                );
            }
            p.points(
                Points::new("D_i of each feature", PlotPoints::from(features))
                    .radius(2.0)
                    .color(Color32::from_rgba_unmultiplied(100, 150, 230, 170)),
            );
            p.line(
                Line::new("D* per instance", PlotPoints::from(dstar.clone()))
                    .color(text)
                    .width(1.5),
            );
            p.points(
                Points::new("D* per instance", PlotPoints::from(dstar))
                    .radius(3.5)
                    .color(text),
            );
        });
}

/// 10^x as a short label: 1, 10, 100, or 3.2 between.
fn short_power(x: f64) -> String {
    let v = 10f64.powf(x);
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// Each instance's loss over training (log scale), the selected one thicker, and the step in
/// view.
fn loss_plot(tms: &TmsWorkspace, ui: &mut Ui, width: f32, height: f32) {
    let count = tms.run.model.n_instances;
    ui.label(RichText::new("Loss per instance").strong());
    if tms.history.is_empty() {
        ui.weak("no training yet: press Train");
        return;
    }
    let step = tms.shown().step as f64;
    Plot::new("tms_loss")
        .width(width.min(ui.available_width()))
        .height(height)
        .allow_scroll(false)
        .x_axis_label("step")
        .y_axis_label("loss (log)")
        .y_axis_formatter(|mark, _| format!("{:.0e}", 10f64.powf(mark.value)))
        .show(ui, |p| {
            // Many instances (the phase grid's 256) would make one legend entry each: a sample
            // of lines is enough to read, the selected one always among them.
            let every = count.div_ceil(24);
            for i in (0..count).filter(|i| i % every == 0 || *i == tms.instance) {
                // At most a few thousand points a line, however long the run.
                let stride = tms.history.len().div_ceil(2000).max(1);
                let points: Vec<[f64; 2]> = tms
                    .history
                    .iter()
                    .step_by(stride)
                    .filter(|m| m.loss_per_instance[i] > 0.0)
                    .map(|m| [m.step as f64, m.loss_per_instance[i].log10()])
                    .collect();
                p.line(
                    Line::new(format!("instance {i}"), PlotPoints::from(points))
                        .color(instance_colour(i, count))
                        .width(if i == tms.instance { 2.5 } else { 1.0 }),
                );
            }
            p.vline(VLine::new("in view", step).color(Color32::from_gray(140)));
        });
}
