//! The headless command line: train, evaluate and inspect without a window.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::analysis::{
    ExhaustiveReport, Inspection, cache_json, circuits, exhaustive, inspection_of, mean_z,
};
use crate::checkpoint::Checkpoint;
use crate::device::{self, DeviceChoice};
use crate::model::{Ablation, HeadMode, Transformer};
use crate::seed::{Stream, stream_rng};
use crate::task::{Ceilings, parse_sequence};
use crate::train::{
    Control, PathChoice, Preset, Progress, RunConfig, Trainer, drive, epoch_reaching_99,
    history_csv, train_to_checkpoint,
};

/// Train tiny transformers and take them apart. With no subcommand, opens the desktop app.
#[derive(Debug, Parser)]
#[command(
    name = "toylens",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A checkpoint to open in the desktop app.
    #[arg(value_name = "FILE.safetensors")]
    pub file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model on the skip-trigram task and save a checkpoint.
    Train(TrainArgs),
    /// Loss and accuracy of a checkpoint, overall, on signal and on noise, with the ceilings.
    Eval(EvalArgs),
    /// Logits, attention patterns and the head-to-logit decomposition for one token sequence.
    Inspect(InspectArgs),
    /// The OV and QK circuits of every head and the direct path.
    Circuits(CircuitsArgs),
    /// Train several configs (seeds × presets × learning rates) and summarise them.
    Sweep(SweepArgs),
    /// Measure training and inspection speed, and how it grows with batch, length and vocabulary.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct CircuitsArgs {
    /// A toylens checkpoint or a TransformerLens state dict (safetensors).
    pub checkpoint: PathBuf,
    /// The state dict's `HookedTransformerConfig` as JSON, when the file has no `tl_config`
    /// metadata and no `config.json` beside it.
    #[arg(long, value_name = "FILE")]
    pub tl_config: Option<PathBuf>,
    /// Print JSON (`ov`, `qk`, `ov_no_bias`, `qk_no_bias`, `direct`) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Seeds: a range `0..5` (end excluded), a list `0,3,7` or one seed.
    #[arg(long, default_value = "0..5")]
    pub seeds: String,
    /// Presets to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "fast")]
    pub preset: Vec<Preset>,
    /// A JSON run config (any model) to sweep instead of the presets: each run is this config
    /// with the seed and, when given, the learning rate and epochs replaced.
    #[arg(long, value_name = "FILE.json", conflicts_with = "preset")]
    pub config: Option<PathBuf>,
    /// Learning rates, comma-separated; each overrides the preset's.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub lr: Vec<f64>,
    /// Epochs per run (default: the preset's).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Directory for the checkpoints and `summary.csv` / `summary.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Fewer repeats and sizes: a smoke run in a few seconds.
    #[arg(long)]
    pub quick: bool,
    /// Time only training steps of this batch size (with --seq-len and --vocab), instead of the
    /// whole suite.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Sequence length for --batch (default 4).
    #[arg(long, default_value_t = 4)]
    pub seq_len: usize,
    /// Vocabulary for --batch, d_model = d_vocab (default 11).
    #[arg(long, default_value_t = 11)]
    pub vocab: usize,
    /// Print JSON instead of Markdown tables.
    #[arg(long)]
    pub json: bool,
    /// Time only the 2-layer attention-only language-model step that `benches/tl_step.py`
    /// times in TransformerLens (batch 64, 20 positions, loss at every position, Adam), and print
    /// it as JSON.
    #[arg(long, conflicts_with = "batch")]
    pub lm_step: bool,
}

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    /// Named settings; `fast` learns the task in seconds, `notebook` repeats the notebook's run.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// A JSON run config ({"seed", "task", "model", "train"}; missing fields take defaults).
    /// A preset and the flags below override it.
    #[arg(long, value_name = "FILE.json")]
    pub config: Option<PathBuf>,
    /// Seed for the train data, validation data, init and shuffling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of passes over the training set.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Adam learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Samples per optimiser step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// L2 weight decay, as torch.optim.Adam applies it.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Forward formulation; every one is exact, `auto` picks the fastest.
    #[arg(long, value_enum)]
    pub path: Option<PathChoice>,
    /// auto, cpu, cuda or cuda:N. Falls back to the CPU with a message if CUDA is unavailable.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Where to save the checkpoint (safetensors with TransformerLens names).
    #[arg(long, value_name = "FILE.safetensors")]
    pub out: PathBuf,
    /// Print one JSON object per epoch on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the per-epoch metrics to this CSV file.
    #[arg(long, value_name = "FILE.csv")]
    pub csv: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A toylens checkpoint or a TransformerLens state dict (safetensors).
    pub checkpoint: PathBuf,
    /// The state dict's `HookedTransformerConfig` as JSON, when the file has no `tl_config`
    /// metadata and no `config.json` beside it.
    #[arg(long, value_name = "FILE")]
    pub tl_config: Option<PathBuf>,
    /// Seed of the evaluation data (the validation stream); defaults to the checkpoint's seed,
    /// which reproduces its validation set.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of samples; defaults to the task's validation size.
    #[arg(long)]
    pub samples: Option<usize>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Heads to ablate, comma-separated (e.g. `0,2`).
    #[arg(long, value_delimiter = ',')]
    pub ablate: Vec<usize>,
    /// How ablated heads are replaced: by zero, or by their mean over the validation set.
    #[arg(long, value_enum, default_value = "zero")]
    pub ablate_mode: HeadMode,
    /// Evaluate every signal sequence (accuracy per trigger pair and per label, confusion matrix)
    /// and sampled noise.
    #[arg(long)]
    pub exhaustive: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct InspectArgs {
    /// A toylens checkpoint or a TransformerLens state dict (safetensors).
    pub checkpoint: PathBuf,
    /// The state dict's `HookedTransformerConfig` as JSON, when the file has no `tl_config`
    /// metadata and no `config.json` beside it.
    #[arg(long, value_name = "FILE")]
    pub tl_config: Option<PathBuf>,
    /// Token ids, as separate arguments or one string: `2 5 3 0` or "2,5,3,0".
    #[arg(required = true, num_args = 1..)]
    pub tokens: Vec<String>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Print JSON (keys match the TransformerLens fixture) instead of text.
    #[arg(long)]
    pub json: bool,
    /// With --json: add "cache", every TransformerLens hook's activation for this input
    /// (batch dimension dropped; masked attention scores, −inf in TL, as null).
    #[arg(long, requires = "json")]
    pub cache: bool,
}

/// Fails with a one-line message naming the flag and its range unless `min <= value <= max`.
fn in_range(flag: &str, value: usize, min: usize, max: usize) -> Result<()> {
    if !(min..=max).contains(&value) {
        bail!("{flag} must be between {min} and {max}, got {value}");
    }
    Ok(())
}

impl BenchArgs {
    /// The single-config run of `--batch`, checked before anything is allocated.
    fn single_config(&self) -> Result<Option<RunConfig>> {
        in_range("--seq-len", self.seq_len, 3, crate::task::MAX_SEQ_LEN)?;
        // Tokens 0..=9 are the query, triggers and answer labels; noise fills the rest.
        in_range("--vocab", self.vocab, 10, crate::task::MAX_VOCAB)?;
        let Some(batch) = self.batch else {
            return Ok(None);
        };
        in_range("--batch", batch, 1, 10_000_000)?;
        let cfg = crate::bench::scaled_config(batch, self.seq_len, self.vocab, PathChoice::Auto);
        cfg.validate().map_err(anyhow::Error::msg)?;
        // Timed steps must not end an epoch, so an epoch needs at least two.
        if cfg.steps_per_epoch() < 2 {
            bail!(
                "--batch {batch} with --seq-len {}: at most {} samples per step fit in the benchmark's data set",
                self.seq_len,
                cfg.task.train_size / 2
            );
        }
        Ok(Some(cfg))
    }
}

/// Most runs one sweep may ask for.
const MAX_SWEEP_RUNS: usize = 10_000;

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Train(args) => train(args),
        Command::Eval(args) => eval(args),
        Command::Inspect(args) => inspect_cmd(args),
        Command::Circuits(args) => circuits_cmd(args),
        Command::Sweep(args) => sweep(args),
        Command::Bench(args) => bench(args),
    }
}

/// The run config from a file, a preset and flags, in that order of precedence (last wins).
pub fn build_config(args: &TrainArgs) -> Result<RunConfig> {
    let mut cfg = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config {}", path.display()))?;
            RunConfig::from_json(&text)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("in {}", path.display()))?
        }
        None => RunConfig::from_preset(args.preset.unwrap_or_default()),
    };
    if let (Some(preset), Some(_)) = (args.preset, &args.config) {
        cfg.train = Preset::train_config(preset);
    }
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    if let Some(epochs) = args.epochs {
        cfg.train.epochs = epochs;
    }
    if let Some(lr) = args.lr {
        cfg.train.lr = lr;
    }
    if let Some(b) = args.batch_size {
        cfg.train.batch_size = b;
    }
    if let Some(wd) = args.weight_decay {
        cfg.train.weight_decay = wd;
    }
    if let Some(path) = args.path {
        cfg.train.path = path;
    }
    cfg.validate().map_err(anyhow::Error::msg)?;
    Ok(cfg)
}

fn train(args: TrainArgs) -> Result<()> {
    let cfg = build_config(&args)?;
    let (device, note) = device::resolve(args.device);
    if let Some(note) = note {
        eprintln!("warning: {note}");
    }
    let total_steps = (cfg.steps_per_epoch() * cfg.train.epochs) as u64;
    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total_steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} steps, epoch {msg} ({eta} left)",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        Some(bar)
    } else {
        None
    };
    let say = |line: String| match &progress {
        Some(bar) => bar.println(line),
        None => println!("{line}"),
    };
    let mut path_name = "";
    let mut failed_print = None;
    let trainer = Trainer::new(cfg.clone(), &device)?;
    let outcome = drive(trainer, |p| {
        match p {
            Progress::Started { path, .. } => path_name = path,
            Progress::Step(step) => {
                if let Some(bar) = &progress {
                    bar.set_position(step.step as u64);
                    bar.set_message(format!("{}/{}", step.epoch, cfg.train.epochs));
                }
            }
            Progress::Epoch { metrics: m, .. } => {
                if args.json {
                    match serde_json::to_string(m) {
                        Ok(line) => match &progress {
                            Some(bar) => bar.suspend(|| println!("{line}")),
                            None => println!("{line}"),
                        },
                        Err(e) => failed_print = Some(e),
                    }
                } else {
                    say(format!(
                        "epoch {:>4}/{}  train loss {:.4} acc {:.4} | val loss {:.4} acc {:.4} \
                         signal {:.4} noise {:.4}  {:.2}s",
                        m.epoch,
                        cfg.train.epochs,
                        m.train_loss,
                        m.train_acc,
                        m.val_loss,
                        m.val_acc,
                        m.val_acc_signal,
                        m.val_acc_noise,
                        m.elapsed_s
                    ));
                }
            }
        }
        Control::Continue
    })?;
    if let Some(e) = failed_print {
        return Err(e.into());
    }
    if let Some(e) = outcome.ending.divergence() {
        if let Some(bar) = &progress {
            bar.finish_and_clear();
        }
        bail!("{e}; nothing was saved");
    }
    let checkpoint = outcome.checkpoint;
    let first_99 = epoch_reaching_99(&checkpoint.history);
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    checkpoint
        .save(&args.out)
        .with_context(|| "saving the checkpoint")?;
    if let Some(csv) = &args.csv {
        crate::checkpoint::write_atomically(csv, history_csv(&checkpoint.history).as_bytes())
            .with_context(|| "writing the CSV")?;
    }
    let mut out: Box<dyn Write> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    if let Some(last) = checkpoint.history.last() {
        let c = cfg.task.ceilings();
        writeln!(
            out,
            "trained {} epochs in {:.2} s on {} ({} path)",
            checkpoint.epoch,
            last.elapsed_s,
            device::describe(&device),
            path_name
        )?;
        writeln!(
            out,
            "validation: loss {:.4} (Bayes optimum {:.4}), acc {:.4} (best possible {:.4}), \
             signal {:.4}, noise {:.4} (chance {:.4})",
            last.val_loss,
            c.bayes_ce,
            last.val_acc,
            c.best_acc,
            last.val_acc_signal,
            last.val_acc_noise,
            c.best_noise_acc
        )?;
        match first_99 {
            Some(e) => writeln!(out, "validation signal accuracy reached 99% at epoch {e}")?,
            None => writeln!(out, "validation signal accuracy never reached 99%")?,
        }
    }
    writeln!(out, "saved {}", args.out.display())?;
    Ok(())
}

#[derive(Debug, Serialize)]
struct EvalReport {
    samples: usize,
    seed: u64,
    loss: f64,
    acc: f64,
    acc_signal: f64,
    acc_noise: f64,
    /// Ceilings for the realised signal fraction of these samples.
    ceilings: Ceilings,
    /// The ablation in force, "" if none.
    ablation: String,
    #[serde(flatten)]
    exhaustive: Option<ExhaustiveReport>,
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

fn load_model(
    path: &std::path::Path,
    tl_config: Option<&std::path::Path>,
    choice: DeviceChoice,
) -> Result<(Checkpoint, Transformer)> {
    let checkpoint = load_checkpoint(path, tl_config)?;
    let (device, note) = device::resolve(choice);
    if let Some(note) = note {
        eprintln!("warning: {note}");
    }
    let model = Transformer::new(&checkpoint.config.model, &checkpoint.weights, &device)?;
    Ok((checkpoint, model))
}

fn eval(args: EvalArgs) -> Result<()> {
    let (checkpoint, model) = load_model(&args.checkpoint, args.tl_config.as_deref(), args.device)?;
    let task = &checkpoint.config.task;
    let seed = args.seed.unwrap_or(checkpoint.config.seed);
    let samples = args.samples.unwrap_or(task.val_size);
    if samples == 0 {
        bail!("--samples must be at least 1");
    }
    let n_heads = checkpoint.config.model.n_heads;
    if let Some(&h) = args.ablate.iter().find(|&&h| h >= n_heads) {
        bail!("--ablate {h}: the model has heads 0..={}", n_heads - 1);
    }
    let data = task
        .generate(samples, &mut stream_rng(seed, Stream::ValData))
        .map_err(anyhow::Error::msg)?;
    let ablation = if args.ablate.is_empty() {
        None
    } else {
        // Mean ablation substitutes each head's mean z over the validation set of the run.
        let means = if args.ablate_mode == HeadMode::Mean {
            Some(mean_z(
                &model,
                &task
                    .val_set(checkpoint.config.seed)
                    .map_err(anyhow::Error::msg)?,
            )?)
        } else {
            None
        };
        Some(Ablation::of(n_heads, &args.ablate, args.ablate_mode, means))
    };
    let ceilings = data.ceilings();
    let tally = crate::analysis::evaluate_ablated(&model, &data, ablation.as_ref())?;
    let exhaustive = if args.exhaustive {
        Some(exhaustive(&model, task, ablation.as_ref(), 10_000, seed)?)
    } else {
        None
    };
    let report = EvalReport {
        samples,
        seed,
        loss: tally.loss(),
        acc: tally.acc(),
        acc_signal: tally.acc_signal(),
        acc_noise: tally.acc_noise(),
        ceilings,
        ablation: ablation.as_ref().map(|a| a.describe()).unwrap_or_default(),
        exhaustive,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    print_model_line(&checkpoint);
    if !report.ablation.is_empty() {
        println!("ABLATION: {}", report.ablation);
    }
    println!(
        "{} samples (validation stream of seed {seed}, signal fraction {:.3})",
        samples, ceilings.signal_frac
    );
    println!(
        "loss     {:.4}   Bayes optimum {:.4}",
        report.loss, ceilings.bayes_ce
    );
    println!(
        "accuracy {:.4}   best possible {:.4}",
        report.acc, ceilings.best_acc
    );
    println!("  signal {:.4}   best possible 1.0000", report.acc_signal);
    println!(
        "  noise  {:.4}   chance {:.4}",
        report.acc_noise, ceilings.best_noise_acc
    );
    if let Some(x) = &report.exhaustive {
        print_exhaustive(x);
    }
    Ok(())
}

fn print_exhaustive(x: &ExhaustiveReport) {
    println!(
        "\nall {} signal sequences: accuracy {:.4}; sampled noise ({}): {:.4} (chance {:.4})",
        x.signal_sequences, x.signal_accuracy, x.noise_samples, x.noise_accuracy, x.noise_chance
    );
    println!("accuracy per trigger pair (rows: first token a, columns: second-to-last token b)");
    let header: String = x.triggers.iter().map(|t| format!("{t:>8}")).collect();
    println!("{:>6}{header}", "a \\ b");
    for (a, row) in x.triggers.iter().zip(&x.pair_accuracy) {
        let cells: String = row.iter().map(|v| format!("{v:>8.3}")).collect();
        println!("{a:>6}{cells}");
    }
    println!("accuracy per answer label");
    for (label, acc) in x.label_accuracy.iter().enumerate() {
        if let Some(acc) = acc {
            println!("  label {label:>2}: {acc:.3}");
        }
    }
    if !x.misses.is_empty() {
        println!("{} missed sequences, e.g.:", x.misses.len());
        for m in x.misses.iter().take(8) {
            println!(
                "  {:?}: expected {}, predicted {}",
                m.tokens, m.expected, m.predicted
            );
        }
    }
}

fn circuits_cmd(args: CircuitsArgs) -> Result<()> {
    let checkpoint = load_checkpoint(&args.checkpoint, args.tl_config.as_deref())?;
    let c = circuits(&checkpoint.config.model, &checkpoint.weights).map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string(&c)?);
        return Ok(());
    }
    print_model_line(&checkpoint);
    let vocab = c.direct.len();
    let header: String = (0..vocab).map(|v| format!("{v:>7}")).collect();
    for (h, (ov, qk)) in c.ov.iter().zip(&c.qk).enumerate() {
        println!("head {h} OV (biases folded in): rows source token, columns output logit");
        println!("{:>5}{header}", "src");
        for (src, row) in ov.iter().enumerate() {
            println!(
                "{src:>5}{}",
                row.iter().map(|v| format!("{v:>7.2}")).collect::<String>()
            );
        }
        println!("head {h} QK (biases folded in): rows query token, columns key token");
        println!("{:>5}{header}", "q");
        for (q, row) in qk.iter().enumerate() {
            println!(
                "{q:>5}{}",
                row.iter().map(|v| format!("{v:>7.2}")).collect::<String>()
            );
        }
        println!();
    }
    Ok(())
}

/// "0..5", "0,3,7" or "4".
fn parse_seeds(text: &str) -> Result<Vec<u64>> {
    let bad = || {
        anyhow::anyhow!("--seeds \"{text}\": use a range like 0..5, a list like 0,3,7 or one seed")
    };
    if let Some((a, b)) = text.split_once("..") {
        let (a, b): (u64, u64) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if b <= a || b - a > 10_000 {
            return Err(bad());
        }
        return Ok((a..b).collect());
    }
    text.split(',')
        .map(|s| s.trim().parse().map_err(|_| bad()))
        .collect()
}

#[derive(Debug, Serialize)]
struct SweepRow {
    preset: String,
    lr: f64,
    seed: u64,
    epochs: usize,
    val_loss: f64,
    val_acc: f64,
    val_acc_signal: f64,
    val_acc_noise: f64,
    epoch_99: Option<usize>,
    train_s: f64,
    checkpoint: String,
}

fn sweep(args: SweepArgs) -> Result<()> {
    let seeds = parse_seeds(&args.seeds)?;
    let lrs: Vec<Option<f64>> = if args.lr.is_empty() {
        vec![None]
    } else {
        args.lr.iter().map(|&l| Some(l)).collect()
    };
    // The configs to sweep, each with its name in the summary.
    let bases: Vec<(String, RunConfig)> = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config {}", path.display()))?;
            let cfg = RunConfig::from_json(&text)
                .map_err(|e| anyhow::anyhow!("in {}: {e}", path.display()))?;
            let stem = path
                .file_stem()
                .map_or("config".into(), |s| s.to_string_lossy().into_owned());
            vec![(stem, cfg)]
        }
        None => args
            .preset
            .iter()
            .map(|&p| (p.name().to_string(), RunConfig::from_preset(p)))
            .collect(),
    };
    let runs = bases.len() * lrs.len() * seeds.len();
    in_range(
        "the number of runs (configs × lrs × seeds)",
        runs,
        1,
        MAX_SWEEP_RUNS,
    )?;
    // Every config is checked before the first run starts, so a bad value fails at once.
    let mut configs = Vec::with_capacity(runs);
    for (name, base) in &bases {
        for &lr in &lrs {
            for &seed in &seeds {
                let mut cfg = base.clone();
                cfg.seed = seed;
                if let Some(lr) = lr {
                    cfg.train.lr = lr;
                }
                if let Some(e) = args.epochs {
                    cfg.train.epochs = e;
                }
                cfg.validate().map_err(anyhow::Error::msg)?;
                configs.push((name.clone(), cfg));
            }
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let device = candle_core::Device::Cpu;
    let mut rows = Vec::new();
    for (preset, cfg) in configs {
        let seed = cfg.seed;
        let name = format!("{preset}-lr{}-seed{seed}.safetensors", cfg.train.lr);
        let ckpt = train_to_checkpoint(cfg.clone(), &device, |_| {})?;
        let path = args.out.join(&name);
        ckpt.save(&path)?;
        let last = ckpt.history.last().copied().expect("at least one epoch");
        let row = SweepRow {
            preset,
            lr: cfg.train.lr,
            seed,
            epochs: last.epoch,
            val_loss: last.val_loss,
            val_acc: last.val_acc,
            val_acc_signal: last.val_acc_signal,
            val_acc_noise: last.val_acc_noise,
            epoch_99: epoch_reaching_99(&ckpt.history),
            train_s: last.elapsed_s,
            checkpoint: name,
        };
        if !args.json {
            eprintln!(
                "{} lr {} seed {}: val acc {:.4}, signal {:.4}, 99% at {}",
                row.preset,
                row.lr,
                row.seed,
                row.val_acc,
                row.val_acc_signal,
                row.epoch_99
                    .map_or("never".into(), |e| format!("epoch {e}"))
            );
        }
        rows.push(row);
    }
    let mut csv = String::from(
        "preset,lr,seed,epochs,val_loss,val_acc,val_acc_signal,val_acc_noise,epoch_99,train_s,checkpoint\n",
    );
    for r in &rows {
        csv += &format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            r.preset,
            r.lr,
            r.seed,
            r.epochs,
            r.val_loss,
            r.val_acc,
            r.val_acc_signal,
            r.val_acc_noise,
            r.epoch_99.map_or(String::new(), |e| e.to_string()),
            r.train_s,
            r.checkpoint
        );
    }
    crate::checkpoint::write_atomically(&args.out.join("summary.csv"), csv.as_bytes())?;
    let json = serde_json::to_string_pretty(&rows)?;
    crate::checkpoint::write_atomically(&args.out.join("summary.json"), json.as_bytes())?;
    if args.json {
        println!("{json}");
    } else {
        println!(
            "{:<9} {:>7} {:>5} {:>8} {:>8} {:>8} {:>8} {:>9}",
            "preset", "lr", "seed", "val loss", "val acc", "signal", "noise", "99% at"
        );
        for r in &rows {
            println!(
                "{:<9} {:>7} {:>5} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>9}",
                r.preset,
                r.lr,
                r.seed,
                r.val_loss,
                r.val_acc,
                r.val_acc_signal,
                r.val_acc_noise,
                r.epoch_99.map_or("never".into(), |e| e.to_string())
            );
        }
        println!("wrote {}", args.out.join("summary.csv").display());
    }
    Ok(())
}

fn bench(args: BenchArgs) -> Result<()> {
    args.single_config()?;
    let (device, note) = device::resolve(args.device);
    if let Some(note) = note {
        eprintln!("warning: {note}");
    }
    if args.lm_step {
        let steps = if args.quick { 20 } else { 200 };
        let timing = crate::bench::time_lm_steps(64, 10, steps, 20, &device)?;
        println!("{}", serde_json::to_string(&timing)?);
        return Ok(());
    }
    if let Some(cfg) = args.single_config()? {
        let timing = crate::bench::time_steps(cfg, if args.quick { 3 } else { 10 }, &device)?;
        println!("{}", serde_json::to_string(&timing)?);
        return Ok(());
    }
    let report = crate::bench::run(&device, args.quick)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::bench::to_markdown(&report));
    }
    Ok(())
}

fn inspect_cmd(args: InspectArgs) -> Result<()> {
    let (checkpoint, model) = load_model(&args.checkpoint, args.tl_config.as_deref(), args.device)?;
    let cfg = &checkpoint.config.model;
    let tokens = parse_sequence(&args.tokens.join(" "), cfg.d_vocab, cfg.n_ctx)
        .map_err(|e| anyhow::anyhow!("bad tokens: {e}"))?;
    let cache = model.run_with_cache(&tokens)?;
    let result = inspection_of(&cache, cfg.n_layers, &checkpoint.config.task);
    if args.json {
        let mut json = serde_json::to_value(&result)?;
        if args.cache {
            json["cache"] = serde_json::Value::Object(cache_json(&cache));
        }
        println!("{json}");
    } else {
        print_model_line(&checkpoint);
        print_inspection(&result);
    }
    Ok(())
}

fn print_inspection(r: &Inspection) {
    let fmt_row = |v: &[f32]| {
        v.iter()
            .map(|x| format!("{x:>7.3}"))
            .collect::<Vec<_>>()
            .join("")
    };
    let vocab = r.logits_last.len();
    println!("tokens {:?}", r.tokens);
    match r.expected {
        Some(e) => println!(
            "predicted {}  expected {} ({})",
            r.predicted_token,
            e,
            if e == r.predicted_token {
                "correct"
            } else {
                "wrong"
            }
        ),
        None => println!(
            "predicted {}  (not a signal sequence: no expected answer)",
            r.predicted_token
        ),
    }
    let header: String = (0..vocab).map(|v| format!("{v:>7}")).collect();
    println!("\n{:<10}{header}", "token");
    println!("{:<10}{}", "logit", fmt_row(&r.logits_last));
    println!("{:<10}{}", "prob", fmt_row(&r.probs_last));
    if let (Some(direct), Some(heads), Some(bias)) =
        (&r.direct_logits_last, &r.head_logits_last, &r.bias_logits)
    {
        println!("\nhead-to-logit decomposition at the last position");
        println!("{:<10}{header}", "");
        println!("{:<10}{}", "direct", fmt_row(direct));
        for (h, row) in heads.iter().enumerate() {
            println!("{:<10}{}", format!("head {h}"), fmt_row(row));
        }
        if let Some(mlp) = &r.mlp_logits_last {
            println!("{:<10}{}", "MLP", fmt_row(mlp));
        }
        println!("{:<10}{}", "biases", fmt_row(bias));
        println!("{:<10}{}", "= logits", fmt_row(&r.logits_last));
    }
    let layers = r.patterns.len();
    for (l, h, pattern) in r
        .patterns
        .iter()
        .enumerate()
        .flat_map(|(l, heads)| heads.iter().enumerate().map(move |(h, p)| (l, h, p)))
    {
        let name = if layers == 1 {
            format!("head {h}")
        } else {
            format!("layer {l} head {h}")
        };
        println!("\n{name} attention (rows: query position, columns: key position)");
        let keys: String = r.tokens.iter().map(|t| format!("{t:>7}")).collect();
        println!("{:<10}{keys}", "q \\ k");
        for (q, row) in pattern.iter().enumerate() {
            let cells: String = row
                .iter()
                .enumerate()
                .map(|(k, w)| {
                    if k > q {
                        format!("{:>7}", "·")
                    } else {
                        format!("{w:>7.3}")
                    }
                })
                .collect();
            println!("{:<10}{cells}", format!("{} ({})", q, r.tokens[q]));
        }
    }
}
