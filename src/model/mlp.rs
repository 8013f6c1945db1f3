//! The MLP of a block: `act(x·W_in + b_in)·W_out + b_out`.

use candle_core::Tensor;

use super::hooks::Hooks;
use super::kernels::bias::add_bias;
use crate::config::ActFn;

pub struct MlpParams<'a> {
    pub w_in: &'a Tensor,
    pub b_in: &'a Tensor,
    pub w_out: &'a Tensor,
    pub b_out: &'a Tensor,
}

pub fn activation(x: &Tensor, act: ActFn) -> candle_core::Result<Tensor> {
    match act {
        ActFn::Relu => x.relu(),
        ActFn::Gelu => x.gelu_erf(),
        ActFn::GeluNew => x.gelu(),
    }
}

/// `x` is `[batch, pos, d_model]`; returns `[batch, pos, d_model]`. Hooks `{prefix}.hook_pre`
/// and `{prefix}.hook_post` are `[batch, pos, d_mlp]`.
pub fn mlp(
    p: &MlpParams,
    x: &Tensor,
    act: ActFn,
    hooks: &mut Hooks,
    prefix: &str,
) -> candle_core::Result<Tensor> {
    let (b, pos, m) = x.dims3()?;
    let (order, fused) = (hooks.order(), hooks.fused());
    let mut pre = add_bias(&order.mm(&x.reshape((b * pos, m))?, p.w_in)?, p.b_in, fused)?;
    let f = pre.dim(1)?;
    // (`pass` keeps only the wanted hooks and replaces only a spliced one; the reshapes are
    // views.)
    if hooks.capturing() {
        pre = hooks
            .pass(|| format!("{prefix}.hook_pre"), pre.reshape((b, pos, f))?)?
            .reshape((b * pos, f))?;
    }
    let mut post = order.in_f64(&pre, |pre| activation(pre, act))?;
    if hooks.capturing() {
        post = hooks
            .pass(|| format!("{prefix}.hook_post"), post.reshape((b, pos, f))?)?
            .reshape((b * pos, f))?;
    }
    add_bias(&order.mm(&post, p.w_out)?, p.b_out, fused)?.reshape((b, pos, m))
}
