//! JSON Lines data: one object per line, read line by line so that memory follows the tokens
//! kept, not the text.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Deserialize;

use super::{DataError, SequenceData, Split, UNSCORED, targets_from_mask};
use crate::task::{MAX_DATA_TOKENS, MAX_VOCAB};

/// A token as the file writes it: an id or a name.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Token {
    Id(u64),
    Name(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    tokens: Vec<Token>,
    #[serde(default)]
    loss_mask: Option<Vec<u8>>,
    #[serde(default)]
    targets: Option<Vec<Option<Token>>>,
    #[serde(default)]
    split: Option<Split>,
}

/// Turns tokens into ids: by the vocabulary file, or by names met in order (a file of names with
/// no vocabulary builds one), or as the ids written. A file uses names or ids, not both.
struct Ids {
    given: Option<HashMap<String, u32>>,
    built: Vec<String>,
    built_ids: HashMap<String, u32>,
    names: Option<bool>,
    max_id: Option<u32>,
}

impl Ids {
    fn new(vocab: Option<&[String]>) -> Self {
        Self {
            given: vocab.map(|v| {
                v.iter()
                    .enumerate()
                    .map(|(i, s)| (s.clone(), i as u32))
                    .collect()
            }),
            built: Vec::new(),
            built_ids: HashMap::new(),
            names: None,
            max_id: None,
        }
    }

    fn id(&mut self, token: &Token) -> Result<u32, String> {
        let is_name = matches!(token, Token::Name(_));
        match self.names {
            None => self.names = Some(is_name),
            Some(names) if names != is_name => {
                return Err("mixes token names and ids; use one or the other".into());
            }
            Some(_) => {}
        }
        let id = match token {
            Token::Id(id) => {
                let limit = self.given.as_ref().map_or(MAX_VOCAB, HashMap::len);
                if *id as usize >= limit {
                    return Err(match &self.given {
                        Some(_) => format!(
                            "token {id} is outside the vocabulary (ids 0 to {})",
                            limit - 1
                        ),
                        None => {
                            format!("token {id} is over the largest id supported, {}", limit - 1)
                        }
                    });
                }
                *id as u32
            }
            Token::Name(name) => match &self.given {
                Some(vocab) => *vocab
                    .get(name)
                    .ok_or_else(|| format!("the token \"{name}\" is not in the vocabulary"))?,
                None => match self.built_ids.get(name) {
                    Some(&id) => id,
                    None => {
                        if self.built.len() == MAX_VOCAB {
                            return Err(format!("more than {MAX_VOCAB} distinct tokens"));
                        }
                        let id = self.built.len() as u32;
                        self.built.push(name.clone());
                        self.built_ids.insert(name.clone(), id);
                        id
                    }
                },
            },
        };
        self.max_id = Some(self.max_id.map_or(id, |m| m.max(id)));
        Ok(id)
    }
}

pub(super) fn read(path: &Path, vocab: Option<Vec<String>>) -> Result<SequenceData, DataError> {
    let file = std::fs::File::open(path)
        .map_err(|e| DataError::new(path, format!("cannot read it: {e}")))?;
    read_from(path, BufReader::new(file), vocab)
}

/// Reads JSON Lines from `reader`; `path` names it in messages.
pub(super) fn read_from(
    path: &Path,
    mut reader: impl BufRead,
    vocab: Option<Vec<String>>,
) -> Result<SequenceData, DataError> {
    let mut ids = Ids::new(vocab.as_deref());
    let mut data = SequenceData {
        vocab: None,
        d_vocab: 0,
        seq_len: 0,
        tokens: Vec::new(),
        targets: Vec::new(),
        given_split: Vec::new(),
        ..Default::default()
    };
    let mut raw = Vec::new();
    let mut number = 0;
    loop {
        raw.clear();
        let read = reader
            .read_until(b'\n', &mut raw)
            .map_err(|e| DataError::new(path, format!("cannot read it: {e}")))?;
        if read == 0 {
            break;
        }
        number += 1;
        let at = |message: String| DataError::new(path, message).at(number);
        let text = std::str::from_utf8(&raw)
            .map_err(|e| at(format!("not UTF-8 text ({e})")))?
            .trim();
        if text.is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(text).map_err(|e| at(format!("{e}")))?;
        let tokens: Vec<u32> = line
            .tokens
            .iter()
            .map(|t| ids.id(t))
            .collect::<Result<_, _>>()
            .map_err(|e| at(e).field("tokens"))?;
        if data.seq_len == 0 {
            data.seq_len = tokens.len();
            if data.seq_len < 2 {
                return Err(at(format!(
                    "a sequence of {} tokens; at least 2 are needed to predict one",
                    tokens.len()
                ))
                .field("tokens"));
            }
        } else if tokens.len() != data.seq_len {
            return Err(at(format!(
                "{} tokens, but the sequences before have {}; every sequence needs the same length",
                tokens.len(),
                data.seq_len
            ))
            .field("tokens"));
        }
        let targets = match (&line.loss_mask, &line.targets) {
            (Some(_), Some(_)) => {
                return Err(at("give loss_mask or targets, not both".into()));
            }
            (_, Some(targets)) => {
                if targets.len() != tokens.len() {
                    return Err(at(format!(
                        "has {} entries for {} tokens; it needs one per token",
                        targets.len(),
                        tokens.len()
                    ))
                    .field("targets"));
                }
                targets
                    .iter()
                    .map(|t| t.as_ref().map_or(Ok(UNSCORED), |t| ids.id(t)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| at(e).field("targets"))?
            }
            (mask, None) => {
                targets_from_mask(&tokens, mask.as_deref()).map_err(|e| at(e).field("loss_mask"))?
            }
        };
        if targets.iter().all(|&t| t == UNSCORED) {
            return Err(at("no position is scored".into()));
        }
        if data.tokens.len() + tokens.len() > MAX_DATA_TOKENS {
            return Err(at(format!(
                "the data pass {MAX_DATA_TOKENS} tokens, the most supported"
            )));
        }
        data.tokens.extend_from_slice(&tokens);
        data.targets.extend_from_slice(&targets);
        data.given_split.push(line.split);
    }
    data.d_vocab = match (&vocab, ids.names) {
        (Some(v), _) => v.len(),
        (None, Some(true)) => ids.built.len(),
        _ => ids.max_id.map_or(0, |m| m as usize + 1),
    };
    data.vocab = match vocab {
        Some(v) => Some(v),
        None if ids.names == Some(true) => Some(ids.built),
        None => None,
    };
    Ok(data)
}
