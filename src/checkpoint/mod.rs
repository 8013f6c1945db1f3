//! Checkpoints: safetensors files that TransformerLens loads as they are. The tensors are the
//! model's state dict under TL's names (the frozen one-hot embeddings and zero positions written
//! out, TL's `mask`/`IGNORE` buffers included), the metadata holds `tl_config` (the
//! `HookedTransformerConfig` fields as JSON) and toylens's own run config, metric history and
//! per-epoch weight snapshots.
//!
//! Loading trusts nothing: every name, dtype, shape and value is checked and every failure is an
//! error that says what is wrong. Where the model's config comes from is decided in [`source`]:
//! toylens metadata, `tl_config`, a config given on the command line, `config.json` beside the
//! file, or, for the skip-trigram model alone, the shapes. Saving writes a temporary file beside
//! the target, syncs it and renames it over the target, so a crash never leaves a half-written
//! checkpoint.

mod atomic;
mod pth;
mod sae;
mod safetensors_io;
mod source;
mod tms;

pub use atomic::{write_atomically, write_atomically_with};
pub use sae::{SAE_CONFIG, SAE_TOYLENS, SAE_WEIGHTS, SaeCheckpoint, save_f32_tensors};
pub use source::ConfigHint;
pub use tms::{TMS_FORMAT, TmsCheckpoint};

use safetensors_io::{
    f32_bytes, parse_meta, read_f32, reject_duplicate_keys, serialize_f32, to_json,
};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{Embeddings, ModelConfig, Positions, RunConfig, model_to_tl_json};
use crate::metrics::Metrics;
use crate::model::Weights;

/// Value of the `format` metadata key.
pub const FORMAT: &str = "toylens";
/// Bumped on any incompatible change of the metadata. Version 1 (the one-layer model with its
/// own config fields and short weight names) still loads.
pub const FORMAT_VERSION: u32 = 3;
/// Files larger than this are refused before they are read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// At most this many weight snapshots go into a file (~7 MB of JSON); longer runs are thinned.
pub const MAX_SAVED_SNAPSHOTS: usize = 4_096;
/// Snapshot memory a run keeps (up to twice this just before thinning): a large model keeps
/// fewer snapshots, so a long run of it cannot exhaust memory or write a file of gigabytes. The
/// grokking preset's model (0.9 MB) keeps 17 to 35, evenly spread over any number of epochs.
const SNAPSHOT_BUDGET_BYTES: usize = 16 << 20;

/// How many snapshots a run of `model` keeps and saves: [`MAX_SAVED_SNAPSHOTS`], or fewer (at
/// least 8) when that many would not fit in [`SNAPSHOT_BUDGET_BYTES`].
pub fn snapshot_limit(model: &ModelConfig) -> usize {
    let bytes = model.n_params().max(1) * std::mem::size_of::<f32>();
    (SNAPSHOT_BUDGET_BYTES / bytes).clamp(8, MAX_SAVED_SNAPSHOTS)
}

/// At most this many epochs of metric history go into a file (~25 MB of JSON).
pub const MAX_SAVED_HISTORY: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub epoch: usize,
    #[serde(with = "packed")]
    pub weights: Weights,
}

/// Snapshot weights in the metadata JSON: each tensor's little-endian f32 bytes as base64
/// (exact, and a third the size of decimal numbers, which format 2 wrote and which still read).
mod packed {
    use std::collections::BTreeMap;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::model::Weights;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Values {
        Packed(String),
        Numbers(Vec<f32>),
    }

    pub fn serialize<S: Serializer>(weights: &Weights, s: S) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<&str, String> = weights
            .iter()
            .map(|(name, values)| {
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                (name, STANDARD.encode(bytes))
            })
            .collect();
        map.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Weights, D::Error> {
        use serde::de::Error;
        let map = BTreeMap::<String, Values>::deserialize(d)?;
        let mut weights = Weights::default();
        for (name, values) in map {
            let values = match values {
                Values::Numbers(v) => v,
                Values::Packed(text) => {
                    let bytes = STANDARD
                        .decode(text)
                        .map_err(|e| D::Error::custom(format!("{name}: {e}")))?;
                    if bytes.len() % 4 != 0 {
                        return Err(D::Error::custom(format!("{name}: not whole f32 values")));
                    }
                    bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect()
                }
            };
            weights.insert(name, values);
        }
        Ok(weights)
    }
}

/// Everything a checkpoint holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub config: RunConfig,
    pub weights: Weights,
    /// Epochs trained.
    pub epoch: usize,
    pub history: Vec<Metrics>,
    /// Weights after each epoch (epoch 0 is the initialisation when present).
    pub snapshots: Vec<Snapshot>,
    /// False for a state dict saved elsewhere (TransformerLens), which has no toylens run.
    pub has_metadata: bool,
    /// Where the model's config came from, in words ("toylens checkpoint", "config.json beside
    /// the file", "inferred from the shapes: …"), for the CLI and the app to show.
    pub origin: String,
    /// Why the data-file task the checkpoint names could not be restored (it opened with no
    /// task), for the CLI and the app to say.
    pub data_note: Option<String>,
}

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is {size} bytes; checkpoints larger than {max} bytes are refused")]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("not a valid safetensors file: {0}")]
    Format(String),
    #[error("invalid checkpoint: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> CheckpointError {
    CheckpointError::Invalid(msg.into())
}

/// TL's per-layer buffers: carried in its state dict, recomputed by every loader.
fn is_tl_buffer(name: &str) -> bool {
    name.strip_prefix("blocks.").is_some_and(|rest| {
        let mut parts = rest.splitn(2, '.');
        parts.next().is_some_and(|l| l.parse::<usize>().is_ok())
            && matches!(parts.next(), Some("attn.mask" | "attn.IGNORE"))
    })
}

/// The tensors TL's state dict has that toylens's weights leave implicit, with their fixed
/// values: one-hot `W_E`/`W_U` and zero `b_U`, a zero `W_pos` without positions.
fn implied_tensors(cfg: &ModelConfig) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let identity = |n: usize| {
        (0..n * n)
            .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
            .collect::<Vec<f32>>()
    };
    let (v, m) = (cfg.d_vocab, cfg.d_model);
    let mut out = Vec::new();
    if cfg.embeddings == Embeddings::OneHot {
        out.push(("embed.W_E".into(), vec![v, m], identity(v)));
        out.push(("unembed.W_U".into(), vec![m, v], identity(v)));
        out.push(("unembed.b_U".into(), vec![v], vec![0.0; v]));
    }
    if cfg.positional_embedding_type == Positions::None {
        out.push((
            "pos_embed.W_pos".into(),
            vec![cfg.n_ctx, m],
            vec![0.0; cfg.n_ctx * m],
        ));
    }
    out
}

impl Checkpoint {
    /// Appends an epoch's snapshot, thinning the history to [`snapshot_limit`] once it holds
    /// twice that many, so a long run's memory stays bounded while covering its whole span.
    pub fn push_snapshot(&mut self, snapshot: Snapshot) {
        self.snapshots.push(snapshot);
        let limit = snapshot_limit(&self.config.model);
        if self.snapshots.len() > 2 * limit {
            self.snapshots = thinned(&self.snapshots, limit);
        }
    }

    /// A checkpoint of `weights` with no history.
    pub fn new(config: RunConfig, weights: Weights) -> Self {
        Self {
            config,
            weights,
            epoch: 0,
            history: Vec::new(),
            snapshots: Vec::new(),
            has_metadata: true,
            origin: "toylens checkpoint".into(),
            data_note: None,
        }
    }

    /// Serialises to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        let cfg = &self.config.model;
        self.weights
            .validate(cfg)
            .map_err(|e| invalid(e.to_string()))?;
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = cfg
            .params()
            .into_iter()
            .map(|p| {
                let bytes = f32_bytes(self.weights.get(&p.name));
                (p.name, p.shape, bytes)
            })
            .collect();
        for (name, shape, values) in implied_tensors(cfg) {
            tensors.push((name, shape, f32_bytes(&values)));
        }
        // TL 3's buffers, so that a strict `load_state_dict` finds every key it expects.
        for l in 0..cfg.n_layers {
            tensors.push((format!("blocks.{l}.attn.mask"), vec![0, 0], Vec::new()));
            tensors.push((
                format!("blocks.{l}.attn.IGNORE"),
                vec![],
                f32_bytes(&[f32::NEG_INFINITY]),
            ));
        }
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("format_version".to_string(), FORMAT_VERSION.to_string()),
            ("tl_config".to_string(), model_to_tl_json(cfg)),
            ("config".to_string(), to_json(&self.config)),
            ("epoch".to_string(), self.epoch.to_string()),
            (
                "history".to_string(),
                to_json(&thinned(&self.history, MAX_SAVED_HISTORY)),
            ),
            (
                "snapshots".to_string(),
                to_json(&thinned(
                    &self.snapshots,
                    snapshot_limit(&self.config.model),
                )),
            ),
        ]);
        serialize_f32(&tensors, Some(metadata))
    }

    /// Saves atomically: a temporary file in the same directory, fsync, then rename.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let bytes = self.to_bytes()?;
        write_atomically(path, &bytes)
    }

    /// Loads a toylens checkpoint or a TL state dict (config from its metadata, `config.json`
    /// beside it, or its shapes).
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        Self::load_with(path, None)
    }

    /// [`Self::load`] with a TransformerLens config file given explicitly (`--tl-config`).
    pub fn load_with(path: &Path, tl_config: Option<&Path>) -> Result<Self, CheckpointError> {
        let read_err = |source| CheckpointError::Read {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        if size > MAX_FILE_BYTES {
            return Err(CheckpointError::TooLarge {
                path: path.to_path_buf(),
                size,
                max: MAX_FILE_BYTES,
            });
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        let hint = ConfigHint::for_file(path, tl_config)?;
        if pth::is_pytorch_file(path, &bytes) {
            let (tensors, note) = pth::state_dict_as_safetensors(path, &bytes)?;
            let mut checkpoint = Self::from_bytes_with(&tensors, &hint)?;
            checkpoint.origin = match note {
                Some(note) => format!("PyTorch state dict, {}; {note}", checkpoint.origin),
                None => format!("PyTorch state dict, {}", checkpoint.origin),
            };
            return Ok(checkpoint);
        }
        Self::from_bytes_with(&bytes, &hint)
    }

    /// Reads a checkpoint from bytes, with no config files to consult.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        Self::from_bytes_with(bytes, &ConfigHint::default())
    }

    pub fn from_bytes_with(bytes: &[u8], hint: &ConfigHint) -> Result<Self, CheckpointError> {
        reject_duplicate_keys(bytes)?;
        let file =
            SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Format(format!("{e}")))?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| CheckpointError::Format(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let found = source::find_config(&file, &meta, hint)?;
        let model_cfg = &found.config.model;

        let specs = model_cfg.params();
        let implied = implied_tensors(model_cfg);
        if let Some(unknown) = file.names().into_iter().find(|n| {
            !specs.iter().any(|p| p.name == **n)
                && !implied.iter().any(|(i, _, _)| i == *n)
                && !is_tl_buffer(n)
        }) {
            return Err(invalid(format!(
                "unexpected tensor \"{unknown}\" (the config describes {})",
                model_cfg.describe()
            )));
        }
        let mut weights = Weights::default();
        for p in &specs {
            let values = read_f32(&file, &p.name, &p.shape)?
                .ok_or_else(|| invalid(format!("missing tensor \"{}\"", p.name)))?;
            weights.insert(p.name.clone(), values);
        }
        for (name, shape, want) in &implied {
            if let Some(got) = read_f32(&file, name, shape)?
                && got != *want
            {
                return Err(invalid(format!(
                    "{name} does not hold the fixed values this model assumes ({})",
                    model_cfg.describe()
                )));
            }
        }

        let (epoch, history, snapshots) = if found.is_toylens {
            let epoch = meta
                .get("epoch")
                .map(|s| s.parse::<usize>())
                .transpose()
                .map_err(|_| invalid("metadata \"epoch\" is not a whole number"))?
                .unwrap_or(0);
            let history: Vec<Metrics> = parse_meta(&meta, "history")?;
            let mut snapshots: Vec<Snapshot> = parse_meta(&meta, "snapshots")?;
            for s in &mut snapshots {
                if found.legacy {
                    s.weights = source::legacy_weights(&s.weights);
                }
                s.weights
                    .validate(model_cfg)
                    .map_err(|e| invalid(format!("snapshot of epoch {}: {e}", s.epoch)))?;
            }
            (epoch, history, snapshots)
        } else {
            (0, Vec::new(), Vec::new())
        };
        let mut checkpoint = Self {
            config: found.config,
            weights,
            epoch,
            history,
            snapshots,
            has_metadata: found.is_toylens,
            origin: found.origin,
            data_note: None,
        };
        checkpoint.read_task_data();
        Ok(checkpoint)
    }

    /// Reads the data of a data-file task (its path is absolute, its SHA-256 recorded). Data
    /// that cannot be read, or changed since, leave the model with no task and the reason in
    /// [`Self::data_note`]: the weights still open, and nothing stands in for the data.
    fn read_task_data(&mut self) {
        let cfg = &mut self.config;
        let Err(e) = cfg.task.load_data(Path::new(".")) else {
            return;
        };
        self.data_note = Some(format!(
            "the model's data could not be used, so it opens with no task: {e}"
        ));
        cfg.task = source::no_task(&cfg.model);
    }
}

/// Keeps every `stride`-th element and the last, with the stride the smallest power of two that
/// brings the count to at most `max`: a long run keeps its whole span at an even coarser grain.
pub fn thinned<T: Clone>(items: &[T], max: usize) -> Vec<T> {
    if items.len() <= max || max < 2 {
        return items.to_vec();
    }
    let mut stride = 2;
    while items.len().div_ceil(stride) + 1 > max {
        stride *= 2;
    }
    let last = items.len() - 1;
    items
        .iter()
        .enumerate()
        .filter(|(i, _)| i % stride == 0 || *i == last)
        .map(|(_, x)| x.clone())
        .collect()
}

#[cfg(test)]
mod tests;
