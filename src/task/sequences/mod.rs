//! A task defined by data: token sequences read from a file, each position with the token it is
//! scored on predicting next (or none). The formats:
//!
//! - JSON Lines ([`jsonl`]), one object per sequence: `{"tokens": [..]}` with integer ids or
//!   strings, and optionally `"loss_mask": [0/1, ..]` (1: the token after this position is
//!   scored) or `"targets": [..]` (each position's target, `null` where unscored), and `"split":
//!   "train" | "val"`. Without either, every position but the last is scored, as a language
//!   model's loss is.
//! - NumPy ([`npy`]): a `.npy` integer array `[N, T]` of token ids, or a `.npz` with `tokens` and
//!   optionally `loss_mask`, both `[N, T]`.
//! - A vocabulary ([`vocab`]): `vocab.json`, a list of strings whose index is the token id. String
//!   tokens are checked against it; without one they build it in order of first appearance.
//!
//! Every sequence of a file has the same length. Nothing is trusted: a problem is one
//! [`DataError`] that names the file, the line and the field.

mod config;
mod generate;
mod jsonl;
mod npy;
mod vocab;

pub use config::{DEFAULT_VAL_FRAC, ExampleData, SequencesConfig, file_sha256};
pub use generate::{Example, MAX_DIGITS, example_jsonl, example_vocab};
pub use vocab::read_vocab;

use std::fmt;
use std::path::{Path, PathBuf};

use rand::Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{MAX_DATA_TOKENS, MAX_SEQ_LEN, MAX_VOCAB};
use crate::seed::{Stream, stream_rng};

/// Data files larger than this are refused before they are read.
pub const MAX_DATA_FILE_BYTES: u64 = 1 << 30;

/// A position's target when it is not scored.
pub const UNSCORED: u32 = u32::MAX;

/// Which part of the data a sequence belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
}

/// The sequences of a data file.
#[derive(Debug, Clone, Default)]
pub struct SequenceData {
    /// Token strings by id, where the data or a vocabulary file name them.
    pub vocab: Option<Vec<String>>,
    /// Token ids are below this: the vocabulary's size, or the largest id plus one.
    pub d_vocab: usize,
    pub seq_len: usize,
    /// `[n × seq_len]` token ids.
    pub tokens: Vec<u32>,
    /// `[n × seq_len]`: the token each position is scored on predicting, or [`UNSCORED`].
    pub targets: Vec<u32>,
    /// Each sequence's split, where the file gives one.
    pub given_split: Vec<Option<Split>>,
    /// Sequence ids in the order of their tokens, for finding a typed sequence (built on first
    /// use).
    sorted: std::sync::OnceLock<Vec<u32>>,
}

/// The same sequences, targets, splits and names (whether a lookup index is built aside).
impl PartialEq for SequenceData {
    fn eq(&self, other: &Self) -> bool {
        self.vocab == other.vocab
            && self.d_vocab == other.d_vocab
            && self.seq_len == other.seq_len
            && self.tokens == other.tokens
            && self.targets == other.targets
            && self.given_split == other.given_split
    }
}

/// What is wrong with a data file, and where.
#[derive(Debug, Clone, PartialEq, Error)]
pub struct DataError {
    pub file: PathBuf,
    /// 1-based line of a JSON Lines file.
    pub line: Option<usize>,
    pub field: Option<&'static str>,
    pub message: String,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(field) = self.field {
            write!(f, ", \"{field}\"")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl DataError {
    pub(crate) fn new(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            field: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    pub(crate) fn field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }
}

/// Reads the sequences of `path` (`.jsonl`, `.npy` or `.npz`), with the token names of
/// `vocab_path` if given.
pub fn read_data(path: &Path, vocab_path: Option<&Path>) -> Result<SequenceData, DataError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| DataError::new(path, format!("cannot read it: {e}")))?;
    if meta.is_dir() {
        return Err(DataError::new(path, "a folder, not a data file"));
    }
    let size = meta.len();
    if size > MAX_DATA_FILE_BYTES {
        return Err(DataError::new(
            path,
            format!(
                "the file is {:.1} GB; data files of at most {} GB are read",
                size as f64 / 1e9,
                MAX_DATA_FILE_BYTES >> 30
            ),
        ));
    }
    let vocab = vocab_path.map(read_vocab).transpose()?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let data = match extension.as_str() {
        "npy" | "npz" => npy::read(path, vocab)?,
        "jsonl" | "json" | "ndjson" => jsonl::read(path, vocab)?,
        other => {
            return Err(DataError::new(
                path,
                format!("unknown data format \".{other}\": use .jsonl, .npy or .npz"),
            ));
        }
    };
    data.check_sizes(path)?;
    Ok(data)
}

impl SequenceData {
    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.given_split.len()
    }

    pub fn is_empty(&self) -> bool {
        self.given_split.is_empty()
    }

    /// The tokens of sequence `i`.
    pub fn sequence(&self, i: usize) -> &[u32] {
        &self.tokens[i * self.seq_len..(i + 1) * self.seq_len]
    }

    /// The targets of sequence `i` ([`UNSCORED`] where a position is not scored).
    pub fn targets_of(&self, i: usize) -> &[u32] {
        &self.targets[i * self.seq_len..(i + 1) * self.seq_len]
    }

    /// The training and validation sequences (indices): where the file gives a split, that one;
    /// the others drawn by `seed`, each to validation with probability `val_frac`.
    pub fn split(&self, val_frac: f64, seed: u64) -> (Vec<u32>, Vec<u32>) {
        let mut rng = stream_rng(seed, Stream::ValData);
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for (i, given) in self.given_split.iter().enumerate() {
            // Drawn for every sequence, so a given split elsewhere never shifts the draws.
            let drawn = if rng.random_bool(val_frac.clamp(0.0, 1.0)) {
                Split::Val
            } else {
                Split::Train
            };
            match given.unwrap_or(drawn) {
                Split::Train => train.push(i as u32),
                Split::Val => val.push(i as u32),
            }
        }
        (train, val)
    }

    /// A sequence whose first tokens are `prefix` and that scores the position after them: its
    /// index and the target there (the first such sequence in the file's order among equals).
    pub fn find_prefix(&self, prefix: &[u32]) -> Option<(usize, u32)> {
        let n = prefix.len();
        if n == 0 || n > self.seq_len {
            return None;
        }
        let sorted = self.sorted.get_or_init(|| {
            let mut ids: Vec<u32> = (0..self.len() as u32).collect();
            ids.sort_by(|&a, &b| {
                self.sequence(a as usize)
                    .cmp(self.sequence(b as usize))
                    .then(a.cmp(&b))
            });
            ids
        });
        let start = sorted.partition_point(|&i| &self.sequence(i as usize)[..n] < prefix);
        sorted[start..]
            .iter()
            .take_while(|&&i| &self.sequence(i as usize)[..n] == prefix)
            .map(|&i| (i as usize, self.targets_of(i as usize)[n - 1]))
            .filter(|&(_, t)| t != UNSCORED)
            .min_by_key(|&(i, _)| i)
    }

    /// Token `id`'s name: its string where the data have one, else the id.
    pub fn token_name(&self, id: u32) -> String {
        self.vocab
            .as_ref()
            .and_then(|v| v.get(id as usize).cloned())
            .unwrap_or_else(|| id.to_string())
    }

    /// Whether a model of `d_vocab` tokens in, `d_vocab_out` out and context `n_ctx` can take
    /// these sequences and predict their targets.
    pub fn check_model(
        &self,
        d_vocab: usize,
        d_vocab_out: usize,
        n_ctx: usize,
    ) -> Result<(), String> {
        self.check_fits(d_vocab, n_ctx)?;
        match self
            .targets
            .iter()
            .find(|&&t| t != UNSCORED && t as usize >= d_vocab_out)
        {
            Some(t) => Err(format!(
                "the data score token {t}, but the model predicts {d_vocab_out} tokens"
            )),
            None => Ok(()),
        }
    }

    /// Whether a model of `d_vocab` tokens and context `n_ctx` can take these sequences.
    pub fn check_fits(&self, d_vocab: usize, n_ctx: usize) -> Result<(), String> {
        if self.seq_len > n_ctx {
            return Err(format!(
                "the data's sequences have {} tokens; the model takes at most {n_ctx}",
                self.seq_len
            ));
        }
        if self.d_vocab > d_vocab {
            return Err(format!(
                "the data use {} token ids; the model's vocabulary has {d_vocab}",
                self.d_vocab
            ));
        }
        Ok(())
    }

    /// The limits every format shares: lengths, vocabulary, total size, something to score.
    fn check_sizes(&self, path: &Path) -> Result<(), DataError> {
        if self.is_empty() {
            return Err(DataError::new(path, "the file holds no sequences"));
        }
        if self.seq_len < 2 || self.seq_len > MAX_SEQ_LEN {
            return Err(DataError::new(
                path,
                format!(
                    "sequences of {} tokens: between 2 and {MAX_SEQ_LEN} are supported",
                    self.seq_len
                ),
            ));
        }
        if self.d_vocab > MAX_VOCAB {
            return Err(DataError::new(
                path,
                format!(
                    "{} token ids; at most {MAX_VOCAB} are supported",
                    self.d_vocab
                ),
            ));
        }
        if self.tokens.len() > MAX_DATA_TOKENS {
            return Err(DataError::new(
                path,
                format!(
                    "{} tokens; at most {MAX_DATA_TOKENS} are supported",
                    self.tokens.len()
                ),
            ));
        }
        Ok(())
    }
}

/// The targets of a sequence: the next token where `mask` is 1 (every position but the last
/// without a mask). An error names what is wrong.
fn targets_from_mask(tokens: &[u32], mask: Option<&[u8]>) -> Result<Vec<u32>, String> {
    let n = tokens.len();
    let Some(mask) = mask else {
        return Ok((0..n)
            .map(|i| tokens.get(i + 1).copied().unwrap_or(UNSCORED))
            .collect());
    };
    if mask.len() != n {
        return Err(format!(
            "has {} entries for {n} tokens; it needs one per token",
            mask.len()
        ));
    }
    if let Some(i) = mask.iter().position(|&m| m > 1) {
        return Err(format!("entry {i} is {}; it must be 0 or 1", mask[i]));
    }
    if mask.last() == Some(&1) {
        return Err("the last position is scored, but no token follows it".into());
    }
    Ok((0..n)
        .map(|i| {
            if mask[i] == 1 {
                tokens[i + 1]
            } else {
                UNSCORED
            }
        })
        .collect())
}

#[cfg(test)]
mod tests;
