//! `toylens train`: one run from a preset, a config file or flags, to a checkpoint.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

pub use super::tms::AnyPreset;
use crate::device::{self, DeviceChoice};
use crate::metrics::{Metrics, history_csv, milestone};
use crate::model::Weights;
use crate::task::{SequencesConfig, TaskConfig, TaskKind};
use crate::train::{Control, PathChoice, Preset, Progress, RunConfig, Trainer, drive};

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    /// A whole run: `fast` learns skip-trigrams in seconds, `notebook` repeats the notebook's
    /// run, `induction` grows induction heads, `grokking` is TransformerLens's grokking demo,
    /// `grokking-fast` a smaller run that groks within a minute, `sort` and `reverse` learn the
    /// example data sets; `tms-intro`, `tms-geometry` and `tms-phase` are Toy Models of Superposition.
    #[arg(long, value_enum)]
    pub preset: Option<AnyPreset>,
    /// The task, with its preset's model and training (induction: `induction`, modular
    /// addition: `grokking`); the task flags below change its settings.
    #[arg(long, value_enum)]
    pub task: Option<TaskKind>,
    /// A JSON run config ({"seed", "task", "model", "train"}; missing fields take defaults).
    /// A training preset (`fast`, `notebook`) and the flags below override it.
    #[arg(long, value_name = "FILE.json")]
    pub config: Option<PathBuf>,
    /// Seed for the data, the split, the init and shuffling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of passes over the training set (skip-trigrams, modular addition).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Number of steps on fresh batches (induction).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Evaluate every this many epochs (steps, for induction).
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Samples per optimiser step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Weight decay: an L2 term for Adam, decoupled for AdamW.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Forward formulation; every one is exact, `auto` picks the fastest.
    #[arg(long, value_enum)]
    pub path: Option<PathChoice>,
    /// Induction: the number of tokens the random ones are drawn from. With --data: the data's
    /// vocabulary file (a JSON list of token strings; a vocab.json beside the data is found
    /// without it).
    #[arg(long, value_name = "N | FILE")]
    pub vocab: Option<String>,
    /// Train on the sequences of this data file (.jsonl, .npy or .npz): the `sequences` task,
    /// with a 2-layer attention-only model sized by the data (or the model of --preset sort or
    /// reverse).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["task", "config"])]
    pub data: Option<PathBuf>,
    /// Data-file task: the share of sequences drawn into validation where the file names no
    /// split (default 0.1).
    #[arg(long)]
    pub val_frac: Option<f64>,
    /// Fine-tune: start from this checkpoint's weights (a toylens checkpoint, or a
    /// TransformerLens state dict in safetensors or .pth with its config beside it). Its model
    /// replaces the run's; the task must fit it.
    #[arg(long, value_name = "CHECKPOINT")]
    pub from: Option<PathBuf>,
    /// Induction: the length of the random half (sequences are twice as long, plus the gap).
    #[arg(long)]
    pub half: Option<usize>,
    /// Induction: up to this many random tokens between the half and its copy, drawn per
    /// sequence (0, the default: none). A varying gap leaves no positional shortcut.
    #[arg(long)]
    pub gap_max: Option<usize>,
    /// Modular addition: the modulus p.
    #[arg(long)]
    pub p: Option<usize>,
    /// Modular addition: the fraction of the p² pairs trained on.
    #[arg(long)]
    pub train_frac: Option<f64>,
    /// auto, cpu, cuda or cuda:N. Falls back to the CPU with a message if CUDA is unavailable.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Where to save the checkpoint (safetensors with TransformerLens names).
    #[arg(
        long,
        value_name = "FILE.safetensors",
        required_unless_present = "run_dir"
    )]
    pub out: Option<PathBuf>,
    /// Train a sweep's point in its folder: DIR/config.json in; DIR/metrics.jsonl,
    /// DIR/checkpoint.safetensors and DIR/result.json out (what sweep executors run). SIGTERM
    /// (a time limit) ends it early as `timeout`, its records still written.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pub run_dir: Option<PathBuf>,
    /// Print one JSON object per evaluation on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the metrics of every evaluation to this CSV file.
    #[arg(long, value_name = "FILE.csv")]
    pub csv: Option<PathBuf>,
    /// Stop at the task's milestone (signal accuracy 99 %, repeated-half loss under 10 % of
    /// ln V, test accuracy 99 %) instead of training to the end.
    #[arg(long)]
    pub stop_at_milestone: bool,
}

impl TrainArgs {
    /// `--preset` where it names a transformer run.
    fn transformer_preset(&self) -> Option<Preset> {
        match self.preset {
            Some(AnyPreset::Transformer(p)) => Some(p),
            _ => None,
        }
    }
}

/// The preset that stands for a task given by `--task`.
fn preset_of(task: TaskKind) -> Preset {
    match task {
        TaskKind::SkipTrigram => Preset::Fast,
        TaskKind::Induction => Preset::Induction,
        TaskKind::ModularAddition => Preset::Grokking,
        // Not values of --task (a data file's task comes with --data; a model opened without a
        // task has none).
        TaskKind::Sequences => Preset::Sort,
        TaskKind::None => Preset::default(),
    }
}

/// The run config from a file, a preset or task and flags, in that order of precedence (last
/// wins). A flag that does not apply to the run's task is an error, not silently ignored.
pub fn build_config(args: &TrainArgs) -> Result<RunConfig> {
    let mut cfg = match (&args.config, args.transformer_preset(), args.task) {
        _ if args.data.is_some() => data_run(args)?,
        (Some(path), _, _) => super::run_config_file(path)?,
        (None, Some(preset), _) => RunConfig::from_preset(preset),
        (None, None, Some(task)) => RunConfig::from_preset(preset_of(task)),
        (None, None, None) => RunConfig::default(),
    };
    if let (Some(preset), Some(_)) = (args.transformer_preset(), &args.config) {
        if !preset.is_training_only() || cfg.task.kind() != TaskKind::SkipTrigram {
            bail!(
                "--preset {} is a whole run; use it without --config, or put its settings in the \
                 config file",
                preset.name()
            );
        }
        cfg.train = Preset::train_config(preset);
    }
    if let Some(task) = args.task
        && task != cfg.task.kind()
    {
        bail!(
            "--task {} contradicts the {} task of the {}",
            task.name(),
            cfg.task.kind().name(),
            if args.config.is_some() {
                "config file"
            } else {
                "preset"
            }
        );
    }
    apply_task_flags(args, &mut cfg)?;
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    super::apply_length(&mut cfg, args.epochs, args.steps)?;
    if let Some(every) = args.eval_every {
        cfg.train.eval_every = every;
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

/// `--from`: the checkpoint's weights, its model in place of the run's, checked against the
/// task.
fn starting_weights(args: &TrainArgs, cfg: &mut RunConfig) -> Result<Option<Weights>> {
    let Some(path) = &args.from else {
        return Ok(None);
    };
    let checkpoint =
        super::load_checkpoint(path, None).with_context(|| format!("--from {}", path.display()))?;
    cfg.model = checkpoint.config.model.clone();
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("--from {}: {e}", path.display()))?;
    Ok(Some(checkpoint.weights))
}

/// The run of `--data FILE`: the data file's task, with the default model for such data, or the
/// model and training of `--preset sort` or `reverse` fitted to the data.
fn data_run(args: &TrainArgs) -> Result<RunConfig> {
    let path = args.data.clone().expect("called with --data");
    let vocab = args.vocab.as_ref().map(PathBuf::from);
    let mut task = SequencesConfig::file(path, vocab);
    task.load(std::path::Path::new("."))?;
    Ok(match args.transformer_preset() {
        None => RunConfig::for_sequences(task, 0),
        Some(preset @ (Preset::Sort | Preset::Reverse)) => {
            let mut cfg = RunConfig::from_preset(preset);
            cfg.task = TaskConfig::Sequences(task);
            cfg.fit_model_to_task();
            cfg
        }
        Some(preset) => bail!(
            "--preset {} trains its own task; with --data use --preset sort or reverse (their \
             model and training), or no preset",
            preset.name()
        ),
    })
}

/// `--vocab`, `--half`, `--p`, `--train-frac` and `--val-frac`, each only for its task; the
/// model's vocabulary and context follow the task.
fn apply_task_flags(args: &TrainArgs, cfg: &mut RunConfig) -> Result<()> {
    let kind = cfg.task.kind();
    let wrong = |flag: &str, task: TaskKind| {
        anyhow::anyhow!(
            "{flag} is a setting of the {} task, not of {}",
            task.name(),
            kind.name()
        )
    };
    let mut changed = false;
    match &mut cfg.task {
        TaskConfig::Induction(t) => {
            if let Some(v) = &args.vocab {
                t.vocab = v.parse().map_err(|_| {
                    anyhow::anyhow!("--vocab {v}: the induction task's vocabulary is a number")
                })?;
                changed = true;
            }
            if let Some(h) = args.half {
                t.half = h;
                changed = true;
            }
            if let Some(g) = args.gap_max {
                t.gap_max = g;
                changed = true;
            }
        }
        TaskConfig::ModularAddition(t) => {
            if let Some(p) = args.p {
                t.p = p;
                changed = true;
            }
            if let Some(f) = args.train_frac {
                t.train_frac = f;
                changed = true;
            }
        }
        TaskConfig::Sequences(t) => {
            if let Some(f) = args.val_frac {
                t.val_frac = f;
                t.check_settings()
                    .map_err(|e| anyhow::anyhow!("--val-frac: {e}"))?;
            }
        }
        TaskConfig::SkipTrigram(_) | TaskConfig::None(_) => {}
    }
    if kind != TaskKind::Sequences && args.val_frac.is_some() {
        bail!(
            "--val-frac is a setting of a data file's task (--data), not of {}",
            kind.name()
        );
    }
    if kind != TaskKind::Induction {
        for (flag, given) in [
            ("--vocab", args.vocab.is_some() && args.data.is_none()),
            ("--half", args.half.is_some()),
            ("--gap-max", args.gap_max.is_some()),
        ] {
            if given {
                return Err(wrong(flag, TaskKind::Induction));
            }
        }
    }
    if kind != TaskKind::ModularAddition {
        for (flag, given) in [
            ("--p", args.p.is_some()),
            ("--train-frac", args.train_frac.is_some()),
        ] {
            if given {
                return Err(wrong(flag, TaskKind::ModularAddition));
            }
        }
    }
    if changed {
        cfg.task
            .validate()
            .map_err(|e| anyhow::anyhow!("task: {e}"))?;
        cfg.fit_model_to_task();
    }
    Ok(())
}

/// One evaluation as a line of text.
fn describe(m: &Metrics, total: usize) -> String {
    match m {
        Metrics::SkipTrigram(m) => format!(
            "epoch {:>4}/{total}  train loss {:.4} acc {:.4} | val loss {:.4} acc {:.4} \
             signal {:.4} noise {:.4}  {:.2}s",
            m.epoch,
            m.train_loss,
            m.train_acc,
            m.val_loss,
            m.val_acc,
            m.val_acc_signal,
            m.val_acc_noise,
            m.elapsed_s
        ),
        Metrics::Induction(m) => {
            let last = m.induction_score.last().map(Vec::as_slice).unwrap_or(&[]);
            format!(
                "step {:>6}/{total}  loss first half {:.4} repeated half {:.4} | induction \
                 score of layer {} {}  {:.2}s",
                m.step,
                m.loss_first_half,
                m.loss_repeated_half,
                m.induction_score.len().saturating_sub(1),
                last.iter()
                    .map(|s| format!("{s:.2}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                m.elapsed_s
            )
        }
        Metrics::ModularAddition(m) => format!(
            "epoch {:>6}/{total}  train loss {:.3e} acc {:.4} | test loss {:.3e} acc {:.4} | \
             weight norm {:.2}  {:.2}s",
            m.epoch, m.train_loss, m.train_acc, m.test_loss, m.test_acc, m.weight_norm, m.elapsed_s
        ),
        Metrics::Sequences(m) => format!(
            "epoch {:>4}/{total}  train loss {:.4} acc {:.4} | val loss {:.4} acc {:.4} \
             sequences {:.4}  {:.2}s",
            m.epoch, m.train_loss, m.train_acc, m.val_loss, m.val_acc, m.val_seq_acc, m.elapsed_s
        ),
    }
}

/// The run's result in two or three lines, with the task's ceilings.
fn summary(cfg: &RunConfig, last: &Metrics, milestone: Option<usize>) -> Vec<String> {
    let ln_v = (cfg.task.vocab_out() as f64).ln();
    match (last, &cfg.task) {
        (Metrics::SkipTrigram(m), TaskConfig::SkipTrigram(task)) => {
            let c = task.ceilings();
            vec![
                format!(
                    "validation: loss {:.4} (Bayes optimum {:.4}), acc {:.4} (best possible \
                     {:.4}), signal {:.4}, noise {:.4} (chance {:.4})",
                    m.val_loss,
                    c.bayes_ce,
                    m.val_acc,
                    c.best_acc,
                    m.val_acc_signal,
                    m.val_acc_noise,
                    c.best_noise_acc
                ),
                match milestone {
                    Some(e) => format!("validation signal accuracy reached 99% at epoch {e}"),
                    None => "validation signal accuracy never reached 99%".into(),
                },
            ]
        }
        (Metrics::Induction(m), _) => vec![
            format!(
                "validation: loss on the first half {:.4} (floor ln V = {ln_v:.4}), on the \
                 repeated half {:.4} (floor 0)",
                m.loss_first_half, m.loss_repeated_half
            ),
            match milestone {
                Some(s) => format!("the repeated-half loss fell under 10% of ln V at step {s}"),
                None => "the repeated-half loss never fell under 10% of ln V".into(),
            },
        ],
        (Metrics::ModularAddition(m), _) => vec![
            format!(
                "train loss {:.3e} acc {:.4}; test loss {:.3e} acc {:.4} (chance {:.4}); weight \
                 norm {:.2}",
                m.train_loss,
                m.train_acc,
                m.test_loss,
                m.test_acc,
                1.0 / cfg.task.vocab_out() as f64,
                m.weight_norm
            ),
            match milestone {
                Some(e) => format!("test accuracy reached 99% (grokked) at epoch {e}"),
                None => "test accuracy never reached 99% (not grokked)".into(),
            },
        ],
        (Metrics::Sequences(m), TaskConfig::Sequences(task)) => {
            let by_position: Vec<String> = m
                .acc_by_position
                .iter()
                .enumerate()
                .filter_map(|(p, a)| a.map(|a| format!("{p}:{a:.3}")))
                .collect();
            vec![
                format!(
                    "validation ({}): loss {:.4}, accuracy {:.4}, sequence accuracy {:.4}",
                    task.short_name(),
                    m.val_loss,
                    m.val_acc,
                    m.val_seq_acc
                ),
                format!("accuracy by position: {}", by_position.join(" ")),
                match milestone {
                    Some(e) => format!("validation sequence accuracy reached 99% at epoch {e}"),
                    None => "validation sequence accuracy never reached 99%".into(),
                },
            ]
        }
        _ => Vec::new(),
    }
}

pub fn train(args: TrainArgs) -> Result<()> {
    if let Some(dir) = &args.run_dir {
        return train_run_dir(&args, dir);
    }
    let out = args.out.clone().context("--out is required")?;
    if let Some(run) = super::tms::superposition_run(&args)? {
        return super::tms::train(&args, run);
    }
    let mut cfg = build_config(&args)?;
    let init = starting_weights(&args, &mut cfg)?;
    let (device, note) = device::resolve(args.device);
    if let Some(note) = note {
        eprintln!("warning: {note}");
    }
    let total = cfg.total_units();
    let unit = cfg.task.unit().name();
    let ln_v = (cfg.task.vocab_out() as f64).ln();
    let total_steps = (cfg.steps_per_epoch() * total) as u64;
    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total_steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} steps, {msg} ({eta} left)",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        Some(bar)
    } else {
        None
    };
    let say = |line: String| match &progress {
        Some(bar) => bar.suspend(|| println!("{line}")),
        None => println!("{line}"),
    };
    let mut path_name = String::new();
    let mut failed_print = None;
    let mut reached = false;
    let trainer = match init {
        Some(weights) => Trainer::with_weights(cfg.clone(), weights, &device)?,
        None => Trainer::new(cfg.clone(), &device)?,
    };
    let outcome = drive(trainer, |p| {
        match p {
            Progress::Started { path, .. } => path_name = path,
            Progress::Step(step) => {
                if let Some(bar) = &progress {
                    bar.set_position(step.step as u64);
                    bar.set_message(format!("{unit} {}/{total}", step.epoch));
                }
            }
            Progress::Evaluation { metrics: m, .. } => {
                if args.json {
                    match serde_json::to_string(m) {
                        Ok(line) => say(line),
                        Err(e) => failed_print = Some(e),
                    }
                } else {
                    say(describe(m, total));
                }
                reached = milestone(std::slice::from_ref(m), ln_v).is_some();
            }
        }
        if args.stop_at_milestone && reached {
            Control::Stop
        } else {
            Control::Continue
        }
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
    let first = milestone(&checkpoint.history, ln_v);
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    checkpoint
        .save(&out)
        .with_context(|| "saving the checkpoint")?;
    if let Some(csv) = &args.csv {
        crate::checkpoint::write_atomically(csv, history_csv(&checkpoint.history).as_bytes())
            .with_context(|| "writing the CSV")?;
    }
    let mut text: Box<dyn Write> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    if let Some(last) = checkpoint.history.last() {
        let training_s = match last {
            Metrics::SkipTrigram(m) => m.elapsed_s,
            _ => last.elapsed_s(),
        };
        writeln!(
            text,
            "trained {} {unit}s in {training_s:.2} s on {} ({})",
            checkpoint.epoch,
            device::describe(&device),
            path_name
        )?;
        for line in summary(&cfg, last, first) {
            writeln!(text, "{line}")?;
        }
    }
    writeln!(text, "saved {}", out.display())?;
    Ok(())
}

/// `--run-dir DIR`: a sweep's point, trained from `DIR/config.json` with its records written
/// into DIR (see [`crate::sweep::run_in`]).
fn train_run_dir(args: &TrainArgs, dir: &std::path::Path) -> Result<()> {
    let config = dir.join(crate::sweep::CONFIG);
    if let Some(given) = &args.config {
        let same = |p: &std::path::Path| std::fs::canonicalize(p).ok();
        if same(given).is_none() || same(given) != same(&config) {
            bail!(
                "--run-dir {} trains {}; --config, where given, must name that file",
                dir.display(),
                config.display()
            );
        }
    }
    let others = [
        ("--preset", args.preset.is_some()),
        ("--task", args.task.is_some()),
        ("--seed", args.seed.is_some()),
        ("--epochs", args.epochs.is_some()),
        ("--steps", args.steps.is_some()),
        ("--lr", args.lr.is_some()),
        ("--batch-size", args.batch_size.is_some()),
        ("--weight-decay", args.weight_decay.is_some()),
        ("--data", args.data.is_some()),
        ("--from", args.from.is_some()),
        ("--csv", args.csv.is_some()),
    ];
    if let Some((flag, _)) = others.iter().find(|(_, given)| *given) {
        bail!("{flag} does not go with --run-dir: the run folder's config.json says everything");
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())
        .context("cannot listen for SIGTERM")?;
    let result = crate::sweep::run_in(dir, args.stop_at_milestone, &stop)?;
    let line = serde_json::to_string(&result)?;
    println!("{line}");
    if result.status == crate::sweep::Status::Failed {
        bail!(
            "{}",
            result.message.unwrap_or_else(|| "the run failed".into())
        );
    }
    Ok(())
}
