//! toylens: train tiny transformers and take them apart.
//!
//! The core (task, model, training, analysis, checkpoints) has no UI dependency and runs headless;
//! the `gui` feature adds the desktop app on top of it.

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
pub mod seed;
pub mod task;
pub mod train;
