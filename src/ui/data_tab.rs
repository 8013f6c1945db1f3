//! What the model is trained on: label histograms, the signal fraction and a sample table.

use egui::{Color32, RichText, Ui};
use egui_plot::{Bar, BarChart, Legend, Plot};

use crate::app::{Action, DataFilter, ToylensApp};

pub fn show(app: &mut ToylensApp, ui: &mut Ui) {
    ui.horizontal(|ui| {
        ui.label("Show");
        ui.selectable_value(&mut app.settings.data_filter, DataFilter::All, "all");
        ui.selectable_value(&mut app.settings.data_filter, DataFilter::Signal, "signal");
        ui.selectable_value(&mut app.settings.data_filter, DataFilter::Noise, "noise");
        ui.weak("· click a row to inspect it");
    });
    let filter = app.settings.data_filter;
    let seed = app.settings.config.seed;
    let signal_prob = app.settings.config.task.signal_prob;
    let key = app.data_key();
    let Some(summary) = super::job_result(
        ui,
        &app.analysis.data,
        &key,
        "generating the training set of the settings…",
    ) else {
        return;
    };
    let data = &summary.data;
    let ceilings = summary.ceilings;
    ui.label(format!(
        "Training set of seed {seed}: {} samples, signal fraction {:.4} (expected {signal_prob:.2}); \
         best accuracy on it {:.4}, Bayes cross-entropy {:.4}",
        data.len(),
        ceilings.signal_frac,
        ceilings.best_acc,
        ceilings.bayes_ce,
    ));
    let (signal, noise) = (&summary.signal_histogram, &summary.noise_histogram);
    let bars = |counts: &[usize], offset: f64| -> Vec<Bar> {
        counts
            .iter()
            .enumerate()
            .map(|(label, &n)| Bar::new(label as f64 + offset, n as f64).width(0.4))
            .collect()
    };
    ui.label(
        RichText::new(
            "Labels of signal samples: pairs with a == b (labels 0, 4, 7, 9) are half as likely. \
             Noise labels are uniform.",
        )
        .weak(),
    );
    Plot::new("label_histogram")
        .height(220.0)
        .legend(Legend::default())
        .x_axis_label("label")
        .y_axis_label("samples")
        .allow_scroll(false)
        .show(ui, |p| {
            p.bar_chart(
                BarChart::new("signal", bars(signal, -0.2)).color(Color32::from_rgb(52, 168, 83)),
            );
            p.bar_chart(
                BarChart::new("noise", bars(noise, 0.2)).color(Color32::from_rgb(170, 90, 200)),
            );
        });
    let mut clicked = None;
    let row_height = ui.text_style_height(&egui::TextStyle::Body) + 4.0;
    ui.horizontal(|ui| {
        for (w, h) in [
            (70.0, "#"),
            (140.0, "tokens"),
            (60.0, "label"),
            (60.0, "kind"),
        ] {
            ui.add_sized([w, row_height], egui::Label::new(RichText::new(h).strong()));
        }
    });
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show_rows(ui, row_height, summary.row_count(filter), |ui, range| {
            for i in range.map(|r| summary.row(filter, r)) {
                let tokens = data.sample(i);
                let text = tokens
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" ");
                let response = ui
                    .horizontal(|ui| {
                        ui.add_sized([70.0, row_height], egui::Label::new(i.to_string()));
                        ui.add_sized(
                            [140.0, row_height],
                            egui::Label::new(RichText::new(&text).monospace()),
                        );
                        ui.add_sized(
                            [60.0, row_height],
                            egui::Label::new(data.labels[i].to_string()),
                        );
                        ui.add_sized(
                            [60.0, row_height],
                            egui::Label::new(if data.is_signal[i] { "signal" } else { "noise" }),
                        );
                    })
                    .response
                    .interact(egui::Sense::click());
                if response.hovered() {
                    ui.painter().rect_filled(
                        response.rect,
                        0.0,
                        ui.visuals().selection.bg_fill.gamma_multiply(0.25),
                    );
                }
                if response.on_hover_text("inspect this sequence").clicked() {
                    clicked = Some(tokens.to_vec());
                }
            }
        });
    if let Some(tokens) = clicked {
        app.request(Action::InspectSequence(tokens));
    }
}
