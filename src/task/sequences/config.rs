//! The `sequences` task's settings: where its data come from (a file, or one of the examples
//! generated in memory exactly as `toylens data gen` writes it), the validation share, and the
//! data once read.
//!
//! Paths in a config are relative to the config's folder; [`SequencesConfig::load`] resolves
//! them, reads the data and records the file's SHA-256. A config that names a SHA-256 (every
//! checkpoint does) refuses a file whose contents changed since.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::generate::{Example, MAX_DIGITS, example_jsonl, example_vocab};
use super::{DataError, SequenceData, read_data};

/// The share of sequences drawn into validation where the file gives no split.
pub const DEFAULT_VAL_FRAC: f64 = 0.1;

/// An example data set, generated in memory: what `toylens data gen <name> --digits <digits>
/// --samples <samples> --seed <seed>` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExampleData {
    pub name: Example,
    pub digits: usize,
    pub samples: usize,
    pub seed: u64,
}

impl ExampleData {
    /// The command that writes the same data to a file.
    pub fn command(&self) -> String {
        format!(
            "toylens data gen {} --digits {} --samples {} --seed {}",
            self.name.name(),
            self.digits,
            self.samples,
            self.seed
        )
    }
}

/// A task defined by data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequencesConfig {
    /// The data file (`.jsonl`, `.npy`, `.npz`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Its vocabulary (`vocab.json`); a `vocab.json` beside the data is used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<PathBuf>,
    /// Instead of a file: an example generated in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<ExampleData>,
    /// The share of sequences drawn (by the run's seed) into validation where the file gives no
    /// split.
    #[serde(default = "default_val_frac")]
    pub val_frac: f64,
    /// The data file's SHA-256 (hex) when it was read: a file that changed since is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The data, once [`Self::load`] has read them.
    #[serde(skip)]
    data: Option<Arc<SequenceData>>,
}

fn default_val_frac() -> f64 {
    DEFAULT_VAL_FRAC
}

/// Two configs are the same task when they name the same data; whether either is read yet does
/// not matter.
impl PartialEq for SequencesConfig {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
            && self.vocab == other.vocab
            && self.example == other.example
            && self.val_frac == other.val_frac
            && self.sha256 == other.sha256
    }
}

impl SequencesConfig {
    /// The data of `path` (with the vocabulary `vocab`, if named), not read yet.
    pub fn file(path: PathBuf, vocab: Option<PathBuf>) -> Self {
        Self {
            path: Some(path),
            vocab,
            example: None,
            val_frac: DEFAULT_VAL_FRAC,
            sha256: None,
            data: None,
        }
    }

    /// An example's data, generated and read at once (left unread, which validation reports,
    /// only if the example's settings are out of range).
    pub fn example(example: ExampleData) -> Self {
        let mut task = Self {
            path: None,
            vocab: None,
            example: Some(example),
            val_frac: DEFAULT_VAL_FRAC,
            sha256: None,
            data: None,
        };
        // An error leaves the data unread, and `TaskConfig::validate` says so.
        let _ = task.load(Path::new("."));
        task
    }

    /// The training and validation sequences for `seed` (none before the data are read).
    pub fn split(&self, seed: u64) -> (Vec<u32>, Vec<u32>) {
        self.data()
            .map_or_else(Default::default, |d| d.split(self.val_frac, seed))
    }

    /// How many sequences train for `seed`.
    pub fn train_count(&self, seed: u64) -> usize {
        self.split(seed).0.len()
    }

    /// The data, where they have been read.
    pub fn data(&self) -> Option<&Arc<SequenceData>> {
        self.data.as_ref()
    }

    /// Where the data come from, in words: the file, or the example's command.
    pub fn source(&self) -> String {
        match (&self.path, &self.example) {
            (Some(path), _) => path.display().to_string(),
            (None, Some(example)) => format!(
                "the {} example ({})",
                example.name.name(),
                example.command()
            ),
            (None, None) => "no data named".into(),
        }
    }

    /// The file's name (or the example's), short, for titles.
    pub fn short_name(&self) -> String {
        match (&self.path, &self.example) {
            (Some(path), _) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
            (None, Some(example)) => format!("{} example", example.name.name()),
            (None, None) => "no data".into(),
        }
    }

    /// The settings on their own, before any data are read.
    pub fn check_settings(&self) -> Result<(), String> {
        match (&self.path, &self.example) {
            (Some(_), Some(_)) => return Err("give the data's path or an example, not both".into()),
            (None, None) => {
                return Err("the sequences task needs its data: \"path\": \"data.jsonl\"".into());
            }
            (None, Some(e)) => {
                if e.digits == 0 || e.digits > MAX_DIGITS {
                    return Err(format!(
                        "example digits must be 1 to {MAX_DIGITS}, got {}",
                        e.digits
                    ));
                }
                if e.samples == 0 || e.samples > 1_000_000 {
                    return Err(format!(
                        "example samples must be 1 to 1000000, got {}",
                        e.samples
                    ));
                }
            }
            (Some(_), None) => {}
        }
        if !(0.0..1.0).contains(&self.val_frac) {
            return Err(format!(
                "val_frac must be at least 0 and below 1, got {}",
                self.val_frac
            ));
        }
        Ok(())
    }

    /// Reads the data: paths relative to `base` (the config's folder) are resolved and kept
    /// absolute, a `vocab.json` beside the data is taken when no vocabulary is named, and the
    /// file's SHA-256 is recorded, or checked against the one the config names. On an error
    /// nothing changes.
    pub fn load(&mut self, base: &Path) -> Result<(), DataError> {
        if let Err(message) = self.check_settings() {
            let name = self.path.clone().unwrap_or_else(|| "the task".into());
            return Err(DataError::new(&name, message));
        }
        if let Some(example) = self.example {
            self.data = Some(example_data(example)?);
            return Ok(());
        }
        let path = resolve(base, self.path.as_deref().unwrap_or(Path::new("")));
        let vocab = match &self.vocab {
            Some(v) => Some(resolve(base, v)),
            None => Some(path.with_file_name("vocab.json")).filter(|v| v.is_file()),
        };
        let data = read_data(&path, vocab.as_deref())?;
        let sha256 = file_sha256(&path)?;
        if let Some(saved) = &self.sha256
            && !saved.eq_ignore_ascii_case(&sha256)
        {
            return Err(DataError::new(
                &path,
                format!(
                    "the file changed since the model was saved with it (SHA-256 {} then, {} \
                     now); attach the data again to use the new file",
                    &saved[..saved.len().min(12)],
                    &sha256[..12]
                ),
            ));
        }
        self.path = Some(path);
        self.vocab = vocab;
        self.sha256 = Some(sha256);
        self.data = Some(Arc::new(data));
        Ok(())
    }
}

/// An example's sequences, generated as `toylens data gen` writes them and read back through
/// the JSON Lines reader. The last few are kept: the side panel compares presets every frame.
fn example_data(example: ExampleData) -> Result<Arc<SequenceData>, DataError> {
    static MADE: Mutex<Vec<(ExampleData, Arc<SequenceData>)>> = Mutex::new(Vec::new());
    let made = |list: &Vec<(ExampleData, Arc<SequenceData>)>| {
        list.iter()
            .find(|(e, _)| *e == example)
            .map(|(_, d)| d.clone())
    };
    if let Some(data) = made(&MADE.lock().unwrap_or_else(|e| e.into_inner())) {
        return Ok(data);
    }
    let text = example_jsonl(example.name, example.digits, example.samples, example.seed);
    let label = PathBuf::from(format!("the {} example", example.name.name()));
    let data = Arc::new(super::jsonl::read_from(
        &label,
        text.as_bytes(),
        Some(example_vocab()),
    )?);
    let mut list = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if list.len() >= 4 {
        list.remove(0);
    }
    list.push((example, data.clone()));
    Ok(data)
}

/// `path` as it is when absolute, else under `base`, made absolute.
fn resolve(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    std::path::absolute(&joined).unwrap_or(joined)
}

/// The SHA-256 of the file at `path`, as lowercase hex.
pub fn file_sha256(path: &Path) -> Result<String, DataError> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| DataError::new(path, format!("cannot read it: {e}")))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| DataError::new(path, format!("cannot read it: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
