//! The SAE's losses and gradients against PyTorch's autograd on fixed weights and activations
//! (`tests/fixtures/sae`, written by `scripts/make-sae-fixture.py`): the standard architecture
//! with its decoder-norm-weighted L1, and TopK with its auxiliary loss over dead latents.

use toylens::sae::{Architecture, SaeWeights};

fn floats(file: &safetensors::SafeTensors, name: &str) -> Vec<f32> {
    file.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The largest difference relative to `want`'s largest magnitude.
fn relative_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1e-12f32, |m, v| m.max(v.abs())) as f64;
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() as f64)
        .fold(0.0, f64::max)
        / scale
}

#[test]
fn losses_and_gradients_equal_pytorchs() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sae/sae.safetensors"
    ))
    .unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (rows, d, s) = (16, 6, 10);
    let weights = SaeWeights {
        d_in: d,
        d_sae: s,
        w_enc: floats(&file, "W_enc"),
        b_enc: floats(&file, "b_enc"),
        w_dec: floats(&file, "W_dec"),
        b_dec: floats(&file, "b_dec"),
    };
    let x = floats(&file, "x");
    let dead: Vec<bool> = floats(&file, "dead").iter().map(|&v| v > 0.5).collect();
    let cases = [
        (
            "standard",
            Architecture::Standard {
                l1_coefficient: 0.3,
            },
            "l1",
        ),
        (
            "topk",
            Architecture::TopK {
                k: 3,
                aux_coefficient: 1.0,
            },
            "aux",
        ),
    ];
    for (name, architecture, penalty) in cases {
        let check = |weights: &SaeWeights| {
            let (out, g) = weights.loss_and_grads(&x, rows, architecture, &dead);
            let mse = floats(&file, &format!("{name}_mse"))[0] as f64;
            let pen = floats(&file, &format!("{name}_{penalty}"))[0] as f64;
            let mut worst: Vec<(String, f64)> = vec![
                ("mse".into(), (out.mse - mse).abs() / mse.abs()),
                (
                    penalty.into(),
                    (out.penalty - pen).abs() / pen.abs().max(1e-12),
                ),
            ];
            for (tensor, got) in [
                ("W_enc", &g.w_enc),
                ("b_enc", &g.b_enc),
                ("W_dec", &g.w_dec),
                ("b_dec", &g.b_dec),
            ] {
                let want = floats(&file, &format!("{name}_grad_{tensor}"));
                worst.push((format!("grad {tensor}"), relative_error(got, &want)));
            }
            worst
        };
        for (what, err) in check(&weights) {
            assert!(err < 1e-5, "{name} {what}: relative error {err:.2e}");
        }
        // The penalty is not zero in the fixture: both terms are exercised.
        assert!(floats(&file, &format!("{name}_{penalty}"))[0] > 1e-3);
        // A 1e-3 change in one weight is seen.
        let mut moved = weights.clone();
        moved.w_enc[5] += 1e-3;
        assert!(
            check(&moved).iter().any(|(_, err)| *err > 1e-5),
            "{name}: a moved weight went unnoticed"
        );
    }
}

fn toylens(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_toylens"))
        .args(args)
        .output()
        .unwrap()
}

/// A small superposition model (12 features into 4, sparse), trained by the CLI.
fn tms_model(dir: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("tms.json");
    std::fs::write(
        &config,
        r#"{"model": {"kind": "tms", "n_features": 12, "n_hidden": 4, "n_instances": 2},
            "task": {"feature_probability": {"constant": 0.05}, "importance": {"decay": 1.0}},
            "train": {"steps": 2000, "batch_size": 256, "eval_every": 2000}}"#,
    )
    .unwrap();
    let model = dir.join("tms.safetensors");
    let o = toylens(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    model
}

/// `toylens sae train` on a superposition model's hidden layer: JSON lines with the issue's
/// keys, a folder SAELens reads (`cfg.json`, `sae_weights.safetensors`) that toylens opens
/// again, `sae eval` on it, and bad requests refused with a message, writing nothing.
#[test]
fn the_cli_trains_an_sae_on_a_superposition_model_and_reads_it_back() {
    use toylens::checkpoint::SaeCheckpoint;
    let dir = tempfile::tempdir().unwrap();
    let model = tms_model(dir.path());
    let model = model.to_str().unwrap();
    let out = dir.path().join("sae");
    let o = toylens(&[
        "sae",
        "train",
        model,
        "--hook",
        "hook_hidden.1",
        "--d-sae",
        "24",
        "--l1",
        "0.05",
        "--steps",
        "400",
        "--batch",
        "512",
        "--eval-every",
        "200",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for key in [
        "step",
        "mse",
        "explained_variance",
        "l0",
        "dead",
        "mmcs",
        "elapsed_s",
    ] {
        assert!(lines[1].get(key).is_some(), "no {key} in {}", lines[1]);
    }
    let ev = lines[1]["explained_variance"].as_f64().unwrap();
    assert!(ev > 0.5 && ev <= 1.0, "explained variance {ev}");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("cfg.json")).unwrap()).unwrap();
    assert_eq!(cfg["architecture"], "standard");
    assert_eq!(
        (cfg["d_in"].as_u64(), cfg["d_sae"].as_u64()),
        (Some(4), Some(24))
    );
    assert_eq!(cfg["metadata"]["hook_name"], "hook_hidden.1");
    let sae = SaeCheckpoint::load(&out).unwrap();
    assert_eq!(sae.weights.w_enc.len(), 4 * 24);
    assert_eq!(sae.history.len(), 2);
    let o = toylens(&["sae", "eval", out.to_str().unwrap(), model, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let eval: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!((eval["explained_variance"].as_f64().unwrap() - ev).abs() < 0.1);

    // Each latent's summary: density, largest activation, nearest true feature, top inputs
    // (most active first, each with the input's active features).
    let o = toylens(&[
        "sae",
        "features",
        out.to_str().unwrap(),
        model,
        "--top",
        "4",
        "--inputs",
        "4096",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let features: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let list = features["features"].as_array().unwrap();
    assert_eq!(list.len(), 24);
    for f in list {
        let density = f["density"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&density));
        let top = f["top"].as_array().unwrap();
        assert!(top.len() <= 4 && (density == 0.0) == top.is_empty());
        let acts: Vec<f64> = top
            .iter()
            .map(|t| t["activation"].as_f64().unwrap())
            .collect();
        assert!(acts.windows(2).all(|w| w[0] >= w[1]), "{acts:?}");
        if let Some(first) = acts.first() {
            assert_eq!(*first, f["max_activation"].as_f64().unwrap());
            assert!(!top[0]["features"].as_array().unwrap().is_empty());
        }
        let (feature, cosine) = (
            &f["true_feature"][0],
            f["true_feature"][1].as_f64().unwrap(),
        );
        assert!(feature.as_u64().unwrap() < 12 && (-1.0..=1.0001).contains(&cosine));
    }

    // TopK: each input's latents at most k.
    let topk = dir.path().join("topk");
    let o = toylens(&[
        "sae",
        "train",
        model,
        "--d-sae",
        "24",
        "--topk",
        "3",
        "--steps",
        "200",
        "--batch",
        "256",
        "--eval-every",
        "200",
        "--json",
        "--out",
        topk.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(line["l0"].as_f64().unwrap() <= 3.0);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(topk.join("cfg.json")).unwrap()).unwrap();
    assert_eq!(
        (cfg["architecture"].as_str(), cfg["k"].as_u64()),
        (Some("topk"), Some(3))
    );

    // Refused, with the reason, and nothing written.
    let nowhere = dir.path().join("nowhere");
    let refused = |args: &[&str], says: &str| {
        let mut all = args.to_vec();
        all.extend(["--steps", "5", "--out", nowhere.to_str().unwrap()]);
        let o = toylens(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{args:?}: {err}");
        assert!(!nowhere.exists(), "{args:?} wrote {}", nowhere.display());
    };
    refused(
        &["sae", "train", model, "--hook", "hook_hidden.2"],
        "hook_hidden.0 to hook_hidden.1",
    );
    refused(
        &["sae", "train", model, "--hook", "blocks.0.hook_resid_post"],
        "not \"blocks.0",
    );
    refused(
        &["sae", "train", model, "--topk", "30", "--d-sae", "24"],
        "k must be between 1 and 24",
    );
    refused(
        &["sae", "train", model, "--d-sae", "0"],
        "d_sae must be between",
    );
    refused(&["sae", "train", model, "--lr=-1"], "lr must be positive");
    let cfg_path = dir.path().join("tms.json");
    refused(
        &["sae", "train", cfg_path.to_str().unwrap()],
        "as a model (a transformer or superposition checkpoint)",
    );
    // A folder of other files is not overwritten.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let o = toylens(&[
        "sae",
        "train",
        model,
        "--steps",
        "5",
        "--out",
        other.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("holds other files")
    );
    assert!(!other.join("cfg.json").exists());
}

/// SAEs that do not fit are errors that say why: a d_in that is not the hook's, a malformed
/// cfg.json, NaN weights, an architecture toylens does not run.
#[test]
fn a_bad_sae_folder_is_a_clear_error() {
    use toylens::checkpoint::SaeCheckpoint;
    use toylens::sae::SaeWeights;
    let dir = tempfile::tempdir().unwrap();
    let model = tms_model(dir.path());
    let good = dir.path().join("good");
    SaeCheckpoint {
        architecture: Architecture::Standard {
            l1_coefficient: 0.1,
        },
        weights: SaeWeights::init(5, 8, 0.1, 1),
        hook_name: "hook_hidden.0".into(),
        model_name: "m".into(),
        run: None,
        history: Vec::new(),
        positions: None,
    }
    .save(&good)
    .unwrap();
    let o = toylens(&[
        "sae",
        "eval",
        good.to_str().unwrap(),
        model.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("reads 5 values (d_in)"),
        "{err}"
    );
    let edit = |name: &str, file: &str, change: &dyn Fn(&mut Vec<u8>)| {
        let bad = dir.path().join(name);
        std::fs::create_dir_all(&bad).unwrap();
        for f in ["cfg.json", "sae_weights.safetensors"] {
            let mut bytes = std::fs::read(good.join(f)).unwrap();
            if f == file {
                change(&mut bytes);
            }
            std::fs::write(bad.join(f), bytes).unwrap();
        }
        SaeCheckpoint::load(&bad).unwrap_err().to_string()
    };
    let err = edit("truncated", "cfg.json", &|b| b.truncate(10));
    assert!(err.contains("not valid JSON"), "{err}");
    let err = edit("jumprelu", "cfg.json", &|b| {
        *b = String::from_utf8_lossy(b)
            .replace("\"standard\"", "\"jumprelu\"")
            .into_bytes()
    });
    assert!(err.contains("\"jumprelu\" are not supported"), "{err}");
    let err = edit("nan", "sae_weights.safetensors", &|b| {
        let at = b.len() - 4;
        b[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    assert!(err.contains("non-finite"), "{err}");
    let err = edit("wide", "cfg.json", &|b| {
        *b = String::from_utf8_lossy(b)
            .replace("\"d_in\": 5", "\"d_in\": 6")
            .into_bytes()
    });
    assert!(err.contains("shape"), "{err}");
}
