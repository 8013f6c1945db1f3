//! Lays a data set out for one forward path and turns a batch into a loss.
//!
//! Every path computes the same mean cross-entropy on the last position; they differ only in how
//! much work they do. The multiset path precomputes, once per data set, which distinct
//! (last token, token multiset) row each sample maps to. A batch is then a `[rows, vocab]` matrix of
//! label counts, and the loss is `-Σ counts · log_softmax(logits) / batch`: rows and labels absent
//! from the batch have count 0 and contribute exactly nothing.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::model::{Kernels, Plan, Shortcut, Transformer};
use crate::task::Dataset;

use crate::config::PathChoice;

/// Which forward pass a task's objective takes: the model's plan says which shortcuts it has,
/// and a skip-trigram data set picks among them by its size ([`PreparedSet::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardPath {
    /// The general path, scored at the last position.
    Full,
    /// The token-table shortcut's last query row.
    LastPosition,
    /// The token-table shortcut over distinct token multisets.
    Multiset,
    /// Modular addition's fixed-query shortcut (`crate::model::Transformer::fixed_query_loss`).
    FixedQuery,
    /// The next-token loss at every position, by the plan's LM step.
    NextToken,
}

impl ForwardPath {
    /// How a step on this path computes, in words: the parts of the model's plan it uses
    /// ("direct LM step, fused attention with the residual add, fused unembed + loss, AVX2 host
    /// Adam").
    pub fn describe(self, plan: &Plan) -> String {
        let mut parts = match self {
            ForwardPath::Full => vec!["full forward pass", plan.attention_words()],
            ForwardPath::LastPosition => vec!["token-table shortcut (the last query row)"],
            ForwardPath::Multiset => vec!["token-table shortcut (token multisets)"],
            ForwardPath::FixedQuery => vec!["fixed-query shortcut"],
            ForwardPath::NextToken => vec![
                plan.lm_step_words(),
                plan.attention_words(),
                plan.lm_loss_words(),
            ],
        };
        parts.push(plan.update_words());
        parts.join(", ")
    }

    pub fn name(self) -> &'static str {
        match self {
            ForwardPath::Full => "full",
            ForwardPath::LastPosition => "last_position",
            ForwardPath::Multiset => "multiset",
            ForwardPath::FixedQuery => "fixed_query",
            ForwardPath::NextToken => "next_token",
        }
    }
}

/// For each sample, its distinct (last token, multiset) row.
#[derive(Debug, Clone)]
pub struct MultisetIndex {
    pub row_of_sample: Vec<u32>,
    /// Last token of each row.
    pub last: Vec<u32>,
    /// `[rows × vocab]`: ln(count of each token in the row's sequence), −inf where absent.
    pub log_counts: Vec<f32>,
    pub is_signal: Vec<bool>,
}

impl MultisetIndex {
    pub fn rows(&self) -> usize {
        self.last.len()
    }

    /// `None` when a row key does not fit in 128 bits (long sequences or huge vocabularies); the
    /// multiset path is not worth it there anyway, since nearly every row is distinct.
    pub fn build(data: &Dataset) -> Option<Self> {
        let (len, vocab) = (data.seq_len, data.vocab);
        let bits = (usize::BITS - (vocab.max(2) - 1).leading_zeros()) as usize;
        if bits * (len + 1) > 128 {
            return None;
        }
        let mut row_of_key: HashMap<u128, u32> = HashMap::new();
        let mut index = Self {
            row_of_sample: Vec::with_capacity(data.len()),
            last: Vec::new(),
            log_counts: Vec::new(),
            is_signal: Vec::new(),
        };
        let mut sorted = vec![0u32; len];
        for (i, seq) in data.tokens.chunks_exact(len).enumerate() {
            sorted.copy_from_slice(seq);
            sorted.sort_unstable();
            let key = sorted
                .iter()
                .chain(std::iter::once(&seq[len - 1]))
                .fold(0u128, |k, &t| (k << bits) | t as u128);
            let next = index.last.len() as u32;
            let row = *row_of_key.entry(key).or_insert(next);
            if row == next {
                index.last.push(seq[len - 1]);
                index.is_signal.push(data.is_signal[i]);
                let start = index.log_counts.len();
                index.log_counts.resize(start + vocab, 0.0);
                for &t in seq {
                    index.log_counts[start + t as usize] += 1.0;
                }
                for c in &mut index.log_counts[start..] {
                    *c = c.ln(); // ln 0 = -inf: absent tokens get no attention
                }
            }
            index.row_of_sample.push(row);
        }
        Some(index)
    }
}

/// The path `choice` asks for where the model's `plan` has the token-table shortcut; the full
/// path otherwise.
pub fn allowed_choice(choice: PathChoice, plan: &Plan) -> PathChoice {
    match plan.shortcut {
        Shortcut::TokenTable => choice,
        _ => PathChoice::Full,
    }
}

/// A data set plus what its forward path needs on the device.
pub struct PreparedSet {
    pub data: Dataset,
    pub path: ForwardPath,
    multiset: Option<(MultisetIndex, Tensor, Tensor)>,
}

impl PreparedSet {
    /// `data` laid out for the path `choice` asks for, where the model's `plan` has the
    /// token-table shortcut (the full path otherwise). `batch_size` is the number of samples a
    /// step sees; `Auto` takes the multiset path when the distinct rows are far fewer than that.
    pub fn new(
        data: Dataset,
        choice: PathChoice,
        batch_size: usize,
        plan: &Plan,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let choice = allowed_choice(choice, plan);
        let index = match choice {
            PathChoice::Auto | PathChoice::Multiset => MultisetIndex::build(&data),
            _ => None,
        };
        let path = match (choice, &index) {
            (PathChoice::Full, _) => ForwardPath::Full,
            (PathChoice::LastPosition, _) => ForwardPath::LastPosition,
            (PathChoice::Multiset, Some(_)) => ForwardPath::Multiset,
            (PathChoice::Auto, Some(ix)) if ix.rows() * 4 <= batch_size.min(data.len()) => {
                ForwardPath::Multiset
            }
            _ => ForwardPath::LastPosition,
        };
        let multiset = match (path, index) {
            (ForwardPath::Multiset, Some(ix)) => {
                let last = Tensor::from_slice(&ix.last, ix.rows(), device)?;
                let log_counts =
                    Tensor::from_slice(&ix.log_counts, (ix.rows(), data.vocab), device)?;
                Some((ix, last, log_counts))
            }
            _ => None,
        };
        Ok(Self {
            data,
            path,
            multiset,
        })
    }

    pub fn multiset_rows(&self) -> Option<usize> {
        self.multiset.as_ref().map(|(ix, _, _)| ix.rows())
    }

    /// Builds the batch of the samples at `indices`.
    pub fn batch(&self, indices: &[u32], device: &Device) -> candle_core::Result<Batch<'_>> {
        let data = &self.data;
        match &self.multiset {
            Some((ix, last, log_counts)) => {
                let vocab = data.vocab;
                let mut label_counts = vec![0.0f32; ix.rows() * vocab];
                for &i in indices {
                    let row = ix.row_of_sample[i as usize] as usize;
                    label_counts[row * vocab + data.labels[i as usize] as usize] += 1.0;
                }
                let counts = Tensor::from_slice(&label_counts, (ix.rows(), vocab), device)?;
                Ok(Batch {
                    input: BatchInput::Multiset {
                        last: last.clone(),
                        log_counts: log_counts.clone(),
                        counts,
                    },
                    labels: BatchLabels::Counts {
                        counts: label_counts,
                        is_signal: &ix.is_signal,
                    },
                    size: indices.len(),
                })
            }
            None => {
                let len = data.seq_len;
                let mut tokens = Vec::with_capacity(indices.len() * len);
                let mut labels = Vec::with_capacity(indices.len());
                let mut is_signal = Vec::with_capacity(indices.len());
                for &i in indices {
                    tokens.extend_from_slice(data.sample(i as usize));
                    labels.push(data.labels[i as usize]);
                    is_signal.push(data.is_signal[i as usize]);
                }
                Ok(Batch {
                    input: BatchInput::Samples {
                        tokens: Tensor::from_vec(tokens, (indices.len(), len), device)?,
                        labels: Tensor::from_slice(&labels, indices.len(), device)?,
                        full: self.path == ForwardPath::Full,
                    },
                    labels: BatchLabels::PerSample { labels, is_signal },
                    size: indices.len(),
                })
            }
        }
    }
}

pub enum BatchInput {
    Samples {
        tokens: Tensor,
        labels: Tensor,
        full: bool,
    },
    Multiset {
        last: Tensor,
        log_counts: Tensor,
        counts: Tensor,
    },
}

/// Host-side labels, for counting correct predictions.
pub enum BatchLabels<'a> {
    PerSample {
        labels: Vec<u32>,
        is_signal: Vec<bool>,
    },
    /// `[rows × vocab]` label counts and whether each row is signal.
    Counts {
        counts: Vec<f32>,
        is_signal: &'a [bool],
    },
}

pub struct Batch<'a> {
    pub input: BatchInput,
    pub labels: BatchLabels<'a>,
    /// Number of samples.
    pub size: usize,
}

impl Batch<'_> {
    /// The mean cross-entropy (a scalar tensor that backpropagates into the model) and the
    /// last-position logits it was computed from.
    pub fn loss(&self, model: &Transformer) -> candle_core::Result<(Tensor, Tensor)> {
        match &self.input {
            BatchInput::Samples {
                tokens,
                labels,
                full,
            } => {
                let logits = if *full {
                    model.forward_last_general(tokens)?
                } else {
                    model.forward_last(tokens)?
                };
                let loss = candle_nn::loss::cross_entropy(&logits, labels)?;
                Ok((loss, logits))
            }
            BatchInput::Multiset {
                last,
                log_counts,
                counts,
            } => {
                let logits = model.forward_multiset(last, log_counts)?;
                let log_probs = candle_nn::ops::log_softmax(&logits, 1)?;
                let loss = (counts * log_probs)?
                    .sum_all()?
                    .affine(-1.0 / self.size as f64, 0.0)?;
                Ok((loss, logits))
            }
        }
    }

    /// Counts correct predictions; `logits` `[rows, vocab]` are the ones [`Batch::loss`]
    /// returned.
    pub fn tally(
        &self,
        logits: &Tensor,
        mean_loss: f64,
        kernels: Kernels,
    ) -> candle_core::Result<Tally> {
        let mut tally = Tally {
            loss_sum: mean_loss * self.size as f64,
            ..Tally::default()
        };
        let vocab = logits.dim(1)?;
        let rows = crate::model::predictions(logits, kernels)?;
        match &self.labels {
            BatchLabels::PerSample { labels, is_signal } => {
                for ((&pred, &label), &signal) in rows.iter().zip(labels).zip(is_signal) {
                    tally.add(signal, 1.0, if pred == label { 1.0 } else { 0.0 });
                }
            }
            BatchLabels::Counts { counts, is_signal } => {
                for ((&pred, row_counts), &signal) in rows
                    .iter()
                    .zip(counts.chunks_exact(vocab))
                    .zip(is_signal.iter())
                {
                    let n: f32 = row_counts.iter().sum();
                    if n > 0.0 {
                        tally.add(signal, n as f64, row_counts[pred as usize] as f64);
                    }
                }
            }
        }
        Ok(tally)
    }
}

/// Running sums for loss and accuracy, split by signal and noise.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub loss_sum: f64,
    pub signal_n: f64,
    pub signal_correct: f64,
    pub noise_n: f64,
    pub noise_correct: f64,
}

impl Tally {
    pub(crate) fn add(&mut self, signal: bool, n: f64, correct: f64) {
        if signal {
            self.signal_n += n;
            self.signal_correct += correct;
        } else {
            self.noise_n += n;
            self.noise_correct += correct;
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.loss_sum += other.loss_sum;
        self.signal_n += other.signal_n;
        self.signal_correct += other.signal_correct;
        self.noise_n += other.noise_n;
        self.noise_correct += other.noise_correct;
    }

    pub fn n(&self) -> f64 {
        self.signal_n + self.noise_n
    }
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.n().max(1.0)
    }
    pub fn acc(&self) -> f64 {
        (self.signal_correct + self.noise_correct) / self.n().max(1.0)
    }
    /// Accuracy on signal samples (NaN-free: 0 when there are none).
    pub fn acc_signal(&self) -> f64 {
        self.signal_correct / self.signal_n.max(1.0)
    }
    pub fn acc_noise(&self) -> f64 {
        self.noise_correct / self.noise_n.max(1.0)
    }
}
