//! The model's weights, their initialisation, and the loss and its gradients on a batch,
//! computed on the host, each instance on its own.
//!
//! For instance `i` with `W [n, m]` and `b [n]`, and a batch `X [B, n]`:
//!
//! ```text
//! H  = X W              [B, m]   only the rows of W of each sample's active features
//! Z  = H Wᵀ + b         [B, n]   a matrix product
//! X' = ReLU(Z) (or Z)
//! L  = Σ imp_f (X' − X)² / (B n)
//! D  = ∂L/∂Z = 2 imp_f (X' − X) / (B n) · [Z > 0]
//! ∂L/∂b = Σ_b D
//! ∂L/∂W = Dᵀ H + Xᵀ (D W)   the second term again over active features only
//! ```
//!
//! Three matrix products of `B·n·m` each, and two sparse passes of `B·(active)·m`: the exact
//! gradients of PyTorch's autograd on the same weights and batch (a test holds them to a
//! PyTorch fixture). (Summing ∂W as `(XᵀD + DᵀX) W` instead, a pass of `B·(active)·n`, cost
//! more than it saved at every feature probability of the paper's experiment: its `n × n`
//! matrix does not stay in cache.)

use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use super::config::{Output, TmsModel};
use super::data::Batch;
use crate::model::kernels::cpu::{matmul_serial as matmul, matmul_serial_into, pool};
use crate::model::kernels::scratch;
use crate::seed::{Stream, stream_rng};

/// The weights of every instance.
#[derive(Debug, Clone, PartialEq)]
pub struct TmsWeights {
    /// `[instances, features, hidden]`.
    pub w: Vec<f32>,
    /// `[instances, features]`.
    pub b: Vec<f32>,
}

impl TmsWeights {
    /// PyTorch's `xavier_normal_` over the whole `[I, n, m]` tensor (fan_in n·m, fan_out I·m),
    /// and b = 0, as the paper's notebook initialises them.
    pub fn init(model: &TmsModel, seed: u64) -> Self {
        let (i, n, m) = (model.n_instances, model.n_features, model.n_hidden);
        let std = (2.0 / ((n * m + i * m) as f64)).sqrt();
        let normal = Normal::new(0.0, std).expect("a positive standard deviation");
        let mut rng = stream_rng(seed, Stream::Init);
        let w = (0..i * n * m)
            .map(|_| normal.sample(&mut rng) as f32)
            .collect();
        Self {
            w,
            b: vec![0.0; i * n],
        }
    }

    pub fn all_finite(&self) -> bool {
        self.w.iter().chain(&self.b).all(|v| v.is_finite())
    }
}

/// Gradients in the weights' layout, and each instance's loss.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TmsGrads {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub loss: Vec<f64>,
}

impl TmsGrads {
    pub fn zeros(model: &TmsModel) -> Self {
        let (i, n, m) = (model.n_instances, model.n_features, model.n_hidden);
        Self {
            w: vec![0.0; i * n * m],
            b: vec![0.0; i * n],
            loss: vec![0.0; i],
        }
    }

    /// Whether the loss and every gradient are finite (in one pass that vectorises).
    pub fn all_finite(&self) -> bool {
        let finite = |v: &[f32]| v.iter().fold(true, |ok, g| ok & g.is_finite());
        self.loss.iter().all(|l| l.is_finite()) && finite(&self.w) && finite(&self.b)
    }
}

/// How [`loss_and_grads_with`] computes each instance: the fastest way this CPU and shape allow,
/// or by matrix products everywhere (for `benches/tms_instance.rs`, which compares the two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Fastest,
    Products,
}

/// One instance's loss and gradients into `dw [n, m]` and `db [n]`: in one fused pass over the
/// batch where the CPU has AVX2 and FMA and the hidden layer is narrow ([`super::fused`]), else
/// by matrix products (compiled for AVX2 where the CPU has it; the numbers do not depend on it).
#[allow(clippy::too_many_arguments)]
fn instance_loss_and_grads(
    kernel: Kernel,
    dims: (usize, usize),
    output: Output,
    w: &[f32],
    b: &[f32],
    importance: &[f32],
    x: &Batch,
    dw: &mut [f32],
    db: &mut [f32],
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::Fastest && super::fused::applies(dims.1) {
        return super::fused::loss_and_grads(dims, output, w, b, importance, x, dw, db);
    }
    #[cfg(target_arch = "x86_64")]
    if crate::model::kernels::cpu::has_avx2() {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { instance_avx2(dims, output, w, b, importance, x, dw, db) };
    }
    instance_plain(dims, output, w, b, importance, x, dw, db)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn instance_avx2(
    dims: (usize, usize),
    output: Output,
    w: &[f32],
    b: &[f32],
    importance: &[f32],
    x: &Batch,
    dw: &mut [f32],
    db: &mut [f32],
) -> f64 {
    instance_plain(dims, output, w, b, importance, x, dw, db)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn instance_plain(
    (n, m): (usize, usize),
    output: Output,
    w: &[f32],
    b: &[f32],
    importance: &[f32],
    x: &Batch,
    dw: &mut [f32],
    db: &mut [f32],
) -> f64 {
    let rows = x.rows();
    // The sparse passes add multiples of W's rows to H's and G's rows (H's and G's to ∂W's):
    // with rows padded to whole vectors (zeros after column m), each is a few vector updates.
    // Scratch buffers hold their last user's values: each is overwritten before it is read.
    let mp = m.next_multiple_of(8);
    let mut wp = scratch::take(n * mp);
    for (padded, row) in wp.chunks_exact_mut(mp).zip(w.chunks_exact(m)) {
        padded[..m].copy_from_slice(row);
        padded[m..].fill(0.0);
    }
    // H = X W: a matrix product for a dense batch, the active features' rows for a sparse one.
    let mut h = scratch::take(rows * mp);
    h.fill(0.0);
    match x {
        Batch::Dense { x, .. } => {
            matmul_serial_into((&mut h, mp), (rows, m, n), (x, n, 1), (&wp, mp, 1), false)
        }
        Batch::Sparse(x) => {
            for (r, hr) in h.chunks_exact_mut(mp).enumerate() {
                let (features, values) = x.row(r);
                for (&f, &v) in features.iter().zip(values) {
                    axpy(hr, v, &wp[f as usize * mp..(f as usize + 1) * mp]);
                }
            }
        }
    }
    let w = &wp;
    // Z = H Wᵀ + b.
    let mut z = scratch::take(rows * n);
    matmul(&mut z, (rows, n, m), (&h, mp, 1), (w, 1, mp), false);
    let scale = 2.0 / (rows * n) as f32;
    let relu = output == Output::Relu;
    let mut loss = 0f64;
    // D, from Z in place, a row at a time: X's row scattered into a dense buffer so that the
    // elementwise work has no branches (and vectorises); `db` summed row by row.
    let mut scattered = scratch::take(n);
    scattered.fill(0.0);
    let mut squares = scratch::take(n);
    db.fill(0.0);
    for (r, zr) in z.chunks_exact_mut(n).enumerate() {
        let x_row: &[f32] = match x {
            Batch::Dense { x, .. } => &x[r * n..(r + 1) * n],
            Batch::Sparse(x) => {
                let (features, values) = x.row(r);
                for (&f, &v) in features.iter().zip(values) {
                    scattered[f as usize] = v;
                }
                &scattered
            }
        };
        let row_loss = if relu {
            gradient_row::<true>(zr, b, x_row, importance, db, scale, &mut squares)
        } else {
            gradient_row::<false>(zr, b, x_row, importance, db, scale, &mut squares)
        };
        loss += row_loss as f64;
        if let Batch::Sparse(x) = x {
            for &f in x.row(r).0 {
                scattered[f as usize] = 0.0;
            }
        }
    }
    let d = z;
    // ∂W = Dᵀ H + Xᵀ G with G = D W. The products give ∂Wᵀ `[m, n]` (gemm runs a fifth
    // faster on that shape than on `[n, m]`), the sparse pass ∂W's padded rows; the two are
    // added into `dw` at the end.
    let mut dwt = scratch::take(m * n);
    matmul(&mut dwt, (m, n, rows), (&h, 1, mp), (&d, n, 1), false);
    let mut g = h;
    g.fill(0.0);
    matmul_serial_into((&mut g, mp), (rows, m, n), (&d, n, 1), (w, mp, 1), false);
    let mut dwp = scratch::take(n * mp);
    dwp.fill(0.0);
    match x {
        Batch::Dense { x, .. } => matmul(&mut dwt, (m, n, rows), (&g, 1, mp), (x, n, 1), true),
        Batch::Sparse(x) => {
            for (r, gr) in g.chunks_exact(mp).enumerate() {
                let (features, values) = x.row(r);
                for (&f, &v) in features.iter().zip(values) {
                    axpy(&mut dwp[f as usize * mp..(f as usize + 1) * mp], v, gr);
                }
            }
        }
    }
    for (f, (dwf, sparse)) in dw.chunks_exact_mut(m).zip(dwp.chunks_exact(mp)).enumerate() {
        for (j, (out, &s)) in dwf.iter_mut().zip(sparse).enumerate() {
            *out = dwt[j * n + f] + s;
        }
    }
    for buffer in [wp, g, d, dwt, dwp, scattered, squares] {
        scratch::give(buffer);
    }
    loss / (rows * n) as f64
}

/// `y += a·x`, eight floats at a time (`y` and `x` of a length that is a multiple of 8).
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.chunks_exact_mut(8).zip(x.chunks_exact(8)) {
        // As arrays, so that the eight updates become one vector operation.
        let y: &mut [f32; 8] = y.try_into().expect("a chunk of 8");
        let x: &[f32; 8] = x.try_into().expect("a chunk of 8");
        *y = std::array::from_fn(|i| y[i] + a * x[i]);
    }
}

/// One sample's loss `Σ imp (x' − x)²` and, in place of `z` (its `H Wᵀ`), `∂L/∂Z`; `db`
/// accumulates it. Three plain loops, so that each vectorises: the elementwise work (the ReLU's
/// zeros by a mask: a select here became a branch per element), the bias gradient, and the sum
/// in eight lanes.
#[inline(always)]
fn gradient_row<const RELU: bool>(
    z: &mut [f32],
    b: &[f32],
    x: &[f32],
    importance: &[f32],
    db: &mut [f32],
    scale: f32,
    squares: &mut [f32],
) -> f32 {
    // Four vectors of partial sums: one would wait on its own last addition every time.
    const LANES: usize = 32;
    for ((((zf, &bf), &xf), &imp), sq) in z
        .iter_mut()
        .zip(b)
        .zip(x)
        .zip(importance)
        .zip(squares.iter_mut())
    {
        let pre = *zf + bf;
        let out = if RELU { pre.max(0.0) } else { pre };
        let err = out - xf;
        *sq = imp * err * err;
        let live = 0u32.wrapping_sub(u32::from(!RELU || pre > 0.0));
        *zf = f32::from_bits((scale * imp * err).to_bits() & live);
    }
    db.iter_mut().zip(z.iter()).for_each(|(g, &d)| *g += d);
    let mut lanes = [0f32; LANES];
    let mut chunks = squares.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// The loss (summed over instances, each the mean over batch and features) and its gradients,
/// the instances in parallel. `batches[i]` is instance `i`'s batch; `importance` is
/// `[instances × features]`.
pub fn loss_and_grads(
    model: &TmsModel,
    weights: &TmsWeights,
    importance: &[f32],
    batches: &[Batch],
) -> TmsGrads {
    loss_and_grads_with(Kernel::Fastest, model, weights, importance, batches)
}

/// [`loss_and_grads`] computed by `kernel`.
pub fn loss_and_grads_with(
    kernel: Kernel,
    model: &TmsModel,
    weights: &TmsWeights,
    importance: &[f32],
    batches: &[Batch],
) -> TmsGrads {
    let mut grads = TmsGrads::zeros(model);
    on_batches(
        kernel,
        model,
        weights,
        importance,
        batches.par_iter(),
        &mut grads,
    );
    grads
}

/// [`loss_and_grads`] into `grads` (every value overwritten), each instance's batch first made
/// by `draw(instance, batch)` on the thread that then uses it: one pass over the cores instead
/// of two, and each batch still in that core's cache when its products read it.
pub fn loss_and_grads_drawing(
    model: &TmsModel,
    weights: &TmsWeights,
    importance: &[f32],
    batches: &mut [Batch],
    draw: impl Fn(usize, &mut Batch) + Sync,
    grads: &mut TmsGrads,
) {
    let drawn = batches.par_iter_mut().enumerate().map(|(i, batch)| {
        draw(i, batch);
        &*batch
    });
    on_batches(Kernel::Fastest, model, weights, importance, drawn, grads)
}

/// Every instance's loss and gradients, each on the thread that yields its batch.
fn on_batches<'a>(
    kernel: Kernel,
    model: &TmsModel,
    weights: &TmsWeights,
    importance: &[f32],
    batches: impl IndexedParallelIterator<Item = &'a Batch>,
    grads: &mut TmsGrads,
) {
    let (n, m) = (model.n_features, model.n_hidden);
    if grads.loss.len() != model.n_instances || grads.w.len() != weights.w.len() {
        *grads = TmsGrads::zeros(model);
    }
    pool().install(|| {
        grads
            .w
            .par_chunks_mut(n * m)
            .zip(grads.b.par_chunks_mut(n))
            .zip(grads.loss.par_iter_mut())
            .zip(batches)
            .enumerate()
            .with_max_len(1)
            .for_each(|(i, (((dw, db), loss), batch))| {
                let w = &weights.w[i * n * m..(i + 1) * n * m];
                let b = &weights.b[i * n..(i + 1) * n];
                *loss = instance_loss_and_grads(
                    kernel,
                    (n, m),
                    model.output,
                    w,
                    b,
                    &importance[i * n..(i + 1) * n],
                    batch,
                    dw,
                    db,
                );
            });
    });
}

/// A seed for instance `instance`'s batch at step `step` of a run of `seed`: SplitMix64's
/// finaliser over the three, so every batch has its own stream whatever the order they are
/// drawn in.
pub fn batch_seed(seed: u64, step: u64, instance: u64) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    mix(mix(mix(seed) ^ step) ^ instance)
}
