//! Where the logits come from: direct logit attribution over TransformerLens's residual
//! decomposition, and the logit lens over its accumulated residual stream.

use nalgebra::DVector;
use serde::Serialize;

use super::linalg::{HostWeights, vector};
use crate::config::LN_EPS;
use crate::model::{ActivationCache, ModelConfig, Normalization, Positions, Weights, head_label};

/// The logits at one position, split by what wrote them, and the logit lens there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribution {
    pub position: usize,
    /// TL's `get_full_resid_decomposition(expand_neurons=False, return_labels=True)` labels:
    /// `L{l}H{h}` for every head, `{l}_mlp_out` for every MLP, `embed`, `pos_embed` (where
    /// positions join the residual stream) and `bias` (every `b_O`).
    pub labels: Vec<String>,
    /// `[component][d_vocab_out]`: each component through the final LayerNorm with the input's
    /// own scale (TL's `apply_ln_to_stack`: centred, divided by `ln_final.hook_scale`, times
    /// `ln_final.w`) and `W_U`.
    pub dla: Vec<Vec<f32>>,
    /// `[d_vocab_out]`: `ln_final.b @ W_U + b_U`, or `b_U`. The rows plus this are the logits.
    pub dla_constant: Vec<f32>,
    /// The model's logits at the position.
    pub logits: Vec<f32>,
    /// TL's `accumulated_resid` labels: `{l}_pre` for each layer, then `final_post`.
    pub lens_labels: Vec<String>,
    /// `[n_layers + 1][d_vocab_out]`: each accumulated residual stream through `ln_final`
    /// with its own statistics and unembedded (TL's `apply_ln_to_stack(recompute_ln=True)`).
    pub logit_lens: Vec<Vec<f32>>,
}

impl Attribution {
    /// The largest gap between the logits and the sum of the rows and the constant.
    pub fn sum_error(&self) -> f32 {
        (0..self.logits.len())
            .map(|v| {
                let sum: f64 =
                    self.dla.iter().map(|r| r[v] as f64).sum::<f64>() + self.dla_constant[v] as f64;
                (sum - self.logits[v] as f64).abs() as f32
            })
            .fold(0.0, f32::max)
    }

    /// The row of `label`.
    pub fn row(&self, label: &str) -> Option<&[f32]> {
        let i = self.labels.iter().position(|l| l == label)?;
        Some(&self.dla[i])
    }
}

/// The attribution at `position` of a cache from `run_with_cache` (every hook captured).
pub fn attribution(
    cfg: &ModelConfig,
    weights: &Weights,
    cache: &ActivationCache,
    position: usize,
) -> Result<Attribution, String> {
    let p = cache.tokens.len();
    if position >= p {
        return Err(format!(
            "position {position} is past the sequence's last position {}",
            p - 1
        ));
    }
    let hook = |name: &str, index: &[usize]| -> Result<DVector<f64>, String> {
        let array = cache
            .get(name)
            .ok_or_else(|| format!("the cache has no {name}"))?;
        Ok(vector(array.rows(index)))
    };
    let host = HostWeights::new(cfg, weights);
    let (w_u, b_u) = (host.w_u(), host.b_u());

    let mut labels = Vec::new();
    let mut components = Vec::new();
    for l in 0..cfg.n_layers {
        for h in 0..cfg.n_heads {
            labels.push(head_label(l, h));
            components.push(hook(
                &format!("blocks.{l}.attn.hook_result"),
                &[0, position, h],
            )?);
        }
    }
    if cfg.has_mlp() {
        for l in 0..cfg.n_layers {
            labels.push(format!("{l}_mlp_out"));
            components.push(hook(&format!("blocks.{l}.hook_mlp_out"), &[0, position])?);
        }
    }
    labels.push("embed".into());
    components.push(hook("hook_embed", &[0, position])?);
    // Shortformer positions feed queries and keys only; without positions toylens's model is
    // TL's with a zero W_pos, whose (zero) row TL lists.
    if cfg.positional_embedding_type != Positions::Shortformer {
        labels.push("pos_embed".into());
        components.push(hook("hook_pos_embed", &[0, position])?);
    }
    labels.push("bias".into());
    let mut bias = DVector::zeros(cfg.d_model);
    for l in 0..cfg.n_layers {
        bias += host
            .vector(&format!("blocks.{l}.attn.b_O"))
            .ok_or("the model has no b_O")?;
    }
    components.push(bias);

    let ln_w = host.vector("ln_final.w");
    let ln_b = host.vector("ln_final.b");
    let scale = match cfg.normalization_type {
        Some(_) => Some(hook("ln_final.hook_scale", &[0, position])?[0]),
        None => None,
    };
    let dla = components
        .iter()
        .map(|x| {
            let mut x = x.clone();
            if let Some(scale) = scale {
                x.add_scalar_mut(-x.mean());
                x /= scale;
                if let Some(w) = &ln_w {
                    x.component_mul_assign(w);
                }
            }
            to_f32(&(w_u.transpose() * x))
        })
        .collect();
    let constant = match &ln_b {
        Some(b) => w_u.transpose() * b + &b_u,
        None => b_u.clone(),
    };

    let mut lens_labels = Vec::new();
    let mut streams = Vec::new();
    for l in 0..cfg.n_layers {
        lens_labels.push(format!("{l}_pre"));
        streams.push(hook(&format!("blocks.{l}.hook_resid_pre"), &[0, position])?);
    }
    lens_labels.push("final_post".into());
    streams.push(hook(
        &format!("blocks.{}.hook_resid_post", cfg.n_layers - 1),
        &[0, position],
    )?);
    let logit_lens = streams
        .iter()
        .map(|x| {
            let normed = final_norm(cfg.normalization_type, x, ln_w.as_ref(), ln_b.as_ref());
            to_f32(&(w_u.transpose() * normed + &b_u))
        })
        .collect();

    Ok(Attribution {
        position,
        labels,
        dla,
        dla_constant: to_f32(&constant),
        logits: cache.logits_at(position).to_vec(),
        lens_labels,
        logit_lens,
    })
}

/// `ln_final` applied to one residual vector with its own statistics.
fn final_norm(
    norm: Option<Normalization>,
    x: &DVector<f64>,
    w: Option<&DVector<f64>>,
    b: Option<&DVector<f64>>,
) -> DVector<f64> {
    if norm.is_none() {
        return x.clone();
    }
    let mut c = x.add_scalar(-x.mean());
    let scale = (c.norm_squared() / c.len() as f64 + LN_EPS).sqrt();
    c /= scale;
    if let (Some(w), Some(b)) = (w, b) {
        c.component_mul_assign(w);
        c += b;
    }
    c
}

fn to_f32(v: &DVector<f64>) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}
