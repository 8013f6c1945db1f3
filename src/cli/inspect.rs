//! `toylens inspect` and `toylens circuits`: one sequence through the model, and the circuits.

use std::path::PathBuf;

use crate::task::TokenNames;
use anyhow::Result;
use clap::Args;

use super::{load_checkpoint, load_model, print_model_line};
use crate::analysis::{
    Circuits, Inspection, cache_json, circuits as circuits_of, composition, full_circuits,
    inspection_of,
};
use crate::device::DeviceChoice;
use crate::model::head_label;
use crate::task::{TaskKind, parse_sequence};

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct InspectArgs {
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

pub fn inspect(args: InspectArgs) -> Result<()> {
    let (checkpoint, model) = load_model(&args.checkpoint, args.tl_config.as_deref(), args.device)?;
    let checkpoint = super::with_task(checkpoint, args.task)?;
    let cfg = &checkpoint.config.model;
    let task = &checkpoint.config.task;
    let tokens = parse_sequence(
        &args.tokens.join(" "),
        task.token_names(),
        cfg.d_vocab,
        cfg.n_ctx,
    )
    .map(|t| task.complete_sequence(t))
    .map_err(|e| anyhow::anyhow!("bad tokens: {e}"))?;
    let cache = model.run_with_cache(&tokens)?;
    let result = inspection_of(&cache, cfg.n_layers, &checkpoint.config.task);
    if args.json {
        let mut json = serde_json::to_value(&result)?;
        if args.cache {
            json["cache"] = serde_json::Value::Object(cache_json(&cache));
        }
        let names = task.token_names();
        if names.is_named() {
            // Beside the ids: the task's names of the tokens, and of the vocabulary predicted.
            let name = |t: u32| names.label(t);
            json["token_strings"] = result.tokens.iter().map(|&t| name(t)).collect();
            json["predicted_string"] = name(result.predicted_token).into();
            json["vocab_strings"] = (0..cfg.d_vocab_out() as u32).map(name).collect();
        }
        println!("{json}");
    } else {
        print_model_line(&checkpoint);
        print_inspection(&result, task.token_names());
    }
    Ok(())
}

fn print_inspection(r: &Inspection, names: TokenNames) {
    let name = |t: u32| names.label(t);
    let fmt_row = |v: &[f32]| {
        v.iter()
            .map(|x| format!("{x:>7.3}"))
            .collect::<Vec<_>>()
            .join("")
    };
    let vocab = r.logits_last.len();
    println!("tokens {:?}", r.tokens);
    if names.is_named() {
        let named: Vec<String> = r.tokens.iter().map(|&t| name(t)).collect();
        println!("       {}", named.join(" "));
    }
    match r.expected {
        Some(e) => println!(
            "predicted {}  expected {} ({})",
            name(r.predicted_token),
            name(e),
            if e == r.predicted_token {
                "correct"
            } else {
                "wrong"
            }
        ),
        None => println!(
            "predicted {}  (the task does not determine the next token here)",
            name(r.predicted_token)
        ),
    }
    let header: String = (0..vocab as u32)
        .map(|v| format!("{:>7}", name(v)))
        .collect();
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
#[derive(Debug, Args)]
pub struct CircuitsArgs {
    /// A toylens checkpoint, or a TransformerLens state dict: safetensors, or a .pth/.pt that
    /// torch.save(model.state_dict()) wrote.
    pub checkpoint: PathBuf,
    /// The state dict's `HookedTransformerConfig` as JSON, when the file has no `tl_config`
    /// metadata and no `config.json` beside it.
    #[arg(long, value_name = "FILE")]
    pub tl_config: Option<PathBuf>,
    /// Print JSON instead of text: `ov_full`, `qk_full`, `copying_score`, `ov_svd`, and
    /// `composition` for models of several layers; one-layer models add `ov`, `qk`,
    /// `ov_no_bias`, `qk_no_bias` and `direct`.
    #[arg(long)]
    pub json: bool,
}

pub fn circuits(args: CircuitsArgs) -> Result<()> {
    let checkpoint = load_checkpoint(&args.checkpoint, args.tl_config.as_deref())?;
    let (cfg, weights) = (&checkpoint.config.model, &checkpoint.weights);
    let full = full_circuits(cfg, weights).map_err(anyhow::Error::msg)?;
    let one_layer = if cfg.n_layers == 1 {
        Some(circuits_of(cfg, weights).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let composition = (cfg.n_layers > 1).then(|| composition(cfg, weights));
    if args.json {
        let mut json = serde_json::to_value(&full)?;
        if let Some(c) = &one_layer {
            for (key, value) in serde_json::to_value(c)?.as_object().into_iter().flatten() {
                json[key] = value.clone();
            }
        }
        if let Some(c) = &composition {
            json["composition"] = serde_json::to_value(c)?;
        }
        let names = checkpoint.config.task.token_names();
        if names.is_named() {
            // The task's names of the vocabulary the circuits' rows and columns index.
            json["vocab_strings"] = (0..cfg.d_vocab.max(cfg.d_vocab_out()) as u32)
                .map(|t| names.label(t))
                .collect();
        }
        println!("{json}");
        return Ok(());
    }
    print_model_line(&checkpoint);
    if let Some(c) = &one_layer {
        print_one_layer(c);
    }
    println!("copying score of each head's full OV circuit (Σλ/Σ|λ|; 1 copies, −1 suppresses):");
    for (l, row) in full.copying_score.iter().enumerate() {
        for (h, score) in row.iter().enumerate() {
            println!("  {:<6}{score:>7.3}", head_label(l, h));
        }
    }
    println!(
        "\nlargest singular directions of each full OV circuit (source tokens → output tokens):"
    );
    for (l, row) in full.ov_svd.iter().enumerate() {
        for (h, directions) in row.iter().enumerate() {
            for d in directions {
                let tokens = |ts: &[(u32, f32)]| {
                    ts.iter()
                        .map(|(t, w)| format!("{t}({w:+.2})"))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                println!(
                    "  {:<6}σ {:>8.3}  {}  →  {}",
                    head_label(l, h),
                    d.value,
                    tokens(&d.sources),
                    tokens(&d.outputs)
                );
            }
        }
    }
    if let Some(c) = &composition {
        for (mode, scores) in [("Q", &c.Q), ("K", &c.K), ("V", &c.V)] {
            println!("\n{mode}-composition (rows: earlier head, columns: later head):");
            let later: Vec<(usize, usize)> = (1..cfg.n_layers)
                .flat_map(|l| (0..cfg.n_heads).map(move |h| (l, h)))
                .collect();
            let header: String = later
                .iter()
                .map(|&(l, h)| format!("{:>7}", head_label(l, h)))
                .collect();
            println!("  {:<6}{header}", "");
            for (l1, layer) in scores.iter().enumerate().take(cfg.n_layers - 1) {
                for (h1, row) in layer.iter().enumerate() {
                    let cells: String = later
                        .iter()
                        .map(|&(l2, h2)| {
                            if l2 > l1 {
                                format!("{:>7.3}", row[l2][h2])
                            } else {
                                format!("{:>7}", "·")
                            }
                        })
                        .collect();
                    println!("  {:<6}{cells}", head_label(l1, h1));
                }
            }
        }
    }
    Ok(())
}

fn print_one_layer(c: &Circuits) {
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
}
