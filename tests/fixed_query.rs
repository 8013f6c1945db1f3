//! Modular addition's fixed-query shortcut gives the general path's loss, accuracy and gradient
//! of every parameter, for models with and without MLPs, with and without the attention scale,
//! with every bias non-zero (biases are zero at init, which would hide their terms).

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use toylens::model::{ModelConfig, Transformer, Weights};
use toylens::task::ModularAdditionConfig;

/// Loss, correct count and every parameter's gradient, by the general path or the shortcut.
fn loss_and_grads(
    model: &Transformer,
    pairs: &[u32],
    labels: &[u32],
    shortcut: bool,
) -> (f32, usize, Vec<(String, Vec<f32>)>) {
    let n = labels.len();
    let dev = &Device::Cpu;
    let labels_t = Tensor::from_slice(labels, n, dev).unwrap();
    let (loss, correct) = if shortcut {
        let pairs_t = Tensor::from_slice(pairs, (n, 2), dev).unwrap();
        model.fixed_query_loss(&pairs_t, &labels_t, true).unwrap()
    } else {
        let eq = model.config().d_vocab as u32 - 1;
        let tokens: Vec<u32> = pairs.chunks(2).flat_map(|p| [p[0], p[1], eq]).collect();
        let tokens = Tensor::from_vec(tokens, (n, 3), dev).unwrap();
        let logits = model.forward_last_general(&tokens).unwrap();
        let rows = logits.to_vec2::<f32>().unwrap();
        let correct = rows
            .iter()
            .zip(labels)
            .filter(|(r, y)| toylens::model::argmax(r) == **y as usize)
            .count();
        (
            candle_nn::loss::cross_entropy(&logits, &labels_t).unwrap(),
            correct,
        )
    };
    let grads = loss.backward().unwrap();
    let per_param = model
        .specs()
        .iter()
        .zip(model.vars())
        .map(|(spec, var)| {
            let g = grads
                .get(var.as_tensor())
                .map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .unwrap_or_else(|| vec![0.0; spec.numel()]);
            (spec.name.clone(), g)
        })
        .collect();
    (loss.to_scalar::<f32>().unwrap(), correct, per_param)
}

fn check(cfg: ModelConfig, seed: u64) {
    let p = cfg.d_vocab_out();
    let mut weights = Weights::init(&cfg, seed);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for (name, values) in weights.iter_mut() {
        if name.contains(".b_") || name.ends_with("b_U") {
            values
                .iter_mut()
                .for_each(|v| *v = rng.random_range(-0.5..0.5));
        }
    }
    let model = Transformer::new(&cfg, &weights, &Device::Cpu).unwrap();
    assert!(model.plan().fixed_query().is_some(), "{cfg:?}");
    let task = ModularAdditionConfig { p, train_frac: 0.5 };
    let split = task.split(seed);
    let pairs: Vec<u32> = split
        .train
        .iter()
        .flat_map(|&i| {
            let (a, b) = split.pair(i);
            [a, b]
        })
        .collect();
    let labels: Vec<u32> = split.train.iter().map(|&i| split.label(i)).collect();
    let (l_ref, c_ref, g_ref) = loss_and_grads(&model, &pairs, &labels, false);
    let (l, c, g) = loss_and_grads(&model, &pairs, &labels, true);
    assert!((l - l_ref).abs() < 1e-5, "loss {l} vs {l_ref}");
    assert_eq!(c, c_ref);
    for ((name, a), (_, b)) in g.iter().zip(&g_ref) {
        let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(
            worst <= 1e-4 * scale,
            "{name}: max |Δgrad| {worst} (largest |grad| {scale})"
        );
    }
    // The evaluation form (no gradients) gives the same loss.
    let n = labels.len();
    let pairs_t = Tensor::from_slice(&pairs, (n, 2), &Device::Cpu).unwrap();
    let labels_t = Tensor::from_slice(&labels, n, &Device::Cpu).unwrap();
    let (eval, correct) = model.fixed_query_loss(&pairs_t, &labels_t, false).unwrap();
    assert_eq!(eval.to_scalar::<f32>().unwrap(), l);
    assert_eq!(correct, c);
}

#[test]
fn shortcut_matches_the_general_path_with_an_mlp() {
    let mut cfg = ModelConfig::learned(12, 3, 1, 16, 2, Some(24));
    cfg.d_vocab_out = Some(11);
    check(cfg, 1);
}

#[test]
fn shortcut_matches_the_general_path_attention_only_and_unscaled() {
    let mut cfg = ModelConfig::learned(8, 5, 1, 12, 3, None);
    cfg.d_vocab_out = Some(7);
    cfg.use_attn_scale = false;
    check(cfg, 2);
}

#[test]
fn a_mismatch_would_be_caught() {
    // The negative control: the comparison fails when the shortcut sees a slightly different
    // W_V (1e-3 on one entry), so the tolerances above are tight enough to mean something.
    let mut cfg = ModelConfig::learned(12, 3, 1, 16, 2, Some(24));
    cfg.d_vocab_out = Some(11);
    let weights = Weights::init(&cfg, 3);
    let mut nudged = weights.clone();
    nudged.get_mut("blocks.0.attn.W_V").unwrap()[5] += 1e-3;
    let a = Transformer::new(&cfg, &weights, &Device::Cpu).unwrap();
    let b = Transformer::new(&cfg, &nudged, &Device::Cpu).unwrap();
    let pairs: Vec<u32> = (0..11u32).flat_map(|a| [a, (a * 3) % 11]).collect();
    let labels: Vec<u32> = (0..11u32).map(|a| (a + (a * 3) % 11) % 11).collect();
    let (l_ref, _, g_ref) = loss_and_grads(&a, &pairs, &labels, false);
    let (l, _, g) = loss_and_grads(&b, &pairs, &labels, true);
    let differs = (l - l_ref).abs() >= 1e-5
        || g.iter().zip(&g_ref).any(|((_, x), (_, y))| {
            let scale = y.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            x.iter().zip(y).any(|(x, y)| (x - y).abs() > 1e-4 * scale)
        });
    assert!(differs, "a different W_V passed the comparison");
}
