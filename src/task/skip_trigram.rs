//! The skip-trigram task: its parameters and seeded data generation.
//!
//! A sample is **signal** with probability `signal_prob`: `[a, n…, b, query]` where `a` and `b` are
//! trigger tokens, the middle is noise, and the label is `answer(sorted(a, b))`. Otherwise it is
//! **noise**: every token is a noise token and the label is uniform over the vocabulary, independent
//! of the input. The defaults reproduce the reference notebook exactly.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{MAX_DATA_TOKENS, MAX_SEQ_LEN, MAX_VOCAB, TaskError};
use crate::seed::{Stream, stream_rng};

/// An inclusive range of token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRange {
    pub first: u32,
    pub last: u32,
}

impl TokenRange {
    pub const fn new(first: u32, last: u32) -> Self {
        Self { first, last }
    }
    pub fn len(&self) -> usize {
        (self.last.saturating_sub(self.first) + 1) as usize
    }
    pub fn is_empty(&self) -> bool {
        self.last < self.first
    }
    pub fn contains(&self, token: u32) -> bool {
        (self.first..=self.last).contains(&token)
    }
    pub fn overlaps(&self, other: &TokenRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
    fn sample(&self, rng: &mut ChaCha8Rng) -> u32 {
        rng.random_range(self.first..=self.last)
    }
}

/// One entry of the answer map: the unordered trigger pair `{a, b}` is answered with `label`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub a: u32,
    pub b: u32,
    pub label: u32,
}

/// The notebook's `ans_map`.
pub const NOTEBOOK_ANSWERS: [(u32, u32, u32); 10] = [
    (1, 1, 0),
    (1, 2, 1),
    (1, 3, 2),
    (1, 4, 3),
    (2, 2, 4),
    (2, 3, 5),
    (2, 4, 6),
    (3, 3, 7),
    (3, 4, 8),
    (4, 4, 9),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SkipTrigramConfig {
    /// Tokens per sequence (the notebook's `prompt_length`).
    pub seq_len: usize,
    /// Probability that a sample is signal (the notebook's `1/prob`, 0.5).
    pub signal_prob: f64,
    /// The token that ends every signal sequence and asks for the answer.
    pub query_token: u32,
    /// Tokens `a` and `b` are drawn from these.
    pub trigger_tokens: TokenRange,
    /// Filler tokens; noise sequences consist of them only.
    pub noise_tokens: TokenRange,
    /// The label for every unordered pair of trigger tokens.
    pub answer_map: Vec<Answer>,
    pub train_size: usize,
    pub val_size: usize,
}

impl Default for SkipTrigramConfig {
    fn default() -> Self {
        Self {
            seq_len: 4,
            signal_prob: 0.5,
            query_token: 0,
            trigger_tokens: TokenRange::new(1, 4),
            noise_tokens: TokenRange::new(5, 10),
            answer_map: NOTEBOOK_ANSWERS
                .iter()
                .map(|&(a, b, label)| Answer { a, b, label })
                .collect(),
            train_size: 100_000,
            val_size: 1_000,
        }
    }
}

/// The best any model can do on this task, given how often samples are signal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ceilings {
    /// Fraction of samples that are signal (expected, or realised in a data set).
    pub signal_frac: f64,
    /// Best possible accuracy: signal is fully predictable, noise is right 1 time in `vocab`.
    pub best_acc: f64,
    /// Bayes-optimal cross-entropy in nats: 0 on signal, ln(vocab) on noise.
    pub bayes_ce: f64,
    /// Best accuracy on noise alone (1 / vocab).
    pub best_noise_acc: f64,
}

impl Ceilings {
    pub fn for_signal_fraction(signal_frac: f64, vocab: usize) -> Self {
        let v = vocab as f64;
        Self {
            signal_frac,
            best_acc: signal_frac + (1.0 - signal_frac) / v,
            bayes_ce: (1.0 - signal_frac) * v.ln(),
            best_noise_acc: 1.0 / v,
        }
    }
}

impl SkipTrigramConfig {
    /// Number of token ids (and labels) the task uses: everything from 0 to the largest id.
    pub fn vocab_size(&self) -> usize {
        let labels = self.answer_map.iter().map(|a| a.label);
        let max = [
            self.query_token,
            self.trigger_tokens.last,
            self.noise_tokens.last,
        ]
        .into_iter()
        .chain(labels)
        .max()
        .unwrap_or(0);
        max as usize + 1
    }

    pub fn validate(&self) -> Result<(), TaskError> {
        if self.seq_len < 3 {
            return Err(TaskError::SeqLenTooShort(self.seq_len));
        }
        if self.trigger_tokens.last as usize >= MAX_VOCAB
            || self.noise_tokens.last as usize >= MAX_VOCAB
            || self.query_token as usize >= MAX_VOCAB
        {
            return Err(TaskError::VocabTooLarge(self.vocab_size(), MAX_VOCAB));
        }
        if !(0.0..=1.0).contains(&self.signal_prob) || !self.signal_prob.is_finite() {
            return Err(TaskError::BadSignalProb(self.signal_prob));
        }
        for (name, r) in [
            ("trigger", self.trigger_tokens),
            ("noise", self.noise_tokens),
        ] {
            if r.is_empty() {
                return Err(TaskError::EmptyRange(name, r.first, r.last));
            }
        }
        let vocab = self.vocab_size();
        if vocab > MAX_VOCAB {
            return Err(TaskError::VocabTooLarge(vocab, MAX_VOCAB));
        }
        // Signal must be recognisable from the input alone: the query token never appears in noise.
        if self.trigger_tokens.overlaps(&self.noise_tokens) {
            return Err(TaskError::Overlap(
                "trigger and noise token ranges overlap".into(),
            ));
        }
        if self.trigger_tokens.contains(self.query_token)
            || self.noise_tokens.contains(self.query_token)
        {
            return Err(TaskError::Overlap(format!(
                "query token {} is also a trigger or noise token",
                self.query_token
            )));
        }
        if self.seq_len > MAX_SEQ_LEN {
            return Err(TaskError::SeqLenTooLong(self.seq_len));
        }
        for (name, size) in [("train_size", self.train_size), ("val_size", self.val_size)] {
            if size == 0 {
                return Err(TaskError::EmptySplit(name));
            }
            let tokens = size as u128 * self.seq_len as u128;
            if tokens > MAX_DATA_TOKENS as u128 {
                return Err(TaskError::TooMuchData(name, tokens));
            }
        }
        self.answer_table().map(|_| ())
    }

    /// Dense `[trigger × trigger]` table of labels, symmetric.
    fn answer_table(&self) -> Result<Vec<u32>, TaskError> {
        let n = self.trigger_tokens.len();
        let first = self.trigger_tokens.first;
        let mut table = vec![u32::MAX; n * n];
        for ans in &self.answer_map {
            if !self.trigger_tokens.contains(ans.a) || !self.trigger_tokens.contains(ans.b) {
                return Err(TaskError::NotTriggerPair(ans.a, ans.b));
            }
            let (i, j) = ((ans.a - first) as usize, (ans.b - first) as usize);
            for idx in [i * n + j, j * n + i] {
                if table[idx] != u32::MAX && table[idx] != ans.label {
                    return Err(TaskError::ConflictingAnswer(ans.a, ans.b));
                }
                table[idx] = ans.label;
            }
        }
        if let Some(idx) = table.iter().position(|&l| l == u32::MAX) {
            return Err(TaskError::MissingAnswer(
                first + (idx / n) as u32,
                first + (idx % n) as u32,
            ));
        }
        Ok(table)
    }

    /// The label of the trigger pair `(a, b)`, in either order.
    pub fn answer(&self, a: u32, b: u32) -> Option<u32> {
        self.answer_map
            .iter()
            .find(|ans| (ans.a, ans.b) == (a, b) || (ans.a, ans.b) == (b, a))
            .map(|ans| ans.label)
    }

    /// The expected answer if `tokens` is a well-formed signal sequence of this task.
    pub fn expected_answer(&self, tokens: &[u32]) -> Option<u32> {
        let n = tokens.len();
        if n < 3 || n != self.seq_len || tokens[n - 1] != self.query_token {
            return None;
        }
        let (a, b) = (tokens[0], tokens[n - 2]);
        let middle_is_noise = tokens[1..n - 2]
            .iter()
            .all(|&t| self.noise_tokens.contains(t));
        if middle_is_noise && self.trigger_tokens.contains(a) && self.trigger_tokens.contains(b) {
            self.answer(a, b)
        } else {
            None
        }
    }

    /// Whether a sequence is signal, as the metrics count it: it ends in the query token, which
    /// noise never contains.
    pub fn is_signal(&self, tokens: &[u32]) -> bool {
        tokens.last() == Some(&self.query_token)
    }

    /// Ceilings for the expected signal fraction.
    pub fn ceilings(&self) -> Ceilings {
        Ceilings::for_signal_fraction(self.signal_prob, self.vocab_size())
    }

    /// Generates `size` samples from `rng`. Callers pass a stream from [`stream_rng`].
    /// Refuses an invalid task, and a size whose tokens would not fit in memory, before
    /// allocating anything.
    pub fn generate(&self, size: usize, rng: &mut ChaCha8Rng) -> Result<Dataset, TaskError> {
        self.validate()?;
        if size == 0 {
            return Err(TaskError::EmptySplit("the number of samples"));
        }
        let tokens = size as u128 * self.seq_len as u128;
        if tokens > MAX_DATA_TOKENS as u128 {
            return Err(TaskError::TooMuchData("the number of samples", tokens));
        }
        let table = self.answer_table()?;
        let n_trig = self.trigger_tokens.len();
        let (len, vocab) = (self.seq_len, self.vocab_size() as u32);
        let mut tokens = vec![0u32; size * len];
        let mut labels = Vec::with_capacity(size);
        let mut is_signal = Vec::with_capacity(size);
        for row in tokens.chunks_exact_mut(len) {
            for t in row.iter_mut() {
                *t = self.noise_tokens.sample(rng);
            }
            let signal = rng.random_bool(self.signal_prob);
            let label = if signal {
                let a = self.trigger_tokens.sample(rng);
                let b = self.trigger_tokens.sample(rng);
                row[0] = a;
                row[len - 2] = b;
                row[len - 1] = self.query_token;
                let first = self.trigger_tokens.first;
                table[(a - first) as usize * n_trig + (b - first) as usize]
            } else {
                rng.random_range(0..vocab)
            };
            labels.push(label);
            is_signal.push(signal);
        }
        Ok(Dataset {
            seq_len: len,
            vocab: vocab as usize,
            tokens,
            labels,
            is_signal,
        })
    }

    /// The training set for `seed` (its own stream, independent of every other).
    pub fn train_set(&self, seed: u64) -> Result<Dataset, TaskError> {
        self.generate(self.train_size, &mut stream_rng(seed, Stream::TrainData))
    }

    /// The validation set for `seed`.
    pub fn val_set(&self, seed: u64) -> Result<Dataset, TaskError> {
        self.generate(self.val_size, &mut stream_rng(seed, Stream::ValData))
    }

    /// One random sequence of the requested kind (for "show me an example" buttons). A sequence
    /// too short to hold a signal (an invalid task) is all noise.
    pub fn random_sequence(&self, signal: bool, rng: &mut impl Rng) -> Vec<u32> {
        let len = self.seq_len;
        let mut seq: Vec<u32> = (0..len)
            .map(|_| rng.random_range(self.noise_tokens.first..=self.noise_tokens.last))
            .collect();
        if signal && len >= 3 {
            let trigger = self.trigger_tokens.first..=self.trigger_tokens.last;
            seq[0] = rng.random_range(trigger.clone());
            seq[len - 2] = rng.random_range(trigger);
            seq[len - 1] = self.query_token;
        }
        seq
    }

    /// How many signal sequences the task has (`None` if more than `usize::MAX`).
    pub fn signal_sequence_count(&self) -> Option<usize> {
        let n_trig = self.trigger_tokens.len();
        self.noise_tokens
            .len()
            .checked_pow(self.seq_len.saturating_sub(3) as u32)?
            .checked_mul(n_trig * n_trig)
    }

    /// Every signal sequence of the task, in lexicographic order of (a, middle…, b).
    pub fn all_signal_sequences(&self) -> Vec<Vec<u32>> {
        self.signal_sequences(usize::MAX)
    }

    /// The first `limit` signal sequences in lexicographic order of (a, middle…, b).
    pub fn signal_sequences(&self, limit: usize) -> Vec<Vec<u32>> {
        let mut out = Vec::new();
        let Some(middle_len) = self.seq_len.checked_sub(3) else {
            return out;
        };
        let noise: Vec<u32> = (self.noise_tokens.first..=self.noise_tokens.last).collect();
        let mut middle = vec![0usize; middle_len]; // odometer over noise indices
        'outer: for a in self.trigger_tokens.first..=self.trigger_tokens.last {
            middle.iter_mut().for_each(|m| *m = 0);
            loop {
                for b in self.trigger_tokens.first..=self.trigger_tokens.last {
                    if out.len() >= limit {
                        break 'outer;
                    }
                    let mut seq = Vec::with_capacity(self.seq_len);
                    seq.push(a);
                    seq.extend(middle.iter().map(|&m| noise[m]));
                    seq.push(b);
                    seq.push(self.query_token);
                    out.push(seq);
                }
                // Advance the odometer; the last digit moves fastest.
                let mut i = middle_len;
                loop {
                    if i == 0 {
                        continue 'outer;
                    }
                    i -= 1;
                    middle[i] += 1;
                    if middle[i] < noise.len() {
                        break;
                    }
                    middle[i] = 0;
                }
            }
        }
        out
    }
}

/// Samples stored flat: `tokens[i * seq_len .. (i + 1) * seq_len]` is sample `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub seq_len: usize,
    pub vocab: usize,
    pub tokens: Vec<u32>,
    pub labels: Vec<u32>,
    pub is_signal: Vec<bool>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn sample(&self, i: usize) -> &[u32] {
        &self.tokens[i * self.seq_len..(i + 1) * self.seq_len]
    }
    pub fn signal_fraction(&self) -> f64 {
        let n = self.is_signal.iter().filter(|&&s| s).count();
        n as f64 / self.len().max(1) as f64
    }
    /// Ceilings for the signal fraction this data set actually has.
    pub fn ceilings(&self) -> Ceilings {
        Ceilings::for_signal_fraction(self.signal_fraction(), self.vocab)
    }
    /// Label counts `[vocab]` over signal samples and over noise samples (the notebook's In[4]).
    pub fn label_histograms(&self) -> (Vec<usize>, Vec<usize>) {
        let mut signal = vec![0; self.vocab];
        let mut noise = vec![0; self.vocab];
        for (&label, &sig) in self.labels.iter().zip(&self.is_signal) {
            let hist = if sig { &mut signal } else { &mut noise };
            hist[label as usize] += 1;
        }
        (signal, noise)
    }
}

#[cfg(test)]
mod tests;
