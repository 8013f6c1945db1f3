//! Live metrics: the notebook's four plots plus the per-step loss, with the task's ceilings.

use egui::{Color32, Id, RichText, Ui};
use egui_plot::{
    Bar, BarChart, Corner, GridInput, HLine, HoverPosition, Legend, Line, LineStyle, Plot,
    PlotPoint, PlotPoints, uniform_grid_spacer,
};

use crate::app::{Action, ToylensApp};
use crate::task::TaskConfig;
use crate::ui::Frame;

mod induction;
mod modular;
mod sequences;
mod skip_trigram;

use induction::induction_plots;
use modular::modular_plots;
use sequences::sequences_plots;
use skip_trigram::skip_trigram_plots;

/// Longer series are thinned to about this many points for drawing.
const MAX_DRAWN_POINTS: usize = 1_000;

const TRAIN: Color32 = Color32::from_rgb(66, 133, 244);
const VAL: Color32 = Color32::from_rgb(234, 120, 40);
const SIGNAL: Color32 = Color32::from_rgb(52, 168, 83);
const NOISE: Color32 = Color32::from_rgb(170, 90, 200);
const CEILING: Color32 = Color32::from_gray(140);

/// Colours for overlaid runs, in turn.
const OVERLAY: [Color32; 6] = [
    Color32::from_rgb(230, 200, 60),
    Color32::from_rgb(90, 200, 220),
    Color32::from_rgb(240, 110, 150),
    Color32::from_rgb(160, 220, 100),
    Color32::from_rgb(200, 160, 255),
    Color32::from_rgb(255, 160, 90),
];
/// Colours for heads (and other numbered curves), in turn.
const HEADS: [Color32; 6] = [
    TRAIN,
    VAL,
    SIGNAL,
    NOISE,
    Color32::from_rgb(220, 60, 60),
    Color32::from_gray(120),
];

/// The colour of the `i`-th head or numbered curve.
fn head_colour(i: usize) -> Color32 {
    HEADS[i % HEADS.len()]
}

pub fn show(f: &mut Frame<'_>, ui: &mut Ui) {
    let task = f.app.session.config.task.clone();
    let unit = task.unit().name();
    let mut reset = false;
    let panel = ui.max_rect();
    ui.horizontal(|ui| {
        ui.checkbox(&mut f.form.settings.log_loss, "log-scale loss");
        ui.checkbox(&mut f.form.settings.show_step_loss, "per-step loss");
        ui.checkbox(&mut f.form.settings.show_head_traces, "head metrics");
        reset = ui
            .button("Reset view")
            .on_hover_text("fit every plot to its data again")
            .clicked();
        if ui
            .add_enabled(
                !f.app.session.history.is_empty(),
                egui::Button::new("Export CSV…"),
            )
            .clicked()
        {
            f.act(Action::ExportCsv);
        }
        if ui.button("Save PNG…").clicked() {
            f.act(Action::ExportPng(panel));
        }
        ui.menu_button(format!("Compare runs ({})", f.app.runs.len()), |ui| {
            if f.app.runs.is_empty() {
                ui.label("Finished runs and opened checkpoints appear here.");
            }
            for (run, shown) in f.app.runs.iter().zip(&mut f.form.runs_shown) {
                ui.checkbox(shown, &run.label);
            }
        });
    });
    let ceiling_text = match &task {
        TaskConfig::None(_) => {
            ui.weak(
                "The model in view came without a task, so it has no training metrics. Attach a \
                 data file to fine-tune it, or choose a task in the side panel to train one.",
            );
            super::attach_button(f, ui);
            return;
        }
        TaskConfig::SkipTrigram(t) => {
            let c = t.ceilings();
            format!(
                "ceilings: best accuracy {:.3}, Bayes cross-entropy {:.3} nats, noise chance {:.3}",
                c.best_acc, c.bayes_ce, c.best_noise_acc
            )
        }
        TaskConfig::Induction(t) => format!(
            "floors: first half ln V = {:.3} nats (nothing to learn), repeated half 0 (copy by \
             induction); evaluated every {} steps on {} fixed sequences",
            (t.vocab as f64).ln(),
            f.app.session.config.train.eval_every,
            t.val_size
        ),
        TaskConfig::Sequences(t) => {
            let (train, val) = t.split(f.app.session.config.seed);
            format!(
                "{}: evaluated every {} epochs on the {} validation sequences and {} training \
                 ones; chance loss ln V = {:.3}",
                t.short_name(),
                f.app.session.config.train.eval_every,
                val.len(),
                train.len().min(crate::metrics::TRAIN_EVAL_SEQUENCES),
                (task.vocab_out().max(1) as f64).ln()
            )
        }
        TaskConfig::ModularAddition(t) => format!(
            "chance accuracy 1/p = {:.4}, chance loss ln p = {:.3}; evaluated every {} epochs on \
             all {} train and {} test pairs",
            1.0 / t.p as f64,
            (t.p as f64).ln(),
            f.app.session.config.train.eval_every,
            t.train_count(),
            t.pairs() - t.train_count()
        ),
    };
    ui.label(RichText::new(ceiling_text).weak());
    if f.app.session.history.is_empty() && f.app.session.series.step_loss.is_empty() {
        ui.add_space(20.0);
        ui.label(
            "No metrics yet: press Train in the side panel, or open a checkpoint with history.",
        );
    }
    let log = f.form.settings.log_loss;
    let overlays: Vec<(usize, &crate::app::RunRecord)> = f
        .app
        .runs
        .iter()
        .zip(&f.form.runs_shown)
        .filter(|(_, shown)| **shown)
        .map(|(run, _)| run)
        .enumerate()
        .collect();
    let link = Id::unique("epoch_axis");
    let rows = if task.kind() == crate::task::TaskKind::ModularAddition
        || (f.form.settings.show_head_traces && task.skip_trigram().is_some())
    {
        3.0
    } else {
        2.0
    };
    let height = ((ui.available_height() - 20.0 * rows) / rows).max(120.0);
    let width = (ui.available_width() / 2.0 - 8.0).max(200.0);
    let base = |id: &str, y_label: &str| {
        let mut plot = Plot::new(id.to_string())
            .height(height)
            .width(width)
            .link_axis(link, [true, false])
            .link_cursor(link, [true, false])
            .x_axis_label(unit)
            .x_grid_spacer(uniform_grid_spacer(steps_1_2_5))
            .y_grid_spacer(uniform_grid_spacer(steps_1_2_5))
            .y_axis_formatter(|mark, _| trim_number(mark.value))
            .y_axis_label(y_label.to_string())
            .legend(Legend::default().position(Corner::RightTop));
        if reset {
            plot = plot.reset();
        }
        plot
    };
    match &task {
        TaskConfig::SkipTrigram(t) => {
            skip_trigram_plots(f.app, ui, t.ceilings(), log, &overlays, base)
        }
        TaskConfig::Induction(t) => {
            induction_plots(f.app, ui, (t.vocab as f64).ln(), log, &overlays, base)
        }
        TaskConfig::ModularAddition(t) => {
            modular_plots(f.app, ui, t.p, &overlays, base);
        }
        TaskConfig::Sequences(_) => sequences_plots(f.app, ui, log, &overlays, base),
        TaskConfig::None(_) => {}
    }
}

/// When each head learns its part: attention from the query to the trigger positions, and how
/// much its OV circuit favours the right answer, per epoch.
fn head_traces<'a>(app: &ToylensApp, ui: &mut Ui, base: impl Fn(&str, &str) -> Plot<'a>) {
    let traces = &app.analysis.traces;
    let heads = traces.first().map_or(0, |(_, t)| t.len());
    let per_head = |f: fn(&crate::analysis::HeadTrace) -> f32, h: usize| -> Vec<[f64; 2]> {
        traces
            .iter()
            .map(|(e, t)| [*e as f64, f(&t[h]) as f64])
            .collect()
    };
    ui.horizontal(|ui| {
        base("attn_triggers", "attention to a and b")
            .include_y(0.0)
            .include_y(1.0)
            .label_formatter(hover_label(|name, p| {
                format!(
                    "{name}\nepoch {:.0}\nattention to the triggers {:.3}",
                    p.x, p.y
                )
            }))
            .show(ui, |p| {
                for h in 0..heads {
                    let pts = per_head(|t| t.attn_to_triggers, h);
                    p.line(
                        Line::new(format!("head {h}"), pts)
                            .color(head_colour(h))
                            .width(2.0),
                    );
                }
            });
        base("ov_margin", "OV margin for the answer")
            .label_formatter(hover_label(|name, p| {
                format!("{name}\nepoch {:.0}\nOV margin {:.3}", p.x, p.y)
            }))
            .show(ui, |p| {
                for h in 0..heads {
                    let pts = per_head(|t| t.ov_margin, h);
                    p.line(
                        Line::new(format!("head {h}"), pts)
                            .color(head_colour(h))
                            .width(2.0),
                    );
                }
            });
    });
}

/// A dashed line of an earlier run, coloured by its place in the overlay list.
fn overlay<'a>(name: &str, points: &'a [PlotPoint], log: bool, i: usize) -> Line<'a> {
    line(name, points, log)
        .color(OVERLAY[i % OVERLAY.len()])
        .style(LineStyle::dashed_dense())
        .width(1.5)
}

/// A line over stored points: borrowed as they are when short and linear, thinned (and
/// log-transformed) otherwise.
fn line<'a>(name: &str, points: &'a [PlotPoint], log: bool) -> Line<'a> {
    let data = if points.len() <= MAX_DRAWN_POINTS && !log {
        PlotPoints::Borrowed(points)
    } else {
        let stride = points.len().div_ceil(MAX_DRAWN_POINTS).max(1);
        let last = points.len().saturating_sub(1);
        points
            .iter()
            .enumerate()
            .filter(|(i, _)| i % stride == 0 || *i == last)
            .map(|(_, p)| [p.x, if log { p.y.max(1e-12).log10() } else { p.y }])
            .collect()
    };
    Line::new(name.to_string(), data).width(2.0)
}

/// Grid steps from the 1-2-5 sequence (10, 20, 50, 100, …). Base-10 steps jump too far: at some
/// zoom levels they leave an axis with no tick far enough apart to carry a label.
fn steps_1_2_5(input: GridInput) -> [f64; 3] {
    let next = |x: f64| {
        let decade = 10f64.powf(x.max(1e-9).log10().floor());
        [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * decade)
            .find(|&s| s >= x)
            .unwrap_or(10.0 * decade)
    };
    // Labels need ~60 px between ticks; the base step is a few pixels.
    let small = next(input.base_step_size);
    let medium = next(small * 4.0);
    [small, medium, next(medium * 3.0)]
}

/// 1.2000 → "1.2", 2.0 → "2": tick labels with no more digits than they need.
fn trim_number(v: f64) -> String {
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// The per-step training loss with `extra` lines, when asked for; for a run opened from a file,
/// which has none, a note why.
fn step_loss_plot<'a>(
    app: &'a ToylensApp,
    ui: &mut Ui,
    plot: Plot<'a>,
    log: bool,
    extra: impl FnOnce(&mut egui_plot::PlotUi<'a>) + 'a,
) {
    let series = &app.session.series;
    if !app.settings.show_step_loss {
        return;
    }
    if series.step_loss.is_empty() && !series.train_loss.is_empty() {
        no_step_losses(ui);
        return;
    }
    loss_plot(plot, log).show(ui, move |p| {
        p.line(
            line("step loss", &series.step_loss, log)
                .color(TRAIN)
                .width(1.0),
        );
        extra(p);
    });
}

/// In place of the per-step plot of a run opened from a file.
fn no_step_losses(ui: &mut Ui) {
    ui.vertical(|ui| {
        ui.add_space(60.0);
        ui.weak("Per-step losses are not stored in checkpoints; train to see them.");
    });
}

/// A log axis tick: plain where that is short (0.01 to 999), else like 1e-4.
fn log_tick(x: f64) -> String {
    if (0.01..1000.0).contains(&x) {
        trim_number(x)
    } else {
        format!("{x:.0e}")
    }
}

/// Loss axes and hover text, in log10 space when `log` is on.
fn loss_plot(plot: Plot<'_>, log: bool) -> Plot<'_> {
    if log {
        plot.y_axis_formatter(|mark, _| log_tick(10f64.powf(mark.value)))
            .label_formatter(hover_label(|name, point| {
                format!(
                    "{name}\nat {:.2}\nloss {:.4e}",
                    point.x,
                    10f64.powf(point.y)
                )
            }))
    } else {
        plot.label_formatter(hover_label(|name, point| {
            format!("{name}\nat {:.2}\nloss {:.4}", point.x, point.y)
        }))
    }
}

/// Hover text for the data point nearest the pointer; nothing elsewhere.
fn hover_label(
    format: impl Fn(&str, &PlotPoint) -> String,
) -> impl Fn(&HoverPosition<'_>) -> Option<String> {
    move |hover| match hover {
        HoverPosition::NearDataPoint {
            plot_name,
            position,
            ..
        } => Some(format(plot_name, position)),
        HoverPosition::Elsewhere { .. } => None,
    }
}

fn ceiling(name: &str, y: f64, log: bool) -> HLine {
    HLine::new(name.to_string(), if log { y.max(1e-12).log10() } else { y })
        .color(CEILING)
        .style(LineStyle::dashed_loose())
}
