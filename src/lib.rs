//! toylens: train tiny transformers and take them apart.
//!
//! The core (tasks, model, objectives, analyses, metrics, checkpoints, training) has no UI
//! dependency and runs headless; the `gui` feature adds the desktop app on top of it.
//!
//! # Layers
//!
//! Every import points down this list, never up or sideways into a cycle
//! (`python3 ../shared/tools/check-cycles.py src` checks it):
//!
//! 1. the leaves: [`seed`], [`device`], [`matmul`] (products every device accepts), [`memory`],
//!    [`palette`] (colour scales);
//! 2. [`task`] (data generators) and [`config`] (every setting of a run, and its sizes);
//! 3. [`model`]: the transformer, how it computes ([`model::Plan`]), its kernels and shortcuts;
//!    beside it [`superposition`], the second model family (Toy Models of Superposition: its
//!    data, exact gradients and training loop), which uses the model's CPU kernels and which
//!    checkpoints store;
//! 4. [`objective`]: each task's loss and accuracy on a model, which both training and the
//!    analyses need;
//! 5. [`analysis`]: everything computed from a model, as plain data;
//! 6. [`metrics`]: what a run records, including analysis results such as the progress measures;
//! 7. [`checkpoint`]: weights, config and metrics on disk;
//! 8. [`train`]: the training loop, which builds checkpoints as it goes; above it [`sweep`]:
//!    grids of runs in sweep folders, their executors (local processes, Slurm) and summaries;
//! 9. the front ends: [`bench`] and [`cli`], then [`app`] (state and behaviour) and [`ui`]
//!    (drawing, which reads `app`'s state and returns its actions; `app` never imports `ui`).
//!
//! Training sits above checkpoints rather than below them because a run produces a checkpoint
//! (its snapshots, history and final weights) while a checkpoint only stores a run's records:
//! what both share, the metric records, lives below both in [`metrics`].

#[cfg(feature = "gui")]
pub mod app;
#[cfg(feature = "gui")]
pub mod ui;

pub mod analysis;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod device;
pub mod matmul;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod objective;
pub mod palette;
pub mod sae;
pub mod seed;
pub mod superposition;
pub mod sweep;
pub mod task;
pub mod train;
