//! Collecting activations under TransformerLens hook names during a forward pass, and what the
//! pass's kernels follow from its plan.

use candle_core::Tensor;

use super::edits::Splice;
use super::kernels::ordered::Order;
use super::plan::Plan;

/// Which activations a forward pass keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    Nothing,
    /// Every TL hook.
    All,
    /// The hooks whose names end with one of these (`"attn.hook_pattern"`: every layer's
    /// pattern). An analysis that reads a few hooks keeps only those, and skips the costly
    /// ones it does not read (`hook_result` holds `d_model` floats per head and position).
    Only(&'static [&'static str]),
    /// Exactly these hooks, by their full names (`blocks.0.mlp.hook_post`): a hook the user
    /// named at run time.
    Named(Vec<String>),
}

/// The activations a forward pass captured, in the order TL's hooks fire. When not capturing,
/// nothing is kept and no name is formatted. It also carries the two things the pass's parts
/// read from the model's plan: whether the fused CPU kernels run, and the order of its sums.
pub struct Hooks {
    capture: Capture,
    splice: Option<Splice>,
    captured: Vec<(String, Tensor)>,
    fused: bool,
    order: Order,
}

impl Hooks {
    /// Keeps what `capture` asks for; `splice` replaces one hook's value as the pass runs.
    pub fn new(capture: Capture, splice: Option<Splice>, plan: &Plan) -> Self {
        // A full cache off the fused kernels (a GPU, or the CPU under the GPU rules) takes its
        // products and reductions in index order, as the CPU does (see `ordered.rs`).
        let order = if capture == Capture::All && plan.ordered_cache() {
            Order::Sequential
        } else {
            Order::Backend
        };
        Self {
            capture,
            splice,
            captured: Vec::new(),
            fused: plan.fused(),
            order,
        }
    }

    /// How this pass orders its sums.
    pub fn order(&self) -> Order {
        self.order
    }

    /// Whether the fused CPU kernels (bias, causal softmax) run in this pass.
    pub fn fused(&self) -> bool {
        self.fused
    }

    /// Whether any hook is kept or replaced (the fused paths, which expose no intermediates,
    /// are then off).
    pub fn capturing(&self) -> bool {
        self.capture != Capture::Nothing || self.splice.is_some()
    }

    /// `value` at the hook `name()`, through the splice if it replaces this hook, and recorded
    /// (as edited) if the hook is kept: what the rest of the pass reads.
    pub fn pass(
        &mut self,
        name: impl FnOnce() -> String,
        value: Tensor,
    ) -> candle_core::Result<Tensor> {
        let Some(splice) = &self.splice else {
            self.add(name, &value);
            return Ok(value);
        };
        let name = name();
        let value = if splice.hook == name {
            let replaced = (splice.replace)(&value)?;
            if replaced.dims() != value.dims() {
                candle_core::bail!(
                    "the splice at {name} returned {:?} for {:?}",
                    replaced.dims(),
                    value.dims()
                );
            }
            replaced
        } else {
            value
        };
        self.add(|| name, &value);
        Ok(value)
    }

    /// Whether the hook `name()` is kept (the name is formatted only for a selective capture).
    pub fn wants(&self, name: impl FnOnce() -> String) -> bool {
        self.kept_name(name).is_some()
    }

    /// Records `value` under the hook name `name()` if it is kept (a later value of the same
    /// hook replaces it, as in TL's cache).
    pub fn add(&mut self, name: impl FnOnce() -> String, value: &Tensor) {
        if let Some(name) = self.kept_name(name) {
            self.captured.retain(|(n, _)| *n != name);
            self.captured.push((name, value.clone()));
        }
    }

    /// The hook's name if it is kept.
    fn kept_name(&self, name: impl FnOnce() -> String) -> Option<String> {
        match &self.capture {
            Capture::Nothing => None,
            Capture::All => Some(name()),
            Capture::Only(suffixes) => {
                let name = name();
                suffixes.iter().any(|s| name.ends_with(s)).then_some(name)
            }
            Capture::Named(names) => {
                let name = name();
                names.contains(&name).then_some(name)
            }
        }
    }

    pub fn into_vec(self) -> Vec<(String, Tensor)> {
        self.captured
    }
}
