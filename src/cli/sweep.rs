//! `toylens sweep`: many runs (seeds × presets × learning rates) and their summary.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use super::in_range;
use crate::checkpoint::Checkpoint;
use crate::metrics::{Metrics, milestone};
use crate::train::{Control, Preset, Progress, RunConfig, Trainer, drive};

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
    /// Epochs per run, for tasks that count epochs (default: the preset's).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Steps per run, for tasks that count steps (induction; default: the preset's).
    #[arg(long)]
    pub steps: Option<usize>,
    /// End each run at its task's milestone (see `train --stop-at-milestone`).
    #[arg(long)]
    pub stop_at_milestone: bool,
    /// Directory for the checkpoints and `summary.csv` / `summary.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Most runs one sweep may ask for.
const MAX_SWEEP_RUNS: usize = 10_000;

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

/// One run's result. `loss`, `score` and `milestone` are the task's headline numbers:
/// validation loss, signal accuracy and the epoch of 99 % signal accuracy (skip-trigrams);
/// repeated-half loss, the best last-layer induction score and the step the repeated-half loss
/// fell under 10 % of ln V (induction); test loss, test accuracy and the grokking epoch (modular
/// addition).
#[derive(Debug, Serialize)]
struct SweepRow {
    preset: String,
    task: &'static str,
    lr: f64,
    seed: u64,
    /// Epochs or steps trained.
    trained: usize,
    loss: f64,
    score: f64,
    milestone: Option<usize>,
    train_s: f64,
    checkpoint: String,
    /// Every metric of the last evaluation.
    last: Metrics,
}

impl SweepRow {
    fn new(preset: String, cfg: &RunConfig, ckpt: &Checkpoint, name: String) -> Option<Self> {
        let last = ckpt.history.last()?.clone();
        let score = match &last {
            Metrics::SkipTrigram(m) => m.val_acc_signal,
            Metrics::Induction(m) => m
                .induction_score
                .last()
                .into_iter()
                .flatten()
                .fold(0.0, |a, &b| f64::max(a, b)),
            Metrics::ModularAddition(m) => m.test_acc,
            Metrics::Sequences(m) => m.val_seq_acc,
        };
        let ln_v = (cfg.task.vocab_out() as f64).ln();
        Some(Self {
            preset,
            task: cfg.task.kind().name(),
            lr: cfg.train.lr,
            seed: cfg.seed,
            trained: ckpt.epoch,
            loss: last.headline_loss(),
            score,
            milestone: milestone(&ckpt.history, ln_v),
            train_s: last.elapsed_s(),
            checkpoint: name,
            last,
        })
    }
}

pub fn sweep(args: SweepArgs) -> Result<()> {
    let seeds = parse_seeds(&args.seeds)?;
    let lrs: Vec<Option<f64>> = if args.lr.is_empty() {
        vec![None]
    } else {
        args.lr.iter().map(|&l| Some(l)).collect()
    };
    // The configs to sweep, each with its name in the summary.
    let bases: Vec<(String, RunConfig)> = match &args.config {
        Some(path) => {
            let cfg = super::run_config_file(path)?;
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
                super::apply_length(&mut cfg, args.epochs, args.steps)
                    .with_context(|| name.clone())?;
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
        let name = format!("{preset}-lr{}-seed{}.safetensors", cfg.train.lr, cfg.seed);
        let ln_v = (cfg.task.vocab_out() as f64).ln();
        let outcome = drive(Trainer::new(cfg.clone(), &device)?, |p| match p {
            Progress::Evaluation { metrics, .. }
                if args.stop_at_milestone
                    && milestone(std::slice::from_ref(metrics), ln_v).is_some() =>
            {
                Control::Stop
            }
            _ => Control::Continue,
        })?;
        if let Some(e) = outcome.ending.divergence() {
            bail!("{name}: {e}");
        }
        let ckpt = outcome.checkpoint;
        ckpt.save(&args.out.join(&name))?;
        let row = SweepRow::new(preset, &cfg, &ckpt, name)
            .context("a run ended without an evaluation")?;
        if !args.json {
            eprintln!(
                "{} lr {} seed {}: loss {:.4}, score {:.4}, milestone at {}",
                row.preset,
                row.lr,
                row.seed,
                row.loss,
                row.score,
                row.milestone.map_or("never".into(), |e| e.to_string())
            );
        }
        rows.push(row);
    }
    let mut csv =
        String::from("preset,lr,seed,trained,task,loss,score,milestone,train_s,checkpoint\n");
    for r in &rows {
        csv += &format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            r.preset,
            r.lr,
            r.seed,
            r.trained,
            r.task,
            r.loss,
            r.score,
            r.milestone.map_or(String::new(), |e| e.to_string()),
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
            "{:<14} {:<16} {:>7} {:>5} {:>8} {:>9} {:>8} {:>10}",
            "preset", "task", "lr", "seed", "trained", "loss", "score", "milestone"
        );
        for r in &rows {
            println!(
                "{:<14} {:<16} {:>7} {:>5} {:>8} {:>9.4} {:>8.4} {:>10}",
                r.preset,
                r.task,
                r.lr,
                r.seed,
                r.trained,
                r.loss,
                r.score,
                r.milestone.map_or("never".into(), |e| e.to_string())
            );
        }
        println!(
            "loss/score/milestone: skip-trigram val loss / signal acc / epoch of 99 % signal acc; \
             induction repeated-half loss / best last-layer induction score / step of loss < 10 % \
             ln V; modular addition test loss / test acc / epoch of 99 % test acc"
        );
        println!("wrote {}", args.out.join("summary.csv").display());
    }
    Ok(())
}
