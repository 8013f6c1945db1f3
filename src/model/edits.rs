//! Changing a forward pass at TransformerLens's hook points, as a TL hook that returns a new
//! value would: ablating heads, and patching activations of one run into another. The hook
//! records the edited value, so a cache shows what the rest of the model saw.

use std::sync::Arc;

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
    /// One hook whose value is replaced by a function of it.
    pub splice: Option<Splice>,
}

/// What replaces one hook's value in a forward pass: `replace` maps the value to a tensor of
/// the same shape (an SAE's reconstruction spliced in, or zeros), as a TL hook that returns a
/// new value does.
#[derive(Clone)]
pub struct Splice {
    /// The hook's full TL name (`blocks.0.hook_resid_post`).
    pub hook: String,
    pub replace: SpliceFn,
}

/// A splice's function: the hook's value in, its replacement (the same shape) out.
pub type SpliceFn = Arc<dyn Fn(&Tensor) -> candle_core::Result<Tensor> + Send + Sync>;

impl std::fmt::Debug for Splice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Splice").field("hook", &self.hook).finish()
    }
}

impl Splice {
    /// The hooks a splice can replace in layer `l` of a model (with an MLP or not).
    pub fn hooks(layer: usize, has_mlp: bool) -> Vec<String> {
        let mut names = vec![
            format!("blocks.{layer}.hook_resid_pre"),
            format!("blocks.{layer}.attn.hook_z"),
            format!("blocks.{layer}.hook_attn_out"),
        ];
        if has_mlp {
            names.extend([
                format!("blocks.{layer}.hook_resid_mid"),
                format!("blocks.{layer}.mlp.hook_pre"),
                format!("blocks.{layer}.mlp.hook_post"),
                format!("blocks.{layer}.hook_mlp_out"),
            ]);
        }
        names.push(format!("blocks.{layer}.hook_resid_post"));
        names
    }
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
