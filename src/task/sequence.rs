//! Parsing a typed sequence of token ids, for every task.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SequenceError {
    #[error("the sequence is empty: type token ids such as \"2 5 3 0\"")]
    Empty,
    #[error("\"{0}\" is not a token id (use whole numbers separated by spaces or commas)")]
    NotANumber(String),
    #[error("token {token} is out of the vocabulary (0..={max})")]
    OutOfVocab { token: u64, max: usize },
    #[error("the sequence has {len} tokens; the model takes 1 to {max}")]
    TooLong { len: usize, max: usize },
}

/// Parses "2 5 3 0" or "2, 5, 3, 0" into token ids valid for a model of `vocab` tokens and
/// `n_ctx` positions.
/// `tokens` as [`parse_sequence`] reads them back: ids separated by spaces.
pub fn format_sequence(tokens: &[u32]) -> String {
    tokens
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn parse_sequence(text: &str, vocab: usize, n_ctx: usize) -> Result<Vec<u32>, SequenceError> {
    let mut tokens = Vec::new();
    for part in text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
    {
        let token: u64 = part
            .parse()
            .map_err(|_| SequenceError::NotANumber(part.chars().take(20).collect()))?;
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
        assert_eq!(parse_sequence("2 5 3 0", 11, 4), Ok(vec![2, 5, 3, 0]));
        assert_eq!(parse_sequence(" 2,5, 3 ,0 ", 11, 4), Ok(vec![2, 5, 3, 0]));
        assert_eq!(parse_sequence("7", 11, 4), Ok(vec![7]));
        assert_eq!(parse_sequence("  ", 11, 4), Err(SequenceError::Empty));
        assert_eq!(
            parse_sequence("2 x 3", 11, 4),
            Err(SequenceError::NotANumber("x".into()))
        );
        assert_eq!(
            parse_sequence("2 11", 11, 4),
            Err(SequenceError::OutOfVocab { token: 11, max: 10 })
        );
        assert_eq!(
            parse_sequence("1 2 3 4 5", 11, 4),
            Err(SequenceError::TooLong { len: 5, max: 4 })
        );
        assert!(matches!(
            parse_sequence("-1", 11, 4),
            Err(SequenceError::NotANumber(_))
        ));
        assert!(matches!(
            parse_sequence("99999999999999999999999", 11, 4),
            Err(SequenceError::NotANumber(_))
        ));
    }
}
