//! `toylens inspect` and `toylens circuits`: one sequence through the model, and the circuits.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::{load_checkpoint, load_model, print_model_line};
use crate::analysis::{Inspection, cache_json, circuits as circuits_of, inspection_of};
use crate::device::DeviceChoice;
use crate::task::parse_sequence;

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

pub fn inspect(args: InspectArgs) -> Result<()> {
    let (checkpoint, model) = load_model(&args.checkpoint, args.tl_config.as_deref(), args.device)?;
    let cfg = &checkpoint.config.model;
    let task = &checkpoint.config.task;
    let tokens = parse_sequence(&args.tokens.join(" "), cfg.d_vocab, cfg.n_ctx)
        .map(|t| task.complete_sequence(t))
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
            "predicted {}  (the task does not determine the next token here)",
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

pub fn circuits(args: CircuitsArgs) -> Result<()> {
    let checkpoint = load_checkpoint(&args.checkpoint, args.tl_config.as_deref())?;
    let c =
        circuits_of(&checkpoint.config.model, &checkpoint.weights).map_err(anyhow::Error::msg)?;
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
