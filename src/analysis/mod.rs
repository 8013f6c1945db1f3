//! Analyses of a model as plain data: what the CLI prints and the UI draws.

mod circuits;
mod evaluate;
mod fourier;
mod inspect;
mod trace;

pub use circuits::{Circuits, circuits};
pub use evaluate::{ExhaustiveReport, Miss, evaluate_ablated, exhaustive, mean_z};
pub use fourier::{KEY_FREQUENCIES, ProgressMeasures, progress_measures};
pub use inspect::{Inspection, cache_json, inspect, inspect_ablated, inspection_of};
pub use trace::{HeadTrace, head_traces};
