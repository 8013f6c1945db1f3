//! `toylens bench`: training and inspection speed.

use anyhow::{Result, bail};
use clap::Args;

use super::in_range;
use crate::device::{self, DeviceChoice};
use crate::train::{PathChoice, Preset, RunConfig};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Fewer repeats and sizes: a smoke run in a few seconds.
    #[arg(long)]
    pub quick: bool,
    /// Time only training steps of this batch size (with --seq-len and --vocab), instead of the
    /// whole suite. With --preset: that preset at this batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Sequence length for --batch (default 4).
    #[arg(long, default_value_t = 4)]
    pub seq_len: usize,
    /// Vocabulary for --batch, d_model = d_vocab (default 11). With --preset induction: the
    /// task's vocabulary.
    #[arg(long)]
    pub vocab: Option<usize>,
    /// Print JSON instead of Markdown tables.
    #[arg(long)]
    pub json: bool,
    /// Time only the 2-layer attention-only language-model step that `benches/tl_step.py`
    /// times in TransformerLens (batch 64, 20 positions, loss at every position, Adam), and print
    /// it as JSON.
    #[arg(long, conflicts_with = "batch")]
    pub lm_step: bool,
    /// Time only training steps of this preset (an epoch, for the full-batch grokking presets),
    /// without evaluations, and print it as JSON: what `benches/compare_presets.sh` compares
    /// with the PyTorch reference scripts.
    #[arg(long, value_enum, conflicts_with_all = ["lm_step"])]
    pub preset: Option<Preset>,
    /// Timed steps for --preset (default 100, 10 with --quick).
    #[arg(long)]
    pub steps: Option<usize>,
    /// With --preset: also time each phase of a step (data, forward and loss; backward;
    /// optimiser; metrics), synchronising the device between them.
    #[arg(long, requires = "preset")]
    pub profile: bool,
}

impl BenchArgs {
    /// The single-config run of `--batch`, checked before anything is allocated.
    fn single_config(&self) -> Result<Option<RunConfig>> {
        if self.preset.is_some() {
            return Ok(None);
        }
        in_range("--seq-len", self.seq_len, 3, crate::task::MAX_SEQ_LEN)?;
        // Tokens 0..=9 are the query, triggers and answer labels; noise fills the rest.
        let vocab = self.vocab.unwrap_or(11);
        in_range("--vocab", vocab, 10, crate::task::MAX_VOCAB)?;
        let Some(batch) = self.batch else {
            return Ok(None);
        };
        in_range("--batch", batch, 1, 10_000_000)?;
        let cfg = crate::bench::scaled_config(batch, self.seq_len, vocab, PathChoice::Auto);
        cfg.validate().map_err(anyhow::Error::msg)?;
        // Timed steps must not end an epoch, so an epoch needs at least two.
        if cfg.steps_per_epoch() < 2 {
            bail!(
                "--batch {batch} with --seq-len {}: at most {} samples per step fit in the benchmark's data set",
                self.seq_len,
                cfg.task.skip_trigram().map_or(0, |t| t.train_size / 2)
            );
        }
        Ok(Some(cfg))
    }

    /// The run of `--preset`, with `--batch` and `--vocab` applied, checked before anything is
    /// allocated.
    fn preset_config(&self, preset: Preset) -> Result<RunConfig> {
        let mut cfg = RunConfig::from_preset(preset);
        if let Some(batch) = self.batch {
            in_range("--batch", batch, 1, 10_000_000)?;
            cfg.train.batch_size = batch;
        }
        if let Some(vocab) = self.vocab {
            match &mut cfg.task {
                crate::task::TaskConfig::Induction(t) => t.vocab = vocab,
                _ => bail!("--vocab with --preset applies to the induction preset only"),
            }
            cfg.fit_model_to_task();
        }
        cfg.validate().map_err(anyhow::Error::msg)?;
        Ok(cfg)
    }
}

pub fn bench(args: BenchArgs) -> Result<()> {
    // Every argument is checked before the device starts.
    let single = args.single_config()?;
    let preset_run = args
        .preset
        .map(|preset| args.preset_config(preset).map(|cfg| (preset, cfg)))
        .transpose()?;
    let preset_steps = args.steps.unwrap_or(if args.quick { 10 } else { 100 });
    in_range("--steps", preset_steps, 1, 1_000_000)?;
    let (device, note) = device::resolve(args.device);
    if let Some(note) = note {
        eprintln!("warning: {note}");
    }
    if let Some((preset, cfg)) = preset_run {
        let steps = preset_steps;
        let timing = crate::bench::time_run(cfg, preset.name(), steps, args.profile, &device)?;
        println!("{}", serde_json::to_string(&timing)?);
        return Ok(());
    }
    if args.lm_step {
        let steps = if args.quick { 20 } else { 200 };
        let timing = crate::bench::time_lm_steps(64, 10, steps, 20, &device)?;
        println!("{}", serde_json::to_string(&timing)?);
        return Ok(());
    }
    if let Some(cfg) = single {
        let timing = crate::bench::time_steps(cfg, if args.quick { 3 } else { 10 }, &device)?;
        println!("{}", serde_json::to_string(&timing)?);
        return Ok(());
    }
    let report = crate::bench::run(&device, args.quick)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::bench::to_markdown(&report));
    }
    Ok(())
}
