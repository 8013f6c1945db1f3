//! The phase-diagram preset's map: a cell per instance of its grid (feature probability across,
//! the second feature's relative importance up), coloured by what the instance's W does with the
//! second feature; a click selects that instance.

use egui::{Color32, Pos2, Rect, RichText, Sense, Stroke, Ui, vec2};

use super::Frame;
use super::views::short;
use crate::app::Action;
use crate::app::superposition::{TmsAction, TmsWorkspace};
use crate::superposition::config::{PHASE_GRID, phase_point};
use crate::superposition::{Regime, regime};

/// The phase diagram: a cell per instance of the grid, coloured by the regime its W shows.
pub(super) fn show(f: &mut Frame<'_>, tms: &TmsWorkspace, ui: &mut Ui, width: f32) {
    let m = tms.run.model.n_hidden;
    let w = &tms.shown().weights.w;
    ui.label(RichText::new("Phase diagram: how the second feature is represented").strong())
        .on_hover_text(
            "columns: feature probability from 1 (left) to 0.01 (right); rows: the second \
             feature's importance relative to the first, 0.1 (bottom) to 10 (top). Each cell is \
             an instance, coloured by what its trained W does with the second feature",
        );
    let colour = |g: Regime| match g {
        Regime::NotRepresented => Color32::from_rgb(200, 200, 200),
        Regime::Dedicated => Color32::from_rgb(33, 102, 172),
        Regime::Superposition => Color32::from_rgb(214, 96, 77),
        Regime::Neither => Color32::from_rgb(60, 60, 60),
    };
    let side = (width - 76.0).clamp(200.0, 360.0);
    let cell = side / PHASE_GRID as f32;
    let (rect, response) = ui.allocate_exact_size(vec2(side + 76.0, side + 36.0), Sense::click());
    let origin = rect.min + vec2(72.0, 0.0);
    let painter = ui.painter_at(rect);
    let text = ui.visuals().text_color();
    let cell_rect = |r: usize, c: usize| {
        Rect::from_min_size(
            origin + vec2(c as f32 * cell, (PHASE_GRID - 1 - r) as f32 * cell),
            vec2(cell, cell),
        )
    };
    for r in 0..PHASE_GRID {
        for c in 0..PHASE_GRID {
            let k = r * PHASE_GRID + c;
            let g = regime(&w[k * 2 * m..(k + 1) * 2 * m], m);
            painter.rect_filled(cell_rect(r, c).shrink(0.5), 0.0, colour(g));
        }
    }
    let selected = tms.instance.min(PHASE_GRID * PHASE_GRID - 1);
    painter.rect_stroke(
        cell_rect(selected / PHASE_GRID, selected % PHASE_GRID),
        0.0,
        Stroke::new(2.0, text),
        egui::StrokeKind::Inside,
    );
    let font = egui::FontId::proportional(11.0);
    let axis =
        |pos: Pos2, align, label: String| painter.text(pos, align, label, font.clone(), text);
    axis(
        origin + vec2(-4.0, side),
        egui::Align2::RIGHT_BOTTOM,
        format!("{:.1}", phase_point(0, 0).1),
    );
    axis(
        origin + vec2(-4.0, 0.0),
        egui::Align2::RIGHT_TOP,
        format!("{:.0}", phase_point(PHASE_GRID - 1, 0).1),
    );
    axis(
        origin + vec2(-4.0, side / 2.0),
        egui::Align2::RIGHT_CENTER,
        "importance".into(),
    );
    axis(
        origin + vec2(0.0, side + 2.0),
        egui::Align2::LEFT_TOP,
        "p = 1".into(),
    );
    axis(
        origin + vec2(side, side + 2.0),
        egui::Align2::RIGHT_TOP,
        short(phase_point(0, PHASE_GRID - 1).0),
    );
    axis(
        origin + vec2(side / 2.0, side + 16.0),
        egui::Align2::CENTER_TOP,
        "feature probability".into(),
    );
    if let Some(pos) = response
        .interact_pointer_pos()
        .filter(|_| response.clicked())
    {
        let c = ((pos.x - origin.x) / cell).floor();
        let r = PHASE_GRID as f32 - 1.0 - ((pos.y - origin.y) / cell).floor();
        if (0.0..PHASE_GRID as f32).contains(&c) && (0.0..PHASE_GRID as f32).contains(&r) {
            f.act(Action::Tms(TmsAction::Select(
                r as usize * PHASE_GRID + c as usize,
            )));
        }
    }
    ui.set_max_width(width);
    ui.horizontal_wrapped(|ui| {
        for (g, label) in [
            (Regime::NotRepresented, "second feature not represented"),
            (Regime::Dedicated, "dedicated dimension"),
            (Regime::Superposition, "superposition"),
            (Regime::Neither, "neither"),
        ] {
            let (r, _) = ui.allocate_exact_size(vec2(12.0, 12.0), Sense::hover());
            ui.painter().rect_filled(r, 2.0, colour(g));
            ui.weak(label);
        }
    });
}
