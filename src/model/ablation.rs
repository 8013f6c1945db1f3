//! Switching heads off: zero ablation (the head writes nothing) and mean ablation (the head writes
//! what it writes on average), both applied to z before W_O, as patching TL's `hook_z` would.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ablation {
    /// One mode per head.
    pub modes: Vec<HeadMode>,
    /// Mean of `hook_z` over a data set, `[pos, head, d_head]`; required by [`HeadMode::Mean`].
    pub mean_z: Option<NdArray>,
}

impl Ablation {
    pub fn none(n_heads: usize) -> Self {
        Self {
            modes: vec![HeadMode::Active; n_heads],
            mean_z: None,
        }
    }

    /// `heads` ablated with `mode`, the others active.
    pub fn of(n_heads: usize, heads: &[usize], mode: HeadMode, mean_z: Option<NdArray>) -> Self {
        let mut a = Self::none(n_heads);
        for &h in heads {
            if h < n_heads {
                a.modes[h] = mode;
            }
        }
        a.mean_z = mean_z;
        a
    }

    pub fn is_active(&self) -> bool {
        self.modes.iter().any(|&m| m != HeadMode::Active)
    }

    pub fn needs_means(&self) -> bool {
        self.modes.contains(&HeadMode::Mean)
    }

    /// "head 0 zero-ablated, head 2 mean-ablated", or "" when nothing is ablated.
    pub fn describe(&self) -> String {
        self.modes
            .iter()
            .enumerate()
            .filter(|(_, m)| **m != HeadMode::Active)
            .map(|(h, m)| format!("head {h} {}", m.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(super) fn check(&self, cfg: &ModelConfig) -> Result<(), ModelError> {
        if self.modes.len() != cfg.n_heads {
            return Err(ModelError::Config(format!(
                "the ablation names {} heads; the model has {}",
                self.modes.len(),
                cfg.n_heads
            )));
        }
        if self.needs_means() {
            let ok = self.mean_z.as_ref().is_some_and(|m| {
                m.shape.len() == 3 && m.shape[1] == cfg.n_heads && m.shape[2] == cfg.d_head
            });
            if !ok {
                return Err(ModelError::Config(
                    "mean ablation needs the heads' mean z over a data set".into(),
                ));
            }
        }
        Ok(())
    }

    /// `keep [1, h, 1, 1]` (1 for active heads, 0 for ablated) and `replacement [1, h, p, d]`
    /// (the mean for mean-ablated heads, 0 elsewhere): `z' = z · keep + replacement`.
    pub(super) fn tensors(
        &self,
        heads: usize,
        positions: usize,
        d_head: usize,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let keep: Vec<f32> = (0..heads)
            .map(|h| {
                if self.modes.get(h).copied().unwrap_or_default() == HeadMode::Active {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let mut replacement = vec![0.0f32; heads * positions * d_head];
        if let Some(mean) = &self.mean_z {
            for h in 0..heads {
                if self.modes.get(h) != Some(&HeadMode::Mean) {
                    continue;
                }
                for q in 0..positions.min(mean.shape[0]) {
                    for k in 0..d_head {
                        replacement[(h * positions + q) * d_head + k] = mean.at(&[q, h, k]);
                    }
                }
            }
        }
        Ok((
            Tensor::from_vec(keep, (1, heads, 1, 1), device)?,
            Tensor::from_vec(replacement, (1, heads, positions, d_head), device)?,
        ))
    }
}
