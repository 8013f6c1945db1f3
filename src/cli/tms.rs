//! `toylens train --preset tms-…`: a Toy Models of Superposition run, to a checkpoint, with the
//! paper's statistics of the learned geometry at the end.

use std::io::Write;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};

use super::train::TrainArgs;
use crate::checkpoint::TmsCheckpoint;
use crate::superposition::config::{PHASE_GRID, phase_point};
use crate::superposition::{FRACTIONS, Regime, TmsError, TmsPreset, TmsRun, TmsTrainer, regime};
use crate::train::Preset;

/// A preset of either kind of model: `--preset` takes both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyPreset {
    Transformer(Preset),
    Superposition(TmsPreset),
}

impl clap::ValueEnum for AnyPreset {
    fn value_variants<'a>() -> &'a [Self] {
        static ALL: std::sync::LazyLock<Vec<AnyPreset>> = std::sync::LazyLock::new(|| {
            let tms = <TmsPreset as clap::ValueEnum>::value_variants();
            Preset::ALL
                .iter()
                .map(|&p| AnyPreset::Transformer(p))
                .chain(tms.iter().map(|&p| AnyPreset::Superposition(p)))
                .collect()
        });
        &ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        match self {
            AnyPreset::Transformer(p) => p.to_possible_value(),
            AnyPreset::Superposition(p) => p.to_possible_value(),
        }
    }
}

/// The run of the other kind of model (Toy Models of Superposition), where `--preset` or the
/// config file names one: its settings.
pub(super) fn superposition_run(args: &TrainArgs) -> Result<Option<TmsRun>> {
    let tms_preset = match args.preset {
        Some(AnyPreset::Superposition(p)) => Some(p),
        _ => None,
    };
    let Some(path) = &args.config else {
        return Ok(tms_preset.map(TmsRun::from_preset));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let is_tms = serde_json::from_str(&text).is_ok_and(|v| TmsRun::is_tms_json(&v));
    match (is_tms, args.preset) {
        (_, Some(AnyPreset::Superposition(_))) => {
            bail!("a superposition --preset is a whole run; use it without --config")
        }
        (true, Some(_)) => {
            bail!("--preset names a transformer run; this config is a superposition run")
        }
        (true, None) => Ok(Some(
            TmsRun::from_json(&text).with_context(|| format!("in {}", path.display()))?,
        )),
        (false, _) => Ok(None),
    }
}

/// `run` (a preset's or a config file's) with the flags that apply to it; any other flag is an
/// error.
fn build(args: &TrainArgs, mut run: TmsRun) -> Result<TmsRun> {
    let not_here = [
        ("--task", args.task.is_some()),
        ("--epochs", args.epochs.is_some()),
        ("--path", args.path.is_some()),
        ("--vocab", args.vocab.is_some()),
        ("--half", args.half.is_some()),
        ("--gap-max", args.gap_max.is_some()),
        ("--p", args.p.is_some()),
        ("--train-frac", args.train_frac.is_some()),
        ("--data", args.data.is_some()),
        ("--val-frac", args.val_frac.is_some()),
        ("--from", args.from.is_some()),
        ("--csv", args.csv.is_some()),
        ("--stop-at-milestone", args.stop_at_milestone),
    ];
    if let Some((flag, _)) = not_here.iter().find(|(_, given)| *given) {
        bail!("{flag} does not apply to a superposition run");
    }
    if let Some(seed) = args.seed {
        run.seed = seed;
    }
    let t = &mut run.train;
    if let Some(steps) = args.steps {
        t.steps = steps;
    }
    if let Some(every) = args.eval_every {
        t.eval_every = every;
    }
    if let Some(lr) = args.lr {
        t.lr = lr;
    }
    if let Some(b) = args.batch_size {
        t.batch_size = b;
    }
    if let Some(wd) = args.weight_decay {
        t.weight_decay = wd;
    }
    run.validate().map_err(anyhow::Error::msg)?;
    Ok(run)
}

pub fn train(args: &TrainArgs, run: TmsRun) -> Result<()> {
    let path = args.out.clone().context("--out is required")?;
    let run = build(args, run)?;
    let mut trainer = TmsTrainer::new(run.clone())?;
    let mut history = Vec::new();
    let mut printed = Ok(());
    let ended = trainer.drive(&AtomicBool::new(false), |trainer, metrics| {
        if args.json {
            if printed.is_ok() {
                printed = serde_json::to_string(metrics).map(|line| println!("{line}"));
            }
        } else if metrics.step % (run.train.eval_every * 10).max(1) == 0 || trainer.is_finished() {
            println!(
                "step {:>6}/{}  loss {:.6}  {:.2}s",
                metrics.step, run.train.steps, metrics.loss, metrics.elapsed_s
            );
        }
        history.push(metrics.clone());
    });
    printed?;
    match ended {
        Ok(_) => {}
        Err(e @ TmsError::Diverged { .. }) => bail!("{e}; nothing was saved"),
        Err(e) => return Err(e.into()),
    }
    let checkpoint = TmsCheckpoint::of(&trainer, history);
    checkpoint
        .save(&path)
        .with_context(|| "saving the checkpoint")?;
    let mut out: Box<dyn Write> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let lines = if trainer.run().is_phase_grid() {
        phase_map(&trainer)
    } else {
        summary(&trainer)
    };
    for line in lines {
        writeln!(out, "{line}")?;
    }
    writeln!(out, "saved {}", path.display())?;
    Ok(())
}

/// The phase diagram as text: a row per relative importance of the second feature (largest
/// first), a column per feature probability (densest first), each cell the regime its trained W
/// shows.
fn phase_map(trainer: &TmsTrainer) -> Vec<String> {
    let w = &trainer.weights().w;
    let m = trainer.run().model.n_hidden;
    let cell = |r: usize, c: usize| {
        let k = r * PHASE_GRID + c;
        regime(&w[k * 2 * m..(k + 1) * 2 * m], m)
    };
    let mut lines = vec![
        "phase diagram: rows the second feature's relative importance, columns the feature \
         probability; . second feature not represented, D dedicated, S superposition"
            .to_string(),
    ];
    for r in (0..PHASE_GRID).rev() {
        let row: String = (0..PHASE_GRID).map(|c| cell(r, c).symbol()).collect();
        lines.push(format!("  importance {:>6.2}  {row}", phase_point(r, 0).1));
    }
    let last = format!("{:.2}", phase_point(0, PHASE_GRID - 1).0);
    lines.push(format!(
        "  probability         {:<w$}{last}",
        "1",
        w = PHASE_GRID - last.len()
    ));
    let count = |g: Regime| {
        (0..PHASE_GRID * PHASE_GRID)
            .filter(|&k| cell(k / PHASE_GRID, k % PHASE_GRID) == g)
            .count()
    };
    lines.push(format!(
        "cells: {} not represented, {} dedicated, {} in superposition, {} neither",
        count(Regime::NotRepresented),
        count(Regime::Dedicated),
        count(Regime::Superposition),
        count(Regime::Neither)
    ));
    lines
}

/// D* per instance, and as the reference counts them: over the features with D_i ≥ 0.1 of the
/// instances with D* < 0.95, how many lie within 0.005 of each fraction.
fn summary(trainer: &TmsTrainer) -> Vec<String> {
    let run = trainer.run();
    let dstar = trainer.dims_per_feature();
    let mut near = vec![0usize; FRACTIONS.len()];
    for (i, &d) in dstar.iter().enumerate() {
        if d >= 0.95 {
            continue;
        }
        for &dim in trainer
            .geometry(i)
            .dimensionality
            .iter()
            .filter(|&&x| x >= 0.1)
        {
            for (count, (_, f)) in near.iter_mut().zip(FRACTIONS) {
                *count += usize::from((dim - f).abs() <= 0.005);
            }
        }
    }
    vec![
        format!(
            "trained {} steps of {} instances ({} features into {})",
            trainer.steps_done(),
            run.model.n_instances,
            run.model.n_features,
            run.model.n_hidden
        ),
        format!(
            "D* per instance: {}",
            dstar
                .iter()
                .map(|d| format!("{d:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        format!(
            "instances with D* within 0.03 of 1/2: {}",
            dstar.iter().filter(|d| (*d - 0.5).abs() <= 0.03).count()
        ),
        format!(
            "features within 0.005 of each fraction (instances with D* < 0.95): {}",
            FRACTIONS
                .iter()
                .zip(&near)
                .map(|((name, _), n)| format!("{name}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ]
}
