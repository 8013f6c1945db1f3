//! Superposition checkpoints: `W` `[instances, features, hidden]` and `b` `[instances,
//! features]` as float32 safetensors, with the run's config and its metric history in the
//! metadata (`format` `toylens-tms`).

use std::collections::HashMap;
use std::path::Path;

use safetensors::SafeTensors;

use super::safetensors_io::{f32_bytes, read_f32, reject_duplicate_keys, serialize_f32, to_json};
use super::{CheckpointError, invalid, write_atomically};
use crate::superposition::{TmsMetrics, TmsRun, TmsTrainer, TmsWeights};

/// The metadata's `format` of a superposition checkpoint.
pub const TMS_FORMAT: &str = "toylens-tms";

/// A superposition run's weights, config and history.
#[derive(Debug, Clone, PartialEq)]
pub struct TmsCheckpoint {
    pub run: TmsRun,
    pub weights: TmsWeights,
    pub step: usize,
    pub history: Vec<TmsMetrics>,
}

impl TmsCheckpoint {
    /// A trainer's run, weights and steps so far, with the evaluations it reported.
    pub fn of(trainer: &TmsTrainer, history: Vec<TmsMetrics>) -> Self {
        Self {
            run: trainer.run().clone(),
            weights: trainer.weights().clone(),
            step: trainer.steps_done(),
            history,
        }
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        let m = &self.run.model;
        let (i, n, h) = (m.n_instances, m.n_features, m.n_hidden);
        let tensors = [
            ("W".to_string(), vec![i, n, h], f32_bytes(&self.weights.w)),
            ("b".to_string(), vec![i, n], f32_bytes(&self.weights.b)),
        ];
        let metadata = HashMap::from([
            ("format".to_string(), TMS_FORMAT.to_string()),
            ("config".to_string(), to_json(&self.run)),
            ("step".to_string(), self.step.to_string()),
            ("history".to_string(), to_json(&self.history)),
        ]);
        serialize_f32(&tensors, Some(metadata))
    }

    /// Saves atomically.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        write_atomically(path, &self.to_bytes()?)
    }

    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    /// Whether `bytes` are a safetensors file that says it is a superposition checkpoint (its
    /// header only is read): how a file being opened is told from a transformer's.
    pub fn is_tms(bytes: &[u8]) -> bool {
        SafeTensors::read_metadata(bytes).is_ok_and(|(_, header)| {
            header
                .metadata()
                .as_ref()
                .and_then(|m| m.get("format"))
                .is_some_and(|f| f == TMS_FORMAT)
        })
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        reject_duplicate_keys(bytes)?;
        let file =
            SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Format(e.to_string()))?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| CheckpointError::Format(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(TMS_FORMAT) {
            return Err(invalid(
                "not a superposition checkpoint (no toylens-tms metadata)",
            ));
        }
        let run: TmsRun = meta
            .get("config")
            .ok_or_else(|| invalid("metadata has no \"config\""))
            .and_then(|t| {
                serde_json::from_str(t).map_err(|e| invalid(format!("metadata config: {e}")))
            })?;
        run.validate()
            .map_err(|e| invalid(format!("metadata config: {e}")))?;
        let m = &run.model;
        let (i, n, h) = (m.n_instances, m.n_features, m.n_hidden);
        let missing = |name: &str| invalid(format!("missing tensor \"{name}\""));
        let w = read_f32(&file, "W", &[i, n, h])?.ok_or_else(|| missing("W"))?;
        let b = read_f32(&file, "b", &[i, n])?.ok_or_else(|| missing("b"))?;
        let step = meta
            .get("step")
            .map(|s| s.parse::<usize>())
            .transpose()
            .map_err(|_| invalid("metadata \"step\" is not a whole number"))?
            .unwrap_or(0);
        let history = match meta.get("history") {
            Some(t) => {
                serde_json::from_str(t).map_err(|e| invalid(format!("metadata history: {e}")))?
            }
            None => Vec::new(),
        };
        Ok(Self {
            run,
            weights: TmsWeights { w, b },
            step,
            history,
        })
    }
}
