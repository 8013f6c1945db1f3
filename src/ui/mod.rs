//! Drawing, and the window ([`window`]). [`draw`] is a function of the app's state: every panel
//! gets a [`Frame`], which holds the state read-only, the [`Form`] the panels edit in place (the
//! settings form, the analysis inputs, the path being typed), and the [`Action`]s they ask for.
//! The app applies them after the frame, the edited form first; it alone starts jobs, does I/O
//! or changes the session (as egui's demo app has its panels return commands). Nothing under
//! `app` imports this module.

mod analysis_controls;
mod analyze_tab;
mod bars;
mod circuits_tab;
mod data_tab;
mod evaluate_tab;
mod features;
pub mod heatmap;
mod inspect_tab;
mod model_settings;
mod side_panel;
mod spinner;
mod superposition;
mod sweeps;
mod training_tab;
mod window;

pub use analysis_controls::{
    ablation_banner, ablation_controls, analysis_toolbar, position_picker,
};
pub use bars::status_line;
pub use window::run_native;

use egui::{RichText, Ui};

use crate::app::{Action, Form, Tab, ToylensApp, Workspace};
use bars::{confirm_modal, scrubber, status_bar, top_bar};

/// One frame's drawing context: the app's state, read only; the form the panels edit in place
/// (a copy, taken back as one [`Action::Edit`]); and the actions they ask for.
pub struct Frame<'a> {
    pub app: &'a ToylensApp,
    pub form: Form,
    actions: Vec<Action>,
}

impl Frame<'_> {
    /// Asks the app to do `action` after the frame.
    pub fn act(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// The colour limit `view` is drawn with: `computed`, or the one the scrubber holds (which
    /// `computed` becomes when none is held yet).
    pub fn scale_limit(&mut self, view: &'static str, computed: f32) -> f32 {
        self.app.scale_limit(view, computed).unwrap_or_else(|| {
            self.act(Action::PinScaleLimit(view, computed));
            computed
        })
    }
}

/// Draws every panel of the window and returns what they ask the app to do, the edited form
/// first.
pub fn draw(app: &ToylensApp, ui: &mut Ui) -> Vec<Action> {
    let before = app.form();
    let mut frame = Frame {
        app,
        form: before.clone(),
        actions: Vec::new(),
    };
    panels(&mut frame, ui);
    let Frame {
        form, mut actions, ..
    } = frame;
    if form != before {
        actions.insert(0, Action::Edit(Box::new(form)));
    }
    actions
}

fn panels(f: &mut Frame<'_>, ui: &mut Ui) {
    egui::Panel::top("top_bar").show(ui, |ui| top_bar(f, ui));
    egui::Panel::bottom("status_bar").show(ui, |ui| status_bar(f, ui));
    match f.app.workspace {
        Workspace::Superposition if f.app.tms.is_some() => {
            let tms = f.app.tms.as_ref().expect("checked");
            superposition::panels(f, tms, ui);
            confirm_modal(f, ui);
            return;
        }
        Workspace::Features => {
            features::panels(f, ui);
            confirm_modal(f, ui);
            return;
        }
        Workspace::Sweep => {
            sweeps::panels(f, ui);
            confirm_modal(f, ui);
            return;
        }
        _ => {}
    }
    if f.app.session.snapshots.len() > 1 {
        egui::Panel::bottom("scrubber").show(ui, |ui| scrubber(f, ui));
    }
    egui::Panel::left("settings")
        .resizable(true)
        .default_size(300.0)
        .min_size(260.0)
        .show(ui, |ui| side_panel::show(f, ui));
    egui::CentralPanel::default().show(ui, |ui| {
        ui.horizontal(|ui| {
            for tab in Tab::ALL {
                let shown = f.form.settings.tab == tab;
                if ui
                    .selectable_label(shown, RichText::new(tab.name()).heading())
                    .clicked()
                    && !shown
                {
                    f.act(Action::ShowTab(tab));
                }
            }
        });
        ui.separator();
        match f.form.settings.tab {
            Tab::Data => data_tab::show(f, ui),
            Tab::Training => training_tab::show(f, ui),
            Tab::Inspect => inspect_tab::show(f, ui),
            Tab::Analyze => analyze_tab::show(f, ui),
            Tab::Circuits => circuits_tab::show(f, ui),
            Tab::Evaluate => evaluate_tab::show(f, ui),
        }
    });
    confirm_modal(f, ui);
}

/// A background view's latest result: a spinner saying `busy` while the result for the current
/// inputs is still computing, the error if it failed, `None` until there is a result to draw.
pub fn job_result<'a, K: Clone + PartialEq, T>(
    ui: &mut Ui,
    slot: &'a crate::app::jobs::Derived<K, T>,
    key: &K,
    busy: &str,
) -> Option<&'a T> {
    if !slot.is_current(key) {
        ui.horizontal(|ui| {
            ui.add(spinner::CalmSpinner);
            ui.weak(busy);
        });
    }
    match slot.latest()? {
        Ok(result) => Some(result),
        Err(e) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
            None
        }
    }
}

/// 1234567 -> "1.2M".
pub fn human(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.1}G", x / 1e9),
        x if x >= 1e6 => format!("{:.1}M", x / 1e6),
        x if x >= 1e3 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

pub fn human_duration(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.0} s")
    } else if s < 3600.0 {
        format!("{:.0} min {:.0} s", (s / 60.0).floor(), s % 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// "Attach a dataset…": a data file for the model in view, offered where a tab has no data.
fn attach_button(f: &mut Frame<'_>, ui: &mut egui::Ui) {
    ui.add_space(8.0);
    if ui
        .button("Attach a dataset…")
        .on_hover_text(
            "a JSON Lines or NumPy file of sequences (vocab.json beside it names the tokens): \
             the model is evaluated on it, and Train fine-tunes it",
        )
        .clicked()
    {
        f.act(Action::AttachData);
    }
}

/// How the model in view's task names its tokens.
pub fn token_names(app: &crate::app::ToylensApp) -> crate::task::TokenNames<'_> {
    app.session.config.task.token_names()
}

/// Token `t` as the views label it: its name where the task names tokens, else its id.
pub fn token_label(names: crate::task::TokenNames, t: u32) -> String {
    names.label(t)
}
