//! Collecting activations under TransformerLens hook names during a forward pass.

use candle_core::Tensor;

use super::ordered::Order;

/// Which activations a forward pass keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    Nothing,
    /// Every TL hook.
    All,
    /// The hooks whose names end with one of these (`"attn.hook_pattern"`: every layer's
    /// pattern). An analysis that reads a few hooks keeps only those, and skips the costly
    /// ones it does not read (`hook_result` holds `d_model` floats per head and position).
    Only(&'static [&'static str]),
}

/// The activations a forward pass captured, in the order TL's hooks fire. When not capturing,
/// nothing is kept and no name is formatted.
pub struct Hooks {
    capture: Capture,
    captured: Vec<(String, Tensor)>,
}

impl Hooks {
    pub fn new(capture: Capture) -> Self {
        Self {
            capture,
            captured: Vec::new(),
        }
    }

    /// How this pass orders its sums: a full cache on a GPU (or under the GPU rules) takes its
    /// products and reductions in index order, as the CPU does (see `ordered.rs`).
    pub fn order(&self, device: &candle_core::Device) -> Order {
        let gpu = device.is_cuda() || crate::device::gpu_rules();
        if self.capture == Capture::All && gpu {
            Order::Sequential
        } else {
            Order::Backend
        }
    }

    /// Whether any hook is kept (the fused paths, which expose no intermediates, are then off).
    pub fn capturing(&self) -> bool {
        self.capture != Capture::Nothing
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
        match self.capture {
            Capture::Nothing => None,
            Capture::All => Some(name()),
            Capture::Only(suffixes) => {
                let name = name();
                suffixes.iter().any(|s| name.ends_with(s)).then_some(name)
            }
        }
    }

    pub fn into_vec(self) -> Vec<(String, Tensor)> {
        self.captured
    }
}
