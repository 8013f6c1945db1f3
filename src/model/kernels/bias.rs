//! Adding a bias to every row, with a backward that sums the gradient's columns in one pass.
//! Candle's `broadcast_add` is correct but its backward reduces over the broadcast rows with a
//! generic strided fold, a large part of a small model's training step in the profile
//! (benches/MEASUREMENTS.md); this op is the same arithmetic with a contiguous column sum.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};

use super::cpu::slice;

/// `x [.., c] + b [c]`, every row; by the fused op where the plan has fused kernels (`fused`)
/// and the operands are the f32, contiguous ones it takes.
pub fn add_bias(x: &Tensor, b: &Tensor, fused: bool) -> candle_core::Result<Tensor> {
    let fits = x.dtype() == DType::F32 && b.dtype() == DType::F32;
    if fused && fits && x.is_contiguous() && b.is_contiguous() && b.rank() == 1 {
        x.apply_op2(b, AddBias)
    } else {
        x.broadcast_add(b)
    }
}

struct AddBias;

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "add-bias"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, b) = (slice::<f32>(x, x_layout)?, slice::<f32>(b, b_layout)?);
        if b.is_empty() || x.len() % b.len() != 0 || x_layout.dims().last() != Some(&b.len()) {
            candle_core::bail!(
                "add_bias: a bias of {} does not fit rows of {:?}",
                b.len(),
                x_layout.dims()
            );
        }
        let mut out = x.to_vec();
        for row in out.chunks_exact_mut(b.len()) {
            for (o, &v) in row.iter_mut().zip(b) {
                *o += v;
            }
        }
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_b = grad.contiguous()?.apply_op1_no_bwd(&ColumnSum)?;
        Ok((Some(grad.clone()), Some(grad_b)))
    }
}

/// `[.., c]` to `[c]`: the sum over every row.
struct ColumnSum;

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice::<f32>(s, layout)?;
        let c = *layout.dims().last().unwrap_or(&1);
        let mut out = vec![0f32; c];
        for row in x.chunks_exact(c.max(1)) {
            for (o, &v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_broadcast_add_forward_and_backward() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 3, 4), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 4, &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (5, 3, 4), &dev).unwrap();
        let fused = add_bias(x.as_tensor(), b.as_tensor(), true).unwrap();
        let plain = x.as_tensor().broadcast_add(b.as_tensor()).unwrap();
        let max = |t: Tensor| crate::model::max_abs(&t);
        assert_eq!(max((&fused - &plain).unwrap()), 0.0);
        let g1 = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (plain * &w).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &b] {
            let d = (g1.get(v.as_tensor()).unwrap() - g2.get(v.as_tensor()).unwrap()).unwrap();
            assert!(max(d) < 1e-5);
        }
    }
}
