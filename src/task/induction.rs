//! Induction: each sequence is `half` tokens drawn uniformly from the vocabulary, then the same
//! `half` tokens again. The loss is next-token cross-entropy at every position. The first half is
//! unpredictable (floor ln V); the repeated half is predictable by copying (floor 0), which is
//! what induction heads learn to do.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{MAX_DATA_TOKENS, MAX_SEQ_LEN, MAX_VOCAB, TaskError};
use crate::seed::{Stream, stream_rng};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InductionConfig {
    /// Tokens the random halves are drawn from.
    pub vocab: usize,
    /// Length of the random half; a sequence is twice as long.
    pub half: usize,
    /// Sequences in the fixed validation set the metrics are measured on.
    pub val_size: usize,
}

impl Default for InductionConfig {
    fn default() -> Self {
        Self {
            vocab: 32,
            half: 10,
            val_size: 512,
        }
    }
}

impl InductionConfig {
    pub fn seq_len(&self) -> usize {
        2 * self.half
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
        for seq in tokens.chunks_exact_mut(2 * half) {
            for t in &mut seq[..half] {
                *t = rng.random_range(0..vocab);
            }
            seq.copy_within(..half, half);
        }
        tokens
    }

    /// The fixed validation set of `seed`.
    pub fn val_set(&self, seed: u64) -> Vec<u32> {
        self.generate(self.val_size, &mut stream_rng(seed, Stream::ValData))
    }

    pub fn random_sequence(&self, rng: &mut impl Rng) -> Vec<u32> {
        self.generate(1, rng)
    }

    /// The token after the last one, where the repetition determines it: position `n` repeats
    /// position `n - half` for `half ≤ n < 2·half`.
    pub fn expected_next(&self, tokens: &[u32]) -> Option<u32> {
        let n = tokens.len();
        (n >= self.half && n < self.seq_len()).then(|| tokens[n - self.half])
    }

    /// Prediction positions whose loss is "first half": those predicting tokens `1..half`.
    /// (Position `half − 1` predicts the first repeated token, which nothing foretells; it
    /// belongs to neither half, as in the reference script.)
    pub fn first_half_predictions(&self) -> std::ops::Range<usize> {
        0..self.half - 1
    }

    /// Prediction positions whose loss is "repeated half": those predicting tokens
    /// `half + 1..2·half`.
    pub fn repeated_half_predictions(&self) -> std::ops::Range<usize> {
        self.half..self.seq_len() - 1
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
    }
}
