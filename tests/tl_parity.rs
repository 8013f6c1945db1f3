//! Parity with TransformerLens on general models: every hook of every case of the three
//! `HookedTransformer` fixtures in `tests/fixtures/tl_general` (copies of
//! `../shared/fixtures/tl_general`: two layers with shortformer positions; an MLP; LayerNorm with
//! GELU MLPs) must match within 1e-5, in float32's sense: `|ours − TL| ≤ 1e-5 + 1.3e-6·|TL|`,
//! `torch.testing.assert_close`'s float32 tolerance. The relative part matters only for large
//! values: these random models reach logits of 30, where one float32 ulp is 2e-6 and TL itself,
//! recomputed in float64, moves by 1.7e-5. Each model opens from its state dict with the
//! `config.json` beside it, as a user would open it.

mod common;

use candle_core::Device;
use common::tl::{FIXTURES, compare, load};
use toylens::model::Transformer;

#[test]
fn every_hook_of_every_case_matches_transformer_lens_within_1e_5() {
    for name in FIXTURES {
        let (ckpt, _) = load(name);
        assert!(!ckpt.has_metadata);
        assert!(
            ckpt.origin.contains("config.json"),
            "{name}: {}",
            ckpt.origin
        );
    }
    common::tl::assert_fixtures_match(|name| load(name).1);
}

#[test]
fn a_perturbed_weight_in_the_last_layer_fails_the_comparison() {
    // Negative control: the comparison must be able to fail, for every fixture.
    for name in FIXTURES {
        let (ckpt, _) = load(name);
        let cfg = &ckpt.config.model;
        let target = format!("blocks.{}.attn.W_V", cfg.n_layers - 1);
        let mut weights = ckpt.weights.clone();
        weights.get_mut(&target).unwrap()[3] += 1e-3;
        let model = Transformer::new(cfg, &weights, &Device::Cpu).unwrap();
        let (worst, at, _) = compare(name, &model);
        assert!(
            worst > 1.0,
            "{name}: a 1e-3 change in {target} went unnoticed ({at})"
        );
    }
}

#[test]
fn fixture_configs_are_read_with_tl_defaults() {
    use toylens::model::{ActFn, Normalization, Positions};
    let (a, _) = load("attn2_shortformer");
    let m = &a.config.model;
    assert!(m.attn_only && m.n_layers == 2);
    assert_eq!(m.positional_embedding_type, Positions::Shortformer);
    assert_eq!(m.normalization_type, None);
    let (b, _) = load("mlp1_relu");
    assert_eq!(b.config.model.act_fn, Some(ActFn::Relu));
    assert_eq!(b.config.model.d_mlp(), 64);
    let (c, _) = load("mlp2_ln_gelu");
    assert_eq!(c.config.model.normalization_type, Some(Normalization::Ln));
    assert_eq!(c.config.model.act_fn, Some(ActFn::Gelu));
    assert!((c.config.model.init_range() - 0.8 / 24f64.sqrt()).abs() < 1e-12);
}
