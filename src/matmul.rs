//! Matrix products that every backend accepts.
//!
//! candle's CPU matmul takes operands of any strides; its CUDA matmul (cuBLAS's strided batched
//! gemm) takes each operand only with its last two dimensions row-major or transposed and its
//! batch dimensions evenly strided, and fails on anything else (a row narrowed out of a wider
//! tensor, say). A bug of that kind is invisible to CPU tests, so every product in toylens goes
//! through [`Matmul::mm`]: it checks the operands by cuBLAS's rule on every device, copies an
//! operand that breaks it, and under [`crate::device::gpu_rules`] refuses it as CUDA would, so
//! that the CPU test suite finds every call site that would fail on a GPU.

use candle_core::{Layout, Tensor};

pub trait Matmul {
    /// `self [.., m, k] · rhs [.., k, n]`, as `Tensor::matmul`, on operands a GPU accepts.
    fn mm(&self, rhs: &Tensor) -> candle_core::Result<Tensor>;
}

impl Matmul for Tensor {
    fn mm(&self, rhs: &Tensor) -> candle_core::Result<Tensor> {
        if self.rank() < 2 || self.rank() != rhs.rank() {
            // candle's own message says what is wrong with the shapes.
            return self.matmul(rhs);
        }
        match cublas_rejects(self.layout(), rhs.layout()) {
            None => self.matmul(rhs),
            Some(why) if crate::device::gpu_rules() => candle_core::bail!(
                "matmul operands a GPU would reject ({why}): lhs {:?}, rhs {:?}",
                self.layout(),
                rhs.layout()
            ),
            Some(_) => gemm_ready(self)?.matmul(&gemm_ready(rhs)?),
        }
    }
}

/// `t` itself when cuBLAS takes it as an operand, else a contiguous copy.
fn gemm_ready(t: &Tensor) -> candle_core::Result<Tensor> {
    let (l, r) = (t.layout(), t.rank());
    if operand_ok(l, t.dim(r - 2)?, t.dim(r - 1)?) && batch_ok(l) {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}

/// Why candle's CUDA backend (`gemm_config` in candle-core 0.11) would refuse `lhs · rhs`, or
/// `None` if it takes them. Shapes must already agree (rank ≥ 2, equal ranks).
pub fn cublas_rejects(lhs: &Layout, rhs: &Layout) -> Option<&'static str> {
    let (r, l) = (lhs.dims().len(), lhs.dims());
    let (m, k, n) = (l[r - 2], l[r - 1], rhs.dims()[r - 1]);
    if !operand_ok(lhs, m, k) {
        Some("the lhs is neither row-major nor transposed in its last two dimensions")
    } else if !operand_ok(rhs, k, n) {
        Some("the rhs is neither row-major nor transposed in its last two dimensions")
    } else if !batch_ok(lhs) || !batch_ok(rhs) {
        Some("the batch dimensions are not evenly strided")
    } else {
        None
    }
}

/// An operand `[.., rows, cols]` is usable when its last two dimensions are row-major (unit
/// column stride, row stride `cols`) or transposed (unit row stride, column stride `rows`); a
/// dimension of size 1 may have any stride.
fn operand_ok(layout: &Layout, rows: usize, cols: usize) -> bool {
    let s = layout.stride();
    let (row_stride, col_stride) = (s[s.len() - 2], s[s.len() - 1]);
    let row_major = (col_stride == 1 || cols == 1) && (row_stride == cols || rows == 1);
    let transposed = (col_stride == rows || cols == 1) && (row_stride == 1 || rows == 1);
    row_major || transposed
}

/// At most two batch dimensions, which cuBLAS must see as one evenly strided batch.
fn batch_ok(layout: &Layout) -> bool {
    let (dims, stride) = (layout.dims(), layout.stride());
    match stride[..stride.len() - 2] {
        [] | [_] => true,
        [outer, inner] => outer == inner * dims[1] || dims[0] == 1 || dims[1] == 1,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    fn t(dims: &[usize]) -> Tensor {
        let n: usize = dims.iter().product();
        Tensor::arange(0f32, n as f32, &Device::Cpu)
            .unwrap()
            .reshape(dims)
            .unwrap()
    }

    #[test]
    fn accepts_what_cublas_accepts() {
        let (a, b) = (t(&[3, 4]), t(&[4, 5]));
        assert_eq!(cublas_rejects(a.layout(), b.layout()), None);
        // Transposes are free for cuBLAS.
        let bt = t(&[5, 4]).t().unwrap();
        assert_eq!(cublas_rejects(a.layout(), bt.layout()), None);
        // Batched, with a broadcast (stride 0) batch.
        let w = t(&[4, 5])
            .unsqueeze(0)
            .unwrap()
            .broadcast_as((2, 4, 5))
            .unwrap();
        assert_eq!(cublas_rejects(t(&[2, 3, 4]).layout(), w.layout()), None);
        // A single row narrowed out of a wider tensor: one row's stride does not matter.
        let row = t(&[4, 8]).narrow(1, 0, 4).unwrap().i(1..2).unwrap();
        assert_eq!(cublas_rejects(row.layout(), b.layout()), None);
    }

    #[test]
    fn rejects_what_cuda_rejected() {
        // The layout from the GPU report: [3, 11] rows of a [.., 44] tensor, from offset 33.
        let wide = t(&[4, 44]).narrow(1, 0, 11).unwrap().i(1..4).unwrap();
        let w = t(&[11, 7]);
        assert!(cublas_rejects(wide.layout(), w.layout()).is_some());
        assert!(cublas_rejects(t(&[7, 3]).layout(), wide.t().unwrap().layout()).is_some());
        // Five dimensions are more batch dimensions than the backend folds.
        assert!(
            cublas_rejects(t(&[1, 1, 1, 3, 4]).layout(), t(&[1, 1, 1, 4, 2]).layout()).is_some()
        );
        // mm repairs it off the GPU rules, with candle's own answer.
        let want = wide.contiguous().unwrap().matmul(&w).unwrap();
        let got = wide.mm(&w).unwrap();
        assert_eq!(
            got.to_vec2::<f32>().unwrap(),
            want.to_vec2::<f32>().unwrap()
        );
    }

    #[test]
    fn a_contiguous_copy_is_always_accepted() {
        for dims in [[1usize, 1, 1, 5], [2, 1, 3, 1], [1, 3, 1, 4], [2, 3, 4, 5]] {
            let x = t(&dims)
                .permute((3, 1, 2, 0))
                .unwrap()
                .contiguous()
                .unwrap();
            let d = x.dims().to_vec();
            let y = t(&[d[0], d[1], d[3], 2]);
            assert_eq!(cublas_rejects(x.layout(), y.layout()), None, "{dims:?}");
        }
    }
}
