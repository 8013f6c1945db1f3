//! Progress measures for modular addition, after Nanda et al. (2023), "Progress measures for
//! grokking via mechanistic interpretability", and TransformerLens's grokking demo.
//!
//! - **Fourier norms of the embedding**: `W_E` restricted to the number tokens `[p, d_model]`,
//!   written in the Fourier basis over `0..p` (a constant, then `cos(2πkx/p)`, `sin(2πkx/p)` for
//!   `k = 1..=(p−1)/2`, each normalised); the norm of frequency `k` is that of its two rows.
//! - **Key frequencies**: the frequencies `k` whose directions `cos(2πk(a+b)/p)` and
//!   `sin(2πk(a+b)/p)` over all p² pairs carry the most of the MLP's activations at the scored
//!   position (the demo fixes them from the trained model; here they are measured at every
//!   evaluation, the [`KEY_FREQUENCIES`] largest).
//! - **Restricted loss**: the loss on all pairs when the neuron activations keep only their mean
//!   and their key-frequency components, mapped to the logits through `W_out · W_U`, with the
//!   logits' per-class mean restored (the demo's bias correction).
//! - **Excluded loss**: the loss on the training pairs when the key-frequency components are
//!   removed from the neuron activations and everything else of the logits is kept.

use candle_core::{D, DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::model::Transformer;
use crate::task::PairSplit;

/// How many key frequencies the measures keep (Nanda et al. found five for p = 113).
pub const KEY_FREQUENCIES: usize = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressMeasures {
    /// Norm of `W_E`'s number rows in frequency `k`, for `k = 1..=(p−1)/2` (index `k − 1`).
    pub fourier_norms: Vec<f64>,
    /// The key frequencies, largest first.
    pub key_frequencies: Vec<usize>,
    pub restricted_loss: f64,
    pub excluded_loss: f64,
}

/// `[2K, n]`: for each frequency k = 1..=K, the normalised `cos` and `sin` of `2πk·x/p` over `xs`.
fn trig_rows(p: usize, xs: impl Iterator<Item = usize> + Clone) -> Vec<f32> {
    let n = xs.clone().count();
    let k_max = (p - 1) / 2;
    let mut rows = Vec::with_capacity(2 * k_max * n);
    for k in 1..=k_max {
        for trig in [f64::cos, f64::sin] {
            let row: Vec<f64> = xs
                .clone()
                .map(|x| trig(2.0 * std::f64::consts::PI * (k * x % p) as f64 / p as f64))
                .collect();
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            rows.extend(row.iter().map(|v| (v / norm) as f32));
        }
    }
    rows
}

/// The progress measures of a modular-addition model (one layer with an MLP), or `None` for a
/// model without one.
pub fn progress_measures(
    model: &Transformer,
    split: &PairSplit,
) -> candle_core::Result<Option<ProgressMeasures>> {
    let cfg = model.config();
    if !cfg.has_mlp() || cfg.n_layers != 1 {
        return Ok(None);
    }
    let (p, dev) = (split.p, model.device());
    let k_max = (p - 1) / 2;
    if k_max == 0 {
        return Ok(None);
    }
    // Fourier norms of the number tokens' embeddings.
    let w_e = model
        .param("embed.W_E")
        .narrow(0, 0, p)?
        .to_dtype(DType::F32)?;
    let basis = Tensor::from_vec(trig_rows(p, 0..p), (2 * k_max, p), dev)?;
    let coeffs = basis.matmul(&w_e)?.sqr()?.sum(D::Minus1)?; // [2K]
    let coeffs = coeffs.to_vec1::<f32>()?;
    let fourier_norms: Vec<f64> = coeffs
        .chunks_exact(2)
        .map(|c| ((c[0] + c[1]) as f64).sqrt())
        .collect();
    // Neuron activations and logits at the scored position, for every pair in order.
    let n = p * p;
    let (mut post, mut logits) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let rows = cfg.forward_chunk_rows(3);
    let ids: Vec<u32> = (0..n as u32).collect();
    for part in ids.chunks(rows) {
        let tokens: Vec<u32> = part.iter().flat_map(|&i| split.tokens(i)).collect();
        let tokens = Tensor::from_vec(tokens, (part.len(), 3), dev)?;
        let (out, hooks) = model.forward_hooked(&tokens, true, None)?;
        let Some((_, acts)) = hooks
            .iter()
            .find(|(name, _)| name == "blocks.0.mlp.hook_post")
        else {
            candle_core::bail!("the forward pass did not capture the MLP's activations");
        };
        post.push(acts.narrow(1, 2, 1)?.squeeze(1)?);
        logits.push(out.narrow(1, 2, 1)?.squeeze(1)?);
    }
    let post = Tensor::cat(&post, 0)?; // [n, d_mlp]
    let logits = Tensor::cat(&logits, 0)?; // [n, p]
    // Each frequency's share of the activations, along cos/sin of 2πk(a+b)/p.
    let sums = (0..n).map(|i| (i / p + i % p) % p);
    let apb = Tensor::from_vec(trig_rows(p, sums), (2 * k_max, n), dev)?;
    let components = apb.matmul(&post)?; // [2K, d_mlp]
    let energy = components.sqr()?.sum(D::Minus1)?.to_vec1::<f32>()?;
    let mut by_energy: Vec<(usize, f32)> = energy
        .chunks_exact(2)
        .enumerate()
        .map(|(k, e)| (k + 1, e[0] + e[1]))
        .collect();
    by_energy.sort_by(|a, b| b.1.total_cmp(&a.1));
    let key_frequencies: Vec<usize> = by_energy
        .iter()
        .take(KEY_FREQUENCIES)
        .map(|&(k, _)| k)
        .collect();
    let key_rows: Vec<u32> = key_frequencies
        .iter()
        .flat_map(|&k| [2 * (k - 1) as u32, 2 * (k - 1) as u32 + 1])
        .collect();
    let key_rows = Tensor::from_vec(key_rows.clone(), key_rows.len(), dev)?;
    let key_basis = apb.index_select(&key_rows, 0)?; // [2·keys, n]
    let key_part = key_basis
        .t()?
        .matmul(&components.index_select(&key_rows, 0)?)?; // [n, d_mlp]
    let to_logits = model
        .param("blocks.0.mlp.W_out")
        .matmul(model.param("unembed.W_U"))?; // [d_mlp, p]
    let labels: Vec<u32> = (0..n as u32).map(|i| split.label(i)).collect();
    let labels = Tensor::from_vec(labels, n, dev)?;
    // Restricted: the mean activation plus the key components, bias-corrected, on all pairs.
    let restricted = post
        .mean_keepdim(0)?
        .broadcast_add(&key_part)?
        .matmul(&to_logits)?;
    let correction = (logits.mean_keepdim(0)? - restricted.mean_keepdim(0)?)?;
    let restricted = restricted.broadcast_add(&correction)?;
    let restricted_loss = candle_nn::loss::cross_entropy(&restricted, &labels)?;
    // Excluded: the logits without the key components' contribution, on the training pairs.
    let excluded = (&logits - key_part.matmul(&to_logits)?)?;
    let train = Tensor::from_slice(&split.train, split.train.len(), dev)?;
    let excluded_loss = candle_nn::loss::cross_entropy(
        &excluded.index_select(&train, 0)?,
        &labels.index_select(&train, 0)?,
    )?;
    Ok(Some(ProgressMeasures {
        fourier_norms,
        key_frequencies,
        restricted_loss: restricted_loss.to_scalar::<f32>()? as f64,
        excluded_loss: excluded_loss.to_scalar::<f32>()? as f64,
    }))
}
