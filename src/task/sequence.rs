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

/// `tokens` as [`parse_sequence`] reads them back: separated by spaces, by name where `names`
/// has every one (and no name holds a space or a comma), else as ids.
pub fn format_sequence(tokens: &[u32], names: Option<&[String]>) -> String {
    let name = |t: u32| names.and_then(|n| n.get(t as usize)).filter(|n| typable(n));
    if tokens.iter().all(|&t| name(t).is_some()) {
        return tokens
            .iter()
            .filter_map(|&t| name(t).cloned())
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
    names: Option<&[String]>,
    vocab: usize,
    n_ctx: usize,
) -> Result<Vec<u32>, SequenceError> {
    let mut tokens = Vec::new();
    for part in text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
    {
        let named = names.and_then(|n| n.iter().position(|name| name == part));
        let token: u64 = match named {
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
        assert_eq!(parse_sequence("2 5 3 0", None, 11, 4), Ok(vec![2, 5, 3, 0]));
        assert_eq!(
            parse_sequence(" 2,5, 3 ,0 ", None, 11, 4),
            Ok(vec![2, 5, 3, 0])
        );
        assert_eq!(parse_sequence("7", None, 11, 4), Ok(vec![7]));
        assert_eq!(parse_sequence("  ", None, 11, 4), Err(SequenceError::Empty));
        assert_eq!(
            parse_sequence("2 x 3", None, 11, 4),
            Err(SequenceError::NotANumber("x".into()))
        );
        assert_eq!(
            parse_sequence("2 11", None, 11, 4),
            Err(SequenceError::OutOfVocab { token: 11, max: 10 })
        );
        assert_eq!(
            parse_sequence("1 2 3 4 5", None, 11, 4),
            Err(SequenceError::TooLong { len: 5, max: 4 })
        );
        assert!(matches!(
            parse_sequence("-1", None, 11, 4),
            Err(SequenceError::NotANumber(_))
        ));
        assert!(matches!(
            parse_sequence("99999999999999999999999", None, 11, 4),
            Err(SequenceError::NotANumber(_))
        ));
        // Named tokens: by name or by id, and written back by name.
        let names: Vec<String> = ["0", "1", "|", "ab"].map(String::from).to_vec();
        let named = Some(names.as_slice());
        assert_eq!(
            parse_sequence("1 | ab, 3", named, 4, 4),
            Ok(vec![1, 2, 3, 3])
        );
        assert_eq!(format_sequence(&[1, 2, 3], named), "1 | ab");
        assert_eq!(format_sequence(&[1, 2, 3], None), "1 2 3");
        assert_eq!(
            parse_sequence("1 zz", named, 4, 4),
            Err(SequenceError::NotANumber("zz".into()))
        );
        let spaced: Vec<String> = ["a b", "c"].map(String::from).to_vec();
        assert_eq!(format_sequence(&[0, 1], Some(&spaced)), "0 1");
    }
}
