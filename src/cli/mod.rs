//! The headless command line: train, evaluate and inspect without a window.

mod analyze;
mod bench;
mod data;
mod eval;
mod inspect;
mod sae;
mod sweep;
mod tms;
mod train;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::checkpoint::Checkpoint;
use crate::device::{self, DeviceChoice};
use crate::model::Transformer;
use crate::task::{TaskKind, Unit};
use crate::train::RunConfig;

pub use analyze::AnalyzeArgs;
pub use bench::BenchArgs;
pub use data::DataArgs;
pub use eval::EvalArgs;
pub use inspect::{CircuitsArgs, InspectArgs};
pub use sae::SaeArgs;
pub use sweep::SweepArgs;
pub use train::{TrainArgs, build_config};

/// `toylens --version`: the version, the commit it was built from, and the features built in
/// (with CUDA's version), as `scripts/build.rs` found them.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TOYLENS_COMMIT"),
    "; features: ",
    env!("TOYLENS_FEATURES"),
    ")"
);

/// Train tiny transformers and take them apart. With no subcommand, opens the desktop app.
#[derive(Debug, Parser)]
#[command(
    name = "toylens",
    version = VERSION,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A checkpoint to open in the desktop app, or a sweep folder to map.
    #[arg(value_name = "FILE.safetensors | SWEEP_DIR")]
    pub file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model (skip-trigrams, induction or modular addition) and save a checkpoint.
    Train(TrainArgs),
    /// Loss and accuracy of a checkpoint, overall, on signal and on noise, with the ceilings.
    Eval(EvalArgs),
    /// Logits, attention patterns and the head-to-logit decomposition for one token sequence.
    Inspect(InspectArgs),
    /// Direct logit attribution, logit lens, head detectors and activation patching for one
    /// sequence.
    Analyze(AnalyzeArgs),
    /// Every head's full OV and QK circuits, copying scores, OV singular directions and the
    /// composition scores between layers.
    Circuits(CircuitsArgs),
    /// Train several configs (seeds × presets × learning rates) and summarise them.
    Sweep(SweepArgs),
    /// Measure training and inspection speed, and how it grows with batch, length and vocabulary.
    Bench(BenchArgs),
    /// Data files of token sequences: write the examples, or check a file of one's own.
    Data(DataArgs),
    /// Sparse autoencoders on a model's activations: train one, or evaluate one.
    Sae(SaeArgs),
}

/// Fails with a one-line message naming the flag and its range unless `min <= value <= max`.
fn in_range(flag: &str, value: usize, min: usize, max: usize) -> Result<()> {
    if !(min..=max).contains(&value) {
        bail!("{flag} must be between {min} and {max}, got {value}");
    }
    Ok(())
}

/// Sets the training length from `--epochs` / `--steps`, refusing the one that does not fit the
/// task's unit.
fn apply_length(cfg: &mut RunConfig, epochs: Option<usize>, steps: Option<usize>) -> Result<()> {
    let task = cfg.task.kind().name();
    match (epochs, steps, cfg.task.unit()) {
        (Some(_), _, Unit::Step) => bail!("the {task} task counts steps, not epochs: use --steps"),
        (_, Some(_), Unit::Epoch) => {
            bail!("the {task} task counts epochs, not steps: use --epochs")
        }
        _ => {}
    }
    if let Some(epochs) = epochs {
        cfg.train.epochs = epochs;
    }
    if let Some(steps) = steps {
        cfg.train.steps = steps;
    }
    Ok(())
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Train(args) => train::train(args),
        Command::Eval(args) => eval::eval(args),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Analyze(args) => analyze::analyze(args),
        Command::Circuits(args) => inspect::circuits(args),
        Command::Sweep(args) => sweep::sweep(args),
        Command::Bench(args) => bench::bench(args),
        Command::Data(args) => data::data(args),
        Command::Sae(args) => sae::sae(args),
    }
}

/// A run config file, its data paths relative to its folder.
fn run_config_file(path: &std::path::Path) -> Result<RunConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    RunConfig::from_json_in(&text, base)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("in {}", path.display()))
}

fn load_checkpoint(
    path: &std::path::Path,
    tl_config: Option<&std::path::Path>,
) -> Result<Checkpoint> {
    Ok(Checkpoint::load_with(path, tl_config)?)
}

/// For text output: the model and, for a state dict saved elsewhere, where its config came from.
fn print_model_line(checkpoint: &Checkpoint) {
    let model = checkpoint.config.model.describe();
    if checkpoint.has_metadata {
        println!("model: {model}");
    } else {
        println!("model: {model} ({})", checkpoint.origin);
    }
}

/// `checkpoint` with the task `--task` names, for a model that came without one; a checkpoint
/// with a task keeps it (naming another is an error).
fn with_task(mut checkpoint: Checkpoint, task: Option<TaskKind>) -> Result<Checkpoint> {
    let Some(kind) = task else {
        return Ok(checkpoint);
    };
    let own = checkpoint.config.task.kind();
    if checkpoint.config.task.has_data() {
        if kind != own {
            bail!(
                "the checkpoint's task is {}; --task names one only for a model that came \
                 without a task",
                own.name()
            );
        }
        return Ok(checkpoint);
    }
    let m = &checkpoint.config.model;
    checkpoint.config.task = kind
        .for_model(m.d_vocab, m.d_vocab_out(), m.n_ctx)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the model ({}) cannot take the {} task",
                m.describe(),
                kind.name()
            )
        })?;
    Ok(checkpoint)
}

fn load_model(
    path: &std::path::Path,
    tl_config: Option<&std::path::Path>,
    choice: DeviceChoice,
) -> Result<(Checkpoint, Transformer)> {
    let checkpoint = load_checkpoint(path, tl_config)?;
    if let Some(note) = &checkpoint.data_note {
        eprintln!("warning: {note}");
    }
    let (device, note) = device::resolve(choice);
    if let Some(note) = note {
        eprintln!("warning: {note}");
    }
    let model = Transformer::new(&checkpoint.config.model, &checkpoint.weights, &device)?;
    Ok((checkpoint, model))
}
