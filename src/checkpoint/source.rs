//! Where a checkpoint's model config comes from, in order: toylens's own metadata (today's or
//! version 1's), TL's `tl_config` metadata, a config named on the command line, `config.json`
//! beside the file, and, for the one-layer skip-trigram model alone, the tensors' shapes. Two
//! sources that disagree are an error; no source is an error that says how to give one.

use std::collections::HashMap;
use std::path::Path;

use safetensors::SafeTensors;
use serde::Deserialize;

use super::{CheckpointError, FORMAT, FORMAT_VERSION, invalid, read_f32};
use crate::config::{
    Embeddings, ModelConfig, NoTask, Positions, RunConfig, TaskConfig, model_from_tl_json,
};
use crate::model::Weights;

/// A config file is small; anything larger is not one.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Configs found outside the safetensors file.
#[derive(Debug, Default)]
pub struct ConfigHint {
    /// Named by the user (`--tl-config`): used for a bare state dict, and must agree with the
    /// file's own config when it has one.
    explicit: Option<(ModelConfig, String)>,
    /// `config.json` in the file's directory, if there is one (parsed only when needed).
    beside: Option<(Result<ModelConfig, String>, String)>,
}

impl ConfigHint {
    pub fn for_file(path: &Path, tl_config: Option<&Path>) -> Result<Self, CheckpointError> {
        let explicit = match tl_config {
            None => None,
            Some(p) => {
                let cfg = read_tl_config(p).map_err(invalid)?;
                Some((cfg, format!("config from {}", p.display())))
            }
        };
        let beside_path = path.with_file_name("config.json");
        let beside = beside_path.is_file().then(|| {
            (
                read_tl_config(&beside_path),
                format!("config from {} beside it", beside_path.display()),
            )
        });
        Ok(Self { explicit, beside })
    }

    /// A config given directly, as `--tl-config` would.
    pub fn explicit(cfg: ModelConfig) -> Self {
        Self {
            explicit: Some((cfg, "config given explicitly".into())),
            beside: None,
        }
    }
}

fn read_tl_config(path: &Path) -> Result<ModelConfig, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if size > MAX_CONFIG_BYTES {
        return Err(format!(
            "{} is {size} bytes; a TransformerLens config is at most {MAX_CONFIG_BYTES}",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    model_from_tl_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}

pub(super) struct Found {
    pub config: RunConfig,
    pub is_toylens: bool,
    /// A version-1 toylens file: snapshots use the short weight names.
    pub legacy: bool,
    pub origin: String,
}

pub(super) fn find_config(
    file: &SafeTensors,
    meta: &HashMap<String, String>,
    hint: &ConfigHint,
) -> Result<Found, CheckpointError> {
    if meta.get("format").map(String::as_str) == Some(FORMAT) {
        let found = toylens_config(meta)?;
        agree(&found.config.model, hint, "the file's toylens metadata")?;
        return Ok(found);
    }
    let (model, origin) = if let Some(text) = meta.get("tl_config") {
        let cfg = model_from_tl_json(text).map_err(|e| invalid(format!("metadata {e}")))?;
        agree(&cfg, hint, "the file's tl_config metadata")?;
        (
            cfg,
            "TransformerLens config from the file's tl_config metadata".to_string(),
        )
    } else if let Some((cfg, origin)) = &hint.explicit {
        (cfg.clone(), origin.clone())
    } else if let Some((cfg, origin)) = &hint.beside {
        let cfg = cfg.clone().map_err(invalid)?;
        (cfg, origin.clone())
    } else {
        let cfg = infer_skip_trigram(file)?;
        let origin = format!(
            "no config found (no tl_config metadata, no config.json beside it); inferred from \
             the shapes: {}",
            cfg.describe()
        );
        return Ok(bare(cfg, origin));
    };
    Ok(match as_one_hot(file, &model)? {
        Some(one_hot) => bare(
            one_hot,
            format!(
                "{origin}; W_E and W_U are identities, b_U and W_pos zero, so it opens as \
                 toylens's one-hot model without positions"
            ),
        ),
        None => bare(model, origin),
    })
}

/// No task, with the model's dimensions.
pub(super) fn no_task(model: &ModelConfig) -> TaskConfig {
    TaskConfig::None(NoTask {
        vocab: model.d_vocab,
        vocab_out: model.d_vocab_out(),
        n_ctx: model.n_ctx,
    })
}

/// A TL model, which says nothing of a task: it opens with none ([`TaskConfig::None`]), its
/// dimensions its own. Nothing is guessed; the user names a task to train or evaluate it.
fn bare(model: ModelConfig, origin: String) -> Found {
    let task = no_task(&model);
    Found {
        config: RunConfig {
            task,
            model,
            ..RunConfig::default()
        },
        is_toylens: false,
        legacy: false,
        origin,
    }
}

/// The file's own config must not contradict one the user gave.
fn agree(cfg: &ModelConfig, hint: &ConfigHint, what: &str) -> Result<(), CheckpointError> {
    if let Some((given, origin)) = &hint.explicit {
        let same = |a: &ModelConfig| {
            let mut a = a.clone();
            // The given config is TL's: compare what TL can say.
            a.embeddings = Embeddings::Learned;
            if a.positional_embedding_type == Positions::None {
                a.positional_embedding_type = Positions::Standard;
            }
            a.init_range = None;
            a.attn_scale = Some(a.attn_scale());
            a.d_vocab_out = Some(a.d_vocab_out());
            a.d_mlp = a.has_mlp().then(|| a.d_mlp());
            a
        };
        if same(cfg) != same(given) {
            return Err(invalid(format!(
                "{what} describes {}, but the {origin} describes {}",
                cfg.describe(),
                given.describe()
            )));
        }
    }
    Ok(())
}

fn toylens_config(meta: &HashMap<String, String>) -> Result<Found, CheckpointError> {
    let version = meta.get("format_version").map(String::as_str).unwrap_or("");
    let text = meta
        .get("config")
        .ok_or_else(|| invalid("metadata has no \"config\""))?;
    let (config, legacy) = match version {
        "1" => (legacy_run_config(text)?, true),
        // Format 2 differs from 3 only in how snapshots are written (numbers, not base64).
        v if v == "2" || v == FORMAT_VERSION.to_string() => {
            let cfg: RunConfig =
                serde_json::from_str(text).map_err(|e| invalid(format!("metadata config: {e}")))?;
            (cfg, false)
        }
        _ => {
            return Err(invalid(format!(
                "format_version \"{version}\" is not supported (this toylens reads 1 to {FORMAT_VERSION})"
            )));
        }
    };
    // A data file's task is read once the weights are (`Checkpoint::from_bytes_with`): only its
    // settings are checked here.
    let checked = match &config.task {
        TaskConfig::Sequences(task) => task
            .check_settings()
            .map_err(|e| e.to_string())
            .and_then(|()| config.model.validate().map_err(|e| e.to_string()))
            .and_then(|()| config.train.validate().map_err(|e| e.to_string())),
        // The parts and how they fit together (a task's sequences within the model's n_ctx,
        // its vocabulary the model's): a file that loaded must open in every view.
        _ => config.validate_to_view().map_err(|e| e.to_string()),
    };
    checked.map_err(|e| invalid(format!("metadata config: {e}")))?;
    Ok(Found {
        config,
        is_toylens: true,
        legacy,
        origin: if legacy {
            "toylens checkpoint (format 1)".into()
        } else {
            "toylens checkpoint".into()
        },
    })
}

/// Version 1's model section: the one-layer skip-trigram model's sizes.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LegacyModel {
    d_vocab: usize,
    d_model: usize,
    n_ctx: usize,
    n_heads: usize,
    d_head: usize,
    n_layers: usize,
    init_range: f64,
}

impl Default for LegacyModel {
    fn default() -> Self {
        Self {
            d_vocab: 11,
            d_model: 11,
            n_ctx: 4,
            n_heads: 3,
            d_head: 1,
            n_layers: 1,
            init_range: 0.02,
        }
    }
}

fn legacy_run_config(text: &str) -> Result<RunConfig, CheckpointError> {
    let err = |e: String| invalid(format!("metadata config (format 1): {e}"));
    let mut value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
    let obj = value
        .as_object_mut()
        .ok_or_else(|| err("not a JSON object".into()))?;
    let old: LegacyModel = match obj.remove("model") {
        Some(m) => serde_json::from_value(m).map_err(|e| err(e.to_string()))?,
        None => LegacyModel::default(),
    };
    if old.n_layers != 1 || old.d_model != old.d_vocab {
        return Err(err(format!(
            "a format-1 model has one layer and d_model = d_vocab, got {} layers, d_model {}, d_vocab {}",
            old.n_layers, old.d_model, old.d_vocab
        )));
    }
    let mut model = ModelConfig::skip_trigram(old.d_vocab, old.n_ctx, old.n_heads, old.d_head);
    model.init_range = Some(old.init_range);
    obj.insert(
        "model".into(),
        serde_json::to_value(&model).map_err(|e| err(e.to_string()))?,
    );
    serde_json::from_value(value).map_err(|e| err(e.to_string()))
}

/// Version 1 named snapshot weights `W_Q`, …; today they carry their full TL names.
pub(super) fn legacy_weights(w: &Weights) -> Weights {
    let mut out = Weights::default();
    for (name, values) in w.iter() {
        let full = if name.contains('.') {
            name.to_string()
        } else {
            crate::model::attn(0, name)
        };
        out.insert(full, values.to_vec());
    }
    out
}

fn is_identity(values: &[f32], n: usize) -> bool {
    values.len() == n * n
        && values
            .iter()
            .enumerate()
            .all(|(i, &x)| x == if i / n == i % n { 1.0 } else { 0.0 })
}

/// The skip-trigram model in TL's form (one layer, attention only, no LayerNorm, identity
/// `W_E`/`W_U`, zero `b_U` and `W_pos`), as toylens's one-hot model; `None` for anything else.
fn as_one_hot(
    file: &SafeTensors,
    cfg: &ModelConfig,
) -> Result<Option<ModelConfig>, CheckpointError> {
    let (v, m) = (cfg.d_vocab, cfg.d_model);
    let shape_fits = cfg.n_layers == 1
        && cfg.attn_only
        && cfg.normalization_type.is_none()
        && cfg.positional_embedding_type == Positions::Standard
        && m == v
        && cfg.d_vocab_out() == v;
    if !shape_fits {
        return Ok(None);
    }
    // An absent tensor counts as its fixed value: a state dict of the attention weights alone
    // is how the skip-trigram notebook saves this model.
    let read = |name: &str, shape: &[usize]| read_f32(file, name, shape);
    let fixed = read("embed.W_E", &[v, m])?.is_none_or(|w| is_identity(&w, v))
        && read("unembed.W_U", &[m, v])?.is_none_or(|w| is_identity(&w, v))
        && read("unembed.b_U", &[v])?.is_none_or(|b| b.iter().all(|&x| x == 0.0))
        && read("pos_embed.W_pos", &[cfg.n_ctx, m])?.is_none_or(|w| w.iter().all(|&x| x == 0.0));
    if !fixed {
        return Ok(None);
    }
    let mut one_hot = ModelConfig::skip_trigram(v, cfg.n_ctx, cfg.n_heads, cfg.d_head);
    one_hot.use_attn_scale = cfg.use_attn_scale;
    one_hot.attn_scale = cfg.attn_scale;
    one_hot.init_range = cfg.init_range;
    Ok(Some(one_hot))
}

/// With no config anywhere, only the skip-trigram model can be read from shapes alone: one
/// layer of attention, and nothing else but identity embeddings and zero positions.
fn infer_skip_trigram(file: &SafeTensors) -> Result<ModelConfig, CheckpointError> {
    let no_config = |why: String| {
        invalid(format!(
            "no config: the file has no tl_config metadata and no config.json beside it, and {why}; \
             give the HookedTransformerConfig as JSON with --tl-config FILE or as config.json \
             beside the file"
        ))
    };
    let w_q = file
        .tensor("blocks.0.attn.W_Q")
        .map_err(|_| no_config("it has no blocks.0.attn.W_Q".into()))?;
    let &[n_heads, d_model, d_head] = w_q.shape() else {
        return Err(invalid(format!(
            "tensor \"blocks.0.attn.W_Q\" has shape {:?}; expected [n_heads, d_model, d_head]",
            w_q.shape()
        )));
    };
    if let Some(other) = file.names().into_iter().find(|n| {
        !(n.starts_with("blocks.0.attn.")
            || ["embed.W_E", "unembed.W_U", "unembed.b_U", "pos_embed.W_pos"].contains(n))
    }) {
        return Err(no_config(format!(
            "its tensors (such as {other}) are not only the one-layer attention-only model's"
        )));
    }
    let n_ctx = match file.tensor("pos_embed.W_pos") {
        Ok(t) => *t.shape().first().unwrap_or(&0),
        Err(_) => ModelConfig::default().n_ctx,
    };
    let cfg = ModelConfig::skip_trigram(d_model, n_ctx, n_heads, d_head);
    cfg.validate()
        .map_err(|e| invalid(format!("inferred config: {e}")))?;
    if let Some(w) = read_f32(file, "embed.W_E", &[d_model, d_model])?
        && !is_identity(&w, d_model)
    {
        return Err(no_config(
            "its embed.W_E is learned (not the identity), so its config cannot be inferred".into(),
        ));
    }
    Ok(cfg)
}
