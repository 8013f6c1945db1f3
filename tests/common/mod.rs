//! Helpers shared by the integration tests that read TransformerLens fixtures.
// Each test binary uses only some of them.
#![allow(dead_code)]

pub mod tl;

/// Runs the toylens binary with `args`.
pub fn toylens(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_toylens"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// The fields of `inspect --json` that the skip-trigram fixture's cases hold.
pub const INSPECT_KEYS: [&str; 7] = [
    "logits",
    "logits_last",
    "pattern",
    "z",
    "head_out_last",
    "head_logits_last",
    "direct_logits_last",
];

use serde_json::Value;

/// A fixture case's tokens as command-line arguments.
pub fn token_args(case: &Value) -> Vec<String> {
    case["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect()
}

/// Flattens a nested JSON array into its shape and values; `null` (TL's masked −inf) becomes
/// −inf.
pub fn flatten(v: &Value) -> (Vec<usize>, Vec<f64>) {
    match v {
        Value::Array(items) => {
            let mut shape = vec![items.len()];
            let mut data = Vec::new();
            let mut inner = None;
            for item in items {
                let (s, d) = flatten(item);
                inner.get_or_insert(s);
                data.extend(d);
            }
            shape.extend(inner.unwrap_or_default());
            (shape, data)
        }
        Value::Number(n) => (vec![], vec![n.as_f64().unwrap()]),
        Value::Null => (vec![], vec![f64::NEG_INFINITY]),
        other => panic!("unexpected JSON value {other}"),
    }
}
