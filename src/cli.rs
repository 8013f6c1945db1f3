//! The headless command line: train, evaluate and inspect without a window.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::analysis::{Inspection, inspect};
use crate::checkpoint::{Checkpoint, Snapshot};
use crate::device::{self, DeviceChoice};
use crate::model::AttnOnly;
use crate::seed::{Stream, stream_rng};
use crate::task::{Ceilings, parse_sequence};
use crate::train::{
    Event, FinishReason, PathChoice, Preset, RunConfig, evaluate_dataset, spawn_training,
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
    /// Measure training and inspection speed, and how it grows with batch, length and vocabulary.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Fewer repeats and sizes: a smoke run in a few seconds.
    #[arg(long)]
    pub quick: bool,
    /// Print JSON instead of Markdown tables.
    #[arg(long)]
    pub json: bool,
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
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A toylens checkpoint or a bare TransformerLens state dict.
    pub checkpoint: PathBuf,
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
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct InspectArgs {
    /// A toylens checkpoint or a bare TransformerLens state dict.
    pub checkpoint: PathBuf,
    /// Token ids, as separate arguments or one string: `2 5 3 0` or "2,5,3,0".
    #[arg(required = true, num_args = 1..)]
    pub tokens: Vec<String>,
    /// Print JSON (keys match the TransformerLens fixture) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Train(args) => train(args),
        Command::Eval(args) => eval(args),
        Command::Inspect(args) => inspect_cmd(args),
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
    let handle = spawn_training(cfg.clone(), None, device.clone(), Arc::new(|| {}));
    let mut checkpoint = Checkpoint::new(cfg.clone(), crate::model::Weights::zeros(&cfg.model));
    let mut path_name = "";
    let mut first_99 = None;
    while let Some(event) = handle.recv() {
        match event {
            Event::Started {
                path,
                initial_weights,
                ..
            } => {
                path_name = path;
                checkpoint.snapshots.push(Snapshot {
                    epoch: 0,
                    weights: initial_weights,
                });
            }
            Event::Step(step) => {
                if let Some(bar) = &progress {
                    bar.set_position(step.step as u64);
                    bar.set_message(format!("{}/{}", step.epoch, cfg.train.epochs));
                }
            }
            Event::Epoch {
                metrics: m,
                weights,
            } => {
                if first_99.is_none() && m.val_acc_signal >= 0.99 {
                    first_99 = Some(m.epoch);
                }
                if args.json {
                    let line = serde_json::to_string(&m)?;
                    match &progress {
                        Some(bar) => bar.suspend(|| println!("{line}")),
                        None => println!("{line}"),
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
                checkpoint.history.push(m);
                checkpoint.snapshots.push(Snapshot {
                    epoch: m.epoch,
                    weights,
                });
            }
            Event::Finished {
                reason,
                epochs_done,
                weights,
            } => {
                checkpoint.weights = weights;
                checkpoint.epoch = epochs_done;
                if reason == FinishReason::Stopped {
                    say(format!("stopped after {epochs_done} epochs"));
                }
            }
            Event::Diverged { message, .. } => {
                if let Some(bar) = &progress {
                    bar.finish_and_clear();
                }
                bail!("{message}; nothing was saved");
            }
            Event::Error(message) => bail!("training failed: {message}"),
            Event::Paused | Event::Resumed => {}
        }
    }
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    checkpoint
        .save(&args.out)
        .with_context(|| "saving the checkpoint")?;
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
}

fn load_model(path: &std::path::Path, choice: DeviceChoice) -> Result<(Checkpoint, AttnOnly)> {
    let checkpoint = Checkpoint::load(path)?;
    let (device, note) = device::resolve(choice);
    if let Some(note) = note {
        eprintln!("warning: {note}");
    }
    let model = AttnOnly::new(&checkpoint.config.model, &checkpoint.weights, &device)?;
    Ok((checkpoint, model))
}

fn eval(args: EvalArgs) -> Result<()> {
    let (checkpoint, model) = load_model(&args.checkpoint, args.device)?;
    let task = &checkpoint.config.task;
    let seed = args.seed.unwrap_or(checkpoint.config.seed);
    let samples = args.samples.unwrap_or(task.val_size);
    if samples == 0 {
        bail!("--samples must be at least 1");
    }
    let data = task
        .generate(samples, &mut stream_rng(seed, Stream::ValData))
        .map_err(anyhow::Error::msg)?;
    let ceilings = data.ceilings();
    let tally = evaluate_dataset(&model, data)?;
    let report = EvalReport {
        samples,
        seed,
        loss: tally.loss(),
        acc: tally.acc(),
        acc_signal: tally.acc_signal(),
        acc_noise: tally.acc_noise(),
        ceilings,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
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
    }
    Ok(())
}

fn bench(args: BenchArgs) -> Result<()> {
    let (device, note) = device::resolve(args.device);
    if let Some(note) = note {
        eprintln!("warning: {note}");
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
    let (checkpoint, model) = load_model(&args.checkpoint, DeviceChoice::Cpu)?;
    let cfg = &checkpoint.config.model;
    let tokens = parse_sequence(&args.tokens.join(" "), cfg.d_vocab, cfg.n_ctx)
        .map_err(|e| anyhow::anyhow!("bad tokens: {e}"))?;
    let result = inspect(&model, &checkpoint.config.task, &tokens)?;
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
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
    println!("\nhead-to-logit decomposition at the last position");
    println!("{:<10}{header}", "");
    println!("{:<10}{}", "direct", fmt_row(&r.direct_logits_last));
    for (h, row) in r.head_logits_last.iter().enumerate() {
        println!("{:<10}{}", format!("head {h}"), fmt_row(row));
    }
    println!("{:<10}{}", "b_O", fmt_row(&r.bias_logits));
    println!("{:<10}{}", "= logits", fmt_row(&r.logits_last));
    for (h, pattern) in r.pattern.iter().enumerate() {
        println!("\nhead {h} attention (rows: query position, columns: key position)");
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
