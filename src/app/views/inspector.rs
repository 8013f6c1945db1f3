//! The inspector's view: one sequence through the model in view, with the ablation, computed
//! on a background thread when the text, the weights or the ablation change.

use std::sync::Arc;

use super::{AblationView, ToylensApp, cpu_model};
use crate::analysis::{Inspection, inspect_ablated};
use crate::app::jobs::Computed;
use crate::task::parse_sequence;

/// The inspector: recomputed (on a background thread, like every view) only when the text, the
/// weights or the ablation change. A malformed sequence is reported at once, from the parser.
#[derive(Default)]
pub struct InspectorState {
    /// The sequence, weights and ablation the shown result or error belongs to.
    pub computed_for: Option<InspectorKey>,
    pub error: Option<String>,
    /// Shared with each frame that draws it: cloning the inspection itself (megabytes at a large
    /// vocabulary) every frame made the UI thread's allocator fault fresh pages.
    pub last_valid: Option<Arc<Inspection>>,
    /// The inputs of the inspection being computed.
    running: Option<InspectorKey>,
    /// A newer result is on its way (being computed, or waiting for mean ablation's means).
    pub waiting: bool,
    /// A clicked head of layer `focus_layer`: its views are highlighted in every panel, and its
    /// pattern is drawn large.
    pub focus_head: Option<usize>,
    pub focus_layer: usize,
    /// The position whose logits are shown; `None` follows the last one.
    pub position: Option<usize>,
    /// `[layer][head]` thumbnails of `last_valid`'s patterns.
    pub thumbnails: Arc<Vec<Vec<Thumbnail>>>,
    /// The attached SAE's latents at each position of `last_valid`'s sequence.
    pub latents: Option<Arc<SaeLatents>>,
}

/// The latents an SAE finds at each position of the inspected sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct SaeLatents {
    pub hook: String,
    /// `[position]`: the active latents, strongest first (at most [`LATENTS_SHOWN`]); or why
    /// they could not be computed.
    pub positions: Result<Vec<Vec<(usize, f32)>>, String>,
}

/// Latents listed per position, at most.
pub const LATENTS_SHOWN: usize = 8;

/// A finished inspection.
pub struct Inspected {
    pub inspection: Inspection,
    pub thumbnails: Vec<Vec<Thumbnail>>,
    pub latents: Option<SaeLatents>,
}

/// An attention pattern shrunk for the layer × head grid: blocks of `block` × `block` positions
/// pooled to their largest weight, so a long sequence's thumbnail stays a few thousand cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail {
    /// Cells per side.
    pub side: usize,
    /// Positions per cell, per side.
    pub block: usize,
    pub values: Vec<f32>,
}

/// Thumbnails have at most this many cells per side.
pub const THUMBNAIL_SIDE: usize = 48;

impl Thumbnail {
    pub fn of(pattern: &[Vec<f32>]) -> Self {
        let p = pattern.len();
        let block = p.div_ceil(THUMBNAIL_SIDE).max(1);
        let side = p.div_ceil(block);
        let mut values = vec![0.0f32; side * side];
        for (q, row) in pattern.iter().enumerate() {
            for (k, &w) in row.iter().enumerate().take(q + 1) {
                let cell = &mut values[(q / block) * side + k / block];
                *cell = cell.max(w);
            }
        }
        Self {
            side,
            block,
            values,
        }
    }

    /// Every position of the cell is above the diagonal (masked).
    pub fn masked(&self, r: usize, c: usize) -> bool {
        c * self.block > (r + 1) * self.block - 1
    }
}

impl InspectorState {
    /// The focused head when it is in layer 0 (the layer circuits and the decomposition show).
    pub fn focus_in_layer_0(&self) -> Option<usize> {
        self.focus_head.filter(|_| self.focus_layer == 0)
    }
}

/// The inspector's inputs: the sequence as typed, the weights in view and the ablation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectorKey {
    pub sequence: String,
    pub view: super::ViewKey,
    pub ablation: Vec<crate::model::HeadMode>,
    /// The attached SAE (its version) whose latents are shown.
    pub sae: Option<u64>,
}

impl ToylensApp {
    /// The inspector's inputs: the sequence, the weights in view and the ablation.
    pub fn inspector_key(&self) -> InspectorKey {
        InspectorKey {
            sequence: self.settings.sequence.clone(),
            view: self.view_key(),
            ablation: self.analysis.ablation.clone(),
            sae: self.inspected_sae().map(|(version, _)| version),
        }
    }

    /// The attached SAE, where it reads a hook of the transformer in view.
    fn inspected_sae(&self) -> Option<(u64, Arc<crate::checkpoint::SaeCheckpoint>)> {
        let a = self.sae.attached.as_ref()?;
        let fits = a.target == crate::app::features::SaeTarget::Transformer
            && crate::sae::hook::fits_transformer(
                &a.sae.weights,
                &a.sae.hook_name,
                &self.session.config.model,
            )
            .is_ok();
        fits.then(|| (a.version, a.sae.clone()))
    }

    /// Whether the inspector shows the result for what is on screen now.
    pub fn inspector_current(&self) -> bool {
        self.inspector.computed_for.as_ref() == Some(&self.inspector_key())
    }

    /// Starts the inspection if the sequence, the weights in view or the ablation changed; a
    /// sequence that does not parse is reported at once.
    pub fn refresh_inspector(&mut self) {
        let key = self.inspector_key();
        if self.inspector.computed_for.as_ref() == Some(&key) || self.inspector.running.is_some() {
            return;
        }
        let cfg = &self.session.config.model;
        let task = &self.session.config.task;
        let names = task.token_names();
        let tokens = match parse_sequence(&self.settings.sequence, names, cfg.d_vocab, cfg.n_ctx) {
            Ok(tokens) => task.complete_sequence(tokens),
            // The last valid view stays on screen under the error.
            Err(e) => {
                self.inspector.error = Some(e.to_string());
                self.inspector.waiting = false;
                self.inspector.computed_for = Some(key);
                return;
            }
        };
        let ablation = match self.current_ablation() {
            AblationView::Off => None,
            AblationView::Ready(a) => Some(a),
            // The means' arrival repaints, and this runs again.
            AblationView::Waiting => {
                self.inspector.waiting = true;
                return;
            }
            AblationView::Failed(e) => {
                self.inspector.waiting = false;
                self.inspector.error = Some(e);
                self.inspector.computed_for = Some(key);
                return;
            }
        };
        self.inspector.waiting = true;
        self.inspector.running = Some(key.clone());
        let (cfg, weights) = self.job_inputs();
        let task = self.session.config.task.clone();
        let sae = self.inspected_sae().map(|(_, sae)| sae);
        self.job(
            move || {
                let model = cpu_model(&cfg, &weights)?;
                let inspection = inspect_ablated(&model, &task, &tokens, ablation.as_ref())
                    .map_err(|e| e.to_string())?;
                let thumbnails = inspection
                    .patterns
                    .iter()
                    .map(|layer| layer.iter().map(|p| Thumbnail::of(p)).collect())
                    .collect();
                // The SAE reads the model as it is (without the ablation, which edits hook_z).
                let latents = sae.map(|sae| SaeLatents {
                    hook: sae.hook_name.clone(),
                    positions: crate::sae::hook::active_latents(
                        &model,
                        &tokens,
                        (&sae.weights, sae.architecture, &sae.hook_name),
                        LATENTS_SHOWN,
                    ),
                });
                Ok(Inspected {
                    inspection,
                    thumbnails,
                    latents,
                })
            },
            move |r| Computed::Inspection(key, r),
        );
    }

    /// Takes a finished inspection.
    pub(super) fn inspected(&mut self, key: InspectorKey, result: Result<Inspected, String>) {
        let inspector = &mut self.inspector;
        inspector.running = None;
        inspector.waiting = false;
        match result {
            Ok(Inspected {
                inspection,
                thumbnails,
                latents,
            }) => {
                inspector.error = None;
                inspector.thumbnails = Arc::new(thumbnails);
                inspector.latents = latents.map(Arc::new);
                if inspector
                    .focus_head
                    .is_some_and(|h| h >= inspection.pattern.len())
                    || inspector.focus_layer >= inspection.n_layers()
                {
                    inspector.focus_head = None;
                    inspector.focus_layer = 0;
                }
                inspector.last_valid = Some(Arc::new(inspection));
            }
            Err(e) => inspector.error = Some(e),
        }
        inspector.computed_for = Some(key);
    }
}
