//! Parity with PyTorch and TransformerLens: every field of every case in the shared fixture
//! (`tests/fixtures/skip_trigram_tl`, a copy of `../shared/fixtures/skip_trigram_tl`) must match
//! within 1e-5.

mod common;

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use common::flatten;
use serde_json::Value;
use toylens::analysis::inspect;
use toylens::checkpoint::Checkpoint;
use toylens::model::{ActivationCache, NdArray, Transformer, attn};

const TOL: f64 = 1e-5;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/skip_trigram_tl")
}

fn cases() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The fixture (TL's state dict of the notebook's model, which names no task) with the notebook's
/// task, as `--task skip-trigram` gives it.
fn load_fixture_model() -> (Checkpoint, Transformer) {
    let mut ckpt = Checkpoint::load(&fixture_dir().join("model.safetensors")).unwrap();
    assert!(!ckpt.config.task.has_data(), "a state dict names no task");
    ckpt.config.task = toylens::task::TaskConfig::SkipTrigram(Default::default());
    let model = Transformer::new(&ckpt.config.model, &ckpt.weights, &Device::Cpu).unwrap();
    (ckpt, model)
}

/// Max |expected − actual|, after checking the shapes agree (`actual` may carry TL's batch dim).
fn max_diff(name: &str, expected: &Value, actual_shape: &[usize], actual: &[f32]) -> f64 {
    let (shape, data) = flatten(expected);
    let actual_shape: Vec<usize> = match actual_shape {
        [1, rest @ ..] if rest.len() == shape.len() => rest.to_vec(),
        s => s.to_vec(),
    };
    assert_eq!(shape, actual_shape, "{name}: shape");
    data.iter()
        .zip(actual)
        .map(|(e, a)| (e - *a as f64).abs())
        .fold(0.0, f64::max)
}

fn hook<'a>(cache: &'a ActivationCache, name: &str) -> &'a NdArray {
    cache
        .get(name)
        .unwrap_or_else(|| panic!("cache has no {name}"))
}

/// Every field of one case; returns the largest difference seen and the field it was in.
fn compare_case(case: &Value, bias_logits: &Value, model: &Transformer) -> (f64, String) {
    let tokens: Vec<u32> = case["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    let cache = model.run_with_cache(&tokens).unwrap();
    let p = tokens.len();
    // TL keeps [batch, head, q, k] for patterns and scores; the fixture drops the batch.
    let pattern = hook(&cache, "blocks.0.attn.hook_pattern");
    let heads = pattern.shape[1];
    let decomposition = cache
        .decomposition
        .as_ref()
        .expect("one layer, no LayerNorm");
    // The fixture's unmasked scores, compared where TL keeps them (on and below the diagonal);
    // above it hook_attn_scores must be −inf, checked below.
    let masked = hook(&cache, "blocks.0.attn.hook_attn_scores");
    let (_, expected_unmasked) = flatten(&case["attn_scores_unmasked"]);
    let unmasked = NdArray {
        shape: masked.shape.clone(),
        data: masked
            .data
            .iter()
            .zip(&expected_unmasked)
            .map(|(&m, &e)| if m == f32::NEG_INFINITY { e as f32 } else { m })
            .collect(),
    };
    let fields: Vec<(&str, &Value, Vec<usize>, Vec<f32>)> = vec![
        (
            "logits",
            &case["logits"],
            cache.logits.shape.clone(),
            cache.logits.data.clone(),
        ),
        (
            "logits_last",
            &case["logits_last"],
            vec![cache.logits_last().len()],
            cache.logits_last().to_vec(),
        ),
        (
            "q",
            &case["q"],
            hook(&cache, "blocks.0.attn.hook_q").shape.clone(),
            hook(&cache, "blocks.0.attn.hook_q").data.clone(),
        ),
        (
            "k",
            &case["k"],
            hook(&cache, "blocks.0.attn.hook_k").shape.clone(),
            hook(&cache, "blocks.0.attn.hook_k").data.clone(),
        ),
        (
            "v",
            &case["v"],
            hook(&cache, "blocks.0.attn.hook_v").shape.clone(),
            hook(&cache, "blocks.0.attn.hook_v").data.clone(),
        ),
        (
            "attn_scores_unmasked",
            &case["attn_scores_unmasked"],
            unmasked.shape.clone(),
            unmasked.data.clone(),
        ),
        (
            "pattern",
            &case["pattern"],
            pattern.shape.clone(),
            pattern.data.clone(),
        ),
        (
            "z",
            &case["z"],
            hook(&cache, "blocks.0.attn.hook_z").shape.clone(),
            hook(&cache, "blocks.0.attn.hook_z").data.clone(),
        ),
        (
            "head_out",
            &case["head_out"],
            hook(&cache, "blocks.0.attn.hook_result").shape.clone(),
            hook(&cache, "blocks.0.attn.hook_result").data.clone(),
        ),
        (
            "head_out_last",
            &case["head_out_last"],
            decomposition.head_out_last.shape.clone(),
            decomposition.head_out_last.data.clone(),
        ),
        (
            "attn_out",
            &case["attn_out"],
            hook(&cache, "blocks.0.hook_attn_out").shape.clone(),
            hook(&cache, "blocks.0.hook_attn_out").data.clone(),
        ),
        (
            "head_logits_last",
            &case["head_logits_last"],
            decomposition.head_logits_last.shape.clone(),
            decomposition.head_logits_last.data.clone(),
        ),
        (
            "direct_logits_last",
            &case["direct_logits_last"],
            vec![decomposition.direct_logits_last.len()],
            decomposition.direct_logits_last.clone(),
        ),
        (
            "bias_logits",
            bias_logits,
            vec![decomposition.bias_logits.len()],
            decomposition.bias_logits.clone(),
        ),
    ];
    let mut worst = (0.0, String::new());
    for (name, expected, shape, data) in &fields {
        assert!(!expected.is_null(), "fixture case lacks {name}");
        let d = max_diff(name, expected, shape, data);
        if d > worst.0 || worst.1.is_empty() {
            worst = (d, name.to_string());
        }
    }
    assert_eq!(
        cache.predicted_token() as u64,
        case["predicted_token"].as_u64().unwrap(),
        "predicted token of {}",
        case["name"]
    );
    // TL's hook_attn_scores: −inf above the diagonal, where the pattern is 0.
    for h in 0..heads {
        for q in 0..p {
            for k in 0..p {
                let m = masked.at(&[0, h, q, k]);
                assert_eq!(m == f32::NEG_INFINITY, k > q, "score ({h}, {q}, {k}) = {m}");
                if k > q {
                    assert_eq!(pattern.at(&[0, h, q, k]), 0.0);
                }
            }
        }
    }
    // resid_post is the logits (W_U = I) and resid_pre the one-hot embedding.
    assert_eq!(
        hook(&cache, "blocks.0.hook_resid_post").data,
        cache.logits.data
    );
    let embed = hook(&cache, "hook_embed");
    assert_eq!(embed.shape, vec![1, p, 11]);
    assert_eq!(hook(&cache, "blocks.0.hook_resid_pre"), embed);
    for (i, &t) in tokens.iter().enumerate() {
        for v in 0..11 {
            assert_eq!(
                embed.at(&[0, i, v]),
                if v == t as usize { 1.0 } else { 0.0 }
            );
        }
    }
    worst
}

#[test]
fn every_case_matches_transformer_lens_within_1e_5() {
    let fixture = cases();
    let (ckpt, model) = load_fixture_model();
    assert!(!ckpt.has_metadata, "the fixture is a bare TL state dict");
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 21);
    let mut overall: f64 = 0.0;
    for case in cases {
        let (worst, field) = compare_case(case, &fixture["bias_logits"], &model);
        assert!(
            worst <= TOL,
            "case {}: {field} differs by {worst:e}",
            case["name"]
        );
        overall = overall.max(worst);
    }
    eprintln!("max abs difference over all cases and fields: {overall:e}");
}

#[test]
fn a_perturbed_model_fails_the_comparison() {
    // Negative control: the comparison must be able to fail.
    let fixture = cases();
    let (ckpt, _) = load_fixture_model();
    let mut weights = ckpt.weights.clone();
    weights.get_mut(&attn(0, "W_V")).unwrap()[5] += 1e-3;
    let model = Transformer::new(&ckpt.config.model, &weights, &Device::Cpu).unwrap();
    let worst = fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| compare_case(c, &fixture["bias_logits"], &model).0)
        .fold(0.0, f64::max);
    assert!(
        worst > TOL,
        "a 1e-3 change in W_V went unnoticed ({worst:e})"
    );
}

#[test]
fn logit_decomposition_adds_up_on_every_case() {
    let fixture = cases();
    let (ckpt, model) = load_fixture_model();
    for case in fixture["cases"].as_array().unwrap() {
        let tokens: Vec<u32> = serde_json::from_value(case["tokens"].clone()).unwrap();
        let r = inspect(&model, &ckpt.config.task, &tokens).unwrap();
        assert!(r.decomposition_error().unwrap() <= 1e-5, "{}", case["name"]);
        let expected = case["label"].as_u64().map(|l| l as u32);
        if tokens.len() == 4 {
            assert_eq!(r.expected, expected, "{}", case["name"]);
        }
    }
}

#[test]
fn fast_paths_give_the_fixture_logits() {
    let fixture = cases();
    let (_, model) = load_fixture_model();
    for case in fixture["cases"].as_array().unwrap() {
        let tokens: Vec<u32> = serde_json::from_value(case["tokens"].clone()).unwrap();
        let (_, expected) = flatten(&case["logits_last"]);
        let input = Tensor::from_slice(&tokens, (1, tokens.len()), &Device::Cpu).unwrap();
        let last = model.forward_last(&input).unwrap();
        let mut counts = vec![f32::NEG_INFINITY; 11];
        for &t in &tokens {
            counts[t as usize] = if counts[t as usize].is_finite() {
                (counts[t as usize].exp() + 1.0).ln()
            } else {
                0.0
            };
        }
        let multiset = model
            .forward_multiset(
                &Tensor::from_slice(&tokens[tokens.len() - 1..], 1, &Device::Cpu).unwrap(),
                &Tensor::from_slice(&counts, (1, 11), &Device::Cpu).unwrap(),
            )
            .unwrap();
        for got in [last, multiset] {
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let d = expected
                .iter()
                .zip(&got)
                .map(|(e, g)| (e - *g as f64).abs())
                .fold(0.0, f64::max);
            assert!(d <= TOL, "{}: {d:e}", case["name"]);
        }
    }
}

#[test]
fn fixture_weights_have_tl_names_and_shapes() {
    let (ckpt, model) = load_fixture_model();
    let cfg = &ckpt.config.model;
    assert_eq!(
        (cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_vocab),
        (3, 11, 1, 11)
    );
    assert_eq!(model.param("blocks.0.attn.W_Q").dims(), &[3, 11, 1]);
    assert_eq!(model.param("blocks.0.attn.W_O").dims(), &[3, 1, 11]);
    assert_eq!(model.param("blocks.0.attn.b_Q").dims(), &[3, 1]);
    assert_eq!(model.param("blocks.0.attn.b_O").dims(), &[11]);
    // Opened as toylens's one-hot model: the fast paths apply.
    assert!(cfg.is_one_layer_token_table(), "{}", ckpt.origin);
}
