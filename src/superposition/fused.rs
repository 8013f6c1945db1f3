//! One instance's loss and gradients in a single pass over its batch, a few samples at a time,
//! with AVX2 and FMA (and AVX-512VL's 32 vector registers where the CPU has them): the same
//! numbers as [`super::model`]'s matrix products (to rounding), nearer the cores' peak on the
//! paper's narrow shapes.
//!
//! The batch goes by panels of sixteen samples (twelve with AVX2), each through every stage
//! while its rows are in the core's first caches: by blocks of four (three) samples,
//! `H = X W`, `Z = H Wᵀ + b` with the loss and `D = ∂L/∂Z` computed as each vector of `Z` leaves
//! the registers, and `G = D W`; then `∂Wᵀ += Hᵀ D + Gᵀ X` over the panel, each tile of `∂Wᵀ`
//! summed in registers over its samples. Every tile is shaped to the narrow products: the
//! hidden dimension in whole vectors of eight, the features in vectors of eight. gemm ran the
//! products with 20 columns at 60 % of the FMA peak, its tiles a third idle; this runs the
//! whole instance at about 70 % (`cargo bench --bench tms_instance`). A sparse batch reads only
//! its active features' rows in `X W` and writes only their rows in `Xᵀ G`.
//!
//! Rows are padded with zeros to whole vectors (`mp` hidden, `np` features); a padded feature
//! has zero importance, so its `D` is zero and adds nothing.

use super::config::Output;
use super::data::Batch;
use crate::model::kernels::scratch;

/// The most samples in a panel (the buffers' rows).
const MAX_PANEL: usize = 16;
/// The widest hidden layer this kernel takes (four vectors); wider models use the products.
pub const MAX_HIDDEN: usize = 32;

/// Whether [`loss_and_grads`] runs on this CPU for `m` hidden units.
pub fn applies(m: usize) -> bool {
    m <= MAX_HIDDEN && crate::model::kernels::cpu::has_avx2_fma()
}

/// One instance's mean loss, with `dw [n, m]` and `db [n]` overwritten by its gradients.
/// Call only where [`applies`] holds.
#[allow(clippy::too_many_arguments)]
pub fn loss_and_grads(
    (n, m): (usize, usize),
    output: Output,
    w: &[f32],
    b: &[f32],
    importance: &[f32],
    x: &Batch,
    dw: &mut [f32],
    db: &mut [f32],
) -> f64 {
    assert!(
        applies(m),
        "the fused kernel needs AVX2, FMA and at most 32 hidden units"
    );
    assert!(w.len() == n * m && dw.len() == n * m);
    assert!(b.len() == n && db.len() == n && importance.len() == n);
    if let Batch::Dense { x, rows } = x {
        assert_eq!(x.len(), rows * n);
    }
    if let Batch::Sparse(s) = x {
        assert!(s.features.iter().all(|&f| (f as usize) < n));
    }
    let wide = std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl");
    on_variant(
        wide,
        (n, m),
        output == Output::Relu,
        (w, b, importance),
        x,
        dw,
        db,
    )
}

/// [`loss_and_grads`] by the AVX-512VL variant where `wide`, else the AVX2 one.
fn on_variant(
    wide: bool,
    (n, m): (usize, usize),
    relu: bool,
    (w, b, importance): (&[f32], &[f32], &[f32]),
    x: &Batch,
    dw: &mut [f32],
    db: &mut [f32],
) -> f64 {
    // SAFETY: AVX2 and FMA are present (`applies`), AVX-512F and VL where `wide`; every
    // buffer's length is checked by `loss_and_grads`, or made by `Buffers` to the sizes the
    // stages index.
    unsafe {
        macro_rules! run {
            ($variant:ident) => {
                match m.div_ceil(8) {
                    1 => $variant::instance::<1>(n, m, relu, w, b, importance, x, dw, db),
                    2 => $variant::instance::<2>(n, m, relu, w, b, importance, x, dw, db),
                    3 => $variant::instance::<3>(n, m, relu, w, b, importance, x, dw, db),
                    _ => $variant::instance::<4>(n, m, relu, w, b, importance, x, dw, db),
                }
            };
        }
        if wide { run!(avx512) } else { run!(avx2) }
    }
}

/// The padded copies the stages read, and the accumulators they write.
struct Buffers {
    /// `W [n, mp]`.
    wp: Vec<f32>,
    /// `Wᵀ [m, np]`.
    wt: Vec<f32>,
    bias: Vec<f32>,
    importance: Vec<f32>,
    /// A panel's samples `[MAX_PANEL, np]` where the batch's own rows cannot be read in place.
    xb: Vec<f32>,
    /// The panel's `D [MAX_PANEL, np]`, `H` and `G [MAX_PANEL, mp]`.
    d: Vec<f32>,
    h: Vec<f32>,
    g: Vec<f32>,
    /// `∂Wᵀ [m, np]` from the products, `∂W [n, mp]` from a sparse batch's rows, `∂b [np]`.
    dwt: Vec<f32>,
    dwp: Vec<f32>,
    db: Vec<f32>,
}

impl Buffers {
    fn new(n: usize, m: usize, mp: usize, w: &[f32], b: &[f32], importance: &[f32]) -> Self {
        let np = n.next_multiple_of(8);
        let zeroed = |len: usize| {
            let mut v = scratch::take(len);
            v.fill(0.0);
            v
        };
        let padded = |values: &[f32]| {
            let mut v = zeroed(np);
            v[..n].copy_from_slice(values);
            v
        };
        let mut wp = zeroed(n * mp);
        let mut wt = zeroed(m * np);
        for (i, row) in w.chunks_exact(m).enumerate() {
            wp[i * mp..i * mp + m].copy_from_slice(row);
            for (j, &v) in row.iter().enumerate() {
                wt[j * np + i] = v;
            }
        }
        Self {
            wp,
            wt,
            bias: padded(b),
            importance: padded(importance),
            xb: zeroed(MAX_PANEL * np),
            d: zeroed(MAX_PANEL * np),
            h: zeroed(MAX_PANEL * mp),
            g: zeroed(MAX_PANEL * mp),
            dwt: zeroed(m * np),
            dwp: zeroed(n * mp),
            db: zeroed(np),
        }
    }

    fn give(self) {
        let all = [
            self.wp,
            self.wt,
            self.bias,
            self.importance,
            self.xb,
            self.d,
            self.h,
            self.g,
            self.dwt,
            self.dwp,
            self.db,
        ];
        all.into_iter().for_each(scratch::give);
    }
}

/// The kernel's functions compiled for the instruction sets `$features`, with their tiles:
/// `$block` samples per block, `$z` vectors of features per tile of `Z`, `$dwt` per tile of
/// `∂Wᵀ` (by four hidden units). Sized so that a tile's accumulators and operands fit the
/// vector registers: sixteen with AVX2 (an accumulator spilled to the stack costs a
/// store-to-load wait on every iteration), thirty-two with AVX-512VL.
macro_rules! kernel {
    ($name:ident, $features:literal, block $block:literal, z $z:literal, dwt $dwt:literal) => {
        mod $name {
            use std::arch::x86_64::*;

            use super::super::data::Batch;
            use super::{Buffers, MAX_PANEL};

            const BLOCK: usize = $block;
            const Z_VECTORS: usize = $z;
            const DWT_VECTORS: usize = $dwt;
            const DWT_UNITS: usize = 4;
            /// Samples whose `∂Wᵀ` terms are summed in registers before the accumulators
            /// are stored again.
            const PANEL: usize = 4 * BLOCK;
            const _: () = assert!(PANEL <= MAX_PANEL);

            /// Where a block's samples are read: `rows` samples `stride` floats apart, each
            /// padded to whole vectors with zeros.
            #[derive(Clone, Copy)]
            struct Samples {
                x: *const f32,
                stride: usize,
            }

            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn instance<const MV: usize>(
                n: usize,
                m: usize,
                relu: bool,
                w: &[f32],
                b: &[f32],
                importance: &[f32],
                x: &Batch,
                dw: &mut [f32],
                db: &mut [f32],
            ) -> f64 {
                let mp = MV * 8;
                let np = n.next_multiple_of(8);
                let rows = x.rows();
                let mut buf = Buffers::new(n, m, mp, w, b, importance);
                let scale = 2.0 / (rows * n) as f32;
                let mut loss = 0f64;
                let mut start = 0;
                while start < rows {
                    let count = PANEL.min(rows - start);
                    let samples = match x {
                        // A dense batch's rows in place where they are whole vectors.
                        Batch::Dense { x, .. } if n == np => Samples {
                            x: x[start * n..].as_ptr(),
                            stride: n,
                        },
                        Batch::Dense { x, .. } => {
                            for r in 0..count {
                                let src = &x[(start + r) * n..(start + r + 1) * n];
                                buf.xb[r * np..r * np + n].copy_from_slice(src);
                            }
                            Samples {
                                x: buf.xb.as_ptr(),
                                stride: np,
                            }
                        }
                        Batch::Sparse(s) => {
                            for r in 0..count {
                                let (features, values) = s.row(start + r);
                                for (&f, &v) in features.iter().zip(values) {
                                    buf.xb[r * np + f as usize] = v;
                                }
                            }
                            Samples {
                                x: buf.xb.as_ptr(),
                                stride: np,
                            }
                        }
                    };
                    let shape = (n, m, np);
                    loss += unsafe {
                        panel::<MV>(&mut buf, shape, relu, scale, x, (start, count), samples)
                    };
                    // A sparse panel's entries cleared for the next (the rest stayed zero).
                    if let Batch::Sparse(s) = x {
                        for r in 0..count {
                            for &f in s.row(start + r).0 {
                                buf.xb[r * np + f as usize] = 0.0;
                            }
                        }
                    }
                    start += count;
                }
                for (f, dwf) in dw.chunks_exact_mut(m).enumerate() {
                    for (j, out) in dwf.iter_mut().enumerate() {
                        *out = buf.dwt[j * np + f] + buf.dwp[f * mp + j];
                    }
                }
                db.copy_from_slice(&buf.db[..n]);
                buf.give();
                loss / (rows * n) as f64
            }

            /// Every stage for `count` samples from `start` of `x` (read from `samples`):
            /// their summed loss, their gradients added into the accumulators.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn panel<const MV: usize>(
                buf: &mut Buffers,
                (n, m, np): (usize, usize, usize),
                relu: bool,
                scale: f32,
                x: &Batch,
                (start, count): (usize, usize),
                samples: Samples,
            ) -> f64 {
                let mp = MV * 8;
                let mut loss = 0.0;
                let mut r = 0;
                unsafe {
                    // H, Z, the loss, D and G, a block of samples at a time.
                    while r < count {
                        let at = (start, r);
                        if count - r >= BLOCK {
                            loss += rows::<BLOCK, MV>(buf, (n, m, np), relu, scale, x, at, samples);
                            r += BLOCK;
                        } else {
                            loss += rows::<1, MV>(buf, (n, m, np), relu, scale, x, at, samples);
                            r += 1;
                        }
                    }
                    // ∂Wᵀ += Hᵀ D, and Gᵀ X for a dense batch.
                    let dense = matches!(x, Batch::Dense { .. });
                    accumulate_dwt(buf, (m, np, mp), count, dense.then_some(samples));
                    // A sparse batch's Xᵀ G: only its active features' rows of ∂W.
                    if let Batch::Sparse(s) = x {
                        for r in 0..count {
                            let (features, values) = s.row(start + r);
                            let g = buf.g.as_ptr().add(r * mp);
                            for (&f, &v) in features.iter().zip(values) {
                                let row = buf.dwp.as_mut_ptr().add(f as usize * mp);
                                let v = _mm256_set1_ps(v);
                                for k in 0..MV {
                                    let gv = _mm256_loadu_ps(g.add(8 * k));
                                    let acc = _mm256_loadu_ps(row.add(8 * k));
                                    _mm256_storeu_ps(row.add(8 * k), _mm256_fmadd_ps(v, gv, acc));
                                }
                            }
                        }
                    }
                }
                loss
            }

            /// `H = X W`, `Z = H Wᵀ + b`, the loss, D and `G = D W` for the R samples from
            /// row `r` of the panel (sample `start + r` of `x`).
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn rows<const R: usize, const MV: usize>(
                buf: &mut Buffers,
                (n, m, np): (usize, usize, usize),
                relu: bool,
                scale: f32,
                x: &Batch,
                (start, r): (usize, usize),
                samples: Samples,
            ) -> f64 {
                let mp = MV * 8;
                let at = Samples {
                    x: samples.x.wrapping_add(r * samples.stride),
                    stride: samples.stride,
                };
                unsafe {
                    // H = X W: for a sparse batch, only its active features' rows of W.
                    match x {
                        Batch::Sparse(s) => {
                            for k in 0..R {
                                let (features, values) = s.row(start + r + k);
                                let h = &mut buf.h[(r + k) * mp..(r + k + 1) * mp];
                                sparse_rows_times_w::<MV>(features, values, &buf.wp, h);
                            }
                        }
                        Batch::Dense { .. } => {
                            let h = &mut buf.h[r * mp..];
                            rows_times_w::<R, MV>(at.x, at.stride, n, &buf.wp, h);
                        }
                    }
                    // Z = H Wᵀ + b, the loss and D.
                    let loss = z_loss_and_d::<R>(buf, (m, np, mp), r, relu, scale, at);
                    // G = D W.
                    let d = buf.d.as_ptr().add(r * np);
                    rows_times_w::<R, MV>(d, np, n, &buf.wp, &mut buf.g[r * mp..]);
                    loss
                }
            }

            /// `dst [R, mp] = src [R, ·] W` over the first `n` of each of `src`'s rows
            /// (`stride` apart): each row of W loaded once for the R samples.
            #[target_feature(enable = $features)]
            unsafe fn rows_times_w<const R: usize, const MV: usize>(
                src: *const f32,
                stride: usize,
                n: usize,
                wp: &[f32],
                dst: &mut [f32],
            ) {
                let mp = MV * 8;
                debug_assert!(wp.len() >= n * mp && dst.len() >= R * mp);
                unsafe {
                    let mut acc = [[_mm256_setzero_ps(); MV]; R];
                    for i in 0..n {
                        let row = wp.as_ptr().add(i * mp);
                        let wv: [__m256; MV] =
                            std::array::from_fn(|k| _mm256_loadu_ps(row.add(8 * k)));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let xv = _mm256_broadcast_ss(&*src.add(r * stride + i));
                            for k in 0..MV {
                                acc[k] = _mm256_fmadd_ps(xv, wv[k], acc[k]);
                            }
                        }
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        for (k, &v) in acc.iter().enumerate() {
                            _mm256_storeu_ps(dst.as_mut_ptr().add(r * mp + 8 * k), v);
                        }
                    }
                }
            }

            /// One sparse sample's `h [mp] = Σ v · W[f]` over its active features, in two
            /// sets of accumulators so that consecutive features do not wait on each other.
            #[target_feature(enable = $features)]
            unsafe fn sparse_rows_times_w<const MV: usize>(
                features: &[u32],
                values: &[f32],
                wp: &[f32],
                h: &mut [f32],
            ) {
                let mp = MV * 8;
                debug_assert!(h.len() >= mp);
                unsafe {
                    let mut even = [_mm256_setzero_ps(); MV];
                    let mut odd = [_mm256_setzero_ps(); MV];
                    let (pairs, rest) = features.as_chunks::<2>();
                    let (value_pairs, _) = values.as_chunks::<2>();
                    for (&[f0, f1], &[v0, v1]) in pairs.iter().zip(value_pairs) {
                        let (w0, w1) = (
                            wp.as_ptr().add(f0 as usize * mp),
                            wp.as_ptr().add(f1 as usize * mp),
                        );
                        let (v0, v1) = (_mm256_set1_ps(v0), _mm256_set1_ps(v1));
                        for k in 0..MV {
                            even[k] = _mm256_fmadd_ps(v0, _mm256_loadu_ps(w0.add(8 * k)), even[k]);
                            odd[k] = _mm256_fmadd_ps(v1, _mm256_loadu_ps(w1.add(8 * k)), odd[k]);
                        }
                    }
                    if let (&[f], Some(&v)) = (rest, values.last()) {
                        let row = wp.as_ptr().add(f as usize * mp);
                        let v = _mm256_set1_ps(v);
                        for k in 0..MV {
                            even[k] = _mm256_fmadd_ps(v, _mm256_loadu_ps(row.add(8 * k)), even[k]);
                        }
                    }
                    for k in 0..MV {
                        _mm256_storeu_ps(h.as_mut_ptr().add(8 * k), _mm256_add_ps(even[k], odd[k]));
                    }
                }
            }

            /// `Z = H Wᵀ + b` for the block, tile by tile, and as each vector leaves the
            /// registers: its loss `imp (x' − x)²`, `D = scale · imp (x' − x) · [Z > 0]` into
            /// `buf.d`, and D's column sums into `buf.db`. Returns the block's summed loss.
            #[target_feature(enable = $features)]
            unsafe fn z_loss_and_d<const R: usize>(
                buf: &mut Buffers,
                (m, np, mp): (usize, usize, usize),
                row: usize,
                relu: bool,
                scale: f32,
                samples: Samples,
            ) -> f64 {
                let vectors = np / 8;
                let mut loss = _mm256_setzero_ps();
                let mut c = 0;
                unsafe {
                    while c < vectors {
                        let width = if vectors - c >= Z_VECTORS {
                            Z_VECTORS
                        } else {
                            1
                        };
                        let tile = (m, np, mp, row, c, relu, scale);
                        if width == Z_VECTORS {
                            z_tile::<R, Z_VECTORS>(buf, tile, samples, &mut loss);
                        } else {
                            z_tile::<R, 1>(buf, tile, samples, &mut loss);
                        }
                        c += width;
                    }
                    horizontal_sum(loss) as f64
                }
            }

            #[target_feature(enable = $features)]
            unsafe fn z_tile<const R: usize, const CV: usize>(
                buf: &mut Buffers,
                (m, np, mp, row, c, relu, scale): (usize, usize, usize, usize, usize, bool, f32),
                samples: Samples,
                loss: &mut __m256,
            ) {
                unsafe {
                    let mut acc = [[_mm256_setzero_ps(); CV]; R];
                    let wt = buf.wt.as_ptr().add(8 * c);
                    let h = buf.h.as_ptr().add(row * mp);
                    for j in 0..m {
                        let wv: [__m256; CV] =
                            std::array::from_fn(|k| _mm256_loadu_ps(wt.add(j * np + 8 * k)));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let hv = _mm256_broadcast_ss(&*h.add(r * mp + j));
                            for k in 0..CV {
                                acc[k] = _mm256_fmadd_ps(hv, wv[k], acc[k]);
                            }
                        }
                    }
                    let zero = _mm256_setzero_ps();
                    let scale = _mm256_set1_ps(scale);
                    for k in 0..CV {
                        let col = 8 * (c + k);
                        let bias = _mm256_loadu_ps(buf.bias.as_ptr().add(col));
                        let imp = _mm256_loadu_ps(buf.importance.as_ptr().add(col));
                        let mut db = _mm256_loadu_ps(buf.db.as_ptr().add(col));
                        for (r, acc) in acc.iter().enumerate() {
                            let pre = _mm256_add_ps(acc[k], bias);
                            let out = if relu { _mm256_max_ps(pre, zero) } else { pre };
                            let xv = _mm256_loadu_ps(samples.x.add(r * samples.stride + col));
                            let err = _mm256_sub_ps(out, xv);
                            let weighted = _mm256_mul_ps(imp, err);
                            *loss = _mm256_fmadd_ps(weighted, err, *loss);
                            let mut d = _mm256_mul_ps(scale, weighted);
                            if relu {
                                d = _mm256_and_ps(d, _mm256_cmp_ps::<_CMP_GT_OQ>(pre, zero));
                            }
                            _mm256_storeu_ps(buf.d.as_mut_ptr().add((row + r) * np + col), d);
                            db = _mm256_add_ps(db, d);
                        }
                        _mm256_storeu_ps(buf.db.as_mut_ptr().add(col), db);
                    }
                }
            }

            /// `∂Wᵀ [m, np] += Hᵀ D`, and `+= Gᵀ X` where `x` is given, over the panel's
            /// `rows` samples, tile by tile.
            #[target_feature(enable = $features)]
            unsafe fn accumulate_dwt(
                buf: &mut Buffers,
                (m, np, mp): (usize, usize, usize),
                rows: usize,
                x: Option<Samples>,
            ) {
                let vectors = np / 8;
                let mut j = 0;
                unsafe {
                    while j < m {
                        let units = if m - j >= DWT_UNITS { DWT_UNITS } else { 1 };
                        let mut c = 0;
                        while c < vectors {
                            let width = if vectors - c >= DWT_VECTORS {
                                DWT_VECTORS
                            } else {
                                1
                            };
                            let at = (np, mp, rows, j, c);
                            match (units == DWT_UNITS, width == DWT_VECTORS) {
                                (true, true) => dwt_tile::<DWT_UNITS, DWT_VECTORS>(buf, at, x),
                                (true, false) => dwt_tile::<DWT_UNITS, 1>(buf, at, x),
                                (false, true) => dwt_tile::<1, DWT_VECTORS>(buf, at, x),
                                (false, false) => dwt_tile::<1, 1>(buf, at, x),
                            }
                            c += width;
                        }
                        j += units;
                    }
                }
            }

            #[target_feature(enable = $features)]
            unsafe fn dwt_tile<const JT: usize, const CT: usize>(
                buf: &mut Buffers,
                (np, mp, rows, j, c): (usize, usize, usize, usize, usize),
                x: Option<Samples>,
            ) {
                unsafe {
                    let dwt = buf.dwt.as_mut_ptr().add(j * np + 8 * c);
                    let mut acc: [[__m256; CT]; JT] = std::array::from_fn(|t| {
                        std::array::from_fn(|k| _mm256_loadu_ps(dwt.add(t * np + 8 * k)))
                    });
                    for r in 0..rows {
                        let d = buf.d.as_ptr().add(r * np + 8 * c);
                        let d: [__m256; CT] =
                            std::array::from_fn(|k| _mm256_loadu_ps(d.add(8 * k)));
                        for (t, acc) in acc.iter_mut().enumerate() {
                            let hv = _mm256_broadcast_ss(&*buf.h.as_ptr().add(r * mp + j + t));
                            for k in 0..CT {
                                acc[k] = _mm256_fmadd_ps(hv, d[k], acc[k]);
                            }
                        }
                        if let Some(x) = x {
                            let xr = x.x.add(r * x.stride + 8 * c);
                            let xv: [__m256; CT] =
                                std::array::from_fn(|k| _mm256_loadu_ps(xr.add(8 * k)));
                            for (t, acc) in acc.iter_mut().enumerate() {
                                let gv = _mm256_broadcast_ss(&*buf.g.as_ptr().add(r * mp + j + t));
                                for k in 0..CT {
                                    acc[k] = _mm256_fmadd_ps(gv, xv[k], acc[k]);
                                }
                            }
                        }
                    }
                    for (t, acc) in acc.iter().enumerate() {
                        for (k, &v) in acc.iter().enumerate() {
                            _mm256_storeu_ps(dwt.add(t * np + 8 * k), v);
                        }
                    }
                }
            }

            #[target_feature(enable = $features)]
            fn horizontal_sum(v: __m256) -> f32 {
                let pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
                let two = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
                _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps::<1>(two, two)))
            }
        }
    };
}

kernel!(avx2, "avx2,fma", block 3, z 3, dwt 2);
kernel!(avx512, "avx2,fma,avx512f,avx512vl", block 4, z 5, dwt 4);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::superposition::data::SparseBatch;
    use crate::superposition::model::instance_plain as plain;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Both variants of the fused kernel against the plain products on shapes that leave
    /// partial vectors and blocks everywhere: dense and sparse batches, ReLU and linear outputs.
    #[test]
    fn equals_the_products_on_ragged_shapes() {
        if !crate::model::kernels::cpu::has_avx2_fma() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(7);
        for &(n, m, rows, p) in &[
            (37, 20, 1027, 0.4),
            (200, 20, 64, 0.05),
            (5, 2, 9, 0.9),
            (2, 1, 3, 1.0),
            (61, 32, 50, 0.2),
            (16, 9, 7, 0.5),
        ] {
            let w: Vec<f32> = (0..n * m).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.random_range(-0.3..0.1)).collect();
            let imp: Vec<f32> = (0..n).map(|_| rng.random_range(0.1..1.0)).collect();
            let x: Vec<f32> = (0..rows * n)
                .map(|_| {
                    if rng.random_bool(p) {
                        rng.random()
                    } else {
                        0.0
                    }
                })
                .collect();
            let sparse = SparseBatch::from_dense(&x, n);
            for batch in [
                Batch::Dense { rows, x: x.clone() },
                Batch::Sparse(sparse.clone()),
            ] {
                for (output, wide) in [
                    (Output::Relu, false),
                    (Output::Linear, false),
                    (Output::Relu, true),
                    (Output::Linear, true),
                ] {
                    if wide && !std::arch::is_x86_feature_detected!("avx512vl") {
                        continue;
                    }
                    let (mut dw0, mut db0) = (vec![0.0; n * m], vec![0.0; n]);
                    let (mut dw1, mut db1) = (vec![9.0; n * m], vec![9.0; n]);
                    let l0 = plain((n, m), output, &w, &b, &imp, &batch, &mut dw0, &mut db0);
                    let relu = output == Output::Relu;
                    let weights = (&w[..], &b[..], &imp[..]);
                    let l1 = on_variant(wide, (n, m), relu, weights, &batch, &mut dw1, &mut db1);
                    let close = |a: &[f32], b: &[f32]| {
                        let scale = b.iter().fold(1e-12f32, |s, v| s.max(v.abs()));
                        a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-5 * scale)
                    };
                    let what = format!("n {n} m {m} rows {rows} p {p} {output:?} wide {wide}");
                    assert!((l0 - l1).abs() <= 1e-5 * l0.abs(), "{what}: loss {l0} {l1}");
                    assert!(close(&dw1, &dw0), "{what}: ∂W");
                    assert!(close(&db1, &db0), "{what}: ∂b");
                }
            }
        }
    }
}
