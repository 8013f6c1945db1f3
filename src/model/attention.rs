//! Causal multi-head attention, as TransformerLens computes it.

use candle_core::Tensor;

use super::edits::{Blend, apply_all};
use super::hooks::Hooks;
use super::kernels::attention_block::{AttentionBlock, BlockShape};
use super::kernels::attention_core::CausalAttention;
use super::kernels::bias::add_bias;
use super::kernels::causal_softmax::CausalSoftmax;
use super::kernels::ordered::Order;
use super::plan::AttentionKernel;
use crate::matmul::Matmul;

pub struct AttentionParams<'a> {
    /// `[n_heads, d_model, d_head]`.
    pub w_q: &'a Tensor,
    pub w_k: &'a Tensor,
    pub w_v: &'a Tensor,
    /// `[n_heads, d_head, d_model]`.
    pub w_o: &'a Tensor,
    /// `[n_heads, d_head]`.
    pub b_q: &'a Tensor,
    pub b_k: &'a Tensor,
    pub b_v: &'a Tensor,
    /// `[d_model]`.
    pub b_o: &'a Tensor,
}

/// `x [batch, pos, d_model] · W [h, d_model, d] + b [h, d]` as `[batch, pos, h, d]`.
fn project(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    order: Order,
    fused: bool,
) -> candle_core::Result<Tensor> {
    let (b, p, m) = x.dims3()?;
    let (h, _, d) = w.dims3()?;
    let w = w.permute((1, 0, 2))?.contiguous()?.reshape((m, h * d))?;
    add_bias(
        &order.mm(&x.reshape((b * p, m))?, &w)?,
        &bias.reshape(h * d)?,
        fused,
    )?
    .reshape((b, p, h, d))
}

/// `W [h, m, d]` as the `[m, h*d]` matrix that projects every head at once.
fn heads_matrix(w: &Tensor) -> candle_core::Result<Tensor> {
    let (h, m, d) = w.dims3()?;
    w.permute((1, 0, 2))?.contiguous()?.reshape((m, h * d))
}

/// Queries, keys and values `[b*p, 3, h*d]` for shortformer positions, whose queries and keys
/// read a different input than the values (a shared input takes the fused attention layer).
fn project_qkv(
    p: &AttentionParams,
    qk_input: &Tensor,
    v_input: &Tensor,
) -> candle_core::Result<Tensor> {
    let (b, pos, m) = qk_input.dims3()?;
    let flat = |x: &Tensor| x.reshape((b * pos, m));
    let bias = |bs: &[&Tensor]| -> candle_core::Result<Tensor> {
        Tensor::cat(
            &bs.iter()
                .map(|b| b.flatten_all())
                .collect::<candle_core::Result<Vec<_>>>()?,
            0,
        )
    };
    let w_qk = Tensor::cat(&[heads_matrix(p.w_q)?, heads_matrix(p.w_k)?], 1)?;
    let qk = add_bias(&flat(qk_input)?.mm(&w_qk)?, &bias(&[p.b_q, p.b_k])?, true)?;
    let v = add_bias(
        &flat(v_input)?.mm(&heads_matrix(p.w_v)?)?,
        &bias(&[p.b_v])?,
        true,
    )?;
    // [b*p, 3, h*d] from per-token [q k] and [v] rows.
    let h_d = v.dim(1)?;
    Tensor::cat(
        &[
            qk.reshape((b * pos, 2, h_d))?,
            v.reshape((b * pos, 1, h_d))?,
        ],
        1,
    )
}

/// The attention of one block. The inputs of queries, keys and values are separate because
/// shortformer positions reach only the first two. `mask` is the additive causal mask (0 on and
/// below the diagonal, −inf above) for this length. Returns `hook_attn_out` `[batch, pos,
/// d_model]`. `z_edits` change `hook_z` before `W_O` (ablation, patching), so everything
/// downstream sees it. `kernel` is the plan's; a pass that captures or edits takes the composed
/// path whatever it is.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    p: &AttentionParams,
    query_input: &Tensor,
    key_input: &Tensor,
    value_input: &Tensor,
    mask: &Tensor,
    scale: f64,
    z_edits: &[&Blend],
    hooks: &mut Hooks,
    prefix: &str,
    kernel: AttentionKernel,
) -> candle_core::Result<Tensor> {
    let (b, pos, m) = query_input.dims3()?;
    let (h, _, d) = p.w_q.dims3()?;
    let unobserved = !hooks.capturing() && z_edits.is_empty();
    if unobserved
        && matches!(
            kernel,
            AttentionKernel::Fused | AttentionKernel::FusedResidual
        )
    {
        return fused_layer(p, query_input, scale, false);
    }
    if unobserved && kernel == AttentionKernel::FusedCore {
        let qkv = project_qkv(p, query_input, value_input)?.reshape((b, pos, 3, h, d))?;
        let z = qkv.apply_op1(CausalAttention {
            scale: scale as f32,
        })?;
        let out = z
            .reshape((b * pos, h * d))?
            .mm(&p.w_o.reshape((h * d, m))?)?;
        return add_bias(&out, p.b_o, true)?.reshape((b, pos, m));
    }
    let (order, fused) = (hooks.order(), hooks.fused());
    let q = project(query_input, p.w_q, p.b_q, order, fused)?;
    let k = project(key_input, p.w_k, p.b_k, order, fused)?;
    let v = project(value_input, p.w_v, p.b_v, order, fused)?;
    hooks.add(|| format!("{prefix}.hook_q"), &q);
    hooks.add(|| format!("{prefix}.hook_k"), &k);
    hooks.add(|| format!("{prefix}.hook_v"), &v);
    let q_bh = q.permute((0, 2, 1, 3))?.contiguous()?; // [b, h, q, d]
    let k_bh = k.permute((0, 2, 3, 1))?.contiguous()?; // [b, h, d, k]
    let raw = order.mm(&q_bh, &k_bh)?; // [b, h, q, k], not yet scaled
    let pattern = if fused {
        raw.apply_op1(CausalSoftmax {
            scale: scale as f32,
        })?
    } else {
        softmax(&scaled_masked(&raw, scale, mask)?, 3, order)?
    };
    if hooks.wants(|| format!("{prefix}.hook_attn_scores")) {
        hooks.add(
            || format!("{prefix}.hook_attn_scores"),
            &scaled_masked(&raw, scale, mask)?,
        );
    }
    hooks.add(|| format!("{prefix}.hook_pattern"), &pattern);
    let v_bh = v.permute((0, 2, 1, 3))?.contiguous()?; // [b, h, k, d]
    let z_bh = order.mm(&pattern, &v_bh)?; // [b, h, q, d]
    let z = apply_all(z_edits, &z_bh.permute((0, 2, 1, 3))?.contiguous()?)?; // [b, q, h, d]
    let z = hooks.pass(|| format!("{prefix}.hook_z"), z)?;
    let out = if hooks.wants(|| format!("{prefix}.hook_result")) {
        // Each head's write to the residual stream, without b_O, as TL computes it with
        // `use_attn_result` (products, then a sum over d_head): [b, p, h, d, 1] · [h, d, m].
        // (One gemm per head instead rounded further from TL's numbers on a GPU; see
        // benches/MEASUREMENTS.md.)
        let products = z
            .unsqueeze(4)?
            .broadcast_mul(&p.w_o.unsqueeze(0)?.unsqueeze(0)?)?;
        let result = order.sum(&products, 3)?; // [b, p, h, m]
        hooks.add(|| format!("{prefix}.hook_result"), &result);
        order.sum(&result, 2)?
    } else {
        order
            .mm(&z.reshape((b * pos, h * d))?, &p.w_o.reshape((h * d, m))?)?
            .reshape((b, pos, m))?
    };
    add_bias(&out.contiguous()?, p.b_o, fused)
}

/// The whole layer as one CPU op, from TL's own tensors flattened and joined (no transposes in
/// the graph); with `residual`, its output is `x + attention(x)`.
fn fused_layer(
    p: &AttentionParams,
    x: &Tensor,
    scale: f64,
    residual: bool,
) -> candle_core::Result<Tensor> {
    let (b, pos, m) = x.dims3()?;
    let (h, _, d) = p.w_q.dims3()?;
    let block = AttentionBlock::new(BlockShape {
        batch: b,
        pos,
        heads: h,
        d_head: d,
        d_model: m,
        scale: scale as f32,
        residual,
    });
    let packed = Tensor::cat(
        &[p.w_q, p.w_k, p.w_v, p.w_o, p.b_q, p.b_k, p.b_v, p.b_o]
            .iter()
            .map(|t| t.flatten_all())
            .collect::<candle_core::Result<Vec<_>>>()?,
        0,
    )?;
    let flat = x.reshape((b * pos, m))?.contiguous()?;
    flat.apply_op2(&packed, block)?.reshape((b, pos, m))
}

/// `resid + attention(resid)` as one fused CPU op, for a layer that reads the residual stream
/// itself (the plan's [`AttentionKernel::FusedResidual`]) when nothing is captured or edited.
pub fn fused_residual_layer(
    p: &AttentionParams,
    resid: &Tensor,
    scale: f64,
) -> candle_core::Result<Tensor> {
    fused_layer(p, resid, scale, true)
}

/// The additive causal mask `[n, n]`: 0 on and below the diagonal, −inf above (TL's `IGNORE`).
pub fn causal_mask(n: usize, device: &candle_core::Device) -> candle_core::Result<Tensor> {
    let mask: Vec<f32> = (0..n * n)
        .map(|i| {
            if i % n > i / n {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_vec(mask, (n, n), device)
}

/// TL's `hook_attn_scores`: the scores divided by the scale (a true division, as torch does it;
/// candle's `/ f64` multiplies by the reciprocal, which rounds differently), −inf where masked.
fn scaled_masked(raw: &Tensor, scale: f64, mask: &Tensor) -> candle_core::Result<Tensor> {
    let scale = Tensor::new(scale, raw.device())?.to_dtype(raw.dtype())?;
    raw.broadcast_div(&scale)?.broadcast_add(mask)
}

/// Softmax over dimension `dim` as PyTorch's CPU kernel computes it: `exp(x − max)` times the
/// reciprocal of its sum (not a division), which keeps toylens's patterns within an ulp of TL's.
/// The composed twin of [`super::kernels::softmax`], for tensors on any device.
pub fn softmax(x: &Tensor, dim: usize, order: Order) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(dim)?;
    let exp = order.exp(&x.broadcast_sub(&max)?)?;
    let sum = order.sum_keepdim(&exp, dim)?;
    exp.broadcast_mul(&sum.recip()?)
}
