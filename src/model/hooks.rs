//! Collecting activations under TransformerLens hook names during a forward pass.

use candle_core::Tensor;

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

    /// Whether any hook is kept (the fused paths, which expose no intermediates, are then off).
    pub fn capturing(&self) -> bool {
        self.capture != Capture::Nothing
    }

    /// Whether the hook `name` is kept.
    pub fn wants(&self, name: &str) -> bool {
        match self.capture {
            Capture::Nothing => false,
            Capture::All => true,
            Capture::Only(suffixes) => suffixes.iter().any(|s| name.ends_with(s)),
        }
    }

    /// Records `value` under the hook name `name()` if it is kept (a later value of the same
    /// hook replaces it, as in TL's cache).
    pub fn add(&mut self, name: impl FnOnce() -> String, value: &Tensor) {
        if self.capturing() {
            let name = name();
            if self.wants(&name) {
                self.captured.retain(|(n, _)| *n != name);
                self.captured.push((name, value.clone()));
            }
        }
    }

    pub fn into_vec(self) -> Vec<(String, Tensor)> {
        self.captured
    }
}
