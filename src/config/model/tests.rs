use super::*;

#[test]
fn json_takes_tl_defaults_and_code_takes_the_skip_trigram_model() {
    let cfg: ModelConfig = serde_json::from_str(
        r#"{"n_layers": 2, "d_model": 32, "d_head": 8, "n_heads": 4, "act_fn": "gelu_new"}"#,
    )
    .unwrap();
    assert!(!cfg.attn_only);
    assert_eq!(cfg.normalization_type, Some(Normalization::Ln));
    assert_eq!(cfg.positional_embedding_type, Positions::Standard);
    assert_eq!(cfg.d_mlp(), 128);
    assert!((cfg.init_range() - 0.8 / 32f64.sqrt()).abs() < 1e-12);
    assert_eq!(cfg.attn_scale(), 8f64.sqrt());
    cfg.validate().unwrap();
    let skip = ModelConfig::default();
    skip.validate().unwrap();
    assert!(skip.is_one_layer_token_table());
    assert_eq!(skip.n_params(), 3 * 11 * 4 + 3 * 3 + 11);
    let round: ModelConfig = serde_json::from_str(&serde_json::to_string(&skip).unwrap()).unwrap();
    assert_eq!(round, skip);
}

#[test]
fn invalid_combinations_explain_themselves() {
    let cfg = ModelConfig {
        d_model: 12,
        ..ModelConfig::default()
    };
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("d_model (12) must equal d_vocab (11)")
    );
    let mut cfg = ModelConfig {
        attn_only: false,
        ..ModelConfig::default()
    };
    assert!(cfg.validate().unwrap_err().to_string().contains("act_fn"));
    cfg.n_heads = 0;
    assert!(cfg.validate().unwrap_err().to_string().contains("n_heads"));
    let huge = ModelConfig {
        d_model: 4096,
        n_layers: 48,
        d_vocab: 4096,
        embeddings: Embeddings::Learned,
        n_heads: 64,
        d_head: 1024,
        ..ModelConfig::default()
    };
    assert!(
        huge.validate()
            .unwrap_err()
            .to_string()
            .contains("parameters")
    );
    let bad: Result<ModelConfig, _> = serde_json::from_str(r#"{"act_fn": "silu"}"#);
    assert!(bad.is_err());
}

#[test]
fn param_names_and_shapes_are_tl_s() {
    let cfg = ModelConfig {
        n_layers: 2,
        d_model: 24,
        n_heads: 3,
        d_head: 8,
        d_vocab: 10,
        n_ctx: 8,
        attn_only: false,
        d_mlp: Some(48),
        act_fn: Some(ActFn::Gelu),
        normalization_type: Some(Normalization::Ln),
        positional_embedding_type: Positions::Standard,
        embeddings: Embeddings::Learned,
        ..ModelConfig::default()
    };
    let specs = cfg.params();
    let find = |n: &str| specs.iter().find(|s| s.name == n).unwrap().shape.clone();
    assert_eq!(find("embed.W_E"), vec![10, 24]);
    assert_eq!(find("pos_embed.W_pos"), vec![8, 24]);
    assert_eq!(find("blocks.1.attn.W_O"), vec![3, 8, 24]);
    assert_eq!(find("blocks.1.mlp.W_in"), vec![24, 48]);
    assert_eq!(find("blocks.0.ln2.w"), vec![24]);
    assert_eq!(find("unembed.W_U"), vec![24, 10]);
    assert_eq!(specs.len(), 2 + 2 * (4 + 8 + 4) + 2 + 2);
}
