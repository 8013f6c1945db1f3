//! PyTorch state dicts: a real TransformerLens model saved with `torch.save(model.state_dict())`
//! (tests/fixtures/tl_pth, written by scripts/make-pth-fixture.py) opens with the same weights and
//! TransformerLens's numbers; wrapped and float16 files open too; legacy files and pickled
//! objects are refused with a message.

mod common;

use common::toylens;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use toylens::checkpoint::Checkpoint;
use toylens::model::Transformer;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tl_pth")
        .join(name)
}

/// The same model from TL's safetensors file, which every other test checks against TL.
fn safetensors_copy() -> Checkpoint {
    let (ckpt, _) = common::tl::load("mlp2_ln_gelu");
    ckpt
}

#[test]
fn a_state_dict_opens_with_the_weights_and_numbers_of_its_safetensors_copy() {
    let reference = safetensors_copy();
    for file in ["model.pth", "wrapped.pth"] {
        let ckpt = Checkpoint::load(&fixture(file)).unwrap();
        assert_eq!(ckpt.config.model, reference.config.model, "{file}");
        assert_eq!(ckpt.weights, reference.weights, "{file}: the same bits");
        assert!(!ckpt.has_metadata);
        assert!(
            ckpt.origin.starts_with("PyTorch state dict, config from"),
            "{}",
            ckpt.origin
        );
        // Checked against TransformerLens's own activations, every case and hook.
        let model = Transformer::new(&ckpt.config.model, &ckpt.weights, &Device::Cpu).unwrap();
        let (worst, at, _) = common::tl::compare("mlp2_ln_gelu", &model);
        assert!(
            worst <= 1.0,
            "{file}: {at} is {worst:.2}× the tolerance off"
        );
    }
}

#[test]
fn half_precision_tensors_are_widened_and_the_origin_says_so() {
    let ckpt = Checkpoint::load(&fixture("half.pth")).unwrap();
    assert!(
        ckpt.origin
            .contains("38 tensors converted from F16 to float32"),
        "{}",
        ckpt.origin
    );
    // Each weight is its float32 value rounded to float16 and back.
    let reference = safetensors_copy();
    for (name, values) in reference.weights.iter() {
        let rounded = Tensor::new(values, &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F16))
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .unwrap();
        assert_eq!(ckpt.weights.get(name), rounded.as_slice(), "{name}");
    }
}

#[test]
fn legacy_files_pickled_objects_and_strangers_are_refused() {
    let message = |path: &Path| Checkpoint::load(path).unwrap_err().to_string();
    assert!(message(&fixture("legacy.pth")).contains("legacy (pre-1.6) format"));
    assert!(message(&fixture("object.pth")).contains("not a state dict"));
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.pth");
    std::fs::write(&text, "not a zip archive").unwrap();
    assert!(message(&text).contains("not one torch.save writes"));
    // A zip that is not PyTorch's.
    let zip = dir.path().join("other.pt");
    std::fs::write(&zip, b"PK\x03\x04 truncated").unwrap();
    assert!(message(&zip).contains("not a PyTorch state dict toylens can read"));
}

#[test]
fn without_a_config_it_says_how_to_give_one_and_takes_tl_config() {
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("model.pth");
    std::fs::copy(fixture("model.pth"), &alone).unwrap();
    let o = toylens(&["inspect", alone.to_str().unwrap(), "1", "2", "3"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--tl-config"), "{err}");
    let config = fixture("config.json");
    let o = toylens(&[
        "inspect",
        alone.to_str().unwrap(),
        "1",
        "2",
        "3",
        "--tl-config",
        config.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Nothing of the reader's own goes to stderr (candle's reader prints every skipped tensor).
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let from_pth: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let safetensors = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tl_general/mlp2_ln_gelu/model.safetensors");
    let o = toylens(&[
        "inspect",
        safetensors.to_str().unwrap(),
        "1",
        "2",
        "3",
        "--json",
    ]);
    let from_safetensors: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(from_pth["logits"], from_safetensors["logits"]);
}
