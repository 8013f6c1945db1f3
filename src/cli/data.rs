//! `toylens data`: write the example data sets, and check a data file of one's own.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::in_range;
use crate::checkpoint::write_atomically;
use crate::task::sequences::{
    Example, MAX_DIGITS, UNSCORED, example_jsonl, example_vocab, read_data,
};

#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Write an example data set as JSON Lines, with its vocab.json beside it.
    Gen(GenArgs),
    /// Read a data file as training would, and say what it holds or what is wrong with it.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Which example.
    #[arg(value_enum)]
    pub example: Example,
    /// Where to write the JSON Lines file (vocab.json goes beside it).
    #[arg(long)]
    pub out: PathBuf,
    /// Sequences to write.
    #[arg(long, default_value_t = 20_000)]
    pub samples: usize,
    /// Digits before the separator.
    #[arg(long, default_value_t = 5)]
    pub digits: usize,
    /// Draws the digits.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A .jsonl, .npy or .npz data file.
    pub file: PathBuf,
    /// Its vocabulary (a JSON list of token strings), if it has one.
    #[arg(long)]
    pub vocab: Option<PathBuf>,
}

pub fn data(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::Gen(args) => generate(args),
        DataCommand::Check(args) => check(args),
    }
}

fn generate(args: GenArgs) -> Result<()> {
    in_range("--samples", args.samples, 1, 1_000_000)?;
    in_range("--digits", args.digits, 1, MAX_DIGITS)?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = example_jsonl(args.example, args.digits, args.samples, args.seed);
    let vocab_path = args.out.with_file_name("vocab.json");
    let vocab = serde_json::to_string(&example_vocab())?;
    write_atomically(&args.out, text.as_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;
    write_atomically(&vocab_path, vocab.as_bytes())
        .with_context(|| format!("writing {}", vocab_path.display()))?;
    println!(
        "wrote {} sequences of {} tokens to {} and the vocabulary to {}",
        args.samples,
        2 * args.digits + 1,
        args.out.display(),
        vocab_path.display()
    );
    Ok(())
}

fn check(args: CheckArgs) -> Result<()> {
    let data = read_data(&args.file, args.vocab.as_deref())?;
    let scored = data.targets.iter().filter(|&&t| t != UNSCORED).count();
    let given = data.given_split.iter().filter(|s| s.is_some()).count();
    println!(
        "{}: {} sequences of {} tokens, {} token ids{}; {scored} scored positions ({:.1} per \
         sequence); {given} sequences name their split",
        args.file.display(),
        data.len(),
        data.seq_len,
        data.d_vocab,
        if data.vocab.is_some() {
            " with names"
        } else {
            ""
        },
        scored as f64 / data.len() as f64,
    );
    let first: Vec<String> = data
        .sequence(0)
        .iter()
        .map(|&t| data.token_name(t))
        .collect();
    println!("first sequence: {}", first.join(" "));
    Ok(())
}
