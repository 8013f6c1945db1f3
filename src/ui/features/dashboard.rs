//! The Features workspace's views: training curves, the latents' density histogram, the sortable
//! feature table and one latent's dashboard (its activation histogram, logit effect and top
//! activating examples), as Neuronpedia's feature pages show them.

use egui::{Color32, RichText, Ui};
use egui_plot::{Bar, BarChart, Line, Plot, PlotPoints};

use super::Frame;
use crate::app::Action;
use crate::app::features::{FeatureSort, SaeAction, SaeWorkspace};
use crate::sae::features::{Feature, HISTOGRAM_BINS};
use crate::sae::{Origin, SaeMetrics};

/// Rows of the feature table drawn at once, whatever d_sae: it scrolls.
const TABLE_HEIGHT: f32 = 360.0;

/// Small plots of each metric over training.
pub(super) fn curves(sae: &SaeWorkspace, ui: &mut Ui, width: f32) {
    let h = &sae.history;
    if h.is_empty() {
        ui.weak("no evaluation yet");
        return;
    }
    type Metric = (&'static str, &'static str, fn(&SaeMetrics) -> Option<f64>);
    let mut metrics: Vec<Metric> = vec![
        ("MSE", "mean ‖x − x̂‖² per activation", |m| {
            Some(m.mse)
        }),
        (
            "explained variance",
            "1 − Σ‖x − x̂‖² / Σ‖x − mean x‖²",
            |m| Some(m.explained_variance),
        ),
        ("L0", "latents active per activation", |m| Some(m.l0)),
        (
            "dead latents",
            "latents that fired on none of the last activations (the dead window)",
            |m| Some(m.dead as f64),
        ),
    ];
    if h.iter().any(|m| m.ce.is_some()) {
        metrics.push((
            "CE loss recovered",
            "(CE zero-ablated − CE with the reconstruction spliced in) / (CE zero-ablated − \
             CE clean), on the task's validation data",
            |m| m.ce.map(|c| c.recovered()),
        ));
    }
    if h.iter().any(|m| m.mmcs.is_some()) {
        metrics.push((
            "MMCS",
            "mean over the features the model represents of their best cosine with a decoder \
             direction",
            |m| m.mmcs,
        ));
        metrics.push((
            "features recovered",
            "true features with a decoder direction at cosine > 0.9",
            |m| m.recovered.map(|r| r.0 as f64),
        ));
    }
    let per_row = ((width / 160.0) as usize).clamp(2, 6);
    let plot_width = (width / per_row as f32 - 12.0).max(140.0);
    let stride = h.len().div_ceil(2000).max(1);
    for row in metrics.chunks(per_row) {
        ui.horizontal(|ui| {
            for &(name, hint, value) in row {
                ui.vertical(|ui| {
                    let last = h.last().and_then(value);
                    ui.label(RichText::new(format!(
                        "{name} {}",
                        last.map_or_else(String::new, |v| format!("{v:.4}"))
                    )))
                    .on_hover_text(hint);
                    let points: Vec<[f64; 2]> = h
                        .iter()
                        .step_by(stride)
                        .filter_map(|m| value(m).map(|v| [m.step as f64, v]))
                        .collect();
                    // A flat curve (L0 under TopK, no dead latents) sits on a readable axis.
                    let top = points.iter().map(|p| p[1]).fold(0.0, f64::max);
                    Plot::new(("sae_curve", name))
                        .width(plot_width)
                        .height(90.0)
                        .allow_scroll(false)
                        .allow_drag(false)
                        .allow_zoom(false)
                        .include_y(0.0)
                        .include_y(if top > 0.0 { top * 1.05 } else { 1.0 })
                        .show(ui, |p| p.line(Line::new(name, PlotPoints::from(points))));
                });
            }
        });
    }
}

/// How many latents fire how often: log10 of each latent's firing rate, dead ones at the left.
pub(super) fn density_histogram(features: &[Feature], ui: &mut Ui, width: f32) {
    const LOW: f64 = -7.0;
    const BINS: usize = 28;
    let mut counts = [0u32; BINS];
    let mut dead = 0;
    for f in features {
        if f.density <= 0.0 {
            dead += 1;
            continue;
        }
        let x = f.density.log10().clamp(LOW, 0.0);
        let b = (((x - LOW) / -LOW) * BINS as f64) as usize;
        counts[b.min(BINS - 1)] += 1;
    }
    ui.label(RichText::new("Feature density (log10 of each latent's firing rate)").strong())
        .on_hover_text("the share of activations each latent fires on, in the dashboards' sample");
    if dead > 0 {
        ui.weak(format!(
            "{dead} latents never fired in the sample (not drawn)"
        ));
    }
    let step = -LOW / BINS as f64;
    let bars: Vec<Bar> = counts
        .iter()
        .enumerate()
        .map(|(b, &c)| {
            let x = LOW + (b as f64 + 0.5) * step;
            Bar::new(x, c as f64).width(step * 0.9).name(format!(
                "10^{:.2} to 10^{:.2}: {c} latents",
                x - step / 2.0,
                x + step / 2.0
            ))
        })
        .collect();
    Plot::new("sae_density")
        .width(width.min(720.0))
        .height(120.0)
        .allow_scroll(false)
        .allow_drag(false)
        .allow_zoom(false)
        .x_axis_label("log10 density")
        .include_x(LOW)
        .include_x(0.0)
        .show(ui, |p| {
            p.bar_chart(
                BarChart::new("latents", bars)
                    .color(Color32::from_rgb(90, 140, 210))
                    .element_formatter(Box::new(|bar, _| bar.name.clone())),
            )
        });
}

/// Every latent, sortable; a click shows its dashboard.
pub(super) fn table(f: &mut Frame<'_>, features: &[Feature], ui: &mut Ui) {
    let sae = &f.app.sae;
    ui.horizontal(|ui| {
        ui.label(RichText::new(format!("{} latents", features.len())).strong());
        ui.weak("sort by");
        for (sort, label) in [
            (FeatureSort::Index, "index"),
            (FeatureSort::Density, "density"),
            (FeatureSort::MaxActivation, "max activation"),
        ] {
            if ui.selectable_label(sae.sort == sort, label).clicked() && sae.sort != sort {
                f.act(Action::Sae(SaeAction::Sort(sort)));
            }
        }
    });
    let truth = features.iter().any(|x| x.true_feature.is_some());
    let order = sae.order(features);
    let row_height = ui.spacing().interact_size.y.max(
        ui.text_style_height(&egui::TextStyle::Monospace) + 2.0 * ui.spacing().button_padding.y,
    ) + ui.spacing().item_spacing.y;
    let fourier = features.iter().any(|x| x.fourier.is_some());
    ui.monospace(if truth {
        "latent   density   max act  true feature (cos)"
    } else if fourier {
        "latent   density   max act  mean act  frequency (share)"
    } else {
        "latent   density   max act  mean act"
    });
    egui::ScrollArea::vertical()
        .id_salt("sae_table")
        .max_height(TABLE_HEIGHT)
        .auto_shrink([false, true])
        .show_rows(ui, row_height, order.len(), |ui, rows| {
            for &i in &order[rows] {
                let x = &features[i];
                let tail = match (x.true_feature, x.fourier) {
                    (Some((t, c)), _) => format!("{t:>5} ({c:.3})"),
                    (_, Some(freq)) => format!(
                        "{:>8.3}  k {:>3} ({:.2})",
                        x.mean_activation, freq.k, freq.share
                    ),
                    _ => format!("{:>8.3}", x.mean_activation),
                };
                let text = format!(
                    "{:>6}  {:>8}  {:>8.3}  {tail}",
                    i,
                    percent(x.density),
                    x.max_activation
                );
                let selected = sae.selected == Some(i);
                let mut label = RichText::new(text).monospace();
                if x.density == 0.0 {
                    label = label.weak();
                }
                if ui.selectable_label(selected, label).clicked() {
                    f.act(Action::Sae(SaeAction::Select(Some(i))));
                }
            }
        });
}

fn percent(density: f64) -> String {
    match density {
        0.0 => "dead".into(),
        d if d >= 0.001 => format!("{:.2}%", d * 100.0),
        d => format!("{d:.1e}"),
    }
}

/// The selected latent's dashboard.
pub(super) fn selected(f: &mut Frame<'_>, features: &[Feature], ui: &mut Ui) {
    let Some(x) = f.app.sae.selected.and_then(|i| features.get(i)) else {
        ui.weak("click a latent to see its dashboard");
        return;
    };
    ui.label(RichText::new(format!("Latent {}", x.index)).heading());
    ui.label(format!(
        "fires on {} of activations · max {:.3} · mean {:.3} when active",
        percent(x.density),
        x.max_activation,
        x.mean_activation
    ));
    if let Some((t, c)) = x.true_feature {
        ui.label(format!("nearest true feature: {t} (cosine {c:.3})"));
    }
    if let Some(freq) = x.fourier {
        ui.label(format!(
            "Fourier frequency {} holds {:.0}% of its variance over every pair (a, b)",
            freq.k,
            freq.share * 100.0
        ));
    }
    activation_histogram(x, ui);
    if let Some(effect) = &x.logit_effect {
        let names = super::super::token_names(f.app);
        ui.label(RichText::new("Logit effect (W_dec · W_U)").strong())
            .on_hover_text("the latent's decoder direction straight through the unembedding");
        ui.columns(2, |cols| {
            for (col, (title, list, colour)) in cols.iter_mut().zip([
                ("promotes", &effect.top, Color32::from_rgb(60, 130, 220)),
                ("suppresses", &effect.bottom, Color32::from_rgb(220, 80, 70)),
            ]) {
                col.weak(title);
                for &(t, v) in list.iter().take(8) {
                    col.label(
                        RichText::new(format!("{:<8} {v:+.3}", names.label(t)))
                            .monospace()
                            .color(colour),
                    );
                }
            }
        });
    }
    ui.label(RichText::new("Top activating examples").strong())
        .on_hover_text("the activation, then the sequence with the position it fired at; click the activation to open the sequence in the Inspect tab");
    if x.top.is_empty() {
        ui.weak("it never fired in the sample");
    }
    let names = super::super::token_names(f.app);
    let peak = x.max_activation.max(1e-12);
    for example in &x.top {
        match &example.origin {
            Origin::Token { sequence, position } => {
                ui.horizontal_wrapped(|ui| {
                    ui.spacing_mut().item_spacing.x = 3.0;
                    if ui
                        .small_button(format!("{:>7.3}", example.activation))
                        .on_hover_text("open this sequence in the Inspect tab")
                        .clicked()
                    {
                        f.act(Action::InspectSequence(sequence.clone()));
                    }
                    for (q, &t) in sequence.iter().enumerate() {
                        // Each token on its own faint tile, so that ids stay apart.
                        let mut text = RichText::new(names.label(t))
                            .monospace()
                            .background_color(Color32::from_gray(48));
                        if q == *position {
                            let strength = (example.activation / peak).clamp(0.2, 1.0);
                            text = text
                                .background_color(Color32::from_rgba_unmultiplied(
                                    255,
                                    150,
                                    40,
                                    (strength * 200.0) as u8,
                                ))
                                .strong();
                        }
                        ui.label(text);
                    }
                });
            }
            Origin::Features(active) => {
                let items: Vec<String> =
                    active.iter().map(|(i, v)| format!("{i}:{v:.2}")).collect();
                ui.monospace(format!(
                    "{:>7.3}  features [{}]",
                    example.activation,
                    items.join(" ")
                ));
            }
        }
    }
}

/// The latent's nonzero activations, binned from 0 to its largest.
fn activation_histogram(x: &Feature, ui: &mut Ui) {
    if x.max_activation <= 0.0 {
        return;
    }
    let step = x.max_activation as f64 / HISTOGRAM_BINS as f64;
    let bars: Vec<Bar> = x
        .histogram
        .iter()
        .enumerate()
        .map(|(b, &c)| {
            Bar::new((b as f64 + 0.5) * step, c as f64)
                .width(step * 0.9)
                .name(format!(
                    "{:.3} to {:.3}: {c}",
                    b as f64 * step,
                    (b + 1) as f64 * step
                ))
        })
        .collect();
    ui.label(RichText::new("Activation histogram (when active)").strong());
    Plot::new(("sae_activations", x.index))
        .width(ui.available_width().min(420.0))
        .height(100.0)
        .allow_scroll(false)
        .allow_drag(false)
        .allow_zoom(false)
        .show(ui, |p| {
            p.bar_chart(
                BarChart::new("activations", bars)
                    .color(Color32::from_rgb(240, 150, 50))
                    .element_formatter(Box::new(|bar, _| bar.name.clone())),
            )
        });
}
