//! Background jobs for the derived views. A view asks for a result by its inputs (a key); at most
//! one job per view runs at a time, on its own thread, and its result comes back to the UI thread
//! as a [`Message::Computed`], so no frame ever waits for one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;

use super::Message;
use super::views::{
    AnalyzeKey, CircuitsKey, CircuitsView, DataKey, DataView, ExhaustiveKey, HeadCircuits,
    InspectorKey, TraceBatch, ViewKey,
};
use crate::analysis::{Analysis, ExhaustiveReport};
use crate::model::NdArray;
use crate::train::panic_message;

/// A finished job: its key and its result (an error message if it failed or panicked).
pub enum Computed {
    Inspection(InspectorKey, Result<super::views::Inspected, String>),
    Data(DataKey, Result<DataView, String>),
    MeanZ(ViewKey, Result<NdArray, String>),
    Exhaustive(ExhaustiveKey, Result<ExhaustiveReport, String>),
    SequenceReport(
        ExhaustiveKey,
        Result<crate::analysis::SequenceReport, String>,
    ),
    Circuits(CircuitsKey, Result<CircuitsView, String>),
    Analysis(AnalyzeKey, Result<Analysis, String>),
    HeadCircuits(ViewKey, Result<HeadCircuits, String>),
    Traces(TraceBatch),
}

/// The latest result of one view and the job computing the next.
pub struct Derived<K, T> {
    shown: Option<(K, Result<T, String>)>,
    running: Option<K>,
}

impl<K, T> Default for Derived<K, T> {
    fn default() -> Self {
        Self {
            shown: None,
            running: None,
        }
    }
}

impl<K: Clone + PartialEq, T> Derived<K, T> {
    /// Whether a job for `key` must be started now: its result is not shown and no job is
    /// running. A true answer marks it running, so the caller must start it.
    pub fn claim(&mut self, key: &K) -> bool {
        if self.running.is_some() || self.is_current(key) {
            return false;
        }
        self.running = Some(key.clone());
        true
    }

    /// Takes a job's result. One for an older key is still shown (drawn as "updating") until the
    /// job for the current key, started by the next `claim`, finishes.
    pub fn finish(&mut self, key: K, result: Result<T, String>)
    where
        K: Send + 'static,
        T: Send + 'static,
    {
        if self.running.as_ref() == Some(&key) {
            self.running = None;
        }
        if let Some(old) = self.shown.replace((key, result)) {
            drop_later(old);
        }
    }

    /// The latest result, whatever inputs it was computed for.
    pub fn latest(&self) -> Option<&Result<T, String>> {
        self.shown.as_ref().map(|(_, r)| r)
    }

    /// The result for exactly these inputs.
    pub fn get(&self, key: &K) -> Option<&Result<T, String>> {
        self.shown
            .as_ref()
            .filter(|(k, _)| k == key)
            .map(|(_, r)| r)
    }

    pub fn is_current(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }
}

/// Lowers the calling thread's priority (nice 10), so that background work yields the CPU to the
/// UI thread: on a 2-core machine the trainer, a job and the UI compete for the cores, and with
/// equal shares a frame waited behind them for tens of milliseconds. Where the OS offers no such
/// call, threads keep their priority.
pub fn yield_to_ui() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread; on Linux a thread id names one thread.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10) != 0 {
            log::debug!("cannot lower a background thread's priority");
        }
    }
}

/// Background jobs that panicked since the app started: each is a bug, shown as an error in
/// its view instead of taking the app down. The soak test asserts there are none.
static CRASHES: AtomicUsize = AtomicUsize::new(0);

pub fn crashed_jobs() -> usize {
    CRASHES.load(Ordering::Relaxed)
}

/// Jobs that ran longer than this give the memory they freed back to the OS.
const RELEASE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs a view's `work` on a new thread and sends what `deliver` makes of its result (see
/// [`run_off_ui`]); a thread that cannot be started is logged.
pub fn spawn<T: 'static>(
    tx: Sender<Message>,
    wake: impl Fn() + Send + 'static,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
    deliver: impl FnOnce(Result<T, String>) -> Computed + Send + 'static,
) {
    let deliver = move |result| Message::Computed(deliver(result));
    if let Err(e) = run_off_ui(tx, wake, work, deliver) {
        log::error!("cannot start a background job: {e}");
    }
}

/// Runs `work` on a new thread of lower priority and sends what `deliver` makes of its result.
/// A panic in `work` becomes an error result (and counts in [`crashed_jobs`]), so a failing job
/// never takes the app down.
pub fn run_off_ui<T: 'static>(
    tx: Sender<Message>,
    wake: impl Fn() + Send + 'static,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
    deliver: impl FnOnce(Result<T, String>) -> Message + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("toylens-job".into())
        .spawn(move || {
            yield_to_ui();
            let began = std::time::Instant::now();
            let result = catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| {
                let message = panic_message(&*panic);
                log::error!("a background job crashed: {message}");
                CRASHES.fetch_add(1, Ordering::Relaxed);
                Err(format!("the computation crashed: {message}"))
            });
            let _ = tx.send(deliver(result));
            wake();
            // A long job's temporaries go back to the OS on this thread, after the result is out.
            // Short ones (the head metrics' batches, the inspector) leave theirs for the next
            // job to reuse: purging and faulting pages back in at that rate cost frames here.
            if began.elapsed() > RELEASE_AFTER {
                crate::memory::release_freed();
            }
        })
        .map(drop)
}

/// Frees `value` on another thread: a data set or a model's history can be hundreds of MB, and
/// giving that much memory back to the OS takes tens of milliseconds a frame cannot spare.
pub fn drop_later<T: Send + 'static>(value: T) {
    // If no thread can be started, the value is dropped here, which is only slower.
    let _ = std::thread::Builder::new()
        .name("toylens-free".into())
        .spawn(move || {
            yield_to_ui();
            drop(value);
            crate::memory::release_freed();
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_claims_once_per_key_and_keeps_the_latest_result() {
        let mut slot: Derived<u32, &str> = Derived::default();
        assert!(slot.claim(&1));
        assert!(!slot.claim(&1), "already running");
        assert!(!slot.claim(&2), "one job at a time");
        slot.finish(1, Ok("one"));
        assert!(!slot.is_running());
        assert_eq!(slot.get(&1), Some(&Ok("one")));
        assert!(!slot.claim(&1), "shown already");
        assert!(slot.claim(&2));
        assert_eq!(
            slot.latest(),
            Some(&Ok("one")),
            "the old result stays until the new one"
        );
        assert_eq!(slot.get(&2), None);
        slot.finish(2, Err("failed".into()));
        assert_eq!(slot.get(&2), Some(&Err("failed".into())));
    }
}
