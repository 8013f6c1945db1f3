//! Which Fourier frequency each latent of an SAE on a modular-addition model reads: the
//! grokking model computes with a few key frequencies (Nanda et al. 2023), and each MLP neuron
//! belongs to one of them. A latent's activation over every pair (a, b) is taken through the 2D
//! Fourier basis of Z_p × Z_p; the share of its variance in the components whose frequencies in
//! a and in b are 0 or k (not both 0) is its share in frequency k.

use super::model::{Architecture, SaeWeights};
use crate::model::kernels::cpu::matmul;

/// A latent's dominant frequency and the share of its variance there.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Frequency {
    pub k: usize,
    pub share: f64,
}

/// The orthonormal Fourier basis of Z_p, `[p, p]`, rows in the order constant, cos 1, sin 1,
/// cos 2, sin 2, …; `frequency_of(row)` gives each row's frequency. (For odd p this is the whole
/// basis.)
fn basis(p: usize) -> Vec<f32> {
    let mut rows = vec![(1.0 / (p as f64).sqrt()) as f32; p];
    let scale = (2.0 / p as f64).sqrt();
    for k in 1..=(p - 1) / 2 {
        for trig in [f64::cos, f64::sin] {
            rows.extend((0..p).map(|x| {
                (scale * trig(2.0 * std::f64::consts::PI * (k * x) as f64 / p as f64)) as f32
            }));
        }
    }
    rows.truncate(p * p);
    rows.resize(p * p, 0.0);
    rows
}

fn frequency_of(row: usize) -> usize {
    row.div_ceil(2)
}

/// For latents `acts [p·p, s]` over every pair (row a·p + b), each latent's dominant frequency
/// (`None` for a latent that never varies).
pub fn latent_frequencies(acts: &[f32], p: usize, s: usize) -> Vec<Option<Frequency>> {
    assert_eq!(acts.len(), p * p * s);
    let f = basis(p);
    // Along a: T[ka, b, latent] = Σ_a F[ka, a] · A[a, b, latent].
    let mut t = vec![0.0f32; p * p * s];
    matmul(&mut t, (p, p * s, p), (&f, p, 1), (acts, p * s, 1), false);
    // Along b, for each ka: G[ka, kb, latent] = Σ_b F[kb, b] · T[ka, b, latent].
    let mut g = vec![0.0f32; p * p * s];
    for (t_ka, g_ka) in t.chunks_exact(p * s).zip(g.chunks_exact_mut(p * s)) {
        matmul(g_ka, (p, s, p), (&f, p, 1), (t_ka, s, 1), false);
    }
    let k_max = (p - 1) / 2;
    (0..s)
        .map(|latent| {
            let mut by_k = vec![0f64; k_max + 1];
            let mut total = 0f64;
            for ka in 0..p {
                for kb in 0..p {
                    if ka == 0 && kb == 0 {
                        continue;
                    }
                    let power = (g[(ka * p + kb) * s + latent] as f64).powi(2);
                    total += power;
                    let (fa, fb) = (frequency_of(ka), frequency_of(kb));
                    if fa == 0 || fb == 0 || fa == fb {
                        by_k[fa.max(fb)] += power;
                    }
                }
            }
            if total <= 1e-12 {
                return None;
            }
            let (k, power) = by_k
                .iter()
                .enumerate()
                .skip(1)
                .fold(
                    (0, 0.0),
                    |best, (k, &v)| if v > best.1 { (k, v) } else { best },
                );
            Some(Frequency {
                k,
                share: power / total,
            })
        })
        .collect()
}

/// The SAE's latents on every pair's activations `x [p·p, d_in]` (row a·p + b), and each
/// latent's dominant frequency.
pub fn sae_frequencies(
    weights: &SaeWeights,
    architecture: Architecture,
    x: &[f32],
    p: usize,
) -> Vec<Option<Frequency>> {
    let acts = weights.encode(x, p * p, architecture);
    latent_frequencies(&acts, p, weights.d_sae)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latent_made_of_one_frequency_is_found_there() {
        let (p, s) = (13, 3);
        let tau = 2.0 * std::f64::consts::PI / p as f64;
        let mut acts = vec![0f32; p * p * s];
        for a in 0..p {
            for b in 0..p {
                let row = &mut acts[(a * p + b) * s..(a * p + b + 1) * s];
                // cos(3(a + b)) = cos 3a cos 3b − sin 3a sin 3b: frequency 3 alone.
                row[0] = (2.0 + (tau * 3.0 * (a + b) as f64).cos()) as f32;
                // Frequency 5 in a, plus a little frequency 2 in b.
                row[1] = ((tau * 5.0 * a as f64).sin() + 0.1 * (tau * 2.0 * b as f64).cos()) as f32;
                row[2] = 1.5; // constant
            }
        }
        let f = latent_frequencies(&acts, p, s);
        let first = f[0].unwrap();
        assert_eq!(first.k, 3);
        assert!((first.share - 1.0).abs() < 1e-5, "{first:?}");
        let second = f[1].unwrap();
        assert_eq!(second.k, 5);
        assert!((second.share - 1.0 / 1.01).abs() < 1e-4, "{second:?}");
        assert_eq!(f[2], None);
    }
}
