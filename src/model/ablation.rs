//! Switching heads off, in any layer: zero ablation (the head writes nothing) and mean ablation
//! (the head writes what it writes on average), both applied to z before W_O, as patching TL's
//! `hook_z` would.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::edits::{Blend, Edits};
use super::hooks::Capture;
use super::{ModelConfig, ModelError, NdArray};

/// What one head does under ablation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HeadMode {
    #[default]
    Active,
    /// z is replaced by 0.
    Zero,
    /// z is replaced by its mean over the validation set, position by position.
    Mean,
}

impl HeadMode {
    pub fn name(self) -> &'static str {
        match self {
            HeadMode::Active => "active",
            HeadMode::Zero => "zero-ablated",
            HeadMode::Mean => "mean-ablated",
        }
    }
}

/// TL's name of a head, `L{layer}H{head}`.
pub fn head_label(layer: usize, head: usize) -> String {
    format!("L{layer}H{head}")
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ablation {
    pub n_heads: usize,
    /// One mode per head of every layer, layer by layer: head `h` of layer `l` is at
    /// `l * n_heads + h`.
    pub modes: Vec<HeadMode>,
    /// Mean of every layer's `hook_z` over a data set, `[layer, pos, head, d_head]`; required by
    /// [`HeadMode::Mean`].
    pub mean_z: Option<NdArray>,
}

impl Ablation {
    pub fn none(n_layers: usize, n_heads: usize) -> Self {
        Self {
            n_heads,
            modes: vec![HeadMode::Active; n_layers * n_heads],
            mean_z: None,
        }
    }

    /// `heads` (`(layer, head)`) ablated with `mode`, the others active.
    pub fn of(
        n_layers: usize,
        n_heads: usize,
        heads: &[(usize, usize)],
        mode: HeadMode,
        mean_z: Option<NdArray>,
    ) -> Self {
        let mut a = Self::none(n_layers, n_heads);
        for &(l, h) in heads {
            if l < n_layers && h < n_heads {
                a.modes[l * n_heads + h] = mode;
            }
        }
        a.mean_z = mean_z;
        a
    }

    pub fn n_layers(&self) -> usize {
        self.modes.len() / self.n_heads.max(1)
    }

    pub fn is_active(&self) -> bool {
        self.modes.iter().any(|&m| m != HeadMode::Active)
    }

    pub fn needs_means(&self) -> bool {
        self.modes.contains(&HeadMode::Mean)
    }

    /// "head 0 zero-ablated" for one layer, "L1H2 mean-ablated" for several; "" when nothing
    /// is ablated.
    pub fn describe(&self) -> String {
        let layers = self.n_layers();
        self.modes
            .iter()
            .enumerate()
            .filter(|(_, m)| **m != HeadMode::Active)
            .map(|(i, m)| {
                let (l, h) = (i / self.n_heads, i % self.n_heads);
                if layers == 1 {
                    format!("head {h} {}", m.name())
                } else {
                    format!("{} {}", head_label(l, h), m.name())
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(super) fn check(&self, cfg: &ModelConfig) -> Result<(), ModelError> {
        if self.n_heads != cfg.n_heads || self.modes.len() != cfg.n_layers * cfg.n_heads {
            return Err(ModelError::Config(format!(
                "the ablation names {} heads in layers of {}; the model has {} layers of {} heads",
                self.modes.len(),
                self.n_heads,
                cfg.n_layers,
                cfg.n_heads
            )));
        }
        if self.needs_means() {
            let ok = self.mean_z.as_ref().is_some_and(|m| {
                m.shape.len() == 4
                    && m.shape[0] == cfg.n_layers
                    && m.shape[2] == cfg.n_heads
                    && m.shape[3] == cfg.d_head
            });
            if !ok {
                return Err(ModelError::Config(
                    "mean ablation needs the heads' mean z over a data set".into(),
                ));
            }
        }
        Ok(())
    }

    /// Mean ablation has a mean for every position of a sequence of `positions` tokens.
    pub(super) fn check_positions(&self, positions: usize) -> Result<(), ModelError> {
        match self.mean_z.as_ref().filter(|_| self.needs_means()) {
            Some(mean) if positions > mean.shape[1] => Err(ModelError::Tokens(format!(
                "mean ablation has means for {} positions (the length of the task's sequences); \
                 this sequence has {positions}: shorten it or use zero ablation",
                mean.shape[1]
            ))),
            _ => Ok(()),
        }
    }

    /// The ablation as edits of `hook_z` for sequences of `positions` tokens: for each layer
    /// with an ablated head, `keep [1, 1, h, 1]` (1 for active heads) and `add [1, p, h, d]`
    /// (the mean for mean-ablated heads, 0 elsewhere).
    pub(super) fn edits(
        &self,
        positions: usize,
        d_head: usize,
        device: &Device,
    ) -> candle_core::Result<Edits> {
        let heads = self.n_heads;
        let mut edits = Edits::default();
        for (layer, modes) in self.modes.chunks(heads.max(1)).enumerate() {
            if modes.iter().all(|&m| m == HeadMode::Active) {
                continue;
            }
            let keep: Vec<f32> = modes
                .iter()
                .map(|&m| if m == HeadMode::Active { 1.0 } else { 0.0 })
                .collect();
            let mut add = vec![0.0f32; positions * heads * d_head];
            if let Some(mean) = &self.mean_z {
                for (h, _) in modes
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| **m == HeadMode::Mean)
                {
                    for q in 0..positions {
                        for k in 0..d_head {
                            add[(q * heads + h) * d_head + k] = mean.at(&[layer, q, h, k]);
                        }
                    }
                }
            }
            edits.z.push((
                layer,
                Blend {
                    keep: Tensor::from_vec(keep, (1, 1, heads, 1), device)?,
                    add: Tensor::from_vec(add, (1, positions, heads, d_head), device)?,
                },
            ));
        }
        Ok(edits)
    }
}

impl super::Transformer {
    /// An ablation as the edits of a forward pass over `positions` tokens (none when nothing
    /// is ablated), after checking that it fits the model and, for mean ablation, the length.
    pub fn ablation_edits(
        &self,
        ablation: Option<&Ablation>,
        positions: usize,
    ) -> Result<Option<Edits>, ModelError> {
        let Some(a) = ablation else {
            return Ok(None);
        };
        a.check(&self.cfg)?;
        if !a.is_active() {
            return Ok(None);
        }
        a.check_positions(positions)?;
        Ok(Some(a.edits(positions, self.cfg.d_head, &self.device)?))
    }

    /// Last-position logits `[batch, d_vocab_out]` with heads ablated.
    pub fn forward_last_ablated(
        &self,
        tokens: &Tensor,
        ablation: Option<&Ablation>,
    ) -> candle_core::Result<Tensor> {
        let edits = self
            .ablation_edits(ablation, tokens.dim(1)?)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let (logits, _) = self.forward_hooked(tokens, Capture::Nothing, edits.as_ref())?;
        let p = tokens.dim(1)?;
        logits.narrow(1, p - 1, 1)?.squeeze(1)
    }
}
