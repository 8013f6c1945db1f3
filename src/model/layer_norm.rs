//! TransformerLens's LayerNorm ("LN") and LayerNormPre ("LNPre").

use candle_core::Tensor;

use super::hooks::Hooks;
use crate::config::LN_EPS;

/// Centres `x` `[.., d_model]` over its last dimension and divides by
/// `sqrt(mean(x²) + eps)` (TL's `hook_scale`, `[.., 1]`), which is TL's `hook_normalized`; with
/// `affine` = (w, b) the result is then `normalized·w + b`.
pub fn layer_norm(
    x: &Tensor,
    affine: Option<(&Tensor, &Tensor)>,
    hooks: &mut Hooks,
    prefix: &str,
) -> candle_core::Result<Tensor> {
    let (order, last) = (hooks.order(), x.rank() - 1);
    let centred = x.broadcast_sub(&order.mean_keepdim(x, last)?)?;
    let scale = (order.mean_keepdim(&centred.sqr()?, last)? + LN_EPS)?.sqrt()?;
    hooks.add(|| format!("{prefix}.hook_scale"), &scale);
    let normalized = centred.broadcast_div(&scale)?;
    hooks.add(|| format!("{prefix}.hook_normalized"), &normalized);
    match affine {
        Some((w, b)) => normalized.broadcast_mul(w)?.broadcast_add(b),
        None => Ok(normalized),
    }
}
