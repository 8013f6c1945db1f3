//! Induction: each sequence is `half` tokens drawn uniformly from the vocabulary, then the same
//! `half` tokens again. The loss is next-token cross-entropy at every position. The first half is
//! unpredictable (floor ln V); the repeated half is predictable by copying (floor 0), which is
//! what induction heads learn to do.
//!
//! With `gap_max > 0` the copy starts after a gap of 0..=gap_max random tokens, drawn per
//! sequence, and random tokens fill the rest. The copy is then not a fixed distance back, so a
//! model cannot find it by position alone: it has to look the earlier token up by content (a
//! previous-token head feeding an induction head).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{MAX_DATA_TOKENS, MAX_SEQ_LEN, MAX_VOCAB, TaskError};
use crate::seed::{Stream, stream_rng};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InductionConfig {
    /// Tokens the random halves are drawn from.
    pub vocab: usize,
    /// Length of the random half; a sequence is twice as long, plus `gap_max`.
    pub half: usize,
    /// The most random tokens between the half and its copy (0: the copy follows at once).
    pub gap_max: usize,
    /// Sequences in the fixed validation set the metrics are measured on.
    pub val_size: usize,
}

impl Default for InductionConfig {
    fn default() -> Self {
        Self {
            vocab: 32,
            half: 10,
            gap_max: 0,
            val_size: 512,
        }
    }
}

impl InductionConfig {
    pub fn seq_len(&self) -> usize {
        2 * self.half + self.gap_max
    }

    pub fn validate(&self) -> Result<(), TaskError> {
        if self.vocab < 2 {
            return Err(TaskError::Setting(format!(
                "vocab must be at least 2, got {}",
                self.vocab
            )));
        }
        if self.vocab > MAX_VOCAB {
            return Err(TaskError::VocabTooLarge(self.vocab, MAX_VOCAB));
        }
        if self.half < 2 {
            return Err(TaskError::Setting(format!(
                "half must be at least 2 (each half needs a token to predict), got {}",
                self.half
            )));
        }
        if self.gap_max > MAX_SEQ_LEN {
            return Err(TaskError::SeqLenTooLong(self.gap_max));
        }
        if self.seq_len() > MAX_SEQ_LEN {
            return Err(TaskError::SeqLenTooLong(self.seq_len()));
        }
        if self.val_size == 0 {
            return Err(TaskError::EmptySplit("val_size"));
        }
        let tokens = self.val_size as u128 * self.seq_len() as u128;
        if tokens > MAX_DATA_TOKENS as u128 {
            return Err(TaskError::TooMuchData("val_size", tokens));
        }
        Ok(())
    }

    /// `count` sequences, flat (`[count × seq_len]`), drawn from `rng`.
    pub fn generate(&self, count: usize, rng: &mut impl Rng) -> Vec<u32> {
        let (half, vocab) = (self.half, self.vocab as u32);
        let mut tokens = vec![0u32; count * self.seq_len()];
        for seq in tokens.chunks_exact_mut(self.seq_len()) {
            if self.gap_max == 0 {
                for t in &mut seq[..half] {
                    *t = rng.random_range(0..vocab);
                }
                seq.copy_within(..half, half);
                continue;
            }
            let gap = rng.random_range(0..=self.gap_max);
            for t in seq.iter_mut() {
                *t = rng.random_range(0..vocab);
            }
            seq.copy_within(..half, half + gap);
        }
        tokens
    }

    /// Where the copy starts in `seq`, a whole sequence of the task: `half` plus the smallest
    /// gap at which the first half repeats (a larger one is then a coincidence of random tokens
    /// that a model cannot tell from the copy either).
    pub fn repeat_start(&self, seq: &[u32]) -> usize {
        let half = self.half;
        (0..=self.gap_max)
            .map(|gap| half + gap)
            .find(|&start| seq.get(start..start + half) == seq.get(..half))
            .unwrap_or(half)
    }

    /// The fixed validation set of `seed`.
    pub fn val_set(&self, seed: u64) -> Vec<u32> {
        self.generate(self.val_size, &mut stream_rng(seed, Stream::ValData))
    }

    pub fn random_sequence(&self, rng: &mut impl Rng) -> Vec<u32> {
        self.generate(1, rng)
    }

    /// The token after the last one, where the repetition determines it: position `n` repeats
    /// position `n - half` for `half ≤ n < 2·half`. With a gap, once the copy has begun: position
    /// `n` repeats `n - start` for the smallest start (`half` plus a gap) whose copy the tokens so
    /// far agree with.
    pub fn expected_next(&self, tokens: &[u32]) -> Option<u32> {
        let (n, half) = (tokens.len(), self.half);
        if self.gap_max == 0 {
            return (n >= half && n < self.seq_len()).then(|| tokens[n - half]);
        }
        (half..=half + self.gap_max)
            .filter(|&start| start < n && n < start + half)
            .find(|&start| tokens[start..n] == tokens[..n - start])
            .map(|start| tokens[n - start])
    }

    /// Prediction positions whose loss is "first half": those predicting tokens `1..half`.
    /// (Position `half − 1` predicts the first repeated token, which nothing foretells; it
    /// belongs to neither half, as in the reference script.)
    pub fn first_half_predictions(&self) -> std::ops::Range<usize> {
        0..self.half - 1
    }

    /// Prediction positions of `seq` whose loss is "repeated half": those predicting the copy's
    /// tokens after its first (`half + 1..2·half` without a gap).
    pub fn repeated_half_predictions(&self, seq: &[u32]) -> std::ops::Range<usize> {
        let start = self.repeat_start(seq);
        start..start + self.half - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_repeat_their_first_half() {
        let task = InductionConfig::default();
        task.validate().unwrap();
        let data = task.val_set(0);
        assert_eq!(data.len(), 512 * 20);
        for seq in data.chunks_exact(20) {
            assert_eq!(seq[..10], seq[10..]);
            assert!(seq.iter().all(|&t| t < 32));
        }
        assert_eq!(data, task.val_set(0));
        assert_ne!(data, task.val_set(1));
        // Every token is used: the halves are uniform over the vocabulary.
        let mut seen = [false; 32];
        data.iter().for_each(|&t| seen[t as usize] = true);
        assert!(seen.iter().all(|&s| s));
        let seq = [5, 6, 7, 1, 2, 3, 4, 8, 9, 10, 5, 6];
        assert_eq!(task.expected_next(&seq), Some(7));
        assert_eq!(task.expected_next(&seq[..9]), None);
        assert_eq!(task.expected_next(&seq[..10]), Some(5));
        for bad in [
            InductionConfig {
                gap_max: 5000,
                ..task.clone()
            },
            InductionConfig {
                vocab: 1,
                ..task.clone()
            },
            InductionConfig {
                half: 1,
                ..task.clone()
            },
            InductionConfig {
                val_size: 0,
                ..task.clone()
            },
            InductionConfig {
                half: 600,
                ..task.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert_eq!(task.repeated_half_predictions(&data[..20]), 10..19);
    }

    #[test]
    fn with_a_gap_the_copy_starts_anywhere_in_range_and_is_found() {
        let task = InductionConfig {
            half: 6,
            gap_max: 4,
            ..Default::default()
        };
        task.validate().unwrap();
        let data = task.val_set(0);
        assert_eq!(data.len(), 512 * 16);
        let mut starts = std::collections::BTreeSet::new();
        for seq in data.chunks_exact(16) {
            let start = task.repeat_start(seq);
            assert!((6..=10).contains(&start));
            assert_eq!(seq[start..start + 6], seq[..6]);
            starts.insert(start);
            // Inside the copy the next token is known; before it, not.
            assert_eq!(task.expected_next(&seq[..start + 2]), Some(seq[2]));
            assert_eq!(task.repeated_half_predictions(seq), start..start + 5);
        }
        assert_eq!(starts.len(), 5, "every gap 0..=4 occurs");
        // A hand-made sequence: gap 2 (tokens 8 8), then the copy of 1 2 3.
        let task = InductionConfig {
            half: 3,
            gap_max: 2,
            ..Default::default()
        };
        let seq = [1, 2, 3, 8, 8, 1, 2, 3, 9, 9];
        assert_eq!(task.repeat_start(&seq), 5);
        assert_eq!(task.expected_next(&seq[..6]), Some(2));
        assert_eq!(
            task.expected_next(&seq[..5]),
            None,
            "the copy has not begun"
        );
        assert_eq!(task.expected_next(&seq[..4]), None);
    }

    #[test]
    fn without_a_gap_the_data_is_what_it_always_was() {
        // The same draws as before the gap existed: seed 0's first validation sequence.
        let task = InductionConfig::default();
        let mut rng = stream_rng(0, Stream::ValData);
        let first: Vec<u32> = (0..10).map(|_| rng.random_range(0..32u32)).collect();
        assert_eq!(task.val_set(0)[..10], first[..]);
        assert_eq!(task.val_set(0)[10..20], first[..]);
    }
}
