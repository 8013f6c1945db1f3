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

/// A command's standard output and error as text.
pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failure: non-zero exit, one line on stderr saying what went wrong (with `needle`), and no
/// panic.
#[track_caller]
pub fn assert_clean_failure(o: &std::process::Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "succeeded unexpectedly: {}", stdout(o));
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(needle), "\"{err}\" lacks \"{needle}\"");
}

/// A NumPy `.npy` file's bytes: an array of dtype `descr` (`<f4`, `<i8`) and `shape` (as NumPy
/// writes it, `(2, 3)`), its `payload` bytes of zeros.
pub fn npy_bytes(descr: &str, shape: &str, payload: usize) -> Vec<u8> {
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let header = format!(
        "{:<117}\n",
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")
    );
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, payload));
    bytes
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
