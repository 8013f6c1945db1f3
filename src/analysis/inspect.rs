//! Everything about one sequence: logits, patterns of every layer and head, the logit
//! decomposition where it is exact, and the whole activation cache for `--cache`.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{Ablation, ActivationCache, ModelError, NdArray, Transformer, softmax};
use crate::task::TaskConfig;

/// Everything the inspector shows for one sequence. Field names match the fixture's
/// (`cases.json`), so the CLI's `--json` can be compared with TransformerLens directly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    pub tokens: Vec<u32>,
    /// `[pos][d_vocab_out]`.
    pub logits: Vec<Vec<f32>>,
    pub logits_last: Vec<f32>,
    /// Softmax of `logits_last`.
    pub probs_last: Vec<f32>,
    pub predicted_token: u32,
    /// The task's answer when the sequence is a well-formed signal sequence.
    pub expected: Option<u32>,
    /// Layer 0's `[head][query][key]`; entries above the diagonal are 0.
    pub pattern: Vec<Vec<Vec<f32>>>,
    /// Every layer's patterns, `[layer][head][query][key]`.
    pub patterns: Vec<Vec<Vec<Vec<f32>>>>,
    /// Layer 0's `[pos][head][d_head]`.
    pub z: Vec<Vec<Vec<f32>>>,
    /// The decomposition of the last logits, for one-layer models without LayerNorm (null
    /// otherwise): `[head][d_model]`, z·W_O[h] at the last position, without b_O.
    pub head_out_last: Option<Vec<Vec<f32>>>,
    /// `[head][d_vocab_out]`.
    pub head_logits_last: Option<Vec<Vec<f32>>>,
    /// Embeddings (and standard positions) straight through `W_U`.
    pub direct_logits_last: Option<Vec<f32>>,
    /// `b_O @ W_U + b_U`.
    pub bias_logits: Option<Vec<f32>>,
    /// The MLP's output through `W_U`, for one-layer models with an MLP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlp_logits_last: Option<Vec<f32>>,
}

impl Inspection {
    /// The largest gap between the last logits and the sum of their parts, where the
    /// decomposition applies.
    pub fn decomposition_error(&self) -> Option<f32> {
        let (direct, bias, heads) = (
            self.direct_logits_last.as_ref()?,
            self.bias_logits.as_ref()?,
            self.head_logits_last.as_ref()?,
        );
        Some(
            self.logits_last
                .iter()
                .enumerate()
                .map(|(v, &l)| {
                    let parts = direct[v]
                        + bias[v]
                        + heads.iter().map(|h| h[v]).sum::<f32>()
                        + self.mlp_logits_last.as_ref().map_or(0.0, |m| m[v]);
                    (l - parts).abs()
                })
                .fold(0.0, f32::max),
        )
    }

    pub fn n_layers(&self) -> usize {
        self.patterns.len()
    }
}

/// Runs `tokens` through `model` and collects the inspection.
pub fn inspect(
    model: &Transformer,
    task: &TaskConfig,
    tokens: &[u32],
) -> Result<Inspection, ModelError> {
    inspect_ablated(model, task, tokens, None)
}

/// [`inspect`] with heads of layer 0 ablated: an ablated head's row of the decomposition shows
/// what it writes under the ablation (0 for zero ablation).
pub fn inspect_ablated(
    model: &Transformer,
    task: &TaskConfig,
    tokens: &[u32],
    ablation: Option<&Ablation>,
) -> Result<Inspection, ModelError> {
    let cache = model.run_with_cache_ablated(tokens, ablation)?;
    Ok(inspection_of(&cache, model.config().n_layers, task))
}

/// The inspection of a cache from `run_with_cache`.
pub fn inspection_of(cache: &ActivationCache, n_layers: usize, task: &TaskConfig) -> Inspection {
    let tokens = &cache.tokens;
    let p = tokens.len();
    let z = &cache.hooks["blocks.0.attn.hook_z"]; // [1, pos, head, d_head]
    let (heads, d_head) = (z.shape[2], z.shape[3]);
    let logits_last = cache.logits_last().to_vec();
    let patterns: Vec<Vec<Vec<Vec<f32>>>> = (0..n_layers)
        .map(|l| (0..heads).map(|h| cache.pattern(l, h)).collect())
        .collect();
    let d = cache.decomposition.as_ref();
    Inspection {
        tokens: tokens.clone(),
        logits: (0..p).map(|i| cache.logits_at(i).to_vec()).collect(),
        probs_last: softmax(&logits_last),
        predicted_token: cache.predicted_token(),
        expected: task.expected_next(tokens),
        pattern: patterns[0].clone(),
        patterns,
        z: (0..p)
            .map(|i| z.rows(&[0, i]).chunks(d_head).map(|c| c.to_vec()).collect())
            .collect(),
        head_out_last: d.map(|d| d.head_out_last.to_vec2()),
        head_logits_last: d.map(|d| d.head_logits_last.to_vec2()),
        direct_logits_last: d.map(|d| d.direct_logits_last.clone()),
        bias_logits: d.map(|d| d.bias_logits.clone()),
        mlp_logits_last: d.and_then(|d| d.mlp_logits_last.clone()),
        logits_last,
    }
}

/// Every hook of `cache` as TL's nested arrays, batch dimension dropped; −inf (TL's masked
/// attention scores) and any other non-finite value become `null`.
pub fn cache_json(cache: &ActivationCache) -> Map<String, Value> {
    cache
        .hooks
        .iter()
        .map(|(name, array)| (name.clone(), nested_without_batch(array)))
        .collect()
}

fn nested_without_batch(array: &NdArray) -> Value {
    fn build(data: &[f32], shape: &[usize]) -> Value {
        match shape.split_first() {
            None => data
                .first()
                .and_then(|&x| serde_json::Number::from_f64(x as f64))
                .map_or(Value::Null, Value::Number),
            Some((&n, rest)) => {
                let step: usize = rest.iter().product();
                Value::Array(
                    (0..n)
                        .map(|i| build(&data[i * step..(i + 1) * step], rest))
                        .collect(),
                )
            }
        }
    }
    let shape = array.shape.get(1..).unwrap_or(&[]);
    build(&array.data, shape)
}
