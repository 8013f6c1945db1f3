//! Changing a forward pass at TransformerLens's hook points, as a TL hook that returns a new
//! value would: ablating heads, and patching activations of one run into another. The hook
//! records the edited value, so a cache shows what the rest of the model saw.

use candle_core::Tensor;

/// `x·keep + add`, each broadcast to x's shape: `keep` 0 and `add` v replaces x by v, `keep` 1
/// and `add` 0 leaves it.
#[derive(Debug, Clone)]
pub struct Blend {
    pub keep: Tensor,
    pub add: Tensor,
}

impl Blend {
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        x.broadcast_mul(&self.keep.to_dtype(dtype)?)?
            .broadcast_add(&self.add.to_dtype(dtype)?)
    }
}

/// The edits of one forward pass, each at one layer.
#[derive(Debug, Clone, Default)]
pub struct Edits {
    /// `(layer, blend)` of `blocks.{layer}.hook_resid_pre`, `[batch, pos, d_model]`.
    pub resid_pre: Vec<(usize, Blend)>,
    /// `(layer, blend)` of `blocks.{layer}.attn.hook_z`, TL's `[batch, pos, head, d_head]`.
    pub z: Vec<(usize, Blend)>,
}

impl Edits {
    /// The edits of `blocks.{layer}.hook_resid_pre`, in order.
    pub fn resid_pre_at(&self, layer: usize) -> Vec<&Blend> {
        at(&self.resid_pre, layer)
    }

    /// The edits of `blocks.{layer}.attn.hook_z`, in order.
    pub fn z_at(&self, layer: usize) -> Vec<&Blend> {
        at(&self.z, layer)
    }
}

fn at(edits: &[(usize, Blend)], layer: usize) -> Vec<&Blend> {
    edits
        .iter()
        .filter(|(l, _)| *l == layer)
        .map(|(_, b)| b)
        .collect()
}

/// `x` through every blend of `blends`, in order.
pub fn apply_all(blends: &[&Blend], x: &Tensor) -> candle_core::Result<Tensor> {
    let mut x = x.clone();
    for blend in blends {
        x = blend.apply(&x)?;
    }
    Ok(x)
}
