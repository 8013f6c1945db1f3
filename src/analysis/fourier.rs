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

use crate::matmul::Matmul;
use crate::model::{Capture, Transformer};
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

/// `cos` (`which` 0) or `sin` (1) of `2πk·x/p`.
fn trig(k: usize, x: usize, p: usize, which: usize) -> f64 {
    let angle = 2.0 * std::f64::consts::PI * (k * x % p) as f64 / p as f64;
    if which == 0 { angle.cos() } else { angle.sin() }
}

/// `[2K, xs.len()]`: for each frequency k = 1..=K = (p−1)/2, `cos` and `sin` of `2πk·x/p` over
/// `xs`, each divided by its norm over a domain in which every residue mod p appears `times`
/// times (so a chunk of a longer row gets the whole row's normalisation).
fn trig_rows(p: usize, xs: &[usize], times: usize) -> Vec<f32> {
    let k_max = (p - 1) / 2;
    let mut rows = Vec::with_capacity(2 * k_max * xs.len());
    for k in 1..=k_max {
        for which in 0..2 {
            let norm = trig_norm(p, k, which, times);
            rows.extend(xs.iter().map(|&x| (trig(k, x, p, which) / norm) as f32));
        }
    }
    rows
}

/// The norm of the `cos`/`sin` row of frequency `k` over a domain in which every residue mod p
/// occurs `times` times.
fn trig_norm(p: usize, k: usize, which: usize, times: usize) -> f64 {
    (times as f64 * (0..p).map(|x| trig(k, x, p, which).powi(2)).sum::<f64>())
        .sqrt()
        .max(1e-12)
}

/// The normalised `cos`/`sin` row of frequency `k` over all p² pairs, given per residue of
/// `a + b` (`[p]`; pair (a, b) reads entry (a + b) mod p).
fn residue_row(p: usize, k: usize, which: usize) -> Vec<f32> {
    let norm = trig_norm(p, k, which, p);
    (0..p)
        .map(|x| (trig(k, x, p, which) / norm) as f32)
        .collect()
}

/// The MLP's activations and the logits at the scored position for the pairs `ids`.
fn last_position(
    model: &Transformer,
    split: &PairSplit,
    ids: &[u32],
) -> candle_core::Result<(Tensor, Tensor)> {
    if model.plan().fixed_query().is_some() {
        return model.fixed_query_activations(&split.inputs(ids, false));
    }
    let tokens = Tensor::from_vec(split.inputs(ids, true), (ids.len(), 3), model.device())?;
    let (out, hooks) = model.forward_hooked(&tokens, Capture::Only(&["mlp.hook_post"]), None)?;
    let Some((_, acts)) = hooks
        .iter()
        .find(|(name, _)| name == "blocks.0.mlp.hook_post")
    else {
        candle_core::bail!("the forward pass did not capture the MLP's activations");
    };
    Ok((
        acts.narrow(1, 2, 1)?.squeeze(1)?.contiguous()?,
        out.narrow(1, 2, 1)?.squeeze(1)?.contiguous()?,
    ))
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
    let numbers: Vec<usize> = (0..p).collect();
    let basis = Tensor::from_vec(trig_rows(p, &numbers, 1), (2 * k_max, p), dev)?;
    let coeffs = basis.mm(&w_e)?.sqr()?.sum(D::Minus1)?; // [2K]
    let coeffs = coeffs.to_vec1::<f32>()?;
    let fourier_norms: Vec<f64> = coeffs
        .chunks_exact(2)
        .map(|c| ((c[0] + c[1]) as f64).sqrt())
        .collect();
    // Over every pair in order, chunk by chunk: the logits at the scored position, and the
    // activations' mean and components along cos/sin of 2πk(a+b)/p (each residue of a + b
    // occurs p times). Only these sums are kept, not every pair's activations.
    let n = p * p;
    let sum_of = |i: usize| (i / p + i % p) % p;
    let mut logits = Vec::new();
    let mut components: Option<Tensor> = None; // [2K, d_mlp]
    let mut post_sum: Option<Tensor> = None; // [d_mlp]
    let ids: Vec<u32> = (0..n as u32).collect();
    for part in ids.chunks(crate::objective::pairs_per_chunk(model)) {
        let (acts, out) = last_position(model, split, part)?;
        let sums: Vec<usize> = part.iter().map(|&i| sum_of(i as usize)).collect();
        let rows = Tensor::from_vec(trig_rows(p, &sums, p), (2 * k_max, part.len()), dev)?;
        let c = rows.mm(&acts)?;
        let total = acts.sum(0)?;
        components = Some(match components {
            Some(acc) => (acc + c)?,
            None => c,
        });
        post_sum = Some(match post_sum {
            Some(acc) => (acc + total)?,
            None => total,
        });
        logits.push(out);
    }
    let (Some(components), Some(post_sum)) = (components, post_sum) else {
        return Ok(None);
    };
    let logits = Tensor::cat(&logits, 0)?; // [n, p]
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
    // The key components' contribution to the logits, without any [n, d_mlp] matrix:
    // basisᵀ [n, 2·keys] · (components [2·keys, d_mlp] · W_out W_U [d_mlp, p]).
    let key_rows: Vec<u32> = key_frequencies
        .iter()
        .flat_map(|&k| [2 * (k - 1) as u32, 2 * (k - 1) as u32 + 1])
        .collect();
    let n_keys = key_rows.len();
    let key_rows = Tensor::from_vec(key_rows, n_keys, dev)?;
    let to_logits = model
        .param("blocks.0.mlp.W_out")
        .mm(model.param("unembed.W_U"))?; // [d_mlp, p]
    let key_to_logits = components.index_select(&key_rows, 0)?.mm(&to_logits)?;
    let all_sums: Vec<usize> = (0..n).map(sum_of).collect();
    let key_basis: Vec<f32> = key_frequencies
        .iter()
        .flat_map(|&k| (0..2).flat_map(move |which| residue_row(p, k, which)))
        .collect();
    let key_basis = Tensor::from_vec(key_basis, (key_rows.dim(0)?, p), dev)?; // per residue
    let residues = Tensor::from_vec(
        all_sums.iter().map(|&s| s as u32).collect::<Vec<_>>(),
        n,
        dev,
    )?;
    // [n, 2·keys]: each pair's basis values, looked up by its residue.
    let per_pair = key_basis.t()?.contiguous()?.index_select(&residues, 0)?;
    let key_logits = per_pair.mm(&key_to_logits)?; // [n, p]
    let labels: Vec<u32> = (0..n as u32).map(|i| split.label(i)).collect();
    let labels = Tensor::from_vec(labels, n, dev)?;
    // Restricted: the mean activation plus the key components, bias-corrected, on all pairs.
    let mean_logits = (post_sum / n as f64)?.unsqueeze(0)?.mm(&to_logits)?; // [1, p]
    let restricted = key_logits.broadcast_add(&mean_logits)?;
    let correction = (logits.mean_keepdim(0)? - restricted.mean_keepdim(0)?)?;
    let restricted = restricted.broadcast_add(&correction)?;
    let restricted_loss = candle_nn::loss::cross_entropy(&restricted, &labels)?;
    // Excluded: the logits without the key components' contribution, on the training pairs.
    let excluded = (&logits - &key_logits)?;
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
