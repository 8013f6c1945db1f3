//! `toylens eval`: a checkpoint's metrics on its task.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use serde::Serialize;

use super::{load_model, print_model_line};
use crate::analysis::{ExhaustiveReport, exhaustive, mean_z};
use crate::checkpoint::Checkpoint;
use crate::device::DeviceChoice;
use crate::model::Transformer;
use crate::model::{Ablation, HeadMode};
use crate::objective::{
    evaluate_induction_ablated, evaluate_sequences, loss_and_accuracy, loss_and_accuracy_ablated,
};
use crate::seed::{Stream, stream_rng};
use crate::task::SequencesConfig;
use crate::task::sequences::SequenceData;
use crate::task::{Ceilings, MAX_DATA_TOKENS, TaskConfig, TaskError, TaskKind};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A toylens checkpoint, or a TransformerLens state dict: safetensors, or a .pth/.pt that
    /// torch.save(model.state_dict()) wrote.
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
    /// Heads to ablate, comma-separated: `0,2` (heads of layer 0) or TL's names `L1H0,L0H2`.
    #[arg(long, value_delimiter = ',')]
    pub ablate: Vec<String>,
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
    /// The task to evaluate on, for a model that came without one (a TransformerLens state
    /// dict): the task's defaults fitted to the model's vocabulary and context.
    #[arg(long, value_enum)]
    pub task: Option<TaskKind>,
    /// Evaluate on the sequences of this data file (.jsonl, .npy or .npz) instead of the task's
    /// data: next-token loss and accuracy at the positions it scores, per sequence and per
    /// position.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["task", "exhaustive", "ablate", "samples"])]
    pub data: Option<PathBuf>,
    /// The data file's vocabulary (a JSON list of token strings), with --data.
    #[arg(long, value_name = "FILE", requires = "data")]
    pub vocab: Option<PathBuf>,
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

pub fn eval(args: EvalArgs) -> Result<()> {
    let (checkpoint, model) = load_model(&args.checkpoint, args.tl_config.as_deref(), args.device)?;
    if let Some(path) = &args.data {
        return eval_data(&args, path, &checkpoint, &model);
    }
    let checkpoint = super::with_task(checkpoint, args.task)?;
    let seed = args.seed.unwrap_or(checkpoint.config.seed);
    if args.samples == Some(0) {
        bail!("--samples must be at least 1");
    }
    let task = match &checkpoint.config.task {
        TaskConfig::SkipTrigram(task) => task,
        TaskConfig::Sequences(task) => {
            if args.exhaustive || !args.ablate.is_empty() || args.samples.is_some() {
                bail!(
                    "--exhaustive, --ablate and --samples do not apply to a data file's task: \
                     its validation sequences are evaluated"
                );
            }
            let data = task
                .data()
                .expect("a checkpoint's data are read when it opens");
            let (_, val) = data.split(task.val_frac, seed);
            let label = format!("{} (validation split of seed {seed})", task.source());
            return report_sequences(&args, &label, data, &val, &checkpoint, &model);
        }
        other => {
            if args.exhaustive {
                bail!(
                    "--exhaustive enumerates skip-trigram sequences; this checkpoint's task is {}",
                    other.kind().name()
                );
            }
            let ablation = ablation_of(&args.ablate, args.ablate_mode, &checkpoint, &model)?;
            return eval_task(&args, &checkpoint, &model, seed, ablation.as_ref());
        }
    };
    let samples = args.samples.unwrap_or(task.val_size);
    let ablation = ablation_of(&args.ablate, args.ablate_mode, &checkpoint, &model)?;
    let data = task
        .generate(samples, &mut stream_rng(seed, Stream::ValData))
        .map_err(anyhow::Error::msg)?;
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

/// The induction or modular-addition metrics of a checkpoint: on `--samples` fresh sequences of
/// the validation stream, or on the seed's train/test split.
fn eval_task(
    args: &EvalArgs,
    checkpoint: &Checkpoint,
    model: &Transformer,
    seed: u64,
    ablation: Option<&Ablation>,
) -> Result<()> {
    let ablated = ablation.map(|a| a.describe()).unwrap_or_default();
    let report = match &checkpoint.config.task {
        TaskConfig::None(_) => bail!("{}", TaskError::NoData("evaluate on")),
        TaskConfig::Induction(task) => {
            let samples = args.samples.unwrap_or(task.val_size);
            let tokens = samples as u128 * task.seq_len() as u128;
            if tokens > MAX_DATA_TOKENS as u128 {
                bail!(
                    "--samples {samples}: {tokens} tokens do not fit in memory (at most \
                     {MAX_DATA_TOKENS})"
                );
            }
            let data = task.generate(samples, &mut stream_rng(seed, Stream::ValData));
            let e = evaluate_induction_ablated(model, task, &data, ablation)?;
            serde_json::json!({
                "task": "induction",
                "ablation": ablated,
                "samples": samples,
                "seed": seed,
                "loss_first_half": e.loss_first_half,
                "loss_repeated_half": e.loss_repeated_half,
                "ln_vocab": (task.vocab as f64).ln(),
                "induction_score": e.induction_score,
                "prev_token_score": e.prev_token_score,
            })
        }
        TaskConfig::ModularAddition(task) => {
            if args.samples.is_some() {
                bail!("--samples does not apply to modular addition: every pair is evaluated");
            }
            let split = task.split(seed);
            let ((train_loss, train_acc), (test_loss, test_acc), progress) = match ablation {
                None => (
                    loss_and_accuracy(model, &split, &split.train)?,
                    loss_and_accuracy(model, &split, &split.test)?,
                    Some(crate::analysis::progress_measures(model, &split)?),
                ),
                // The progress measures read the unablated MLP: not reported under ablation.
                Some(a) => (
                    loss_and_accuracy_ablated(model, &split, &split.train, a)?,
                    loss_and_accuracy_ablated(model, &split, &split.test, a)?,
                    None,
                ),
            };
            serde_json::json!({
                "progress": progress,
                "task": "modular_addition",
                "ablation": ablated,
                "seed": seed,
                "p": task.p,
                "train_pairs": split.train.len(),
                "test_pairs": split.test.len(),
                "train_loss": train_loss,
                "train_acc": train_acc,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "chance": 1.0 / task.p as f64,
            })
        }
        TaskConfig::SkipTrigram(_) | TaskConfig::Sequences(_) => {
            unreachable!("skip-trigrams and data files are evaluated by eval()")
        }
    };
    if args.json {
        println!("{report}");
        return Ok(());
    }
    print_model_line(checkpoint);
    if !ablated.is_empty() {
        println!("ABLATION: {ablated}");
    }
    let num = |key: &str| report[key].as_f64().unwrap_or(f64::NAN);
    match &checkpoint.config.task {
        TaskConfig::Induction(_) => {
            println!(
                "{} sequences (validation stream of seed {seed})",
                report["samples"]
            );
            println!(
                "loss on the first half    {:.4}   floor ln V {:.4}",
                num("loss_first_half"),
                num("ln_vocab")
            );
            println!(
                "loss on the repeated half {:.4}   floor 0",
                num("loss_repeated_half")
            );
            for (name, key) in [
                ("induction", "induction_score"),
                ("previous-token", "prev_token_score"),
            ] {
                println!("{name} score per head (rows: layers)");
                for (l, heads) in report[key].as_array().into_iter().flatten().enumerate() {
                    let cells: String = heads
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|v| format!("{:>7.3}", v.as_f64().unwrap_or(f64::NAN)))
                        .collect();
                    println!("  layer {l}{cells}");
                }
            }
        }
        _ => {
            println!(
                "split of seed {seed}: {} training pairs, {} test pairs",
                report["train_pairs"], report["test_pairs"]
            );
            println!(
                "train loss {:.4e}  acc {:.4}",
                num("train_loss"),
                num("train_acc")
            );
            println!(
                "test  loss {:.4e}  acc {:.4}   chance {:.4}",
                num("test_loss"),
                num("test_acc"),
                num("chance")
            );
            let progress = &report["progress"];
            if !progress.is_null() {
                println!(
                    "key frequencies {}; restricted loss {:.4e} (all pairs, key frequencies only), \
                     excluded loss {:.4e} (training pairs, key frequencies removed)",
                    progress["key_frequencies"],
                    progress["restricted_loss"].as_f64().unwrap_or(f64::NAN),
                    progress["excluded_loss"].as_f64().unwrap_or(f64::NAN)
                );
            }
        }
    }
    Ok(())
}

/// The ablation `--ablate NAMES --ablate-mode MODE` asks for (`None` without heads); mean
/// ablation substitutes each head's mean z over the validation set of the checkpoint's run.
pub(super) fn ablation_of(
    names: &[String],
    mode: HeadMode,
    checkpoint: &Checkpoint,
    model: &Transformer,
) -> Result<Option<Ablation>> {
    if names.is_empty() {
        return Ok(None);
    }
    let (cfg, task) = (&checkpoint.config.model, &checkpoint.config.task);
    let heads = names
        .iter()
        .map(|name| parse_head(name, cfg.n_layers, cfg.n_heads))
        .collect::<Result<Vec<_>>>()?;
    let means = match mode {
        HeadMode::Mean => {
            let val = task
                .validation_tokens(checkpoint.config.seed)
                .map_err(|e| {
                    anyhow::anyhow!("mean ablation needs the task's validation set: {e}")
                })?;
            Some(mean_z(model, &val, task.seq_len())?)
        }
        HeadMode::Zero | HeadMode::Active => None,
    };
    Ok(Some(Ablation::of(
        cfg.n_layers,
        cfg.n_heads,
        &heads,
        mode,
        means,
    )))
}

/// A head named `L{layer}H{head}` (TL's label) or by its number in layer 0, for `--ablate`.
fn parse_head(name: &str, n_layers: usize, n_heads: usize) -> Result<(usize, usize)> {
    let name = name.trim();
    let parsed = match name.strip_prefix(['L', 'l']) {
        Some(rest) => rest
            .split_once(['H', 'h'])
            .and_then(|(l, h)| Some((l.parse().ok()?, h.parse().ok()?))),
        None => name.parse().ok().map(|h| (0, h)),
    };
    let Some((layer, head)) = parsed else {
        bail!(
            "--ablate {name}: name a head as L<layer>H<head> (e.g. L1H0) or by its number in layer 0"
        );
    };
    if layer >= n_layers || head >= n_heads {
        bail!(
            "--ablate {name}: the model has layers 0..={} of heads 0..={}",
            n_layers - 1,
            n_heads - 1
        );
    }
    Ok((layer, head))
}

/// `eval --data`: the model on a data file's sequences, at the positions it scores.
fn eval_data(
    args: &EvalArgs,
    path: &std::path::Path,
    checkpoint: &Checkpoint,
    model: &Transformer,
) -> Result<()> {
    let mut task = SequencesConfig::file(path.to_path_buf(), args.vocab.clone());
    task.load(std::path::Path::new("."))?;
    let data = task.data().expect("read just now");
    report_sequences(
        args,
        &path.display().to_string(),
        data,
        &[],
        checkpoint,
        model,
    )
}

/// The model's loss and accuracies on the sequences `ids` of `data` (all of them when empty),
/// `label` saying which.
fn report_sequences(
    args: &EvalArgs,
    label: &str,
    data: &SequenceData,
    ids: &[u32],
    checkpoint: &Checkpoint,
    model: &Transformer,
) -> Result<()> {
    // One line: the model's reason it cannot take the file, without candle's backtrace.
    let e = evaluate_sequences(model, data, ids)
        .map_err(|e| anyhow::anyhow!(crate::device::error_line(&e)))?;
    if args.json {
        let mut report = serde_json::to_value(&e)?;
        report["data"] = label.into();
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    print_model_line(checkpoint);
    println!(
        "{label}: {} sequences of {} tokens, {} scored positions",
        e.sequences, data.seq_len, e.scored_positions
    );
    println!(
        "loss {:.4}  accuracy {:.4}  sequence accuracy {:.4}",
        e.loss, e.acc, e.seq_acc
    );
    let by_position: Vec<String> = e
        .acc_by_position
        .iter()
        .enumerate()
        .filter_map(|(p, a)| a.map(|a| format!("{p}:{a:.3}")))
        .collect();
    println!("accuracy by position: {}", by_position.join(" "));
    Ok(())
}
