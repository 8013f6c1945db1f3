//! A task defined by a data file, from the command line: training on its scored positions, the
//! config that names it, checkpoints that remember it by SHA-256, and bad input.

mod common;

use std::path::Path;
use std::process::Output;

use common::{assert_clean_failure, stderr, stdout, toylens};
use serde_json::Value;

/// A copy task written as a user's own script would write it: three letters, `=`, the same
/// three letters, scored on the copy; a vocabulary file beside it.
fn write_copy_task(dir: &Path, samples: usize) -> std::path::PathBuf {
    let letters = ["a", "b", "c", "d", "e", "f"];
    let mut text = String::new();
    let mut state = 7u64;
    for _ in 0..samples {
        let mut word = Vec::new();
        for _ in 0..3 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            word.push(letters[(state >> 33) as usize % letters.len()]);
        }
        let tokens: Vec<&str> = word.iter().chain(&["="]).chain(&word).copied().collect();
        let mask = [0, 0, 0, 1, 1, 1, 0];
        text.push_str(&format!(
            "{{\"tokens\": {}, \"loss_mask\": {mask:?}}}\n",
            serde_json::to_string(&tokens).unwrap()
        ));
    }
    let data = dir.join("copy.jsonl");
    std::fs::write(&data, text).unwrap();
    let vocab: Vec<&str> = letters.iter().chain(&["="]).copied().collect();
    std::fs::write(
        dir.join("vocab.json"),
        serde_json::to_string(&vocab).unwrap(),
    )
    .unwrap();
    data
}

/// Each line of stdout as JSON, its `elapsed_s` checked and taken out (it varies run to run).
fn json_lines_without_time(o: &Output) -> Vec<Value> {
    assert!(o.status.success(), "{}", stderr(o));
    stdout(o)
        .lines()
        .map(|l| {
            let mut m: Value = serde_json::from_str(l).expect("each line is JSON");
            let elapsed = m.as_object_mut().unwrap().remove("elapsed_s").unwrap();
            assert!(elapsed.as_f64().unwrap() > 0.0);
            m
        })
        .collect()
}

#[test]
fn train_data_learns_the_scored_positions_and_reports_each_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_copy_task(dir.path(), 600);
    let run = |seed: &str| {
        let out = dir.path().join(format!("copy-{seed}.safetensors"));
        json_lines_without_time(&toylens(&[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "6",
            "--lr",
            "0.003",
            "--batch-size",
            "32",
            "--seed",
            seed,
            "--json",
            "--out",
            out.to_str().unwrap(),
        ]))
    };
    let lines = run("1");
    assert_eq!(lines.len(), 6);
    for (i, m) in lines.iter().enumerate() {
        let mut keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "acc_by_position",
                "epoch",
                "train_acc",
                "train_loss",
                "val_acc",
                "val_loss",
                "val_seq_acc",
            ]
        );
        assert_eq!(m["epoch"], i + 1);
        // Positions 3, 4, 5 predict the copy; nothing else is scored.
        let by_position = m["acc_by_position"].as_array().unwrap();
        assert_eq!(by_position.len(), 7);
        for (p, a) in by_position.iter().enumerate() {
            assert_eq!(a.is_null(), !(3..6).contains(&p), "position {p}: {a}");
        }
    }
    let (first, last) = (&lines[0], &lines[5]);
    let loss = |m: &Value, k: &str| m[k].as_f64().unwrap();
    assert!(
        loss(last, "val_loss") < 0.5 * loss(first, "val_loss"),
        "{first} → {last}"
    );
    assert!(loss(last, "val_acc") > 0.9, "{last}");
    // The same seed trains the same numbers; another seed draws another split and order.
    assert_eq!(run("1"), lines);
    assert_ne!(run("2"), lines);

    // The checkpoint keeps the task: eval reports the validation split, with token names.
    let out = dir.path().join("copy-1.safetensors");
    let o = toylens(&["eval", out.to_str().unwrap(), "--json"]);
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!((report["loss"].as_f64().unwrap() - loss(last, "val_loss")).abs() < 1e-9);
    assert!((report["seq_acc"].as_f64().unwrap() - loss(last, "val_seq_acc")).abs() < 1e-12);

    // Tokens go in and come out by name; the expected token comes from the data.
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&data)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let words: Vec<&str> = first["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let mut args = vec!["inspect", out.to_str().unwrap(), "--json"];
    args.extend(&words[..5]);
    let o = toylens(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["token_strings"], serde_json::json!(words[..5]));
    let names = ["a", "b", "c", "d", "e", "f", "="];
    let expected = names.iter().position(|&n| n == words[5]).unwrap();
    assert_eq!(r["expected"], expected, "{r}");
    assert_eq!(r["vocab_strings"], serde_json::json!(names));
    let mut args = vec!["analyze", out.to_str().unwrap(), "--json"];
    args.extend(&words[..5]);
    let r: Value = serde_json::from_str(&stdout(&toylens(&args))).unwrap();
    assert_eq!(r["token_strings"], serde_json::json!(words[..5]));

    // A changed data file is refused on reopening: the model opens with no task, and says why.
    let mut text = std::fs::read_to_string(&data).unwrap();
    text.push_str("{\"tokens\": [\"a\", \"b\", \"c\", \"=\", \"a\", \"b\", \"c\"]}\n");
    std::fs::write(&data, text).unwrap();
    let o = toylens(&["eval", out.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("changed since the model was saved"), "{err}");
    assert!(err.contains("no data to evaluate on"), "{err}");
}

#[test]
fn a_config_names_its_data_relative_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    write_copy_task(&dir.path().join("data"), 200);
    let config = dir.path().join("run.json");
    std::fs::write(
        &config,
        r#"{"seed": 4, "task": {"kind": "sequences", "path": "data/copy.jsonl", "val_frac": 0.25},
            "model": {"n_layers": 1, "d_model": 16, "n_heads": 2, "d_head": 8, "attn_only": true,
                      "positional_embedding_type": "standard", "embeddings": "learned"},
            "train": {"epochs": 2, "batch_size": 16}}"#,
    )
    .unwrap();
    let out = dir.path().join("m.safetensors");
    // Run from another folder: the data path is the config's.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_toylens"))
        .current_dir(std::env::temp_dir())
        .args([
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("validation (copy.jsonl)"),
        "{}",
        stdout(&o)
    );
    // d_vocab and n_ctx came from the data: 7 names, 7 tokens.
    let ckpt = toylens::checkpoint::Checkpoint::load(&out).unwrap();
    assert_eq!((ckpt.config.model.d_vocab, ckpt.config.model.n_ctx), (7, 7));
    let task = ckpt.config.task.sequences().unwrap();
    assert!(task.path.as_ref().unwrap().is_absolute());
    assert_eq!(task.sha256.as_ref().map(String::len), Some(64));
    assert_eq!(
        ckpt.config.task.vocab_names().unwrap(),
        ["a", "b", "c", "d", "e", "f", "="]
    );
    // A sweep reads the same config the same way.
    let sweep = dir.path().join("sweep");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_toylens"))
        .current_dir(std::env::temp_dir())
        .args([
            "sweep",
            "--config",
            config.to_str().unwrap(),
            "--seeds",
            "0..2",
            "--json",
            "--out",
        ])
        .arg(&sweep)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("\"task\": \"sequences\""),
        "{}",
        stdout(&o)
    );
    // A model smaller than the data is refused.
    std::fs::write(
        &config,
        r#"{"task": {"kind": "sequences", "path": "data/copy.jsonl"}, "model": {"n_ctx": 5}}"#,
    )
    .unwrap();
    assert_clean_failure(
        &toylens(&[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            "/dev/null",
        ]),
        "longer than the model's n_ctx (5)",
    );
}

#[test]
fn bad_data_and_flags_fail_with_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_copy_task(dir.path(), 50);
    let out = dir.path().join("never.safetensors");
    let train = |file: &Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        toylens(&args)
    };
    let bad = dir.path().join("bad.jsonl");
    for (text, needle) in [
        ("", "holds no sequences"),
        (
            "{\"tokens\": [\"a\", \"b\"]}\n{\"tokens\": [\"a\"]}\n",
            "line 2, \"tokens\"",
        ),
        ("{\"tokens\": [\"a\", \"zz\"]}\n", "\"zz\""),
        (
            "{\"tokens\": [\"a\", \"b\"], \"loss_mask\": [1]}\n",
            "\"loss_mask\": has 1 entries for 2 tokens",
        ),
        (
            "{\"tokens\": [\"a\", \"b\"], \"loss_mask\": [0, 0]}\n",
            "no position is scored",
        ),
    ] {
        std::fs::write(&bad, text).unwrap();
        assert_clean_failure(&train(&bad, &[]), needle);
    }
    std::fs::write(&bad, b"{\"tokens\": [\"\xff\"]}\n").unwrap();
    assert_clean_failure(&train(&bad, &[]), "not UTF-8");
    // A 4 GB file (sparse: no disk is used) is refused before a byte is read.
    let huge = dir.path().join("huge.jsonl");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    assert_clean_failure(&train(&huge, &[]), "data files of at most 1 GB are read");
    // NumPy arrays of floats, or not [N, T].
    let npy = |name: &str, descr: &str, shape: &str, bytes: usize| {
        let path = dir.path().join(name);
        std::fs::write(&path, common::npy_bytes(descr, shape, bytes)).unwrap();
        path
    };
    let floats = npy("floats.npy", "<f4", "(2, 3)", 24);
    let rank3 = npy("rank3.npy", "<i8", "(2, 3, 1)", 48);
    let o = train(&floats, &[]);
    assert_clean_failure(&o, "floats.npy");
    assert!(stderr(&o).contains("integer"), "{}", stderr(&o));
    assert_clean_failure(&train(&rank3, &[]), "rank3.npy");
    assert_clean_failure(
        &train(&dir.path().join("missing.jsonl"), &[]),
        "cannot read it",
    );
    assert_clean_failure(
        &train(&data, &["--preset", "grokking"]),
        "with --data use --preset sort or reverse",
    );
    assert_clean_failure(&train(&data, &["--val-frac", "1.5"]), "val_frac must be");
    assert_clean_failure(&train(&data, &["--vocab", "nowhere.json"]), "nowhere.json");
    // Every sequence in validation leaves nothing to train on.
    let all_val = dir.path().join("val.jsonl");
    std::fs::write(
        &all_val,
        "{\"tokens\": [\"a\", \"b\"], \"split\": \"val\"}\n{\"tokens\": [\"b\", \"a\"], \"split\": \"val\"}\n",
    )
    .unwrap();
    assert_clean_failure(&train(&all_val, &[]), "0 training and 2 validation");
    assert_clean_failure(
        &toylens(&[
            "train",
            "--preset",
            "sort",
            "--val-frac",
            "0.2",
            "--out",
            "/dev/null",
            "--p",
            "7",
        ]),
        "--p is a setting of the modular_addition task",
    );
    assert!(!out.exists());
}

#[test]
fn train_from_fine_tunes_a_pytorch_state_dict_on_a_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let pth = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tl_pth/model.pth");
    // Ids below the model's vocabulary of 10, 7 tokens of its 8.
    let lines: Vec<String> = (0..300)
        .map(|i| {
            let w = [i % 9, (i / 9) % 9, (i / 81 + i) % 9];
            format!(
                "{{\"tokens\": [{}, {}, {}, 9, {}, {}, {}], \"loss_mask\": [0, 0, 0, 1, 1, 1, 0]}}",
                w[0], w[1], w[2], w[2], w[1], w[0]
            )
        })
        .collect();
    let data = dir.path().join("rev.jsonl");
    std::fs::write(&data, lines.join("\n")).unwrap();
    let out = dir.path().join("tuned.safetensors");
    let o = toylens(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--from",
        pth.to_str().unwrap(),
        "--epochs",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let opened = toylens::checkpoint::Checkpoint::load(&pth).unwrap();
    let tuned = toylens::checkpoint::Checkpoint::load(&out).unwrap();
    assert_eq!(tuned.config.model, opened.config.model);
    assert_eq!(
        tuned.snapshots[0].weights, opened.weights,
        "the run starts from the file"
    );
    assert_ne!(tuned.weights, opened.weights);
    assert_eq!(tuned.history.len(), 2);
    // A model that cannot take the data says so.
    let long = dir.path().join("long.jsonl");
    std::fs::write(&long, "{\"tokens\": [1, 2, 3, 4, 5, 6, 7, 8, 9]}\n").unwrap();
    assert_clean_failure(
        &toylens(&[
            "train",
            "--data",
            long.to_str().unwrap(),
            "--from",
            pth.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]),
        "longer than the model's n_ctx (8)",
    );
}
