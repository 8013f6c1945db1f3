//! What survives a restart: the settings the side panel edits, the open tab and the view options.
//! Restored in `ToylensApp::new` from eframe's storage and written back in `save`.

use serde::{Deserialize, Serialize};

use crate::device::DeviceChoice;
use crate::train::{Preset, RunConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Tab {
    Data,
    Training,
    #[default]
    Inspect,
    Analyze,
    Circuits,
    Evaluate,
}

impl Tab {
    pub const ALL: [Tab; 6] = [
        Tab::Data,
        Tab::Training,
        Tab::Inspect,
        Tab::Analyze,
        Tab::Circuits,
        Tab::Evaluate,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Tab::Data => "Data",
            Tab::Training => "Training",
            Tab::Inspect => "Inspect",
            Tab::Analyze => "Analyze",
            Tab::Circuits => "Circuits",
            Tab::Evaluate => "Evaluate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DataFilter {
    #[default]
    All,
    Signal,
    Noise,
}

/// Which of a data file's sequences the Data tab lists: a split, and once a model grades them,
/// the right or wrong ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SequenceFilter {
    #[default]
    All,
    Train,
    Val,
    Right,
    Wrong,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The config the side panel edits and Train and Reset use.
    pub config: RunConfig,
    pub tab: Tab,
    pub log_loss: bool,
    pub show_step_loss: bool,
    pub sequence: String,
    pub device: DeviceChoice,
    pub show_frame_time: bool,
    pub data_filter: DataFilter,
    pub sequence_filter: SequenceFilter,
    /// Train starts from the weights in view (fine-tuning) where the model settings are the
    /// model in view's, instead of a fresh initialisation.
    pub train_from_view: bool,
    /// Plot per-head interpretability metrics under the loss curves.
    pub show_head_traces: bool,
    /// Circuits: subtract each row's mean.
    pub circuits_mean_subtract: bool,
    /// Circuits: TransformerLens's bias-free `model.OV` / `model.QK` instead of the exact folded form.
    pub circuits_no_bias: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            config: RunConfig::from_preset(Preset::Fast),
            tab: Tab::Inspect,
            log_loss: false,
            show_step_loss: true,
            sequence: "2 5 3 0".into(),
            device: DeviceChoice::Cpu,
            show_frame_time: false,
            data_filter: DataFilter::All,
            sequence_filter: SequenceFilter::All,
            train_from_view: false,
            show_head_traces: true,
            circuits_mean_subtract: false,
            circuits_no_bias: false,
        }
    }
}
