//! `toylens sae train|eval|features`: sparse autoencoders on a model's activations, saved as
//! SAELens saves them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::checkpoint::{SaeCheckpoint, TmsCheckpoint};
use crate::device::DeviceChoice;
use crate::sae::{
    Activations, Architecture, Origin, Positions, SaeMetrics, SaeRun, SaeTrainer, TmsHidden,
    TransformerHook,
};
use crate::task::{TaskConfig, TokenNames};

#[derive(Debug, Args)]
pub struct SaeArgs {
    #[command(subcommand)]
    pub action: SaeAction,
}

#[derive(Debug, Subcommand)]
pub enum SaeAction {
    /// Train an SAE on one hook of a model and save it as SAELens does (a folder).
    Train(SaeTrainArgs),
    /// An SAE's reconstruction, sparsity and (where known) feature recovery on fresh
    /// activations of its model.
    Eval(SaeEvalArgs),
    /// Each latent: how often it fires, its largest activation, the true feature its decoder
    /// direction matches (superposition models), and the inputs it fires on most.
    Features(SaeFeaturesArgs),
}

#[derive(Debug, Args)]
pub struct SaeFeaturesArgs {
    /// The SAE's folder.
    pub sae: PathBuf,
    /// The model it reads.
    pub model: PathBuf,
    /// Top activating inputs kept per latent.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Activations read, in batches of 4096.
    #[arg(long, default_value_t = 65_536)]
    pub inputs: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SaeTrainArgs {
    /// The model whose activations the SAE reads: a transformer checkpoint (toylens's, or a
    /// TransformerLens state dict with its config) or a superposition checkpoint.
    pub model: PathBuf,
    /// The hook: a transformer's TL hook (`blocks.0.hook_resid_post`, `blocks.0.mlp.hook_post`,
    /// `blocks.0.attn.hook_z` flattened over heads, …), or `hook_hidden.I` for instance I of a
    /// superposition model.
    #[arg(long, default_value = "hook_hidden.0")]
    pub hook: String,
    /// Which positions of a transformer's sequences to read: `all`, or `last` (the default for
    /// modular addition and skip-trigrams, whose models answer there).
    #[arg(long, value_parser = parse_positions)]
    pub positions: Option<Positions>,
    /// Latents.
    #[arg(long, default_value_t = 256)]
    pub d_sae: usize,
    /// The standard (ReLU) SAE's L1 coefficient (on activations × decoder norms).
    #[arg(long, conflicts_with = "topk")]
    pub l1: Option<f64>,
    /// A TopK SAE with this many active latents per input.
    #[arg(long)]
    pub topk: Option<usize>,
    #[arg(long, default_value_t = 6_000)]
    pub steps: usize,
    /// Activations per step.
    #[arg(long, default_value_t = 4_096)]
    pub batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 500)]
    pub eval_every: usize,
    /// The folder to save into (made if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// One JSON object per evaluation instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SaeEvalArgs {
    /// The SAE's folder.
    pub sae: PathBuf,
    /// The model it reads.
    pub model: PathBuf,
    #[arg(long, default_value_t = 4_096)]
    pub batch: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
    /// Also write the activations, their latents and their reconstructions (`x`,
    /// `feature_acts`, `sae_out`) to this safetensors file: what `scripts/check-saelens.py`
    /// compares with SAELens.
    #[arg(long, value_name = "FILE.safetensors")]
    pub dump: Option<PathBuf>,
}

fn parse_positions(s: &str) -> Result<Positions, String> {
    match s {
        "all" => Ok(Positions::All),
        "last" => Ok(Positions::Last),
        _ => Err(format!("positions are \"all\" or \"last\", not \"{s}\"")),
    }
}

pub fn sae(args: SaeArgs) -> Result<()> {
    match args.action {
        SaeAction::Train(args) => train(args),
        SaeAction::Eval(args) => eval(args),
        SaeAction::Features(args) => features(args),
    }
}

/// What an SAE reads: a model's activations at one hook.
struct Opened {
    source: Box<dyn Activations>,
    /// The model's file name, as SAELens's `metadata.model_name`.
    name: String,
    /// The transformer's positions read, and its task (for token names).
    positions: Option<Positions>,
    task: Option<TaskConfig>,
}

/// The activations at `hook` of the model in `path`: a superposition model's hidden layer, or a
/// transformer's hook on its task's data (at `positions`, by default the task's own).
fn open(path: &Path, hook: &str, positions: Option<Positions>) -> Result<Opened> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    if !TmsCheckpoint::is_tms(&bytes) {
        let (checkpoint, model) =
            super::load_model(path, None, DeviceChoice::Auto).with_context(|| {
                format!(
                    "cannot open {} as a model (a transformer or superposition checkpoint)",
                    path.display()
                )
            })?;
        let task = checkpoint.config.task;
        let positions = positions.unwrap_or_else(|| Positions::for_task(&task));
        let source = TransformerHook::new(Arc::new(model), task.clone(), hook, positions)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("cannot read {hook} of {}", path.display()))?;
        return Ok(Opened {
            source: Box::new(source),
            name,
            positions: Some(positions),
            task: Some(task),
        });
    }
    if positions.is_some() {
        bail!("--positions is for transformers; a superposition model has no positions");
    }
    let ckpt = TmsCheckpoint::from_bytes(&bytes)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let source = TmsHidden::at_hook(&ckpt.run, &ckpt.weights, hook).map_err(anyhow::Error::msg)?;
    Ok(Opened {
        source: Box::new(source),
        name,
        positions: None,
        task: None,
    })
}

/// The SAE in `dir` and the model activations it reads, checked to fit each other.
fn open_pair(dir: &Path, model: &Path) -> Result<(SaeCheckpoint, Opened)> {
    let sae = SaeCheckpoint::load(dir)
        .with_context(|| format!("cannot open the SAE in {}", dir.display()))?;
    let opened = open(model, &sae.hook_name, sae.positions)?;
    if opened.source.d_in() != sae.weights.d_in {
        bail!(
            "the SAE reads {} values (d_in) but {} at {} has {}",
            sae.weights.d_in,
            model.display(),
            sae.hook_name,
            opened.source.d_in()
        );
    }
    Ok((sae, opened))
}

fn describe(m: &SaeMetrics) -> String {
    let recovery = match (m.mmcs, m.recovered) {
        (Some(mmcs), Some((found, of))) => {
            format!("  mmcs {mmcs:.3}  recovered {found}/{of}")
        }
        _ => String::new(),
    };
    let ce = m.ce.map_or_else(String::new, |ce| {
        format!(
            "  CE recovered {:.3} (clean {:.4}, spliced {:.4}, zero-ablated {:.4})",
            ce.recovered(),
            ce.clean,
            ce.spliced,
            ce.zero_ablated
        )
    });
    format!(
        "step {:>6}  mse {:.5}  explained variance {:.4}  L0 {:.2}  dead {}{recovery}{ce}  {:.1}s",
        m.step, m.mse, m.explained_variance, m.l0, m.dead, m.elapsed_s
    )
}

fn json_line(m: &SaeMetrics) -> serde_json::Value {
    let mut line = serde_json::json!({
        "step": m.step,
        "mse": m.mse,
        "explained_variance": m.explained_variance,
        "l0": m.l0,
        "dead": m.dead,
        "elapsed_s": m.elapsed_s,
    });
    if let Some(mmcs) = m.mmcs {
        line["mmcs"] = mmcs.into();
    }
    if let Some((found, of)) = m.recovered {
        line["recovered"] = found.into();
        line["represented"] = of.into();
    }
    if let Some(ce) = m.ce {
        line["ce_recovered"] = ce.recovered().into();
        line["ce_clean"] = ce.clean.into();
        line["ce_spliced"] = ce.spliced.into();
        line["ce_zero_ablated"] = ce.zero_ablated.into();
    }
    line
}

fn train(args: SaeTrainArgs) -> Result<()> {
    let architecture = match (args.l1, args.topk) {
        (_, Some(k)) => Architecture::TopK {
            k,
            aux_coefficient: 1.0,
        },
        (l1, None) => Architecture::Standard {
            l1_coefficient: l1.unwrap_or(0.1),
        },
    };
    let run = SaeRun {
        d_sae: args.d_sae,
        architecture,
        steps: args.steps,
        batch_size: args.batch,
        lr: args.lr,
        seed: args.seed,
        eval_every: args.eval_every,
        ..SaeRun::standard(args.d_sae, 0.0)
    };
    let opened = open(&args.model, &args.hook, args.positions)?;
    let positions = opened.positions;
    let mut trainer = SaeTrainer::new(run, opened.source)?;
    let stdout = std::io::stdout();
    let json = args.json;
    trainer.drive(&AtomicBool::new(false), |_, m| {
        let mut out = stdout.lock();
        let line = if json {
            json_line(m).to_string()
        } else {
            describe(m)
        };
        let _ = writeln!(out, "{line}");
    })?;
    let ckpt = SaeCheckpoint {
        architecture,
        weights: trainer.weights().clone(),
        hook_name: trainer.hook_name(),
        model_name: opened.name,
        run: Some(trainer.run().clone()),
        history: trainer.history().to_vec(),
        positions,
    };
    ckpt.save(&args.out)?;
    if !json {
        println!("saved {}", args.out.display());
    }
    Ok(())
}

fn eval(args: SaeEvalArgs) -> Result<()> {
    let (sae, opened) = open_pair(&args.sae, &args.model)?;
    let mut source = opened.source;
    let rows = args.batch.clamp(1, 1 << 16);
    let mut x = Vec::new();
    source
        .fill(&mut x, rows, args.seed)
        .map_err(anyhow::Error::msg)?;
    let s = sae.weights.d_sae;
    let truth = source.true_features();
    let (measured, fired) =
        crate::sae::metrics::measure(&sae.weights, sae.architecture, &x, rows, truth.as_deref());
    let fired: Vec<u64> = fired.into_iter().map(u64::from).collect();
    let metrics = SaeMetrics {
        step: sae.history.last().map_or(0, |m| m.step),
        dead: fired.iter().filter(|&&f| f == 0).count(),
        log_density: crate::sae::metrics::log_density(&fired, rows as u64),
        ce: source.ce_losses(&sae.weights, sae.architecture),
        ..measured
    };
    if let Some(path) = &args.dump {
        let f = sae.weights.encode(&x, rows, sae.architecture);
        let x_hat = sae.weights.decode(&f, rows);
        let d = sae.weights.d_in;
        let tensors = [
            ("x", vec![rows, d], &x[..]),
            ("feature_acts", vec![rows, s], &f[..]),
            ("sae_out", vec![rows, d], &x_hat[..]),
        ];
        crate::checkpoint::save_f32_tensors(path, &tensors)?;
    }
    if args.json {
        println!("{}", json_line(&metrics));
    } else {
        println!(
            "{} ({} SAE, d_in {}, d_sae {}) on {} activations of {}:",
            args.sae.display(),
            sae.architecture.saelens_name(),
            sae.weights.d_in,
            s,
            rows,
            sae.hook_name
        );
        println!("{}", describe(&metrics));
        println!("(dead here: latents that fired on none of these {rows} activations)");
    }
    Ok(())
}

fn features(args: SaeFeaturesArgs) -> Result<()> {
    let (sae, mut opened) = open_pair(&args.sae, &args.model)?;
    let batch = 4096;
    let batches = args.inputs.clamp(1, 1 << 24).div_ceil(batch);
    let list = crate::sae::features::summarise(
        &sae.weights,
        sae.architecture,
        opened.source.as_mut(),
        batches,
        batch,
        args.top.clamp(1, 1000),
        args.seed,
    )
    .map_err(anyhow::Error::msg)?;
    let names = opened
        .task
        .as_ref()
        .map_or(TokenNames::Ids, TaskConfig::token_names);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "hook_name": sae.hook_name,
                "positions": opened.positions,
                "inputs": batches * batch,
                "features": list,
            })
        );
        return Ok(());
    }
    let truth = list.iter().any(|f| f.true_feature.is_some());
    println!(
        "latent  density    max act  {}top inputs",
        if truth { "true feature (cos)  " } else { "" }
    );
    for f in &list {
        let truth = f
            .true_feature
            .map_or_else(String::new, |(t, c)| format!("{t:>4} ({c:.3})  "));
        let inputs: Vec<String> = f
            .top
            .iter()
            .take(3)
            .map(|t| format!("{:.2} {}", t.activation, describe_origin(&t.origin, names)))
            .collect();
        println!(
            "{:>6}  {:>8.5}  {:>8.3}  {truth:>20}{}",
            f.index,
            f.density,
            f.max_activation,
            inputs.join("; ")
        );
        if let Some(freq) = f.fourier {
            println!(
                "        Fourier: frequency {} holds {:.0}% of its variance over the pairs",
                freq.k,
                freq.share * 100.0
            );
        }
        if let Some(effect) = &f.logit_effect {
            let tokens = |list: &[(u32, f32)]| {
                list.iter()
                    .take(5)
                    .map(|&(t, v)| format!("{} {v:+.2}", names.label(t)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "        logits: up {}; down {}",
                tokens(&effect.top),
                tokens(&effect.bottom)
            );
        }
    }
    fourier_summary(&list);
    Ok(())
}

/// The live latents (firing on at least 1 % of inputs) counted by their dominant Fourier
/// frequency: where a modular-addition model's features sit, against its key frequencies
/// (`toylens eval` names them).
fn fourier_summary(list: &[crate::sae::features::Feature]) {
    let live: Vec<_> = list
        .iter()
        .filter(|f| f.density >= 0.01)
        .filter_map(|f| f.fourier)
        .collect();
    if live.is_empty() {
        return;
    }
    let mut by_k: std::collections::BTreeMap<usize, (usize, f64)> = Default::default();
    for f in &live {
        let entry = by_k.entry(f.k).or_default();
        entry.0 += 1;
        entry.1 += f.share;
    }
    let mut counts: Vec<(usize, (usize, f64))> = by_k.into_iter().collect();
    counts.sort_by_key(|c| std::cmp::Reverse(c.1.0));
    let listed: Vec<String> = counts
        .iter()
        .take(10)
        .map(|(k, (n, share))| format!("{k}: {n} (mean share {:.2})", share / *n as f64))
        .collect();
    println!(
        "{} latents fire on at least 1% of inputs; by dominant frequency: {}",
        live.len(),
        listed.join(", ")
    );
}

/// An input in words: a superposition model's active features, or a sequence with the
/// activation's position in brackets.
fn describe_origin(origin: &Origin, names: TokenNames) -> String {
    match origin {
        Origin::Features(active) => {
            let active: Vec<String> = active.iter().map(|(f, v)| format!("{f}:{v:.2}")).collect();
            format!("[{}]", active.join(" "))
        }
        Origin::Token { sequence, position } => sequence
            .iter()
            .enumerate()
            .map(|(q, &t)| {
                let label = names.label(t);
                if q == *position {
                    format!("[{label}]")
                } else {
                    label
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}
