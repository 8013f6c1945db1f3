//! `toylens sweep` with the local executor: a grid over config fields of either model family,
//! run folders with their records, collect (twice the same), resume (only what is missing or
//! failed), a time limit recorded as `timeout`, and bad input refused before anything is
//! written.

mod common;

use std::path::Path;
use std::process::Output;

use common::{assert_clean_failure as refused, stderr, stdout, toylens};
use serde_json::Value;

fn check(o: &Output) {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_grid_runs_in_folders_and_collects_resumes_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("runs");
    let s = out.to_str().unwrap();
    let o = toylens(&[
        "sweep",
        "--preset",
        "grokking-fast",
        "--grid",
        "task.p=7,11",
        "--grid",
        "train.weight_decay=0.5,2",
        "--epochs",
        "20",
        "--grid",
        "train.eval_every=5",
        "--seeds",
        "0..2",
        "--parallel",
        "2",
        "--out",
        s,
    ]);
    check(&o);
    let file = json(&out.join("sweep.json"));
    assert_eq!(file["points"].as_array().unwrap().len(), 8);
    for i in 0..8 {
        let run = out.join(i.to_string());
        let config = json(&run.join("config.json"));
        let point = &file["points"][i];
        // The resolved config: the point's values, the model fitted to the task's p.
        assert_eq!(config["task"]["p"], point["values"][0], "run {i}");
        assert_eq!(
            config["train"]["weight_decay"].as_f64(),
            point["values"][1].as_f64(),
            "run {i}"
        );
        assert_eq!(config["seed"], point["seed"], "run {i}");
        let p = config["task"]["p"].as_u64().unwrap();
        assert_eq!(config["model"]["d_vocab"].as_u64(), Some(p + 1), "run {i}");
        let result = json(&run.join("result.json"));
        assert_eq!(result["status"], "done", "run {i}: {result}");
        assert_eq!(result["trained"], 20);
        assert!(toylens::sweep::REGIMES.contains(&result["regime"].as_str().unwrap()));
        // One line per evaluation, then the checkpoint with the same history.
        let lines = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 4, "run {i}");
        assert!(run.join("checkpoint.safetensors").is_file());
    }
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9, "{csv}");
    assert!(
        csv.starts_with(
            "index,task.p,train.weight_decay,train.eval_every,train.epochs,seed,status,regime,"
        ),
        "{csv}"
    );
    // Collecting again writes the same files.
    let before = (
        std::fs::read(out.join("summary.csv")).unwrap(),
        std::fs::read(out.join("summary.json")).unwrap(),
    );
    check(&toylens(&["sweep", "collect", s]));
    assert_eq!(before.0, std::fs::read(out.join("summary.csv")).unwrap());
    assert_eq!(before.1, std::fs::read(out.join("summary.json")).unwrap());
    // Resume reruns only the missing and the failed: run 3 lost its result, run 5 failed.
    std::fs::remove_file(out.join("3").join("result.json")).unwrap();
    let mut failed = json(&out.join("5").join("result.json"));
    failed["status"] = "failed".into();
    std::fs::write(out.join("5").join("result.json"), failed.to_string()).unwrap();
    let untouched = std::fs::read(out.join("4").join("result.json")).unwrap();
    // Run 3 kept its history: started, with no result.
    let o = toylens(&["sweep", "collect", s]);
    check(&o);
    assert!(
        stdout(&o).contains("7 finished, 1 not yet"),
        "{}",
        stdout(&o)
    );
    let o = toylens(&["sweep", "status", s, "--json"]);
    check(&o);
    let status: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(status["results"]["started, no result yet"], 1, "{status}");
    assert_eq!(status["results"]["failed"], 1, "{status}");
    assert_eq!(status["results"]["done"], 6, "{status}");
    let o = toylens(&["sweep", "resume", s]);
    check(&o);
    assert!(
        stderr(&o).contains("2 of 8 runs to run again"),
        "{}",
        stderr(&o)
    );
    assert_eq!(json(&out.join("3").join("result.json"))["status"], "done");
    assert_eq!(json(&out.join("5").join("result.json"))["status"], "done");
    assert_eq!(
        untouched,
        std::fs::read(out.join("4").join("result.json")).unwrap()
    );
    // The same seeds give the same numbers again.
    assert_eq!(
        json(&out.join("summary.json"))[3]["metrics"]["test_acc"],
        serde_json::from_slice::<Value>(&before.1).unwrap()[3]["metrics"]["test_acc"]
    );
    let o = toylens(&["sweep", "status", s, "--json"]);
    check(&o);
    let status: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(status["results"]["done"], 8);

    // Bad input: refused, nothing written.
    let bad = dir.path().join("bad");
    let b = bad.to_str().unwrap();
    refused(
        &toylens(&["sweep", "--grid", "train.lrr=1", "--out", b]),
        "--grid train.lrr=1: ",
    );
    refused(
        &toylens(&["sweep", "--grid", "train.lr=fast", "--out", b]),
        "--grid train.lr=\"fast\": ",
    );
    refused(
        &toylens(&["sweep", "--grid", "model.n_layers=0", "--out", b]),
        "--grid model.n_layers=0: ",
    );
    refused(
        &toylens(&["sweep", "--grid", "train.lr", "--out", b]),
        "field=value1,value2",
    );
    refused(
        &toylens(&[
            "sweep",
            "--grid",
            "train.lr=1,2,3,4,5,6,7,8,9,10",
            "--grid",
            "train.weight_decay=1,2,3,4,5,6,7,8,9,10",
            "--grid",
            "train.batch_size=1,2,3,4,5,6,7,8,9,10",
            "--seeds",
            "0..1000",
            "--out",
            b,
        ]),
        "1000000 runs",
    );
    assert!(!bad.exists());
    refused(
        &toylens(&["sweep", "--epochs", "1", "--out", s]),
        "is a sweep already",
    );
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("notes.txt"), "mine").unwrap();
    refused(
        &toylens(&["sweep", "--epochs", "1", "--out", plain.to_str().unwrap()]),
        "is not a sweep folder",
    );
    assert_eq!(std::fs::read_dir(&plain).unwrap().count(), 1);
    refused(
        &toylens(&["sweep", "collect", plain.to_str().unwrap()]),
        "not a sweep folder",
    );
    // No staging folder is left behind by any of it.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".toylens-sweep"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_run_past_its_time_limit_is_a_timeout_and_superposition_runs_sweep_alike() {
    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("late");
    let l = late.to_str().unwrap();
    let first = std::process::Command::new(env!("CARGO_BIN_EXE_toylens"))
        .args(["sweep", "--preset", "grokking-fast", "--epochs", "1000000"])
        .args(["--seeds", "0", "--time", "0:04", "--out", l])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While it runs, a second process may not run the same points, here or on Slurm.
    let started = std::time::Instant::now();
    while !late.join("0").join("metrics.jsonl").exists() {
        assert!(started.elapsed().as_secs() < 30, "the sweep did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for executor in ["local", "slurm"] {
        refused(
            &toylens(&["sweep", "resume", l, "--executor", executor]),
            "another toylens process is running points of",
        );
    }
    assert!(!late.join("sweep.sbatch").exists());
    let o = first.wait_with_output().unwrap();
    check(&o);
    let result = json(&late.join("0").join("result.json"));
    assert_eq!(result["status"], "timeout", "{result}");
    assert!(result["trained"].as_u64().unwrap() > 0);
    assert!(
        result.get("regime").is_none(),
        "a run stopped early has no regime: {result}"
    );
    assert!(late.join("0").join("checkpoint.safetensors").is_file());

    // Superposition: over the hidden width and the feature probability.
    let base = dir.path().join("tms.json");
    std::fs::write(
        &base,
        r#"{"model": {"kind": "tms", "n_features": 6, "n_hidden": 2, "n_instances": 1},
            "task": {"feature_probability": {"constant": 0.1}, "importance": {"decay": 0.9}},
            "train": {"steps": 300, "eval_every": 100}}"#,
    )
    .unwrap();
    let tms = dir.path().join("tms");
    let o = toylens(&[
        "sweep",
        "--config",
        base.to_str().unwrap(),
        "--grid",
        "model.n_hidden=2,6",
        "--grid",
        "task.feature_probability.constant=1,0.05",
        "--seeds",
        "0",
        "--json",
        "--out",
        tms.to_str().unwrap(),
    ]);
    check(&o);
    let rows: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        assert_eq!(row["model"], "superposition");
        assert_eq!(row["status"], "done");
        assert_eq!(row["trained"], 300);
        let represented = row["metrics"]["features_represented"].as_f64().unwrap();
        let hidden = row["values"]["model.n_hidden"].as_f64().unwrap();
        assert!((0.0..=6.0).contains(&represented), "{row}");
        // D* (dimensions per feature) is a mean over the instance's features' share.
        assert!(
            row["metrics"]["dims_per_feature"].as_f64().unwrap() > 0.0,
            "{row}"
        );
        if hidden == 6.0 {
            // As many dimensions as features: each gets its own.
            assert!(represented >= 5.0, "{row}");
        }
    }
}
