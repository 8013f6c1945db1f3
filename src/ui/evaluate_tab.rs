//! Every signal sequence, evaluated: accuracy per trigger pair and per label, the confusion
//! matrix, sampled noise against its ceiling, and the sequences the model gets wrong.

use egui::{RichText, Ui};

use super::heatmap::{Heatmap, Scale, legend};
use crate::app::Action;
use crate::ui::Frame;

pub fn show(f: &mut Frame<'_>, ui: &mut Ui) {
    // The whole tab, for "Save PNG…".
    let panel = ui.max_rect();
    if !f.app.session.config.task.has_data() {
        ui.add_space(20.0);
        ui.label(
            "The model in view came without a task, so there is nothing to evaluate it on. \
             Inspect, Analyze and Circuits take it apart on sequences you type; attach a data \
             file to evaluate it here.",
        );
        super::attach_button(f, ui);
        return;
    }
    if f.app.session.config.task.sequences().is_some() {
        super::analysis_toolbar(f, ui, panel);
        return sequences(f, ui);
    }
    let Some(task) = f.app.session.config.task.skip_trigram().cloned() else {
        ui.add_space(20.0);
        ui.label(format!(
            "The exhaustive evaluation enumerates skip-trigram sequences. This model's task ({}) \
             is measured on the Training tab and, pair by pair or sequence by sequence, on the \
             Data tab.",
            f.app.session.config.task.kind().title()
        ));
        return;
    };
    super::analysis_toolbar(f, ui, panel);
    let key = f.app.exhaustive_key();
    let Some(report) = super::job_result(
        ui,
        &f.app.analysis.exhaustive,
        &key,
        "evaluating every signal sequence of these weights…",
    )
    .cloned() else {
        return;
    };
    ui.label(format!(
        "All {} signal sequences: accuracy {:.4}. Sampled noise ({} sequences): {:.4}, chance {:.4}.",
        report.signal_sequences,
        report.signal_accuracy,
        report.noise_samples,
        report.noise_accuracy,
        report.noise_chance
    ));
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.strong("Accuracy per trigger pair");
                ui.small("rows: first token a, columns: second-to-last token b");
                let n = report.triggers.len();
                let values: Vec<f32> = report
                    .pair_accuracy
                    .iter()
                    .flatten()
                    .map(|&v| v as f32)
                    .collect();
                let labels: Vec<String> = report.triggers.iter().map(|t| t.to_string()).collect();
                let describe = |r: usize, c: usize, v: f32| {
                    let (a, b) = (report.triggers[r], report.triggers[c]);
                    let answer = task.answer(a, b).map_or("?".into(), |l| l.to_string());
                    let note = if a == b {
                        " (a == b: half as frequent in training)"
                    } else {
                        ""
                    };
                    format!("a = {a}, b = {b}, answer {answer}: accuracy {v:.3}{note}")
                };
                let mut map = Heatmap::new(n, n, &values, Scale::Sequential { max: 1.0 })
                    .labels(labels.clone(), labels);
                map.cell = 44.0;
                map.show_values = true;
                map.describe = Some(&describe);
                map.show(ui);
                legend(ui, Scale::Sequential { max: 1.0 });
            });
            ui.add_space(16.0);
            ui.vertical(|ui| {
                ui.strong("Accuracy per answer label");
                egui::Grid::new("label_acc").striped(true).show(ui, |ui| {
                    ui.strong("label");
                    ui.strong("pair(s)");
                    ui.strong("accuracy");
                    ui.end_row();
                    for (label, acc) in report.label_accuracy.iter().enumerate() {
                        let Some(acc) = acc else { continue };
                        let pairs: Vec<String> = task
                            .answer_map
                            .iter()
                            .filter(|a| a.label == label as u32)
                            .map(|a| format!("({}, {})", a.a, a.b))
                            .collect();
                        ui.label(label.to_string());
                        ui.label(pairs.join(" "));
                        let text = RichText::new(format!("{acc:.3}"));
                        ui.label(if *acc < 1.0 {
                            text.color(ui.visuals().error_fg_color)
                        } else {
                            text
                        });
                        ui.end_row();
                    }
                });
            });
            ui.add_space(16.0);
            ui.vertical(|ui| {
                ui.strong("Confusion: expected label × predicted token");
                let vocab = report.confusion.len();
                let values: Vec<f32> = report
                    .confusion
                    .iter()
                    .flatten()
                    .map(|&c| c as f32)
                    .collect();
                let max = values.iter().copied().fold(1.0, f32::max);
                let describe = |r: usize, c: usize, v: f32| {
                    format!("expected {r}, predicted {c}: {v:.0} sequences")
                };
                // Rows and columns are token ids: the map's own index labels.
                let mut map = Heatmap::new(vocab, vocab, &values, Scale::Sequential { max });
                map.cell = 24.0;
                map.describe = Some(&describe);
                map.show(ui);
            });
        });
        ui.separator();
        if report.misses.is_empty() {
            ui.label("No signal sequence is answered wrongly.");
        } else {
            ui.strong(format!(
                "{} wrongly answered signal sequences (click one to inspect it)",
                report.misses.len()
            ));
            for m in report.misses.iter().take(60) {
                let text = format!(
                    "{:?}: expected {}, predicted {}",
                    m.tokens, m.expected, m.predicted
                );
                if ui.link(text).clicked() {
                    f.act(Action::InspectSequence(m.tokens.clone()));
                }
            }
        }
    });
}

/// A data file's task: the validation sequences' accuracy by position, the confusion of the
/// scored targets, and the worst sequences (click one to inspect it).
fn sequences(f: &mut Frame<'_>, ui: &mut Ui) {
    let key = f.app.exhaustive_key();
    let Some(report) = super::job_result(
        ui,
        &f.app.analysis.sequence_report,
        &key,
        "evaluating the validation sequences…",
    ) else {
        return;
    };
    let Some(config) = f.app.session.config.task.sequences() else {
        return;
    };
    // The report's own data: it may be of the data before the latest change until the new one
    // is in.
    let data = &report.data;
    let name = |t: u32| data.token_name(t);
    let e = &report.eval;
    ui.label(format!(
        "{} validation sequences of {} ({} scored positions): loss {:.4}, accuracy {:.4}, \
         sequences wholly right {:.4}.",
        e.sequences,
        config.short_name(),
        e.scored_positions,
        e.loss,
        e.acc,
        e.seq_acc
    ));
    let mut clicked = None;
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.strong("Accuracy by position");
                ui.small("position p predicts the token at p + 1");
                let bars: Vec<egui_plot::Bar> = e
                    .acc_by_position
                    .iter()
                    .enumerate()
                    .filter_map(|(p, a)| a.map(|a| egui_plot::Bar::new(p as f64, a).width(0.7)))
                    .collect();
                egui_plot::Plot::new("acc_by_position")
                    .height(220.0)
                    .width(320.0)
                    .include_y(0.0)
                    .include_y(1.0)
                    .include_x(-0.5)
                    .include_x(e.acc_by_position.len() as f64 - 0.5)
                    .x_grid_spacer(egui_plot::uniform_grid_spacer(|_| [1.0, 5.0, 10.0]))
                    .x_axis_formatter(|mark, _| {
                        let p = mark.value.round();
                        if (mark.value - p).abs() < 1e-6 && p >= 0.0 {
                            format!("{p:.0}")
                        } else {
                            String::new()
                        }
                    })
                    .x_axis_label("position")
                    .y_axis_label("accuracy")
                    .allow_scroll(false)
                    .show(ui, |p| {
                        p.bar_chart(egui_plot::BarChart::new("accuracy", bars))
                    });
            });
            ui.add_space(16.0);
            ui.vertical(|ui| {
                ui.strong("Confusion: target × predicted token, at scored positions");
                if report.outside > 0 {
                    ui.small(format!(
                        "the {} most frequent targets; {} positions fall outside them",
                        report.tokens.len(),
                        report.outside
                    ));
                }
                let k = report.tokens.len();
                let values: Vec<f32> = report.confusion.iter().map(|&c| c as f32).collect();
                let max = values.iter().copied().fold(1.0, f32::max);
                let labels: Vec<String> = report.tokens.iter().map(|&t| name(t)).collect();
                let describe = |r: usize, c: usize, v: f32| {
                    format!(
                        "target {}, predicted {}: {v:.0} positions",
                        labels[r], labels[c]
                    )
                };
                let mut map = Heatmap::new(k, k, &values, Scale::Sequential { max })
                    .labels(labels.clone(), labels.clone());
                map.cell = (360.0 / k.max(1) as f32).clamp(8.0, 28.0);
                map.describe = Some(&describe);
                map.show(ui);
                legend(ui, Scale::Sequential { max });
            });
        });
        ui.separator();
        ui.strong("Sequences with the highest loss (click one to inspect it)");
        egui::Grid::new("worst_sequences")
            .striped(true)
            .show(ui, |ui| {
                ui.strong("#");
                ui.strong("loss");
                ui.strong("");
                ui.strong("tokens");
                ui.end_row();
                for &(id, loss, right) in &report.worst {
                    let seq = data.sequence(id as usize);
                    ui.label(id.to_string());
                    ui.label(format!("{loss:.4}"));
                    if right {
                        ui.label("right");
                    } else {
                        ui.colored_label(ui.visuals().error_fg_color, "wrong");
                    }
                    let text: Vec<String> = seq.iter().map(|&t| name(t)).collect();
                    if ui.link(RichText::new(text.join(" ")).monospace()).clicked() {
                        clicked = Some(seq.to_vec());
                    }
                    ui.end_row();
                }
            });
    });
    if let Some(tokens) = clicked {
        f.act(Action::InspectSequence(tokens));
    }
}
