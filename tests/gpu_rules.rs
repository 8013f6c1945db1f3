//! The code a GPU runs, run on the CPU under a GPU's rules (`toylens::device::gpu_rules`): no
//! fused CPU ops, and matrix products only on operands cuBLAS accepts. CUDA rejects what the CPU
//! tolerates (a matmul operand narrowed out of a wider tensor), so these tests are how a machine
//! with no GPU finds such bugs: every model path, task, analysis and CLI command runs here under
//! those rules and must give the numbers of the CPU's own path and of TransformerLens.
//!
//! The rules are process-wide, which is why this is a test binary of its own; the CLI reads them
//! from `TOYLENS_GPU_RULES=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, IndexOp, Tensor};
use common::tl::load;
use serde_json::Value;
use toylens::matmul::Matmul;

fn toylens(args: &[&str], gpu_rules: bool) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_toylens"))
        .args(args)
        .env("TOYLENS_GPU_RULES", if gpu_rules { "1" } else { "0" })
        .output()
        .expect("the binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "toylens {args:?} failed: {err}");
    String::from_utf8(out.stdout).unwrap()
}

/// Every number in a JSON value with its path, so that two outputs can be compared leaf by leaf.
fn numbers(v: &Value, path: String, out: &mut Vec<(String, f64)>) {
    match v {
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| numbers(v, format!("{path}.{k}"), out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| numbers(v, format!("{path}[{i}]"), out)),
        Value::Number(n) => out.push((path, n.as_f64().unwrap())),
        _ => {}
    }
}

/// The largest difference between two JSON outputs (one object per line), skipping wall-clock
/// fields and `skip`ped ones; the structure must be the same.
fn max_json_diff(a: &str, b: &str, skip: &[&str]) -> (f64, String) {
    let parse = |s: &str| -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for (i, line) in s.lines().filter(|l| l.starts_with('{')).enumerate() {
            numbers(
                &serde_json::from_str(line).unwrap(),
                format!("line {i}"),
                &mut out,
            );
        }
        out.retain(|(k, _)| !k.contains("elapsed") && !skip.iter().any(|s| k.contains(s)));
        out
    };
    let (a, b) = (parse(a), parse(b));
    assert!(!a.is_empty(), "no numbers to compare");
    assert_eq!(a.len(), b.len(), "different outputs");
    let mut worst = (0.0, String::new());
    for ((ka, x), (kb, y)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        // A NaN on either side counts as the worst difference.
        let d = if x.is_nan() || y.is_nan() {
            f64::INFINITY
        } else {
            (x - y).abs()
        };
        if d > worst.0 {
            worst = (d, ka.clone());
        }
    }
    worst
}

fn src_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            src_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_matrix_product_goes_through_the_checked_one() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    src_files(&root.join("src"), &mut files);
    let mut raw = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with("src/matmul.rs")) {
        let text = std::fs::read_to_string(file).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.contains(".matmul(") || line.contains("broadcast_matmul(") {
                raw.push(format!("{}:{}", file.display(), i + 1));
            }
        }
    }
    assert!(files.len() > 50, "the scan found the sources");
    assert!(
        raw.is_empty(),
        "matrix products that skip toylens::matmul::Matmul::mm: {raw:?}"
    );
}

#[test]
fn the_rules_refuse_what_cuda_refuses() {
    // Negative control: under the rules, the operand CUDA rejected is an error on the CPU too.
    toylens::device::follow_gpu_rules();
    let wide = Tensor::arange(0f32, 176.0, &Device::Cpu)
        .unwrap()
        .reshape((4, 44))
        .unwrap()
        .narrow(1, 0, 11)
        .unwrap()
        .i(1..4)
        .unwrap();
    let w = Tensor::ones((11, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = wide.mm(&w).unwrap_err().to_string();
    assert!(err.contains("a GPU would reject"), "{err}");
    // A model on the CPU then plans candle's kernels, as on a GPU.
    let cfg = toylens::model::ModelConfig::default();
    let plan = toylens::model::Plan::new(&cfg, &Device::Cpu, candle_core::DType::F32);
    assert_eq!(plan.kernels, toylens::model::Kernels::Candle);
    assert!(plan.ordered_cache());
}

#[test]
fn transformer_lens_fixtures_match_on_the_gpu_path() {
    toylens::device::follow_gpu_rules();
    common::tl::assert_fixtures_match(|name| load(name).1);
}

#[test]
fn skip_trigram_fixture_inspects_on_the_gpu_path() {
    let fix = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/skip_trigram_tl");
    let model = fix.join("model.safetensors");
    let text = std::fs::read_to_string(fix.join("cases.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let mut worst: f64 = 0.0;
    for case in fixture["cases"].as_array().unwrap() {
        let tokens = common::token_args(case);
        let mut args = vec!["inspect", model.to_str().unwrap()];
        args.extend(tokens.iter().map(String::as_str));
        args.push("--json");
        let got: Value = serde_json::from_str(&toylens(&args, true)).unwrap();
        for key in common::INSPECT_KEYS {
            let (want, ours) = (common::flatten(&case[key]).1, common::flatten(&got[key]).1);
            assert_eq!(want.len(), ours.len(), "{key}");
            for (a, b) in want.iter().zip(&ours) {
                worst = worst.max((a - b).abs());
            }
        }
    }
    assert!(worst <= 1e-5, "max |fixture − toylens| = {worst:.2e}");
}

/// A short run of `args` under the GPU's rules and on the CPU's own path must give the same
/// metrics (to 1e-4: Adam amplifies rounding where gradients are near zero), and the checkpoint
/// must read the same both ways in `eval` and `inspect --cache` (to 1e-5). `skip` names fields
/// that may differ (rankings of near-equal values).
fn same_run_both_ways(args: &[&str], inspect: &str, skip: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut metrics = Vec::new();
    for rules in [false, true] {
        let out = dir.path().join(format!("run-{rules}.safetensors"));
        let mut train = vec!["train", "--json", "--out", out.to_str().unwrap()];
        train.extend_from_slice(args);
        metrics.push(toylens(&train, rules));
    }
    let (d, at) = max_json_diff(&metrics[0], &metrics[1], skip);
    eprintln!("{args:?} training metrics: max difference {d:.2e} at {at}");
    assert!(d <= 1e-4, "{args:?} training metrics: {d:.2e} at {at}");
    let trained = dir.path().join("run-false.safetensors");
    let trained = trained.to_str().unwrap();
    for (what, command) in [
        ("eval", vec!["eval", trained, "--json"]),
        (
            "eval with mean ablation",
            vec![
                "eval",
                trained,
                "--json",
                "--ablate",
                "0",
                "--ablate-mode",
                "mean",
            ],
        ),
        (
            "inspect --cache",
            vec!["inspect", trained, inspect, "--json", "--cache"],
        ),
    ] {
        let (d, at) = max_json_diff(&toylens(&command, false), &toylens(&command, true), &[]);
        eprintln!("{args:?} {what}: max difference {d:.2e} at {at}");
        assert!(d <= 1e-5, "{args:?} {what}: {d:.2e} at {at}");
    }
}

#[test]
fn skip_trigram_presets_train_the_same_on_the_gpu_path() {
    for path in ["auto", "full", "last-position"] {
        same_run_both_ways(
            &["--preset", "fast", "--epochs", "2", "--path", path],
            "2 5 3 0",
            &[],
        );
    }
}

#[test]
fn induction_trains_the_same_on_the_gpu_path() {
    same_run_both_ways(
        &[
            "--preset",
            "induction",
            "--steps",
            "30",
            "--eval-every",
            "15",
        ],
        "5 9 2 7 5 9 2",
        &[],
    );
}

#[test]
fn modular_addition_trains_the_same_on_the_gpu_path() {
    // The key frequencies are a ranking of near-equal energies this early.
    for preset in ["grokking-fast", "grokking"] {
        same_run_both_ways(
            &[
                "--preset",
                preset,
                "--p",
                "31",
                "--epochs",
                "6",
                "--eval-every",
                "3",
            ],
            "3 4",
            &["key_frequencies"],
        );
    }
}

#[test]
fn ablation_and_exhaustive_evaluation_on_the_gpu_path() {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/skip_trigram_tl/model.safetensors");
    let model = model.to_str().unwrap();
    for extra in [
        vec!["--ablate", "0,2", "--ablate-mode", "mean"],
        vec!["--exhaustive"],
    ] {
        // The fixture is TL's state dict, which names no task: the notebook's is named.
        let mut args = vec![
            "eval",
            model,
            "--json",
            "--samples",
            "2000",
            "--task",
            "skip-trigram",
        ];
        args.extend(extra);
        let (d, at) = max_json_diff(&toylens(&args, false), &toylens(&args, true), &[]);
        assert!(d <= 1e-5, "{args:?}: {d:.2e} at {at}");
    }
}

#[test]
fn analyze_gives_the_same_numbers_on_the_gpu_path() {
    // Attribution, lens, detectors and patching (batched edits) of every general fixture.
    for (name, tokens, corrupt) in [
        (
            "attn2_shortformer",
            "3 7 11 3 7 11 3 7",
            "3 7 11 3 7 12 3 7",
        ),
        ("mlp1_relu", "4 7 13", "5 7 13"),
        ("mlp2_ln_gelu", "4 7 9 7 4 2 5", "4 7 9 7 3 2 5"),
    ] {
        let model = common::tl::dir(name).join("model.safetensors");
        let args = [
            "analyze",
            model.to_str().unwrap(),
            tokens,
            "--json",
            "--corrupt",
            corrupt,
            "--answer",
            "1",
            "--wrong",
            "2",
        ];
        let (cpu, gpu) = (toylens(&args, false), toylens(&args, true));
        let (diff, at) = max_json_diff(&cpu, &gpu, &[]);
        assert!(diff < 1e-4, "{name}: {at} differs by {diff}");
    }
}
