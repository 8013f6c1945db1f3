//! What a sweep runs: a base config (either model family's), axes over any of its fields, and
//! seeds; the grid's points, and each point's resolved, checked config.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SweepError;
use crate::config::{Preset, RunConfig};
use crate::superposition::{TmsPreset, TmsRun};

/// One swept field (a dotted path into the config, such as `train.lr`, or `preset`) and its
/// values, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axis {
    pub field: String,
    pub values: Vec<Value>,
}

/// A sweep: `sweep.json` in a sweep folder holds one, and `--sweep FILE.json` reads one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// The config every point starts from: a transformer run's or a superposition run's, with
    /// any field left out taking its default.
    #[serde(default = "empty_object")]
    pub base: Value,
    #[serde(default)]
    pub axes: Vec<Axis>,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// End each run at its task's milestone (see `toylens train --stop-at-milestone`).
    #[serde(default)]
    pub stop_at_milestone: bool,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// A point of the grid: a value for each axis (in the axes' order) and a seed. Its runs's
/// folder is named by its index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub index: usize,
    pub values: Vec<Value>,
    pub seed: u64,
}

/// A run's config, of either model family.
#[derive(Debug, Clone)]
pub enum RunSpec {
    Transformer(RunConfig),
    Superposition(TmsRun),
}

impl RunSpec {
    /// Parses and checks a run config (its data paths relative to `base_dir`).
    pub fn from_value(value: &Value, base_dir: &Path) -> Result<Self, String> {
        Self::parse(value, base_dir, false)
    }

    /// `fit_model`: a transformer's vocabulary and context follow its task (where a sweep
    /// changes the task's settings and not those of the model).
    fn parse(value: &Value, base_dir: &Path, fit_model: bool) -> Result<Self, String> {
        if TmsRun::is_tms_json(value) {
            TmsRun::from_json(&value.to_string())
                .map(RunSpec::Superposition)
                .map_err(|e| e.to_string())
        } else {
            let text = value.to_string();
            let cfg = if fit_model {
                RunConfig::from_json_fitting_model(&text, base_dir)
            } else {
                RunConfig::from_json_in(&text, base_dir)
            }
            .map_err(|e| e.to_string())?;
            Ok(RunSpec::Transformer(cfg))
        }
    }

    /// The whole config, every default written out: what a run folder's `config.json` holds.
    pub fn to_value(&self) -> Value {
        match self {
            RunSpec::Transformer(cfg) => serde_json::to_value(cfg),
            RunSpec::Superposition(run) => serde_json::to_value(run),
        }
        .expect("configs serialise")
    }
}

/// `--grid field=v1,v2,…`: each value JSON where it parses as JSON (numbers, booleans, quoted
/// strings), a plain string otherwise.
pub fn parse_axis(text: &str) -> Result<Axis, SweepError> {
    let bad = |why: &str| SweepError::Invalid(format!("--grid {text}: {why}"));
    let (field, values) = text
        .split_once('=')
        .ok_or_else(|| bad("write it as field=value1,value2 (for example train.lr=1e-3,3e-3)"))?;
    let field = field.trim();
    if field.is_empty()
        || !field
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(bad("the field is a dotted path such as train.lr or task.p"));
    }
    if field == "seed" {
        return Err(bad("sweep seeds with --seeds"));
    }
    let values: Vec<Value> = values
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string())))
        .collect();
    if values.is_empty() {
        return Err(bad("give at least one value"));
    }
    Ok(Axis {
        field: field.to_string(),
        values,
    })
}

/// `0..5` (end excluded), `0,3,7` or one seed.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, SweepError> {
    let bad = || {
        SweepError::Invalid(format!(
            "--seeds \"{text}\": use a range like 0..5, a list like 0,3,7 or one seed"
        ))
    };
    if let Some((a, b)) = text.split_once("..") {
        let (a, b): (u64, u64) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if b <= a || b - a > 100_000 {
            return Err(bad());
        }
        return Ok((a..b).collect());
    }
    text.split(',')
        .map(|s| s.trim().parse().map_err(|_| bad()))
        .collect()
}

/// A preset's whole config (either family), by its command-line name.
pub fn preset_config(name: &Value) -> Result<Value, String> {
    use clap::ValueEnum;
    let name = name
        .as_str()
        .ok_or_else(|| format!("a preset is named by a string, not {name}"))?;
    if let Ok(p) = Preset::from_str(name, false) {
        return Ok(serde_json::to_value(RunConfig::from_preset(p)).expect("configs serialise"));
    }
    if let Ok(p) = TmsPreset::from_str(name, false) {
        return Ok(serde_json::to_value(TmsRun::from_preset(p)).expect("configs serialise"));
    }
    let names: Vec<String> = Preset::ALL
        .iter()
        .map(|p| p.name().to_string())
        .chain(
            TmsPreset::value_variants()
                .iter()
                .filter_map(|p| p.to_possible_value().map(|v| v.get_name().to_string())),
        )
        .collect();
    Err(format!(
        "no preset is called \"{name}\" (there are {})",
        names.join(", ")
    ))
}

/// Sets the dotted `field` of `config` to `value`, making the groups on the way.
fn set_field(config: &mut Value, field: &str, value: Value) -> Result<(), String> {
    let mut at = config;
    let parts: Vec<&str> = field.split('.').collect();
    for (k, part) in parts.iter().enumerate() {
        let Value::Object(map) = at else {
            return Err(format!(
                "{} is a value, not a group of settings",
                parts[..k].join(".")
            ));
        };
        if k + 1 == parts.len() {
            map.insert(part.to_string(), value);
            return Ok(());
        }
        at = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    unreachable!("a field has at least one part")
}

/// A data-file task's paths made absolute (relative ones are the base config's folder's), so
/// that a run folder's config reads the same data from anywhere.
fn absolute_paths(config: &mut Value, base_dir: &Path) {
    let Some(task) = config.get_mut("task").and_then(Value::as_object_mut) else {
        return;
    };
    for key in ["path", "vocab"] {
        if let Some(Value::String(p)) = task.get_mut(key)
            && Path::new(p.as_str()).is_relative()
        {
            let joined = base_dir.join(&*p);
            let joined = std::fs::canonicalize(&joined).unwrap_or(joined);
            *p = joined.to_string_lossy().into_owned();
        }
    }
}

impl SweepSpec {
    /// Whether the model's vocabulary and context follow the task: an axis changes the task's
    /// settings and none sets them on the model.
    fn fits_model(&self) -> bool {
        let sets = |prefix: &str| self.axes.iter().any(|a| a.field.starts_with(prefix));
        sets("task.")
            && ![
                "model.d_vocab",
                "model.d_vocab_out",
                "model.n_ctx",
                "model.d_model",
            ]
            .iter()
            .any(|f| self.axes.iter().any(|a| a.field == *f))
    }

    fn parse(&self, config: &Value, base_dir: &Path) -> Result<RunSpec, String> {
        RunSpec::parse(config, base_dir, self.fits_model())
    }

    /// How many runs the grid holds (saturating, for grids too large to count).
    pub fn len(&self) -> usize {
        self.axes
            .iter()
            .fold(self.seeds.len(), |n, a| n.saturating_mul(a.values.len()))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every point: the last axis varies fastest, then the seeds innermost.
    pub fn points(&self) -> Vec<Point> {
        let n = self.len();
        let mut points = Vec::with_capacity(n);
        for index in 0..n {
            let mut rest = index;
            let seed = self.seeds[rest % self.seeds.len()];
            rest /= self.seeds.len();
            let mut values = vec![Value::Null; self.axes.len()];
            for (a, axis) in self.axes.iter().enumerate().rev() {
                values[a] = axis.values[rest % axis.values.len()].clone();
                rest /= axis.values.len();
            }
            points.push(Point {
                index,
                values,
                seed,
            });
        }
        points
    }

    /// The index of the point with value `values[a]` of each axis `a` and seed `seed` (an index
    /// into `seeds`): the inverse of [`Self::points`]'s order.
    pub fn index_of(&self, values: &[usize], seed: usize) -> usize {
        let grid = self
            .axes
            .iter()
            .zip(values)
            .fold(0, |i, (axis, &v)| i * axis.values.len() + v);
        grid * self.seeds.len() + seed
    }

    /// The config of a point (`values` per axis), unchecked: the base, or the preset an axis
    /// names, with each other axis's field set and the seed.
    fn config_of(
        &self,
        values: &[Option<&Value>],
        seed: u64,
        base_dir: &Path,
    ) -> Result<Value, String> {
        let mut config = self.base.clone();
        for (axis, value) in self.axes.iter().zip(values) {
            if let (Some(value), "preset") = (value, axis.field.as_str()) {
                config = preset_config(value)?;
            }
        }
        for (axis, value) in self.axes.iter().zip(values) {
            if let Some(value) = value
                && axis.field != "preset"
            {
                set_field(&mut config, &axis.field, (*value).clone())?;
            }
        }
        set_field(&mut config, "seed", Value::from(seed))?;
        absolute_paths(&mut config, base_dir);
        Ok(config)
    }

    /// The checked config of `point`.
    pub fn resolve(&self, point: &Point, base_dir: &Path) -> Result<RunSpec, SweepError> {
        let values: Vec<Option<&Value>> = point.values.iter().map(Some).collect();
        let described = || {
            self.axes
                .iter()
                .zip(&point.values)
                .map(|(a, v)| format!("{}={v}", a.field))
                .chain([format!("seed={}", point.seed)])
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.config_of(&values, point.seed, base_dir)
            .and_then(|c| self.parse(&c, base_dir))
            .map_err(|e| SweepError::Invalid(format!("the point {}: {e}", described())))
    }

    /// Checks the sweep before anything is written: the base alone, then each value of each
    /// axis on the base (so that an unknown field or a value of the wrong type names its
    /// field), returning every point's config.
    pub fn check(&self, base_dir: &Path) -> Result<Vec<RunSpec>, SweepError> {
        if self.seeds.is_empty() {
            return Err(SweepError::Invalid(
                "a sweep needs at least one seed".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for axis in &self.axes {
            if !seen.insert(axis.field.as_str()) {
                return Err(SweepError::Invalid(format!(
                    "the field {} is swept twice",
                    axis.field
                )));
            }
            if axis.values.is_empty() {
                return Err(SweepError::Invalid(format!(
                    "the field {} has no values",
                    axis.field
                )));
            }
        }
        let has_preset = self.axes.iter().any(|a| a.field == "preset");
        let seed = self.seeds[0];
        if !has_preset {
            let none = vec![None; self.axes.len()];
            self.config_of(&none, seed, base_dir)
                .and_then(|c| self.parse(&c, base_dir))
                .map_err(|e| SweepError::Invalid(format!("the base config: {e}")))?;
        }
        // Each value alone on the base (with the first preset, where an axis names presets).
        for (a, axis) in self.axes.iter().enumerate() {
            for value in &axis.values {
                let values: Vec<Option<&Value>> = self
                    .axes
                    .iter()
                    .enumerate()
                    .map(|(b, other)| match (b == a, other.field == "preset") {
                        (true, _) => Some(value),
                        (false, true) => other.values.first(),
                        (false, false) => None,
                    })
                    .collect();
                self.config_of(&values, seed, base_dir)
                    .and_then(|c| self.parse(&c, base_dir))
                    .map_err(|e| {
                        SweepError::Invalid(format!("--grid {}={value}: {e}", axis.field))
                    })?;
            }
        }
        self.points()
            .iter()
            .map(|p| self.resolve(p, base_dir))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(grid: &[&str]) -> SweepSpec {
        SweepSpec {
            base: serde_json::to_value(RunConfig::from_preset(Preset::Fast)).unwrap(),
            axes: grid.iter().map(|g| parse_axis(g).unwrap()).collect(),
            seeds: vec![0, 1],
            stop_at_milestone: false,
        }
    }

    #[test]
    fn the_grid_is_every_combination_with_the_seeds_innermost() {
        let s = spec(&["train.lr=1e-3,3e-3", "train.weight_decay=0,0.1,1"]);
        let points = s.points();
        assert_eq!(points.len(), 12);
        assert_eq!(points[0].values, vec![Value::from(1e-3), Value::from(0)]);
        assert_eq!((points[0].seed, points[1].seed), (0, 1));
        assert_eq!(points[2].values, vec![Value::from(1e-3), Value::from(0.1)]);
        assert_eq!(points[11].values, vec![Value::from(3e-3), Value::from(1)]);
        for p in &points {
            let values: Vec<usize> = s
                .axes
                .iter()
                .zip(&p.values)
                .map(|(a, v)| a.values.iter().position(|x| x == v).unwrap())
                .collect();
            let seed = s.seeds.iter().position(|&x| x == p.seed).unwrap();
            assert_eq!(s.index_of(&values, seed), p.index);
        }
        let configs = s.check(Path::new(".")).unwrap();
        let RunSpec::Transformer(cfg) = &configs[11] else {
            panic!("a transformer run")
        };
        assert_eq!(
            (cfg.train.lr, cfg.train.weight_decay, cfg.seed),
            (3e-3, 1.0, 1)
        );
    }

    #[test]
    fn a_bad_field_or_value_names_the_field() {
        let err = spec(&["train.lrr=1e-3"]).check(Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("--grid train.lrr=0.001"), "{err}");
        assert!(err.to_string().contains("unknown field `lrr`"), "{err}");
        let err = spec(&["train.epochs=ten"])
            .check(Path::new("."))
            .unwrap_err();
        assert!(
            err.to_string().contains("--grid train.epochs=\"ten\""),
            "{err}"
        );
        assert!(err.to_string().contains("invalid type"), "{err}");
        let err = spec(&["train.lr=-1"]).check(Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("--grid train.lr=-1"), "{err}");
        assert!(parse_axis("train.lr").is_err());
        assert!(parse_axis("seed=1,2").is_err());
        assert!(parse_axis("train.lr=").is_err());
    }

    #[test]
    fn a_preset_axis_replaces_the_base() {
        let s = spec(&["preset=fast,tms-intro", "train.lr=0.01"]);
        let configs = s.check(Path::new(".")).unwrap();
        assert!(matches!(configs[0], RunSpec::Transformer(_)));
        let RunSpec::Superposition(run) = &configs[2] else {
            panic!("a superposition run")
        };
        assert_eq!((run.train.lr, run.seed), (0.01, 0));
        let err = spec(&["preset=fastest"]).check(Path::new(".")).unwrap_err();
        assert!(
            err.to_string().contains("no preset is called \"fastest\""),
            "{err}"
        );
    }
}
