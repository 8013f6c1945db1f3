//! SAEs on disk as SAELens 6 keeps them: a folder with `cfg.json` and `sae_weights.safetensors`
//! (`W_enc [d_in, d_sae]`, `b_enc`, `W_dec [d_sae, d_in]`, `b_dec`), which `SAE.load_from_disk`
//! reads; toylens adds `toylens.json` (the run's settings and metric history), which SAELens
//! ignores. An SAE saved by SAELens opens the same way, without it.

use std::path::Path;

use safetensors::SafeTensors;
use serde_json::{Value, json};

use super::safetensors_io::{f32_bytes, read_f32, serialize_f32};
use super::{CheckpointError, invalid, reject_duplicate_keys, write_atomically};
use crate::sae::{Architecture, Positions, SaeMetrics, SaeRun, SaeWeights};

pub const SAE_CONFIG: &str = "cfg.json";
pub const SAE_WEIGHTS: &str = "sae_weights.safetensors";
pub const SAE_TOYLENS: &str = "toylens.json";

/// An SAE and what toylens knows of how it was trained.
#[derive(Debug, Clone, PartialEq)]
pub struct SaeCheckpoint {
    pub architecture: Architecture,
    pub weights: SaeWeights,
    /// The hook it reads, as `cfg.json`'s `metadata.hook_name` records it.
    pub hook_name: String,
    pub model_name: String,
    /// toylens's run settings and history (absent for an SAE trained elsewhere).
    pub run: Option<SaeRun>,
    pub history: Vec<SaeMetrics>,
    /// Which positions of a transformer's sequences it read (absent: the task's own, see
    /// [`Positions::for_task`]).
    pub positions: Option<Positions>,
}

/// `toylens.json`.
#[derive(serde::Serialize, serde::Deserialize)]
struct ToylensPart {
    run: SaeRun,
    history: Vec<SaeMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    positions: Option<Positions>,
}

impl SaeCheckpoint {
    /// Writes the folder `dir` (made if missing): the weights, then `cfg.json`, then toylens's
    /// part, each file whole or not at all. An existing folder that holds other files than an
    /// SAE's is refused.
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        let write_err = |source| CheckpointError::Write {
            path: dir.to_path_buf(),
            source,
        };
        if dir.exists() {
            let entries = std::fs::read_dir(dir).map_err(write_err)?;
            for entry in entries {
                let name = entry.map_err(write_err)?.file_name();
                let name = name.to_string_lossy();
                if ![SAE_CONFIG, SAE_WEIGHTS, SAE_TOYLENS].contains(&name.as_ref())
                    && !name.starts_with(".toylens-save-")
                {
                    return Err(invalid(format!(
                        "{} holds other files ({name}): an SAE is saved into an empty folder \
                         or over another SAE",
                        dir.display()
                    )));
                }
            }
        } else {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let w = &self.weights;
        let (d, s) = (w.d_in, w.d_sae);
        let tensors = [
            ("W_enc".to_string(), vec![d, s], f32_bytes(&w.w_enc)),
            ("b_enc".to_string(), vec![s], f32_bytes(&w.b_enc)),
            ("W_dec".to_string(), vec![s, d], f32_bytes(&w.w_dec)),
            ("b_dec".to_string(), vec![d], f32_bytes(&w.b_dec)),
        ];
        write_atomically(&dir.join(SAE_WEIGHTS), &serialize_f32(&tensors, None)?)?;
        let config = serde_json::to_string_pretty(&self.saelens_config())
            .expect("plain data always serialises");
        write_atomically(&dir.join(SAE_CONFIG), config.as_bytes())?;
        if let Some(run) = &self.run {
            let part = ToylensPart {
                run: run.clone(),
                history: self.history.clone(),
                positions: self.positions,
            };
            let text = serde_json::to_string(&part).expect("plain data always serialises");
            write_atomically(&dir.join(SAE_TOYLENS), text.as_bytes())?;
        }
        Ok(())
    }

    /// `cfg.json` as SAELens 6 reads it.
    fn saelens_config(&self) -> Value {
        let mut cfg = json!({
            "architecture": self.architecture.saelens_name(),
            "d_in": self.weights.d_in,
            "d_sae": self.weights.d_sae,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": true,
            "normalize_activations": "none",
            "reshape_activations": "none",
            "metadata": {
                // The cfg.json format this follows: SAELens reads a config without it (or
                // older) as a pre-6 one, and then drops this metadata.
                "sae_lens_version": "6.0.0",
                "hook_name": self.hook_name,
                "hook_head_index": null,
                "model_name": self.model_name,
                "prepend_bos": false,
            },
        });
        if let Architecture::TopK { k, .. } = self.architecture {
            cfg["k"] = json!(k);
            // toylens keeps TopK's decoder rows at unit norm: nothing to rescale by.
            cfg["rescale_acts_by_decoder_norm"] = json!(false);
        }
        cfg
    }

    /// Reads an SAE folder (toylens's or SAELens's).
    pub fn load(dir: &Path) -> Result<Self, CheckpointError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| CheckpointError::Read { path, source })
        };
        let cfg: Value = serde_json::from_slice(&read(SAE_CONFIG)?)
            .map_err(|e| invalid(format!("{SAE_CONFIG} is not valid JSON: {e}")))?;
        let number = |key: &str| {
            cfg.get(key)
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| invalid(format!("{SAE_CONFIG} needs a whole number \"{key}\"")))
        };
        let (d, s) = (number("d_in")?, number("d_sae")?);
        if d == 0 || s == 0 || d.saturating_mul(s) > 50_000_000 {
            return Err(invalid(format!(
                "an SAE of d_in {d} and d_sae {s} is outside what toylens opens (at most 50 \
                 million weights)"
            )));
        }
        let text = |key: &str| cfg.get(key).and_then(Value::as_str);
        if let Some(dtype) = text("dtype").filter(|t| *t != "float32" && *t != "torch.float32") {
            return Err(invalid(format!(
                "the SAE's dtype is {dtype}; toylens opens float32 SAEs"
            )));
        }
        if cfg.get("apply_b_dec_to_input").and_then(Value::as_bool) == Some(false) {
            return Err(invalid(
                "the SAE does not subtract b_dec from its input (apply_b_dec_to_input false); \
                 toylens opens SAEs that do",
            ));
        }
        if let Some(norm) = text("normalize_activations").filter(|t| *t != "none") {
            return Err(invalid(format!(
                "the SAE normalises its activations ({norm}); toylens opens SAEs that do not"
            )));
        }
        let toylens: Option<ToylensPart> = match read(SAE_TOYLENS) {
            Ok(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| invalid(format!("{SAE_TOYLENS} is malformed: {e}")))?,
            ),
            Err(_) => None,
        };
        let architecture = match text("architecture") {
            Some("standard") | None => Architecture::Standard {
                l1_coefficient: match &toylens {
                    Some(ToylensPart {
                        run:
                            SaeRun {
                                architecture: Architecture::Standard { l1_coefficient },
                                ..
                            },
                        ..
                    }) => *l1_coefficient,
                    _ => 0.0,
                },
            },
            Some("topk") => {
                let k = number("k")?;
                if k == 0 || k > s {
                    return Err(invalid(format!(
                        "k must be between 1 and d_sae ({s}), got {k}"
                    )));
                }
                Architecture::TopK {
                    k,
                    aux_coefficient: 1.0,
                }
            }
            Some(other) => {
                return Err(invalid(format!(
                    "SAEs of architecture \"{other}\" are not supported (toylens opens standard \
                     and topk SAEs)"
                )));
            }
        };
        let bytes = read(SAE_WEIGHTS)?;
        reject_duplicate_keys(&bytes)?;
        let file =
            SafeTensors::deserialize(&bytes).map_err(|e| CheckpointError::Format(e.to_string()))?;
        let tensor = |name: &str, shape: &[usize]| {
            read_f32(&file, name, shape)?
                .ok_or_else(|| invalid(format!("{SAE_WEIGHTS} has no tensor \"{name}\"")))
        };
        let mut weights = SaeWeights {
            d_in: d,
            d_sae: s,
            w_enc: tensor("W_enc", &[d, s])?,
            b_enc: tensor("b_enc", &[s])?,
            w_dec: tensor("W_dec", &[s, d])?,
            b_dec: tensor("b_dec", &[d])?,
        };
        if matches!(architecture, Architecture::TopK { .. })
            && cfg
                .get("rescale_acts_by_decoder_norm")
                .and_then(Value::as_bool)
                == Some(true)
        {
            fold_decoder_norms(&mut weights);
        }
        let metadata = cfg.get("metadata");
        let meta_text = |key: &str| {
            metadata
                .and_then(|m| m.get(key))
                .or_else(|| cfg.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (run, history, positions) = match toylens {
            Some(part) => (Some(part.run), part.history, part.positions),
            None => (None, Vec::new(), None),
        };
        Ok(Self {
            architecture,
            weights,
            hook_name: meta_text("hook_name"),
            model_name: meta_text("model_name"),
            run,
            history,
            positions,
        })
    }
}

/// Writes float32 tensors `(name, shape, values)` to a safetensors file at `path`, whole or not
/// at all (`sae eval --dump`'s activations, latents and reconstructions).
pub fn save_f32_tensors(
    path: &Path,
    tensors: &[(&str, Vec<usize>, &[f32])],
) -> Result<(), CheckpointError> {
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, values)| (name.to_string(), shape.clone(), f32_bytes(values)))
        .collect();
    write_atomically(path, &serialize_f32(&encoded, None)?)
}

/// SAELens's folding of a TopK SAE trained with `rescale_acts_by_decoder_norm`: the same
/// function with unit decoder rows (`b_enc` and `W_enc`'s columns times each row's norm).
fn fold_decoder_norms(w: &mut SaeWeights) {
    let (d, s) = (w.d_in, w.d_sae);
    for i in 0..s {
        let row = &mut w.w_dec[i * d..(i + 1) * d];
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-8);
        row.iter_mut().for_each(|v| *v /= norm);
        w.b_enc[i] *= norm;
        for j in 0..d {
            w.w_enc[j * s + i] *= norm;
        }
    }
}
