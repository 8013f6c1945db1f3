//! Batches of sparse features, drawn directly as each instance's active features: feature `f` of
//! a sample is active with its instance's probability `p`, and then uniform on [0, 1).
//!
//! Drawing a coin per feature costs a random number per feature whatever `p` is. Where features
//! are rare, the gaps between active ones are drawn instead (geometric, `P(gap = k) = (1 − p)^k
//! p`): the same distribution from one random number per active feature instead of `n`, kept as
//! each sample's active features in order, which is what the products need: the rows of W of the
//! active features only. Dense instances draw one 32-bit number per feature, the coin and the
//! value at once, sixteen generators side by side.

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

/// Below this probability an instance draws the gaps between active features, and its batch is
/// kept sparse, as each sample's active features (whose rows of W are all the products need);
/// from it up, a coin per feature into a dense matrix, whose products are matrix products.
/// Measured (one instance of 200 features into 20 dimensions, batch 1024, `cargo bench --bench
/// tms_instance`): the sparse step costs as much as the dense one at p ≈ 0.15; its gaps cost
/// 0.11 ms at p = 0.1 and 0.065 at 0.05, the dense coins 0.05.
pub const SPARSE_BELOW: f64 = 0.12;

/// One instance's batch, dense or sparse by its feature probability.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    /// `[rows, n]`.
    Dense {
        rows: usize,
        x: Vec<f32>,
    },
    Sparse(SparseBatch),
}

impl Default for Batch {
    fn default() -> Self {
        Batch::Sparse(SparseBatch::default())
    }
}

impl Batch {
    pub fn rows(&self) -> usize {
        match self {
            Batch::Dense { rows, .. } => *rows,
            Batch::Sparse(s) => s.rows(),
        }
    }

    /// The batch as a dense `[rows, n]` matrix.
    pub fn to_dense(&self, n: usize) -> Vec<f32> {
        match self {
            Batch::Dense { x, .. } => x.clone(),
            Batch::Sparse(s) => s.dense(n),
        }
    }

    /// A batch of a dense `[rows, n]` matrix: kept dense where at least [`SPARSE_BELOW`] of it
    /// is active, else sparse.
    pub fn from_dense(x: &[f32], n: usize) -> Self {
        let active = x.iter().filter(|&&v| v != 0.0).count();
        if active as f64 >= SPARSE_BELOW * x.len() as f64 {
            Batch::Dense {
                rows: x.len() / n,
                x: x.to_vec(),
            }
        } else {
            Batch::Sparse(SparseBatch::from_dense(x, n))
        }
    }

    /// Draws `rows` samples of `n` features, each active with probability `p` (the buffers
    /// reused), the first `pairs.0` pairs of features correlated and the next `pairs.1` pairs
    /// anticorrelated (see [`Batch::draw_pairs`]).
    pub fn draw(&mut self, rows: usize, n: usize, p: f64, pairs: (usize, usize), seed: u64) {
        let mut rng = SmallRng::seed_from_u64(seed);
        if pairs != (0, 0) {
            *self = Self::draw_pairs(rows, n, p, pairs, &mut rng);
            return;
        }
        if p < SPARSE_BELOW {
            if !matches!(self, Batch::Sparse(_)) {
                *self = Batch::Sparse(SparseBatch::default());
            }
            if let Batch::Sparse(s) = self {
                s.draw_gaps(rows, n, p, &mut rng);
            }
            return;
        }
        let mut x = match std::mem::take(self) {
            Batch::Dense { x, .. } => x,
            Batch::Sparse(_) => Vec::new(),
        };
        // Every value is overwritten: only a new length is filled first.
        x.resize(rows * n, 0.0);
        draw_coins(&mut x, p, &mut rng);
        *self = Batch::Dense { rows, x };
    }
}

impl Batch {
    /// A batch whose first `correlated` pairs of features are active together (one coin of
    /// probability p per pair) and whose next `anticorrelated` pairs never are (the pair active
    /// with probability 2p, then one of the two by a fair coin); the other features on their own.
    /// Each feature is active with probability p; every active feature draws its own value.
    fn draw_pairs(
        rows: usize,
        n: usize,
        p: f64,
        (correlated, anticorrelated): (usize, usize),
        rng: &mut SmallRng,
    ) -> Self {
        let value = |rng: &mut SmallRng| unit(rng.next_u64());
        // A coin of probability q from 53 random bits.
        let coin = |rng: &mut SmallRng, q: f64| {
            (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64) < q
        };
        let mut x = vec![0f32; rows * n];
        for row in x.chunks_exact_mut(n) {
            let (pairs, rest) = row.split_at_mut(2 * (correlated + anticorrelated));
            let (together, apart) = pairs.split_at_mut(2 * correlated);
            for pair in together.chunks_exact_mut(2) {
                if coin(rng, p) {
                    pair[0] = value(rng);
                    pair[1] = value(rng);
                }
            }
            for pair in apart.chunks_exact_mut(2) {
                if coin(rng, 2.0 * p) {
                    pair[usize::from(coin(rng, 0.5))] = value(rng);
                }
            }
            for v in rest {
                if coin(rng, p) {
                    *v = value(rng);
                }
            }
        }
        Self::from_dense(&x, n)
    }
}

/// Fills `x` with features each active with probability `p` and then uniform on [0, 1): one
/// 32-bit random number `u` per feature, from [`Lanes`]. The feature is active when `u` is below
/// `t = p · 2³²`, and then `u / t` is uniform on [0, 1) (`u`'s top 24 bits scaled, so that the
/// value is below 1 in float32 too): the coin and the value from one number, exactly.
fn draw_coins(x: &mut [f32], p: f64, rng: &mut SmallRng) {
    #[cfg(target_arch = "x86_64")]
    if crate::model::kernels::cpu::has_avx2() {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(x: &mut [f32], p: f64, rng: &mut SmallRng) {
            draw_coins_plain(x, p, rng)
        }
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2(x, p, rng) };
    }
    draw_coins_plain(x, p, rng)
}

#[inline(always)]
fn draw_coins_plain(x: &mut [f32], p: f64, rng: &mut SmallRng) {
    // Active when u ≤ limit, i.e. u < t (t = 2³² at p = 1 does not fit 32 bits; limit does).
    let t = (p * 4_294_967_296.0).clamp(256.0, 4_294_967_296.0);
    let limit = (t as u64 - 1) as u32;
    let scale = (256.0 / t) as f32;
    let mut lanes = Lanes::new(rng);
    // Branch-free (a mask, not a select, which the compiler turned back into a branch): a coin's
    // outcome is unpredictable, and a mispredicted branch per feature cost twice the draw.
    let coin = |u: u32| {
        let keep = 0u32.wrapping_sub(u32::from(u <= limit));
        let value = ((u >> 8) as f32 * scale).min(BELOW_ONE);
        f32::from_bits(value.to_bits() & keep)
    };
    let mut chunks = x.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        let u = lanes.next();
        chunk.iter_mut().zip(u).for_each(|(v, u)| *v = coin(u));
    }
    let rest = chunks.into_remainder();
    let u = lanes.next();
    rest.iter_mut().zip(u).for_each(|(v, u)| *v = coin(u));
}

/// The largest float32 below 1.
const BELOW_ONE: f32 = 1.0 - f32::EPSILON / 2.0;

/// How many generators [`Lanes`] steps together.
const LANES: usize = 16;

/// Sixteen xoshiro128++ generators stepped together, their states as arrays so that the
/// compiler keeps them in vector registers: sixteen 32-bit random numbers for a few vector
/// instructions. Each lane is seeded from `SmallRng`.
struct Lanes {
    s: [[u32; LANES]; 4],
}

impl Lanes {
    fn new(rng: &mut SmallRng) -> Self {
        let mut s = [[0u32; LANES]; 4];
        for word in s.iter_mut().flatten() {
            *word = rng.next_u32();
        }
        // An all-zero state would stay zero: practically impossible, and excluded.
        for lane in 0..LANES {
            if s.iter().all(|w| w[lane] == 0) {
                s[0][lane] = 1;
            }
        }
        Self { s }
    }

    #[inline(always)]
    fn next(&mut self) -> [u32; LANES] {
        let [s0, s1, s2, s3] = &mut self.s;
        let mut out = [0u32; LANES];
        for l in 0..LANES {
            out[l] = s0[l].wrapping_add(s3[l]).rotate_left(7).wrapping_add(s0[l]);
            let t = s1[l] << 9;
            s2[l] ^= s0[l];
            s3[l] ^= s1[l];
            s1[l] ^= s2[l];
            s0[l] ^= s3[l];
            s2[l] ^= t;
            s3[l] = s3[l].rotate_left(11);
        }
        out
    }
}

/// A uniform value in [0, 1) from the top 24 bits.
fn unit(bits: u64) -> f32 {
    (bits >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// One instance's batch: each sample's active features (ascending) and their values, as
/// compressed rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseBatch {
    /// `[batch + 1]`: sample `b`'s entries are `starts[b]..starts[b + 1]`.
    pub starts: Vec<u32>,
    pub features: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseBatch {
    pub fn rows(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// Sample `b`'s active features and values.
    pub fn row(&self, b: usize) -> (&[u32], &[f32]) {
        let (s, e) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        (&self.features[s..e], &self.values[s..e])
    }

    /// The batch as a dense `[batch, n]` matrix.
    pub fn dense(&self, n: usize) -> Vec<f32> {
        let mut x = vec![0f32; self.rows() * n];
        for b in 0..self.rows() {
            let (features, values) = self.row(b);
            for (&f, &v) in features.iter().zip(values) {
                x[b * n + f as usize] = v;
            }
        }
        x
    }

    /// A batch from a dense `[batch, n]` matrix (its zeros inactive).
    pub fn from_dense(x: &[f32], n: usize) -> Self {
        let mut batch = SparseBatch {
            starts: vec![0],
            ..Default::default()
        };
        for row in x.chunks_exact(n) {
            for (f, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    batch.features.push(f as u32);
                    batch.values.push(v);
                }
            }
            batch.starts.push(batch.features.len() as u32);
        }
        batch
    }

    /// Draws `rows` samples of `n` features, each active with probability `p`, by the gaps
    /// between active features (`self`'s buffers reused).
    fn draw_gaps(&mut self, rows: usize, n: usize, p: f64, rng: &mut SmallRng) {
        #[cfg(target_arch = "x86_64")]
        if crate::model::kernels::cpu::has_avx2() {
            #[target_feature(enable = "avx2")]
            unsafe fn avx2(s: &mut SparseBatch, rows: usize, n: usize, p: f64, rng: &mut SmallRng) {
                s.draw_gaps_plain(rows, n, p, rng)
            }
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { avx2(self, rows, n, p, rng) };
        }
        self.draw_gaps_plain(rows, n, p, rng)
    }

    /// Sixteen gaps at a time from [`Lanes`] (a 32-bit number for each gap and one for each
    /// value), their logarithms computed side by side ([`ln`]); a sample's active features are
    /// the running sums of its gaps that fall inside it. A logarithm and a branch per active
    /// feature cost four times as much.
    #[inline(always)]
    fn draw_gaps_plain(&mut self, rows: usize, n: usize, p: f64, rng: &mut SmallRng) {
        self.starts.clear();
        self.features.clear();
        self.values.clear();
        self.starts.push(0);
        // The gap in float32: u keeps 24 bits, so the geometric distribution is resolved to
        // 6e-8 in probability.
        let inv_log_q = (1.0 / (1.0 - p).ln()) as f32;
        let mut lanes = Lanes::new(rng);
        for _ in 0..rows {
            // The first feature the next gap starts from.
            let mut next = 0u32;
            loop {
                let (gap_bits, value_bits) = (lanes.next(), lanes.next());
                // Plain loops over the lanes, each vectorised.
                let mut gaps = [0f32; LANES];
                for (gap, bits) in gaps.iter_mut().zip(gap_bits) {
                    // u in (0, 1].
                    *gap = ln(((bits >> 8) + 1) as f32 * (1.0 / 16_777_216.0));
                }
                let mut whole = [0u32; LANES];
                for (w, gap) in whole.iter_mut().zip(gaps) {
                    // At most 2³⁰ (a gap that long passes any sample): within i32, so the
                    // conversion needs no saturation.
                    let gap = (gap * inv_log_q).clamp(0.0, 1_073_741_824.0);
                    // SAFETY: finite and within i32, clamped just above.
                    *w = unsafe { gap.to_int_unchecked::<i32>() } as u32;
                }
                let mut features = [0u32; LANES];
                for (f, gap) in features.iter_mut().zip(whole) {
                    *f = next.saturating_add(gap);
                    next = f.saturating_add(1);
                }
                // The features rise, so those inside the sample come first.
                let inside = features.iter().take_while(|&&f| (f as usize) < n).count();
                self.features.extend_from_slice(&features[..inside]);
                self.values.extend(
                    value_bits[..inside]
                        .iter()
                        .map(|&b| unit(u64::from(b) << 32)),
                );
                if inside < LANES {
                    break;
                }
            }
            self.starts.push(self.features.len() as u32);
        }
    }
}

/// The natural logarithm of a positive normal float, branch-free so that sixteen vectorise:
/// Cephes' `logf` (the mantissa reduced to [√½, √2), a polynomial of degree 9), within a few
/// units in the last place.
#[inline(always)]
fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let exponent = ((bits >> 23) & 0xff) as i32 - 127;
    let mantissa = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    // A product, not a select, which would become a branch.
    let high = f32::from(u8::from(mantissa > std::f32::consts::SQRT_2));
    let m = mantissa * (1.0 - 0.5 * high) - 1.0;
    let e = exponent as f32 + high;
    let z = m * m;
    let poly = [
        7.037_683_6e-2,
        -1.151_461e-1,
        1.167_699_9e-1,
        -1.242_014_1e-1,
        1.424_932_3e-1,
        -1.666_805_8e-1,
        2.000_071_4e-1,
        -2.499_999_4e-1,
        3.333_333e-1,
    ]
    .iter()
    .fold(0.0, |acc, &c| acc * m + c);
    let y = poly * m * z - 2.121_944_4e-4 * e - 0.5 * z;
    m + y + 0.693_359_4 * e
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of drawing give each feature probability p and values uniform on [0, 1).
    /// The vectorised logarithm against std's over (0, 1].
    #[test]
    fn the_logarithm_is_within_a_few_ulps() {
        for k in 1..=(1 << 24) {
            let u = k as f32 / 16_777_216.0;
            let (got, want) = (ln(u), u.ln());
            assert!(
                (got - want).abs() <= 4.0 * f32::EPSILON * want.abs().max(1e-7),
                "ln({u}) = {got}, not {want}"
            );
        }
    }

    #[test]
    fn features_are_active_with_their_probability() {
        for p in [1.0, 0.6, 0.3, 0.2, 0.05, 0.003] {
            let (rows, n) = (4000, 50);
            let mut drawn = Batch::default();
            drawn.draw(rows, n, p, (0, 0), 3);
            assert_eq!(drawn.rows(), rows);
            assert_eq!(matches!(drawn, Batch::Dense { .. }), p >= SPARSE_BELOW);
            let batch = SparseBatch::from_dense(&drawn.to_dense(n), n);
            let active = batch.features.len() as f64 / (rows * n) as f64;
            let sd = (p * (1.0 - p) / (rows * n) as f64).sqrt();
            assert!((active - p).abs() <= 5.0 * sd + 1e-9, "p {p}: {active}");
            // Every feature as often as the others: the first and the last.
            let count = |f: u32| batch.features.iter().filter(|&&x| x == f).count() as f64;
            let per = rows as f64 * p;
            for f in [0, n as u32 / 2, n as u32 - 1] {
                assert!(
                    (count(f) - per).abs() <= 5.0 * (per * (1.0 - p)).sqrt() + 1.0,
                    "p {p}, feature {f}"
                );
            }
            for b in 0..rows {
                let (features, values) = batch.row(b);
                assert!(features.windows(2).all(|w| w[0] < w[1]));
                assert!(values.iter().all(|&v| (0.0..1.0).contains(&v)));
            }
            let mean = batch.values.iter().map(|&v| v as f64).sum::<f64>()
                / batch.values.len().max(1) as f64;
            if batch.values.len() > 1000 {
                assert!((mean - 0.5).abs() < 0.02, "p {p}: mean value {mean}");
            }
        }
    }

    /// Correlated pairs are active together, anticorrelated ones never; every feature with
    /// probability p, and the unpaired ones independently.
    #[test]
    fn paired_features_keep_their_probability_and_their_pairing() {
        let (rows, n, p) = (20_000, 9, 0.2);
        let mut batch = Batch::default();
        batch.draw(rows, n, p, (1, 2), 5);
        let x = batch.to_dense(n);
        let active = |r: usize, f: usize| x[r * n + f] != 0.0;
        for f in 0..n {
            let share = (0..rows).filter(|&r| active(r, f)).count() as f64 / rows as f64;
            assert!((share - p).abs() < 0.015, "feature {f}: {share}");
        }
        assert!(
            (0..rows).all(|r| active(r, 0) == active(r, 1)),
            "correlated"
        );
        for (a, b) in [(2, 3), (4, 5)] {
            assert!(
                (0..rows).all(|r| !(active(r, a) && active(r, b))),
                "anticorrelated"
            );
        }
        // Two unpaired features together about p² of the time.
        let both = (0..rows).filter(|&r| active(r, 6) && active(r, 7)).count() as f64;
        assert!((both / rows as f64 - p * p).abs() < 0.01);
        // Values are each feature's own: a correlated pair's two values differ.
        assert!((0..rows).any(|r| active(r, 0) && x[r * n] != x[r * n + 1]));
    }

    #[test]
    fn dense_and_sparse_forms_agree() {
        let mut batch = Batch::default();
        batch.draw(70, 9, 0.1, (0, 0), 1);
        let Batch::Sparse(sparse) = &batch else {
            panic!("a sparse batch")
        };
        assert_eq!(&SparseBatch::from_dense(&sparse.dense(9), 9), sparse);
    }
}
