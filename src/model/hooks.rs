//! Collecting activations under TransformerLens hook names during a forward pass.

use candle_core::Tensor;

/// The activations a forward pass captured, in the order TL's hooks fire. When not capturing,
/// nothing is kept and no name is formatted.
pub struct Hooks {
    capture: bool,
    captured: Vec<(String, Tensor)>,
}

impl Hooks {
    pub fn new(capture: bool) -> Self {
        Self {
            capture,
            captured: Vec::new(),
        }
    }

    pub fn capturing(&self) -> bool {
        self.capture
    }

    /// Records `value` under the hook name `name()` (a later value of the same hook replaces it,
    /// as in TL's cache).
    pub fn add(&mut self, name: impl FnOnce() -> String, value: &Tensor) {
        if self.capture {
            let name = name();
            self.captured.retain(|(n, _)| *n != name);
            self.captured.push((name, value.clone()));
        }
    }

    pub fn into_vec(self) -> Vec<(String, Tensor)> {
        self.captured
    }
}
