//! What an SAE's training reports: reconstruction, sparsity, dead latents, how often each
//! latent fires, and, where the true features are known, how many the decoder found.

use super::model::{Architecture, SaeWeights};
use super::source::CeLosses;

/// A feature the model represents has a direction at least this long (the issue's `‖W_i‖ >
/// 0.5`); an SAE latent recovers it when their cosine passes [`RECOVERED_ABOVE`].
pub const REPRESENTED_ABOVE: f32 = 0.5;
pub const RECOVERED_ABOVE: f32 = 0.9;

/// One evaluation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SaeMetrics {
    pub step: usize,
    /// `Σ_b ‖x̂_b − x_b‖² / B`.
    pub mse: f64,
    /// `1 − Σ ‖x − x̂‖² / Σ ‖x − mean x‖²`.
    pub explained_variance: f64,
    /// Latents active per input, and their summed activation per input.
    pub l0: f64,
    pub l1: f64,
    /// Latents that fired on none of the last `dead_window` activations.
    pub dead: usize,
    /// Each latent's log10 firing rate over the evaluation's activations (−∞ where it never
    /// fired: as `null` in JSON).
    pub log_density: Vec<Option<f32>>,
    /// Mean over the true features the model represents of their best cosine with a decoder
    /// direction, and how many of them pass [`RECOVERED_ABOVE`] (of how many).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mmcs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub recovered: Option<(usize, usize)>,
    /// The model's task loss clean, zero-ablated at the hook and with the reconstruction
    /// spliced in (transformers): the CE loss recovered.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ce: Option<CeLosses>,
    pub elapsed_s: f64,
}

/// An SAE's reconstruction and sparsity on one batch `x [rows, d_in]`, and its recovery of
/// `truth` where the model has true features: every [`SaeMetrics`] field that one batch
/// determines. How many inputs each latent fired on comes back beside it.
pub fn measure(
    weights: &SaeWeights,
    architecture: Architecture,
    x: &[f32],
    rows: usize,
    truth: Option<&[f32]>,
) -> (SaeMetrics, Vec<u32>) {
    let f = weights.encode(x, rows, architecture);
    let x_hat = weights.decode(&f, rows);
    let d = weights.d_in;
    let mut mean = vec![0f64; d];
    for r in x.chunks_exact(d) {
        mean.iter_mut().zip(r).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);
    let (mut squares, mut spread) = (0f64, 0f64);
    for (j, (&a, &b)) in x.iter().zip(&x_hat).enumerate() {
        squares += ((b - a) as f64).powi(2);
        spread += (a as f64 - mean[j % d]).powi(2);
    }
    let mut fired = vec![0u32; weights.d_sae];
    let (mut active, mut l1) = (0usize, 0f64);
    for row in f.chunks_exact(weights.d_sae) {
        for (count, &v) in fired.iter_mut().zip(row) {
            if v > 0.0 {
                *count += 1;
                active += 1;
                l1 += v as f64;
            }
        }
    }
    let recovery = truth.map(|t| feature_recovery(t, &weights.w_dec, d));
    let metrics = SaeMetrics {
        step: 0,
        mse: squares / rows as f64,
        explained_variance: 1.0 - squares / spread.max(1e-30),
        l0: active as f64 / rows as f64,
        l1: l1 / rows as f64,
        dead: 0,
        log_density: Vec::new(),
        mmcs: recovery.map(|r| r.0),
        recovered: recovery.map(|r| (r.1, r.2)),
        ce: None,
        elapsed_s: 0.0,
    };
    (metrics, fired)
}

/// For each true feature the model represents (rows of `truth [features, d]` longer than
/// [`REPRESENTED_ABOVE`]), the best cosine with any decoder row of `w_dec [d_sae, d]`: their
/// mean (MMCS) and how many pass [`RECOVERED_ABOVE`], of how many.
pub fn feature_recovery(truth: &[f32], w_dec: &[f32], d: usize) -> (f64, usize, usize) {
    let unit = |v: &[f32]| {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        (
            norm,
            v.iter().map(|x| x / norm.max(1e-12)).collect::<Vec<f32>>(),
        )
    };
    let decoders: Vec<Vec<f32>> = w_dec.chunks_exact(d).map(|r| unit(r).1).collect();
    let (mut sum, mut recovered, mut represented) = (0f64, 0, 0);
    for row in truth.chunks_exact(d) {
        let (norm, t) = unit(row);
        if norm <= REPRESENTED_ABOVE {
            continue;
        }
        represented += 1;
        let best = decoders
            .iter()
            .map(|dec| dec.iter().zip(&t).map(|(a, b)| a * b).sum::<f32>())
            .fold(f32::NEG_INFINITY, f32::max);
        sum += best as f64;
        recovered += usize::from(best > RECOVERED_ABOVE);
    }
    (sum / represented.max(1) as f64, recovered, represented)
}

/// Each latent's log10 firing rate from its counts over `inputs` activations.
pub fn log_density(fired: &[u64], inputs: u64) -> Vec<Option<f32>> {
    fired
        .iter()
        .map(|&c| (c > 0).then(|| (c as f64 / inputs.max(1) as f64).log10() as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recovery by its definition on hand-made directions: one true feature matched exactly,
    /// one at 60°, one too short to count.
    #[test]
    fn recovery_counts_the_represented_features_a_latent_matches() {
        let truth = [1.0, 0.0, 0.0, 2.0, 0.1, 0.1];
        let s = 60f32.to_radians();
        let w_dec = [3.0, 0.0, s.sin(), s.cos()];
        let (mmcs, recovered, represented) = feature_recovery(&truth, &w_dec, 2);
        assert_eq!((recovered, represented), (1, 2));
        assert!((mmcs - (1.0 + 0.5) / 2.0).abs() < 1e-6, "{mmcs}");
    }

    #[test]
    fn density_is_the_log_rate_and_none_where_never_fired() {
        assert_eq!(
            log_density(&[10, 0, 1000], 1000),
            [Some(-2.0), None, Some(0.0)]
        );
    }
}
