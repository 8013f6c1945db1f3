//! TransformerLens's `HookedTransformerConfig` as JSON, both ways.
//!
//! Reading takes a config as TL writes it (`config.json` beside a state dict, the `tl_config`
//! metadata of a checkpoint, or `cfg.to_dict()` with every field), applies TL's defaults and
//! refuses any field whose value would make a model toylens cannot reproduce, so a config is
//! never silently read as a different model. Writing emits exactly the fields that rebuild the
//! model with `HookedTransformerConfig(**config)`.

use serde_json::{Map, Value, json};

use super::model::{ActFn, Embeddings, LN_EPS, ModelConfig, Normalization, Positions};

/// Fields that change the model only when they differ from TL's default, with that default.
/// Any other value is refused with the field's name.
const MUST_BE_DEFAULT: [(&str, DefaultValue); 18] = [
    ("gated_mlp", DefaultValue::False),
    ("parallel_attn_mlp", DefaultValue::False),
    ("final_rms", DefaultValue::False),
    ("use_local_attn", DefaultValue::False),
    ("scale_attn_by_inverse_layer_idx", DefaultValue::False),
    ("use_qk_norm", DefaultValue::False),
    ("post_embedding_ln", DefaultValue::False),
    ("use_normalization_before_and_after", DefaultValue::False),
    ("tie_word_embeddings", DefaultValue::False),
    ("n_key_value_heads", DefaultValue::Null),
    ("num_experts", DefaultValue::Null),
    ("experts_per_token", DefaultValue::Null),
    ("attn_types", DefaultValue::NullOrGlobal),
    ("relative_attention_num_buckets", DefaultValue::Null),
    ("output_logits_soft_cap", DefaultValue::NotPositive),
    ("attn_scores_soft_cap", DefaultValue::NotPositive),
    ("attention_dir", DefaultValue::Causal),
    ("init_weights", DefaultValue::Any),
];

#[derive(Clone, Copy)]
enum DefaultValue {
    False,
    Null,
    NullOrGlobal,
    NotPositive,
    Causal,
    /// Documented here as read, but it never changes the computation.
    Any,
}

impl DefaultValue {
    fn accepts(self, v: &Value) -> bool {
        match self {
            DefaultValue::False => matches!(v, Value::Bool(false) | Value::Null),
            DefaultValue::Null => v.is_null(),
            DefaultValue::NullOrGlobal => match v {
                Value::Null => true,
                Value::Array(items) => items.iter().all(|i| i == "global"),
                _ => false,
            },
            DefaultValue::NotPositive => v.is_null() || v.as_f64().is_some_and(|x| x <= 0.0),
            DefaultValue::Causal => v.is_null() || v == "causal",
            DefaultValue::Any => true,
        }
    }
}

/// Parses a `HookedTransformerConfig` JSON object into a model config (learned embeddings).
pub fn model_from_tl_json(text: &str) -> Result<ModelConfig, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("TransformerLens config JSON: {e}"))?;
    let obj = value.as_object().ok_or(
        "TransformerLens config: expected a JSON object of HookedTransformerConfig fields",
    )?;
    model_from_tl(obj).map_err(|e| format!("TransformerLens config: {e}"))
}

fn model_from_tl(obj: &Map<String, Value>) -> Result<ModelConfig, String> {
    for (key, default) in MUST_BE_DEFAULT {
        if let Some(v) = obj.get(key)
            && !default.accepts(v)
        {
            return Err(format!(
                "{key} = {v} is not supported (toylens implements {key} = its default)"
            ));
        }
    }
    let count = |key: &str| -> Result<Option<i64>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| format!("{key} must be a whole number, got {v}")),
        }
    };
    let required = |key: &str| -> Result<usize, String> {
        match count(key)? {
            Some(n) if n > 0 => Ok(n as usize),
            Some(n) => Err(format!("{key} must be positive, got {n}")),
            None => Err(format!("{key} is missing")),
        }
    };
    let float = |key: &str| -> Result<Option<f64>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| format!("{key} must be a number, got {v}")),
        }
    };
    let flag = |key: &str, default: bool| -> Result<bool, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(format!("{key} must be true or false, got {v}")),
        }
    };
    let text = |key: &str| -> Result<Option<&str>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(format!("{key} must be a string or null, got {v}")),
        }
    };

    let n_layers = required("n_layers")?;
    let d_model = required("d_model")?;
    let d_head = required("d_head")?;
    let n_ctx = required("n_ctx")?;
    let d_vocab = match count("d_vocab")? {
        Some(n) if n > 0 => n as usize,
        _ => return Err("d_vocab must be given (toylens has no tokenizer to take it from)".into()),
    };
    let n_heads = match count("n_heads")? {
        Some(n) if n > 0 => n as usize,
        Some(-1) | None => {
            if d_model % d_head != 0 {
                return Err(format!(
                    "n_heads is not given and d_model ({d_model}) is not a multiple of d_head ({d_head})"
                ));
            }
            d_model / d_head
        }
        Some(n) => return Err(format!("n_heads must be positive, got {n}")),
    };
    let d_vocab_out = match count("d_vocab_out")? {
        Some(n) if n > 0 => Some(n as usize),
        Some(-1) | None => None,
        Some(n) => return Err(format!("d_vocab_out must be positive or -1, got {n}")),
    };
    let attn_only = flag("attn_only", false)?;
    let d_mlp = match count("d_mlp")? {
        Some(n) if n > 0 => Some(n as usize),
        None | Some(-1) => None,
        Some(n) => return Err(format!("d_mlp must be positive, got {n}")),
    };
    let act_fn = match text("act_fn")? {
        None => None,
        Some("relu") => Some(ActFn::Relu),
        Some("gelu") => Some(ActFn::Gelu),
        Some("gelu_new") => Some(ActFn::GeluNew),
        Some(other) if attn_only => {
            log::warn!("ignoring act_fn {other:?} of an attention-only model");
            None
        }
        Some(other) => {
            return Err(format!(
                "act_fn {other:?} is not supported (toylens has relu, gelu and gelu_new)"
            ));
        }
    };
    let normalization_type = match obj.get("normalization_type") {
        None => Some(Normalization::Ln),
        Some(Value::Null) => None,
        Some(v) if v == "LN" => Some(Normalization::Ln),
        Some(v) if v == "LNPre" => Some(Normalization::LnPre),
        Some(v) => {
            return Err(format!(
                "normalization_type {v} is not supported (toylens has null, \"LN\" and \"LNPre\")"
            ));
        }
    };
    let positional_embedding_type = match text("positional_embedding_type")? {
        None | Some("standard") => Positions::Standard,
        Some("shortformer") => Positions::Shortformer,
        Some(other) => {
            return Err(format!(
                "positional_embedding_type {other:?} is not supported (toylens has \"standard\" and \"shortformer\")"
            ));
        }
    };
    if let Some(eps) = float("eps")?
        && (eps - LN_EPS).abs() > 1e-12
    {
        return Err(format!(
            "eps = {eps} is not supported (toylens's LayerNorm uses {LN_EPS})"
        ));
    }
    if let Some(dtype) = text("dtype")?
        && !dtype.ends_with("float32")
    {
        return Err(format!(
            "dtype {dtype:?} is not supported (toylens computes in float32)"
        ));
    }
    let use_attn_scale = flag("use_attn_scale", true)?;
    let attn_scale = float("attn_scale")?.filter(|&s| s != -1.0);
    let init_range = float("initializer_range")?
        .or(float("init_range")?)
        .filter(|&r| r >= 0.0);
    let cfg = ModelConfig {
        n_layers,
        d_model,
        n_heads,
        d_head,
        d_vocab,
        d_vocab_out,
        n_ctx,
        attn_only,
        d_mlp: if attn_only { None } else { d_mlp },
        act_fn: if attn_only { None } else { act_fn },
        normalization_type,
        positional_embedding_type,
        embeddings: Embeddings::Learned,
        use_attn_scale,
        attn_scale,
        init_range,
    };
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

/// The `HookedTransformerConfig` fields that rebuild `cfg` in TransformerLens. toylens's
/// frozen choices become TL's equivalents: "no positions" is standard positions with a zero
/// `W_pos`, one-hot embeddings are identity `W_E`/`W_U` (the weights say so).
pub fn model_to_tl_json(cfg: &ModelConfig) -> String {
    let positions = match cfg.positional_embedding_type {
        Positions::Shortformer => "shortformer",
        Positions::Standard | Positions::None => "standard",
    };
    let mut obj = json!({
        "n_layers": cfg.n_layers,
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "d_head": cfg.d_head,
        "d_vocab": cfg.d_vocab,
        "d_vocab_out": cfg.d_vocab_out(),
        "n_ctx": cfg.n_ctx,
        "attn_only": cfg.attn_only,
        "normalization_type": cfg.normalization_type.map(Normalization::name),
        "positional_embedding_type": positions,
        "use_attn_scale": cfg.use_attn_scale,
        "attn_scale": cfg.attn_scale(),
        "initializer_range": cfg.init_range(),
        "eps": LN_EPS,
    });
    if cfg.has_mlp() {
        obj["d_mlp"] = json!(cfg.d_mlp());
        obj["act_fn"] = json!(cfg.act_fn.map(ActFn::name));
    }
    obj.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tl_defaults_apply_and_unsupported_fields_are_refused() {
        let cfg = model_from_tl_json(
            r#"{"n_layers": 2, "d_model": 24, "d_head": 8, "d_vocab": 10, "n_ctx": 8,
                "d_mlp": 48, "act_fn": "gelu", "model_name": "custom", "seed": null}"#,
        )
        .unwrap();
        assert_eq!(cfg.n_heads, 3);
        assert_eq!(cfg.normalization_type, Some(Normalization::Ln));
        assert_eq!(cfg.positional_embedding_type, Positions::Standard);
        assert_eq!(cfg.d_vocab_out(), 10);
        for (bad, says) in [
            (r#""gated_mlp": true"#, "gated_mlp"),
            (r#""normalization_type": "RMS""#, "RMS"),
            (r#""positional_embedding_type": "rotary""#, "rotary"),
            (r#""act_fn": "silu""#, "silu"),
            (r#""eps": 1e-6"#, "eps"),
            (r#""attention_dir": "bidirectional""#, "attention_dir"),
            (r#""n_ctx": 0"#, "n_ctx"),
        ] {
            let mut obj: Value = serde_json::from_str(
                r#"{"n_layers": 1, "d_model": 8, "d_head": 4, "d_vocab": 5, "n_ctx": 4, "d_mlp": 8, "act_fn": "relu"}"#,
            )
            .unwrap();
            let patch: Value = serde_json::from_str(&format!("{{{bad}}}")).unwrap();
            for (k, v) in patch.as_object().unwrap() {
                obj[k] = v.clone();
            }
            let text = obj.to_string();
            let e = model_from_tl_json(&text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        assert!(model_from_tl_json("[]").unwrap_err().contains("object"));
        assert!(
            model_from_tl_json(r#"{"n_layers": 1}"#)
                .unwrap_err()
                .contains("missing")
        );
    }

    #[test]
    fn written_configs_read_back_as_the_same_model() {
        let mut cfg = ModelConfig {
            n_layers: 2,
            d_model: 16,
            n_heads: 2,
            d_head: 8,
            d_vocab: 12,
            n_ctx: 6,
            attn_only: false,
            d_mlp: Some(20),
            act_fn: Some(ActFn::GeluNew),
            normalization_type: Some(Normalization::LnPre),
            positional_embedding_type: Positions::Shortformer,
            embeddings: Embeddings::Learned,
            ..ModelConfig::default()
        };
        cfg.init_range = Some(cfg.init_range());
        cfg.attn_scale = Some(cfg.attn_scale());
        cfg.d_vocab_out = Some(12);
        assert_eq!(model_from_tl_json(&model_to_tl_json(&cfg)).unwrap(), cfg);
    }
}
