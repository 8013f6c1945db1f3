//! The interpretability toolkit against independent computations: direct logit attribution and
//! the logit lens from TransformerLens's own activations in the general fixtures, patching,
//! head detectors, composition, copying scores and singular directions on models built so that
//! the answer is known.

mod common;

use candle_core::Device;
use common::flatten;
use common::tl::{ATOL, FIXTURES, RTOL, cases, load};
use serde_json::Value;
use toylens::analysis::{
    HeadKind, PatchingSetup, analyze, composition, full_circuits, patching, similarity,
};
use toylens::model::{
    Ablation, Embeddings, HeadMode, ModelConfig, Normalization, Positions, Transformer, Weights,
};

fn tokens_of(case: &Value) -> Vec<u32> {
    case["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

/// A fixture hook's vector at `index` (batch dimension already dropped in the fixture).
fn fixture_row(case: &Value, hook: &str, index: &[usize]) -> Vec<f64> {
    let mut v = &case["cache"][hook];
    for &i in index {
        v = &v[i];
    }
    flatten(v).1
}

fn close(ours: f32, tl: f64) -> bool {
    (ours as f64 - tl).abs() <= ATOL + RTOL * tl.abs()
}

/// `x` through `ln_final` as TL's cache saw it (`scale` from its `hook_scale`, or recomputed),
/// then `W_U` and, with `b_u`, `b_U`: plain loops, no toylens code.
fn unembed(
    x: &[f64],
    scale: Option<f64>,
    ln: Option<(&[f32], &[f32])>,
    w_u: &[f32],
    b_u: Option<&[f32]>,
) -> Vec<f64> {
    let m = x.len();
    let vocab = w_u.len() / m;
    let mut y = x.to_vec();
    if let Some(scale) = scale {
        let mean = y.iter().sum::<f64>() / m as f64;
        for (i, v) in y.iter_mut().enumerate() {
            *v = (*v - mean) / scale * ln.map_or(1.0, |(w, _)| w[i] as f64);
        }
    }
    (0..vocab)
        .map(|o| {
            let dot: f64 = (0..m).map(|i| y[i] * w_u[i * vocab + o] as f64).sum();
            dot + b_u.map_or(0.0, |b| b[o] as f64)
        })
        .collect()
}

#[test]
fn dla_and_logit_lens_match_transformer_lens_activations_and_sum_to_the_logits() {
    for name in FIXTURES {
        let (ckpt, model) = load(name);
        let cfg = &ckpt.config.model;
        let w = &ckpt.weights;
        let (w_u, b_u) = (w.get("unembed.W_U"), w.get("unembed.b_U"));
        let has_ln = cfg.normalization_type == Some(Normalization::Ln);
        let ln = has_ln.then(|| (w.get("ln_final.w"), w.get("ln_final.b")));
        for case in cases(name)["cases"].as_array().unwrap() {
            let tokens = tokens_of(case);
            for pos in [0, tokens.len() - 1] {
                let a = analyze(&model, &tokens, Some(pos), None, None).unwrap();
                let at = &a.attribution;
                assert!(
                    at.sum_error() < 1e-5,
                    "{name}: rows miss the logits by {}",
                    at.sum_error()
                );
                let scale = has_ln.then(|| fixture_row(case, "ln_final.hook_scale", &[pos])[0]);
                let mut checked = 0;
                for (label, row) in at.labels.iter().zip(&at.dla) {
                    let source = match label.as_str() {
                        "embed" => fixture_row(case, "hook_embed", &[pos]),
                        "pos_embed" => fixture_row(case, "hook_pos_embed", &[pos]),
                        "bias" => continue,
                        l if l.ends_with("_mlp_out") => {
                            let layer = &l[..l.len() - "_mlp_out".len()];
                            fixture_row(case, &format!("blocks.{layer}.hook_mlp_out"), &[pos])
                        }
                        l => {
                            let (layer, head) = l[1..].split_once('H').unwrap();
                            let head: usize = head.parse().unwrap();
                            fixture_row(
                                case,
                                &format!("blocks.{layer}.attn.hook_result"),
                                &[pos, head],
                            )
                        }
                    };
                    let want = unembed(&source, scale, ln, w_u, None);
                    for (o, (&ours, &tl)) in row.iter().zip(&want).enumerate() {
                        assert!(
                            close(ours, tl),
                            "{name} {label} pos {pos} out {o}: {ours} vs {tl}"
                        );
                    }
                    checked += 1;
                }
                assert_eq!(checked, at.labels.len() - 1, "{name}");
                // The logit lens: every layer's input, normalised by its own statistics.
                for (l, lens) in at.logit_lens.iter().enumerate() {
                    let hook = if l < cfg.n_layers {
                        format!("blocks.{l}.hook_resid_pre")
                    } else {
                        format!("blocks.{}.hook_resid_post", cfg.n_layers - 1)
                    };
                    let x = fixture_row(case, &hook, &[pos]);
                    let own_scale = has_ln.then(|| {
                        let mean = x.iter().sum::<f64>() / x.len() as f64;
                        (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64 + 1e-5)
                            .sqrt()
                    });
                    let mut want = unembed(&x, own_scale, ln, w_u, Some(b_u));
                    if let Some((_, b)) = ln {
                        // ln_final.b through W_U (b_U is already in).
                        let extra = unembed(
                            &b.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                            None,
                            None,
                            w_u,
                            None,
                        );
                        want.iter_mut().zip(extra).for_each(|(v, e)| *v += e);
                    }
                    for (&ours, &tl) in lens.iter().zip(&want) {
                        assert!(close(ours, tl), "{name} lens {l} pos {pos}: {ours} vs {tl}");
                    }
                }
                // After the last layer the lens is the model's own output.
                let logits = fixture_row(case, "logits", &[pos]);
                for (&ours, &tl) in at.logit_lens.last().unwrap().iter().zip(&logits) {
                    assert!(close(ours, tl), "{name}: final lens {ours} vs logits {tl}");
                }
            }
        }
    }
}

#[test]
fn patching_layer_0_at_a_position_is_running_that_token_in_the_corrupted_sequence() {
    // `blocks.0.hook_resid_pre` at position p holds only what token p brings (its embedding, and
    // its position's, which both runs share), so patching the clean one in is the same as running
    // the corrupted sequence with the clean token at p: a plain forward pass, no patching code.
    for name in FIXTURES {
        let (ckpt, model) = load(name);
        let n = ckpt.config.model.n_ctx.min(7);
        let clean: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % 10).collect();
        let corrupt: Vec<u32> = clean.iter().map(|t| (t + 4) % 10).collect();
        let setup = PatchingSetup {
            clean: clean.clone(),
            corrupt: corrupt.clone(),
            answer: 1,
            wrong: 2,
        };
        let r = patching(&model, &setup, None).unwrap();
        let metric = |tokens: &[u32]| {
            let logits = model.run_with_cache(tokens).unwrap();
            let last = logits.logits_last();
            last[1] - last[2]
        };
        assert!((r.metric_clean - metric(&clean)).abs() < 1e-5, "{name}");
        assert!((r.metric_corrupt - metric(&corrupt)).abs() < 1e-5, "{name}");
        for pos in 0..n {
            let mut hybrid = corrupt.clone();
            hybrid[pos] = clean[pos];
            let want = metric(&hybrid);
            let got = r.resid_pre[0][pos];
            assert!(
                (got - want).abs() < 1e-4,
                "{name} pos {pos}: {got} vs {want}"
            );
        }
        assert_eq!(r.resid_pre.len(), ckpt.config.model.n_layers);
        assert_eq!(r.head_out[0].len(), ckpt.config.model.n_heads);
        // And patching heads is not a no-op: some head's clean output moves the corrupted run.
        assert!(
            r.head_out
                .iter()
                .flatten()
                .any(|&v| (v - r.metric_corrupt).abs() > 1e-4),
            "{name}: no head's clean output changes the corrupted run"
        );
    }
}

#[test]
fn patching_the_embedding_of_the_changed_token_restores_the_clean_run() {
    // Layer 0's input is the embedding: patching the one position where the sequences differ
    // gives back the clean run exactly, and any other position leaves the corrupted run.
    for name in FIXTURES {
        let (ckpt, model) = load(name);
        let n = ckpt.config.model.n_ctx.min(6);
        let clean: Vec<u32> = (0..n as u32).map(|i| (i * 3 + 1) % 10).collect();
        let mut corrupt = clean.clone();
        let changed = n / 2;
        corrupt[changed] = (corrupt[changed] + 5) % 10;
        let setup = PatchingSetup {
            clean,
            corrupt,
            answer: 0,
            wrong: 3,
        };
        let r = patching(&model, &setup, None).unwrap();
        assert!(
            (r.metric_clean - r.metric_corrupt).abs() > 1e-3,
            "{name}: the corruption changes nothing"
        );
        for (pos, &v) in r.resid_pre[0].iter().enumerate() {
            let want = if pos == changed {
                r.metric_clean
            } else {
                r.metric_corrupt
            };
            assert!((v - want).abs() < 1e-4, "{name} pos {pos}: {v} vs {want}");
        }
        assert_eq!(r.normalised(r.metric_clean), Some(1.0));
        assert_eq!(r.normalised(r.metric_corrupt), Some(0.0));
    }
}

#[test]
fn patching_refuses_what_it_cannot_compare() {
    let (_, model) = load("mlp2_ln_gelu");
    let setup = |clean: Vec<u32>, corrupt: Vec<u32>, answer| PatchingSetup {
        clean,
        corrupt,
        answer,
        wrong: 0,
    };
    let err = |s: PatchingSetup| patching(&model, &s, None).unwrap_err().to_string();
    assert!(err(setup(vec![1, 2, 3], vec![1, 2], 1)).contains("same length"));
    assert!(err(setup(vec![1, 2], vec![1, 2], 10)).contains("not an output token"));
    assert!(err(setup(vec![1, 2], vec![1, 12], 1)).contains("out of the vocabulary"));
}

#[test]
fn detection_patterns_are_transformer_lens_s() {
    // TL's get_*_head_detection_pattern for tokens [4, 7, 4, 7, 9], written out by hand: one
    // row per query, one digit per key.
    let tokens = [4, 7, 4, 7, 9];
    for (kind, want) in [
        (HeadKind::PreviousToken, "00000 10000 01000 00100 00010"),
        (HeadKind::DuplicateToken, "00000 00000 10000 01000 00000"),
        (HeadKind::Induction, "00000 00000 01000 00100 00000"),
    ] {
        let got = kind.pattern(&tokens);
        for (q, row) in want.split(' ').enumerate() {
            for (k, digit) in row.chars().enumerate() {
                let w = if digit == '1' { 1.0 } else { 0.0 };
                assert_eq!(got[q][k], w, "{} [{q}][{k}]", kind.name());
            }
        }
    }
}

#[test]
fn a_hand_built_attention_pattern_gets_its_known_score() {
    // Every query attends fully to the previous position, except the first (to itself): 4 of
    // the 5 rows are on the previous-token pattern, so the score is 4/5.
    let tokens = [4, 7, 4, 7, 9];
    let n = tokens.len();
    let attention: Vec<Vec<f32>> = (0..n)
        .map(|q| {
            (0..n)
                .map(|k| {
                    if k + 1 == q || (q == 0 && k == 0) {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let score = |kind: HeadKind| similarity(&attention, &kind.pattern(&tokens));
    assert!((score(HeadKind::PreviousToken) - 0.8).abs() < 1e-7);
    // Query 2 (token 4) attends to key 1 (after the earlier 4); query 3 to key 2 (after the
    // earlier 7): 2 of 5 rows follow the induction pattern; none is a duplicate-token row.
    assert!((score(HeadKind::Induction) - 0.4).abs() < 1e-7);
    assert_eq!(score(HeadKind::DuplicateToken), 0.0);
    // Half the attention of each row on the pattern: half the score.
    let half: Vec<Vec<f32>> = attention
        .iter()
        .enumerate()
        .map(|(q, row)| {
            let mut r: Vec<f32> = row.iter().map(|x| x / 2.0).collect();
            r[q] += 0.5;
            r
        })
        .collect();
    assert!((similarity(&half, &HeadKind::PreviousToken.pattern(&tokens)) - 0.4).abs() < 1e-7);
}

/// A two-layer attention-only model with one-hot embeddings of width 8, every weight zero but
/// those `set` writes.
fn two_layer(set: impl Fn(&mut Weights, &ModelConfig)) -> (ModelConfig, Weights) {
    let cfg = ModelConfig {
        n_layers: 2,
        d_model: 8,
        n_heads: 2,
        d_head: 2,
        d_vocab: 8,
        n_ctx: 6,
        attn_only: true,
        normalization_type: None,
        positional_embedding_type: Positions::Standard,
        embeddings: Embeddings::Learned,
        ..ModelConfig::default()
    };
    let mut w = Weights::zeros(&cfg);
    set(&mut w, &cfg);
    (cfg, w)
}

/// Sets `W[layer].{short}[head][row][col] = value` (`W_Q/K/V` `[h, m, d]`, `W_O` `[h, d, m]`).
fn put(w: &mut Weights, layer: usize, short: &str, head: usize, row: usize, col: usize, v: f32) {
    let (m, d) = (8, 2);
    let cols = if short == "W_O" { m } else { d };
    let rows = if short == "W_O" { d } else { m };
    w.get_mut(&format!("blocks.{layer}.attn.{short}")).unwrap()
        [head * rows * cols + row * cols + col] = v;
}

#[test]
fn composition_is_zero_across_orthogonal_subspaces_and_one_for_aligned_rank_one_heads() {
    let (cfg, w) = two_layer(|w, _| {
        // L0H0 reads dim 0 and writes dim 1 (W_V W_O = e0 e1ᵀ).
        put(w, 0, "W_V", 0, 0, 0, 2.0);
        put(w, 0, "W_O", 0, 0, 1, 3.0);
        // L1H0's queries read dim 5 only: orthogonal to what L0H0 writes. Its keys and values
        // read dim 1: exactly what L0H0 writes.
        put(w, 1, "W_Q", 0, 5, 0, 1.5);
        put(w, 1, "W_K", 0, 1, 0, 0.5);
        put(w, 1, "W_V", 0, 1, 1, 4.0);
        put(w, 1, "W_O", 0, 1, 6, 1.0);
        // L0H1 copies dim 1 (W_V W_O = e1 e1ᵀ): its V-composition with itself would be 1.
        put(w, 0, "W_V", 1, 1, 0, 1.0);
        put(w, 0, "W_O", 1, 0, 1, 1.0);
        // L1H1 reads dim 1 for queries too, and something else for keys and values.
        put(w, 1, "W_Q", 1, 1, 0, 1.0);
        put(w, 1, "W_K", 1, 2, 0, 1.0);
        put(w, 1, "W_V", 1, 2, 1, 1.0);
        put(w, 1, "W_O", 1, 1, 3, 1.0);
    });
    let c = composition(&cfg, &w);
    // Each product of rank-one matrices u vᵀ · v wᵀ has ‖·‖ = ‖u‖‖v‖²‖w‖ = ‖u vᵀ‖‖v wᵀ‖.
    assert_eq!(c.Q[0][0][1][0], 0.0);
    assert!((c.K[0][0][1][0] - 1.0).abs() < 1e-6, "{}", c.K[0][0][1][0]);
    assert!((c.V[0][0][1][0] - 1.0).abs() < 1e-6);
    assert!((c.Q[0][0][1][1] - 1.0).abs() < 1e-6);
    assert_eq!(c.K[0][0][1][1], 0.0);
    assert_eq!(c.V[0][0][1][1], 0.0);
    // Only earlier → later pairs are scored.
    assert_eq!(c.V[0][1][0][1], 0.0);
    assert!((c.V[0][1][1][0] - 1.0).abs() < 1e-6);
    assert_eq!(c.V[1][0][0][0], 0.0);
    assert_eq!(c.V[0][0][0][0], 0.0);
    assert_eq!(c.Q.len(), 2);
    assert_eq!(c.Q[0][0].len(), 2);
}

#[test]
fn copying_scores_and_singular_directions_of_known_ov_circuits() {
    let (cfg, w) = two_layer(|w, cfg| {
        // W_E and W_U the identity: the full OV circuit is W_V W_O itself.
        for i in 0..cfg.d_vocab {
            w.get_mut("embed.W_E").unwrap()[i * 8 + i] = 1.0;
            w.get_mut("unembed.W_U").unwrap()[i * 8 + i] = 1.0;
        }
        // L0H0: W_O = W_Vᵀ, a copying head (W_O W_V positive definite).
        put(w, 0, "W_V", 0, 2, 0, 2.0);
        put(w, 0, "W_V", 0, 3, 1, 1.0);
        put(w, 0, "W_O", 0, 0, 2, 2.0);
        put(w, 0, "W_O", 0, 1, 3, 1.0);
        // L0H1: the negative, an anti-copying head.
        put(w, 0, "W_V", 1, 2, 0, 2.0);
        put(w, 0, "W_O", 1, 0, 2, -3.0);
        // L1H0: a rotation in the plane of dims 4 and 5 (eigenvalues ±i): no copying.
        put(w, 1, "W_V", 0, 4, 0, 1.0);
        put(w, 1, "W_V", 0, 5, 1, 1.0);
        put(w, 1, "W_O", 0, 0, 5, 1.0);
        put(w, 1, "W_O", 0, 1, 4, -1.0);
    });
    let f = full_circuits(&cfg, &w).unwrap();
    assert!((f.copying_score[0][0] - 1.0).abs() < 1e-6);
    assert!((f.copying_score[0][1] + 1.0).abs() < 1e-6);
    assert!(f.copying_score[1][0].abs() < 1e-6);
    // The full OV circuit of L0H0 is diag(…, 4 at token 2, 1 at token 3, …).
    assert_eq!(f.ov_full[0][0][2][2], 4.0);
    assert_eq!(f.ov_full[0][0][3][3], 1.0);
    assert_eq!(f.ov_full[0][0][2][3], 0.0);
    // Its singular directions: σ = 4 reads token 2 and writes token 2, then σ = 1 for token 3.
    let svd = &f.ov_svd[0][0];
    assert!((svd[0].value - 4.0).abs() < 1e-6 && (svd[1].value - 1.0).abs() < 1e-6);
    assert_eq!((svd[0].sources[0].0, svd[0].outputs[0].0), (2, 2));
    assert!((svd[0].sources[0].1 - 1.0).abs() < 1e-6 && (svd[0].outputs[0].1 - 1.0).abs() < 1e-6);
    assert_eq!((svd[1].sources[0].0, svd[1].outputs[0].0), (3, 3));
    // The anti-copying head reads token 2 and writes −token 2.
    let anti = &f.ov_svd[0][1][0];
    assert!((anti.value - 6.0).abs() < 1e-6);
    assert_eq!(anti.sources[0], (2, 1.0));
    assert_eq!(anti.outputs[0], (2, -1.0));
    // The full QK circuit is W_E W_Q W_Kᵀ W_Eᵀ, here zero.
    assert!(
        f.qk_full
            .iter()
            .flatten()
            .flatten()
            .flatten()
            .all(|&x| x == 0.0)
    );
}

#[test]
fn ablating_a_later_head_removes_exactly_its_attribution() {
    // An attention-only model without LayerNorm: a head's DLA row is all it adds to the logits,
    // in any layer; ablating it leaves every other row of that layer and before unchanged.
    let (ckpt, model) = load("attn2_shortformer");
    let cfg = &ckpt.config.model;
    let tokens = [3u32, 7, 11, 3, 7, 11, 3];
    let full = analyze(&model, &tokens, None, None, None).unwrap();
    let ablation = Ablation::of(cfg.n_layers, cfg.n_heads, &[(1, 2)], HeadMode::Zero, None);
    let ablated = analyze(&model, &tokens, None, None, Some(&ablation)).unwrap();
    let removed = full.attribution.row("L1H2").unwrap();
    for (v, (&after, &before)) in ablated
        .attribution
        .logits
        .iter()
        .zip(&full.attribution.logits)
        .enumerate()
    {
        assert!((after - (before - removed[v])).abs() < 1e-5, "logit {v}");
    }
    assert!(
        ablated
            .attribution
            .row("L1H2")
            .unwrap()
            .iter()
            .all(|&x| x == 0.0)
    );
    assert_eq!(
        ablated.attribution.row("L0H1"),
        full.attribution.row("L0H1")
    );
    // Ablating a layer-0 head changes what layer 1 attends to: every view sees the ablation.
    let early = Ablation::of(
        cfg.n_layers,
        cfg.n_heads,
        &[(0, 0), (0, 1), (0, 2), (0, 3)],
        HeadMode::Zero,
        None,
    );
    let a = analyze(&model, &tokens, None, None, Some(&early)).unwrap();
    assert_ne!(a.heads.previous_token[1], full.heads.previous_token[1]);
    assert_eq!(a.heads.previous_token[0], full.heads.previous_token[0]);
    assert!(a.attribution.sum_error() < 1e-5);
    // An ablation that does not fit the model is refused.
    let wrong = Ablation::of(1, cfg.n_heads, &[(0, 0)], HeadMode::Zero, None);
    assert!(analyze(&model, &tokens, None, None, Some(&wrong)).is_err());
}

#[test]
fn one_hot_models_attribute_through_identity_embeddings() {
    // The skip-trigram fixture (one-hot, no positions): DLA rows equal the one-layer
    // decomposition the inspector has always shown, and pos_embed is TL's zero row.
    let ckpt = toylens::checkpoint::Checkpoint::load(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/skip_trigram_tl/model.safetensors"),
    )
    .unwrap();
    let model = Transformer::new(&ckpt.config.model, &ckpt.weights, &Device::Cpu).unwrap();
    let tokens = [2u32, 5, 3, 0];
    let a = analyze(&model, &tokens, None, None, None).unwrap();
    let cache = model.run_with_cache(&tokens).unwrap();
    let d = cache.decomposition.unwrap();
    assert_eq!(
        a.attribution.labels,
        ["L0H0", "L0H1", "L0H2", "embed", "pos_embed", "bias"]
    );
    for h in 0..3 {
        let row = a.attribution.row(&format!("L0H{h}")).unwrap();
        for (x, y) in row.iter().zip(d.head_logits_last.rows(&[h])) {
            assert!((x - y).abs() < 1e-6);
        }
    }
    assert!(
        a.attribution
            .row("pos_embed")
            .unwrap()
            .iter()
            .all(|&x| x == 0.0)
    );
    let embed = a.attribution.row("embed").unwrap();
    assert_eq!(embed[0], 1.0);
    assert_eq!(embed[1], 0.0);
    assert!(a.attribution.sum_error() < 1e-6);
}

#[test]
fn copying_scores_read_the_tokens_both_vocabularies_share_when_they_differ() {
    // Modular addition reads p + 1 tokens (the numbers and `=`) and predicts p: the full OV
    // circuit is not square and has no eigenvalues. The score is taken over the tokens it can
    // both read and predict; it was a crash (a gemm of 7 × 8 by 8 × 7 the wrong way round).
    let (mut cfg, _) = two_layer(|_, _| {});
    cfg.d_vocab_out = Some(7);
    let mut w = Weights::zeros(&cfg);
    for i in 0..cfg.d_vocab {
        w.get_mut("embed.W_E").unwrap()[i * 8 + i] = 1.0;
    }
    for i in 0..7 {
        w.get_mut("unembed.W_U").unwrap()[i * 7 + i] = 1.0;
    }
    // L0H0 copies token 2; L0H1 maps the input-only token 7 (`=`) onto output 1 and otherwise
    // suppresses token 3.
    put(&mut w, 0, "W_V", 0, 2, 0, 1.0);
    put(&mut w, 0, "W_O", 0, 0, 2, 3.0);
    put(&mut w, 0, "W_V", 1, 7, 0, 1.0);
    put(&mut w, 0, "W_O", 1, 0, 1, 5.0);
    put(&mut w, 0, "W_V", 1, 3, 1, 1.0);
    put(&mut w, 0, "W_O", 1, 1, 3, -2.0);
    let f = full_circuits(&cfg, &w).unwrap();
    assert_eq!(f.ov_full[0][0].len(), 8);
    assert_eq!(f.ov_full[0][0][0].len(), 7);
    assert_eq!(f.ov_full[0][1][7][1], 5.0);
    assert!((f.copying_score[0][0] - 1.0).abs() < 1e-6);
    assert!((f.copying_score[0][1] + 1.0).abs() < 1e-6);
    assert!(
        f.copying_score[1][0].is_nan(),
        "a zero circuit has no copying score"
    );
}
