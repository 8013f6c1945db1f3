//! A transformer's activations at one TransformerLens hook, on its task's data, and the cross-
//! entropy the model loses when an SAE's reconstruction replaces them.

use std::sync::Arc;

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::model::{Architecture, SaeWeights};
use super::source::{Activations, CeLosses, Origin};
use crate::model::kernels::lm_loss::{UNSCORED, scored_cross_entropy_loss};
use crate::model::{Capture, Edits, Splice, Transformer};
use crate::task::TaskConfig;

/// Sequences the CE loss recovered is measured on, at most (the task's validation set, cut).
const CE_SEQUENCES: usize = 2048;

/// Which positions of each sequence an SAE reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// Every position (language-model-like tasks).
    All,
    /// The last position only: where modular addition and skip-trigram models answer.
    Last,
}

impl Positions {
    /// Where the task's model does its work: the answer position of tasks scored at the last
    /// position, every position otherwise.
    pub fn for_task(task: &TaskConfig) -> Self {
        match task {
            TaskConfig::ModularAddition(_) | TaskConfig::SkipTrigram(_) => Positions::Last,
            _ => Positions::All,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Positions::All => "all",
            Positions::Last => "last",
        }
    }

    fn range(self, len: usize) -> std::ops::Range<usize> {
        match self {
            Positions::All => 0..len,
            Positions::Last => len - 1..len,
        }
    }
}

/// The width of hook `hook` in a model of `cfg` (`attn.hook_z` flattened over heads), or why
/// an SAE cannot read it.
pub fn hook_width(cfg: &crate::config::ModelConfig, hook: &str) -> Result<usize, String> {
    let layer = hook
        .strip_prefix("blocks.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|&l| l < cfg.n_layers);
    let known = |l: usize| Splice::hooks(l, cfg.has_mlp()).iter().any(|h| h == hook);
    match layer {
        Some(l) if known(l) => Ok(if hook.ends_with("attn.hook_z") {
            cfg.n_heads * cfg.d_head
        } else if hook.contains(".mlp.") {
            cfg.d_mlp.unwrap_or(0)
        } else {
            cfg.d_model
        }),
        _ => {
            let examples = Splice::hooks(0, cfg.has_mlp()).join(", ");
            Err(format!(
                "an SAE reads one of a block's hooks ({examples}, with layers 0 to {}), not \
                 \"{hook}\"",
                cfg.n_layers.saturating_sub(1)
            ))
        }
    }
}

/// Whether `hook` is a write to, or a state of, the residual stream: its latents then have a
/// direct effect on the logits through `W_U`.
pub fn in_residual_stream(hook: &str) -> bool {
    [
        "hook_resid_pre",
        "hook_resid_mid",
        "hook_resid_post",
        "hook_attn_out",
        "hook_mlp_out",
    ]
    .iter()
    .any(|s| hook.ends_with(s))
}

/// A transformer's activations at `hook`, on fresh sequences of its task.
pub struct TransformerHook {
    model: Arc<Transformer>,
    task: TaskConfig,
    hook: String,
    d_in: usize,
    positions: Positions,
    seq_len: usize,
    /// The last batch's sequences (flat) and each row's (sequence, position).
    sequences: Vec<u32>,
    rows: Vec<(u32, u16)>,
}

impl TransformerHook {
    /// The activations at `hook` of `model` on `task`'s data; an error names what does not fit.
    pub fn new(
        model: Arc<Transformer>,
        task: TaskConfig,
        hook: &str,
        positions: Positions,
    ) -> Result<Self, String> {
        let cfg = model.config();
        let d_in = hook_width(cfg, hook)?;
        if !task.has_data() {
            return Err(
                "the model has no task, so there are no sequences to read activations on: \
                 give it one (a task, or a data file)"
                    .into(),
            );
        }
        task.validate().map_err(|e| e.to_string())?;
        let seq_len = match &task {
            TaskConfig::Sequences(t) => t.data().map_or(0, |d| d.seq_len),
            _ => task.seq_len(),
        };
        if seq_len == 0 || seq_len > cfg.n_ctx {
            return Err(format!(
                "the task's sequences ({seq_len} tokens) do not fit the model's n_ctx {}",
                cfg.n_ctx
            ));
        }
        Ok(Self {
            model,
            task,
            hook: hook.to_string(),
            d_in,
            positions,
            seq_len,
            sequences: Vec::new(),
            rows: Vec::new(),
        })
    }

    pub fn positions(&self) -> Positions {
        self.positions
    }

    pub fn model(&self) -> &Transformer {
        &self.model
    }

    pub fn task(&self) -> &TaskConfig {
        &self.task
    }

    /// `count` whole sequences of the task, flat, drawn as its training data is.
    fn draw(&self, count: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
        let len = self.seq_len;
        match &self.task {
            TaskConfig::Induction(t) => t.generate(count, rng),
            // (The task was validated in `new`, and `count` is at least 1.)
            TaskConfig::SkipTrigram(t) => t
                .generate(count, rng)
                .map(|data| data.tokens)
                .unwrap_or_default(),
            TaskConfig::ModularAddition(t) => {
                (0..count).flat_map(|_| t.random_sequence(rng)).collect()
            }
            TaskConfig::Sequences(t) => {
                let data = t.data().expect("checked in new");
                (0..count)
                    .flat_map(|_| data.sequence(rng.random_range(0..data.len())).to_vec())
                    .collect()
            }
            TaskConfig::None(t) => (0..count * len)
                .map(|_| rng.random_range(0..t.vocab as u32))
                .collect(),
        }
    }

    /// The hook's values at the positions read, on `tokens` (whole sequences, flat), run in
    /// chunks: at most `limit` rows appended to `x`, each row's (sequence, position) to
    /// `origin`.
    fn read(
        &self,
        tokens: &[u32],
        limit: usize,
        x: &mut Vec<f32>,
        mut origin: impl FnMut(usize, usize),
    ) -> Result<(), String> {
        let len = self.seq_len;
        let range = self.positions.range(len);
        let chunk_rows = self.model.config().forward_chunk_rows(len);
        let mut rows = 0;
        for (c, chunk) in tokens.chunks(chunk_rows * len).enumerate() {
            let values = activations_of(&self.model, chunk, len, &self.hook)
                .map_err(|e| format!("running the model for {}: {e}", self.hook))?;
            for (s, seq) in values.chunks_exact(len * self.d_in).enumerate() {
                for q in range.clone().take(limit - rows) {
                    x.extend_from_slice(&seq[q * self.d_in..(q + 1) * self.d_in]);
                    origin(c * chunk_rows + s, q);
                    rows += 1;
                }
            }
        }
        Ok(())
    }

    /// The task's validation sequences (at most [`CE_SEQUENCES`]) and each position's target
    /// (the token the task determines next, or [`UNSCORED`]).
    fn validation(&self, seed: u64) -> Result<(Vec<u32>, Vec<u32>), String> {
        let len = self.seq_len;
        if let TaskConfig::Sequences(t) = &self.task {
            let data = t.data().ok_or("the task's data file is not loaded")?;
            let (_, val) = data.split(t.val_frac, seed);
            let ids: Vec<usize> = if val.is_empty() {
                (0..data.len()).collect()
            } else {
                val.iter().map(|&i| i as usize).collect()
            };
            let ids = &ids[..ids.len().min(CE_SEQUENCES)];
            let tokens = ids
                .iter()
                .flat_map(|&i| data.sequence(i).to_vec())
                .collect();
            let targets = ids
                .iter()
                .flat_map(|&i| data.targets_of(i).to_vec())
                .collect();
            return Ok((tokens, targets));
        }
        if let TaskConfig::SkipTrigram(t) = &self.task {
            // A noise sequence's label is drawn at random: the data set holds it, the tokens
            // do not determine it.
            let data = t.val_set(seed).map_err(|e| e.to_string())?;
            let n = data.len().min(CE_SEQUENCES);
            let tokens = data.tokens[..n * len].to_vec();
            let targets = data.labels[..n]
                .iter()
                .flat_map(|&label| {
                    (0..len).map(move |p| if p + 1 == len { label } else { UNSCORED })
                })
                .collect();
            return Ok((tokens, targets));
        }
        let mut tokens = self
            .task
            .validation_tokens(seed)
            .map_err(|e| e.to_string())?;
        tokens.truncate(CE_SEQUENCES * len);
        let targets = tokens
            .chunks_exact(len)
            .flat_map(|seq| {
                (0..len).map(|p| self.task.expected_next(&seq[..=p]).unwrap_or(UNSCORED))
            })
            .collect();
        Ok((tokens, targets))
    }

    /// The summed cross-entropy over the scored positions of `tokens`, with `splice`.
    fn summed_ce(
        &self,
        tokens: &[u32],
        targets: &[u32],
        splice: Option<Splice>,
    ) -> candle_core::Result<(f64, usize)> {
        let len = self.seq_len;
        let rows = self.model.config().forward_chunk_rows(len);
        let edits = splice.map(|s| Edits {
            splice: Some(s),
            ..Edits::default()
        });
        let (mut sum, mut count) = (0.0, 0);
        for (chunk, chunk_targets) in tokens.chunks(rows * len).zip(targets.chunks(rows * len)) {
            let n = chunk.len() / len;
            let input = Tensor::from_slice(chunk, (n, len), self.model.device())?;
            let (logits, _) =
                self.model
                    .forward_hooked(&input, Capture::Nothing, edits.as_ref())?;
            let scored = chunk_targets.iter().filter(|&&t| t != UNSCORED).count();
            if scored == 0 {
                continue;
            }
            let t = Tensor::from_slice(chunk_targets, (n, len), self.model.device())?;
            let mean = scored_cross_entropy_loss(&logits, &t)?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            sum += mean * scored as f64;
            count += scored;
        }
        Ok((sum, count))
    }

    /// A splice that replaces the read positions of the hook by `f` of their rows.
    fn splice(&self, f: impl Fn(&[f32], usize) -> Vec<f32> + Send + Sync + 'static) -> Splice {
        let (d, positions) = (self.d_in, self.positions);
        Splice {
            hook: self.hook.clone(),
            replace: Arc::new(move |value: &Tensor| {
                let dims = value.dims().to_vec();
                let (b, p) = (dims[0], dims[1]);
                let mut host = value
                    .to_dtype(DType::F32)?
                    .reshape((b * p, d))?
                    .to_vec2::<f32>()?;
                let read: Vec<usize> = (0..b)
                    .flat_map(|s| positions.range(p).map(move |q| s * p + q))
                    .collect();
                let x: Vec<f32> = read.iter().flat_map(|&r| host[r].clone()).collect();
                let y = f(&x, read.len());
                for (&r, row) in read.iter().zip(y.chunks_exact(d)) {
                    host[r].copy_from_slice(row);
                }
                let flat: Vec<f32> = host.into_iter().flatten().collect();
                Tensor::from_vec(flat, dims.as_slice(), value.device())?.to_dtype(value.dtype())
            }),
        }
    }
}

impl Activations for TransformerHook {
    fn d_in(&self) -> usize {
        self.d_in
    }

    fn hook_name(&self) -> String {
        self.hook.clone()
    }

    fn fill(&mut self, x: &mut Vec<f32>, rows: usize, seed: u64) -> Result<(), String> {
        let len = self.seq_len;
        let range = self.positions.range(len);
        let per_sequence = range.len();
        let count = rows.div_ceil(per_sequence);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        self.sequences = self.draw(count, &mut rng);
        x.clear();
        let mut origins = std::mem::take(&mut self.rows);
        origins.clear();
        let read = self.read(&self.sequences, rows, x, |s, q| {
            origins.push((s as u32, q as u16))
        });
        self.rows = origins;
        read
    }

    fn origin(&self, row: usize) -> Option<Origin> {
        let &(s, q) = self.rows.get(row)?;
        let len = self.seq_len;
        let s = s as usize;
        Some(Origin::Token {
            sequence: self.sequences[s * len..(s + 1) * len].to_vec(),
            position: q as usize,
        })
    }

    fn ce_losses(&mut self, sae: &SaeWeights, architecture: Architecture) -> Option<CeLosses> {
        let measure = || -> Result<CeLosses, String> {
            let (tokens, targets) = self.validation(0)?;
            let d = self.d_in;
            let (clean, n) = self
                .summed_ce(&tokens, &targets, None)
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the validation data score no position".into());
            }
            let zero = self.splice(move |_, rows| vec![0.0; rows * d]);
            let weights = Arc::new(sae.clone());
            let spliced = self.splice(move |x, rows| {
                let f = weights.encode(x, rows, architecture);
                weights.decode(&f, rows)
            });
            let ce = |s| {
                self.summed_ce(&tokens, &targets, Some(s))
                    .map(|(sum, _)| sum / n as f64)
                    .map_err(|e| e.to_string())
            };
            Ok(CeLosses {
                clean: clean / n as f64,
                zero_ablated: ce(zero)?,
                spliced: ce(spliced)?,
            })
        };
        match measure() {
            Ok(losses) => Some(losses),
            Err(e) => {
                log::error!("CE loss recovered at {}: {e}", self.hook);
                None
            }
        }
    }

    fn latent_frequencies(
        &self,
        sae: &SaeWeights,
        architecture: Architecture,
    ) -> Option<Vec<Option<super::fourier::Frequency>>> {
        let TaskConfig::ModularAddition(t) = &self.task else {
            return None;
        };
        if self.positions != Positions::Last || self.seq_len != 3 {
            return None;
        }
        let p = t.p;
        let tokens: Vec<u32> = (0..p * p)
            .flat_map(|i| [(i / p) as u32, (i % p) as u32, p as u32])
            .collect();
        // Every pair's `=` position, in order.
        let mut x = Vec::with_capacity(p * p * self.d_in);
        self.read(&tokens, p * p, &mut x, |_, _| {}).ok()?;
        Some(super::fourier::sae_frequencies(sae, architecture, &x, p))
    }

    fn unembed(&self) -> Option<Vec<f32>> {
        if !in_residual_stream(&self.hook) {
            return None;
        }
        let w_u = self.model.w_u().ok()?;
        w_u.to_dtype(DType::F32)
            .ok()?
            .flatten_all()
            .ok()?
            .to_vec1()
            .ok()
    }
}

/// The values at `hook` of `model` on `tokens` (sequences of `len`, flat), `[tokens, d]` flat
/// (`attn.hook_z` flattened over heads).
pub fn activations_of(
    model: &Transformer,
    tokens: &[u32],
    len: usize,
    hook: &str,
) -> candle_core::Result<Vec<f32>> {
    let input = Tensor::from_slice(tokens, (tokens.len() / len, len), model.device())?;
    let (_, hooks) = model.forward_hooked(&input, Capture::Named(vec![hook.to_string()]), None)?;
    let (_, value) = hooks
        .into_iter()
        .next()
        .ok_or_else(|| candle_core::Error::Msg(format!("the model has no hook {hook}")))?;
    value.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
}

/// The latents active at each position of `tokens` under an SAE (its weights, architecture and
/// hook), strongest first (at most `top` each): what the Inspect tab shows beside the sequence.
pub fn active_latents(
    model: &Transformer,
    tokens: &[u32],
    (weights, architecture, hook): (&SaeWeights, Architecture, &str),
    top: usize,
) -> Result<Vec<Vec<(usize, f32)>>, String> {
    let x = activations_of(model, tokens, tokens.len(), hook).map_err(|e| e.to_string())?;
    let (d, s) = (weights.d_in, weights.d_sae);
    if x.len() != tokens.len() * d {
        return Err(format!(
            "the SAE reads {d} values at {hook} but the model has {}",
            x.len() / tokens.len().max(1)
        ));
    }
    let f = weights.encode(&x, tokens.len(), architecture);
    Ok(f.chunks_exact(s)
        .map(|row| {
            let mut active: Vec<(usize, f32)> = row
                .iter()
                .enumerate()
                .filter(|(_, v)| **v > 0.0)
                .map(|(i, &v)| (i, v))
                .collect();
            active.sort_by(|a, b| b.1.total_cmp(&a.1));
            active.truncate(top);
            active
        })
        .collect())
}

/// Whether `sae` reads the model of `cfg`: its hook exists there with the SAE's width.
pub fn fits_transformer(
    sae: &SaeWeights,
    hook: &str,
    cfg: &crate::config::ModelConfig,
) -> Result<(), String> {
    let width = hook_width(cfg, hook)?;
    if width != sae.d_in {
        return Err(format!(
            "the SAE reads {} values at {hook}, but the model in view has {width} there",
            sae.d_in
        ));
    }
    Ok(())
}
