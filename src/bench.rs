//! `toylens bench`: how fast training and inspection are, and how the cost grows with batch size,
//! sequence length and vocabulary. Medians, because a shared 2-core machine is noisy.

use std::time::Instant;

use candle_core::Device;
use serde::Serialize;

use crate::model::{ModelConfig, Transformer, Weights};
use crate::objective::ForwardPath;
use crate::task::{SkipTrigramConfig, TaskConfig, TokenRange};
use crate::train::{PathChoice, Preset, RunConfig, Trainer};

#[derive(Debug, Clone, Serialize)]
pub struct StepTiming {
    pub batch_size: usize,
    pub seq_len: usize,
    pub vocab: usize,
    pub path: String,
    /// How the step computes, in words: what its path uses of the model's plan
    /// ([`Trainer::describe_path`]).
    pub plan: String,
    /// Median milliseconds per optimiser step (forward, backward, Adam, metrics).
    pub ms_per_step: f64,
    pub samples_per_s: f64,
    /// Floating-point operations of one step of this path (forward + backward ≈ 3× forward).
    pub flops_per_step: f64,
    pub gflops: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub device: String,
    pub threads: String,
    /// The `notebook` preset end to end in this process: data, 60 epochs, validation, snapshots.
    pub notebook_run_s: f64,
    pub default_step: StepTiming,
    /// The same default step on every exact path, to show what each reformulation buys.
    pub paths: Vec<StepTiming>,
    /// `run_with_cache` on one sequence: what the inspector pays per keystroke.
    pub inspect_latency_us: f64,
    /// The 2-layer language-model step of `benches/tl_step.py`.
    pub lm_step: LmStepTiming,
    pub batch_scaling: Vec<StepTiming>,
    pub seq_len_scaling: Vec<StepTiming>,
    pub vocab_scaling: Vec<StepTiming>,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A task whose vocabulary is `vocab` (noise tokens fill it) and sequences are `seq_len` long.
pub fn scaled_config(batch: usize, seq_len: usize, vocab: usize, path: PathChoice) -> RunConfig {
    let mut cfg = RunConfig::from_preset(Preset::Fast);
    cfg.task = TaskConfig::SkipTrigram(SkipTrigramConfig {
        seq_len,
        noise_tokens: TokenRange::new(5, vocab as u32 - 1),
        // Several steps per epoch, so most timed steps do not include the validation pass.
        train_size: (batch * 4).min(crate::task::MAX_DATA_TOKENS / seq_len),
        val_size: 1_000,
        ..SkipTrigramConfig::default()
    });
    cfg.fit_model_to_task();
    cfg.model.n_ctx = seq_len;
    cfg.train.batch_size = batch;
    cfg.train.path = path;
    cfg
}

/// Estimated FLOPs of one training step (forward ×3 for backward and the update).
fn flops(cfg: &ModelConfig, path: ForwardPath, rows: usize, seq_len: usize) -> f64 {
    let (h, d, v) = (cfg.n_heads as f64, cfg.d_head as f64, cfg.d_vocab as f64);
    let (r, p) = (rows as f64, seq_len as f64);
    let forward = match path {
        // one-hot matmuls for q, k, v; scores and z for every query; W_O per head; W_U.
        ForwardPath::Full => {
            r * p * (3.0 * 2.0 * v * h * d + 2.0 * 2.0 * p * h * d + 2.0 * h * d * v + 2.0 * v * v)
                + r * p * p * h * 5.0
        }
        // one query row: p scores and a weighted sum of p values per head, then W_O.
        ForwardPath::LastPosition => r * (h * p * (4.0 * d + 5.0) + 2.0 * h * d * v + 5.0 * v),
        // one score per vocabulary entry per head and row, then W_O.
        ForwardPath::Multiset => r * (h * v * (4.0 * d + 6.0) + 2.0 * h * d * v + 8.0 * v),
        // the MLP and the unembedding at the scored position, three table rows per head.
        // every position predicts the next token: the whole forward pass.
        ForwardPath::NextToken => forward_flops(cfg, rows * seq_len, seq_len),
        ForwardPath::FixedQuery => {
            let (dm, m, c) = (
                cfg.d_model as f64,
                if cfg.has_mlp() {
                    cfg.d_mlp() as f64
                } else {
                    0.0
                },
                cfg.d_vocab_out() as f64,
            );
            r * (4.0 * dm * m + 2.0 * dm * c + 6.0 * h * dm)
        }
    };
    3.0 * forward
}

/// Times `steps` training steps (after one warm-up step) of `cfg`. The config must have more
/// than one step per epoch.
pub fn time_steps(cfg: RunConfig, steps: usize, device: &Device) -> anyhow::Result<StepTiming> {
    let (batch, seq_len, vocab) = (
        cfg.train.batch_size,
        cfg.task.seq_len(),
        cfg.task.vocab_size(),
    );
    let model_cfg = cfg.model.clone();
    let mut trainer = Trainer::new(cfg, device)?;
    let rows = match trainer.path() {
        ForwardPath::Multiset => trainer.multiset_rows().unwrap_or(batch),
        _ => batch,
    };
    let path = trainer.path();
    let mut times = Vec::with_capacity(steps);
    trainer.step()?;
    while times.len() < steps {
        let t = Instant::now();
        // Steps that end an epoch also validate; they are timed by the notebook run instead.
        if trainer.step()?.evaluation.is_none() {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let s = median(times);
    let f = flops(&model_cfg, path, rows, seq_len);
    Ok(StepTiming {
        batch_size: batch,
        seq_len,
        vocab,
        path: path.name().into(),
        plan: trainer.describe_path(),
        ms_per_step: s * 1e3,
        samples_per_s: batch as f64 / s,
        flops_per_step: f,
        gflops: f / s / 1e9,
    })
}

/// The model of `benches/tl_step.py` (the induction-head experiment's): two attention-only
/// layers, d_model 64, 4 heads of 16, learned positions, no LayerNorm, vocabulary 32.
pub fn lm_model(seq_len: usize) -> ModelConfig {
    ModelConfig {
        n_layers: 2,
        d_model: 64,
        n_heads: 4,
        d_head: 16,
        d_vocab: 32,
        d_vocab_out: None,
        n_ctx: seq_len,
        attn_only: true,
        d_mlp: None,
        act_fn: None,
        normalization_type: None,
        positional_embedding_type: crate::model::Positions::Standard,
        embeddings: crate::model::Embeddings::Learned,
        use_attn_scale: true,
        attn_scale: None,
        init_range: None,
    }
}

/// Timing of a language-model step: next-token loss at every position, Adam.
#[derive(Debug, Clone, Serialize)]
pub struct LmStepTiming {
    pub batch_size: usize,
    pub seq_len: usize,
    /// How the step computes, in words (what the next-token path uses of the model's plan).
    pub plan: String,
    pub ms_per_step: f64,
    pub flops_per_step: f64,
    pub gflops: f64,
    /// The training loss after the timed steps (sanity: it must fall below ln 32 = 3.47).
    pub final_loss: f64,
}

/// Forward FLOPs of `cfg` on `tokens` positions of one batch: projections, scores, z, W_O,
/// MLP and unembedding (multiply-adds count 2).
pub fn forward_flops(cfg: &ModelConfig, tokens: usize, seq_len: usize) -> f64 {
    let (m, h, d) = (cfg.d_model as f64, cfg.n_heads as f64, cfg.d_head as f64);
    let n = tokens as f64;
    let attn = n * (2.0 * 4.0 * m * h * d + 2.0 * 2.0 * seq_len as f64 / 2.0 * h * d);
    let mlp = if cfg.has_mlp() {
        n * 2.0 * 2.0 * m * cfg.d_mlp() as f64
    } else {
        0.0
    };
    cfg.n_layers as f64 * (attn + mlp) + n * 2.0 * m * cfg.d_vocab_out() as f64
}

/// Times `steps` Adam steps (lr 1e-3) of the induction task's model on batches of repeated
/// random halves, after `warmup` untimed steps: forward, next-token loss, backward, update.
pub fn time_lm_steps(
    batch: usize,
    half: usize,
    steps: usize,
    warmup: usize,
    device: &Device,
) -> anyhow::Result<LmStepTiming> {
    use rand::{Rng, SeedableRng};
    let seq_len = 2 * half;
    let cfg = lm_model(seq_len);
    let model = Transformer::new(&cfg, &Weights::init(&cfg, 0), device)?;
    let train = crate::config::TrainConfig {
        lr: 1e-3,
        ..Default::default()
    };
    let mut adam = crate::train::Adam::new(model.vars().to_vec(), &train, model.plan().adam)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut times = Vec::with_capacity(steps);
    let mut last = f64::NAN;
    for i in 0..warmup + steps {
        let mut tokens = Vec::with_capacity(batch * seq_len);
        for _ in 0..batch {
            let first: Vec<u32> = (0..half).map(|_| rng.random_range(0..32)).collect();
            tokens.extend_from_slice(&first);
            tokens.extend_from_slice(&first);
        }
        let t = Instant::now();
        let tokens = candle_core::Tensor::from_vec(tokens, (batch, seq_len), device)?;
        let (loss, grads) = crate::train::lm_step::next_token_loss_and_grads(&model, &tokens)?;
        adam.step(&grads)?;
        last = loss;
        if i >= warmup {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let s = median(times);
    let f = 3.0 * forward_flops(&cfg, batch * seq_len, seq_len);
    Ok(LmStepTiming {
        batch_size: batch,
        seq_len,
        plan: ForwardPath::NextToken.describe(model.plan()),
        ms_per_step: s * 1e3,
        flops_per_step: f,
        gflops: f / s / 1e9,
        final_loss: last,
    })
}

/// The notebook preset end to end, as the CLI runs it minus process start and file writing.
pub fn time_notebook_run(device: &Device) -> anyhow::Result<f64> {
    let t = Instant::now();
    let trainer = Trainer::new(RunConfig::from_preset(Preset::Notebook), device)?;
    let outcome = crate::train::drive(trainer, |_| crate::train::Control::Continue)?;
    std::hint::black_box(outcome.checkpoint);
    Ok(t.elapsed().as_secs_f64())
}

pub fn inspect_latency_us(device: &Device, repeats: usize) -> anyhow::Result<f64> {
    let cfg = ModelConfig::default();
    let model = Transformer::new(&cfg, &Weights::init(&cfg, 0), device)?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t = Instant::now();
        std::hint::black_box(model.run_with_cache(&[2, 5, 3, 0])?);
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(times) * 1e6)
}

/// Runs every measurement. `quick` cuts repeats and the largest sizes, for a smoke run.
pub fn run(device: &Device, quick: bool) -> anyhow::Result<BenchReport> {
    let steps = if quick { 5 } else { 30 };
    let rounds = if quick { 1 } else { 3 };
    let notebook_run_s = median(
        (0..rounds)
            .map(|_| time_notebook_run(device))
            .collect::<anyhow::Result<Vec<_>>>()?,
    );
    let default = RunConfig::from_preset(Preset::Fast);
    let default_step = time_steps(default.clone(), steps * 4, device)?;
    let mut paths = Vec::new();
    for path in [
        PathChoice::Full,
        PathChoice::LastPosition,
        PathChoice::Multiset,
    ] {
        let mut cfg = default.clone();
        cfg.train.path = path;
        paths.push(time_steps(cfg, steps, device)?);
    }
    let batches: &[usize] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 3_000, 10_000, 30_000, 100_000]
    };
    let lens: &[usize] = if quick { &[4, 16] } else { &[4, 8, 16, 32, 64] };
    let vocabs: &[usize] = if quick {
        &[11, 100]
    } else {
        &[11, 30, 100, 300, 1000]
    };
    let batch_scaling = batches
        .iter()
        .map(|&b| time_steps(scaled_config(b, 4, 11, PathChoice::Auto), steps, device))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let seq_len_scaling = lens
        .iter()
        .map(|&l| {
            time_steps(
                scaled_config(10_000, l, 11, PathChoice::Auto),
                steps,
                device,
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let vocab_scaling = vocabs
        .iter()
        .map(|&v| time_steps(scaled_config(10_000, 4, v, PathChoice::Auto), steps, device))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(BenchReport {
        device: crate::device::describe(device),
        threads: std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into()),
        notebook_run_s,
        default_step,
        paths,
        inspect_latency_us: inspect_latency_us(device, if quick { 50 } else { 1_000 })?,
        lm_step: time_lm_steps(64, 10, if quick { 20 } else { 200 }, 20, device)?,
        batch_scaling,
        seq_len_scaling,
        vocab_scaling,
    })
}

/// The report as a Markdown table, as the README shows it.
pub fn to_markdown(r: &BenchReport) -> String {
    let mut out = format!(
        "device {}, {} thread(s)\n\n\
         - notebook preset end to end (in process): {:.3} s\n\
         - default step (batch 10 000, {} path): {:.3} ms = {:.2} M samples/s\n\
         - inspector latency (run_with_cache, one sequence): {:.0} µs\n\
         - 2-layer attention-only LM step (d_model 64, batch 64 × 20 positions, as \
         benches/tl_step.py): {:.3} ms, {:.1} GFLOP/s\n\n",
        r.device,
        r.threads,
        r.notebook_run_s,
        r.default_step.path,
        r.default_step.ms_per_step,
        r.default_step.samples_per_s / 1e6,
        r.inspect_latency_us,
        r.lm_step.ms_per_step,
        r.lm_step.gflops,
    );
    let table = |title: &str, rows: &[StepTiming]| {
        let mut t = format!(
            "{title}\n\n| batch | seq len | vocab | path | ms/step | samples/s | GFLOP/s |\n|---:|---:|---:|---|---:|---:|---:|\n"
        );
        for s in rows {
            t += &format!(
                "| {} | {} | {} | {} | {:.3} | {:.0} | {:.2} |\n",
                s.batch_size, s.seq_len, s.vocab, s.path, s.ms_per_step, s.samples_per_s, s.gflops
            );
        }
        t + "\n"
    };
    out += &table("Each exact path at the default config:", &r.paths);
    out += &table("Batch size:", &r.batch_scaling);
    out += &table("Sequence length (batch 10 000):", &r.seq_len_scaling);
    out += &table(
        "Vocabulary, d_model = d_vocab (batch 10 000):",
        &r.vocab_scaling,
    );
    out
}

/// Timing of a preset's training step (an epoch, for full-batch modular addition).
#[derive(Debug, Clone, Serialize)]
pub struct PresetTiming {
    pub preset: String,
    pub path: String,
    /// How the step computes, in words: what its path uses of the model's plan
    /// ([`Trainer::describe_path`]).
    pub plan: String,
    pub samples_per_step: usize,
    /// Median milliseconds per optimiser step, evaluations excluded.
    pub ms_per_step: f64,
    pub flops_per_step: f64,
    pub gflops: f64,
    /// With profiling: the median milliseconds of each phase of a step, the device
    /// synchronised at each phase's end (so their sum exceeds an unprofiled step a little).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phases_ms: Vec<PhaseTiming>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseTiming {
    pub phase: &'static str,
    pub ms: f64,
}

/// Times `steps` training steps of `cfg` (after two warm-up steps) without evaluations; with
/// `profile`, also each phase of a step ([`crate::train::profile`]).
pub fn time_run(
    mut cfg: RunConfig,
    name: &str,
    steps: usize,
    profile: bool,
    device: &Device,
) -> anyhow::Result<PresetTiming> {
    // Two warm-up steps, the timed ones, and one more: the run's last step also evaluates, and
    // a step that evaluates is not timed.
    let total = steps + 3;
    cfg.train.epochs = total.max(cfg.train.epochs);
    cfg.train.steps = total.max(cfg.train.steps);
    cfg.train.eval_every = 10 * total;
    let model_cfg = cfg.model.clone();
    let seq_len = cfg.task.seq_len();
    let batch = cfg.step_batch();
    let mut trainer = Trainer::new(cfg, device)?;
    trainer.step()?;
    trainer.step()?;
    let mut times = Vec::with_capacity(steps);
    let mut phases: Vec<crate::train::profile::Phases> = Vec::new();
    while times.len() < steps {
        if profile {
            crate::train::profile::start();
        }
        let t = Instant::now();
        let result = trainer.step()?;
        let elapsed = t.elapsed().as_secs_f64();
        let step_phases = crate::train::profile::finish();
        if result.evaluation.is_none() {
            times.push(elapsed);
            phases.push(step_phases);
        }
    }
    let phases_ms = phases
        .first()
        .map(|first| {
            (0..first.len())
                .map(|i| PhaseTiming {
                    phase: first[i].0,
                    ms: 1e3
                        * median(
                            phases
                                .iter()
                                .filter_map(|p| p.get(i))
                                .map(|p| p.1)
                                .collect(),
                        ),
                })
                .collect()
        })
        .unwrap_or_default();
    let s = median(times);
    let path = trainer.path();
    let f = flops(&model_cfg, path, batch, seq_len);
    Ok(PresetTiming {
        preset: name.into(),
        path: path.name().into(),
        plan: trainer.describe_path(),
        samples_per_step: batch,
        ms_per_step: s * 1e3,
        flops_per_step: f,
        gflops: f / s / 1e9,
        phases_ms,
    })
}
