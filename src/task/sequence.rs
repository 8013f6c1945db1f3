//! Parsing a typed sequence of token ids (or, where the task names its tokens, names), for every
//! task.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SequenceError {
    #[error("the sequence is empty: type token ids such as \"2 5 3 0\"")]
    Empty,
    #[error(
        "\"{0}\" is not a token id or name (use whole numbers or the data's token names, \
         separated by spaces or commas)"
    )]
    NotANumber(String),
    #[error("token {token} is out of the vocabulary (0..={max})")]
    OutOfVocab { token: u64, max: usize },
    #[error("the sequence has {len} tokens; the model takes 1 to {max}")]
    TooLong { len: usize, max: usize },
}

/// How a task names its tokens, for every view, the typed sequences and the JSON output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TokenNames<'a> {
    /// By id.
    #[default]
    Ids,
    /// A data file's vocabulary: token id `i` is `names[i]`.
    List(&'a [String]),
    /// Modular addition: the numbers 0..p, and `=` for token p.
    Equals { p: u32 },
}

impl TokenNames<'_> {
    /// Whether any token has a name other than its id.
    pub fn is_named(&self) -> bool {
        !matches!(self, TokenNames::Ids)
    }

    /// Token `t`'s name (its id where it has none).
    pub fn label(&self, t: u32) -> String {
        match *self {
            TokenNames::List(names) => names
                .get(t as usize)
                .cloned()
                .unwrap_or_else(|| t.to_string()),
            TokenNames::Equals { p } if t == p => "=".into(),
            _ => t.to_string(),
        }
    }

    /// The token a typed name stands for.
    fn id_of(&self, part: &str) -> Option<u32> {
        match *self {
            TokenNames::List(names) => names.iter().position(|n| n == part).map(|i| i as u32),
            TokenNames::Equals { p } => (part == "=").then_some(p),
            TokenNames::Ids => None,
        }
    }
}

/// `tokens` as [`parse_sequence`] reads them back: separated by spaces, by name where every
/// one has a name that can be typed (no space or comma in it), else as ids.
pub fn format_sequence(tokens: &[u32], names: TokenNames) -> String {
    if names.is_named() && tokens.iter().all(|&t| typable(&names.label(t))) {
        return tokens
            .iter()
            .map(|&t| names.label(t))
            .collect::<Vec<_>>()
            .join(" ");
    }
    tokens
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a token name can be typed as one part of a sequence.
fn typable(name: &str) -> bool {
    !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == ',')
}

/// Parses "2 5 3 0" or "2, 5, 3, 0" into token ids valid for a model of `vocab` tokens and
/// `n_ctx` positions. Where the task names its tokens (`names`), a part that is a name is that
/// token (a name wins over the number it may spell).
pub fn parse_sequence(
    text: &str,
    names: TokenNames,
    vocab: usize,
    n_ctx: usize,
) -> Result<Vec<u32>, SequenceError> {
    let mut tokens = Vec::new();
    for part in text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
    {
        let token: u64 = match names.id_of(part) {
            Some(id) => id as u64,
            None => part
                .parse()
                .map_err(|_| SequenceError::NotANumber(part.chars().take(20).collect()))?,
        };
        if token >= vocab as u64 {
            return Err(SequenceError::OutOfVocab {
                token,
                max: vocab.saturating_sub(1),
            });
        }
        tokens.push(token as u32);
        if tokens.len() > n_ctx {
            return Err(SequenceError::TooLong {
                len: text
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .filter(|p| !p.is_empty())
                    .count(),
                max: n_ctx,
            });
        }
    }
    if tokens.is_empty() {
        return Err(SequenceError::Empty);
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_parser() {
        assert_eq!(
            parse_sequence("2 5 3 0", TokenNames::Ids, 11, 4),
            Ok(vec![2, 5, 3, 0])
        );
        assert_eq!(
            parse_sequence(" 2,5, 3 ,0 ", TokenNames::Ids, 11, 4),
            Ok(vec![2, 5, 3, 0])
        );
        assert_eq!(parse_sequence("7", TokenNames::Ids, 11, 4), Ok(vec![7]));
        assert_eq!(
            parse_sequence("  ", TokenNames::Ids, 11, 4),
            Err(SequenceError::Empty)
        );
        assert_eq!(
            parse_sequence("2 x 3", TokenNames::Ids, 11, 4),
            Err(SequenceError::NotANumber("x".into()))
        );
        assert_eq!(
            parse_sequence("2 11", TokenNames::Ids, 11, 4),
            Err(SequenceError::OutOfVocab { token: 11, max: 10 })
        );
        assert_eq!(
            parse_sequence("1 2 3 4 5", TokenNames::Ids, 11, 4),
            Err(SequenceError::TooLong { len: 5, max: 4 })
        );
        assert!(matches!(
            parse_sequence("-1", TokenNames::Ids, 11, 4),
            Err(SequenceError::NotANumber(_))
        ));
        assert!(matches!(
            parse_sequence("99999999999999999999999", TokenNames::Ids, 11, 4),
            Err(SequenceError::NotANumber(_))
        ));
        // Named tokens: by name or by id, and written back by name.
        let names: Vec<String> = ["0", "1", "|", "ab"].map(String::from).to_vec();
        let named = TokenNames::List(&names);
        assert_eq!(
            parse_sequence("1 | ab, 3", named, 4, 4),
            Ok(vec![1, 2, 3, 3])
        );
        assert_eq!(format_sequence(&[1, 2, 3], named), "1 | ab");
        assert_eq!(format_sequence(&[1, 2, 3], TokenNames::Ids), "1 2 3");
        // Modular addition's `=`.
        let equals = TokenNames::Equals { p: 7 };
        assert_eq!(parse_sequence("3 4 =", equals, 8, 3), Ok(vec![3, 4, 7]));
        assert_eq!(format_sequence(&[3, 4, 7], equals), "3 4 =");
        assert_eq!(
            parse_sequence("1 zz", named, 4, 4),
            Err(SequenceError::NotANumber("zz".into()))
        );
        let spaced: Vec<String> = ["a b", "c"].map(String::from).to_vec();
        assert_eq!(format_sequence(&[0, 1], TokenNames::List(&spaced)), "0 1");
    }
}
