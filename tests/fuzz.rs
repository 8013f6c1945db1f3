//! Generated and mutated bad input against every parser: checkpoint files, sequence strings,
//! config JSON and command lines. Each must answer with an error (or a valid value), never a
//! panic or a hang.
//!
//! `cargo test` runs a fast subset. The long campaign is the same code with more iterations:
//! `benches/fuzz.sh` (`FUZZ_ITERATIONS=100000 cargo test --release --test fuzz`).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use candle_core::Device;
use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use toylens::checkpoint::Checkpoint;
use toylens::cli::{Cli, Command, build_config};
use toylens::task::parse_sequence;
use toylens::train::{Preset, RunConfig, train_to_checkpoint};

fn iterations(default: usize) -> usize {
    std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Runs `f` on `input`, failing the test with a reproducer if it panics or takes too long.
fn must_not_panic<T>(what: &str, input: &dyn std::fmt::Debug, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| panic!("{what} panicked on input {input:?}"));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{what} took {:?} on {input:?}",
        start.elapsed()
    );
    out
}

fn valid_checkpoint() -> Vec<u8> {
    let mut cfg = RunConfig::from_preset(Preset::Fast);
    cfg.task.skip_trigram_mut().unwrap().train_size = 2_000;
    cfg.train.batch_size = 1_000;
    cfg.train.epochs = 2;
    train_to_checkpoint(cfg, &Device::Cpu, |_| {})
        .unwrap()
        .to_bytes()
        .unwrap()
}

/// Splits a safetensors file into its header JSON and data.
fn split(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&bytes[8..8 + n]).unwrap(),
        bytes[8 + n..].to_vec(),
    )
}

fn join(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A JSON value of a random kind, often an awkward one.
fn odd_value(rng: &mut ChaCha8Rng) -> Value {
    match rng.random_range(0..10) {
        0 => json!(null),
        1 => json!(-1),
        2 => json!(u64::MAX),
        3 => json!(1e308),
        4 => json!("NaN"),
        5 => json!([]),
        6 => json!({}),
        7 => json!([1u64 << 40, 1u64 << 40]),
        8 => json!(rng.random_range(0..20)),
        _ => json!("x".repeat(rng.random_range(0..50))),
    }
}

/// One random corruption of a valid file.
fn mutate(good: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let (mut header, mut data) = split(good);
    let names: Vec<String> = header.as_object().unwrap().keys().cloned().collect();
    let pick = |rng: &mut ChaCha8Rng| names[rng.random_range(0..names.len())].clone();
    match rng.random_range(0..12) {
        // Raw byte damage.
        0 => {
            let mut b = good.to_vec();
            b.truncate(rng.random_range(0..b.len()));
            return b;
        }
        1 => {
            let mut b = good.to_vec();
            for _ in 0..rng.random_range(1..16) {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            return b;
        }
        2 => {
            let mut b = good.to_vec();
            let len: u64 = match rng.random_range(0..4) {
                0 => u64::MAX,
                1 => 1 << 40,
                2 => 100_000_001,
                _ => rng.random_range(0..b.len() as u64 * 2),
            };
            b[..8].copy_from_slice(&len.to_le_bytes());
            return b;
        }
        3 => {
            return (0..rng.random_range(0..2_000))
                .map(|_| rng.random())
                .collect();
        }
        // Tensor entries: wrong dtypes, shapes and offsets.
        4 => {
            let name = pick(rng);
            if name != "__metadata__" {
                let dtype = ["F64", "F16", "I32", "BOOL", "U8", "XX", ""][rng.random_range(0..7)];
                header[&name]["dtype"] = json!(dtype);
            }
        }
        5 => {
            let name = pick(rng);
            if name != "__metadata__" {
                let rank = rng.random_range(0..5);
                let shape: Vec<u64> = (0..rank)
                    .map(|_| [0, 1, 3, 11, 1 << 20, u64::MAX / 2][rng.random_range(0..6)])
                    .collect();
                header[&name]["shape"] = json!(shape);
            }
        }
        6 => {
            let name = pick(rng);
            if name != "__metadata__" {
                header[&name]["data_offsets"] = odd_value(rng);
            }
        }
        // Missing and extra tensors.
        7 => {
            let name = pick(rng);
            header.as_object_mut().unwrap().remove(&name);
        }
        8 => {
            let end = data.len() as u64;
            data.extend_from_slice(&[0u8; 44]);
            header[format!("blocks.{}.attn.W_Q", rng.random_range(0..3))] =
                json!({"dtype": "F32", "shape": [11], "data_offsets": [end, end + 44]});
        }
        // NaN and infinities in the weights.
        9 => {
            let bad = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][rng.random_range(0..3)];
            let i = rng.random_range(0..data.len() / 4) * 4;
            data[i..i + 4].copy_from_slice(&bad.to_le_bytes());
        }
        // Metadata that is not JSON, or JSON of the wrong shape.
        10 => {
            let meta = header["__metadata__"].as_object_mut().unwrap();
            let key = [
                "config",
                "history",
                "snapshots",
                "epoch",
                "format_version",
                "format",
            ][rng.random_range(0..6)];
            let value = match rng.random_range(0..4) {
                0 => "{not json".to_string(),
                1 => odd_value(rng).to_string(),
                2 => json!({"model": {"n_heads": odd_value(rng)}}).to_string(),
                _ => {
                    let current = meta.get(key).and_then(Value::as_str).unwrap_or("null");
                    let mut v: Value = serde_json::from_str(current).unwrap_or(json!(null));
                    if let Some(arr) = v.as_array_mut() {
                        if let Some(first) = arr.first_mut()
                            && let Some(obj) = first.as_object_mut()
                        {
                            let k = obj.keys().next().cloned().unwrap_or_default();
                            obj.insert(k, odd_value(rng));
                        }
                    } else if let Some(obj) = v.as_object_mut() {
                        let k = obj.keys().next().cloned().unwrap_or_default();
                        obj.insert(k, odd_value(rng));
                    }
                    v.to_string()
                }
            };
            meta.insert(key.into(), Value::String(value));
        }
        // A tensor or metadata key written twice, which a JSON map would silently merge.
        _ => {
            let text = header.to_string();
            let name = pick(rng);
            let entry = format!("\"{name}\":{}", header[&name]);
            let dup = text.replacen('{', &format!("{{{entry},"), 1);
            return join(&dup, &data);
        }
    }
    join(&header.to_string(), &data)
}

#[test]
fn mutated_checkpoints_are_errors_never_panics() {
    let good = valid_checkpoint();
    let fixture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/skip_trigram_tl/model.safetensors"
    ))
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let n = iterations(3_000);
    let mut outcomes: HashMap<&str, usize> = HashMap::new();
    for i in 0..n {
        let base = if i % 4 == 0 { &fixture } else { &good };
        let bytes = mutate(base, &mut rng);
        let result = must_not_panic("Checkpoint::from_bytes", &i, || {
            Checkpoint::from_bytes(&bytes)
        });
        match result {
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.len() > 10 && !msg.contains("panicked"), "{msg}");
                *outcomes.entry("error").or_default() += 1;
            }
            // Some corruptions leave a valid file (a flipped low mantissa bit); it must load as a
            // fully valid checkpoint.
            Ok(ckpt) => {
                assert!(ckpt.weights.all_finite());
                ckpt.config.validate_to_view().unwrap();
                *outcomes.entry("valid").or_default() += 1;
            }
        }
    }
    assert!(outcomes["error"] > n * 8 / 10, "{outcomes:?}");
    eprintln!("{n} mutated checkpoints: {outcomes:?}");
}

#[test]
fn duplicate_keys_in_the_header_are_refused() {
    let good = valid_checkpoint();
    let (header, data) = split(&good);
    let text = header.to_string();
    let entry = format!("\"blocks.0.attn.b_O\":{}", header["blocks.0.attn.b_O"]);
    let dup = join(&text.replacen('{', &format!("{{{entry},"), 1), &data);
    let err = Checkpoint::from_bytes(&dup).unwrap_err().to_string();
    assert!(err.contains("names \"blocks.0.attn.b_O\" twice"), "{err}");
    let meta = text.replacen(
        "\"__metadata__\":{",
        "\"__metadata__\":{\"epoch\":\"1\",",
        1,
    );
    let err = Checkpoint::from_bytes(&join(&meta, &data))
        .unwrap_err()
        .to_string();
    assert!(err.contains("metadata key \"epoch\""), "{err}");
}

/// A string of random pieces: digits, separators, signs, huge numbers, letters and non-ASCII.
fn random_sequence_text(rng: &mut ChaCha8Rng) -> String {
    const PIECES: [&str; 16] = [
        "0",
        "7",
        "10",
        "11",
        "4294967296",
        "99999999999999999999",
        "-1",
        "+3",
        " ",
        ",",
        ",,",
        "\t",
        "x",
        "é",
        "1e3",
        "٣",
    ];
    (0..rng.random_range(0..12))
        .map(|_| {
            if rng.random_bool(0.1) {
                char::from_u32(rng.random_range(0..0x11000)).map_or(String::new(), String::from)
            } else {
                PIECES[rng.random_range(0..PIECES.len())].to_string()
            }
        })
        .collect()
}

#[test]
fn random_sequence_strings_parse_or_explain() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let n = iterations(20_000) * 2;
    let (mut ok, mut err) = (0, 0);
    for _ in 0..n {
        let text = random_sequence_text(&mut rng);
        let (vocab, n_ctx) = (
            [1, 11, 1000][rng.random_range(0..3)],
            rng.random_range(1..8),
        );
        // Half the time the task names its tokens (a data file's vocabulary).
        let names: Vec<String> = ["0", "|", "ab", "é", ""].map(String::from).to_vec();
        let names = match rng.random_range(0..3) {
            0 => toylens::task::TokenNames::List(&names),
            1 => toylens::task::TokenNames::Equals { p: 3 },
            _ => toylens::task::TokenNames::Ids,
        };
        match must_not_panic("parse_sequence", &text, || {
            parse_sequence(&text, names, vocab, n_ctx)
        }) {
            Ok(tokens) => {
                assert!(!tokens.is_empty() && tokens.len() <= n_ctx);
                assert!(tokens.iter().all(|&t| (t as usize) < vocab));
                ok += 1;
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                err += 1;
            }
        }
    }
    assert!(ok > 0 && err > 0, "ok {ok} err {err}");
}

#[test]
fn mutated_config_json_is_rejected_or_valid() {
    let base = serde_json::to_value(RunConfig::default()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n = iterations(5_000);
    for _ in 0..n {
        let text = if rng.random_bool(0.3) {
            // Textual damage.
            let mut t: Vec<char> = base.to_string().chars().collect();
            for _ in 0..rng.random_range(1..5) {
                let i = rng.random_range(0..t.len());
                match rng.random_range(0..3) {
                    0 => {
                        t.remove(i);
                    }
                    1 => t.insert(i, ['{', '"', ',', '9', '-', ']'][rng.random_range(0..6)]),
                    _ => t[i] = '0',
                }
            }
            t.into_iter().collect()
        } else {
            // Structural damage: one field set to an awkward value.
            let mut v = base.clone();
            let section = ["task", "model", "train"][rng.random_range(0..3)];
            let keys: Vec<String> = v[section].as_object().unwrap().keys().cloned().collect();
            let key = keys[rng.random_range(0..keys.len())].clone();
            v[section][key] = odd_value(&mut rng);
            if rng.random_bool(0.2) {
                v["seed"] = odd_value(&mut rng);
            }
            v.to_string()
        };
        let parsed = must_not_panic("RunConfig::from_json", &text, || {
            RunConfig::from_json(&text)
        });
        if let Ok(cfg) = parsed {
            cfg.validate().unwrap();
            // An accepted config must also be buildable (bounded sizes, consistent shapes).
            let mut small = cfg.clone();
            small.task.skip_trigram_mut().unwrap().train_size =
                small.task.skip_trigram().unwrap().train_size.min(500);
            small.task.skip_trigram_mut().unwrap().val_size =
                small.task.skip_trigram().unwrap().val_size.min(100);
            small.train.epochs = 1;
            must_not_panic("Trainer::new", &small, || {
                toylens::train::Trainer::new(small.clone(), &Device::Cpu).map(|_| ())
            })
            .unwrap();
        }
    }
}

#[test]
fn random_command_lines_parse_or_explain() {
    const WORDS: [&str; 24] = [
        "train",
        "eval",
        "inspect",
        "circuits",
        "sweep",
        "bench",
        "--preset",
        "fast",
        "notebook",
        "--lr",
        "-1",
        "1e-2",
        "nan",
        "--epochs",
        "0",
        "99999999999999999999",
        "--batch-size",
        "--seed",
        "--device",
        "cuda:7",
        "--ablate",
        "0,9",
        "--json",
        "--out",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let n = iterations(5_000);
    for _ in 0..n {
        let mut args = vec!["toylens".to_string()];
        for _ in 0..rng.random_range(0..9) {
            args.push(WORDS[rng.random_range(0..WORDS.len())].to_string());
        }
        let parsed = must_not_panic("Cli::try_parse_from", &args, || Cli::try_parse_from(&args));
        if let Ok(Cli {
            command: Some(Command::Train(train)),
            ..
        }) = parsed
        {
            // Flags that parse still go through validation before anything runs.
            if let Ok(cfg) = must_not_panic("build_config", &args, || build_config(&train)) {
                cfg.validate().unwrap();
            }
        }
    }
}
