//! What the fused CPU ops share: their thread pool, a checked gemm call with transposes as
//! strides, and row-wise bias helpers.

use candle_core::{CpuStorage, Layout, WithDType};

/// The fused ops' own threads, one per core (at most 4): they run their matrix products and
/// sequences in parallel whatever candle's thread count is (toylens keeps candle at one thread,
/// where its per-op synchronisation would cost more than a second core brings).
pub fn pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        // A sweep's runs share the cores: each is told its share (`TOYLENS_THREADS`).
        let n = std::env::var("TOYLENS_THREADS")
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .min(4);
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("toylens-attention-{i}"))
            .build()
            .unwrap_or_else(|_| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .expect("a one-thread pool")
            })
    })
}

/// The elements of a contiguous tensor's CPU storage (f32 values, u32 tokens): the one way every
/// fused op reads its inputs.
pub fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("fused ops need contiguous inputs".into()))?;
    Ok(&s.as_slice::<T>()?[a..b])
}

/// `dst[m×n] (+)= a[m×k] · b[k×n]`, each operand given as `(slice, row stride, column stride)`
/// so that transposes are free. Every index is checked against the slices first. A large
/// product runs on the current pool's threads.
pub fn matmul(
    dst: &mut [f32],
    dims: (usize, usize, usize),
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    accumulate: bool,
) {
    let parallel = dims.0 * dims.1 * dims.2 >= 1 << 18;
    matmul_on((dst, dims.1), dims, a, b, accumulate, parallel);
}

/// [`matmul`] on this thread alone: for products that already run side by side, one per
/// thread, where splitting each again only adds synchronisation.
pub fn matmul_serial(
    dst: &mut [f32],
    dims: (usize, usize, usize),
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    accumulate: bool,
) {
    matmul_on((dst, dims.1), dims, a, b, accumulate, false);
}

/// [`matmul_serial`] into rows `dst_row_stride` apart (a matrix with padded rows): the
/// columns past `n` are left as they were.
pub fn matmul_serial_into(
    (dst, dst_row_stride): (&mut [f32], usize),
    dims: (usize, usize, usize),
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    accumulate: bool,
) {
    assert!(dst_row_stride >= dims.1, "matmul destination rows overlap");
    matmul_on((dst, dst_row_stride), dims, a, b, accumulate, false);
}

fn matmul_on(
    (dst, dst_rs): (&mut [f32], usize),
    (m, n, k): (usize, usize, usize),
    (a, a_rs, a_cs): (&[f32], usize, usize),
    (b, b_rs, b_cs): (&[f32], usize, usize),
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(
        dst.len() >= (m - 1) * dst_rs + n,
        "matmul destination too small"
    );
    assert!(
        (m - 1) * a_rs + (k - 1) * a_cs < a.len(),
        "matmul lhs out of range"
    );
    assert!(
        (k - 1) * b_rs + (n - 1) * b_cs < b.len(),
        "matmul rhs out of range"
    );
    // SAFETY: every element gemm reads or writes is inside the slices, checked above; dst does
    // not alias a or b (a `&mut` and two `&` borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            if parallel {
                gemm::Parallelism::Rayon(rayon::current_num_threads())
            } else {
                gemm::Parallelism::None
            },
        )
    }
}

/// Runs `f` compiled for AVX2 where the CPU has it: `f`'s loops, inlined here, then run eight
/// floats at a time. Only for code whose result does not depend on the vector width
/// (elementwise work, or sums that keep each element's own order), and only for short loops:
/// a closure LLVM does not inline keeps the baseline code (Adam's update, a longer body, did
/// not inline, so it has its own `#[target_feature]` function).
#[inline(always)]
pub fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if has_avx2() {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// Whether the CPU has AVX2: the host kernels' row loops and Adam's update then run their AVX2
/// code. The one place the kernels ask (std caches the answer).
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU has AVX2 and FMA, which the attention core's vector code needs.
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x[r] += bias` for every row `r` of `x` (rows of `bias.len()`).
pub fn add_rows(x: &mut [f32], bias: &[f32]) {
    with_avx2(|| {
        for row in x.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    })
}

/// `out[c] = Σ_r x[r][c]` over the rows of `x` (rows of `cols`), each column summed in row
/// order.
pub fn column_sums(x: &[f32], cols: usize, out: &mut [f32]) {
    with_avx2(|| {
        out.fill(0.0);
        for row in x.chunks_exact(cols) {
            for (o, v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
    })
}
