//! What the paper measures of each instance's trained W: the feature norms ‖W_f‖, each
//! feature's superposition Σ_{j≠f} (Ŵ_f · W_j)², its dimensionality D_f = ‖W_f‖² / Σ_j (Ŵ_f ·
//! W_j)², and the instance's dimensions per feature D* = m / ‖W‖_F².

use serde::{Deserialize, Serialize};

/// One instance's geometry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    /// m / ‖W‖_F².
    pub dims_per_feature: f64,
    /// ‖W_f‖ per feature.
    pub norms: Vec<f64>,
    /// Σ_{j≠f} (Ŵ_f · W_j)² per feature.
    pub superposition: Vec<f64>,
    /// ‖W_f‖² / Σ_j (Ŵ_f · W_j)² per feature (0 for a feature with no norm).
    pub dimensionality: Vec<f64>,
}

/// The geometry of `w` `[n, m]` (one instance), in float64. Each pair of features once (their
/// dot product serves both), each dot product in four partial sums: the app computes this for
/// every instance of a snapshot, some on its UI thread.
pub fn geometry(w: &[f32], n: usize, m: usize) -> Geometry {
    let row = |f: usize| &w[f * m..(f + 1) * m];
    let dot = |a: &[f32], b: &[f32]| {
        let mut lanes = [0f64; 4];
        let mut chunks = a.chunks_exact(4).zip(b.chunks_exact(4));
        for (x, y) in &mut chunks {
            for k in 0..4 {
                lanes[k] += x[k] as f64 * y[k] as f64;
            }
        }
        let tail: f64 = a[m - m % 4..]
            .iter()
            .zip(&b[m - m % 4..])
            .map(|(&x, &y)| x as f64 * y as f64)
            .sum();
        (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail
    };
    let squares: Vec<f64> = (0..n).map(|f| dot(row(f), row(f))).collect();
    // others[f] = Σ_{j≠f} (W_f·W_j)², divided by ‖W_f‖² at the end.
    let mut others = vec![0.0; n];
    for f in 0..n {
        for j in 0..f {
            let c = dot(row(f), row(j));
            others[f] += c * c;
            others[j] += c * c;
        }
    }
    let mut superposition = vec![0.0; n];
    let mut dimensionality = vec![0.0; n];
    for f in 0..n {
        if squares[f] < 1e-24 {
            continue;
        }
        superposition[f] = others[f] / squares[f];
        dimensionality[f] = squares[f] / (squares[f] + superposition[f]);
    }
    Geometry {
        dims_per_feature: dims_per_feature(w, m),
        norms: squares.iter().map(|s| s.sqrt()).collect(),
        superposition,
        dimensionality,
    }
}

/// WᵀW of one instance (the paper's features × features matrix; with toylens's `w` `[n, m]`
/// it is W Wᵀ): `[n, n]`, entry `(a, b)` the dot product of features a and b.
pub fn gram(w: &[f32], n: usize, m: usize) -> Vec<f32> {
    let row = |f: usize| &w[f * m..(f + 1) * m];
    let mut gram = vec![0f32; n * n];
    for a in 0..n {
        for b in 0..=a {
            let dot: f32 = row(a).iter().zip(row(b)).map(|(x, y)| x * y).sum();
            gram[a * n + b] = dot;
            gram[b * n + a] = dot;
        }
    }
    gram
}

/// D* = m / ‖W‖_F² of one instance's `w` (infinite for all-zero weights).
pub fn dims_per_feature(w: &[f32], m: usize) -> f64 {
    let total: f64 = w.iter().map(|&x| x as f64 * x as f64).sum();
    if total > 0.0 {
        m as f64 / total
    } else {
        f64::INFINITY
    }
}

/// The part of [`geometry`] that costs `n·m` (the norms and D*), with the per-feature
/// superposition and dimensionality left empty: for models too large to compare every pair of
/// features (`n²·m`) where that would hold up a view.
pub fn norms_only(w: &[f32], n: usize, m: usize) -> Geometry {
    Geometry {
        dims_per_feature: dims_per_feature(w, m),
        norms: w
            .chunks_exact(m)
            .take(n)
            .map(|r| r.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt())
            .collect(),
        superposition: Vec::new(),
        dimensionality: Vec::new(),
    }
}

/// How a two-feature instance uses its hidden dimensions (the paper's phase diagram): a
/// feature is represented when its ‖W_f‖ is at least 1/2 (trained ones are near 0 or 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// Only the first feature: the second is not represented.
    NotRepresented,
    /// Only the second feature: it has the dimension to itself.
    Dedicated,
    /// Both, sharing the dimension (antipodal when there is one).
    Superposition,
    /// Neither feature.
    Neither,
}

impl Regime {
    /// One character for a text map.
    pub fn symbol(self) -> char {
        match self {
            Regime::NotRepresented => '.',
            Regime::Dedicated => 'D',
            Regime::Superposition => 'S',
            Regime::Neither => ' ',
        }
    }
}

/// The regime of a two-feature instance's `w` `[2, m]`.
pub fn regime(w: &[f32], m: usize) -> Regime {
    let norm = |f: usize| {
        w[f * m..(f + 1) * m]
            .iter()
            .map(|&x| x as f64 * x as f64)
            .sum::<f64>()
            .sqrt()
    };
    match (norm(0) >= 0.5, norm(1) >= 0.5) {
        (true, false) => Regime::NotRepresented,
        (false, true) => Regime::Dedicated,
        (true, true) => Regime::Superposition,
        (false, false) => Regime::Neither,
    }
}

/// One evaluation of a superposition run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TmsMetrics {
    pub step: usize,
    /// The loss summed over instances, averaged over the steps since the last evaluation.
    pub loss: f64,
    pub loss_per_instance: Vec<f64>,
    /// D* per instance.
    pub dims_per_feature: Vec<f64>,
    /// Seconds of training so far (steps only).
    pub elapsed_s: f64,
}

/// A run's evaluations as CSV, a row per evaluation and instance (`probabilities` per
/// instance).
pub fn history_csv(history: &[TmsMetrics], probabilities: &[f64]) -> String {
    let mut out = String::from("step,instance,feature_probability,loss,dims_per_feature\n");
    for m in history {
        for (i, (loss, d)) in m
            .loss_per_instance
            .iter()
            .zip(&m.dims_per_feature)
            .enumerate()
        {
            out += &format!("{},{i},{},{loss},{d}\n", m.step, probabilities[i]);
        }
    }
    out
}

/// The fractions the paper's feature dimensionalities stick at.
pub const FRACTIONS: [(&str, f64); 6] = [
    ("1", 1.0),
    ("3/4", 0.75),
    ("2/3", 2.0 / 3.0),
    ("1/2", 0.5),
    ("2/5", 0.4),
    ("3/8", 0.375),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Two antipodal features in one dimension share it: D = 1/2 each, D* = 1/2; a lone
    /// orthogonal feature has D = 1; a pentagon in two dimensions has D = 2/5.
    #[test]
    fn two_features_in_one_dimension_have_a_regime() {
        assert_eq!(regime(&[1.0, 0.1], 1), Regime::NotRepresented);
        assert_eq!(regime(&[0.0, -0.9], 1), Regime::Dedicated);
        assert_eq!(regime(&[0.9, -1.0], 1), Regime::Superposition);
        assert_eq!(regime(&[0.2, 0.1], 1), Regime::Neither);
    }

    /// The pairwise sums equal the definitions computed feature by feature.
    #[test]
    fn geometry_equals_its_definition() {
        let (n, m) = (13, 6);
        let w: Vec<f32> = (0..n * m)
            .map(|i| ((i * 7919 % 97) as f32 / 48.0 - 1.0) * if i % 11 == 0 { 0.0 } else { 1.0 })
            .collect();
        let g = geometry(&w, n, m);
        let dot = |a: usize, b: usize| -> f64 {
            (0..m)
                .map(|k| w[a * m + k] as f64 * w[b * m + k] as f64)
                .sum()
        };
        for f in 0..n {
            let norm = dot(f, f).sqrt();
            let c = |j: usize| dot(f, j) / norm;
            let all: f64 = (0..n).map(|j| c(j) * c(j)).sum();
            let others: f64 = (0..n).filter(|&j| j != f).map(|j| c(j) * c(j)).sum();
            assert!((g.norms[f] - norm).abs() < 1e-12);
            assert!((g.superposition[f] - others).abs() < 1e-9 * all.max(1.0));
            assert!((g.dimensionality[f] - norm * norm / all).abs() < 1e-9);
        }
        let wtw = gram(&w, n, m);
        for (a, b) in [(0, 0), (3, 7), (7, 3), (12, 5)] {
            assert!(
                (wtw[a * n + b] as f64 - dot(a, b)).abs() < 1e-5,
                "({a}, {b})"
            );
        }
    }

    #[test]
    fn the_history_is_a_row_per_evaluation_and_instance() {
        let at = |step, loss: [f64; 2]| TmsMetrics {
            step,
            loss: loss.iter().sum(),
            loss_per_instance: loss.to_vec(),
            dims_per_feature: vec![1.0, 0.5],
            elapsed_s: 0.0,
        };
        let csv = history_csv(&[at(10, [0.25, 0.125]), at(20, [0.5, 0.75])], &[1.0, 0.05]);
        assert_eq!(
            csv,
            "step,instance,feature_probability,loss,dims_per_feature\n\
             10,0,1,0.25,1\n10,1,0.05,0.125,0.5\n20,0,1,0.5,1\n20,1,0.05,0.75,0.5\n"
        );
    }

    #[test]
    fn known_arrangements_have_their_dimensionality() {
        let g = geometry(&[1.0, 0.0, -1.0, 0.0, 0.0, 1.0], 3, 2);
        assert!((g.dimensionality[0] - 0.5).abs() < 1e-12);
        assert!((g.dimensionality[2] - 1.0).abs() < 1e-12);
        assert!((g.dims_per_feature - 2.0 / 3.0).abs() < 1e-12);
        assert!((g.superposition[0] - 1.0).abs() < 1e-12);
        let pentagon: Vec<f32> = (0..5)
            .flat_map(|k| {
                let a = 2.0 * std::f64::consts::PI * k as f64 / 5.0;
                [a.cos() as f32, a.sin() as f32]
            })
            .collect();
        let g = geometry(&pentagon, 5, 2);
        for d in g.dimensionality {
            assert!((d - 0.4).abs() < 1e-6, "{d}");
        }
    }
}
