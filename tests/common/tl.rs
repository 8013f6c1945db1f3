//! TransformerLens's general fixtures (`tests/fixtures/tl_general`) and the comparison of a
//! model's activations against them, hook by hook.

use std::collections::BTreeSet;
use std::path::PathBuf;

use candle_core::Device;
use serde_json::Value;
use toylens::checkpoint::Checkpoint;
use toylens::model::{ActivationCache, Transformer};

use super::flatten;

/// Absolute and relative tolerance (PyTorch's defaults for float32).
pub const ATOL: f64 = 1e-5;
pub const RTOL: f64 = 1.3e-6;
pub const FIXTURES: [&str; 3] = ["attn2_shortformer", "mlp1_relu", "mlp2_ln_gelu"];

pub fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tl_general")
        .join(name)
}

pub fn cases(name: &str) -> Value {
    let text = std::fs::read_to_string(dir(name).join("cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn load(name: &str) -> (Checkpoint, Transformer) {
    let ckpt = Checkpoint::load(&dir(name).join("model.safetensors")).unwrap();
    let model = Transformer::new(&ckpt.config.model, &ckpt.weights, &Device::Cpu).unwrap();
    (ckpt, model)
}

/// The largest difference between the fixture's value of `hook` and ours (batch dim dropped),
/// in units of the tolerance (≤ 1 passes), and the largest absolute difference; −inf must meet
/// −inf exactly.
pub fn diff(hook: &str, expected: &Value, cache: &ActivationCache) -> (f64, f64) {
    let ours = if hook == "logits" {
        &cache.logits
    } else {
        cache
            .get(hook)
            .unwrap_or_else(|| panic!("toylens's cache has no {hook}"))
    };
    let (shape, data) = flatten(expected);
    assert_eq!(ours.shape[0], 1, "{hook}: batch of one");
    assert_eq!(shape, ours.shape[1..], "{hook}: shape");
    data.iter()
        .zip(&ours.data)
        .map(|(&e, &a)| {
            if e == f64::NEG_INFINITY || a == f32::NEG_INFINITY {
                assert_eq!(e, a as f64, "{hook}: masked entries");
                (0.0, 0.0)
            } else {
                let d = (e - a as f64).abs();
                (d / (ATOL + RTOL * e.abs()), d)
            }
        })
        .fold((0.0, 0.0), |(r, d), (r2, d2)| (r.max(r2), d.max(d2)))
}

/// Compares every case; returns the worst difference in tolerance units with its case and hook,
/// and the largest absolute difference.
pub fn compare(name: &str, model: &Transformer) -> (f64, String, f64) {
    let fixture = cases(name);
    let mut worst = (0.0, String::new(), 0.0f64);
    for case in fixture["cases"].as_array().unwrap() {
        let tokens: Vec<u32> = serde_json::from_value(case["tokens"].clone()).unwrap();
        let cache = model.run_with_cache(&tokens).unwrap();
        let expected = case["cache"].as_object().unwrap();
        // The same hooks, no more and no fewer.
        let theirs: BTreeSet<&str> = expected
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "logits")
            .collect();
        let ours: BTreeSet<&str> = cache.hooks.keys().map(String::as_str).collect();
        assert_eq!(ours, theirs, "{name} {}: hook names", case["name"]);
        for (hook, value) in expected {
            let (ratio, abs) = diff(hook, value, &cache);
            worst.2 = worst.2.max(abs);
            if ratio > worst.0 || worst.1.is_empty() {
                worst = (ratio, format!("{} {hook}", case["name"]), worst.2);
            }
        }
    }
    worst
}

/// Every case of every fixture through `model_of(name)` must match TL within the tolerance;
/// prints each fixture's worst difference.
pub fn assert_fixtures_match(model_of: impl Fn(&str) -> Transformer) {
    for name in FIXTURES {
        let model = model_of(name);
        let n_cases = cases(name)["cases"].as_array().unwrap().len();
        let (worst, at, abs) = compare(name, &model);
        eprintln!(
            "{name}: {n_cases} cases, max |TL − toylens| = {abs:.2e}; worst at {at}, {worst:.2} of the tolerance"
        );
        assert!(
            worst <= 1.0,
            "{name}: {at} is {worst:.2}× the tolerance off"
        );
    }
}
