//! `toylens sae train|eval`: sparse autoencoders on a model's activations, saved as SAELens
//! saves them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::checkpoint::{SaeCheckpoint, TmsCheckpoint};
use crate::sae::{Activations, Architecture, SaeMetrics, SaeRun, SaeTrainer, TmsHidden};

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
    /// The model whose activations the SAE reads (a superposition checkpoint).
    pub model: PathBuf,
    /// The hook: a superposition model's hidden layer, `hook_hidden.I` for instance I.
    #[arg(long, default_value = "hook_hidden.0")]
    pub hook: String,
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

pub fn sae(args: SaeArgs) -> Result<()> {
    match args.action {
        SaeAction::Train(args) => train(args),
        SaeAction::Eval(args) => eval(args),
        SaeAction::Features(args) => features(args),
    }
}

/// The activations at `hook` of the model in `path`.
fn source(path: &Path, hook: &str) -> Result<(Box<dyn Activations>, String)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !TmsCheckpoint::is_tms(&bytes) {
        bail!(
            "{} is not a superposition checkpoint: SAEs in this version read a superposition \
             model's hidden layer (transformer hooks come next)",
            path.display()
        );
    }
    let ckpt = TmsCheckpoint::from_bytes(&bytes)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let instances = ckpt.run.model.n_instances;
    let instance = hook
        .strip_prefix("hook_hidden.")
        .and_then(|i| i.parse::<usize>().ok())
        .filter(|&i| i < instances)
        .with_context(|| {
            format!(
                "a superposition model's hooks are hook_hidden.0 to hook_hidden.{} (its \
                 instances), not \"{hook}\"",
                instances - 1
            )
        })?;
    let source =
        TmsHidden::new(&ckpt.run, &ckpt.weights, instance).expect("the instance was checked above");
    let name = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    Ok((Box::new(source), name))
}

fn describe(m: &SaeMetrics) -> String {
    let recovery = match (m.mmcs, m.recovered) {
        (Some(mmcs), Some((found, of))) => {
            format!("  mmcs {mmcs:.3}  recovered {found}/{of}")
        }
        _ => String::new(),
    };
    format!(
        "step {:>6}  mse {:.5}  explained variance {:.4}  L0 {:.2}  dead {}{recovery}  {:.1}s",
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
    let (source, model_name) = source(&args.model, &args.hook)?;
    let mut trainer = SaeTrainer::new(run, source)?;
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
        model_name,
        run: Some(trainer.run().clone()),
        history: trainer.history().to_vec(),
    };
    ckpt.save(&args.out)?;
    if !json {
        println!("saved {}", args.out.display());
    }
    Ok(())
}

fn eval(args: SaeEvalArgs) -> Result<()> {
    let sae = SaeCheckpoint::load(&args.sae)
        .with_context(|| format!("cannot open the SAE in {}", args.sae.display()))?;
    let (mut source, _) = source(&args.model, &sae.hook_name)?;
    if source.d_in() != sae.weights.d_in {
        bail!(
            "the SAE reads {} values (d_in) but {} at {} has {}",
            sae.weights.d_in,
            args.model.display(),
            sae.hook_name,
            source.d_in()
        );
    }
    let rows = args.batch.clamp(1, 1 << 16);
    let mut x = Vec::new();
    source.fill(&mut x, rows, args.seed);
    let s = sae.weights.d_sae;
    let truth = source.true_features();
    let (measured, fired) =
        crate::sae::metrics::measure(&sae.weights, sae.architecture, &x, rows, truth.as_deref());
    let fired: Vec<u64> = fired.into_iter().map(u64::from).collect();
    let metrics = SaeMetrics {
        step: sae.history.last().map_or(0, |m| m.step),
        dead: fired.iter().filter(|&&f| f == 0).count(),
        log_density: crate::sae::metrics::log_density(&fired, rows as u64),
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

/// One latent's summary for `sae features`.
#[derive(serde::Serialize)]
struct Feature {
    index: usize,
    density: f64,
    max_activation: f32,
    /// The true feature whose direction is nearest the decoder's, and their cosine.
    #[serde(skip_serializing_if = "Option::is_none")]
    true_feature: Option<(usize, f32)>,
    top: Vec<TopInput>,
}

#[derive(serde::Serialize, Clone)]
struct TopInput {
    activation: f32,
    /// The input's active features and values (superposition models).
    input_features: Vec<(usize, f32)>,
}

fn features(args: SaeFeaturesArgs) -> Result<()> {
    let sae = SaeCheckpoint::load(&args.sae)
        .with_context(|| format!("cannot open the SAE in {}", args.sae.display()))?;
    let (mut source, _) = source(&args.model, &sae.hook_name)?;
    let (d, s) = (sae.weights.d_in, sae.weights.d_sae);
    if source.d_in() != d {
        bail!(
            "the SAE reads {d} values (d_in) but {} at {} has {}",
            args.model.display(),
            sae.hook_name,
            source.d_in()
        );
    }
    let top = args.top.clamp(1, 1000);
    let batch = 4096;
    let batches = args.inputs.clamp(1, 1 << 24).div_ceil(batch);
    let mut fired = vec![0u64; s];
    let mut max = vec![0f32; s];
    let mut best: Vec<Vec<TopInput>> = vec![Vec::new(); s];
    let mut x = Vec::new();
    for k in 0..batches {
        source.fill(&mut x, batch, args.seed.wrapping_add(k as u64));
        let f = sae.weights.encode(&x, batch, sae.architecture);
        for (row, acts) in f.chunks_exact(s).enumerate() {
            for (i, &a) in acts.iter().enumerate() {
                if a <= 0.0 {
                    continue;
                }
                fired[i] += 1;
                max[i] = max[i].max(a);
                let kept = &mut best[i];
                if kept.len() < top || a > kept[kept.len() - 1].activation {
                    let input = TopInput {
                        activation: a,
                        input_features: source.input_features(row).unwrap_or_default(),
                    };
                    let at = kept.partition_point(|t| t.activation >= a);
                    kept.insert(at, input);
                    kept.truncate(top);
                }
            }
        }
    }
    let truth = source.true_features();
    let total = (batches * batch) as f64;
    let list: Vec<Feature> = (0..s)
        .map(|i| Feature {
            index: i,
            density: fired[i] as f64 / total,
            max_activation: max[i],
            true_feature: truth
                .as_ref()
                .map(|t| nearest(t, &sae.weights.w_dec[i * d..(i + 1) * d])),
            top: std::mem::take(&mut best[i]),
        })
        .collect();
    if args.json {
        println!("{}", serde_json::json!({ "features": list }));
        return Ok(());
    }
    println!("latent  density    max act  true feature (cos)  top inputs (active features)");
    for f in &list {
        let truth = f
            .true_feature
            .map_or_else(String::new, |(t, c)| format!("{t:>4} ({c:.3})"));
        let inputs: Vec<String> = f
            .top
            .iter()
            .take(3)
            .map(|t| {
                let active: Vec<String> = t
                    .input_features
                    .iter()
                    .map(|(f, v)| format!("{f}:{v:.2}"))
                    .collect();
                format!("{:.2} [{}]", t.activation, active.join(" "))
            })
            .collect();
        println!(
            "{:>6}  {:>8.5}  {:>8.3}  {truth:>18}  {}",
            f.index,
            f.density,
            f.max_activation,
            inputs.join("; ")
        );
    }
    Ok(())
}

/// The row of `truth [features, d]` nearest in direction to `v`, and their cosine.
fn nearest(truth: &[f32], v: &[f32]) -> (usize, f32) {
    let norm = |x: &[f32]| x.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
    let nv = norm(v);
    truth
        .chunks_exact(v.len())
        .map(|t| t.iter().zip(v).map(|(a, b)| a * b).sum::<f32>() / (norm(t) * nv))
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, c)| {
            if c > best.1 { (i, c) } else { best }
        })
}
