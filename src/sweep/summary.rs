//! `summary.csv` and `summary.json`: a row per finished point, in the points' order, with the
//! same columns whenever the same runs have finished (so collecting twice writes the same
//! files).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::SweepError;
use super::folder::SweepFolder;
use super::outcome::RunResult;
use super::state::{PointState, Progress, ReadCache};

pub const SUMMARY_CSV: &str = "summary.csv";
pub const SUMMARY_JSON: &str = "summary.json";

/// A finished point: its place in the grid and its result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub index: usize,
    /// The axes' values, by field (a map, so not in the axes' order: [`Summary::fields`] is).
    pub values: serde_json::Map<String, Value>,
    pub seed: u64,
    #[serde(flatten)]
    pub result: RunResult,
}

/// The finished points of a sweep, and where the others stand.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub fields: Vec<String>,
    pub rows: Vec<Row>,
    /// How many points have not started.
    pub pending: usize,
    /// The points started without a result yet, and how far each has come.
    pub started: BTreeMap<usize, Progress>,
    /// Points whose `result.json` does not read, with why.
    pub unreadable: Vec<(usize, String)>,
}

impl Summary {
    /// Reads every point's result.
    pub fn read(folder: &SweepFolder) -> Self {
        Self::read_cached(folder, &mut ReadCache::default())
    }

    /// Reads every point's result, opening only the files that changed since `cache` saw them.
    pub fn read_cached(folder: &SweepFolder, cache: &mut ReadCache) -> Self {
        let fields: Vec<String> = folder
            .file
            .spec
            .axes
            .iter()
            .map(|a| a.field.clone())
            .collect();
        let mut rows = Vec::new();
        let (mut pending, mut started, mut unreadable) = (0, BTreeMap::new(), Vec::new());
        for point in &folder.file.points {
            match folder.state_cached(point.index, cache) {
                PointState::Pending => pending += 1,
                PointState::Started(progress) => {
                    started.insert(point.index, progress);
                }
                PointState::Unreadable(why) => unreadable.push((point.index, why)),
                PointState::Finished(result) => rows.push(Row {
                    index: point.index,
                    values: fields
                        .iter()
                        .cloned()
                        .zip(point.values.iter().cloned())
                        .collect(),
                    seed: point.seed,
                    result,
                }),
            }
        }
        Self {
            fields,
            rows,
            pending,
            started,
            unreadable,
        }
    }

    /// How many points have no result yet, started or not.
    pub fn unfinished(&self) -> usize {
        self.pending + self.started.len()
    }

    /// Every metric and milestone name any row has, sorted.
    pub fn metric_names(&self) -> (Vec<String>, Vec<String>) {
        let metrics: BTreeSet<&String> = self
            .rows
            .iter()
            .flat_map(|r| r.result.metrics.keys())
            .collect();
        let milestones: BTreeSet<&String> = self
            .rows
            .iter()
            .flat_map(|r| r.result.milestones.keys())
            .collect();
        (
            metrics.into_iter().cloned().collect(),
            milestones.into_iter().cloned().collect(),
        )
    }

    /// The CSV: index, the axes, seed, status, regime, trained, wall_s, then each milestone
    /// (`<name>` in the run's unit, empty where it never happened) and each metric.
    pub fn csv(&self) -> String {
        let (metrics, milestones) = self.metric_names();
        let mut header: Vec<String> = vec!["index".into()];
        header.extend(self.fields.iter().cloned());
        header.extend(["seed", "status", "regime", "unit", "trained", "wall_s"].map(String::from));
        header.extend(milestones.iter().cloned());
        header.extend(metrics.iter().cloned());
        let mut out = header
            .iter()
            .map(|h| csv_cell(h))
            .collect::<Vec<_>>()
            .join(",")
            + "\n";
        for row in &self.rows {
            let r = &row.result;
            let mut cells = vec![row.index.to_string()];
            cells.extend(self.fields.iter().map(|f| match row.values.get(f) {
                Some(Value::String(s)) => csv_cell(s),
                Some(other) => csv_cell(&other.to_string()),
                None => String::new(),
            }));
            cells.extend([
                row.seed.to_string(),
                r.status.name().to_string(),
                r.regime.clone().unwrap_or_default(),
                r.unit.clone(),
                r.trained.to_string(),
                format!("{:.3}", r.wall_s),
            ]);
            cells.extend(
                milestones
                    .iter()
                    .map(|m| r.milestones.get(m).map_or(String::new(), |v| v.to_string())),
            );
            cells.extend(
                metrics
                    .iter()
                    .map(|m| r.metrics.get(m).map_or(String::new(), |v| v.to_string())),
            );
            out += &(cells.join(",") + "\n");
        }
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(&self.rows).expect("rows serialise")
    }

    /// Writes `summary.csv` and `summary.json` into the sweep folder, each whole or not at all.
    pub fn write(&self, folder: &SweepFolder) -> Result<(), SweepError> {
        for (name, text) in [(SUMMARY_CSV, self.csv()), (SUMMARY_JSON, self.json())] {
            let path = folder.root.join(name);
            super::write_file(&path, text.as_bytes())?;
        }
        Ok(())
    }
}

/// A CSV cell, quoted where it must be.
fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
