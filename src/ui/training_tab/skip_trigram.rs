//! The skip-trigram task's plots: loss, accuracy, signal and noise accuracy, with ceilings.

use egui::Ui;
use egui_plot::Plot;

use super::*;

/// Loss, accuracy, signal/noise accuracy and the step loss, with the skip-trigram ceilings.
pub(super) fn skip_trigram_plots<'a>(
    app: &ToylensApp,
    ui: &mut Ui,
    ceilings: crate::task::Ceilings,
    log: bool,
    overlays: &[(usize, &crate::app::RunRecord)],
    base: impl Fn(&str, &str) -> Plot<'a>,
) {
    let series = &app.session.series;
    let acc_labels = || {
        hover_label(|name, point| format!("{name}\nepoch {:.0}\naccuracy {:.4}", point.x, point.y))
    };
    ui.horizontal(|ui| {
        loss_plot(base("loss", "cross-entropy (nats)"), log).show(ui, |p| {
            p.line(line("train loss", &series.train_loss, log).color(TRAIN));
            p.line(line("validation loss", &series.val_loss, log).color(VAL));
            for (i, run) in overlays {
                p.line(overlay(&run.label, &run.series.val_loss, log, *i));
            }
            p.hline(ceiling("Bayes optimum", ceilings.bayes_ce, log));
        });
        base("accuracy", "accuracy")
            .include_y(0.0)
            .include_y(1.0)
            .label_formatter(acc_labels())
            .show(ui, |p| {
                p.line(line("train accuracy", &series.train_acc, false).color(TRAIN));
                p.line(line("validation accuracy", &series.val_acc, false).color(VAL));
                for (i, run) in overlays {
                    p.line(overlay(&run.label, &run.series.val_acc, false, *i));
                }
                p.hline(ceiling("best possible", ceilings.best_acc, false));
            });
    });
    ui.horizontal(|ui| {
        base("signal_noise", "validation accuracy")
            .include_y(0.0)
            .include_y(1.0)
            .label_formatter(acc_labels())
            .show(ui, |p| {
                p.line(line("signal", &series.val_acc_signal, false).color(SIGNAL));
                p.line(line("noise", &series.val_acc_noise, false).color(NOISE));
                for (i, run) in overlays {
                    p.line(overlay(
                        &format!("{} · signal", run.label),
                        &run.series.val_acc_signal,
                        false,
                        *i,
                    ));
                }
                p.hline(ceiling("signal ceiling", 1.0, false));
                p.hline(ceiling("noise chance", ceilings.best_noise_acc, false));
            });
        let bayes = ceilings.bayes_ce;
        step_loss_plot(app, ui, base("step_loss", "loss per step"), log, move |p| {
            p.hline(ceiling("Bayes optimum", bayes, log));
        });
    });
    if app.settings.show_head_traces {
        head_traces(app, ui, base);
    }
}
