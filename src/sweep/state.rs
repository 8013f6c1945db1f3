//! Where each point of a sweep stands, read from its folder: not started, started (its history
//! growing, or stopped without a result), finished, or a result that does not read. A
//! [`ReadCache`] keeps what was read, so a view that re-reads a large sweep every second opens
//! only the files that changed since.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::SystemTime;

use serde_json::Value;

use super::folder::SweepFolder;
use super::outcome::{RunResult, Status};
use super::run::{METRICS, RESULT};

/// Where a point stands.
#[derive(Debug, Clone, PartialEq)]
pub enum PointState {
    /// Not started: no result and no history.
    Pending,
    /// A history but no result: running, or stopped without writing one (killed, its node lost).
    Started(Progress),
    Finished(RunResult),
    /// A `result.json` that does not read.
    Unreadable(String),
}

impl PointState {
    /// Whether the point has a result, readable or not.
    pub fn has_result(&self) -> bool {
        matches!(self, Self::Finished(_) | Self::Unreadable(_))
    }
}

/// How far a started point has come, from the end of its `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The last evaluation's progress (`epoch` or `step`) and its value; `None` before one.
    pub at: Option<(&'static str, u64)>,
    /// When its history last grew.
    pub modified: SystemTime,
}

/// What was last read of each point, by the file it was read from and that file's stamp.
#[derive(Debug, Default)]
pub struct ReadCache {
    points: HashMap<usize, (Stamp, PointState)>,
}

/// A file as of a read: which one, its modification time and length. A file written since has
/// a new stamp (results are written whole, by rename; histories only grow).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stamp {
    result: bool,
    modified: SystemTime,
    len: u64,
}

/// How much of a history's end is read for its last evaluation: many lines.
const TAIL: u64 = 16 * 1024;

fn stamp(path: &Path, result: bool) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        result,
        modified: meta.modified()?,
        len: meta.len(),
    })
}

fn read_result(path: &Path) -> PointState {
    match std::fs::read_to_string(path) {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(result) => PointState::Finished(result),
            Err(e) => PointState::Unreadable(e.to_string()),
        },
        // Removed since its stamp was taken: a rerun starting.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => PointState::Pending,
        Err(e) => PointState::Unreadable(e.to_string()),
    }
}

/// The last complete evaluation in the history at `path`: its `epoch` (transformers) or
/// `step` (superposition).
fn last_evaluation(path: &Path) -> Option<(&'static str, u64)> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL))).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    // Only lines that end: the last may be half-written.
    let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
    complete.lines().rev().find_map(|line| {
        let value: Value = serde_json::from_str(line).ok()?;
        ["epoch", "step"]
            .into_iter()
            .find_map(|key| Some((key, value.get(key)?.as_u64()?)))
    })
}

impl SweepFolder {
    /// Where point `index` stands.
    pub fn state(&self, index: usize) -> PointState {
        self.state_cached(index, &mut ReadCache::default())
    }

    /// Where point `index` stands, reading only what changed since `cache` last saw it.
    pub fn state_cached(&self, index: usize, cache: &mut ReadCache) -> PointState {
        let dir = self.run_dir(index);
        let (result, metrics) = (dir.join(RESULT), dir.join(METRICS));
        let not_found = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        let (path, now) = match stamp(&result, true) {
            Ok(now) => (result, now),
            Err(e) if not_found(&e) => match stamp(&metrics, false) {
                Ok(now) => (metrics, now),
                Err(_) => {
                    cache.points.remove(&index);
                    return PointState::Pending;
                }
            },
            Err(e) => return PointState::Unreadable(e.to_string()),
        };
        if let Some((seen, state)) = cache.points.get(&index)
            && *seen == now
        {
            return state.clone();
        }
        let state = if now.result {
            read_result(&path)
        } else {
            PointState::Started(Progress {
                at: last_evaluation(&path),
                modified: now.modified,
            })
        };
        cache.points.insert(index, (now, state.clone()));
        state
    }

    /// The points `resume` runs again: those with no result, or a failed or unreadable one.
    pub fn to_rerun(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| match self.state(i) {
                PointState::Pending | PointState::Started(_) | PointState::Unreadable(_) => true,
                PointState::Finished(r) => r.status == Status::Failed,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::run::write_result;
    use crate::sweep::{SweepSpec, failed_result, parse_axis};

    fn folder(dir: &Path) -> SweepFolder {
        let spec = SweepSpec {
            base: serde_json::to_value(crate::train::RunConfig::from_preset(
                crate::train::Preset::Fast,
            ))
            .unwrap(),
            axes: vec![parse_axis("train.lr=0.001,0.002").unwrap()],
            seeds: vec![0],
            stop_at_milestone: false,
        };
        SweepFolder::create(&dir.join("s"), spec, dir).unwrap()
    }

    #[test]
    fn a_point_goes_from_pending_through_started_to_finished() {
        let dir = tempfile::tempdir().unwrap();
        let folder = folder(dir.path());
        let mut cache = ReadCache::default();
        assert_eq!(folder.state_cached(0, &mut cache), PointState::Pending);
        let history = folder.run_dir(0).join(METRICS);
        std::fs::write(&history, "").unwrap();
        let started = |cache: &mut ReadCache| match folder.state_cached(0, cache) {
            PointState::Started(p) => p.at,
            other => panic!("{other:?}"),
        };
        assert_eq!(started(&mut cache), None);
        // The last complete line counts; a half-written one after it does not.
        std::fs::write(
            &history,
            "{\"epoch\":1,\"loss\":2.0}\n{\"epoch\":2,\"loss\":1.5}\n{\"epoch\":3,\"lo",
        )
        .unwrap();
        assert_eq!(started(&mut cache), Some(("epoch", 2)));
        std::fs::write(&history, "{\"step\":100,\"loss\":[0.1,0.2]}\n").unwrap();
        assert_eq!(started(&mut cache), Some(("step", 100)));
        // A long history: only its end is read.
        let long: String = (0..5000)
            .map(|e| format!("{{\"epoch\":{e},\"loss\":1.0}}\n"))
            .collect();
        std::fs::write(&history, long).unwrap();
        assert_eq!(started(&mut cache), Some(("epoch", 4999)));
        let result = failed_result(Status::Timeout, "stopped".into(), 1.0);
        write_result(&folder.run_dir(0), &result).unwrap();
        assert_eq!(
            folder.state_cached(0, &mut cache),
            PointState::Finished(result.clone())
        );
        assert!(folder.state(0).has_result());
        // A rerun removes the result: the point is started again.
        std::fs::remove_file(folder.run_dir(0).join(RESULT)).unwrap();
        assert!(matches!(
            folder.state_cached(0, &mut cache),
            PointState::Started(_)
        ));
        assert_eq!(folder.to_rerun(), [0, 1]);
    }

    #[test]
    fn the_cache_reads_a_result_again_only_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let folder = folder(dir.path());
        let mut cache = ReadCache::default();
        let first = failed_result(Status::Failed, "one".into(), 1.0);
        write_result(&folder.run_dir(1), &first).unwrap();
        assert_eq!(
            folder.state_cached(1, &mut cache),
            PointState::Finished(first.clone())
        );
        // Made unreadable behind the cache's back but with the same stamp: the cached state.
        let path = folder.run_dir(1).join(RESULT);
        let meta = std::fs::metadata(&path).unwrap();
        let garbage = vec![b'x'; meta.len() as usize];
        std::fs::write(&path, &garbage).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(meta.modified().unwrap())
            .unwrap();
        assert_eq!(
            folder.state_cached(1, &mut cache),
            PointState::Finished(first)
        );
        // Without the cache it is read, and does not.
        assert!(matches!(folder.state(1), PointState::Unreadable(_)));
        // A new stamp: read again.
        let second = failed_result(Status::Timeout, "two, longer".into(), 2.0);
        write_result(&folder.run_dir(1), &second).unwrap();
        assert_eq!(
            folder.state_cached(1, &mut cache),
            PointState::Finished(second)
        );
    }
}
