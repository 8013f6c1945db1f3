//! Activation patching, as TransformerLens's `patching` module does it: run a corrupted
//! sequence with one activation of the clean run patched in, and see how much of the clean
//! behaviour comes back. The metric is the logit difference `logit(answer) − logit(wrong)` at
//! the last position.

use candle_core::Tensor;
use serde::Serialize;

use crate::model::{Ablation, Blend, Capture, ModelError, Transformer};

/// What to patch: two sequences of one length and the two tokens the metric compares.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchingSetup {
    pub clean: Vec<u32>,
    pub corrupt: Vec<u32>,
    pub answer: u32,
    pub wrong: u32,
}

/// The metric of every patched run, and of the two unpatched ones.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Patching {
    /// `[layer][pos]`: the clean `blocks.{layer}.hook_resid_pre` at `pos` patched in (TL's
    /// `get_act_patch_resid_pre`).
    pub resid_pre: Vec<Vec<f32>>,
    /// `[layer][head]`: the clean `hook_z` of the head at every position patched in (TL's
    /// `get_act_patch_attn_head_out_all_pos`).
    pub head_out: Vec<Vec<f32>>,
    pub metric_clean: f32,
    pub metric_corrupt: f32,
    /// The metric's tokens.
    pub answer: u32,
    pub wrong: u32,
}

impl Patching {
    /// `value` on the scale where the corrupted run is 0 and the clean run 1 (what the
    /// heatmaps show); `None` when the two runs score the same.
    pub fn normalised(&self, value: f32) -> Option<f32> {
        let span = self.metric_clean - self.metric_corrupt;
        (span.abs() > f32::EPSILON * self.metric_clean.abs().max(1.0))
            .then(|| (value - self.metric_corrupt) / span)
    }
}

impl PatchingSetup {
    pub fn check(&self, model: &Transformer) -> Result<(), ModelError> {
        model.check_tokens(&self.clean)?;
        model.check_tokens(&self.corrupt)?;
        if self.clean.len() != self.corrupt.len() {
            return Err(ModelError::Tokens(format!(
                "the clean sequence has {} tokens and the corrupted one {}: patching needs the same length",
                self.clean.len(),
                self.corrupt.len()
            )));
        }
        let out = model.config().d_vocab_out();
        for (what, t) in [("answer", self.answer), ("wrong token", self.wrong)] {
            if t as usize >= out {
                return Err(ModelError::Tokens(format!(
                    "the {what} {t} is not an output token (0..={})",
                    out - 1
                )));
            }
        }
        Ok(())
    }
}

/// Runs every patch of `setup` through `model`; with `ablation`, every run (clean, corrupted
/// and patched) has those heads ablated.
pub fn patching(
    model: &Transformer,
    setup: &PatchingSetup,
    ablation: Option<&Ablation>,
) -> Result<Patching, ModelError> {
    setup.check(model)?;
    let cfg = model.config();
    let (layers, heads, p) = (cfg.n_layers, cfg.n_heads, setup.clean.len());
    let device = model.device();
    let base = model.ablation_edits(ablation, p)?.unwrap_or_default();
    let run = |tokens: &[u32]| -> candle_core::Result<(Tensor, Vec<(String, Tensor)>)> {
        let input = Tensor::from_slice(tokens, (1, p), device)?;
        let capture = Capture::Only(&["hook_resid_pre", "attn.hook_z"]);
        model.forward_hooked(&input, capture, Some(&base))
    };
    let (clean_logits, clean_hooks) = run(&setup.clean)?;
    let (corrupt_logits, _) = run(&setup.corrupt)?;
    let metric = |logits: &Tensor| -> candle_core::Result<Vec<f32>> {
        let last = logits.narrow(1, p - 1, 1)?.squeeze(1)?; // [rows, vocab]
        let a = last.narrow(1, setup.answer as usize, 1)?;
        let w = last.narrow(1, setup.wrong as usize, 1)?;
        (a - w)?.flatten_all()?.to_vec1::<f32>()
    };
    let clean_hook = |name: String| -> candle_core::Result<&Tensor> {
        clean_hooks
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| candle_core::Error::Msg(format!("the clean run captured no {name}")))
    };
    // Rows of the corrupted sequence, one per patch, each patched at one place: row i takes
    // `clean` where `mask` is 1.
    let patched = |rows: usize, mask: Tensor, clean: &Tensor, resid: bool, layer: usize| {
        let input = Tensor::from_vec(setup.corrupt.repeat(rows), (rows, p), device)?;
        let blend = Blend {
            keep: (1.0 - &mask)?,
            add: mask.broadcast_mul(clean)?,
        };
        let mut edits = base.clone();
        if resid {
            edits.resid_pre.push((layer, blend));
        } else {
            edits.z.push((layer, blend));
        }
        let (logits, _) = model.forward_hooked(&input, Capture::Nothing, Some(&edits))?;
        metric(&logits)
    };
    let mut resid_pre = Vec::with_capacity(layers);
    let mut head_out = Vec::with_capacity(layers);
    for layer in 0..layers {
        // resid_pre: row i patches position i. mask [p, p, 1].
        let eye = Tensor::eye(p, model.dtype(), device)?.unsqueeze(2)?;
        let clean = clean_hook(format!("blocks.{layer}.hook_resid_pre"))?;
        resid_pre.push(patched(p, eye, clean, true, layer)?);
        // head_out: row i patches head i at every position. mask [h, 1, h, 1].
        let eye = Tensor::eye(heads, model.dtype(), device)?
            .unsqueeze(1)?
            .unsqueeze(3)?;
        let clean = clean_hook(format!("blocks.{layer}.attn.hook_z"))?;
        head_out.push(patched(heads, eye, clean, false, layer)?);
    }
    Ok(Patching {
        resid_pre,
        head_out,
        metric_clean: metric(&clean_logits)?[0],
        metric_corrupt: metric(&corrupt_logits)?[0],
        answer: setup.answer,
        wrong: setup.wrong,
    })
}
