//! One sequence taken apart: direct logit attribution and the logit lens at a position, the
//! head detectors, and activation patching against a corrupted sequence. What `toylens
//! analyze` prints and the app's Analyze view draws.

use serde::Serialize;

use super::{Attribution, HeadScores, Patching, PatchingSetup, attribution, head_scores, patching};
use crate::model::{Ablation, ModelError, Transformer};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub tokens: Vec<u32>,
    /// `labels`, `dla`, `dla_constant`, `logits`, `lens_labels` and `logit_lens`.
    #[serde(flatten)]
    pub attribution: Attribution,
    /// Every head's previous-token, duplicate-token and induction score on `tokens`.
    pub heads: HeadScores,
    /// With a corrupted sequence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patching: Option<Patching>,
}

/// Analyses `tokens` at `position` (the last when `None`), with `ablation` in force
/// everywhere, and patches `patch` when given (its clean sequence is `tokens`).
pub fn analyze(
    model: &Transformer,
    tokens: &[u32],
    position: Option<usize>,
    patch: Option<&PatchingSetup>,
    ablation: Option<&Ablation>,
) -> Result<Analysis, ModelError> {
    let cache = model.run_with_cache_ablated(tokens, ablation)?;
    let cfg = model.config();
    let position = position.unwrap_or(tokens.len() - 1);
    let weights = model.weights()?;
    let attribution = attribution(cfg, &weights, &cache, position).map_err(ModelError::Tokens)?;
    let patching = patch
        .map(|setup| patching(model, setup, ablation))
        .transpose()?;
    Ok(Analysis {
        tokens: tokens.to_vec(),
        attribution,
        heads: head_scores(&cache, cfg.n_layers, cfg.n_heads),
        patching,
    })
}
