//! Example data sets in the JSON Lines format, written the way a user's own generator would
//! write them: digits, a separator, then the answer, with only the answer scored.
//!
//! - `sort`: `d₁ … dₙ | sorted(d₁ … dₙ)`
//! - `reverse`: `d₁ … dₙ | dₙ … d₁`

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::seed::{Stream, stream_rng};

/// The example tasks `toylens data gen` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Example {
    /// Digits, `|`, then the same digits sorted.
    Sort,
    /// Digits, `|`, then the same digits in reverse order.
    Reverse,
}

impl Example {
    pub fn name(self) -> &'static str {
        match self {
            Example::Sort => "sort",
            Example::Reverse => "reverse",
        }
    }
}

/// Digits per sequence that an example may have: `2n + 1` tokens must fit a model's context.
pub const MAX_DIGITS: usize = 100;

/// One line of the file.
#[derive(Serialize)]
struct Line<'a> {
    tokens: Vec<&'a str>,
    loss_mask: Vec<u8>,
}

/// The vocabulary of the examples: the ten digits, then the separator.
pub fn example_vocab() -> Vec<String> {
    (0..10).map(|d| d.to_string()).chain(["|".into()]).collect()
}

/// `samples` sequences of `example` with `digits` digits each, drawn by `seed`, as JSON Lines
/// text: token names, and a mask that scores the answer (each position from the separator to
/// the last but one predicts the answer's next digit).
pub fn example_jsonl(example: Example, digits: usize, samples: usize, seed: u64) -> String {
    let vocab = example_vocab();
    let mut rng = stream_rng(seed, Stream::TrainData);
    let mut out = String::with_capacity(samples * (digits * 2 + 1) * 6);
    for _ in 0..samples {
        let input: Vec<usize> = (0..digits).map(|_| rng.random_range(0..10)).collect();
        let mut answer = input.clone();
        match example {
            Example::Sort => answer.sort_unstable(),
            Example::Reverse => answer.reverse(),
        }
        let ids = input.iter().chain([&10]).chain(&answer);
        let tokens: Vec<&str> = ids.map(|&i| vocab[i].as_str()).collect();
        let n = tokens.len();
        let loss_mask = (0..n).map(|i| u8::from(i >= digits && i + 1 < n)).collect();
        let line = Line { tokens, loss_mask };
        out.push_str(&serde_json::to_string(&line).expect("plain data serialises"));
        out.push('\n');
    }
    out
}
