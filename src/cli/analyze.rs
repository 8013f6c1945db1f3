//! `toylens analyze`: direct logit attribution, logit lens, head detectors and activation
//! patching for one sequence.

use std::path::PathBuf;

use crate::task::TokenNames;
use anyhow::{Result, anyhow, bail};
use clap::Args;

use super::eval::ablation_of;
use super::{load_model, print_model_line};
use crate::analysis::{Analysis, HeadKind, PatchingSetup, analyze as analyze_tokens};
use crate::device::DeviceChoice;
use crate::model::{HeadMode, argmax, head_label};
use crate::task::{TaskKind, parse_sequence};

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct AnalyzeArgs {
    /// A toylens checkpoint, or a TransformerLens state dict: safetensors, or a .pth/.pt that
    /// torch.save(model.state_dict()) wrote.
    pub checkpoint: PathBuf,
    /// The state dict's `HookedTransformerConfig` as JSON, when the file has no `tl_config`
    /// metadata and no `config.json` beside it.
    #[arg(long, value_name = "FILE")]
    pub tl_config: Option<PathBuf>,
    /// The task the model is read with, for a model that came without one (a TransformerLens
    /// state dict): the expected answers and the data mean ablation averages over.
    #[arg(long, value_enum)]
    pub task: Option<TaskKind>,
    /// Token ids, as separate arguments or one string: `2 5 3 0` or "2,5,3,0".
    #[arg(required = true, num_args = 1..)]
    pub tokens: Vec<String>,
    /// The position to attribute and lens (negative counts from the end; default: the last).
    #[arg(long, default_value_t = -1)]
    pub position: i64,
    /// A corrupted sequence of the same length, as one argument ("2 5 3 1"): patch the clean
    /// run's activations into it.
    #[arg(long, value_name = "SEQUENCE", requires_all = ["answer", "wrong"])]
    pub corrupt: Option<String>,
    /// With --corrupt: the metric is logit(answer) − logit(wrong) at the last position.
    #[arg(long, requires = "corrupt")]
    pub answer: Option<u32>,
    #[arg(long, requires = "corrupt")]
    pub wrong: Option<u32>,
    /// Heads to ablate in every run, comma-separated: TL's names `L1H0,L0H2` (or numbers, for
    /// layer 0).
    #[arg(long, value_delimiter = ',')]
    pub ablate: Vec<String>,
    /// How ablated heads are replaced: by zero, or by their mean z over the task's validation
    /// set.
    #[arg(long, value_enum, default_value = "zero", requires = "ablate")]
    pub ablate_mode: HeadMode,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Print one JSON object (keys named as TransformerLens's quantities) instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn analyze(args: AnalyzeArgs) -> Result<()> {
    let (checkpoint, model) = load_model(&args.checkpoint, args.tl_config.as_deref(), args.device)?;
    let checkpoint = super::with_task(checkpoint, args.task)?;
    let cfg = &checkpoint.config.model;
    let task = &checkpoint.config.task;
    let read = |text: &str, what: &str| {
        parse_sequence(text, task.token_names(), cfg.d_vocab, cfg.n_ctx)
            .map(|t| task.complete_sequence(t))
            .map_err(|e| anyhow!("bad {what}: {e}"))
    };
    let tokens = read(&args.tokens.join(" "), "tokens")?;
    let p = tokens.len() as i64;
    let position = if args.position < 0 {
        p + args.position
    } else {
        args.position
    };
    if !(0..p).contains(&position) {
        bail!(
            "--position {} is outside the sequence of {p} tokens (use 0..={} or -1..=-{p})",
            args.position,
            p - 1
        );
    }
    let setup = match &args.corrupt {
        None => None,
        Some(corrupt) => Some(PatchingSetup {
            clean: tokens.clone(),
            corrupt: read(corrupt, "--corrupt sequence")?,
            answer: args
                .answer
                .ok_or_else(|| anyhow!("--corrupt needs --answer"))?,
            wrong: args
                .wrong
                .ok_or_else(|| anyhow!("--corrupt needs --wrong"))?,
        }),
    };
    let ablation = ablation_of(&args.ablate, args.ablate_mode, &checkpoint, &model)?;
    let analysis = analyze_tokens(
        &model,
        &tokens,
        Some(position as usize),
        setup.as_ref(),
        ablation.as_ref(),
    )?;
    let names = task.token_names();
    if args.json {
        let mut json = serde_json::to_value(&analysis)?;
        if names.is_named() {
            // Beside the ids: the task's names of the tokens and of the vocabulary predicted.
            let name = |t: u32| names.label(t);
            json["token_strings"] = analysis.tokens.iter().map(|&t| name(t)).collect();
            json["vocab_strings"] = (0..cfg.d_vocab_out() as u32).map(name).collect();
        }
        println!("{json}");
    } else {
        print_model_line(&checkpoint);
        if let Some(a) = &ablation {
            println!("ABLATION: {}", a.describe());
        }
        print_analysis(&analysis, cfg.n_layers, names);
    }
    Ok(())
}

fn print_analysis(a: &Analysis, layers: usize, names: TokenNames) {
    let name = |t: usize| names.label(t as u32);
    let at = &a.attribution;
    let predicted = argmax(&at.logits);
    println!("tokens {:?}, position {}", a.tokens, at.position);
    if names.is_named() {
        let named: Vec<String> = a.tokens.iter().map(|&t| name(t as usize)).collect();
        println!("       {}", named.join(" "));
    }
    println!(
        "\ndirect logit attribution to the predicted token {} (logit {:.3}):",
        name(predicted),
        at.logits[predicted]
    );
    let mut rows: Vec<(&str, f32)> = at
        .labels
        .iter()
        .zip(&at.dla)
        .map(|(l, r)| (l.as_str(), r[predicted]))
        .collect();
    rows.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
    for (label, value) in rows {
        println!("  {label:<12}{value:>9.3}");
    }
    println!("  {:<12}{:>9.3}", "constant", at.dla_constant[predicted]);
    println!(
        "  sum of the rows and the constant = the logits to {:.1e}",
        at.sum_error()
    );
    println!("\nlogit lens (top 5 tokens at each stage):");
    for (label, logits) in at.lens_labels.iter().zip(&at.logit_lens) {
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&i, &j| logits[j].total_cmp(&logits[i]));
        let top: Vec<String> = order
            .iter()
            .take(5)
            .map(|&t| format!("{} ({:.2})", name(t), logits[t]))
            .collect();
        println!("  {label:<12}{}", top.join("  "));
    }
    println!("\nhead detectors (TL's \"mul\" score: attention on the pattern / all attention):");
    let heads = a.heads.previous_token.first().map_or(0, Vec::len);
    print!("  {:<8}", "head");
    for kind in HeadKind::ALL {
        print!("{:>17}", kind.title());
    }
    println!();
    for l in 0..layers {
        for h in 0..heads {
            print!("  {:<8}", head_label(l, h));
            for kind in HeadKind::ALL {
                print!("{:>17.3}", a.heads.of(kind)[l][h]);
            }
            println!();
        }
    }
    if let Some(patch) = &a.patching {
        println!(
            "\nactivation patching: metric clean {:.3}, corrupted {:.3} (normalised: 0 = corrupted, 1 = clean)",
            patch.metric_clean, patch.metric_corrupt
        );
        let show = |v: f32| match patch.normalised(v) {
            Some(n) => format!("{n:>7.2}"),
            None => format!("{v:>7.2}"),
        };
        println!("  resid_pre, rows layer, columns position:");
        for (l, row) in patch.resid_pre.iter().enumerate() {
            println!(
                "  {l:<6}{}",
                row.iter().map(|&v| show(v)).collect::<String>()
            );
        }
        println!("  head output (all positions), rows layer, columns head:");
        for (l, row) in patch.head_out.iter().enumerate() {
            println!(
                "  {l:<6}{}",
                row.iter().map(|&v| show(v)).collect::<String>()
            );
        }
    }
}
