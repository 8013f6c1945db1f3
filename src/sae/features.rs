//! Each latent of an SAE as a feature dashboard shows it: how often it fires, how strongly, on
//! which inputs most, which true feature its decoder direction is (where known), and its
//! direct effect on the logits (residual-stream hooks).

use super::fourier::Frequency;
use super::model::{Architecture, SaeWeights};
use super::source::{Activations, Origin};

/// Bins of each latent's activation histogram, from 0 to its largest activation.
pub const HISTOGRAM_BINS: usize = 24;
/// Tokens kept at each end of a latent's logit effect.
pub const LOGIT_TOKENS: usize = 10;

/// One latent.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Feature {
    pub index: usize,
    /// The fraction of inputs it fired on.
    pub density: f64,
    pub max_activation: f32,
    pub mean_activation: f32,
    /// Counts of its nonzero activations in [`HISTOGRAM_BINS`] equal bins of
    /// `[0, max_activation]`.
    pub histogram: Vec<u32>,
    /// The true feature whose direction is nearest the decoder's, and their cosine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_feature: Option<(usize, f32)>,
    /// The inputs it fires on most, strongest first.
    pub top: Vec<Example>,
    /// Its decoder direction through `W_U`: the tokens it promotes and suppresses most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logit_effect: Option<LogitEffect>,
    /// Its dominant Fourier frequency over every input pair (modular addition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fourier: Option<Frequency>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Example {
    pub activation: f32,
    #[serde(flatten)]
    pub origin: Origin,
}

/// `(token, W_dec,i · W_U[:, token])`, largest first and smallest first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogitEffect {
    pub top: Vec<(u32, f32)>,
    pub bottom: Vec<(u32, f32)>,
}

/// Every latent of `weights` over `batches` fresh batches of `batch` activations from `source`
/// (streams `seed`, `seed + 1`, …), with `top` examples each.
pub fn summarise(
    weights: &SaeWeights,
    architecture: Architecture,
    source: &mut dyn Activations,
    batches: usize,
    batch: usize,
    top: usize,
    seed: u64,
) -> Result<Vec<Feature>, String> {
    let s = weights.d_sae;
    if source.d_in() != weights.d_in {
        return Err(format!(
            "the SAE reads {} values (d_in) but {} has {}",
            weights.d_in,
            source.hook_name(),
            source.d_in()
        ));
    }
    let mut activations: Vec<Vec<f32>> = vec![Vec::new(); s];
    let mut best: Vec<Vec<Example>> = vec![Vec::new(); s];
    let mut x = Vec::new();
    for k in 0..batches {
        source.fill(&mut x, batch, seed.wrapping_add(k as u64))?;
        let f = weights.encode(&x, batch, architecture);
        for (row, acts) in f.chunks_exact(s).enumerate() {
            for (i, &a) in acts.iter().enumerate() {
                if a <= 0.0 {
                    continue;
                }
                activations[i].push(a);
                let kept = &mut best[i];
                if kept.len() < top || a > kept[kept.len() - 1].activation {
                    let Some(origin) = source.origin(row) else {
                        continue;
                    };
                    let at = kept.partition_point(|t| t.activation >= a);
                    kept.insert(
                        at,
                        Example {
                            activation: a,
                            origin,
                        },
                    );
                    kept.truncate(top);
                }
            }
        }
    }
    let truth = source.true_features();
    let unembed = source.unembed();
    let frequencies = source.latent_frequencies(weights, architecture);
    let d = weights.d_in;
    let total = (batches * batch).max(1) as f64;
    Ok((0..s)
        .map(|i| {
            let acts = &activations[i];
            let max = acts.iter().copied().fold(0.0f32, f32::max);
            let decoder = &weights.w_dec[i * d..(i + 1) * d];
            Feature {
                index: i,
                density: acts.len() as f64 / total,
                max_activation: max,
                mean_activation: if acts.is_empty() {
                    0.0
                } else {
                    acts.iter().sum::<f32>() / acts.len() as f32
                },
                histogram: histogram(acts, max),
                true_feature: truth.as_ref().map(|t| nearest(t, decoder)),
                top: std::mem::take(&mut best[i]),
                logit_effect: unembed.as_ref().map(|w_u| logit_effect(decoder, w_u)),
                fourier: frequencies.as_ref().and_then(|f| f[i]),
            }
        })
        .collect())
}

fn histogram(acts: &[f32], max: f32) -> Vec<u32> {
    let mut bins = vec![0u32; HISTOGRAM_BINS];
    if max <= 0.0 {
        return bins;
    }
    for &a in acts {
        let b = ((a / max) * HISTOGRAM_BINS as f32) as usize;
        bins[b.min(HISTOGRAM_BINS - 1)] += 1;
    }
    bins
}

/// `decoder [d] · w_u [d, vocab]`, its largest and smallest entries.
pub fn logit_effect(decoder: &[f32], w_u: &[f32]) -> LogitEffect {
    let d = decoder.len();
    let vocab = w_u.len() / d.max(1);
    let mut effect = vec![0f32; vocab];
    for (row, &v) in w_u.chunks_exact(vocab).zip(decoder) {
        effect.iter_mut().zip(row).for_each(|(e, &w)| *e += v * w);
    }
    let mut order: Vec<u32> = (0..vocab as u32).collect();
    order.sort_by(|&a, &b| effect[b as usize].total_cmp(&effect[a as usize]));
    let pick = |ids: &mut dyn Iterator<Item = &u32>| {
        ids.take(LOGIT_TOKENS)
            .map(|&t| (t, effect[t as usize]))
            .collect()
    };
    LogitEffect {
        top: pick(&mut order.iter()),
        bottom: pick(&mut order.iter().rev()),
    }
}

/// The row of `truth [features, d]` nearest in direction to `v`, and their cosine.
pub fn nearest(truth: &[f32], v: &[f32]) -> (usize, f32) {
    let norm = |x: &[f32]| x.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
    let nv = norm(v);
    truth
        .chunks_exact(v.len())
        .map(|t| t.iter().zip(v).map(|(a, b)| a * b).sum::<f32>() / (norm(t) * nv))
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, c)| {
            if c > best.1 { (i, c) } else { best }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logit_effect_is_the_decoder_row_through_the_unembedding() {
        // d 2, vocab 3: effect = [1·1 + 2·4, 1·2 + 2·5, 1·3 + 2·(−6)] = [9, 12, −9].
        let w_u = [1.0, 2.0, 3.0, 4.0, 5.0, -6.0];
        let e = logit_effect(&[1.0, 2.0], &w_u);
        assert_eq!(e.top, vec![(1, 12.0), (0, 9.0), (2, -9.0)]);
        assert_eq!(e.bottom, vec![(2, -9.0), (0, 9.0), (1, 12.0)]);
    }

    #[test]
    fn the_histogram_puts_the_largest_activation_in_the_last_bin() {
        let h = histogram(&[0.1, 1.0, 0.5], 1.0);
        assert_eq!(h.iter().sum::<u32>(), 3);
        assert_eq!(h[HISTOGRAM_BINS - 1], 1);
        assert_eq!(h[HISTOGRAM_BINS / 2], 1);
        assert_eq!(h[2], 1);
    }
}
