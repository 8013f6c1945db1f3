//! The attention pattern in one fused CPU op: `softmax(scores / scale)` over the keys with the
//! causal mask, forward and backward. Composed from candle's ops, the same computation is six
//! ops forward (divide, mask, max, subtract, exp, sum and scale) and a dozen backward, each a
//! full pass over `[batch, head, query, key]`; fused it is one pass each way.
//!
//! The arithmetic is the composed version's, in the same order: `s = x / scale` (a true
//! division), `e = exp(s − max)`, the sum of `e` over the visible keys, and `e` times the
//! reciprocal of that sum. Masked keys (after the query) get exactly 0.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

use super::softmax::softmax_in_place;

/// `scores` `[.., n, n]` (contiguous) to the causal attention pattern.
pub struct CausalSoftmax {
    pub scale: f32,
}

fn square_rows(layout: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("causal softmax needs a contiguous input".into()))?;
    let dims = layout.dims();
    let n = *dims.last().unwrap_or(&0);
    if dims.len() < 2 || dims[dims.len() - 2] != n {
        candle_core::bail!("causal softmax needs [.., n, n] scores, got {dims:?}");
    }
    Ok((start, end, n))
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end, n) = square_rows(layout)?;
        let x = &storage.as_slice::<f32>()?[start..end];
        let mut out = vec![0f32; x.len()];
        for (row_in, (q, row_out)) in x
            .chunks_exact(n)
            .zip(out.chunks_exact_mut(n).enumerate().map(|(i, r)| (i % n, r)))
        {
            let visible = &mut row_out[..=q];
            for (o, &v) in visible.iter_mut().zip(&row_in[..=q]) {
                *o = v / self.scale;
            }
            softmax_in_place(visible, 1.0);
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        Ok(Some(res.apply_op2_no_bwd(
            &grad,
            &CausalSoftmaxGrad { scale: self.scale },
        )?))
    }
}

/// d scores = p ⊙ (g − Σ_k g·p) / scale, row by row.
struct CausalSoftmaxGrad {
    scale: f32,
}

impl CustomOp2 for CausalSoftmaxGrad {
    fn name(&self) -> &'static str {
        "causal-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        p_storage: &CpuStorage,
        p_layout: &Layout,
        g_storage: &CpuStorage,
        g_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (ps, pe, n) = square_rows(p_layout)?;
        let (gs, ge, _) = square_rows(g_layout)?;
        let p = &p_storage.as_slice::<f32>()?[ps..pe];
        let g = &g_storage.as_slice::<f32>()?[gs..ge];
        let mut out = vec![0f32; p.len()];
        for (i, ((pr, gr), or)) in p
            .chunks_exact(n)
            .zip(g.chunks_exact(n))
            .zip(out.chunks_exact_mut(n))
            .enumerate()
        {
            let q = i % n;
            let dot: f32 = pr[..=q].iter().zip(&gr[..=q]).map(|(a, b)| a * b).sum();
            for k in 0..=q {
                or[k] = pr[k] * (gr[k] - dot) / self.scale;
            }
        }
        Ok((CpuStorage::F32(out), p_layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device, Var};

    /// The fused op against the same computation composed from candle's ops, forward and
    /// backward, on random scores.
    #[test]
    fn matches_the_composed_softmax_and_its_gradient() {
        let dev = Device::Cpu;
        let n = 7;
        let scores =
            Var::from_tensor(&(Tensor::randn(0f32, 3.0, (2, 3, n, n), &dev).unwrap())).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (2, 3, n, n), &dev).unwrap();
        let scale = 2.5f32;
        let fused = scores
            .as_tensor()
            .apply_op1(CausalSoftmax { scale })
            .unwrap();
        let mask = crate::model::attention::causal_mask(n, &dev).unwrap();
        let composed = candle_nn::ops::softmax(
            &(scores.as_tensor() / scale as f64)
                .unwrap()
                .broadcast_add(&mask)
                .unwrap(),
            D::Minus1,
        )
        .unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(diff(&fused, &composed) < 1e-6);
        let g1 = (fused * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g2 = (composed * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (a, b) = (
            g1.get(scores.as_tensor()).unwrap(),
            g2.get(scores.as_tensor()).unwrap(),
        );
        assert!(diff(a, b) < 1e-5, "{}", diff(a, b));
    }
}
