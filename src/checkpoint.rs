//! Checkpoints: safetensors files with TransformerLens state-dict names and shapes, so that
//! `HookedTransformer(cfg).load_state_dict(file, strict=False)` takes them as they are, and toylens
//! metadata (config, metric history, per-epoch weight snapshots) as JSON in the header.
//!
//! Loading trusts nothing: every name, dtype, shape and value is checked and every failure is an
//! error that says what is wrong. Saving writes a temporary file beside the target, syncs it and
//! renames it over the target, so a crash never leaves a half-written checkpoint.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{ModelConfig, Param, Weights};
use crate::task::TaskConfig;
use crate::train::{EpochMetrics, RunConfig};

/// Value of the `format` metadata key.
pub const FORMAT: &str = "toylens";
/// Bumped on any incompatible change of the metadata.
pub const FORMAT_VERSION: u32 = 1;
/// Files larger than this are refused before they are read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// At most this many weight snapshots go into a file (~7 MB of JSON); longer runs are thinned.
pub const MAX_SAVED_SNAPSHOTS: usize = 4_096;
/// Snapshot memory a run keeps (up to twice this just before thinning): a large model keeps
/// fewer snapshots, so a long run of it cannot exhaust memory or write a file of gigabytes.
const SNAPSHOT_BUDGET_BYTES: usize = 128 << 20;

/// How many snapshots a run of `model` keeps and saves: [`MAX_SAVED_SNAPSHOTS`], or fewer (at
/// least 8) when that many would not fit in [`SNAPSHOT_BUDGET_BYTES`].
pub fn snapshot_limit(model: &ModelConfig) -> usize {
    let bytes = model.n_params().max(1) * std::mem::size_of::<f32>();
    (SNAPSHOT_BUDGET_BYTES / bytes).clamp(8, MAX_SAVED_SNAPSHOTS)
}

/// At most this many epochs of metric history go into a file (~25 MB of JSON).
pub const MAX_SAVED_HISTORY: usize = 100_000;

/// TL buffers that a state dict saved from TransformerLens may carry; they are recomputed here.
const IGNORED_TL_BUFFERS: [&str; 2] = ["blocks.0.attn.IGNORE", "blocks.0.attn.mask"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub epoch: usize,
    pub weights: Weights,
}

/// Everything a checkpoint holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub config: RunConfig,
    pub weights: Weights,
    /// Epochs trained.
    pub epoch: usize,
    pub history: Vec<EpochMetrics>,
    /// Weights after each epoch (epoch 0 is the initialisation when present).
    pub snapshots: Vec<Snapshot>,
    /// False for a bare TL state dict, whose config was inferred from its shapes.
    pub has_metadata: bool,
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
        }
    }

    /// Serialises to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        let cfg = &self.config.model;
        self.weights
            .validate(cfg)
            .map_err(|e| invalid(e.to_string()))?;
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Param::ALL
            .iter()
            .map(|&p| (p.tl_name(), p.shape(cfg), f32_bytes(self.weights.get(p))))
            .collect();
        let identity = |n: usize| {
            (0..n * n)
                .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
                .collect::<Vec<f32>>()
        };
        tensors.push((
            "embed.W_E".into(),
            vec![cfg.d_vocab, cfg.d_model],
            f32_bytes(&identity(cfg.d_vocab)),
        ));
        tensors.push((
            "pos_embed.W_pos".into(),
            vec![cfg.n_ctx, cfg.d_model],
            f32_bytes(&vec![0.0; cfg.n_ctx * cfg.d_model]),
        ));
        tensors.push((
            "unembed.W_U".into(),
            vec![cfg.d_model, cfg.d_vocab],
            f32_bytes(&identity(cfg.d_vocab)),
        ));
        tensors.push((
            "unembed.b_U".into(),
            vec![cfg.d_vocab],
            f32_bytes(&vec![0.0; cfg.d_vocab]),
        ));
        let views = tensors
            .iter()
            .map(|(name, shape, data)| {
                TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (name.as_str(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CheckpointError::Format(e.to_string()))?;
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("format_version".to_string(), FORMAT_VERSION.to_string()),
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
        safetensors::serialize(views, Some(metadata))
            .map_err(|e| CheckpointError::Format(e.to_string()))
    }

    /// Saves atomically: a temporary file in the same directory, fsync, then rename.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let bytes = self.to_bytes()?;
        write_atomically(path, &bytes)
    }

    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
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
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        reject_duplicate_keys(bytes)?;
        let file =
            SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Format(format!("{e}")))?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| CheckpointError::Format(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let is_toylens = meta.get("format").map(String::as_str) == Some(FORMAT);

        let names: Vec<&str> = file.names();
        let known: Vec<String> = Param::ALL
            .iter()
            .map(|p| p.tl_name())
            .chain(["embed.W_E", "pos_embed.W_pos", "unembed.W_U", "unembed.b_U"].map(String::from))
            .collect();
        if let Some(unknown) = names
            .iter()
            .find(|n| !known.iter().any(|k| k == *n) && !IGNORED_TL_BUFFERS.contains(n))
        {
            return Err(invalid(format!("unexpected tensor \"{unknown}\"")));
        }

        let config = if is_toylens {
            let version = meta.get("format_version").map(String::as_str).unwrap_or("");
            if version != FORMAT_VERSION.to_string() {
                return Err(invalid(format!(
                    "format_version \"{version}\" is not supported (this toylens reads {FORMAT_VERSION})"
                )));
            }
            let text = meta
                .get("config")
                .ok_or_else(|| invalid("metadata has no \"config\""))?;
            RunConfig::from_json(text).map_err(|e| invalid(format!("metadata config: {e}")))?
        } else {
            infer_config(&file)?
        };
        let model_cfg = &config.model;

        let mut weights = Weights::zeros(model_cfg);
        for p in Param::ALL {
            *weights.get_mut(p) = read_f32(&file, &p.tl_name(), &p.shape(model_cfg))?
                .ok_or_else(|| invalid(format!("missing tensor \"{}\"", p.tl_name())))?;
        }
        check_frozen(&file, model_cfg)?;

        let (epoch, history, snapshots) = if is_toylens {
            let epoch = meta
                .get("epoch")
                .map(|s| s.parse::<usize>())
                .transpose()
                .map_err(|_| invalid("metadata \"epoch\" is not a whole number"))?
                .unwrap_or(0);
            let history: Vec<EpochMetrics> = parse_meta(&meta, "history")?;
            let snapshots: Vec<Snapshot> = parse_meta(&meta, "snapshots")?;
            for s in &snapshots {
                s.weights
                    .validate(model_cfg)
                    .map_err(|e| invalid(format!("snapshot of epoch {}: {e}", s.epoch)))?;
            }
            (epoch, history, snapshots)
        } else {
            (0, Vec::new(), Vec::new())
        };
        Ok(Self {
            config,
            weights,
            epoch,
            history,
            snapshots,
            has_metadata: is_toylens,
        })
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

/// safetensors reads the header into a map, so a repeated key would silently replace an earlier
/// one. Repeated tensor names or metadata keys are refused instead.
fn reject_duplicate_keys(bytes: &[u8]) -> Result<(), CheckpointError> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Keys(Option<String>);
    impl<'de> Visitor<'de> for &mut Keys {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if key == "__metadata__" {
                    let mut inner = Keys(None);
                    map.next_value_seed(&mut inner)?;
                    if let Some(dup) = inner.0 {
                        self.0.get_or_insert(format!("metadata key \"{dup}\""));
                    }
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
                if !seen.insert(key.clone()) {
                    self.0.get_or_insert(key);
                }
            }
            Ok(())
        }
    }
    impl<'de> serde::de::DeserializeSeed<'de> for &mut Keys {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    // Only a well-formed header is checked here; anything else is left to safetensors' errors.
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    else {
        return Ok(());
    };
    let Some(header) = usize::try_from(len)
        .ok()
        .and_then(|n| bytes.get(8..8usize.checked_add(n)?))
    else {
        return Ok(());
    };
    let mut keys = Keys(None);
    let mut de = serde_json::Deserializer::from_slice(header);
    if serde::de::DeserializeSeed::deserialize(&mut keys, &mut de).is_ok()
        && let Some(dup) = keys.0
    {
        return Err(invalid(format!("the header names \"{dup}\" twice")));
    }
    Ok(())
}

fn parse_meta<T: for<'de> Deserialize<'de> + Default>(
    meta: &HashMap<String, String>,
    key: &str,
) -> Result<T, CheckpointError> {
    match meta.get(key) {
        None => Ok(T::default()),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| invalid(format!("metadata \"{key}\" is malformed: {e}"))),
    }
}

/// Reads an F32 tensor of exactly `shape` with finite values; `None` if absent.
fn read_f32(
    file: &SafeTensors,
    name: &str,
    shape: &[usize],
) -> Result<Option<Vec<f32>>, CheckpointError> {
    let view = match file.tensor(name) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    if view.dtype() != Dtype::F32 {
        return Err(invalid(format!(
            "tensor \"{name}\" has dtype {:?}; toylens needs F32",
            view.dtype()
        )));
    }
    if view.shape() != shape {
        return Err(invalid(format!(
            "tensor \"{name}\" has shape {:?}; expected {shape:?}",
            view.shape()
        )));
    }
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "tensor \"{name}\" holds a non-finite value ({}) at flat index {i}",
            values[i]
        )));
    }
    Ok(Some(values))
}

/// The frozen tensors are optional, but when present they must be what this model assumes.
fn check_frozen(file: &SafeTensors, cfg: &ModelConfig) -> Result<(), CheckpointError> {
    let is_identity = |v: &[f32], n: usize| {
        v.iter()
            .enumerate()
            .all(|(i, &x)| x == if i / n == i % n { 1.0 } else { 0.0 })
    };
    let (v, m, n) = (cfg.d_vocab, cfg.d_model, cfg.n_ctx);
    if let Some(w) = read_f32(file, "embed.W_E", &[v, m])?
        && !is_identity(&w, v)
    {
        return Err(invalid(
            "embed.W_E is not the identity; toylens models use a frozen one-hot embedding",
        ));
    }
    if let Some(w) = read_f32(file, "unembed.W_U", &[m, v])?
        && !is_identity(&w, v)
    {
        return Err(invalid(
            "unembed.W_U is not the identity; toylens models read the residual stream as logits",
        ));
    }
    if file.tensor("pos_embed.W_pos").is_ok() {
        let rows = file
            .tensor("pos_embed.W_pos")
            .map(|t| t.shape().first().copied().unwrap_or(0))
            .unwrap_or(0);
        if rows != n {
            return Err(invalid(format!(
                "pos_embed.W_pos has {rows} positions; the config says n_ctx = {n}"
            )));
        }
        if let Some(w) = read_f32(file, "pos_embed.W_pos", &[n, m])?
            && w.iter().any(|&x| x != 0.0)
        {
            return Err(invalid(
                "pos_embed.W_pos is not zero; toylens models have no positional embedding",
            ));
        }
    }
    if let Some(b) = read_f32(file, "unembed.b_U", &[v])?
        && b.iter().any(|&x| x != 0.0)
    {
        return Err(invalid("unembed.b_U is not zero"));
    }
    Ok(())
}

/// Infers the config of a bare TL state dict from its shapes: the task is the notebook's when the
/// vocabulary is 11, otherwise the notebook's triggers with noise tokens filling the vocabulary.
fn infer_config(file: &SafeTensors) -> Result<RunConfig, CheckpointError> {
    let w_q = file
        .tensor(&Param::WQ.tl_name())
        .map_err(|_| invalid("missing tensor \"blocks.0.attn.W_Q\""))?;
    let &[n_heads, d_model, d_head] = w_q.shape() else {
        return Err(invalid(format!(
            "tensor \"blocks.0.attn.W_Q\" has shape {:?}; expected [n_heads, d_model, d_head]",
            w_q.shape()
        )));
    };
    let n_ctx = match file.tensor("pos_embed.W_pos") {
        Ok(t) => *t.shape().first().unwrap_or(&0),
        Err(_) => ModelConfig::default().n_ctx,
    };
    let model = ModelConfig {
        d_vocab: d_model,
        d_model,
        n_ctx,
        n_heads,
        d_head,
        ..ModelConfig::default()
    };
    model.validate().map_err(|e| invalid(e.to_string()))?;
    let mut task = TaskConfig::default();
    if d_model != task.vocab_size() {
        if d_model < 6 {
            return Err(invalid(format!(
                "cannot infer a skip-trigram task for a vocabulary of {d_model} tokens (need at least 6)"
            )));
        }
        task.noise_tokens.last = d_model as u32 - 1;
    }
    task.seq_len = task.seq_len.min(n_ctx);
    let config = RunConfig {
        task,
        model,
        ..RunConfig::default()
    };
    config
        .validate()
        .map_err(|e| invalid(format!("inferred config: {e}")))?;
    Ok(config)
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes `bytes` to `path` so that readers see either the old file or the complete new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    write_atomically_with(path, |file| file.write_all(bytes))
}

/// [`write_atomically`] with the writing done by `write`, which may fail part-way (tests inject
/// faults through it): on any error the temporary file is removed and `path` is untouched.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), CheckpointError> {
    let write_err = |source| CheckpointError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".toylens-save-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(write_err)?;
    write(tmp.as_file_mut()).map_err(write_err)?;
    // Temporary files are private (0600); a checkpoint gets the old file's mode or the usual one.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode());
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(write_err)?;
    }
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    // Make the rename itself durable; not every platform can open a directory, so best effort.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_span_and_the_ends() {
        let items: Vec<usize> = (0..=10_000).collect();
        let t = thinned(&items, 4_096);
        assert!(t.len() <= 4_096, "{}", t.len());
        assert_eq!(t.first(), Some(&0));
        assert_eq!(t.last(), Some(&10_000));
        let stride = t[1] - t[0];
        assert!(t.windows(2).all(|w| w[1] - w[0] <= stride));
        assert_eq!(thinned(&items[..100], 4_096).len(), 100);
    }

    #[test]
    fn long_histories_stay_bounded_in_memory() {
        let cfg = RunConfig::default();
        let w = Weights::zeros(&cfg.model);
        let mut ckpt = Checkpoint::new(cfg, w.clone());
        for epoch in 0..=20_000 {
            ckpt.push_snapshot(Snapshot {
                epoch,
                weights: w.clone(),
            });
            assert!(ckpt.snapshots.len() <= 2 * MAX_SAVED_SNAPSHOTS + 1);
        }
        assert_eq!(ckpt.snapshots.first().unwrap().epoch, 0);
        assert!(ckpt.snapshots.last().unwrap().epoch > 19_000);
    }
}
