//! Products and sums in a fixed order, for the full activation cache on a GPU.
//!
//! A model's activations are compared with TransformerLens's to 1e-5, and some of them sit
//! there at float32's own noise: where large terms cancel, a reordered sum moves a logit by
//! more than that (even exact arithmetic lands outside the tolerance of TL's fixture on one
//! case). The CPU takes every product's terms in index order with fused multiply-adds (the
//! `gemm` crate, like PyTorch's CPU kernels on these sizes) and sums reductions in index order,
//! and so rounds much as TL did. cuBLAS and candle's CUDA reductions split their sums into
//! trees, which put one logit of a fixture just outside the tolerance. So a forward pass that
//! captures every hook runs on a GPU with [`Order::Sequential`]: each product one thread per
//! output, its terms in index order with `fmaf` (one kernel, compiled at run time by NVRTC),
//! sums as products with a vector of ones, and `exp` and the MLP's activation rounded from
//! float64, as the CPU's libm rounds them; the GPU then gives the CPU's figures (all figures:
//! benches/MEASUREMENTS.md). Only the full cache (the inspector's single sequences) takes it;
//! training, evaluation and batched analyses keep cuBLAS.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

use crate::matmul::Matmul;

/// How a forward pass orders its sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The backend's own kernels (cuBLAS, tree reductions on a GPU).
    Backend,
    /// Every product's terms and every reduction in index order (see the module's docs).
    Sequential,
}

impl Order {
    /// `a [.., m, k] · b [.., k, n]`.
    pub fn mm(self, a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Order::Sequential if a.dtype() == DType::F32 && b.dtype() == DType::F32 => {
                sequential_mm(a, b)
            }
            _ => a.mm(b),
        }
    }

    /// The sum over `dim`, kept as a dimension of size 1.
    pub fn sum_keepdim(self, x: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
        if self == Order::Backend || x.dtype() != DType::F32 {
            return x.sum_keepdim(dim);
        }
        // Summing `dim` is a product of its values, made the last dimension, with ones.
        let last = x.rank() - 1;
        let moved = if dim == last {
            x.clone()
        } else {
            x.transpose(dim, last)?
        };
        let n = moved.dim(last)?;
        let rows = moved.elem_count() / n;
        let ones = Tensor::ones((1, n, 1), DType::F32, x.device())?;
        let summed = sequential_mm(&moved.contiguous()?.reshape((1, rows, n))?, &ones)?;
        let mut dims = moved.dims().to_vec();
        dims[last] = 1;
        let summed = summed.reshape(dims)?;
        if dim == last {
            Ok(summed)
        } else {
            summed.transpose(dim, last)?.contiguous()
        }
    }

    pub fn sum(self, x: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
        self.sum_keepdim(x, dim)?.squeeze(dim)
    }

    /// The mean over `dim`, kept, as candle computes it (the sum times `1/n`).
    pub fn mean_keepdim(self, x: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
        let n = x.dim(dim)?;
        self.sum_keepdim(x, dim)? * (1f64 / n as f64)
    }

    pub fn exp(self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.in_f64(x, |x| x.exp())
    }

    /// `f(x)`, computed in float64 and rounded back under [`Order::Sequential`].
    pub fn in_f64(
        self,
        x: &Tensor,
        f: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        match self {
            Order::Sequential if x.dtype() == DType::F32 => {
                f(&x.to_dtype(DType::F64)?)?.to_dtype(DType::F32)
            }
            _ => f(x),
        }
    }
}

/// `a [.., m, k] · b [.., k, n]` (equal batch dimensions, float32), each output's terms summed in
/// index order with fused multiply-adds.
fn sequential_mm(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let r = a.rank();
    if r < 2 || b.rank() != r || a.dims()[..r - 2] != b.dims()[..r - 2] {
        return a.mm(b); // candle's message names the mismatch
    }
    let (m, k, n) = (a.dim(r - 2)?, a.dim(r - 1)?, b.dim(r - 1)?);
    if k != b.dim(r - 2)? {
        return a.mm(b);
    }
    let batch = a.dims()[..r - 2].iter().product::<usize>();
    let a3 = a.contiguous()?.reshape((batch, m, k))?;
    let b3 = b.contiguous()?.reshape((batch, k, n))?;
    let mut dims = a.dims().to_vec();
    dims[r - 1] = n;
    a3.apply_op2_no_bwd(&b3, &SequentialMatmul)?.reshape(dims)
}

/// The op behind [`sequential_mm`]: `[batch, m, k] · [batch, k, n]`, both contiguous.
struct SequentialMatmul;

fn dims3(l: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    if !l.is_contiguous() {
        candle_core::bail!("sequential matmul: operands must be contiguous");
    }
    l.shape().dims3()
}

impl CustomOp2 for SequentialMatmul {
    fn name(&self) -> &'static str {
        "sequential-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let ((batch, m, k), (_, _, n)) = (dims3(l1)?, dims3(l2)?);
        let a = &s1.as_slice::<f32>()?[l1.start_offset()..];
        let b = &s2.as_slice::<f32>()?[l2.start_offset()..];
        let mut out = vec![0f32; batch * m * n];
        for (idx, o) in out.iter_mut().enumerate() {
            let (t, i, j) = (idx / (m * n), idx / n % m, idx % n);
            let row = &a[(t * m + i) * k..][..k];
            let col = &b[t * k * n + j..];
            *o = row
                .iter()
                .enumerate()
                .fold(0f32, |acc, (p, x)| x.mul_add(col[p * n], acc));
        }
        Ok((CpuStorage::F32(out), Shape::from((batch, m, n))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::WrapErr;
        use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};

        let ((batch, m, k), (_, _, n)) = (dims3(l1)?, dims3(l2)?);
        let dev = s1.device();
        let func =
            dev.get_or_load_custom_func("sequential_mm", "toylens_ordered", kernel_ptx()?)?;
        let a = s1.as_cuda_slice::<f32>()?.slice(l1.start_offset()..);
        let b = s2.as_cuda_slice::<f32>()?.slice(l2.start_offset()..);
        let total = batch * m * n;
        // SAFETY: the kernel writes every element.
        let out = unsafe { dev.alloc::<f32>(total)? };
        let (total_u, m_u, k_u, n_u) = (total as u64, m as u64, k as u64, n as u64);
        let mut builder = func.builder();
        builder.arg(&a);
        builder.arg(&b);
        builder.arg(&out);
        builder.arg(&total_u);
        builder.arg(&m_u);
        builder.arg(&k_u);
        builder.arg(&n_u);
        // SAFETY: the arguments match the kernel's signature and the buffers' sizes.
        unsafe { builder.launch(LaunchConfig::for_num_elems(total as u32)) }.w()?;
        let out = candle_core::CudaStorage::wrap_cuda_slice(out, dev.clone());
        Ok((out, Shape::from((batch, m, n))))
    }
}

/// One thread per output; its terms in index order, as `cpu_fwd` takes them.
#[cfg(feature = "cuda")]
const KERNEL: &str = r#"
extern "C" __global__ void sequential_mm(const float* a, const float* b, float* out,
        unsigned long long total, unsigned long long m, unsigned long long k,
        unsigned long long n) {
    unsigned long long idx = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    unsigned long long t = idx / (m * n), i = idx / n % m, j = idx % n;
    const float* row = a + (t * m + i) * k;
    const float* col = b + t * k * n + j;
    float acc = 0.0f;
    for (unsigned long long p = 0; p < k; ++p) acc = fmaf(row[p], col[p * n], acc);
    out[idx] = acc;
}
"#;

/// The kernel's PTX, compiled once per process.
#[cfg(feature = "cuda")]
fn kernel_ptx() -> candle_core::Result<&'static str> {
    use candle_core::cuda_backend::cudarc::nvrtc;
    static PTX: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    PTX.get_or_init(|| {
        nvrtc::compile_ptx(KERNEL)
            .map(|ptx| ptx.to_src())
            .map_err(|e| format!("compiling the sequential matmul kernel: {e}"))
    })
    .as_deref()
    .map_err(|e| candle_core::Error::Msg(e.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let n = shape.iter().product::<usize>();
        let mut state = seed;
        let data: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn sequential_products_take_their_terms_in_index_order_with_fused_multiply_adds() {
        let (a, b) = (random(&[2, 3, 5, 7], 1), random(&[2, 3, 7, 4], 2));
        let got = Order::Sequential.mm(&a, &b).unwrap();
        assert_eq!(got.dims(), &[2, 3, 5, 4]);
        let (av, bv) = (
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        let gv = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for t in 0..6 {
            for i in 0..5 {
                for j in 0..4 {
                    let mut acc = 0f32;
                    for p in 0..7 {
                        acc = av[t * 35 + i * 7 + p].mul_add(bv[t * 28 + p * 4 + j], acc);
                    }
                    assert_eq!(gv[t * 20 + i * 4 + j].to_bits(), acc.to_bits());
                }
            }
        }
        // The same product as candle's, up to rounding.
        let want = a.mm(&b).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn sequential_sums_add_in_index_order_over_any_dimension() {
        let x = random(&[3, 4, 5], 3);
        let v = x.to_vec3::<f32>().unwrap();
        for dim in 0..3 {
            let got = Order::Sequential.sum_keepdim(&x, dim).unwrap();
            let mut want_dims = [3, 4, 5];
            want_dims[dim] = 1;
            assert_eq!(got.dims(), &want_dims[..]);
            let backend = x.sum_keepdim(dim).unwrap();
            let close = (&got - &backend).unwrap().abs().unwrap().max_all().unwrap();
            assert!(close.to_scalar::<f32>().unwrap() < 1e-5);
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            // Element (0, 0, 0)'s sum, term by term.
            let mut acc = 0f32;
            for i in 0..[3, 4, 5][dim] {
                let mut at = [0, 0, 0];
                at[dim] = i;
                acc += v[at[0]][at[1]][at[2]];
            }
            assert_eq!(got[0].to_bits(), acc.to_bits(), "dim {dim}");
        }
        let mean = Order::Sequential.mean_keepdim(&x, 2).unwrap();
        let want = x.mean_keepdim(2).unwrap();
        let diff = (mean - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }

    #[test]
    fn backend_order_is_candles_own() {
        let (a, b) = (random(&[4, 6], 4), random(&[6, 3], 5));
        let got = Order::Backend.mm(&a, &b).unwrap();
        let want = a.mm(&b).unwrap();
        assert_eq!(
            got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
}
