//! The Analyze tab's views: the sequence in view taken apart (attribution, logit lens, head
//! detectors, patching) and the weights in view read as circuits (full OV/QK circuits, copying
//! scores, singular directions, composition). Each is a background job keyed by its inputs.

use super::{ToylensApp, cpu_model};
use crate::analysis::{
    Composition, FullCircuits, PatchingSetup, SingularDirection, analyze, composition,
    full_circuits,
};
use crate::app::jobs::Computed;
use crate::model::{HeadMode, argmax};
use crate::task::parse_sequence;

/// What the user set on the Analyze tab.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnalyzeSettings {
    /// The corrupted sequence for patching ("" for none).
    pub corrupt: String,
    /// The metric's tokens; `None` takes the clean prediction as the answer and the corrupted
    /// run's as the wrong token.
    pub answer: Option<u32>,
    pub wrong: Option<u32>,
    /// The position attributed and lensed; `None` follows the last.
    pub position: Option<usize>,
    /// A token whose attribution is shown beside the predicted token's.
    pub token: Option<u32>,
    /// The head whose circuits are drawn, `(layer, head)`.
    pub head: (usize, usize),
}

/// The analysis's inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzeKey {
    pub view: super::ViewKey,
    pub tokens: Vec<u32>,
    pub position: Option<usize>,
    pub corrupt: Option<Vec<u32>>,
    pub answer: Option<u32>,
    pub wrong: Option<u32>,
    pub ablation: Vec<HeadMode>,
}

/// The weights in view as circuits, ready to draw.
pub struct HeadCircuits {
    /// `[layer][head]`, as [`FullCircuits`] has them.
    pub copying_score: Vec<Vec<f32>>,
    pub ov_svd: Vec<Vec<Vec<SingularDirection>>>,
    /// `[layer][head]` full OV and QK circuits.
    pub ov: Vec<Vec<FlatMap>>,
    pub qk: Vec<Vec<FlatMap>>,
    pub composition: Option<Composition>,
    /// Changes with the weights: keys the maps' textures.
    pub id: u64,
}

/// A map flattened row-major, with the largest |value| (its colour scale).
pub struct FlatMap {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f32>,
    pub limit: f32,
}

impl FlatMap {
    fn of(map: Vec<Vec<f32>>) -> Self {
        let (rows, cols) = (map.len(), map.first().map_or(0, Vec::len));
        let values: Vec<f32> = map.into_iter().flatten().collect();
        let limit = crate::palette::Scale::diverging_limit(values.iter().copied());
        Self {
            rows,
            cols,
            values,
            limit,
        }
    }
}

impl HeadCircuits {
    fn new(full: FullCircuits, composition: Option<Composition>, id: u64) -> Self {
        let flat = |maps: Vec<Vec<Vec<Vec<f32>>>>| -> Vec<Vec<FlatMap>> {
            maps.into_iter()
                .map(|layer| layer.into_iter().map(FlatMap::of).collect())
                .collect()
        };
        Self {
            copying_score: full.copying_score,
            ov_svd: full.ov_svd,
            ov: flat(full.ov_full),
            qk: flat(full.qk_full),
            composition,
            id,
        }
    }
}

impl ToylensApp {
    /// The analysis's inputs from the settings, or why they cannot be analysed.
    pub fn analyze_key(&self) -> Result<AnalyzeKey, String> {
        let cfg = &self.session.config.model;
        let task = &self.session.config.task;
        let read = |text: &str| {
            parse_sequence(text, task.token_names(), cfg.d_vocab, cfg.n_ctx)
                .map(|t| task.complete_sequence(t))
        };
        let tokens = read(&self.settings.sequence).map_err(|e| format!("sequence: {e}"))?;
        let corrupt = if self.analyze.corrupt.trim().is_empty() {
            None
        } else {
            let corrupt =
                read(&self.analyze.corrupt).map_err(|e| format!("corrupted sequence: {e}"))?;
            if corrupt.len() != tokens.len() {
                let tokens_of = |n: usize| format!("{n} token{}", if n == 1 { "" } else { "s" });
                return Err(format!(
                    "the corrupted sequence has {} and the sequence {}: patching needs the same length",
                    tokens_of(corrupt.len()),
                    tokens.len()
                ));
            }
            Some(corrupt)
        };
        let out = cfg.d_vocab_out() as u32;
        for t in [self.analyze.answer, self.analyze.wrong]
            .into_iter()
            .flatten()
        {
            if t >= out {
                return Err(format!(
                    "token {t} is not an output token (0..={})",
                    out - 1
                ));
            }
        }
        Ok(AnalyzeKey {
            view: self.view_key(),
            position: self.analyze.position.filter(|&p| p < tokens.len()),
            tokens,
            corrupt,
            answer: self.analyze.answer,
            wrong: self.analyze.wrong,
            ablation: self.analysis.ablation.clone(),
        })
    }

    /// Starts the analysis and the circuits if their inputs changed.
    pub fn refresh_analyze(&mut self) {
        self.refresh_head_circuits();
        let key = match self.analyze_key() {
            Ok(key) => key,
            Err(_) => return, // The tab shows the reason; the last result stays.
        };
        if self.analysis.analyze.is_current(&key) || self.analysis.analyze.is_running() {
            return;
        }
        let ablation = match self.current_ablation().ready() {
            Ok(a) => a,
            Err(failure) => {
                if let Some(e) = failure {
                    self.analysis.analyze.finish(key, Err(e));
                }
                return;
            }
        };
        if !self.analysis.analyze.claim(&key) {
            return;
        }
        let (cfg, weights) = self.job_inputs();
        let inputs = key.clone();
        self.job(
            move || {
                let model = cpu_model(&cfg, &weights)?;
                let run = |setup: Option<&PatchingSetup>| {
                    analyze(
                        &model,
                        &inputs.tokens,
                        inputs.position,
                        setup,
                        ablation.as_ref(),
                    )
                    .map_err(|e| e.to_string())
                };
                let Some(corrupt) = inputs.corrupt.clone() else {
                    return run(None);
                };
                // Unset metric tokens: the clean prediction against the corrupted run's top
                // token other than it.
                let last_logits = |tokens: &[u32]| -> Result<Vec<f32>, String> {
                    let cache = model
                        .run_with_cache_ablated(tokens, ablation.as_ref())
                        .map_err(|e| e.to_string())?;
                    Ok(cache.logits_last().to_vec())
                };
                let answer = match inputs.answer {
                    Some(a) => a,
                    None => argmax(&last_logits(&inputs.tokens)?) as u32,
                };
                let wrong = match inputs.wrong {
                    Some(w) => w,
                    None => {
                        let mut logits = last_logits(&corrupt)?;
                        if let Some(l) = logits.get_mut(answer as usize) {
                            *l = f32::NEG_INFINITY;
                        }
                        argmax(&logits) as u32
                    }
                };
                run(Some(&PatchingSetup {
                    clean: inputs.tokens.clone(),
                    corrupt,
                    answer,
                    wrong,
                }))
            },
            move |r| Computed::Analysis(key, r),
        );
    }

    fn refresh_head_circuits(&mut self) {
        let key = self.view_key();
        if !self.analysis.head_circuits.claim(&key) {
            return;
        }
        let (cfg, weights) = self.job_inputs();
        let id = super::hash_of(&key);
        self.job(
            move || {
                let full = full_circuits(&cfg, &weights)?;
                let composition = (cfg.n_layers > 1).then(|| composition(&cfg, &weights));
                Ok(HeadCircuits::new(full, composition, id))
            },
            move |r| Computed::HeadCircuits(key, r),
        );
    }
}
