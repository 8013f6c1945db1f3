//! A data file's plots: loss and accuracy at the scored positions, the share of whole sequences
//! right, and the accuracy at each scored position.

use egui::Ui;
use egui_plot::Plot;

use super::*;

/// Loss, accuracy, sequence accuracy and accuracy by position, and the step loss.
pub(super) fn sequences_plots<'a>(
    app: &ToylensApp,
    ui: &mut Ui,
    log: bool,
    overlays: &[(usize, &crate::app::RunRecord)],
    base: impl Fn(&str, &str) -> Plot<'a>,
) {
    let series = &app.session.series;
    let acc_labels = || {
        hover_label(|name, point| format!("{name}\nepoch {:.0}\naccuracy {:.4}", point.x, point.y))
    };
    ui.horizontal(|ui| {
        loss_plot(
            base("loss", "cross-entropy at scored positions (nats)"),
            log,
        )
        .show(ui, |p| {
            p.line(line("train loss", &series.train_loss, log).color(TRAIN));
            p.line(line("validation loss", &series.val_loss, log).color(VAL));
            for (i, run) in overlays {
                p.line(overlay(&run.label, &run.series.val_loss, log, *i));
            }
        });
        base("accuracy", "accuracy")
            .include_y(0.0)
            .include_y(1.0)
            .label_formatter(acc_labels())
            .show(ui, |p| {
                p.line(line("train accuracy", &series.train_acc, false).color(TRAIN));
                p.line(line("validation accuracy", &series.val_acc, false).color(VAL));
                p.line(
                    line("validation sequences right", &series.val_seq_acc, false).color(SIGNAL),
                );
                for (i, run) in overlays {
                    p.line(overlay(&run.label, &run.series.val_seq_acc, false, *i));
                }
                p.hline(ceiling("99 %", 0.99, false));
            });
    });
    ui.horizontal(|ui| {
        base("by_position", "validation accuracy")
            .include_y(0.0)
            .include_y(1.0)
            .label_formatter(acc_labels())
            .show(ui, |p| {
                for (position, curve) in series.acc_by_position.iter().enumerate() {
                    if !curve.is_empty() {
                        let name = format!("position {position}");
                        p.line(line(&name, curve, false));
                    }
                }
            });
        step_loss_plot(app, ui, base("step_loss", "loss per step"), log, |_| {});
    });
}
