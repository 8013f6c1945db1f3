//! The induction task's plots: the two halves' losses and every head's induction and
//! previous-token scores.

use egui::Ui;
use egui_plot::Plot;

use super::*;

/// The two halves' losses with their floors, the step loss, and every head's induction and
/// previous-token score.
pub(super) fn induction_plots<'a>(
    app: &ToylensApp,
    ui: &mut Ui,
    ln_vocab: f64,
    log: bool,
    overlays: &[(usize, &crate::app::RunRecord)],
    base: impl Fn(&str, &str) -> Plot<'a>,
) {
    let series = &app.session.series;
    ui.horizontal(|ui| {
        loss_plot(base("loss", "next-token loss (nats)"), log).show(ui, |p| {
            p.line(line("first half", &series.loss_first_half, log).color(TRAIN));
            p.line(line("repeated half", &series.loss_repeated_half, log).color(VAL));
            for (i, run) in overlays {
                p.line(overlay(&run.label, run.series.headline_loss(), log, *i));
            }
            p.hline(ceiling("ln V (first-half floor)", ln_vocab, log));
            p.hline(ceiling("10% of ln V", 0.1 * ln_vocab, log));
        });
        let means = &series.train_loss;
        step_loss_plot(
            app,
            ui,
            base("step_loss", "training loss per step"),
            log,
            move |p| {
                p.line(line("mean per evaluation", means, log).color(VAL));
                p.hline(ceiling("ln V", ln_vocab, log));
            },
        );
    });
    ui.horizontal(|ui| {
        for (id, title, curves) in [
            (
                "induction_score",
                "induction score",
                &series.induction_score,
            ),
            (
                "prev_token_score",
                "previous-token score",
                &series.prev_token_score,
            ),
        ] {
            base(id, title)
                .include_y(0.0)
                .include_y(1.0)
                .label_formatter(hover_label(move |name, p| {
                    format!("{name}\nstep {:.0}\n{title} {:.3}", p.x, p.y)
                }))
                .show(ui, |p| {
                    for (l, heads) in curves.iter().enumerate() {
                        for (h, points) in heads.iter().enumerate() {
                            let mut l_line =
                                line(&format!("L{l}H{h}"), points, false).color(head_colour(h));
                            if l + 1 < curves.len() {
                                l_line = l_line.style(LineStyle::dashed_dense()).width(1.5);
                            }
                            p.line(l_line);
                        }
                    }
                });
        }
    });
    ui.weak(
        "Induction score: attention from each repeated token to the token after its earlier \
         occurrence. Previous-token score: attention to the token before. Solid lines are the \
         last layer, dashed ones earlier layers.",
    );
}
