use super::*;

#[test]
fn a_clone_shares_each_tensor_until_one_side_writes_to_it() {
    let cfg = ModelConfig::default();
    let a = Weights::init(&cfg, 0);
    let mut b = a.clone();
    for (name, values) in a.iter() {
        assert_eq!(values.as_ptr(), b.get(name).as_ptr(), "{name} was copied");
    }
    let name = "blocks.0.attn.W_Q";
    let before = a.get(name)[0];
    b.get_mut(name).unwrap()[0] = before + 1.0;
    assert_eq!(a.get(name)[0], before, "a write reached the original");
    assert_eq!(b.get(name)[0], before + 1.0);
    assert_ne!(a.get(name).as_ptr(), b.get(name).as_ptr());
    // The tensors not written to are still shared.
    assert_eq!(
        a.get("blocks.0.attn.W_K").as_ptr(),
        b.get("blocks.0.attn.W_K").as_ptr()
    );
}

#[test]
fn init_is_seeded_and_scaled() {
    let cfg = ModelConfig::default();
    let a = Weights::init(&cfg, 1);
    assert_eq!(a, Weights::init(&cfg, 1));
    assert_ne!(a, Weights::init(&cfg, 2));
    assert!(
        a.get(&attn(0, "b_Q"))
            .iter()
            .chain(a.get(&attn(0, "b_O")))
            .all(|&x| x == 0.0)
    );
    let all: Vec<f32> = ["W_Q", "W_K", "W_V", "W_O"]
        .iter()
        .flat_map(|w| a.get(&attn(0, w)).to_vec())
        .collect();
    let std = (all.iter().map(|x| x * x).sum::<f32>() / all.len() as f32).sqrt();
    assert!((0.015..0.025).contains(&std), "std {std}");
}

#[test]
fn weights_round_trip_through_the_model() {
    let cfg = ModelConfig::default();
    let w = Weights::init(&cfg, 5);
    let model = Transformer::new(&cfg, &w, &Device::Cpu).unwrap();
    assert_eq!(model.weights().unwrap(), w);
    let mut bad = w.clone();
    bad.get_mut(&attn(0, "W_Q")).unwrap()[3] = f32::NAN;
    assert!(Transformer::new(&cfg, &bad, &Device::Cpu).is_err());
    bad = w.clone();
    bad.get_mut(&attn(0, "b_O")).unwrap().pop();
    assert!(model.set_weights(&bad).is_err());
    bad = w.clone();
    bad.insert("embed.W_E", vec![0.0; 121]);
    assert!(
        model
            .set_weights(&bad)
            .unwrap_err()
            .to_string()
            .contains("embed.W_E")
    );
}

#[test]
fn bad_tokens_are_errors() {
    let cfg = ModelConfig::default();
    let model = Transformer::new(&cfg, &Weights::init(&cfg, 0), &Device::Cpu).unwrap();
    assert!(model.run_with_cache(&[]).is_err());
    assert!(model.run_with_cache(&[1, 2, 3, 4, 5]).is_err());
    assert!(model.run_with_cache(&[11]).is_err());
    assert!(model.run_with_cache(&[2, 5, 3, 0]).is_ok());
}

#[test]
fn every_layer_norm_kind_and_position_type_runs_and_is_causal() {
    for (norm, positions, attn_only) in [
        (None, Positions::Standard, true),
        (Some(Normalization::Ln), Positions::Shortformer, false),
        (Some(Normalization::LnPre), Positions::Standard, false),
    ] {
        let cfg = ModelConfig {
            n_layers: 2,
            d_model: 16,
            n_heads: 2,
            d_head: 4,
            d_vocab: 7,
            d_vocab_out: Some(5),
            n_ctx: 6,
            attn_only,
            d_mlp: Some(12),
            act_fn: Some(ActFn::GeluNew),
            normalization_type: norm,
            positional_embedding_type: positions,
            embeddings: Embeddings::Learned,
            init_range: Some(0.5),
            ..ModelConfig::default()
        };
        let model = Transformer::new(&cfg, &Weights::init(&cfg, 3), &Device::Cpu).unwrap();
        let full = model.run_with_cache(&[1, 6, 2, 0, 3]).unwrap();
        let prefix = model.run_with_cache(&[1, 6, 2]).unwrap();
        assert_eq!(full.logits.shape, vec![1, 5, 5]);
        // Causality: the first three positions do not see what follows.
        for i in 0..3 {
            for (a, b) in full
                .logits
                .rows(&[0, i])
                .iter()
                .zip(prefix.logits.rows(&[0, i]))
            {
                assert!((a - b).abs() < 1e-5, "{norm:?} {positions:?}: {a} vs {b}");
            }
        }
        assert!(full.get("blocks.1.hook_resid_post").is_some());
        assert_eq!(
            full.get("blocks.1.ln2.hook_scale").is_some(),
            norm.is_some() && !attn_only
        );
    }
}

/// Training takes fused ops (one QKV matmul, fused attention and biases); the activation
/// cache takes the composed ops whose intermediates are TL's hooks. Both must give the same
/// logits and the same gradients.
#[test]
fn the_fused_training_path_equals_the_hooked_path_in_values_and_gradients() {
    for (norm, positions, attn_only) in [
        (None, Positions::Standard, true),
        (Some(Normalization::Ln), Positions::Shortformer, false),
        (Some(Normalization::LnPre), Positions::None, false),
    ] {
        let cfg = ModelConfig {
            n_layers: 2,
            d_model: 12,
            n_heads: 3,
            d_head: 4,
            d_vocab: 9,
            n_ctx: 7,
            attn_only,
            d_mlp: Some(10),
            act_fn: Some(ActFn::Gelu),
            normalization_type: norm,
            positional_embedding_type: positions,
            embeddings: Embeddings::Learned,
            init_range: Some(0.3),
            ..ModelConfig::default()
        };
        let model = Transformer::new(&cfg, &Weights::init(&cfg, 5), &Device::Cpu).unwrap();
        let tokens: Vec<u32> = (0..4 * 7).map(|i| (i * 5 + i / 3) % 9).collect();
        let tokens = Tensor::from_vec(tokens, (4, 7), &Device::Cpu).unwrap();
        let (fused, _) = model
            .forward_hooked(&tokens, Capture::Nothing, None)
            .unwrap();
        let (hooked, all) = model.forward_hooked(&tokens, Capture::All, None).unwrap();
        // A selective capture keeps exactly the hooks it names, with the same values (to
        // rounding: without hook_result, attention's output is one product, not a sum).
        let only = Capture::Only(&["attn.hook_pattern", "hook_embed"]);
        let (_, some) = model.forward_hooked(&tokens, only, None).unwrap();
        let names: Vec<&str> = some.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "hook_embed",
                "blocks.0.attn.hook_pattern",
                "blocks.1.attn.hook_pattern"
            ]
        );
        for (name, t) in &some {
            let (_, full) = all.iter().find(|(n, _)| n == name).unwrap();
            assert!(max_abs(&(t - full).unwrap()) < 1e-6, "{name}");
        }
        let max = |t: Tensor| max_abs(&t);
        let (diff, scale) = (max((&fused - &hooked).unwrap()), max(hooked.clone()));
        assert!(
            diff <= 1e-6 * scale.max(1.0),
            "{norm:?} {positions:?}: {diff} of {scale}"
        );
        let loss = |logits: &Tensor| crate::model::lm_cross_entropy_loss(logits, &tokens).unwrap();
        let (g1, g2) = (
            loss(&fused).backward().unwrap(),
            loss(&hooked).backward().unwrap(),
        );
        for (spec, var) in model.specs().iter().zip(model.vars()) {
            let (a, b) = (
                g1.get(var.as_tensor()).unwrap(),
                g2.get(var.as_tensor()).unwrap(),
            );
            let (d, size) = (max((a - b).unwrap()), max(b.clone()));
            assert!(
                d <= 1e-5 * size.max(1.0),
                "{norm:?} {positions:?}: gradient of {} differs by {d} (largest {size})",
                spec.name
            );
        }
    }
}

#[test]
fn the_fused_next_token_loss_equals_the_composed_one_in_value_and_gradients() {
    let cfg = ModelConfig {
        n_layers: 1,
        d_model: 10,
        n_heads: 2,
        d_head: 5,
        d_vocab: 8,
        d_vocab_out: Some(8),
        n_ctx: 6,
        attn_only: true,
        normalization_type: Some(Normalization::Ln),
        positional_embedding_type: Positions::Standard,
        embeddings: Embeddings::Learned,
        init_range: Some(0.5),
        ..ModelConfig::default()
    };
    let model = Transformer::new(&cfg, &Weights::init(&cfg, 9), &Device::Cpu).unwrap();
    let host: Vec<u32> = (0..3 * 6).map(|i| (i * 3 + 1) % 8).collect();
    let tokens = Tensor::from_vec(host.clone(), (3, 6), &Device::Cpu).unwrap();
    let fused = model.next_token_loss(&tokens).unwrap();
    let composed =
        crate::model::lm_cross_entropy_loss(&model.forward(&tokens).unwrap(), &tokens).unwrap();
    assert_same_loss(&model, &fused, &composed);
    // A mask and explicit targets: the fused op against the composed gather of scored rows.
    use crate::model::kernels::lm_loss::{UNSCORED, scored_cross_entropy_loss};
    let targets: Vec<u32> = (0..host.len())
        .map(|r| match r % 6 {
            2 | 4 => (host[r] + 5) % 8,
            _ => UNSCORED,
        })
        .collect();
    let targets = Tensor::from_vec(targets, (3, 6), &Device::Cpu).unwrap();
    let fused = model.scored_loss(&tokens, &targets).unwrap();
    let composed = scored_cross_entropy_loss(&model.forward(&tokens).unwrap(), &targets).unwrap();
    assert_same_loss(&model, &fused, &composed);
    // The masked loss is its own: not the next-token loss.
    let next = model
        .next_token_loss(&tokens)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((fused.to_scalar::<f32>().unwrap() - next).abs() > 1e-3);
}

fn assert_same_loss(model: &Transformer, fused: &Tensor, composed: &Tensor) {
    let (a, b) = (
        fused.to_scalar::<f32>().unwrap(),
        composed.to_scalar::<f32>().unwrap(),
    );
    assert!((a - b).abs() <= 1e-5 * b.abs(), "{a} vs {b}");
    let (g1, g2) = (fused.backward().unwrap(), composed.backward().unwrap());
    for (spec, var) in model.specs().iter().zip(model.vars()) {
        let (x, y) = (
            g1.get(var.as_tensor()).unwrap(),
            g2.get(var.as_tensor()).unwrap(),
        );
        let (d, size) = (max_abs(&(x - y).unwrap()), max_abs(y));
        assert!(d <= 1e-5 * size.max(1.0), "{}: {d} of {size}", spec.name);
    }
}

/// A splice replaces one hook's value for the rest of the pass, as a TL hook that returns a
/// value: the identity changes nothing at any hook; another run's residual stream makes the
/// rest of the model compute that run's logits; zeros in the last residual stream leave b_U.
#[test]
fn a_splice_replaces_the_hook_for_the_rest_of_the_pass() {
    use std::sync::Arc;
    let cfg = ModelConfig {
        n_layers: 2,
        d_model: 12,
        n_heads: 3,
        d_head: 4,
        d_vocab: 9,
        n_ctx: 7,
        attn_only: false,
        d_mlp: Some(10),
        act_fn: Some(ActFn::Relu),
        normalization_type: None,
        positional_embedding_type: Positions::Standard,
        embeddings: Embeddings::Learned,
        init_range: Some(0.3),
        ..ModelConfig::default()
    };
    let mut w = Weights::init(&cfg, 3);
    w.insert("unembed.b_U", (0..9).map(|i| i as f32 * 0.1).collect());
    let model = Transformer::new(&cfg, &w, &Device::Cpu).unwrap();
    let run = |seed: u32| {
        let tokens: Vec<u32> = (0..2 * 7).map(|i| (i * 5 + seed + i / 3) % 9).collect();
        Tensor::from_vec(tokens, (2, 7), &Device::Cpu).unwrap()
    };
    let (a, b) = (run(0), run(4));
    let splice = |hook: &str, f: SpliceFn| Edits {
        splice: Some(Splice {
            hook: hook.into(),
            replace: f,
        }),
        ..Edits::default()
    };
    let max_diff = |x: &Tensor, y: &Tensor| -> f32 {
        (x - y)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    let (clean, _) = model.forward_hooked(&a, Capture::Nothing, None).unwrap();
    let hooks: Vec<String> = (0..2).flat_map(|l| Splice::hooks(l, true)).collect();
    assert_eq!(hooks.len(), 16);
    for hook in &hooks {
        let edits = splice(hook, Arc::new(|x: &Tensor| Ok(x.clone())));
        let capture = Capture::Named(vec![hook.clone()]);
        let (logits, kept) = model.forward_hooked(&a, capture, Some(&edits)).unwrap();
        assert!(max_diff(&logits, &clean) < 1e-5, "identity at {hook}");
        assert_eq!(kept.len(), 1, "{hook} captured once");
        assert_eq!(&kept[0].0, hook);
        // A scaled value changes the logits (the splice is applied, not only recorded).
        let edits = splice(hook, Arc::new(|x: &Tensor| x * 3.0));
        let (logits, _) = model
            .forward_hooked(&a, Capture::Nothing, Some(&edits))
            .unwrap();
        assert!(
            max_diff(&logits, &clean) > 1e-3,
            "scaling at {hook} changed nothing"
        );
    }
    let (other, b_hooks) = model
        .forward_hooked(
            &b,
            Capture::Named(vec!["blocks.0.hook_resid_post".into()]),
            None,
        )
        .unwrap();
    let patched = b_hooks[0].1.clone();
    let edits = splice(
        "blocks.0.hook_resid_post",
        Arc::new(move |_: &Tensor| Ok(patched.clone())),
    );
    let (logits, _) = model
        .forward_hooked(&a, Capture::Nothing, Some(&edits))
        .unwrap();
    assert!(max_diff(&logits, &other) < 1e-5);
    let edits = splice(
        "blocks.1.hook_resid_post",
        Arc::new(|x: &Tensor| x.zeros_like()),
    );
    let (logits, _) = model
        .forward_hooked(&a, Capture::Nothing, Some(&edits))
        .unwrap();
    let b_u = Tensor::from_vec((0..9).map(|i| i as f32 * 0.1).collect(), 9, &Device::Cpu)
        .unwrap()
        .broadcast_as((2, 7, 9))
        .unwrap();
    assert!(max_diff(&logits, &b_u) < 1e-6);
    // A splice that changes the shape is an error, not a panic.
    let edits = splice(
        "blocks.0.mlp.hook_post",
        Arc::new(|x: &Tensor| x.narrow(2, 0, 3)),
    );
    assert!(
        model
            .forward_hooked(&a, Capture::Nothing, Some(&edits))
            .is_err()
    );
}
