//! A labelled heatmap: one coloured cell per value, row and column labels, exact values on hover,
//! and cells that can be marked as masked (drawn hatched grey, never coloured).

use std::borrow::Cow;

use egui::{Align2, Color32, FontId, Rect, Response, Sense, Stroke, Ui, pos2, vec2};

pub use crate::palette::Scale;

/// The colour `scale` gives `value`.
pub fn colour(scale: Scale, value: f32) -> Color32 {
    let [r, g, b] = scale.rgb(value);
    Color32::from_rgb(r, g, b)
}

pub struct Heatmap<'a> {
    pub rows: usize,
    pub cols: usize,
    /// Row-major values.
    pub values: &'a [f32],
    /// Row and column labels; `None` labels them by index (made only for the cells on screen).
    pub row_labels: Option<Vec<String>>,
    pub col_labels: Option<Vec<String>>,
    pub scale: Scale,
    pub cell: f32,
    /// Cells for which this returns true are masked.
    pub masked: Option<&'a dyn Fn(usize, usize) -> bool>,
    /// Print the value in each cell.
    pub show_values: bool,
    /// Hover text for a cell (row, col, value).
    pub describe: Option<&'a dyn Fn(usize, usize, f32) -> String>,
    /// Rows drawn with a heavier frame (e.g. the focused head).
    pub highlight_row: Option<usize>,
    /// Shrinks the cells so the whole map fits this width, down to `min_cell`.
    pub max_width: Option<f32>,
    pub min_cell: f32,
    /// Row and column labels; off for thumbnails.
    pub axis_labels: bool,
    /// Draw the cells as one cached texture when they are smaller than a few pixels: a map of a
    /// large vocabulary then costs one image per frame, not a rectangle per visible cell. The
    /// id names the map's one texture slot; the key identifies the values (the texture is rebuilt,
    /// and the old one freed, when it changes).
    pub texture_key: Option<(egui::Id, u64)>,
}

/// Cells smaller than this are drawn as a texture when the map has a `texture_key`.
const TEXTURE_BELOW_PX: f32 = 6.0;

impl<'a> Heatmap<'a> {
    pub fn new(rows: usize, cols: usize, values: &'a [f32], scale: Scale) -> Self {
        Self {
            rows,
            cols,
            values,
            row_labels: None,
            col_labels: None,
            scale,
            cell: 28.0,
            masked: None,
            show_values: false,
            describe: None,
            highlight_row: None,
            max_width: None,
            min_cell: 10.0,
            axis_labels: true,
            texture_key: None,
        }
    }

    pub fn labels(mut self, rows: Vec<String>, cols: Vec<String>) -> Self {
        self.row_labels = Some(rows);
        self.col_labels = Some(cols);
        self
    }

    /// Named rows; the columns stay labelled by index.
    pub fn row_labels(mut self, rows: Vec<String>) -> Self {
        self.row_labels = Some(rows);
        self
    }

    /// The value of a cell; NaN (drawn white) if the values are shorter than rows × cols.
    fn value(&self, r: usize, c: usize) -> f32 {
        self.values
            .get(r * self.cols + c)
            .copied()
            .unwrap_or(f32::NAN)
    }

    fn row_label(&self, r: usize) -> Cow<'_, str> {
        label(self.row_labels.as_deref(), r)
    }

    fn col_label(&self, c: usize) -> Cow<'_, str> {
        label(self.col_labels.as_deref(), c)
    }

    /// Draws the map; the response carries hover and clicks over the cells.
    pub fn show(self, ui: &mut Ui) -> Response {
        self.show_clickable(ui).0
    }

    /// Draws the map and says which cell (row, column) was clicked, if any.
    pub fn show_clickable(mut self, ui: &mut Ui) -> (Response, Option<(usize, usize)>) {
        let font = FontId::proportional(12.0);
        let widest = match &self.row_labels {
            Some(labels) => labels.iter().map(|l| l.len()).max().unwrap_or(1),
            None => self.rows.saturating_sub(1).to_string().len(),
        };
        let (label_w, label_h) = if self.axis_labels {
            (widest as f32 * 7.0 + 8.0, 18.0)
        } else {
            (0.0, 0.0)
        };
        if let Some(w) = self.max_width {
            self.cell = self
                .cell
                .min((w - label_w) / self.cols.max(1) as f32)
                .max(self.min_cell);
        }
        let size = vec2(
            label_w + self.cols as f32 * self.cell,
            label_h + self.rows as f32 * self.cell,
        );
        let (rect, response) = ui.allocate_exact_size(size, Sense::click());
        let painter = ui.painter_at(rect);
        let text = ui.visuals().text_color();
        let origin = rect.min + vec2(label_w, label_h);
        let cell_rect = |r: usize, c: usize| {
            Rect::from_min_size(
                origin + vec2(c as f32 * self.cell, r as f32 * self.cell),
                vec2(self.cell, self.cell),
            )
        };
        // Only the cells and labels on screen are painted: a map of a large vocabulary has a
        // million cells, almost all scrolled out of view.
        let clip = ui.clip_rect().intersect(rect);
        let visible = |lo: f32, hi: f32, start: f32, n: usize| {
            let first = ((lo - start) / self.cell).floor().max(0.0) as usize;
            let end = (((hi - start) / self.cell).ceil().max(0.0) as usize).min(n);
            first.min(end)..end
        };
        let rows = visible(clip.min.y, clip.max.y, origin.y, self.rows);
        let cols = visible(clip.min.x, clip.max.x, origin.x, self.cols);
        // Every column label when they fit, else every n-th, so they never run together.
        let widest_col = match &self.col_labels {
            Some(labels) => labels.iter().map(|l| l.len()).max().unwrap_or(1),
            None => self.cols.saturating_sub(1).to_string().len(),
        };
        let stride = ((widest_col as f32 * 7.0 + 4.0) / self.cell)
            .ceil()
            .max(1.0) as usize;
        for c in cols.clone().filter(|c| self.axis_labels && c % stride == 0) {
            let label = self.col_label(c);
            let x = origin.x + (c as f32 + 0.5) * self.cell;
            painter.text(
                pos2(x, rect.min.y + 2.0),
                Align2::CENTER_TOP,
                label,
                font.clone(),
                text,
            );
        }
        let row_stride = (14.0 / self.cell).ceil().max(1.0) as usize;
        for r in rows
            .clone()
            .filter(|r| self.axis_labels && r % row_stride == 0)
        {
            let label = self.row_label(r);
            let y = origin.y + (r as f32 + 0.5) * self.cell;
            painter.text(
                pos2(rect.min.x + 2.0, y),
                Align2::LEFT_CENTER,
                label,
                font.clone(),
                text,
            );
        }
        let textured = self
            .texture_key
            .filter(|_| self.cell < TEXTURE_BELOW_PX && self.masked.is_none());
        // Off-screen maps build no texture (a tab of 32 large maps shows two or three at once).
        if let Some(key) = textured.filter(|_| ui.is_rect_visible(rect)) {
            let texture = self.texture(ui, key);
            let area = Rect::from_min_size(
                origin,
                vec2(self.cols as f32 * self.cell, self.rows as f32 * self.cell),
            );
            let uv = Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0));
            painter.image(texture.id(), area, uv, Color32::WHITE);
        }
        for r in rows.filter(|_| textured.is_none()) {
            for c in cols.clone() {
                let cr = cell_rect(r, c).shrink(0.5);
                let value = self.value(r, c);
                if self.masked.is_some_and(|m| m(r, c)) {
                    painter.rect_filled(cr, 0.0, Color32::from_gray(90));
                    // Hatching makes masked cells unmistakable in any theme.
                    let stroke = Stroke::new(1.0, Color32::from_gray(130));
                    for k in 1..4 {
                        let t = k as f32 / 4.0;
                        painter.line_segment(
                            [
                                pos2(cr.min.x, cr.min.y + cr.height() * t),
                                pos2(cr.min.x + cr.width() * t, cr.min.y),
                            ],
                            stroke,
                        );
                        painter.line_segment(
                            [
                                pos2(cr.max.x - cr.width() * t, cr.max.y),
                                pos2(cr.max.x, cr.max.y - cr.height() * t),
                            ],
                            stroke,
                        );
                    }
                    continue;
                }
                let fill = colour(self.scale, value);
                painter.rect_filled(cr, 0.0, fill);
                if self.show_values && self.cell >= 22.0 {
                    let dark = fill.r() as u32 + fill.g() as u32 + fill.b() as u32 > 380;
                    let ink = if dark { Color32::BLACK } else { Color32::WHITE };
                    painter.text(
                        cr.center(),
                        Align2::CENTER_CENTER,
                        format_cell(value),
                        FontId::monospace(10.0),
                        ink,
                    );
                }
            }
        }
        if let Some(r) = self.highlight_row {
            let band = cell_rect(r, 0).union(cell_rect(r, self.cols.saturating_sub(1)));
            painter.rect_stroke(
                band,
                0.0,
                Stroke::new(2.0, ui.visuals().selection.stroke.color),
                egui::StrokeKind::Inside,
            );
        }
        let cell_at = |p: egui::Pos2| {
            let d = p - origin;
            let (c, r) = ((d.x / self.cell).floor(), (d.y / self.cell).floor());
            (c >= 0.0 && r >= 0.0 && (c as usize) < self.cols && (r as usize) < self.rows)
                .then_some((r as usize, c as usize))
        };
        let hovered = response.hover_pos().and_then(cell_at);
        let clicked = if response.clicked() {
            response.interact_pointer_pos().and_then(cell_at)
        } else {
            None
        };
        let response = match hovered {
            Some((r, c)) => {
                let value = self.value(r, c);
                let masked = self.masked.is_some_and(|m| m(r, c));
                let text = match (&self.describe, masked) {
                    (_, true) => format!(
                        "{} × {}: masked (a query never sees later keys)",
                        self.row_label(r),
                        self.col_label(c)
                    ),
                    (Some(d), false) => d(r, c, value),
                    (None, false) => {
                        format!("{} × {}: {value:.5}", self.row_label(r), self.col_label(c))
                    }
                };
                response.on_hover_text_at_pointer(text)
            }
            None => response,
        };
        (response, clicked)
    }
}

impl Heatmap<'_> {
    /// The cells as a texture, one texel per cell, kept in egui's memory in slot `id` for the
    /// values `key`.
    fn texture(&self, ui: &Ui, (id, key): (egui::Id, u64)) -> egui::TextureHandle {
        cached_texture(ui.ctx(), id, key, || {
            // One texel per cell, or, for cells under a pixel, per block of cells (the value of
            // largest magnitude in it, so that a single strong cell still shows).
            let block = (1.0 / self.cell).ceil().max(1.0) as usize;
            let (rows, cols) = (self.rows.div_ceil(block), self.cols.div_ceil(block));
            let pixels: Vec<Color32> = (0..rows * cols)
                .map(|i| {
                    let (r0, c0) = ((i / cols) * block, (i % cols) * block);
                    let strongest = (r0..(r0 + block).min(self.rows))
                        .flat_map(|r| (c0..(c0 + block).min(self.cols)).map(move |c| (r, c)))
                        .map(|(r, c)| self.value(r, c))
                        .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
                    colour(self.scale, strongest)
                })
                .collect();
            egui::ColorImage::new([cols, rows], pixels)
        })
    }
}

/// The texture in egui's memory slot `slot` if it was made for `key`; otherwise one made from
/// `image` now, which replaces it there (the old one is freed with its last handle).
pub fn cached_texture(
    ctx: &egui::Context,
    slot: egui::Id,
    key: u64,
    image: impl FnOnce() -> egui::ColorImage,
) -> egui::TextureHandle {
    let cached = ctx
        .data(|d| d.get_temp::<(u64, egui::TextureHandle)>(slot))
        .filter(|(k, _)| *k == key);
    if let Some((_, texture)) = cached {
        return texture;
    }
    let texture = ctx.load_texture("heatmap", image(), egui::TextureOptions::NEAREST);
    ctx.data_mut(|d| d.insert_temp(slot, (key, texture.clone())));
    texture
}

/// Label `i` of `labels`, or the index itself when the map has no labels.
fn label(labels: Option<&[String]>, i: usize) -> Cow<'_, str> {
    match labels {
        Some(labels) => Cow::Borrowed(labels.get(i).map_or("?", String::as_str)),
        None => Cow::Owned(i.to_string()),
    }
}

fn format_cell(v: f32) -> String {
    // No "-0.00": a tiny negative reads as zero, and fits the cell.
    let v = if v.abs() < 0.005 { 0.0 } else { v };
    if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A horizontal colour bar with its end values, to read a heatmap by.
pub fn legend(ui: &mut Ui, scale: Scale) {
    let (lo, hi) = match scale {
        Scale::Sequential { max } => (0.0, max),
        Scale::Diverging { limit } => (-limit, limit),
    };
    ui.horizontal(|ui| {
        ui.small(format!("{lo:.2}"));
        let (rect, _) = ui.allocate_exact_size(vec2(120.0, 10.0), Sense::hover());
        let painter = ui.painter_at(rect);
        let n = 40;
        for i in 0..n {
            let t = i as f32 / (n - 1) as f32;
            let x0 = rect.min.x + rect.width() * i as f32 / n as f32;
            let r = Rect::from_min_max(
                pos2(x0, rect.min.y),
                pos2(x0 + rect.width() / n as f32 + 0.5, rect.max.y),
            );
            painter.rect_filled(r, 0.0, colour(scale, lo + (hi - lo) * t));
        }
        ui.small(format!("{hi:.2}"));
    });
}
