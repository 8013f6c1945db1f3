//! Checkpoints: round trips, TransformerLens layout, and malformed files that must fail cleanly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use rand::{Rng, SeedableRng};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use toylens::checkpoint::{Checkpoint, CheckpointError, Snapshot};
use toylens::model::{ModelConfig, Transformer, Weights};
use toylens::train::{Preset, RunConfig, Trainer};

fn fixture_bytes() -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/skip_trigram_tl/model.safetensors"),
    )
    .unwrap()
}

fn trained_checkpoint() -> Checkpoint {
    let mut cfg = RunConfig::from_preset(Preset::Fast);
    cfg.seed = 9;
    cfg.task.skip_trigram_mut().unwrap().train_size = 10_000;
    cfg.train.batch_size = 5_000;
    cfg.train.epochs = 3;
    let mut trainer = Trainer::new(cfg.clone(), &Device::Cpu).unwrap();
    let mut ckpt = Checkpoint::new(cfg, trainer.weights().unwrap());
    ckpt.snapshots.push(Snapshot {
        epoch: 0,
        weights: trainer.weights().unwrap(),
    });
    while !trainer.is_finished() {
        if let Some(m) = trainer.step().unwrap().evaluation {
            ckpt.snapshots.push(Snapshot {
                epoch: m.progress(),
                weights: trainer.weights().unwrap(),
            });
            ckpt.history.push(m);
        }
    }
    ckpt.weights = trainer.weights().unwrap();
    ckpt.epoch = 3;
    ckpt
}

#[test]
fn save_and_load_round_trip_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.safetensors");
    let ckpt = trained_checkpoint();
    ckpt.save(&path).unwrap();
    let loaded = Checkpoint::load(&path).unwrap();
    assert_eq!(loaded, ckpt);
    assert_eq!(loaded.snapshots.len(), 4);
    assert_eq!(loaded.history.len(), 3);
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("run.safetensors")]);
}

#[test]
fn file_uses_transformer_lens_names_and_shapes() {
    let bytes = trained_checkpoint().to_bytes().unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let shapes: HashMap<String, Vec<usize>> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec()))
        .collect();
    let expect = [
        ("embed.W_E", vec![11, 11]),
        ("pos_embed.W_pos", vec![4, 11]),
        ("blocks.0.attn.W_Q", vec![3, 11, 1]),
        ("blocks.0.attn.W_K", vec![3, 11, 1]),
        ("blocks.0.attn.W_V", vec![3, 11, 1]),
        ("blocks.0.attn.W_O", vec![3, 1, 11]),
        ("blocks.0.attn.b_Q", vec![3, 1]),
        ("blocks.0.attn.b_K", vec![3, 1]),
        ("blocks.0.attn.b_V", vec![3, 1]),
        ("blocks.0.attn.b_O", vec![11]),
        ("unembed.W_U", vec![11, 11]),
        ("unembed.b_U", vec![11]),
        // TL 3's buffers, so that a strict load_state_dict finds every key.
        ("blocks.0.attn.mask", vec![0, 0]),
        ("blocks.0.attn.IGNORE", vec![]),
    ];
    assert_eq!(shapes.len(), expect.len());
    for (name, shape) in expect {
        assert_eq!(shapes[name], shape, "{name}");
    }
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().as_ref().unwrap();
    assert_eq!(meta["format"], "toylens");
    let config: serde_json::Value = serde_json::from_str(&meta["config"]).unwrap();
    assert_eq!(config["model"]["n_heads"], 3);
    let history: serde_json::Value = serde_json::from_str(&meta["history"]).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 3);
}

#[test]
fn a_bare_transformer_lens_state_dict_loads_with_an_inferred_config() {
    let ckpt = Checkpoint::from_bytes(&fixture_bytes()).unwrap();
    assert!(!ckpt.has_metadata);
    assert_eq!(ckpt.config.model, ModelConfig::default());
    assert!(ckpt.history.is_empty());
}

/// A safetensors file from named tensors (F32 unless given) and optional metadata.
fn file_with(
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    meta: Option<HashMap<String, String>>,
) -> Vec<u8> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, meta).unwrap()
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn weight_tensors(cfg: &ModelConfig, w: &Weights) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    cfg.params()
        .into_iter()
        .map(|p| {
            let bytes = f32s(w.get(&p.name));
            (p.name, Dtype::F32, p.shape, bytes)
        })
        .collect()
}

/// The metadata of a toylens checkpoint of the default run, for hand-built files.
fn toylens_meta() -> HashMap<String, String> {
    HashMap::from([
        ("format".to_string(), "toylens".to_string()),
        ("format_version".to_string(), "2".to_string()),
        (
            "config".to_string(),
            serde_json::to_string(&RunConfig::default()).unwrap(),
        ),
    ])
}

fn expect_invalid(bytes: &[u8], needle: &str) {
    match Checkpoint::from_bytes(bytes) {
        Ok(_) => panic!("accepted a file that should fail with \"{needle}\""),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "message \"{msg}\" lacks \"{needle}\"");
        }
    }
}

#[test]
fn malformed_files_give_clear_errors() {
    let cfg = ModelConfig::default();
    let w = Weights::init(&cfg, 1);

    // Wrong shape.
    let mut t = weight_tensors(&cfg, &w);
    t[0] = (
        "blocks.0.attn.W_Q".into(),
        Dtype::F32,
        vec![3, 11, 2],
        f32s(&[0.1; 66]),
    );
    expect_invalid(&file_with(t, None), "shape");

    // NaN and infinite weights.
    for bad in [f32::NAN, f32::INFINITY] {
        let mut nan = w.clone();
        nan.get_mut("blocks.0.attn.W_V").unwrap()[4] = bad;
        expect_invalid(&file_with(weight_tensors(&cfg, &nan), None), "non-finite");
    }

    // Wrong dtype.
    let mut t = weight_tensors(&cfg, &w);
    t[7] = (
        "blocks.0.attn.b_O".into(),
        Dtype::F64,
        vec![11],
        vec![0u8; 88],
    );
    expect_invalid(&file_with(t, None), "dtype");

    // Missing and unexpected tensors.
    let mut t = weight_tensors(&cfg, &w);
    t.pop();
    expect_invalid(&file_with(t, None), "missing tensor \"blocks.0.attn.b_O\"");
    let mut t = weight_tensors(&cfg, &w);
    t.push((
        "blocks.1.attn.W_Q".into(),
        Dtype::F32,
        vec![1],
        f32s(&[0.0]),
    ));
    // With no config, a tensor beyond the one-layer model's means the shapes cannot say what
    // the model is; with a toylens config, it is simply unexpected.
    expect_invalid(&file_with(t.clone(), None), "no config");
    let meta = toylens_meta();
    expect_invalid(
        &file_with(t, Some(meta)),
        "unexpected tensor \"blocks.1.attn.W_Q\"",
    );

    // An embedding that is not one-hot.
    let mut t = weight_tensors(&cfg, &w);
    t.push((
        "embed.W_E".into(),
        Dtype::F32,
        vec![11, 11],
        f32s(&[0.5; 121]),
    ));
    expect_invalid(&file_with(t.clone(), None), "embed.W_E is learned");
    let meta = toylens_meta();
    expect_invalid(
        &file_with(t, Some(meta)),
        "embed.W_E does not hold the fixed values",
    );

    // Metadata that is not JSON, or has the wrong types.
    let meta = |config: &str| {
        Some(HashMap::from([
            ("format".to_string(), "toylens".to_string()),
            ("format_version".to_string(), "1".to_string()),
            ("config".to_string(), config.to_string()),
        ]))
    };
    expect_invalid(
        &file_with(weight_tensors(&cfg, &w), meta("{not json")),
        "metadata config",
    );
    expect_invalid(
        &file_with(weight_tensors(&cfg, &w), meta(r#"{"seed": "zero"}"#)),
        "metadata config",
    );
    // Config and tensors disagree.
    expect_invalid(
        &file_with(
            weight_tensors(&cfg, &w),
            meta(r#"{"model": {"n_heads": 2}}"#),
        ),
        "shape",
    );
    let mut m = meta("{}").unwrap();
    m.insert("history".into(), "[1, 2]".into());
    expect_invalid(
        &file_with(weight_tensors(&cfg, &w), Some(m)),
        "metadata \"history\" is malformed",
    );

    // Not safetensors at all.
    expect_invalid(b"", "not a valid safetensors file");
    expect_invalid(b"hello, world", "not a valid safetensors file");
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    expect_invalid(&huge, "not a valid safetensors file");
}

#[test]
fn every_truncation_and_random_corruption_is_an_error_not_a_panic() {
    let good = trained_checkpoint().to_bytes().unwrap();
    for len in 0..good.len() {
        assert!(
            Checkpoint::from_bytes(&good[..len]).is_err(),
            "truncated to {len}"
        );
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for _ in 0..2_000 {
        let mut bytes = good.clone();
        for _ in 0..rng.random_range(1..8) {
            let i = rng.random_range(0..bytes.len());
            bytes[i] ^= 1 << rng.random_range(0..8);
        }
        // A flip inside a weight can leave a valid file; anything else must be an error. What
        // loads is a whole model: it builds and runs.
        if let Ok(ckpt) = Checkpoint::from_bytes(&bytes) {
            let model = Transformer::new(&ckpt.config.model, &ckpt.weights, &Device::Cpu)
                .expect("a checkpoint that loads builds its model");
            let tokens: Vec<u32> = (0..ckpt.config.model.n_ctx as u32)
                .map(|t| t % ckpt.config.model.d_vocab as u32)
                .collect();
            model.run_with_cache(&tokens).expect("and runs it");
        }
        let random: Vec<u8> = (0..rng.random_range(0..600))
            .map(|_| rng.random())
            .collect();
        assert!(Checkpoint::from_bytes(&random).is_err());
    }
}

#[test]
fn load_errors_name_the_file() {
    let missing = Path::new("/nonexistent/dir/model.safetensors");
    let err = Checkpoint::load(missing).unwrap_err();
    assert!(matches!(err, CheckpointError::Read { .. }));
    assert!(
        err.to_string()
            .contains("/nonexistent/dir/model.safetensors")
    );
}

#[test]
fn a_failed_save_leaves_the_old_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keep.safetensors");
    let ckpt = trained_checkpoint();
    ckpt.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    // Saving into a directory that does not exist fails cleanly.
    let err = ckpt
        .save(&dir.path().join("no/such/dir/x.safetensors"))
        .unwrap_err();
    assert!(err.to_string().contains("cannot write"), "{err}");
    // Saving weights that do not fit the config is refused before anything is written.
    let mut bad = ckpt.clone();
    bad.weights.get_mut("blocks.0.attn.b_O").unwrap().pop();
    assert!(bad.save(&path).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // Saving over a path that is a directory fails, and leaves no temporary file.
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    assert!(ckpt.save(&sub).is_err());
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn format_1_checkpoints_still_open_and_save_as_today_s_format() {
    // The bundled run was saved by toylens before general models (format 1: its own model
    // fields, short snapshot names).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fast-seed0.safetensors");
    let old = Checkpoint::load(&path).unwrap();
    assert!(old.origin.contains("format 1"), "{}", old.origin);
    assert_eq!(old.config.model, ModelConfig::default());
    assert!(old.config.model.is_one_layer_token_table());
    assert!(old.snapshots.len() > 10 && old.history.len() == old.epoch);
    for s in &old.snapshots {
        s.weights.validate(&old.config.model).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let new_path = dir.path().join("v2.safetensors");
    old.save(&new_path).unwrap();
    let bytes = std::fs::read(&new_path).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().as_ref().unwrap();
    assert_eq!(meta["format_version"], "3");
    // Format 3 writes snapshot weights as base64 of their f32 bytes; format 2's numbers still
    // read, to the same values.
    let back = Checkpoint::load(&new_path).unwrap();
    assert_eq!(back.snapshots, old.snapshots);
    let numbers: toylens::checkpoint::Snapshot =
        serde_json::from_str(r#"{"epoch": 3, "weights": {"w": [1.5, -0.25, 3e-8]}}"#).unwrap();
    let text = serde_json::to_string(&numbers).unwrap();
    assert!(!text.contains("1.5"), "{text}");
    let packed: toylens::checkpoint::Snapshot = serde_json::from_str(&text).unwrap();
    assert_eq!(packed, numbers);
    assert_eq!(packed.weights.get("w"), &[1.5, -0.25, 3e-8]);
    let tl: serde_json::Value = serde_json::from_str(&meta["tl_config"]).unwrap();
    assert_eq!(tl["attn_only"], true);
    assert_eq!(tl["positional_embedding_type"], "standard");
    let mut again = Checkpoint::load(&new_path).unwrap();
    again.origin = old.origin.clone();
    assert_eq!(again, old);
}
