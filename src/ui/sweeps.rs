//! The Sweep workspace: the phase diagram of a sweep folder over any two of its axes, coloured by
//! any summary metric (the median over seeds, or the most common regime), a selector for every
//! other axis; hover for each seed's value, click for the cell's runs and their curves overlaid.
//! It reads `crate::app::sweeps`' state and returns [`SweepAction`]s.

use egui::{Align2, Color32, FontId, Rect, RichText, Sense, Stroke, Ui, pos2, vec2};
use egui_plot::{Legend, Line, Plot, PlotPoints};

use super::Frame;
use super::heatmap::{Scale, colour};
use crate::app::Action;
use crate::app::sweeps::{
    CellRun, CellValue, PhaseMap, REGIME, STATUS, SweepAction, SweepWorkspace, number_label,
};

pub(super) fn panels(f: &mut Frame<'_>, ui: &mut Ui) {
    let Some(sweep) = f.app.sweep.as_ref() else {
        egui::CentralPanel::default().show(ui, |ui| empty(f, ui));
        return;
    };
    egui::Panel::left("sweep_settings")
        .resizable(true)
        .default_size(300.0)
        .min_size(260.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| settings(f, sweep, ui));
        });
    if sweep.selected.is_some() {
        egui::Panel::right("sweep_cell")
            .resizable(true)
            .default_size(440.0)
            .min_size(320.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .auto_shrink([false, false])
                    .show(ui, |ui| selected_cell(f, sweep, ui));
            });
    }
    egui::CentralPanel::default().show(ui, |ui| {
        egui::ScrollArea::both()
            .auto_shrink([false, false])
            .show(ui, |ui| map_view(f, sweep, ui));
    });
}

/// "12 of 50 runs finished · 1 failed" for the status line.
pub(super) fn status_line(sweep: &SweepWorkspace) -> String {
    let done = sweep.summary.rows.len();
    let bad = sweep
        .summary
        .rows
        .iter()
        .filter(|r| r.result.status != crate::sweep::Status::Done)
        .count();
    let mut line = format!(
        "sweep {} · {done} of {} runs finished",
        sweep.root().display(),
        sweep.folder.len()
    );
    if !sweep.summary.started.is_empty() {
        line += &format!(" · {} started", sweep.summary.started.len());
    }
    if bad > 0 {
        line += &format!(" · {bad} not done (failed, diverged or timed out)");
    }
    line
}

/// A run's status: its result's, else how far it has come ("started: epoch 1200, 3 s ago"),
/// and what Slurm says of its task while it has one queued or running.
fn run_status(run: &CellRun) -> String {
    if let Some(status) = &run.status {
        return status.clone();
    }
    let slurm = run.queue.as_deref().map(|state| match state {
        "RUNNING" => "running on Slurm".to_string(),
        "PENDING" => "queued on Slurm".to_string(),
        other => format!("{other} on Slurm"),
    });
    let Some(progress) = &run.progress else {
        return slurm.unwrap_or_else(|| "not started".into());
    };
    let at = progress.at.map_or("no evaluation yet".into(), |(unit, n)| {
        format!("{unit} {n}")
    });
    // A file written "in the future" (clocks of another node) counts as just now.
    let age = progress.modified.elapsed().unwrap_or_default().as_secs();
    let ago = match age {
        0..120 => format!("{age} s ago"),
        120..7200 => format!("{} min ago", age / 60),
        _ => format!("{} h ago", age / 3600),
    };
    format!(
        "{}: {at}, written {ago}",
        slurm.as_deref().unwrap_or("started")
    )
}

/// A run in a cell's hover text: its value and status, or how far it has come.
fn run_state(run: &CellRun) -> String {
    match (&run.status, &run.value) {
        (Some(status), value) => format!("{} ({status})", value.as_deref().unwrap_or("—")),
        (None, _) => run_status(run),
    }
}

fn empty(f: &mut Frame<'_>, ui: &mut Ui) {
    ui.add_space(24.0);
    ui.heading("No sweep open");
    ui.label(
        "A sweep trains a grid of runs over any config fields and seeds, and this workspace \
         maps them: which regime each point lands in, or any metric, over any two axes. Make \
         one on the command line, here or on a Slurm cluster:",
    );
    ui.add_space(4.0);
    ui.code(
        "toylens sweep --preset grokking-fast --grid train.lr=1e-3,3e-3 \\\n    \
         --grid train.weight_decay=0.1,1 --seeds 0..2 --out runs/",
    );
    ui.add_space(8.0);
    if ui.button("Open sweep…").clicked() {
        f.act(Action::Sweep(SweepAction::Open));
    }
}

fn settings(f: &mut Frame<'_>, sweep: &SweepWorkspace, ui: &mut Ui) {
    ui.heading("Sweep");
    ui.label(RichText::new(sweep.root().display().to_string()).monospace())
        .on_hover_text("the sweep folder; the view re-reads it every second");
    let summary = &sweep.summary;
    ui.label(format!(
        "{} runs: {} finished, {} started, {} not started",
        sweep.folder.len(),
        summary.rows.len(),
        summary.started.len(),
        summary.pending
    ))
    .on_hover_text(
        "started: a run with a history but no result yet, running or stopped without one \
         (the map marks its cell …; hover it for the run's last evaluation)",
    );
    if !sweep.queue.is_empty() {
        let mut by_state = std::collections::BTreeMap::<&str, usize>::new();
        for state in sweep.queue.values() {
            *by_state.entry(state.as_str()).or_default() += 1;
        }
        let states: Vec<String> = by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
        ui.label(format!("Slurm: {}", states.join(", ")))
            .on_hover_text("the sweep's array tasks Slurm has queued or running (squeue)");
    }
    if !sweep.summary.unreadable.is_empty() {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!("{} results do not read", sweep.summary.unreadable.len()),
        );
    }
    if ui.button("Open sweep…").clicked() {
        f.act(Action::Sweep(SweepAction::Open));
    }
    ui.separator();
    let axes = &sweep.folder.file.spec.axes;
    if axes.is_empty() {
        ui.label("This sweep varies only the seed: one cell.");
    } else {
        let name = |a: usize| axes[a].field.clone();
        egui::Grid::new("sweep_axes").num_columns(2).show(ui, |ui| {
            let label = ui.label("Across");
            egui::ComboBox::from_id_salt("sweep_x")
                .selected_text(name(sweep.x))
                .show_ui(ui, |ui| {
                    for a in 0..axes.len() {
                        if ui.selectable_label(a == sweep.x, name(a)).clicked() {
                            f.act(Action::Sweep(SweepAction::SetX(a)));
                        }
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Up");
            egui::ComboBox::from_id_salt("sweep_y")
                .selected_text(sweep.y.map_or("(one row)".into(), name))
                .show_ui(ui, |ui| {
                    if ui
                        .selectable_label(sweep.y.is_none(), "(one row)")
                        .clicked()
                    {
                        f.act(Action::Sweep(SweepAction::SetY(None)));
                    }
                    for a in (0..axes.len()).filter(|&a| a != sweep.x) {
                        if ui.selectable_label(Some(a) == sweep.y, name(a)).clicked() {
                            f.act(Action::Sweep(SweepAction::SetY(Some(a))));
                        }
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            // Every other axis: which of its values the map shows.
            for a in (0..axes.len()).filter(|&a| a != sweep.x && Some(a) != sweep.y) {
                let label = ui.label(name(a));
                let shown = sweep.fixed[a];
                let labels = &sweep.labels[a];
                if labels.len() == 1 {
                    ui.label(&labels[0]);
                    ui.end_row();
                    continue;
                }
                egui::ComboBox::from_id_salt(("sweep_fixed", a))
                    .selected_text(&labels[shown])
                    .show_ui(ui, |ui| {
                        for (k, v) in labels.iter().enumerate() {
                            if ui.selectable_label(k == shown, v).clicked() {
                                f.act(Action::Sweep(SweepAction::Fix { axis: a, value: k }));
                            }
                        }
                    })
                    .response
                    .labelled_by(label.id);
                ui.end_row();
            }
        });
    }
    ui.separator();
    ui.horizontal(|ui| {
        let label = ui.label("Colour by");
        egui::ComboBox::from_id_salt("sweep_metric")
            .selected_text(&sweep.metric)
            .width(180.0)
            .show_ui(ui, |ui| {
                for m in sweep.metric_choices() {
                    if ui.selectable_label(m == sweep.metric, &m).clicked() {
                        f.act(Action::Sweep(SweepAction::Metric(m)));
                    }
                }
            })
            .response
            .labelled_by(label.id);
    });
    let positive = sweep.map.range.is_some_and(|(lo, _)| lo > 0.0);
    let mut log = sweep.log_scale;
    if ui
        .add_enabled(positive, egui::Checkbox::new(&mut log, "log colour scale"))
        .on_hover_text("colour by log10 of the values: for ones spanning orders of magnitude")
        .on_disabled_hover_text("for a numeric metric whose cells are all positive")
        .changed()
    {
        f.act(Action::Sweep(SweepAction::LogScale(log)));
    }
    ui.weak(
        "Each cell: the median over its seeds, or the most common regime; a milestone a run \
         never reached counts as never. Hover a cell for each seed.",
    );
    ui.separator();
    if ui
        .button("Export table as CSV…")
        .on_hover_text("every finished run: its axes, seed, status, milestones and metrics")
        .clicked()
    {
        f.act(Action::Sweep(SweepAction::ExportCsv));
    }
}

/// The colour of a category (regimes, then statuses).
fn category_colour(name: &str) -> Color32 {
    match name {
        "comprehension" => Color32::from_rgb(26, 152, 80),
        "grokking" => Color32::from_rgb(253, 174, 97),
        "memorization" => Color32::from_rgb(69, 117, 180),
        "confusion" => Color32::from_rgb(150, 150, 150),
        "done" => Color32::from_rgb(26, 152, 80),
        "diverged" => Color32::from_rgb(215, 48, 39),
        "failed" => Color32::from_rgb(120, 20, 20),
        "timeout" => Color32::from_rgb(118, 42, 131),
        _ => Color32::from_rgb(90, 90, 90),
    }
}

const EMPTY: Color32 = Color32::from_rgb(225, 225, 225);
const NEVER: Color32 = Color32::from_rgb(60, 60, 60);

fn cell_colour(value: &CellValue, map: &PhaseMap) -> Color32 {
    match value {
        CellValue::Empty => EMPTY,
        CellValue::Category(c) => category_colour(c),
        CellValue::Number(x) if !x.is_finite() => NEVER,
        CellValue::Number(x) => scale_colour(map.position(*x)),
    }
}

/// The colour at `t` (0 to 1) of the numbers' scale: never white, so that a cell at the bottom
/// of the range stays visible against the page.
fn scale_colour(t: f64) -> Color32 {
    colour(Scale::Sequential { max: 1.0 }, 0.12 + 0.88 * t as f32)
}

/// Text on a cell, in a colour that reads on it.
fn on(colour: Color32) -> Color32 {
    let [r, g, b, _] = colour.to_array();
    if 0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32 > 150.0 {
        Color32::BLACK
    } else {
        Color32::WHITE
    }
}

fn map_view(f: &mut Frame<'_>, sweep: &SweepWorkspace, ui: &mut Ui) {
    let axes = &sweep.folder.file.spec.axes;
    let map = &sweep.map;
    let title = match (axes.get(sweep.x), sweep.y.and_then(|y| axes.get(y))) {
        (Some(x), Some(y)) => format!("{} over {} × {}", sweep.metric, x.field, y.field),
        (Some(x), None) => format!("{} over {}", sweep.metric, x.field),
        _ => sweep.metric.clone(),
    };
    let start = ui.cursor().min;
    ui.label(RichText::new(title).heading());
    if !sweep.read_once {
        ui.horizontal(|ui| {
            ui.add(super::spinner::CalmSpinner);
            ui.weak("reading the runs…");
        });
        return;
    }
    if map.cells.is_empty() {
        ui.weak("nothing to map");
        return;
    }
    let x_name = axes.get(sweep.x).map_or("", |a| a.field.as_str());
    let y_name = sweep
        .y
        .and_then(|y| axes.get(y))
        .map_or("", |a| a.field.as_str());
    let (_, clicked) = draw_map(ui, sweep, map, x_name, y_name);
    if let Some(cell) = clicked {
        let again = sweep.selected == Some(cell);
        f.act(Action::Sweep(SweepAction::Select((!again).then_some(cell))));
    }
    ui.add_space(6.0);
    legend(ui, sweep, map);
    // The title, the map and the legend: what the PNG shows.
    let shown = egui::Rect::from_min_max(start, pos2(ui.min_rect().max.x, ui.cursor().min.y));
    ui.add_space(6.0);
    if ui
        .button("Export map as PNG…")
        .on_hover_text("the title, the map and its legend as an image")
        .clicked()
    {
        f.act(Action::ExportPng(shown.expand(6.0)));
    }
}

/// Paints the map and returns its area (labels included) and the cell clicked, if any.
fn draw_map(
    ui: &mut Ui,
    sweep: &SweepWorkspace,
    map: &PhaseMap,
    x_name: &str,
    y_name: &str,
) -> (Rect, Option<(usize, usize)>) {
    let (ncols, nrows) = (map.cols.len(), map.rows.len());
    let font = FontId::proportional(12.0);
    let label_w = map.rows.iter().map(|l| l.len()).max().unwrap_or(0) as f32 * 7.0 + 28.0;
    let available = ui.available_width() - label_w - 8.0;
    let cell = (available / ncols as f32).clamp(28.0, 96.0);
    let (cell_w, cell_h) = (cell, (cell * 0.75).max(26.0));
    let top = 20.0;
    let size = vec2(
        label_w + ncols as f32 * cell_w,
        top + nrows as f32 * cell_h + 40.0,
    );
    let (rect, response) = ui.allocate_exact_size(size, Sense::click());
    let painter = ui.painter_at(rect);
    let text = ui.visuals().text_color();
    let origin = rect.min + vec2(label_w, top);
    // Row 0 (the y axis's first value) at the bottom, as phase diagrams are drawn.
    let cell_rect = |c: usize, r: usize| {
        Rect::from_min_size(
            origin + vec2(c as f32 * cell_w, (nrows - 1 - r) as f32 * cell_h),
            vec2(cell_w, cell_h),
        )
    };
    for r in 0..nrows {
        for c in 0..ncols {
            let Some(cell) = map.cell(c, r) else { continue };
            let fill = cell_colour(&cell.value, map);
            let at = cell_rect(c, r).shrink(1.0);
            painter.rect_filled(at, 2.0, fill);
            // Seeds that disagree: each one's colour in a stripe, under the majority's name.
            let n = cell.split.len() as f32;
            for (k, category) in cell.split.iter().enumerate() {
                let x0 = at.min.x + at.width() * k as f32 / n;
                let stripe =
                    Rect::from_min_max(pos2(x0, at.min.y), pos2(x0 + at.width() / n, at.max.y));
                painter.rect_filled(stripe, 0.0, category_colour(category));
            }
            let label = match &cell.value {
                CellValue::Empty if cell.under_way() => "…".to_string(),
                CellValue::Empty => "·".to_string(),
                CellValue::Number(x) => number_label(*x),
                CellValue::Category(_) if !cell.split.is_empty() => "split".into(),
                CellValue::Category(c) => c.clone(),
            };
            // The whole label where it fits, else its start.
            let fits = |s: &str| {
                painter
                    .layout_no_wrap(s.to_string(), font.clone(), text)
                    .size()
                    .x
                    <= at.width() - 4.0
            };
            let label = if fits(&label) {
                label
            } else {
                label.chars().take(4).collect()
            };
            if fits(&label) {
                painter.text(
                    at.center(),
                    Align2::CENTER_CENTER,
                    label,
                    font.clone(),
                    on(fill),
                );
            }
        }
    }
    if let Some((c, r)) = sweep.selected {
        painter.rect_stroke(
            cell_rect(c, r),
            2.0,
            Stroke::new(2.5, text),
            egui::StrokeKind::Inside,
        );
    }
    for (r, label) in map.rows.iter().enumerate() {
        let y = cell_rect(0, r).center().y;
        painter.text(
            pos2(origin.x - 6.0, y),
            Align2::RIGHT_CENTER,
            label,
            font.clone(),
            text,
        );
    }
    let bottom = origin.y + nrows as f32 * cell_h;
    for (c, label) in map.cols.iter().enumerate() {
        let x = cell_rect(c, 0).center().x;
        painter.text(
            pos2(x, bottom + 4.0),
            Align2::CENTER_TOP,
            label,
            font.clone(),
            text,
        );
    }
    painter.text(
        pos2(origin.x + ncols as f32 * cell_w / 2.0, bottom + 22.0),
        Align2::CENTER_TOP,
        x_name,
        FontId::proportional(13.0),
        text,
    );
    if !y_name.is_empty() {
        painter.text(
            pos2(rect.min.x, rect.min.y),
            Align2::LEFT_TOP,
            y_name,
            FontId::proportional(13.0),
            text,
        );
    }
    let cell_at = |p: egui::Pos2| -> Option<(usize, usize)> {
        let local = p - origin;
        if local.x < 0.0 || local.y < 0.0 {
            return None;
        }
        let (c, row_from_top) = ((local.x / cell_w) as usize, (local.y / cell_h) as usize);
        (c < ncols && row_from_top < nrows).then(|| (c, nrows - 1 - row_from_top))
    };
    let hovered = response.hover_pos().and_then(cell_at);
    let clicked = response
        .clicked()
        .then(|| response.interact_pointer_pos().and_then(cell_at))
        .flatten();
    if let Some((c, r)) = hovered
        && let Some(cell) = map.cell(c, r)
    {
        let mut lines = Vec::new();
        let where_ = [
            (!x_name.is_empty()).then(|| format!("{x_name} = {}", map.cols[c])),
            (!y_name.is_empty()).then(|| format!("{y_name} = {}", map.rows[r])),
        ];
        lines.push(where_.into_iter().flatten().collect::<Vec<_>>().join(", "));
        for run in &cell.runs {
            lines.push(format!("seed {}: {}", run.seed, run_state(run)));
        }
        lines.push("click: its runs' curves".into());
        response.on_hover_text_at_pointer(lines.join("\n"));
    }
    (rect, clicked)
}

fn legend(ui: &mut Ui, sweep: &SweepWorkspace, map: &PhaseMap) {
    ui.horizontal_wrapped(|ui| {
        let swatch = |ui: &mut Ui, colour: Color32, label: &str| {
            let (r, _) = ui.allocate_exact_size(vec2(14.0, 14.0), Sense::hover());
            ui.painter().rect_filled(r, 2.0, colour);
            ui.label(label);
            ui.add_space(6.0);
        };
        let categorical = sweep.metric == REGIME || sweep.metric == STATUS;
        if categorical {
            let mut names: Vec<&str> = map
                .cells
                .iter()
                .filter_map(|c| match &c.value {
                    CellValue::Category(n) => Some(n.as_str()),
                    _ => None,
                })
                .collect();
            names.sort_by_key(|n| SweepWorkspace::category_rank(n));
            names.dedup();
            for n in names {
                swatch(ui, category_colour(n), n);
            }
        } else if let Some((lo, hi)) = map.range {
            ui.label(number_label(lo));
            let (r, _) = ui.allocate_exact_size(vec2(120.0, 14.0), Sense::hover());
            for k in 0..24 {
                let t = k as f64 / 23.0;
                let x0 = r.min.x + r.width() * k as f32 / 24.0;
                let part = Rect::from_min_max(
                    pos2(x0, r.min.y),
                    pos2(x0 + r.width() / 24.0 + 0.5, r.max.y),
                );
                ui.painter().rect_filled(part, 0.0, scale_colour(t));
            }
            ui.label(number_label(hi));
            if map.log {
                ui.weak("(log scale)");
            }
            ui.add_space(8.0);
        }
        if map
            .cells
            .iter()
            .any(|c| matches!(c.value, CellValue::Number(x) if x.is_infinite()))
        {
            swatch(ui, NEVER, "never");
        }
        let empty = map.cells.iter().filter(|c| c.value == CellValue::Empty);
        if empty.clone().any(|c| c.under_way()) {
            swatch(ui, EMPTY, "no result yet (…: started)");
        } else if empty.count() > 0 {
            swatch(ui, EMPTY, "no result yet");
        }
    });
    if map.cells.iter().any(|c| !c.split.is_empty()) {
        ui.weak("split: the seeds disagree (a stripe per seed, in seed order)");
    }
    if sweep.metric == REGIME {
        ui.weak(
            "comprehension: test accuracy reached 99 % within twice the epochs train accuracy \
             took; grokking: later; memorization: train only; confusion: not even train",
        );
    }
}

fn selected_cell(f: &mut Frame<'_>, sweep: &SweepWorkspace, ui: &mut Ui) {
    let Some((c, r)) = sweep.selected else { return };
    let Some(cell) = sweep.map.cell(c, r) else {
        return;
    };
    let axes = &sweep.folder.file.spec.axes;
    ui.horizontal(|ui| {
        ui.heading("Cell");
        if ui
            .small_button("Close")
            .on_hover_text("deselect the cell")
            .clicked()
        {
            f.act(Action::Sweep(SweepAction::Select(None)));
        }
    });
    let mut at = Vec::new();
    if let Some(x) = axes.get(sweep.x) {
        at.push(format!("{} = {}", x.field, sweep.map.cols[c]));
    }
    if let Some(y) = sweep.y.and_then(|y| axes.get(y)) {
        at.push(format!("{} = {}", y.field, sweep.map.rows[r]));
    }
    ui.label(at.join(", "));
    egui::Grid::new("sweep_cell_runs")
        .striped(true)
        .show(ui, |ui| {
            ui.strong("run");
            ui.strong("seed");
            ui.strong("status");
            ui.strong(&sweep.metric);
            ui.label("");
            ui.end_row();
            for run in &cell.runs {
                ui.label(run.index.to_string());
                ui.label(run.seed.to_string());
                ui.label(run_status(run));
                ui.label(run.value.as_deref().unwrap_or("—"));
                if ui
                    .add_enabled(run.status.is_some(), egui::Button::new("Open run"))
                    .on_hover_text("open the run's checkpoint and history in its model's tabs")
                    .on_disabled_hover_text("it has no result yet")
                    .clicked()
                {
                    f.act(Action::Sweep(SweepAction::OpenRun(run.index)));
                }
                ui.end_row();
            }
        });
    ui.separator();
    let choices = sweep.curve_choices();
    if choices.is_empty() {
        ui.weak("no evaluations yet");
        return;
    }
    ui.horizontal(|ui| {
        let label = ui.label("Curves of");
        egui::ComboBox::from_id_salt("sweep_curve")
            .selected_text(&sweep.curve_metric)
            .show_ui(ui, |ui| {
                for m in choices {
                    if ui.selectable_label(m == sweep.curve_metric, &m).clicked() {
                        f.act(Action::Sweep(SweepAction::CurveMetric(m)));
                    }
                }
            })
            .response
            .labelled_by(label.id);
    });
    let key = sweep
        .histories
        .first()
        .map_or("epoch", |h| h.progress_key());
    Plot::new("sweep_curves")
        .height(260.0)
        .legend(Legend::default())
        .x_axis_label(key)
        .show(ui, |p| {
            for h in &sweep.histories {
                let points: Vec<[f64; 2]> = h
                    .evaluations
                    .iter()
                    .filter_map(|e| Some([*e.get(key)?, *e.get(&sweep.curve_metric)?]))
                    .collect();
                p.line(Line::new(
                    format!("run {} (seed {})", h.index, h.seed),
                    PlotPoints::from(points),
                ));
            }
        });
}
