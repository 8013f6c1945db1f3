//! What the model is trained on: for skip-trigrams label histograms, the signal fraction and a
//! sample table; for induction the sequences with their repeated half; for modular addition the
//! p × p grid of pairs by split and, for the model in view, by correctness.

use egui::{Color32, RichText, Sense, Ui, vec2};
use egui_plot::{Bar, BarChart, Legend, Plot};

use super::heatmap::cached_texture;
use crate::app::views::{
    DataSummary, DataView, GRADED_SEQUENCES, PairGrid, RIGHT, SequenceTable, TEST_PAIR, TRAIN_PAIR,
    WRONG,
};
use crate::app::{Action, DataFilter, SequenceFilter};
use crate::task::sequences::{Split, UNSCORED};
use crate::ui::Frame;

pub fn show(f: &mut Frame<'_>, ui: &mut Ui) {
    if !f.form.settings.config.task.has_data() {
        ui.add_space(20.0);
        ui.label(
            "The model in view came without a task, so there are no data to show. Attach a data \
             file to evaluate and fine-tune it, or choose a task in the side panel to train a \
             model on it.",
        );
        super::attach_button(f, ui);
        return;
    }
    let key = f.app.data_key();
    let Some(view) = super::job_result(
        ui,
        &f.app.analysis.data,
        &key,
        "generating the data of the settings…",
    ) else {
        return;
    };
    let seed = f.form.settings.config.seed;
    let clicked = match view {
        DataView::SkipTrigram(summary) => {
            let signal_prob = f
                .form
                .settings
                .config
                .task
                .skip_trigram()
                .map_or(0.0, |t| t.signal_prob);
            skip_trigram(
                summary,
                &mut f.form.settings.data_filter,
                seed,
                signal_prob,
                ui,
            )
        }
        DataView::Induction { sequences, task } => induction(sequences, task, seed, ui),
        DataView::ModularAddition(grid) => modular(grid, seed, ui),
        DataView::Sequences(table) => {
            sequences(table, &mut f.form.settings.sequence_filter, seed, ui)
        }
    };
    if let Some(tokens) = clicked {
        f.act(Action::InspectSequence(tokens));
    }
}

fn skip_trigram(
    summary: &DataSummary,
    data_filter: &mut DataFilter,
    seed: u64,
    signal_prob: f64,
    ui: &mut Ui,
) -> Option<Vec<u32>> {
    ui.horizontal(|ui| {
        ui.label("Show");
        ui.selectable_value(data_filter, DataFilter::All, "all");
        ui.selectable_value(data_filter, DataFilter::Signal, "signal");
        ui.selectable_value(data_filter, DataFilter::Noise, "noise");
        ui.weak("· click a row to inspect it");
    });
    let filter = *data_filter;
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
    clicked
}

const FIRST_HALF: Color32 = Color32::from_rgb(66, 133, 244);
const REPEATED: Color32 = Color32::from_rgb(234, 120, 40);
const FILLER: Color32 = Color32::from_gray(130);

/// The first training sequences, the repeated half in its own colour.
fn induction(
    sequences: &[u32],
    task: &crate::task::InductionConfig,
    seed: u64,
    ui: &mut Ui,
) -> Option<Vec<u32>> {
    let (len, half) = (task.seq_len(), task.half);
    let layout = if task.gap_max == 0 {
        format!("{half} random tokens, then the same {half} again")
    } else {
        format!(
            "{half} random tokens, a gap of 0 to {} random tokens, the same {half} again, then \
             random tokens to the end",
            task.gap_max
        )
    };
    ui.label(format!(
        "Training sequences of seed {seed} (the first {} of a fresh stream; every step draws new \
         ones): {layout}. Click a row to inspect it.",
        sequences.len() / len.max(1)
    ));
    ui.horizontal(|ui| {
        swatch(
            ui,
            FIRST_HALF,
            "random half: unpredictable, loss floor ln V",
        );
        swatch(
            ui,
            REPEATED,
            "repeated half: predictable by induction, floor 0",
        );
        if task.gap_max > 0 {
            swatch(ui, FILLER, "gap and filler: random");
        }
    });
    let mut clicked = None;
    let row_height = ui.text_style_height(&egui::TextStyle::Monospace) + 6.0;
    egui::ScrollArea::both()
        .auto_shrink([false, false])
        .show_rows(ui, row_height, sequences.len() / len.max(1), |ui, range| {
            for i in range {
                let seq = &sequences[i * len..(i + 1) * len];
                let response = ui
                    .horizontal(|ui| {
                        ui.add_sized([50.0, row_height], egui::Label::new(i.to_string()));
                        // One label per row, its halves in two colours: one galley to lay out,
                        // not one per token.
                        let mut job = egui::text::LayoutJob::default();
                        let font = egui::TextStyle::Monospace.resolve(ui.style());
                        let start = task.repeat_start(seq);
                        for (part, color) in [
                            (&seq[..half], FIRST_HALF),
                            (&seq[half..start], FILLER),
                            (&seq[start..start + half], REPEATED),
                            (&seq[start + half..], FILLER),
                        ] {
                            let text: String = part.iter().map(|t| format!("{t:>4}")).collect();
                            job.append(&text, 0.0, egui::TextFormat::simple(font.clone(), color));
                        }
                        ui.label(job);
                    })
                    .response
                    .interact(Sense::click());
                if response.on_hover_text("inspect this sequence").clicked() {
                    clicked = Some(seq.to_vec());
                }
            }
        });
    clicked
}

/// The p × p pairs (rows a, columns b), by split, and by correctness where the model in view
/// was trained on this split. Clicking a cell inspects `a b =`.
fn modular(grid: &PairGrid, seed: u64, ui: &mut Ui) -> Option<Vec<u32>> {
    let PairGrid {
        p,
        ref train_mask,
        ref correct,
        train,
        right,
        ..
    } = *grid;
    ui.label(format!(
        "All {} pairs (a, b) of a + b mod {p}, rows a, columns b: {train} train ({:.1} %), {} test; \
         split of seed {seed}.",
        p * p,
        100.0 * train as f64 / (p * p) as f64,
        p * p - train
    ));
    match right {
        Some((train_right, test_right)) => {
            ui.horizontal_wrapped(|ui| {
                swatch(ui, TRAIN_PAIR, &format!("train, right ({train_right})"));
                swatch(
                    ui,
                    WRONG,
                    &format!("train, wrong ({})", train - train_right),
                );
                swatch(ui, RIGHT, &format!("test, right ({test_right})"));
                swatch(
                    ui,
                    TEST_PAIR,
                    &format!("test, wrong ({})", p * p - train - test_right),
                );
            });
        }
        None => {
            ui.horizontal_wrapped(|ui| {
                swatch(ui, TRAIN_PAIR, "train");
                swatch(ui, TEST_PAIR, "test");
                ui.weak("(train a model on this split to see which pairs it gets right)");
            });
        }
    }
    let side = (ui.available_height() - 8.0)
        .min(ui.available_width() - 8.0)
        .max(100.0);
    let (response, painter) = ui.allocate_painter(vec2(side, side), Sense::click());
    let cell = side / p as f32;
    let origin = response.rect.min;
    // One texture, uploaded once per grid the job made.
    let slot = egui::Id::unique("modular grid");
    let texture = cached_texture(ui.ctx(), slot, grid.id, || grid.image.clone());
    let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
    painter.image(texture.id(), response.rect, uv, Color32::WHITE);
    let pair_at = |pos: egui::Pos2| {
        let rel = pos - origin;
        let (a, b) = ((rel.y / cell) as usize, (rel.x / cell) as usize);
        (a < p && b < p).then_some((a, b))
    };
    let hovered = response.hover_pos().and_then(pair_at);
    let response = match hovered {
        Some((a, b)) => {
            let i = a * p + b;
            let split = if train_mask[i] { "train" } else { "test" };
            let verdict = correct.as_ref().map_or(String::new(), |c| {
                if c[i] {
                    ", answered right".into()
                } else {
                    ", answered wrong".into()
                }
            });
            response.on_hover_text(format!(
                "{a} + {b} = {} (mod {p}): {split}{verdict}; click to inspect",
                (a + b) % p
            ))
        }
        None => response,
    };
    if response.clicked()
        && let Some((a, b)) = response.interact_pointer_pos().and_then(pair_at)
    {
        return Some(vec![a as u32, b as u32, p as u32]);
    }
    None
}

const SCORED: Color32 = Color32::from_rgb(234, 120, 40);
const CONTEXT: Color32 = Color32::from_gray(150);

/// A data file's sequences, each token by name; the tokens the file scores predicting in colour
/// (green and red once the model in view grades them). Click a row to inspect it.
fn sequences(
    table: &SequenceTable,
    filter: &mut SequenceFilter,
    seed: u64,
    ui: &mut Ui,
) -> Option<Vec<u32>> {
    let data = &table.data;
    let val = data.len() - table.train;
    ui.label(format!(
        "{} sequences of {} tokens, {} token ids: {} train and {val} validation (split of seed \
         {seed}). Click a row to inspect it.",
        data.len(),
        data.seq_len,
        data.d_vocab,
        table.train
    ));
    let graded = table.graded.as_ref();
    ui.horizontal_wrapped(|ui| {
        ui.label("Show");
        ui.selectable_value(filter, SequenceFilter::All, "all");
        ui.selectable_value(filter, SequenceFilter::Train, "train");
        ui.selectable_value(filter, SequenceFilter::Val, "validation");
        if let Some((_, right)) = graded {
            let n = right.iter().filter(|&&r| r).count();
            ui.selectable_value(filter, SequenceFilter::Right, format!("right ({n})"));
            ui.selectable_value(
                filter,
                SequenceFilter::Wrong,
                format!("wrong ({})", right.len() - n),
            );
        }
    });
    ui.horizontal_wrapped(|ui| match graded {
        Some((_, right)) => {
            swatch(ui, RIGHT, "scored token, predicted right");
            swatch(ui, WRONG, "scored token, predicted wrong");
            if right.len() < data.len() {
                ui.weak(format!(
                    "(the model in view graded the first {GRADED_SEQUENCES} sequences)"
                ));
            }
        }
        None => {
            swatch(ui, SCORED, "scored: the model is trained to predict it");
            swatch(ui, CONTEXT, "context");
            ui.weak("(train a model on these data to see which it gets right)");
        }
    });
    if graded.is_none() && matches!(*filter, SequenceFilter::Right | SequenceFilter::Wrong) {
        *filter = SequenceFilter::All;
    }
    let keep = |i: usize| match *filter {
        SequenceFilter::All => true,
        SequenceFilter::Train => table.split[i] == Split::Train,
        SequenceFilter::Val => table.split[i] == Split::Val,
        SequenceFilter::Right | SequenceFilter::Wrong => graded
            .and_then(|(_, right)| right.get(i))
            .is_some_and(|&r| r == (*filter == SequenceFilter::Right)),
    };
    let rows: Vec<usize> = (0..data.len()).filter(|&i| keep(i)).collect();
    let mut clicked = None;
    let row_height = ui.text_style_height(&egui::TextStyle::Monospace) + 6.0;
    let width = (0..data.d_vocab.min(4096) as u32)
        .map(|t| data.token_name(t).chars().count())
        .max()
        .unwrap_or(1)
        .clamp(1, 12);
    egui::ScrollArea::both()
        .auto_shrink([false, false])
        .show_rows(ui, row_height, rows.len(), |ui, range| {
            for &i in &rows[range] {
                let (seq, targets) = (data.sequence(i), data.targets_of(i));
                let predictions = graded
                    .filter(|(_, right)| i < right.len())
                    .map(|(p, _)| &p[i * data.seq_len..(i + 1) * data.seq_len]);
                let response = ui
                    .horizontal(|ui| {
                        ui.add_sized([60.0, row_height], egui::Label::new(i.to_string()));
                        let split = match table.split[i] {
                            Split::Train => "train",
                            Split::Val => "val",
                        };
                        ui.add_sized([40.0, row_height], egui::Label::new(split));
                        // One label per row: one galley to lay out, not one per token.
                        let mut job = egui::text::LayoutJob::default();
                        let font = egui::TextStyle::Monospace.resolve(ui.style());
                        for (p, &token) in seq.iter().enumerate() {
                            // Position p's token is the target of position p − 1.
                            let target = p.checked_sub(1).map_or(UNSCORED, |q| targets[q]);
                            let color = match (target, predictions) {
                                (UNSCORED, _) => CONTEXT,
                                (t, Some(pred)) if pred[p - 1] == t => RIGHT,
                                (_, Some(_)) => WRONG,
                                (_, None) => SCORED,
                            };
                            let mut text = format!("{:>width$} ", data.token_name(token));
                            if target != UNSCORED && target != token {
                                // An explicit target that is not the next token.
                                text = format!(
                                    "{}→{} ",
                                    data.token_name(token),
                                    data.token_name(target)
                                );
                            }
                            job.append(&text, 0.0, egui::TextFormat::simple(font.clone(), color));
                        }
                        ui.label(job);
                    })
                    .response
                    .interact(Sense::click());
                if response.on_hover_text("inspect this sequence").clicked() {
                    clicked = Some(seq.to_vec());
                }
            }
        });
    clicked
}

/// A colour key: a small filled square and its meaning.
fn swatch(ui: &mut Ui, color: Color32, text: &str) {
    ui.horizontal(|ui| {
        let (rect, _) = ui.allocate_exact_size(vec2(10.0, 10.0), Sense::hover());
        ui.painter().rect_filled(rect, 1.0, color);
        ui.label(text);
    });
}
