//! The one softmax and cross-entropy of the host code (the fused LM loss, the fixed-query
//! shortcut, the causal softmax op, the probabilities the analyses show and the induction
//! evaluation's losses), written once so that they all round alike: `e = exp(x − max)`, summed in index order, times `scale / Σe` (a
//! reciprocal, as PyTorch's CPU softmax does, not a division per element). The fused attention
//! core keeps its own vectorised copy of this arithmetic, with an `exp` within 2 ulp of libm's.

/// The row's max and `Σ exp(x − max)` in index order: the log-sum-exp is `max + ln(sum)`.
pub fn max_and_exp_sum(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum = row.iter().map(|&v| (v - max).exp()).sum();
    (max, sum)
}

/// Replaces `row` by its softmax times `scale` (a loss's `1/n` goes in here, so that a gradient
/// row costs one pass); returns the row's max and exp sum, as [`max_and_exp_sum`].
pub fn softmax_in_place(row: &mut [f32], scale: f32) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let r = scale / sum;
    for v in row.iter_mut() {
        *v *= r;
    }
    (max, sum)
}

/// The cross-entropy of a row whose [`max_and_exp_sum`] is `(max, sum)` for the target's logit
/// `target`: `max + ln(sum) − target`, in f64.
pub fn cross_entropy(max: f32, sum: f32, target: f32) -> f64 {
    (max as f64 + (sum as f64).ln()) - target as f64
}

/// The cross-entropy of a logit row for the class `target`, summed in f64 throughout: what an
/// evaluation that adds up many rows' losses uses.
pub fn cross_entropy_f64(row: &[f32], target: usize) -> f64 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    max + sum.ln() - row[target] as f64
}

/// The softmax probabilities of a logit row.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let mut probs = logits.to_vec();
    softmax_in_place(&mut probs, 1.0);
    probs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_and_cross_entropy_match_their_definitions() {
        let row = [1.0f32, -2.0, 0.5, 3.0];
        let probs = softmax(&row);
        let exact: Vec<f64> = {
            let e: Vec<f64> = row.iter().map(|&v| (v as f64).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        };
        for (p, e) in probs.iter().zip(&exact) {
            assert!((*p as f64 - e).abs() < 1e-7, "{p} vs {e}");
        }
        let (max, sum) = max_and_exp_sum(&row);
        assert_eq!(max, 3.0);
        let ce = cross_entropy(max, sum, row[2]);
        assert!((ce + exact[2].ln()).abs() < 1e-6, "{ce}");
        assert!((cross_entropy_f64(&row, 2) + exact[2].ln()).abs() < 1e-12);
        let mut scaled = row;
        assert_eq!(softmax_in_place(&mut scaled, 0.25), (max, sum));
        for (s, p) in scaled.iter().zip(&probs) {
            assert!((s - p * 0.25).abs() < 1e-8);
        }
    }
}
