//! A sweep folder: `sweep.json` (the sweep and its points) and a folder per point, `0/`, `1/`,
//! …, each with its resolved `config.json` and, once it has run, its records (see [`super::run`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SweepError;
use super::run::CONFIG;
use super::spec::{Point, SweepSpec};

/// The file that makes a folder a sweep folder.
pub const SWEEP_FILE: &str = "sweep.json";
/// `sweep.json`'s format.
const FORMAT: u32 = 1;

/// What `sweep.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// The format's version: what makes it a toylens sweep.
    pub toylens_sweep: u32,
    pub spec: SweepSpec,
    pub points: Vec<Point>,
}

/// An open sweep folder.
#[derive(Debug, Clone)]
pub struct SweepFolder {
    pub root: PathBuf,
    pub file: SweepFile,
}

impl SweepFolder {
    /// Writes a new sweep folder at `root`: every point's config checked first (a bad field
    /// or value is an error before anything is written), then the whole folder written beside
    /// it and moved into place, so that no half-written sweep is ever left. `root` may be
    /// missing or an empty folder; a sweep folder or any other folder with files is refused.
    pub fn create(root: &Path, spec: SweepSpec, base_dir: &Path) -> Result<Self, SweepError> {
        if root.join(SWEEP_FILE).exists() {
            return Err(SweepError::Invalid(format!(
                "{} is a sweep already: `toylens sweep resume {0}` runs what is missing, or \
                 choose another --out",
                root.display()
            )));
        }
        if root.exists() {
            let mut entries = std::fs::read_dir(root).map_err(|e| SweepError::io(root, e))?;
            if entries.next().is_some() {
                return Err(SweepError::Invalid(format!(
                    "{} holds other files and is not a sweep folder; choose an empty or new \
                     --out",
                    root.display()
                )));
            }
        }
        let configs = spec.check(base_dir)?;
        let file = SweepFile {
            toylens_sweep: FORMAT,
            points: spec.points(),
            spec,
        };
        let parent = match root.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| SweepError::io(&parent, e))?;
        let staging = tempfile::Builder::new()
            .prefix(".toylens-sweep-")
            .tempdir_in(&parent)
            .map_err(|e| SweepError::io(&parent, e))?;
        for (point, config) in file.points.iter().zip(&configs) {
            let dir = staging.path().join(point.index.to_string());
            std::fs::create_dir(&dir).map_err(|e| SweepError::io(&dir, e))?;
            let json = serde_json::to_string_pretty(&config.to_value()).expect("configs serialise");
            std::fs::write(dir.join(CONFIG), json)
                .map_err(|e| SweepError::io(&dir.join(CONFIG), e))?;
        }
        let json = serde_json::to_string_pretty(&file).expect("sweeps serialise");
        let sweep_json = staging.path().join(SWEEP_FILE);
        std::fs::write(&sweep_json, json).map_err(|e| SweepError::io(&sweep_json, e))?;
        if root.exists() {
            std::fs::remove_dir(root).map_err(|e| SweepError::io(root, e))?;
        }
        let staged = staging.keep();
        std::fs::rename(&staged, root).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staged);
            SweepError::io(root, e)
        })?;
        Ok(Self {
            root: root.to_path_buf(),
            file,
        })
    }

    /// Opens the sweep folder at `root`.
    pub fn open(root: &Path) -> Result<Self, SweepError> {
        let path = root.join(SWEEP_FILE);
        if !path.exists() {
            return Err(SweepError::Invalid(format!(
                "{} is not a sweep folder (it has no {SWEEP_FILE})",
                root.display()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| SweepError::io(&path, e))?;
        let file: SweepFile = serde_json::from_str(&text).map_err(|e| SweepError::io(&path, e))?;
        if file.toylens_sweep != FORMAT {
            return Err(SweepError::io(
                &path,
                format!(
                    "sweep format {} (this toylens reads {FORMAT})",
                    file.toylens_sweep
                ),
            ));
        }
        if file.points.iter().enumerate().any(|(i, p)| p.index != i)
            || file
                .points
                .iter()
                .any(|p| p.values.len() != file.spec.axes.len())
        {
            return Err(SweepError::io(&path, "its points do not match its axes"));
        }
        Ok(Self {
            root: root.to_path_buf(),
            file,
        })
    }

    /// Whether `path` is a sweep folder.
    pub fn is_sweep(path: &Path) -> bool {
        path.is_dir() && path.join(SWEEP_FILE).is_file()
    }

    pub fn len(&self) -> usize {
        self.file.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.file.points.is_empty()
    }

    /// Point `index`'s folder.
    pub fn run_dir(&self, index: usize) -> PathBuf {
        self.root.join(index.to_string())
    }
}
