//! SAEs on a transformer's hooks: the activations they read are the hook's values, and the CE
//! loss recovered follows its definition (1 for a lossless SAE, 0 for one that outputs zeros,
//! the clean loss the task's own cross-entropy).

mod common;

use std::sync::Arc;

use candle_core::{Device, Tensor};
use common::{assert_clean_failure, stdout, toylens};
use toylens::config::{ActFn, Embeddings, ModelConfig, Positions as ModelPositions};
use toylens::model::{Capture, Transformer, Weights};
use toylens::sae::{Activations, Architecture, Origin, Positions, SaeWeights, TransformerHook};
use toylens::task::{ModularAdditionConfig, TaskConfig};

const P: usize = 7;

/// A random 1-layer MLP model on modular addition mod 7.
fn modular_model() -> (Arc<Transformer>, TaskConfig) {
    let cfg = ModelConfig {
        n_layers: 1,
        d_model: 16,
        n_heads: 2,
        d_head: 8,
        d_vocab: P + 1,
        d_vocab_out: Some(P),
        n_ctx: 3,
        attn_only: false,
        d_mlp: Some(24),
        act_fn: Some(ActFn::Relu),
        normalization_type: None,
        positional_embedding_type: ModelPositions::Standard,
        embeddings: Embeddings::Learned,
        init_range: Some(0.4),
        ..ModelConfig::default()
    };
    let model = Transformer::new(&cfg, &Weights::init(&cfg, 11), &Device::Cpu).unwrap();
    let task = TaskConfig::ModularAddition(ModularAdditionConfig {
        p: P,
        ..Default::default()
    });
    (Arc::new(model), task)
}

/// `[I, −I]` and back: `ReLU(x) − ReLU(−x) = x`, so it reconstructs every input exactly.
fn lossless(d: usize) -> SaeWeights {
    let s = 2 * d;
    let mut w = SaeWeights::init(d, s, 1.0, 0);
    w.w_enc = vec![0.0; d * s];
    w.w_dec = vec![0.0; s * d];
    for i in 0..d {
        w.w_enc[i * s + i] = 1.0;
        w.w_enc[i * s + d + i] = -1.0;
        w.w_dec[i * d + i] = 1.0;
        w.w_dec[(d + i) * d + i] = -1.0;
    }
    w.b_enc = vec![0.0; s];
    w.b_dec = vec![0.0; d];
    w
}

#[test]
fn ce_loss_recovered_is_one_for_a_lossless_sae_and_zero_for_zeros() {
    let (model, task) = modular_model();
    let standard = Architecture::Standard {
        l1_coefficient: 0.0,
    };
    // The clean loss is the task's: cross-entropy at the `=` of every pair, against (a + b) mod p.
    let tokens: Vec<u32> = (0..P * P)
        .flat_map(|i| [(i / P) as u32, (i % P) as u32, P as u32])
        .collect();
    let input = Tensor::from_vec(tokens, (P * P, 3), &Device::Cpu).unwrap();
    let logits = model.forward(&input).unwrap().to_vec3::<f32>().unwrap();
    let mut clean = 0.0;
    for (i, seq) in logits.iter().enumerate() {
        let last = &seq[2];
        let max = last.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max
            + last
                .iter()
                .map(|&v| (v as f64 - max).exp())
                .sum::<f64>()
                .ln();
        clean += lse - last[(i / P + i % P) % P] as f64;
    }
    clean /= (P * P) as f64;
    for (hook, d) in [
        ("blocks.0.mlp.hook_post", 24),
        ("blocks.0.attn.hook_z", 16),
        ("blocks.0.hook_resid_mid", 16),
        ("blocks.0.hook_resid_post", 16),
    ] {
        let mut source =
            TransformerHook::new(model.clone(), task.clone(), hook, Positions::Last).unwrap();
        assert_eq!(source.d_in(), d, "{hook}");
        let ce = source.ce_losses(&lossless(d), standard).unwrap();
        assert!(
            (ce.clean - clean).abs() < 1e-5,
            "{hook}: {} vs {clean}",
            ce.clean
        );
        assert!((ce.spliced - ce.clean).abs() < 1e-5, "{hook}: {ce:?}");
        assert!((ce.zero_ablated - ce.clean).abs() > 1e-3, "{hook}: {ce:?}");
        assert!((ce.recovered() - 1.0).abs() < 1e-3, "{hook}: {ce:?}");
        let mut zeros = lossless(d);
        zeros.w_dec.iter_mut().for_each(|v| *v = 0.0);
        let ce = source.ce_losses(&zeros, standard).unwrap();
        assert!(ce.recovered().abs() < 1e-9, "{hook}: {ce:?}");
        // Half the lossless decoder reconstructs x/2: neither (it may do worse than zeros).
        let mut half = lossless(d);
        half.w_dec.iter_mut().for_each(|v| *v *= 0.5);
        let r = source.ce_losses(&half, standard).unwrap().recovered();
        assert!(r.abs() > 1e-4 && (r - 1.0).abs() > 1e-4, "{hook}: {r}");
    }
}

#[test]
fn the_activations_are_the_hooks_values_at_the_positions_read() {
    let (model, task) = modular_model();
    for (positions, per_sequence) in [(Positions::Last, 1), (Positions::All, 3)] {
        let hook = "blocks.0.mlp.hook_post";
        let mut source =
            TransformerHook::new(model.clone(), task.clone(), hook, positions).unwrap();
        let mut x = Vec::new();
        source.fill(&mut x, 10, 5).unwrap();
        assert_eq!(x.len(), 10 * 24);
        for row in 0..10 {
            let Some(Origin::Token { sequence, position }) = source.origin(row) else {
                panic!("row {row} has no token origin");
            };
            assert_eq!(sequence.len(), 3);
            assert_eq!(sequence[2], P as u32, "an `a b =` sequence");
            assert_eq!(position, if per_sequence == 1 { 2 } else { row % 3 });
            let input = Tensor::from_vec(sequence, (1, 3), &Device::Cpu).unwrap();
            let (_, hooks) = model
                .forward_hooked(&input, Capture::Named(vec![hook.into()]), None)
                .unwrap();
            let want = hooks[0].1.to_vec3::<f32>().unwrap()[0][position].clone();
            let got = &x[row * 24..(row + 1) * 24];
            let diff = want
                .iter()
                .zip(got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(diff < 1e-5, "row {row}: {diff}");
        }
        assert!(source.origin(10).is_none());
    }
    // The next batch is fresh, and the same seed gives the same batch.
    let mut source = TransformerHook::new(
        model.clone(),
        task.clone(),
        "blocks.0.hook_resid_post",
        Positions::All,
    )
    .unwrap();
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    source.fill(&mut a, 64, 1).unwrap();
    source.fill(&mut b, 64, 2).unwrap();
    source.fill(&mut c, 64, 1).unwrap();
    assert_ne!(a, b);
    assert_eq!(a, c);
}

#[test]
fn a_hook_the_model_lacks_is_refused_by_name() {
    let (model, task) = modular_model();
    for hook in [
        "blocks.1.hook_resid_post",
        "blocks.0.hook_nonsense",
        "hook_embed",
        "",
    ] {
        let err = TransformerHook::new(model.clone(), task.clone(), hook, Positions::All)
            .err()
            .unwrap_or_else(|| panic!("{hook} was accepted"));
        assert!(err.contains("an SAE reads one of a block's hooks"), "{err}");
        assert!(err.contains("blocks.0.mlp.hook_post"), "{err}");
    }
}

/// `sae train`, `eval` and `features` on the bundled skip-trigram model's residual stream.
#[test]
fn the_cli_trains_and_reads_an_sae_on_a_transformer() {
    let dir = tempfile::tempdir().unwrap();
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/fast-seed0.safetensors");
    let out = dir.path().join("sae");
    let out_s = out.to_str().unwrap();
    let o = toylens(&[
        "sae",
        "train",
        model,
        "--hook",
        "blocks.0.hook_resid_post",
        "--d-sae",
        "22",
        "--l1",
        "0.01",
        "--steps",
        "40",
        "--batch",
        "512",
        "--eval-every",
        "20",
        "--out",
        out_s,
        "--json",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let last = &lines[1];
    assert_eq!(last["step"], 40);
    let (clean, spliced, ablated) = (
        last["ce_clean"].as_f64().unwrap(),
        last["ce_spliced"].as_f64().unwrap(),
        last["ce_zero_ablated"].as_f64().unwrap(),
    );
    let recovered = last["ce_recovered"].as_f64().unwrap();
    assert!(((ablated - spliced) / (ablated - clean) - recovered).abs() < 1e-9);
    // The clean loss is the model's validation loss (`toylens eval` says 1.1713).
    assert!((clean - 1.1713).abs() < 5e-4, "{clean}");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("cfg.json")).unwrap()).unwrap();
    assert_eq!(cfg["d_in"], 11);
    assert_eq!(cfg["metadata"]["hook_name"], "blocks.0.hook_resid_post");
    // SAELens reads the metadata only from a config of its format 6.
    assert_eq!(cfg["metadata"]["sae_lens_version"], "6.0.0");

    let o = toylens(&["sae", "eval", out_s, model, "--json", "--batch", "1024"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let eval: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(eval["ce_recovered"].as_f64().unwrap().is_finite());

    let o = toylens(&[
        "sae", "features", out_s, model, "--json", "--inputs", "2048", "--top", "4",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(report["positions"], "last");
    let features = report["features"].as_array().unwrap();
    assert_eq!(features.len(), 22);
    let live = features
        .iter()
        .find(|f| f["density"].as_f64().unwrap() > 0.0)
        .expect("a latent that fires");
    let top = live["top"].as_array().unwrap();
    assert!(!top.is_empty() && top.len() <= 4);
    for example in top {
        let sequence = example["token"]["sequence"].as_array().unwrap();
        assert_eq!(example["token"]["position"], sequence.len() - 1);
    }
    let effect = &live["logit_effect"];
    assert_eq!(effect["top"].as_array().unwrap().len(), 10);
    assert!(effect["top"][0][1].as_f64().unwrap() >= effect["bottom"][0][1].as_f64().unwrap());
    let histogram: u64 = live["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let density = live["density"].as_f64().unwrap();
    assert_eq!(histogram, (density * 4096.0).round() as u64);

    // A hook the model lacks, and --positions on a superposition model, are refused.
    let o = toylens(&[
        "sae",
        "train",
        model,
        "--hook",
        "blocks.0.mlp.hook_post",
        "--out",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "an SAE reads one of a block's hooks");
    assert!(!dir.path().join("x").exists());
}

/// On modular addition, read at the answer position, each latent gets the Fourier frequency
/// that holds most of its variance over every pair; the lossless SAE's latents are the hook's
/// own values (up to sign), so their frequencies are the activations' own.
#[test]
fn latents_on_modular_addition_get_their_fourier_frequency() {
    let (model, task) = modular_model();
    let standard = Architecture::Standard {
        l1_coefficient: 0.0,
    };
    let hook = "blocks.0.mlp.hook_post";
    let source = TransformerHook::new(model.clone(), task.clone(), hook, Positions::Last).unwrap();
    let frequencies = source.latent_frequencies(&lossless(24), standard).unwrap();
    assert_eq!(frequencies.len(), 48);
    // The same analysis of the neurons themselves, over every pair in order.
    let tokens: Vec<u32> = (0..P * P)
        .flat_map(|i| [(i / P) as u32, (i % P) as u32, P as u32])
        .collect();
    let input = Tensor::from_vec(tokens, (P * P, 3), &Device::Cpu).unwrap();
    let (_, hooks) = model
        .forward_hooked(&input, Capture::Named(vec![hook.into()]), None)
        .unwrap();
    let neurons: Vec<f32> = hooks[0]
        .1
        .to_vec3::<f32>()
        .unwrap()
        .iter()
        .flat_map(|seq| seq[2].clone())
        .collect();
    let want = toylens::sae::fourier::latent_frequencies(&neurons, P, 24);
    // Latent i is ReLU(neuron i) = the neuron (post-ReLU activations are non-negative).
    for i in 0..24 {
        match (frequencies[i], want[i]) {
            (Some(got), Some(want)) => {
                assert_eq!(got.k, want.k, "neuron {i}");
                assert!((got.share - want.share).abs() < 1e-4, "neuron {i}");
            }
            (got, want) => assert_eq!(got.is_some(), want.is_some(), "neuron {i}"),
        }
    }
    let all = TransformerHook::new(model, task, hook, Positions::All).unwrap();
    assert!(all.latent_frequencies(&lossless(24), standard).is_none());
}
