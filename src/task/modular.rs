//! Modular addition, as in Nanda et al. (2023) and TransformerLens's grokking demo: the input is
//! `a b =` with `a, b ∈ [0, p)` and `=` the token `p`; the label is `(a + b) mod p`, scored at the
//! last position. A seeded fraction of all p² pairs is the training set and the rest the test set.

use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::TaskError;
use crate::seed::{Stream, stream_rng};

/// Largest modulus: p² pairs of three tokens stay small (4 M pairs).
pub const MAX_P: usize = 2_048;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModularAdditionConfig {
    /// The modulus; tokens `0..p` are numbers and `p` is `=`.
    pub p: usize,
    /// Fraction of the p² pairs that is trained on.
    pub train_frac: f64,
}

impl Default for ModularAdditionConfig {
    fn default() -> Self {
        Self {
            p: 113,
            train_frac: 0.3,
        }
    }
}

/// Pair `i` of the p² pairs is `(a, b) = (i / p, i % p)`, the order of the reference script.
#[derive(Debug, Clone, PartialEq)]
pub struct PairSplit {
    pub p: usize,
    pub train: Vec<u32>,
    pub test: Vec<u32>,
}

impl PairSplit {
    pub fn pair(&self, i: u32) -> (u32, u32) {
        (i / self.p as u32, i % self.p as u32)
    }
    /// The three input tokens of pair `i`.
    pub fn tokens(&self, i: u32) -> [u32; 3] {
        let (a, b) = self.pair(i);
        [a, b, self.p as u32]
    }
    pub fn label(&self, i: u32) -> u32 {
        let (a, b) = self.pair(i);
        (a + b) % self.p as u32
    }
    /// The pairs `ids` as flat model input: `a b` per pair, or `a b =` with `with_eq`.
    pub fn inputs(&self, ids: &[u32], with_eq: bool) -> Vec<u32> {
        let width = if with_eq { 3 } else { 2 };
        ids.iter()
            .flat_map(|&i| self.tokens(i).into_iter().take(width))
            .collect()
    }

    /// `[p × p]`: whether pair `(a, b)` is in the training set.
    pub fn train_mask(&self) -> Vec<bool> {
        let mut mask = vec![false; self.p * self.p];
        self.train.iter().for_each(|&i| mask[i as usize] = true);
        mask
    }
}

impl ModularAdditionConfig {
    pub fn pairs(&self) -> usize {
        self.p * self.p
    }

    pub fn train_count(&self) -> usize {
        (self.train_frac * self.pairs() as f64) as usize
    }

    pub fn validate(&self) -> Result<(), TaskError> {
        if !(2..=MAX_P).contains(&self.p) {
            return Err(TaskError::Setting(format!(
                "p must be between 2 and {MAX_P}, got {}",
                self.p
            )));
        }
        if !(self.train_frac.is_finite() && self.train_frac > 0.0 && self.train_frac < 1.0) {
            return Err(TaskError::Setting(format!(
                "train_frac must be between 0 and 1 (exclusive), got {}",
                self.train_frac
            )));
        }
        let n = self.train_count();
        if n == 0 || n == self.pairs() {
            return Err(TaskError::Setting(format!(
                "train_frac {} of {} pairs leaves the training or test set empty",
                self.train_frac,
                self.pairs()
            )));
        }
        Ok(())
    }

    /// The seeded train/test split: a random permutation of all pairs (from the run's
    /// training-data stream), the first `train_count` of it for training.
    pub fn split(&self, seed: u64) -> PairSplit {
        let mut order: Vec<u32> = (0..self.pairs() as u32).collect();
        order.shuffle(&mut stream_rng(seed, Stream::TrainData));
        let test = order.split_off(self.train_count());
        PairSplit {
            p: self.p,
            train: order,
            test,
        }
    }

    pub fn random_sequence(&self, rng: &mut impl Rng) -> Vec<u32> {
        let p = self.p as u32;
        vec![rng.random_range(0..p), rng.random_range(0..p), p]
    }

    /// `(a + b) mod p` for `a b =`.
    pub fn expected_answer(&self, tokens: &[u32]) -> Option<u32> {
        let p = self.p as u32;
        match *tokens {
            [a, b, eq] if a < p && b < p && eq == p => Some((a + b) % p),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_every_pair_once() {
        let task = ModularAdditionConfig::default();
        task.validate().unwrap();
        let split = task.split(0);
        assert_eq!(split.train.len(), 3830); // int(0.3 · 113²), as the reference script
        assert_eq!(split.train.len() + split.test.len(), 113 * 113);
        let mut all: Vec<u32> = split.train.iter().chain(&split.test).copied().collect();
        all.sort_unstable();
        assert!(all.iter().enumerate().all(|(i, &x)| i as u32 == x));
        assert_eq!(split, task.split(0));
        assert_ne!(split.train, task.split(1).train);
        assert_eq!(split.tokens(113 * 5 + 7), [5, 7, 113]);
        assert_eq!(split.label(113 * 100 + 20), 7);
        assert_eq!(task.expected_answer(&[100, 20, 113]), Some(7));
        assert_eq!(task.expected_answer(&[100, 20]), None);
        assert_eq!(task.expected_answer(&[100, 113, 113]), None);
        for bad in [
            ModularAdditionConfig {
                p: 1,
                ..task.clone()
            },
            ModularAdditionConfig {
                train_frac: 1.0,
                ..task.clone()
            },
            ModularAdditionConfig {
                train_frac: f64::NAN,
                ..task.clone()
            },
            ModularAdditionConfig {
                p: 2,
                train_frac: 0.1,
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
