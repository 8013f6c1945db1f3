//! Analyses of a model as plain data: what the CLI prints and the UI draws.

mod analyze;
mod attribution;
mod circuits;
mod composition;
mod evaluate;
mod fourier;
mod full_circuits;
mod heads;
mod inspect;
mod linalg;
mod patching;
mod sequences;
mod trace;

pub use analyze::{Analysis, analyze};
pub use attribution::{Attribution, attribution};
pub use circuits::{Circuits, circuits};
pub use composition::{Composition, composition};
pub use evaluate::{ExhaustiveReport, Miss, evaluate_ablated, exhaustive, mean_z};
pub use fourier::{KEY_FREQUENCIES, ProgressMeasures, progress_measures};
pub use full_circuits::{FullCircuits, SingularDirection, full_circuits};
pub use heads::{HeadKind, HeadScores, head_scores, similarity};
pub use inspect::{Inspection, cache_json, inspect, inspect_ablated, inspection_of};
pub use patching::{Patching, PatchingSetup, patching};
pub use sequences::{CONFUSION_TOKENS, SequenceReport, WORST_SEQUENCES, sequence_report};
pub use trace::{HeadTrace, head_traces};
