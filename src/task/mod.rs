//! The tasks a model can be trained on: what a sequence looks like, where the loss is taken, and
//! what the metrics and ceilings are. Each task's data comes from the run's seed.
//!
//! - [`SkipTrigramConfig`]: the reference notebook's task; loss at the last position.
//! - [`InductionConfig`]: random tokens repeated once; next-token loss at every position.
//! - [`ModularAdditionConfig`]: `a b =` → `(a + b) mod p`; a seeded split of all pairs.
//! - [`SequencesConfig`]: sequences read from a file (or an example generated in memory), scored
//!   where the file says.
//! - [`NoTask`]: a model opened without one (a TransformerLens state dict): it can be inspected
//!   and analysed on typed sequences, but there is no data to train or evaluate on.

mod induction;
mod modular;
mod sequence;
pub mod sequences;
mod skip_trigram;

pub use induction::InductionConfig;
pub use modular::{MAX_P, ModularAdditionConfig, PairSplit};
pub use sequence::{SequenceError, TokenNames, format_sequence, parse_sequence};
pub use sequences::SequencesConfig;
pub use skip_trigram::{
    Answer, Ceilings, Dataset, NOTEBOOK_ANSWERS, SkipTrigramConfig, TokenRange,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest vocabulary we accept: the frozen one-hot embedding is a dense `[vocab, vocab]` matrix
/// (64 MiB at 4096).
pub const MAX_VOCAB: usize = 4_096;
/// Longest sequence we accept.
pub const MAX_SEQ_LEN: usize = 1_024;
/// Most tokens a data set may hold (train or validation): 200 MiB of u32.
pub const MAX_DATA_TOKENS: usize = 50_000_000;

#[derive(Debug, Clone, Error, PartialEq)]
pub enum TaskError {
    #[error("seq_len must be at least 3 (trigger, trigger, query), got {0}")]
    SeqLenTooShort(usize),
    #[error("signal_prob must be between 0 and 1, got {0}")]
    BadSignalProb(f64),
    #[error("{0} token range is empty ({1}..={2})")]
    EmptyRange(&'static str, u32, u32),
    #[error("{0}")]
    Overlap(String),
    #[error("answer_map has no answer for the trigger pair ({0}, {1})")]
    MissingAnswer(u32, u32),
    #[error("answer_map entry ({0}, {1}) is not a pair of trigger tokens")]
    NotTriggerPair(u32, u32),
    #[error("answer_map gives the pair ({0}, {1}) two different labels")]
    ConflictingAnswer(u32, u32),
    #[error("{0} must be at least 1")]
    EmptySplit(&'static str),
    #[error("the vocabulary would have {0} tokens; at most {1} are supported")]
    VocabTooLarge(usize, usize),
    #[error("seq_len {0} is too long; at most {MAX_SEQ_LEN} tokens are supported")]
    SeqLenTooLong(usize),
    #[error("{0} × seq_len is {1} tokens; at most {MAX_DATA_TOKENS} fit in memory")]
    TooMuchData(&'static str, u128),
    /// A setting of the induction or modular-addition task, with what to change.
    #[error("{0}")]
    Setting(String),
    /// What needs a task's data, asked of a model that has no task.
    #[error("the model has no task, so there is no data to {0}: choose a task first")]
    NoData(&'static str),
}

/// A model's dimensions when it came without a task: typed sequences of up to `n_ctx` tokens
/// below `vocab`, predicting one of `vocab_out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoTask {
    pub vocab: usize,
    pub vocab_out: usize,
    pub n_ctx: usize,
}

/// Which task a run trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    #[value(alias = "skip_trigram")]
    SkipTrigram,
    Induction,
    #[value(alias = "modular_addition")]
    ModularAddition,
    /// Sequences from a data file (`--data`); not in [`TaskKind::ALL`], which have defaults.
    #[value(skip)]
    Sequences,
    /// A model opened without a task; never chosen (not in [`TaskKind::ALL`]).
    #[value(skip)]
    None,
}

impl TaskKind {
    pub const ALL: [TaskKind; 3] = [
        TaskKind::SkipTrigram,
        TaskKind::Induction,
        TaskKind::ModularAddition,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TaskKind::SkipTrigram => "skip_trigram",
            TaskKind::Induction => "induction",
            TaskKind::ModularAddition => "modular_addition",
            TaskKind::Sequences => "sequences",
            TaskKind::None => "none",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            TaskKind::SkipTrigram => "Skip-trigrams",
            TaskKind::Induction => "Induction (repeated tokens)",
            TaskKind::ModularAddition => "Modular addition",
            TaskKind::Sequences => "Sequences from a file",
            TaskKind::None => "No task",
        }
    }

    /// The task with its default settings (`None` for [`TaskKind::None`] and
    /// [`TaskKind::Sequences`], which have none).
    pub fn default_config(self) -> Option<TaskConfig> {
        Some(match self {
            TaskKind::SkipTrigram => TaskConfig::SkipTrigram(SkipTrigramConfig::default()),
            TaskKind::Induction => TaskConfig::Induction(InductionConfig::default()),
            TaskKind::ModularAddition => {
                TaskConfig::ModularAddition(ModularAdditionConfig::default())
            }
            TaskKind::None | TaskKind::Sequences => return None,
        })
    }

    /// The task of this kind for a model of `vocab` input tokens, `vocab_out` classes and
    /// context `n_ctx`, for a model that came without one and the user names its task:
    /// modular addition mod `vocab_out` (its `=` the extra input token), the skip-trigram task
    /// with noise tokens filling the vocabulary, or induction over the vocabulary. `None` when
    /// the model cannot take the task.
    pub fn for_model(self, vocab: usize, vocab_out: usize, n_ctx: usize) -> Option<TaskConfig> {
        let task = match self {
            TaskKind::ModularAddition if vocab_out + 1 == vocab && vocab_out >= 2 && n_ctx >= 3 => {
                TaskConfig::ModularAddition(ModularAdditionConfig {
                    p: vocab_out,
                    ..Default::default()
                })
            }
            TaskKind::SkipTrigram if vocab >= 6 && vocab == vocab_out && n_ctx >= 3 => {
                let mut task = SkipTrigramConfig::default();
                if vocab != task.vocab_size() {
                    task.noise_tokens.last = vocab as u32 - 1;
                }
                task.seq_len = task.seq_len.min(n_ctx);
                TaskConfig::SkipTrigram(task)
            }
            TaskKind::Induction if vocab == vocab_out && n_ctx >= 4 => {
                TaskConfig::Induction(InductionConfig {
                    vocab,
                    half: (n_ctx / 2).clamp(2, 10),
                    ..Default::default()
                })
            }
            _ => return None,
        };
        task.validate().is_ok().then_some(task)
    }
}

/// How a task counts training: passes over a fixed training set, or steps on fresh batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Epoch,
    Step,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Epoch => "epoch",
            Unit::Step => "step",
        }
    }
}

/// A task and its settings. In JSON it is an object with a `kind` (`skip_trigram`, `induction`,
/// `modular_addition`) beside the task's own fields; without `kind` it is a skip-trigram task, as
/// in every config and checkpoint written before there were other tasks.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskConfig {
    SkipTrigram(SkipTrigramConfig),
    Induction(InductionConfig),
    ModularAddition(ModularAdditionConfig),
    /// Sequences read from a data file.
    Sequences(SequencesConfig),
    /// No task: the model's own dimensions, and nothing invented.
    None(NoTask),
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig::SkipTrigram(SkipTrigramConfig::default())
    }
}

impl TaskConfig {
    pub fn kind(&self) -> TaskKind {
        match self {
            TaskConfig::SkipTrigram(_) => TaskKind::SkipTrigram,
            TaskConfig::Induction(_) => TaskKind::Induction,
            TaskConfig::ModularAddition(_) => TaskKind::ModularAddition,
            TaskConfig::Sequences(_) => TaskKind::Sequences,
            TaskConfig::None(_) => TaskKind::None,
        }
    }

    pub fn sequences(&self) -> Option<&SequencesConfig> {
        match self {
            TaskConfig::Sequences(t) => Some(t),
            _ => None,
        }
    }

    /// The sequences of a data-file task, once read.
    pub fn sequence_data(&self) -> Option<&std::sync::Arc<sequences::SequenceData>> {
        self.sequences().and_then(SequencesConfig::data)
    }

    /// A data file's vocabulary, where it has one.
    pub fn vocab_names(&self) -> Option<&[String]> {
        self.sequence_data().and_then(|d| d.vocab.as_deref())
    }

    /// How the task names its tokens: a data file's vocabulary, modular addition's `=`, or ids.
    pub fn token_names(&self) -> TokenNames<'_> {
        match self {
            TaskConfig::ModularAddition(t) => TokenNames::Equals { p: t.p as u32 },
            _ => self.vocab_names().map_or(TokenNames::Ids, TokenNames::List),
        }
    }

    /// Reads a data-file task's data, paths relative to `base`; other tasks have nothing to
    /// read.
    pub fn load_data(&mut self, base: &std::path::Path) -> Result<(), sequences::DataError> {
        match self {
            TaskConfig::Sequences(t) if t.data().is_none() => t.load(base),
            _ => Ok(()),
        }
    }

    /// Whether the model has a task (and so data to train and evaluate on).
    pub fn has_data(&self) -> bool {
        !matches!(self, TaskConfig::None(_))
    }

    pub fn skip_trigram(&self) -> Option<&SkipTrigramConfig> {
        match self {
            TaskConfig::SkipTrigram(t) => Some(t),
            _ => None,
        }
    }

    pub fn skip_trigram_mut(&mut self) -> Option<&mut SkipTrigramConfig> {
        match self {
            TaskConfig::SkipTrigram(t) => Some(t),
            _ => None,
        }
    }

    pub fn unit(&self) -> Unit {
        match self {
            TaskConfig::Induction(_) => Unit::Step,
            TaskConfig::SkipTrigram(_)
            | TaskConfig::ModularAddition(_)
            | TaskConfig::Sequences(_)
            | TaskConfig::None(_) => Unit::Epoch,
        }
    }

    /// Tokens per sequence.
    pub fn seq_len(&self) -> usize {
        match self {
            TaskConfig::SkipTrigram(t) => t.seq_len,
            TaskConfig::Induction(t) => t.seq_len(),
            TaskConfig::ModularAddition(_) => 3,
            TaskConfig::Sequences(t) => t.data().map_or(0, |d| d.seq_len),
            TaskConfig::None(t) => t.n_ctx,
        }
    }

    /// Token ids the input uses (the model's `d_vocab`).
    pub fn vocab_size(&self) -> usize {
        match self {
            TaskConfig::SkipTrigram(t) => t.vocab_size(),
            TaskConfig::Induction(t) => t.vocab,
            TaskConfig::ModularAddition(t) => t.p + 1,
            TaskConfig::Sequences(t) => t.data().map_or(0, |d| d.d_vocab),
            TaskConfig::None(t) => t.vocab,
        }
    }

    /// Classes the model predicts (the model's `d_vocab_out`).
    pub fn vocab_out(&self) -> usize {
        match self {
            TaskConfig::ModularAddition(t) => t.p,
            TaskConfig::None(t) => t.vocab_out,
            _ => self.vocab_size(),
        }
    }

    pub fn validate(&self) -> Result<(), TaskError> {
        match self {
            TaskConfig::SkipTrigram(t) => t.validate(),
            TaskConfig::Induction(t) => t.validate(),
            TaskConfig::ModularAddition(t) => t.validate(),
            TaskConfig::Sequences(t) => {
                t.check_settings().map_err(TaskError::Setting)?;
                if t.data().is_none() {
                    return Err(TaskError::Setting(format!(
                        "the data of {} are not read yet",
                        t.source()
                    )));
                }
                Ok(())
            }
            TaskConfig::None(t) => {
                if t.vocab == 0 || t.vocab_out == 0 || t.n_ctx == 0 {
                    return Err(TaskError::Setting(
                        "a model without a task still needs its vocabulary and context".into(),
                    ));
                }
                Ok(())
            }
        }
    }

    /// The answer a model should give after the last token of `tokens`, where the task
    /// determines it.
    pub fn expected_next(&self, tokens: &[u32]) -> Option<u32> {
        match self {
            TaskConfig::SkipTrigram(t) => t.expected_answer(tokens),
            TaskConfig::Induction(t) => t.expected_next(tokens),
            TaskConfig::ModularAddition(t) => t.expected_answer(tokens),
            TaskConfig::Sequences(t) => t.data()?.find_prefix(tokens).map(|(_, target)| target),
            TaskConfig::None(_) => None,
        }
    }

    /// The sequence the model reads for what the user typed: modular addition's `a b` gets its
    /// `=`; everything else is read as typed.
    pub fn complete_sequence(&self, mut tokens: Vec<u32>) -> Vec<u32> {
        if let TaskConfig::ModularAddition(t) = self
            && tokens.len() == 2
        {
            tokens.push(t.p as u32);
        }
        tokens
    }

    /// The sequences averages over "the data" are taken on (mean ablation), flat, each
    /// [`Self::seq_len`] long: the validation set of `seed`, or for modular addition every pair.
    pub fn validation_tokens(&self, seed: u64) -> Result<Vec<u32>, TaskError> {
        self.validate()?;
        Ok(match self {
            TaskConfig::None(_) => return Err(TaskError::NoData("average over")),
            TaskConfig::Sequences(t) => {
                let data = t.data().ok_or(TaskError::NoData("average over"))?;
                let (_, val) = data.split(t.val_frac, seed);
                val.iter()
                    .flat_map(|&i| data.sequence(i as usize).iter().copied())
                    .collect()
            }
            TaskConfig::SkipTrigram(t) => t.val_set(seed)?.tokens,
            TaskConfig::Induction(t) => t.val_set(seed),
            TaskConfig::ModularAddition(t) => {
                let split = t.split(seed);
                let ids: Vec<u32> = (0..t.pairs() as u32).collect();
                split.inputs(&ids, true)
            }
        })
    }

    /// A random sequence of the task for the inspector (`signal` matters for skip-trigrams only).
    pub fn random_sequence(&self, signal: bool, rng: &mut impl rand::Rng) -> Vec<u32> {
        match self {
            TaskConfig::SkipTrigram(t) => t.random_sequence(signal, rng),
            TaskConfig::Induction(t) => t.random_sequence(rng),
            TaskConfig::ModularAddition(t) => t.random_sequence(rng),
            // A data sequence up to its last scored position, whose next token is then expected.
            TaskConfig::Sequences(t) => match t.data() {
                Some(d) if !d.is_empty() => {
                    let i = rng.random_range(0..d.len());
                    let last = d
                        .targets_of(i)
                        .iter()
                        .rposition(|&t| t != sequences::UNSCORED);
                    let seq = d.sequence(i);
                    seq[..last.map_or(seq.len(), |p| p + 1)].to_vec()
                }
                _ => Vec::new(),
            },
            TaskConfig::None(t) => (0..t.n_ctx)
                .map(|_| rng.random_range(0..t.vocab as u32))
                .collect(),
        }
    }

    /// What the task's sequences look like, for placeholders and messages.
    pub fn sequence_hint(&self) -> String {
        match self {
            TaskConfig::SkipTrigram(t) => format!(
                "{} tokens: a, noise…, b, then the query token {}",
                t.seq_len, t.query_token
            ),
            TaskConfig::Induction(t) => format!(
                "{} random tokens (0..{}) repeated once: {} tokens",
                t.half,
                t.vocab - 1,
                t.seq_len()
            ),
            TaskConfig::ModularAddition(t) => format!(
                "\"a b\" or \"a b =\" (= is token {}) with a, b in 0..{}; the model answers \
                 (a + b) mod {}",
                t.p,
                t.p - 1,
                t.p
            ),
            TaskConfig::Sequences(t) => match t.data() {
                Some(d) => format!(
                    "up to {} tokens{}, as in {}",
                    d.seq_len,
                    if d.vocab.is_some() {
                        ", by name or id"
                    } else {
                        ""
                    },
                    t.short_name()
                ),
                None => format!("the sequences of {}", t.short_name()),
            },
            TaskConfig::None(t) => format!(
                "up to {} tokens, ids 0..{} (the model has no task: nothing is expected)",
                t.n_ctx,
                t.vocab - 1
            ),
        }
    }
}

impl Serialize for TaskConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut value = match self {
            TaskConfig::SkipTrigram(t) => serde_json::to_value(t),
            TaskConfig::Induction(t) => serde_json::to_value(t),
            TaskConfig::ModularAddition(t) => serde_json::to_value(t),
            TaskConfig::Sequences(t) => serde_json::to_value(t),
            TaskConfig::None(t) => serde_json::to_value(t),
        }
        .map_err(S::Error::custom)?;
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("kind".into(), self.kind().name().into());
        }
        value.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TaskConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut value = serde_json::Value::deserialize(deserializer)?;
        let kind = match &mut value {
            serde_json::Value::Object(map) => match map.remove("kind") {
                None => TaskKind::SkipTrigram,
                Some(kind) => serde_json::from_value(kind).map_err(|_| {
                    D::Error::custom(
                        "task kind must be \"skip_trigram\", \"induction\", \"modular_addition\", \
                         \"sequences\" or \"none\"",
                    )
                })?,
            },
            _ => return Err(D::Error::custom("task must be an object")),
        };
        let task = match kind {
            TaskKind::SkipTrigram => serde_json::from_value(value).map(TaskConfig::SkipTrigram),
            TaskKind::Induction => serde_json::from_value(value).map(TaskConfig::Induction),
            TaskKind::ModularAddition => {
                serde_json::from_value(value).map(TaskConfig::ModularAddition)
            }
            TaskKind::Sequences => serde_json::from_value(value).map(TaskConfig::Sequences),
            TaskKind::None => serde_json::from_value(value).map(TaskConfig::None),
        };
        task.map_err(|e| D::Error::custom(format!("{} task: {e}", kind.name())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_the_kind_and_old_configs_are_skip_trigrams() {
        for kind in TaskKind::ALL {
            let task = kind.default_config().unwrap();
            let text = serde_json::to_string(&task).unwrap();
            assert!(
                text.contains(&format!("\"kind\":\"{}\"", kind.name())),
                "{text}"
            );
            assert_eq!(serde_json::from_str::<TaskConfig>(&text).unwrap(), task);
        }
        let old: TaskConfig = serde_json::from_str(r#"{"seq_len": 5}"#).unwrap();
        assert_eq!(old.skip_trigram().unwrap().seq_len, 5);
        let err = serde_json::from_str::<TaskConfig>(r#"{"kind": "sorting"}"#).unwrap_err();
        assert!(err.to_string().contains("task kind must be"), "{err}");
        let err =
            serde_json::from_str::<TaskConfig>(r#"{"kind": "induction", "p": 3}"#).unwrap_err();
        assert!(
            err.to_string().contains("induction task: unknown field"),
            "{err}"
        );
    }
}
