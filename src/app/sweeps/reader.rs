//! The Sweep workspace's reader thread: re-reads a sweep folder's results, and the histories of
//! the runs the view watches, and sends what changed as [`Message::Sweep`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{READ_EVERY, RunHistory, SweepEvent};
use crate::app::Message;
use crate::sweep::{METRICS, ReadCache, Summary, SweepFolder, slurm};

/// How often the reader asks Slurm (`squeue`, `sacct`) about a submitted sweep's tasks: less
/// often than it reads files, as a cluster's controller serves everyone.
const ASK_SLURM_EVERY: Duration = Duration::from_secs(5);

/// Reads a run's `metrics.jsonl`: each line's numbers (lists as their mean).
fn read_history(folder: &SweepFolder, index: usize) -> RunHistory {
    let text = std::fs::read_to_string(folder.run_dir(index).join(METRICS)).unwrap_or_default();
    let evaluations = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let mut out = BTreeMap::new();
            if let Value::Object(map) = v {
                for (k, v) in map {
                    let numbers: Vec<f64> = match &v {
                        Value::Number(n) => n.as_f64().into_iter().collect(),
                        Value::Array(items) => items.iter().filter_map(Value::as_f64).collect(),
                        _ => Vec::new(),
                    };
                    if !numbers.is_empty() {
                        out.insert(k, numbers.iter().sum::<f64>() / numbers.len() as f64);
                    }
                }
            }
            out
        })
        .collect();
    RunHistory {
        index,
        seed: folder.file.points.get(index).map_or(0, |p| p.seed),
        evaluations,
    }
}

/// Re-reads the folder every [`READ_EVERY`] (at once when the watched runs change), sending
/// what changed, until `stop` is set or the app is gone.
pub(super) fn spawn_reader(
    generation: u64,
    folder: SweepFolder,
    watched: Arc<Mutex<Vec<usize>>>,
    poke: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tx: Sender<Message>,
    wake: impl Fn() + Send + 'static,
) {
    std::thread::Builder::new()
        .name("toylens-sweep-reader".into())
        .spawn(move || {
            let mut last: Option<(Summary, Vec<RunHistory>, BTreeMap<usize, String>)> = None;
            let mut cache = ReadCache::default();
            let mut queue = BTreeMap::new();
            let mut asked: Option<Instant> = None;
            loop {
                let seen = poke.load(Ordering::Relaxed);
                let summary = Summary::read_cached(&folder, &mut cache);
                let runs = watched.lock().map(|w| w.clone()).unwrap_or_default();
                let histories: Vec<RunHistory> =
                    runs.iter().map(|&i| read_history(&folder, i)).collect();
                if asked.is_none_or(|t| t.elapsed() >= ASK_SLURM_EVERY) {
                    // Without Slurm here (or its answer) the view shows the files alone.
                    queue = slurm::queued_tasks(&folder).unwrap_or_default();
                    asked = Some(Instant::now());
                }
                let changed = last
                    .as_ref()
                    .is_none_or(|(s, h, q)| *s != summary || *h != histories || *q != queue);
                if changed {
                    last = Some((summary.clone(), histories.clone(), queue.clone()));
                    let event = SweepEvent::Read {
                        generation,
                        summary,
                        histories,
                        queue: queue.clone(),
                    };
                    if tx.send(Message::Sweep(event)).is_err() {
                        return;
                    }
                    wake();
                }
                for _ in 0..10 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if poke.load(Ordering::Relaxed) != seen {
                        break;
                    }
                    std::thread::sleep(READ_EVERY / 10);
                }
            }
        })
        .expect("a thread to read the sweep");
}
