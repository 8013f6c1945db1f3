//! Head detectors: how much of a head's attention follows a known pattern, with
//! TransformerLens's detection patterns and its `"mul"` score (no exclusions).

use serde::Serialize;

use crate::model::ActivationCache;

/// A kind of head TL's `head_detector` recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// Attends to the previous position.
    PreviousToken,
    /// Attends to earlier copies of the current token.
    DuplicateToken,
    /// Attends to the token after an earlier copy of the current token.
    Induction,
}

impl HeadKind {
    pub const ALL: [HeadKind; 3] = [
        HeadKind::PreviousToken,
        HeadKind::DuplicateToken,
        HeadKind::Induction,
    ];

    /// TL's name (`head_detector.HEAD_NAMES`).
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::PreviousToken => "previous_token",
            HeadKind::DuplicateToken => "duplicate_token",
            HeadKind::Induction => "induction",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            HeadKind::PreviousToken => "previous-token",
            HeadKind::DuplicateToken => "duplicate-token",
            HeadKind::Induction => "induction",
        }
    }

    /// TL's `get_{name}_detection_pattern(tokens)`, `[query][key]`, 0 or 1, lower triangular.
    pub fn pattern(self, tokens: &[u32]) -> Vec<Vec<f32>> {
        let n = tokens.len();
        let duplicate = |q: usize, k: usize| k < q && tokens[q] == tokens[k];
        (0..n)
            .map(|q| {
                (0..n)
                    .map(|k| {
                        let on = match self {
                            HeadKind::PreviousToken => q >= 1 && k == q - 1,
                            HeadKind::DuplicateToken => duplicate(q, k),
                            // The duplicate pattern shifted one key to the right: the token
                            // after an earlier copy; key 0 has no token before it.
                            HeadKind::Induction => k >= 1 && k <= q && duplicate(q, k - 1),
                        };
                        if on { 1.0 } else { 0.0 }
                    })
                    .collect()
            })
            .collect()
    }
}

/// Every head's score for each kind, `[layer][head]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadScores {
    pub previous_token: Vec<Vec<f32>>,
    pub duplicate_token: Vec<Vec<f32>>,
    pub induction: Vec<Vec<f32>>,
}

impl HeadScores {
    pub fn of(&self, kind: HeadKind) -> &Vec<Vec<f32>> {
        match kind {
            HeadKind::PreviousToken => &self.previous_token,
            HeadKind::DuplicateToken => &self.duplicate_token,
            HeadKind::Induction => &self.induction,
        }
    }
}

/// TL's `"mul"` similarity: the attention on the pattern's cells over all attention.
pub fn similarity(attention: &[Vec<f32>], pattern: &[Vec<f32>]) -> f32 {
    let (mut on, mut all) = (0.0f64, 0.0f64);
    for (a_row, p_row) in attention.iter().zip(pattern) {
        for (&a, &p) in a_row.iter().zip(p_row) {
            on += (a * p) as f64;
            all += a as f64;
        }
    }
    (on / all) as f32
}

/// The scores of every head of `n_layers` layers on the sequence of `cache`.
pub fn head_scores(cache: &ActivationCache, n_layers: usize, n_heads: usize) -> HeadScores {
    let scores = |kind: HeadKind| -> Vec<Vec<f32>> {
        let pattern = kind.pattern(&cache.tokens);
        (0..n_layers)
            .map(|l| {
                (0..n_heads)
                    .map(|h| similarity(&cache.pattern(l, h), &pattern))
                    .collect()
            })
            .collect()
    };
    HeadScores {
        previous_token: scores(HeadKind::PreviousToken),
        duplicate_token: scores(HeadKind::DuplicateToken),
        induction: scores(HeadKind::Induction),
    }
}
