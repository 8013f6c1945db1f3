//! A vocabulary file: a JSON list of strings whose index is the token id.

use std::collections::HashSet;
use std::path::Path;

use super::DataError;
use crate::task::MAX_VOCAB;

/// The token names of `path` (`vocab.json`): a JSON list of distinct strings.
pub fn read_vocab(path: &Path) -> Result<Vec<String>, DataError> {
    let size = std::fs::metadata(path)
        .map_err(|e| DataError::new(path, format!("cannot read it: {e}")))?
        .len();
    if size > 64 << 20 {
        return Err(DataError::new(path, "a vocabulary file of over 64 MB"));
    }
    let bytes =
        std::fs::read(path).map_err(|e| DataError::new(path, format!("cannot read it: {e}")))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| DataError::new(path, format!("not UTF-8 text: {e}")))?;
    let names: Vec<String> = serde_json::from_str(text).map_err(|e| {
        DataError::new(path, format!("not a JSON list of strings: {e}")).at(e.line())
    })?;
    if names.is_empty() || names.len() > MAX_VOCAB {
        return Err(DataError::new(
            path,
            format!("{} tokens; a vocabulary has 1 to {MAX_VOCAB}", names.len()),
        ));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(DataError::new(
            path,
            format!("the token \"{dup}\" is listed twice"),
        ));
    }
    Ok(names)
}
