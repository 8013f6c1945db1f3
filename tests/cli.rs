//! The command line, run as a user would run it.

mod common;

use common::{assert_clean_failure, stderr, stdout, toylens};
use std::path::{Path, PathBuf};

use serde_json::Value;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/skip_trigram_tl")
}

fn train_json(dir: &Path, name: &str, seed: &str) -> Vec<Value> {
    let out = dir.join(name);
    let args = vec![
        "train",
        "--preset",
        "fast",
        "--seed",
        seed,
        "--epochs",
        "4",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = toylens(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[test]
fn train_json_is_one_object_per_epoch_and_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let a = train_json(dir.path(), "a.safetensors", "0");
    let b = train_json(dir.path(), "b.safetensors", "0");
    assert_eq!(a.len(), 4);
    for (i, line) in a.iter().enumerate() {
        assert_eq!(line["epoch"], i + 1);
        for key in [
            "train_loss",
            "train_acc",
            "val_loss",
            "val_acc",
            "val_acc_signal",
            "val_acc_noise",
            "elapsed_s",
        ] {
            assert!(line[key].is_f64(), "{key} missing in {line}");
        }
    }
    // Identical except for the wall clock.
    let strip = |v: &[Value]| {
        v.iter()
            .map(|l| {
                let mut l = l.clone();
                l.as_object_mut().unwrap().remove("elapsed_s");
                l
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&a), strip(&b));
    // And so are the saved weights: the two files differ only in elapsed times.
    let load = |n: &str| toylens::checkpoint::Checkpoint::load(&dir.path().join(n)).unwrap();
    assert_eq!(load("a.safetensors").weights, load("b.safetensors").weights);
    // A different seed is a different run.
    let c = train_json(dir.path(), "c.safetensors", "1");
    assert_ne!(strip(&a), strip(&c));
}

#[test]
fn train_text_output_has_a_summary_with_ceilings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.safetensors");
    let o = toylens(&["train", "--epochs", "2", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("epoch    2/2"), "{text}");
    assert!(text.contains("Bayes optimum 1.1989"), "{text}");
    assert!(text.contains("best possible 0.5455"), "{text}");
    assert!(text.contains("saved"), "{text}");
    assert!(out.exists());
}

#[test]
fn inspect_json_matches_the_fixture() {
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("cases.json")).unwrap())
            .unwrap();
    let case = cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "notebook_example")
        .unwrap();
    let model = fixture().join("model.safetensors");
    let m = model.to_str().unwrap();
    let o = toylens(&["inspect", m, "2,5,3,0", "--json", "--task", "skip-trigram"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(got["tokens"], serde_json::json!([2, 5, 3, 0]));
    assert_eq!(got["predicted_token"], 5);
    assert_eq!(got["expected"], 5);
    // Without a task named, nothing is expected: the file names none.
    let o = toylens(&["inspect", m, "2,5,3,0", "--json"]);
    let plain: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(plain["expected"], Value::Null);
    assert_eq!(plain["logits"], got["logits"]);
    for key in common::INSPECT_KEYS {
        let flat = |v: &Value| common::flatten(v).1;
        let (e, g) = (flat(&case[key]), flat(&got[key]));
        assert_eq!(e.len(), g.len(), "{key}");
        let d = e
            .iter()
            .zip(&g)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(d <= 1e-5, "{key} differs by {d}");
    }
    // Separate arguments work too, and the text view shows the decomposition.
    let o = toylens(&[
        "inspect",
        model.to_str().unwrap(),
        "2",
        "5",
        "3",
        "0",
        "--task",
        "skip-trigram",
    ]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(text.contains("predicted 5  expected 5 (correct)"), "{text}");
    assert!(text.contains("head 2") && text.contains("biases") && text.contains("direct"));
    // A state dict from elsewhere says where its config came from.
    assert!(text.contains("config.json"), "{text}");
}

#[test]
fn bad_tokens_exit_with_a_one_line_reason() {
    let model = fixture().join("model.safetensors");
    let m = model.to_str().unwrap();
    assert_clean_failure(
        &toylens(&["inspect", m, "2 x 3 0"]),
        "\"x\" is not a token id",
    );
    assert_clean_failure(
        &toylens(&["inspect", m, "2 11 3 0"]),
        "token 11 is out of the vocabulary",
    );
    assert_clean_failure(&toylens(&["inspect", m, "1 2 3 4 5"]), "5 tokens");
    assert_clean_failure(&toylens(&["inspect", m, " , "]), "empty");
    assert_clean_failure(&toylens(&["inspect", m, "-3"]), "\"-3\" is not a token id");
}

#[test]
fn eval_reports_accuracy_and_ceilings() {
    let model = fixture().join("model.safetensors");
    // A TL state dict names no task: eval says so, and takes the one named.
    let o = toylens(&["eval", model.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("the model has no task"),
        "{}",
        stderr(&o)
    );
    let o = toylens(&[
        "eval",
        model.to_str().unwrap(),
        "--json",
        "--samples",
        "5000",
        "--task",
        "skip-trigram",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["samples"], 5000);
    assert_eq!(r["acc_signal"], 1.0);
    let noise = r["acc_noise"].as_f64().unwrap();
    assert!((0.05..0.14).contains(&noise), "noise acc {noise}");
    let best = r["ceilings"]["best_acc"].as_f64().unwrap();
    assert!((best - 0.5455).abs() < 0.02);
    let o = toylens(&["eval", model.to_str().unwrap(), "--task", "skip-trigram"]);
    assert!(stdout(&o).contains("Bayes optimum"));
}

#[test]
fn bad_checkpoints_and_flags_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"definitely not a checkpoint").unwrap();
    let j = junk.to_str().unwrap();
    assert_clean_failure(&toylens(&["eval", j]), "not a valid safetensors file");
    assert_clean_failure(
        &toylens(&["inspect", j, "1 2 3 0"]),
        "not a valid safetensors file",
    );
    assert_clean_failure(
        &toylens(&["eval", "/no/such/file.safetensors"]),
        "cannot read /no/such/file.safetensors",
    );
    let out = dir.path().join("o.safetensors");
    let o = out.to_str().unwrap();
    assert_clean_failure(&toylens(&["train", "--lr", "-1", "--out", o]), "lr must be");
    assert_clean_failure(
        &toylens(&["train", "--batch-size", "0", "--out", o]),
        "batch_size",
    );
    let cfg = dir.path().join("bad.json");
    // A model section reads TL's fields with TL's defaults: without attn_only, blocks have MLPs.
    std::fs::write(&cfg, r#"{"model": {"n_heads": 4}}"#).unwrap();
    assert_clean_failure(
        &toylens(&["train", "--config", cfg.to_str().unwrap(), "--out", o]),
        "act_fn (relu, gelu or gelu_new) must be given",
    );
    std::fs::write(
        &cfg,
        r#"{"model": {"d_model": 12, "attn_only": true, "embeddings": "one_hot"}}"#,
    )
    .unwrap();
    assert_clean_failure(
        &toylens(&["train", "--config", cfg.to_str().unwrap(), "--out", o]),
        "d_model (12) must equal d_vocab (11)",
    );
    std::fs::write(&cfg, "{").unwrap();
    assert_clean_failure(
        &toylens(&["train", "--config", cfg.to_str().unwrap(), "--out", o]),
        "config JSON",
    );
    // Divergence is reported, and nothing is written.
    assert_clean_failure(&toylens(&["train", "--lr", "1e30", "--out", o]), "diverged");
    assert!(!out.exists());
    // clap's own errors for malformed flags exit non-zero without a panic too.
    let o = toylens(&["train", "--epochs", "many", "--out", o]);
    assert!(!o.status.success() && !stderr(&o).contains("panicked"));
}

#[test]
fn circuits_json_has_every_key_with_tl_shapes() {
    let model = fixture().join("model.safetensors");
    let o = toylens(&["circuits", model.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c: Value = serde_json::from_str(&stdout(&o)).unwrap();
    for key in ["ov", "qk", "ov_no_bias", "qk_no_bias"] {
        let heads = c[key].as_array().unwrap();
        assert_eq!(heads.len(), 3, "{key}");
        assert_eq!(heads[0].as_array().unwrap().len(), 11);
        assert_eq!(heads[0][0].as_array().unwrap().len(), 11);
    }
    assert_eq!(c["direct"][3][3], 1.0);
    // The circuits of any model: [layer][head][d_vocab][d_vocab(_out)], copying scores.
    assert_eq!(c["ov_full"][0][1], c["ov_no_bias"][1]);
    assert_eq!(c["qk_full"][0].as_array().unwrap().len(), 3);
    assert_eq!(c["copying_score"][0].as_array().unwrap().len(), 3);
    assert!(
        c.get("composition").is_none(),
        "one layer has nothing to compose"
    );
}

fn tl_general(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tl_general")
        .join(name)
        .join("model.safetensors")
        .to_string_lossy()
        .into_owned()
}

fn dims(v: &Value) -> Vec<usize> {
    match v.as_array() {
        Some(a) => std::iter::once(a.len()).chain(dims(&a[0])).collect(),
        None => Vec::new(),
    }
}

#[test]
fn analyze_json_has_every_key_with_tl_shapes() {
    // mlp2_ln_gelu: 2 layers of 3 heads, MLPs, LayerNorm, standard positions, vocabulary 10.
    let m = tl_general("mlp2_ln_gelu");
    let o = toylens(&[
        "analyze",
        &m,
        "4 7 9 7 4 2 5",
        "--json",
        "--corrupt",
        "4,7,9,7,3,2,5",
        "--answer",
        "9",
        "--wrong",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let labels: Vec<&str> = a["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "L0H0",
            "L0H1",
            "L0H2",
            "L1H0",
            "L1H1",
            "L1H2",
            "0_mlp_out",
            "1_mlp_out",
            "embed",
            "pos_embed",
            "bias"
        ]
    );
    assert_eq!(dims(&a["dla"]), [11, 10]);
    assert_eq!(dims(&a["dla_constant"]), [10]);
    assert_eq!(dims(&a["logit_lens"]), [3, 10]);
    for kind in ["previous_token", "duplicate_token", "induction"] {
        assert_eq!(dims(&a["heads"][kind]), [2, 3], "{kind}");
    }
    assert_eq!(dims(&a["patching"]["resid_pre"]), [2, 7]);
    assert_eq!(dims(&a["patching"]["head_out"]), [2, 3]);
    assert!(
        a["patching"]["metric_clean"].is_number() && a["patching"]["metric_corrupt"].is_number()
    );
    // The rows and the constant sum to the logits the final lens shows.
    for v in 0..10 {
        let sum: f64 = (0..11)
            .map(|c| a["dla"][c][v].as_f64().unwrap())
            .sum::<f64>()
            + a["dla_constant"][v].as_f64().unwrap();
        assert!((sum - a["logit_lens"][2][v].as_f64().unwrap()).abs() < 1e-4);
    }
    // --position picks another position; negative counts from the end.
    let at = |p: &str| -> Value {
        let o = toylens(&["analyze", &m, "4 7 9 7 4 2 5", "--json", "--position", p]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str(&stdout(&o)).unwrap()
    };
    assert_eq!(at("2")["dla"], at("-5")["dla"]);
    assert_ne!(at("2")["dla"], a["dla"]);
    assert!(at("-1").get("patching").is_none());
    // Text output: tables a reader can follow.
    let o = toylens(&[
        "analyze",
        &m,
        "4",
        "7",
        "9",
        "--corrupt",
        "4 7 8",
        "--answer",
        "1",
        "--wrong",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for needle in [
        "direct logit attribution",
        "logit lens",
        "head detectors",
        "activation patching",
        "L1H2",
        "final_post",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn analyze_refuses_bad_requests_with_one_line() {
    let m = tl_general("mlp2_ln_gelu");
    let run = |args: &[&str]| {
        let mut all = vec!["analyze", m.as_str()];
        all.extend(args);
        toylens(&all)
    };
    assert_clean_failure(&run(&["1 2 3", "--position", "3"]), "--position 3");
    assert_clean_failure(&run(&["1 2 3", "--position", "-4"]), "--position -4");
    assert_clean_failure(
        &run(&["1 2 3", "--corrupt", "1 2", "--answer", "1", "--wrong", "2"]),
        "same length",
    );
    assert_clean_failure(
        &run(&[
            "1 2 3",
            "--corrupt",
            "1 2 4",
            "--answer",
            "10",
            "--wrong",
            "2",
        ]),
        "not an output token",
    );
    assert_clean_failure(
        &run(&[
            "1 2 3",
            "--corrupt",
            "1 2 x",
            "--answer",
            "1",
            "--wrong",
            "2",
        ]),
        "bad --corrupt sequence",
    );
    assert_clean_failure(&run(&["1 2 99"]), "bad tokens");
    let o = run(&["1 2 3", "--corrupt", "1 2 4"]);
    assert!(
        !o.status.success() && stderr(&o).contains("--answer"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn analyze_ablates_heads_of_any_layer() {
    let m = tl_general("mlp2_ln_gelu");
    let run = |extra: &[&str]| -> Value {
        let mut args = vec!["analyze", m.as_str(), "4 7 9 7 4 2 5", "--json"];
        args.extend(extra);
        let o = toylens(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str(&stdout(&o)).unwrap()
    };
    let plain = run(&[]);
    let zero = run(&["--ablate", "L1H1,L0H2"]);
    let labels = plain["labels"].as_array().unwrap();
    let row = |v: &Value, label: &str| -> Vec<f64> {
        let i = labels.iter().position(|l| l == label).unwrap();
        v["dla"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    assert!(row(&zero, "L1H1").iter().all(|&x| x == 0.0));
    assert!(row(&zero, "L0H2").iter().all(|&x| x == 0.0));
    assert!(row(&plain, "L1H1").iter().any(|&x| x != 0.0));
    assert_ne!(zero["logit_lens"], plain["logit_lens"]);
    // Mean ablation writes the head's mean z over the task's sequences. The state dict names no
    // task, so mean ablation is refused until one is named; named, the head's row is not zero,
    // and not the plain one.
    let o = toylens(&[
        "analyze",
        &m,
        "4 7 9 7",
        "--ablate",
        "L1H1",
        "--ablate-mode",
        "mean",
    ]);
    assert!(
        stderr(&o).contains("the model has no task"),
        "{}",
        stderr(&o)
    );
    let short = |extra: &[&str]| -> Value {
        let mut args = vec![
            "analyze",
            m.as_str(),
            "4 7 9 7",
            "--json",
            "--task",
            "skip-trigram",
        ];
        args.extend(extra);
        let o = toylens(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str(&stdout(&o)).unwrap()
    };
    let mean = short(&["--ablate", "L1H1", "--ablate-mode", "mean"]);
    assert!(row(&mean, "L1H1").iter().any(|&x| x != 0.0));
    assert_ne!(row(&mean, "L1H1"), row(&short(&[]), "L1H1"));
    // A longer sequence has positions without a mean: refused, not silently zeroed.
    let o = toylens(&[
        "analyze",
        &m,
        "4 7 9 7 4",
        "--ablate",
        "L1H1",
        "--ablate-mode",
        "mean",
        "--task",
        "skip-trigram",
    ]);
    assert_clean_failure(&o, "means for 4 positions");
    let o = toylens(&["analyze", &m, "1 2", "--ablate", "L2H0"]);
    assert_clean_failure(&o, "layers 0..=1");
    let o = toylens(&["analyze", &m, "1 2", "--ablate", "L1H0"]);
    assert!(
        stdout(&o).contains("ABLATION: L1H0 zero-ablated"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn circuits_json_of_a_two_layer_model_has_composition() {
    let m = tl_general("attn2_shortformer");
    let o = toylens(&["circuits", &m, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(dims(&c["ov_full"]), [2, 4, 20, 20]);
    assert_eq!(dims(&c["qk_full"]), [2, 4, 20, 20]);
    assert_eq!(dims(&c["copying_score"]), [2, 4]);
    for mode in ["Q", "K", "V"] {
        assert_eq!(dims(&c["composition"][mode]), [2, 4, 2, 4], "{mode}");
        // Layer 1 never composes into layer 0 or itself.
        assert_eq!(c["composition"][mode][1][2][0][3], 0.0);
        assert_eq!(c["composition"][mode][0][2][0][3], 0.0);
        assert!(c["composition"][mode][0][2][1][3].as_f64().unwrap() > 0.0);
    }
    assert!(
        c.get("ov").is_none(),
        "the one-layer keys are for one-layer models"
    );
    let o = toylens(&["circuits", &m]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("K-composition"));
}

#[test]
fn eval_exhaustive_json_and_ablation() {
    let model = fixture().join("model.safetensors");
    let m = model.to_str().unwrap();
    let o = toylens(&[
        "eval",
        m,
        "--exhaustive",
        "--json",
        "--task",
        "skip-trigram",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["pair_accuracy"].as_array().unwrap().len(), 4);
    assert_eq!(r["pair_accuracy"][3][3], 1.0);
    assert_eq!(r["label_accuracy"].as_array().unwrap().len(), 11);
    assert!(
        r["label_accuracy"][10].is_null(),
        "no pair maps to label 10"
    );
    assert_eq!(r["confusion"][9][9], 6);
    let o = toylens(&[
        "eval",
        m,
        "--ablate",
        "0,1,2",
        "--json",
        "--task",
        "skip-trigram",
    ]);
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        r["ablation"]
            .as_str()
            .unwrap()
            .contains("head 2 zero-ablated")
    );
    assert!(r["acc_signal"].as_f64().unwrap() < 0.5);
    let o = toylens(&[
        "eval",
        m,
        "--ablate",
        "1",
        "--ablate-mode",
        "mean",
        "--json",
        "--task",
        "skip-trigram",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean_failure(&toylens(&["eval", m, "--ablate", "3"]), "heads 0..=2");
    assert_clean_failure(&toylens(&["eval", m, "--ablate", "L1H0"]), "layers 0..=0");
    assert_clean_failure(&toylens(&["eval", m, "--ablate", "L0"]), "L<layer>H<head>");
}

#[test]
fn train_csv_and_sweep_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("m.csv");
    let out = dir.path().join("m.safetensors");
    let o = toylens(&[
        "train",
        "--epochs",
        "3",
        "--out",
        out.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("epoch,train_loss,train_acc,"));
    assert_eq!(text.lines().count(), 4);
    let sweep = dir.path().join("sweep");
    let o = toylens(&[
        "sweep",
        "--seeds",
        "0..2",
        "--preset",
        "fast,notebook",
        "--epochs",
        "2",
        "--out",
        sweep.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = std::fs::read_to_string(sweep.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 5, "{summary}");
    assert!(
        summary.starts_with("index,preset,train.epochs,seed,status,regime,unit,trained,"),
        "{summary}"
    );
    assert!(
        summary.contains("\n3,notebook,2,1,done,,epoch,2,"),
        "{summary}"
    );
    // Each run in its folder: fast seed 1 is the second point.
    assert!(sweep.join("1").join("checkpoint.safetensors").exists());
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(sweep.join("1").join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (config["seed"].as_u64(), config["train"]["lr"].as_f64()),
        (Some(1), Some(0.01))
    );
    let rows: Value =
        serde_json::from_str(&std::fs::read_to_string(sweep.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 4);
    assert_clean_failure(
        &toylens(&["sweep", "--seeds", "5..2", "--out", sweep.to_str().unwrap()]),
        "--seeds",
    );
}

/// Every numeric flag of every subcommand, given zero, a negative, a huge and a non-numeric value:
/// a value the command cannot use fails with one line and no panic (a size that cannot fit is
/// refused before anything is allocated: `eval --samples 99999999999` once took all memory);
/// a value it can use runs normally.
#[test]
fn every_numeric_flag_refuses_bad_values_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.safetensors");
    let (o, model) = (
        out.to_str().unwrap().to_string(),
        fixture().join("model.safetensors"),
    );
    let m = model.to_str().unwrap().to_string();
    let sweep_dir = dir.path().join("sweep");
    let s = sweep_dir.to_str().unwrap().to_string();
    const HUGE: &str = "99999999999999999999";
    // (base command, flag, [(value, must succeed?)]); `None`: either outcome, but never a panic.
    type Case<'a> = (Vec<&'a str>, &'a str, Vec<(&'a str, Option<bool>)>);
    let cases: Vec<Case> = vec![
        (
            vec!["train", "--task", "induction", "--steps", "2", "--out", &o],
            "--gap-max",
            vec![
                ("0", Some(true)),
                ("3", Some(true)),
                ("-1", Some(false)),
                ("5000", Some(false)),
                (HUGE, Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["train", "--out", &o, "--epochs", "1"],
            "--seed",
            vec![
                ("0", Some(true)),
                ("-1", Some(false)),
                (HUGE, Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["train", "--out", &o],
            "--epochs",
            vec![
                ("0", Some(false)),
                ("-1", Some(false)),
                (HUGE, Some(false)),
                ("99999999", Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["train", "--out", &o, "--epochs", "1"],
            "--lr",
            vec![
                ("0", Some(false)),
                ("-1", Some(false)),
                (HUGE, None),
                ("inf", Some(false)),
                ("NaN", Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["train", "--out", &o, "--epochs", "1"],
            "--batch-size",
            vec![
                ("0", Some(false)),
                ("-1", Some(false)),
                (HUGE, Some(false)),
                ("99999999", Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["train", "--out", &o, "--epochs", "1"],
            "--weight-decay",
            vec![
                ("0", Some(true)),
                ("-1", Some(false)),
                (HUGE, None),
                ("NaN", Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["eval", &m, "--task", "skip-trigram"],
            "--seed",
            vec![
                ("0", Some(true)),
                ("-1", Some(false)),
                (HUGE, Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["eval", &m, "--task", "skip-trigram"],
            "--samples",
            vec![
                ("0", Some(false)),
                ("-1", Some(false)),
                (HUGE, Some(false)),
                ("99999999999", Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["eval", &m, "--task", "skip-trigram"],
            "--ablate",
            vec![
                ("0", Some(true)),
                ("-1", Some(false)),
                (HUGE, Some(false)),
                ("3", Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["analyze", &m, "2 5 3 0"],
            "--position",
            vec![
                ("0", Some(true)),
                ("-1", Some(true)),
                ("4", Some(false)),
                ("-5", Some(false)),
                (HUGE, Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["analyze", &m, "2 5 3 0", "--answer", "1", "--wrong", "2"],
            "--corrupt",
            vec![
                ("2 5 4 0", Some(true)),
                ("2,5,4,0", Some(true)),
                ("2 5 4", Some(false)),
                ("", Some(false)),
                (HUGE, Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec![
                "analyze",
                &m,
                "2 5 3 0",
                "--corrupt",
                "2 5 4 0",
                "--wrong",
                "2",
            ],
            "--answer",
            vec![
                ("0", Some(true)),
                ("11", Some(false)),
                ("-1", Some(false)),
                (HUGE, Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["inspect", &m],
            "--device",
            vec![
                ("0", Some(false)),
                ("-1", Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["inspect", &m, "2"],
            "",
            vec![
                ("0", Some(true)),
                ("-1", Some(false)),
                (HUGE, Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["sweep", "--out", &s, "--epochs", "1"],
            "--seeds",
            vec![
                ("0", Some(true)),
                ("-1", Some(false)),
                ("0..99999999999", Some(false)),
                (HUGE, Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["sweep", "--out", &s, "--seeds", "0", "--epochs", "1"],
            "--lr",
            vec![
                ("0", Some(false)),
                ("-1", Some(false)),
                (HUGE, None),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["sweep", "--out", &s, "--seeds", "0"],
            "--epochs",
            vec![
                ("0", Some(false)),
                ("-1", Some(false)),
                (HUGE, Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["bench", "--quick", "--device", "cpu", "--batch", "10"],
            "--seq-len",
            vec![
                ("0", Some(false)),
                ("-1", Some(false)),
                (HUGE, Some(false)),
                ("2000", Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["bench", "--quick", "--device", "cpu", "--batch", "10"],
            "--vocab",
            vec![
                ("0", Some(false)),
                ("-1", Some(false)),
                (HUGE, Some(false)),
                ("5000", Some(false)),
                ("abc", Some(false)),
            ],
        ),
        (
            vec!["bench", "--quick", "--device", "cpu"],
            "--batch",
            vec![
                ("0", Some(false)),
                ("-1", Some(false)),
                (HUGE, Some(false)),
                ("99999999", Some(false)),
                ("abc", Some(false)),
            ],
        ),
    ];
    for (base, flag, values) in &cases {
        for (value, succeeds) in values {
            let mut args = base.clone();
            if !flag.is_empty() {
                args.push(flag);
            }
            args.push(value);
            let o = toylens(&args);
            let err = stderr(&o);
            let what = format!("toylens {}", args.join(" "));
            assert!(!err.contains("panicked"), "{what} panicked: {err}");
            if !o.status.success() {
                assert_eq!(err.trim().lines().count(), 1, "{what}: not one line: {err}");
            }
            if let Some(ok) = succeeds {
                assert_eq!(o.status.success(), *ok, "{what}: {err}");
            }
        }
    }
}

/// Flattens nested JSON numbers (null as −inf).
fn flat_values(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flat_values(i, out)),
        Value::Null => out.push(f64::NEG_INFINITY),
        other => out.push(other.as_f64().unwrap()),
    }
}

#[test]
fn inspect_cache_gives_every_tl_hook_of_a_general_model() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tl_general/mlp2_ln_gelu");
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let case = &cases["cases"][4];
    let tokens = common::token_args(case);
    let model = dir.join("model.safetensors");
    let mut args = vec!["inspect", model.to_str().unwrap()];
    args.extend(tokens.iter().map(String::as_str));
    args.extend(["--json", "--cache"]);
    let o = toylens(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let ours: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let expected = case["cache"].as_object().unwrap();
    let cache = ours["cache"].as_object().unwrap();
    assert_eq!(cache.len() + 1, expected.len(), "every hook, plus logits");
    for (hook, want) in expected {
        let got = if hook == "logits" {
            &ours["logits"]
        } else {
            &cache[hook]
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        flat_values(want, &mut a);
        flat_values(got, &mut b);
        assert_eq!(a.len(), b.len(), "{hook}");
        for (x, y) in a.iter().zip(&b) {
            let ok = if x.is_infinite() {
                x == y
            } else {
                (x - y).abs() <= 1e-5 + 1.3e-6 * x.abs()
            };
            assert!(ok, "{hook}: {x} vs {y}");
        }
    }
    // LayerNorm before the unembedding: the decomposition does not apply and says so.
    assert!(ours["head_logits_last"].is_null());
    assert_eq!(ours["patterns"].as_array().unwrap().len(), 2);
}

#[test]
fn a_state_dict_without_a_config_needs_tl_config() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tl_general/mlp1_relu");
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.safetensors");
    std::fs::copy(src.join("model.safetensors"), &model).unwrap();
    let m = model.to_str().unwrap();
    assert_clean_failure(&toylens(&["inspect", m, "1 2 3"]), "--tl-config");
    let cfg = src.join("config.json");
    let o = toylens(&["inspect", m, "1 2 3", "--tl-config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("MLP 64 relu"), "{}", stdout(&o));
    // A config that contradicts the weights is an error, not a guess.
    let wrong = dir.path().join("wrong.json");
    std::fs::write(
        &wrong,
        r#"{"n_layers": 1, "d_model": 32, "n_heads": 4, "d_head": 8, "d_mlp": 48, "act_fn": "relu", "d_vocab": 14, "n_ctx": 3, "normalization_type": null}"#,
    )
    .unwrap();
    assert_clean_failure(
        &toylens(&[
            "inspect",
            m,
            "1 2 3",
            "--tl-config",
            wrong.to_str().unwrap(),
        ]),
        "shape",
    );
}

#[test]
fn train_eval_and_sweep_a_general_model_from_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("two-layers.json");
    std::fs::write(
        &cfg,
        r#"{"seed": 2,
            "task": {"train_size": 2000, "val_size": 200},
            "model": {"n_layers": 2, "d_model": 16, "n_heads": 2, "d_head": 8, "d_vocab": 11,
                      "n_ctx": 4, "d_mlp": 32, "act_fn": "gelu_new", "normalization_type": "LNPre",
                      "positional_embedding_type": "shortformer"},
            "train": {"epochs": 2, "batch_size": 500, "optimizer": "adamw", "weight_decay": 0.1,
                      "freeze": ["*.b_*"]}}"#,
    )
    .unwrap();
    let out = dir.path().join("m.safetensors");
    let o = toylens(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("(full forward pass, fused attention core, AVX2 host Adam)")
            || stdout(&o).contains("(full forward pass, fused attention core, host Adam)"),
        "{}",
        stdout(&o)
    );
    let ckpt = toylens::checkpoint::Checkpoint::load(&out).unwrap();
    assert_eq!(ckpt.config.model.n_layers, 2);
    assert_eq!(ckpt.history.len(), 2);
    // Frozen biases did not move.
    assert!(
        ckpt.weights
            .get("blocks.1.attn.b_V")
            .iter()
            .all(|&b| b == 0.0)
    );
    let m = out.to_str().unwrap();
    let o = toylens(&["eval", m, "--samples", "300"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("2 layers"), "{}", stdout(&o));
    let o = toylens(&["inspect", m, "2 5 3 0", "--json", "--cache"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["cache"]["blocks.1.ln2.hook_normalized"].is_array());
    let sweep = dir.path().join("sweep");
    let o = toylens(&[
        "sweep",
        "--config",
        cfg.to_str().unwrap(),
        "--seeds",
        "0..2",
        "--epochs",
        "1",
        "--out",
        sweep.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(sweep.join("1").join("checkpoint.safetensors").exists());
    let result: Value = serde_json::from_str(
        &std::fs::read_to_string(sweep.join("1").join("result.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(result["status"], "done", "{result}");
}

#[test]
fn data_gen_writes_examples_that_data_check_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sort.jsonl");
    let o = toylens(&[
        "data",
        "gen",
        "sort",
        "--out",
        out.to_str().unwrap(),
        "--samples",
        "30",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let vocab = dir.path().join("vocab.json");
    assert!(vocab.is_file());
    let o = toylens(&[
        "data",
        "check",
        out.to_str().unwrap(),
        "--vocab",
        vocab.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o)
            .contains("30 sequences of 11 tokens, 11 token ids with names; 150 scored positions"),
        "{}",
        stdout(&o)
    );
    // A bad file: one line naming the file, the line and the field; exit status 1.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"tokens\": [1, 2, 3]}\n{\"tokens\": [1, 2]}\n").unwrap();
    let o = toylens(&["data", "check", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("bad.jsonl, line 2, \"tokens\": 2 tokens, but the sequences before have 3"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let o = toylens(&[
        "data",
        "gen",
        "reverse",
        "--out",
        out.to_str().unwrap(),
        "--digits",
        "0",
    ]);
    assert!(
        stderr(&o).contains("--digits must be between 1 and 100"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn task_names_the_task_only_of_a_model_without_one() {
    let model = fixture().join("model.safetensors");
    let m = model.to_str().unwrap();
    assert_clean_failure(&toylens(&["eval", m]), "the model has no task");
    // The skip-trigram model cannot be read as modular addition (no `=` beyond its classes).
    assert_clean_failure(
        &toylens(&["eval", m, "--task", "modular-addition"]),
        "cannot take the modular_addition task",
    );
    // A checkpoint of toylens's own keeps its task.
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("own.safetensors");
    let o = toylens(&[
        "train",
        "--preset",
        "fast",
        "--epochs",
        "1",
        "--out",
        own.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean_failure(
        &toylens(&["eval", own.to_str().unwrap(), "--task", "induction"]),
        "the checkpoint's task is skip_trigram",
    );
    let o = toylens(&[
        "eval",
        own.to_str().unwrap(),
        "--task",
        "skip-trigram",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn eval_data_scores_the_positions_a_file_names() {
    // The notebook's 96 signal sequences, written as a user's file would: only the last position
    // is scored, with the answer the task gives.
    let task = toylens::task::SkipTrigramConfig::default();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signal.jsonl");
    let mut text = String::new();
    let sequences = task.all_signal_sequences();
    for seq in &sequences {
        let answer = task.expected_answer(seq).unwrap();
        text.push_str(&format!(
            "{{\"tokens\": {seq:?}, \"targets\": [null, null, null, {answer}]}}\n"
        ));
    }
    std::fs::write(&file, text).unwrap();
    let model = fixture().join("model.safetensors");
    let o = toylens(&[
        "eval",
        model.to_str().unwrap(),
        "--data",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["sequences"], 96);
    assert_eq!(r["scored_positions"], 96);
    // The notebook's model answers every signal sequence.
    assert_eq!(r["acc"], 1.0);
    assert_eq!(r["seq_acc"], 1.0);
    assert_eq!(
        r["acc_by_position"],
        serde_json::json!([null, null, null, 1.0])
    );
    // The loss is the mean cross-entropy of each sequence's last logits, from the inspector.
    let ckpt = toylens::checkpoint::Checkpoint::load(&model).unwrap();
    let m = toylens::model::Transformer::new(
        &ckpt.config.model,
        &ckpt.weights,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let want: f64 = sequences
        .iter()
        .map(|seq| {
            let cache = m.run_with_cache(seq).unwrap();
            let last = cache.logits_last();
            let max = last.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let sum: f64 = last.iter().map(|&v| (v as f64 - max).exp()).sum();
            max + sum.ln() - last[task.expected_answer(seq).unwrap() as usize] as f64
        })
        .sum::<f64>()
        / 96.0;
    let got = r["loss"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    // A file the model cannot take is one line naming why.
    let long = dir.path().join("long.jsonl");
    std::fs::write(&long, "{\"tokens\": [1, 2, 3, 4, 5]}\n").unwrap();
    assert_clean_failure(
        &toylens(&[
            "eval",
            model.to_str().unwrap(),
            "--data",
            long.to_str().unwrap(),
        ]),
        "the model takes at most 4",
    );
    let o = toylens(&[
        "eval",
        model.to_str().unwrap(),
        "--data",
        file.to_str().unwrap(),
    ]);
    assert!(
        stdout(&o).contains("sequence accuracy 1.0000"),
        "{}",
        stdout(&o)
    );
}

/// `--version`: the version, the commit the binary was built from, and its features.
#[test]
fn version_names_the_commit_and_the_features() {
    let o = toylens(&["--version"]);
    assert!(o.status.success());
    let line = stdout(&o);
    let want = format!("toylens {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&want), "{line}");
    let commit = line[want.len()..].split(';').next().unwrap();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{line}"
    );
    assert!(line.trim_end().ends_with("; features: gui)"), "{line}");
}
