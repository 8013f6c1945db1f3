//! What the panels edit in place: the settings form (the next run's config, display toggles,
//! the sequence in the field), the Analyze tab's inputs, the inspector's position, the path
//! being typed, and which runs' curves are overlaid. A frame draws from a copy of it and edits
//! that copy; when the copy differs after the frame, the app takes it whole as one
//! [`Action::Edit`](super::Action::Edit). Everything else the panels change is an action of its
//! own.

use super::ToylensApp;
use super::files::Purpose;
use super::settings::Settings;
use super::views::AnalyzeSettings;

#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    pub settings: Settings,
    pub analyze: AnalyzeSettings,
    /// The inspector's logits position; `None` follows the last.
    pub inspector_position: Option<usize>,
    /// The path field shown when no file dialog can open, with its text.
    pub path_field: Option<(Purpose, String)>,
    /// Whether the scrubber holds every colour scale where it is.
    pub fixed_scale: bool,
    /// Whether each kept run's curves are overlaid on the plots.
    pub runs_shown: Vec<bool>,
}

impl ToylensApp {
    /// The form as it stands: what this frame's panels start from.
    pub fn form(&self) -> Form {
        Form {
            settings: self.settings.clone(),
            analyze: self.analyze.clone(),
            inspector_position: self.inspector.position,
            path_field: self.path_field.clone(),
            fixed_scale: self.scrubber.fixed_scale,
            runs_shown: self.runs.iter().map(|r| r.shown).collect(),
        }
    }

    /// Takes the form the panels edited.
    pub(super) fn take_form(&mut self, form: Form) {
        if form.fixed_scale != self.scrubber.fixed_scale {
            // Held limits are taken afresh from what is on screen when the mode changes.
            self.scrubber.fixed_limits.clear();
        }
        self.settings = form.settings;
        self.analyze = form.analyze;
        self.inspector.position = form.inspector_position;
        self.path_field = form.path_field;
        self.scrubber.fixed_scale = form.fixed_scale;
        for (run, shown) in self.runs.iter_mut().zip(form.runs_shown) {
            run.shown = shown;
        }
    }
}
