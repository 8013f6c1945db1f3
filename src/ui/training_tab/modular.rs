//! Modular addition's plots: losses (with the restricted and excluded losses), accuracy, weight
//! norm, key frequencies and the embedding's Fourier norms.

use egui::Ui;
use egui_plot::Plot;

use super::*;
use crate::analysis::ProgressMeasures;

/// Train and test loss (log scale) and accuracy with chance, and the total weight norm.
pub(super) fn modular_plots<'a>(
    app: &ToylensApp,
    ui: &mut Ui,
    p_mod: usize,
    overlays: &[(usize, &crate::app::RunRecord)],
    base: impl Fn(&str, &str) -> Plot<'a>,
) {
    let series = &app.session.series;
    let chance = 1.0 / p_mod as f64;
    ui.horizontal(|ui| {
        loss_plot(base("loss", "cross-entropy (nats, log scale)"), true).show(ui, |p| {
            p.line(line("train loss", &series.train_loss, true).color(TRAIN));
            p.line(line("test loss", &series.test_loss, true).color(VAL));
            p.line(line("restricted loss", &series.restricted_loss, true).color(SIGNAL));
            p.line(line("excluded loss", &series.excluded_loss, true).color(NOISE));
            for (i, run) in overlays {
                p.line(overlay(&run.label, run.series.headline_loss(), true, *i));
            }
            p.hline(ceiling("chance (ln p)", (p_mod as f64).ln(), true));
        });
        base("accuracy", "accuracy")
            .include_y(0.0)
            .include_y(1.0)
            .label_formatter(hover_label(|name, point| {
                format!("{name}\nepoch {:.0}\naccuracy {:.4}", point.x, point.y)
            }))
            .show(ui, |p| {
                p.line(line("train accuracy", &series.train_acc, false).color(TRAIN));
                p.line(line("test accuracy", &series.test_acc, false).color(VAL));
                p.hline(ceiling("chance (1/p)", chance, false));
                p.hline(ceiling("99 %", 0.99, false));
            });
    });
    ui.horizontal(|ui| {
        base("weight_norm", "total weight norm")
            .label_formatter(hover_label(|name, point| {
                format!("{name}\nepoch {:.0}\nnorm {:.3}", point.x, point.y)
            }))
            .show(ui, |p| {
                p.line(line("weight norm", &series.weight_norm, false).color(SIGNAL));
            });
        key_frequency_plot(app, ui, &base);
    });
    ui.horizontal(|ui| {
        fourier_bars(app, ui, &base);
        step_loss_plot(
            app,
            ui,
            base("step_loss", "training loss per step (log scale)"),
            true,
            |_| {},
        );
    });
    ui.weak(
        "Grokking: the train loss falls first (memorisation), test accuracy stays near chance \
         while weight decay shrinks the weight norm, then test accuracy rises suddenly. \
         Restricted loss: all pairs through the key frequencies alone; excluded loss: the \
         training pairs with them removed (Nanda et al. 2023).",
    );
}

/// The embedding's norm in each of the latest key frequencies, over training.
fn key_frequency_plot<'a>(app: &ToylensApp, ui: &mut Ui, base: &impl Fn(&str, &str) -> Plot<'a>) {
    let series = &app.session.series;
    let keys = latest_progress(app).map_or(&[][..], |p| &p.key_frequencies);
    base("key_frequencies", "W_E norm per key frequency")
        .label_formatter(hover_label(|name, point| {
            format!("{name}\nepoch {:.0}\nnorm {:.3}", point.x, point.y)
        }))
        .show(ui, |p| {
            for (i, &k) in keys.iter().enumerate() {
                if let Some(points) = series.fourier_norms.get(k - 1) {
                    p.line(line(&format!("k = {k}"), points, false).color(head_colour(i)));
                }
            }
        });
}

/// The progress measures of the newest evaluation that measured them.
fn latest_progress(app: &ToylensApp) -> Option<&ProgressMeasures> {
    app.session
        .history
        .iter()
        .rev()
        .find_map(|m| m.modular().and_then(|m| m.progress.as_ref()))
}

/// The embedding's norm in every Fourier frequency at the newest evaluation: sparse once the
/// model has grokked.
fn fourier_bars<'a>(app: &ToylensApp, ui: &mut Ui, base: &impl Fn(&str, &str) -> Plot<'a>) {
    let Some(progress) = latest_progress(app) else {
        return;
    };
    let keys = &progress.key_frequencies;
    let bars: Vec<Bar> = progress
        .fourier_norms
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let k = i + 1;
            let bar = Bar::new(k as f64, v).width(0.8);
            if keys.contains(&k) {
                bar.fill(VAL)
            } else {
                bar.fill(TRAIN)
            }
        })
        .collect();
    base("fourier_bars", "W_E norm per frequency (key ones orange)")
        .link_axis(Id::unique("fourier_bars"), [false, false])
        .link_cursor(Id::unique("fourier_bars"), [false, false])
        .x_axis_label("frequency k")
        .allow_scroll(false)
        .show(ui, |p| {
            p.bar_chart(BarChart::new("embedding Fourier norms", bars))
        });
}
