//! The superposition model's loss and gradients against PyTorch's, on fixed weights and
//! batches (`tests/fixtures/tms`), dense and sparse instances alike.

use toylens::superposition::data::Batch;
use toylens::superposition::{Output, TmsModel, TmsWeights, loss_and_grads};

fn fixture() -> safetensors::SafeTensors<'static> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tms/tms.safetensors"
    );
    let bytes: &'static [u8] = Box::leak(std::fs::read(path).unwrap().into_boxed_slice());
    safetensors::SafeTensors::deserialize(bytes).unwrap()
}

fn floats(file: &safetensors::SafeTensors, name: &str) -> Vec<f32> {
    let view = file.tensor(name).unwrap();
    view.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The largest difference between `got` and `want`, relative to `want`'s largest magnitude.
fn relative_error(got: &[f32], want: &[f32]) -> f64 {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12) as f64;
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() as f64)
        .fold(0.0, f64::max)
        / scale
}

struct Case {
    model: TmsModel,
    weights: TmsWeights,
    importance: Vec<f32>,
    batches: Vec<Batch>,
}

fn case(output: Output) -> Case {
    let file = fixture();
    let (i, n, m, rows) = (3, 8, 3, 32);
    let x = floats(&file, "x");
    // x is [batch, instance, feature]: each instance's [batch, feature] rows.
    let batches = (0..i)
        .map(|k| {
            let dense: Vec<f32> = (0..rows)
                .flat_map(|b| x[(b * i + k) * n..(b * i + k + 1) * n].to_vec())
                .collect();
            Batch::from_dense(&dense, n)
        })
        .collect();
    Case {
        model: TmsModel {
            kind: Default::default(),
            n_features: n,
            n_hidden: m,
            n_instances: i,
            output,
        },
        weights: TmsWeights {
            w: floats(&file, "W"),
            b: floats(&file, "b"),
        },
        importance: floats(&file, "importance").repeat(i),
        batches,
    }
}

#[test]
fn loss_and_gradients_equal_pytorchs() {
    let file = fixture();
    for (output, name) in [(Output::Relu, "relu"), (Output::Linear, "linear")] {
        let c = case(output);
        // Instances 0 and 1 dense (every feature, about a third), 2 sparse (one in twenty):
        // both kinds of products.
        assert!(matches!(c.batches[0], Batch::Dense { .. }));
        assert!(matches!(c.batches[1], Batch::Dense { .. }));
        assert!(matches!(c.batches[2], Batch::Sparse(_)));
        let g = loss_and_grads(&c.model, &c.weights, &c.importance, &c.batches);
        let loss: Vec<f32> = g.loss.iter().map(|&l| l as f32).collect();
        let checks = [
            (
                "loss",
                relative_error(&loss, &floats(&file, &format!("loss_{name}"))),
            ),
            (
                "dW",
                relative_error(&g.w, &floats(&file, &format!("grad_W_{name}"))),
            ),
            (
                "db",
                relative_error(&g.b, &floats(&file, &format!("grad_b_{name}"))),
            ),
        ];
        for (what, err) in checks {
            assert!(err < 1e-5, "{name} {what}: relative error {err:.2e}");
        }
        // A 1e-3 change in one weight is seen.
        let mut moved = c.weights.clone();
        moved.w[3 * 8 * 3 - 1] += 1e-3;
        let g = loss_and_grads(&c.model, &moved, &c.importance, &c.batches);
        assert!(
            relative_error(&g.w, &floats(&file, &format!("grad_W_{name}"))) > 1e-5,
            "{name}: a moved weight went unnoticed"
        );
    }
}

/// `toylens train --preset tms-intro --json`: one object per evaluation with the loss of every
/// instance and its D*, a checkpoint of W and b that reads back, and flags that do not apply
/// refused.
#[test]
fn the_cli_trains_a_preset_to_a_checkpoint() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("intro.safetensors");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--preset",
            "tms-intro",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_toylens"))
            .args(&args)
            .output()
            .unwrap()
    };
    let o = run(&["--steps", "300", "--eval-every", "100", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (k, m) in lines.iter().enumerate() {
        let mut keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "dims_per_feature",
                "elapsed_s",
                "loss",
                "loss_per_instance",
                "step"
            ]
        );
        assert_eq!(m["step"], 100 * (k + 1));
        assert_eq!(m["loss_per_instance"].as_array().unwrap().len(), 7);
        assert_eq!(m["dims_per_feature"].as_array().unwrap().len(), 7);
    }
    let loss = |m: &serde_json::Value| m["loss"].as_f64().unwrap();
    assert!(loss(&lines[2]) < loss(&lines[0]), "the loss falls");
    let ckpt = toylens::checkpoint::TmsCheckpoint::load(&out).unwrap();
    assert_eq!(ckpt.step, 300);
    assert_eq!(ckpt.weights.w.len(), 7 * 5 * 2);
    assert_eq!(ckpt.history.len(), 3);
    assert_eq!(ckpt.run.model.n_features, 5);
    for (flag, value) in [("--data", "x.jsonl"), ("--epochs", "3"), ("--p", "7")] {
        let o = run(&[flag, value]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("does not apply to a superposition run"),
            "{err}"
        );
    }
    let o = run(&["--lr", "-1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("lr must be positive"));
    // A diverging run says so and writes nothing.
    let diverging = dir.path().join("diverging.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_toylens"))
        .args([
            "train",
            "--preset",
            "tms-intro",
            "--lr",
            "1e30",
            "--steps",
            "50",
            "--out",
        ])
        .arg(&diverging)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("training diverged at step"),
        "{err}"
    );
    assert!(!diverging.exists());
    // A run config of this model (its model's kind "tms") trains the same way.
    let config = dir.path().join("tms.json");
    std::fs::write(
        &config,
        r#"{"seed": 2, "model": {"kind": "tms", "n_features": 6, "n_hidden": 2, "n_instances": 3},
            "task": {"feature_probability": {"log_spaced": [1.0, 0.1]}, "importance": {"decay": 0.8}},
            "train": {"steps": 40, "eval_every": 20}}"#,
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_toylens"))
        .args([
            "train",
            "--config",
            config.to_str().unwrap(),
            "--json",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    let ckpt = toylens::checkpoint::TmsCheckpoint::load(&out).unwrap();
    assert_eq!((ckpt.run.seed, ckpt.run.model.n_features), (2, 6));
    std::fs::write(
        &config,
        r#"{"model": {"kind": "tms", "n_features": 2, "n_hidden": 3, "n_instances": 1},
            "task": {"feature_probability": {"constant": 0.5}, "importance": {"decay": 1.0}}}"#,
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_toylens"))
        .args(["train", "--config", config.to_str().unwrap(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("must not exceed n_features"),
        "{err}"
    );
}
