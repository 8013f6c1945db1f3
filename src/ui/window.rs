//! The window: eframe's entry points. Each frame runs the app's logic, draws every panel
//! ([`super::draw`]), then applies the actions the panels queued.

use std::path::PathBuf;

use super::draw;
use crate::app::{ICON_PNG, ToylensApp};

impl eframe::App for ToylensApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.run_logic(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.run_frame(ui, draw);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings);
    }
}

/// Opens the window. `file` opens straight into that checkpoint.
pub fn run_native(file: Option<PathBuf>) -> eframe::Result {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("toylens")
        // The desktop entry's name (StartupWMClass), so docks group the window under its icon.
        .with_app_id("toylens")
        .with_inner_size([1280.0, 800.0])
        .with_min_inner_size([1024.0, 768.0])
        .with_drag_and_drop(true);
    if let Ok(icon) = eframe::icon_data::from_png_bytes(ICON_PNG) {
        viewport = viewport.with_icon(icon);
    }
    let options = eframe::NativeOptions {
        viewport,
        ..Default::default()
    };
    eframe::run_native(
        "toylens",
        options,
        Box::new(move |cc| Ok(Box::new(ToylensApp::new(cc, file)))),
    )
}
