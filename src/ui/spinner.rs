//! A busy indicator that animates at ten frames a second.
//!
//! egui's spinner asks for a new frame every frame while it is visible, so the app drew frames
//! nonstop for as long as any view was computing; on a software rasteriser each frame of the
//! Training tab costs tens of milliseconds of CPU on two threads, taken from the trainer and the
//! jobs themselves. This one draws the same arc and asks for the next frame 100 ms later.

use std::time::Duration;

use egui::{Rect, Response, Role, Sense, Shape, Stroke, Ui, Widget, WidgetInfo, emath, vec2};

/// How often the indicator moves.
const FRAME: Duration = Duration::from_millis(100);

pub struct CalmSpinner;

impl Widget for CalmSpinner {
    fn ui(self, ui: &mut Ui) -> Response {
        let size = ui.style().spacing.interact_size.y;
        let (rect, response) = ui.allocate_exact_size(vec2(size, size), Sense::hover());
        response.widget_info(|| WidgetInfo::new(Role::ProgressIndicator));
        paint(ui, rect);
        response
    }
}

fn paint(ui: &Ui, rect: Rect) {
    if !ui.is_rect_visible(rect) {
        return;
    }
    ui.ctx().request_repaint_after(FRAME);
    let color = ui.visuals().strong_text_color();
    let radius = rect.height().min(rect.width()) * 0.5 - 2.0;
    let n_points = (radius.round() as u32).clamp(8, 128);
    // Time in whole frames, so that each drawn frame moves the arc the same way.
    let time = (ui.input(|i| i.time) / FRAME.as_secs_f64()).floor() * FRAME.as_secs_f64();
    let start = time * std::f64::consts::TAU;
    let end = start + 240f64.to_radians() * time.sin();
    let points = (0..n_points)
        .map(|i| {
            let angle = emath::lerp(start..=end, i as f64 / n_points as f64);
            let (sin, cos) = angle.sin_cos();
            rect.center() + radius * vec2(cos as f32, sin as f32)
        })
        .collect();
    ui.painter()
        .add(Shape::line(points, Stroke::new(3.0, color)));
}
