//! Sweeps on a real Slurm cluster (`scripts/slurm-cluster.sh` starts one on this machine; `.ci/run`
//! does before the tests): a grid submitted as a job array gives the local executor's numbers,
//! and a run past Slurm's time limit is recorded as `timeout`. Under CI a missing `sbatch` fails
//! the test; elsewhere it is reported and the test returns.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn toylens(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_toylens"));
    command.args(args);
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check(o: &Output) {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// Whether a Slurm cluster answers here.
fn slurm_is_up() -> bool {
    let sbatch = Command::new("sbatch").arg("--version").output();
    if sbatch.is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "sbatch is missing under CI: .ci/run starts the cluster with scripts/slurm-cluster.sh"
        );
        eprintln!(
            "no sbatch here: start a cluster with scripts/slurm-cluster.sh to run this test \
             (the README's test command does)"
        );
        return false;
    }
    let sinfo = Command::new("sinfo").args(["-h", "-o", "%T"]).output();
    let up = sinfo.is_ok_and(|o| {
        text(&o.stdout)
            .lines()
            .any(|l| ["idle", "mixed", "allocated"].contains(&l.trim()))
    });
    assert!(
        up,
        "sbatch is here but no Slurm node is up: run scripts/slurm-cluster.sh"
    );
    true
}

/// The summary's rows without the columns that measure time.
fn numbers(dir: &Path) -> Vec<Value> {
    let rows: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let mut row = row.clone();
            row.as_object_mut().unwrap().remove("wall_s");
            row["metrics"].as_object_mut().unwrap().remove("elapsed_s");
            row
        })
        .collect()
}

#[test]
fn a_sweep_runs_as_a_slurm_job_array_and_matches_the_local_executor() {
    if !slurm_is_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (on_slurm, here, late) = (
        dir.path().join("slurm"),
        dir.path().join("local"),
        dir.path().join("late"),
    );
    // A run far longer than its minute: Slurm's time limit stops it.
    let late_run = toylens(&[
        "sweep",
        "--preset",
        "grokking-fast",
        "--epochs",
        "1000000",
        "--seeds",
        "0",
        "--executor",
        "slurm",
        "--time",
        "1",
        "--wait",
        "--out",
        late.to_str().unwrap(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // While it trains, Slurm says so (what the app's Sweep view shows per cell).
    let start = std::time::Instant::now();
    let running = loop {
        let queue = toylens::sweep::SweepFolder::open(&late)
            .ok()
            .and_then(|f| toylens::sweep::slurm::queued_tasks(&f).ok())
            .unwrap_or_default();
        if late.join("0").join("metrics.jsonl").exists() && !queue.is_empty() {
            break queue;
        }
        assert!(
            start.elapsed().as_secs() < 300,
            "the late run did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(
        running.into_iter().collect::<Vec<_>>(),
        [(0, "RUNNING".to_string())]
    );
    let grid = |out: &Path, executor: &str| {
        toylens(&[
            "sweep",
            "--preset",
            "fast",
            "--grid",
            "train.lr=0.01,0.03,0.1",
            "--seeds",
            "0..2",
            "--epochs",
            "2",
            "--executor",
            executor,
            "--json",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let o = grid(&on_slurm, "slurm").arg("--wait").output().unwrap();
    check(&o);
    assert!(
        text(&o.stdout).contains("submitted job"),
        "{}",
        text(&o.stdout)
    );
    let script = std::fs::read_to_string(on_slurm.join("sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --cpus-per-task=1"), "{script}");
    assert!(script.contains("--run-dir \"$RUN\""), "{script}");
    for i in 0..6 {
        let result: Value = serde_json::from_str(
            &std::fs::read_to_string(on_slurm.join(i.to_string()).join("result.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(result["status"], "done", "run {i}: {result}");
        assert_eq!(result["trained"], 2, "run {i}");
        // Slurm wrote each task's output beside its run.
        let outputs = std::fs::read_dir(on_slurm.join(i.to_string()))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("slurm-"))
            })
            .count();
        assert_eq!(outputs, 1, "run {i}");
    }
    check(&grid(&here, "local").output().unwrap());
    let (a, b) = (numbers(&on_slurm), numbers(&here));
    assert_eq!(a.len(), 6);
    assert_eq!(
        a, b,
        "the same seeds give the same numbers on Slurm and here"
    );
    // Status and collect read the finished array.
    let o = toylens(&["sweep", "status", on_slurm.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    check(&o);
    let status: Value = serde_json::from_str(&text(&o.stdout)).unwrap();
    assert_eq!(status["results"]["done"], 6, "{status}");
    let o = late_run.wait_with_output().unwrap();
    check(&o);
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(late.join("0").join("result.json")).unwrap())
            .unwrap();
    assert_eq!(result["status"], "timeout", "{result}");
    assert!(result["trained"].as_u64().unwrap() > 0, "{result}");
    assert!(late.join("0").join("checkpoint.safetensors").is_file());
}
