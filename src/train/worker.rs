//! Runs a [`Trainer`] on its own thread. The driver sends [`Command`]s and receives [`Event`]s;
//! nothing else crosses the boundary, and every payload is a plain host copy.
//!
//! The worker wakes its driver through an injected closure (for the GUI, `request_repaint`), so
//! this module never depends on a UI.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use candle_core::Device;

use super::driver::{Control, Ending, Progress, drive};
use super::{RunConfig, TrainError, Trainer};
use crate::metrics::{Metrics, StepMetrics};
use crate::model::Weights;

/// What a driver can ask of a running worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    /// Ends the run after the current step, keeping the latest weights.
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// Every epoch ran.
    Completed,
    /// Stopped on request.
    Stopped,
}

/// Everything the worker reports.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        total_epochs: usize,
        steps_per_epoch: usize,
        /// How training computes ([`crate::train::Trainer::describe_path`]).
        path: String,
        /// The weights before the first step (the epoch-0 snapshot).
        initial_weights: Weights,
    },
    Step(StepMetrics),
    /// An evaluation period ended; `weights` is a snapshot taken right after it.
    Evaluation {
        metrics: Metrics,
        weights: Weights,
    },
    Paused,
    Resumed,
    /// The loss stopped being finite. The run has ended (resuming would only diverge again);
    /// `weights` are the last finite ones.
    Diverged {
        message: String,
        weights: Weights,
    },
    Finished {
        reason: FinishReason,
        epochs_done: usize,
        weights: Weights,
    },
    /// The run could not go on (bad config, tensor failure, a panic in the worker).
    Error(String),
}

/// The driver's side of a running worker.
pub struct TrainingHandle {
    commands: Sender<Command>,
    /// Present when events come back through the handle rather than a caller's sink.
    events: Option<Receiver<Event>>,
    thread: Option<JoinHandle<()>>,
}

impl TrainingHandle {
    pub fn send(&self, command: Command) {
        // A worker that has already finished no longer listens; that is not an error.
        let _ = self.commands.send(command);
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Option<Event> {
        self.events.as_ref()?.try_recv().ok()
    }

    /// Blocks for the next event; `None` once the worker has exited and every event was read.
    pub fn recv(&self) -> Option<Event> {
        self.events.as_ref()?.recv().ok()
    }

    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for TrainingHandle {
    /// Asks the worker to stop after its current step, without waiting: a UI thread dropping a
    /// finished run must not wait while the worker frees its data sets. Its remaining events go
    /// to a receiver nobody reads.
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
    }
}

/// Starts a run on a new thread; its events come back through [`TrainingHandle::recv`].
/// `init` replaces the seeded initial weights (to continue from a checkpoint); `wake` is called
/// after every event.
pub fn spawn_training(
    cfg: RunConfig,
    init: Option<Weights>,
    device: Device,
    wake: Arc<dyn Fn() + Send + Sync>,
) -> TrainingHandle {
    let (tx, rx) = channel();
    let mut handle = spawn_training_to(cfg, init, device, move |e| {
        let _ = tx.send(e);
        wake();
    });
    handle.events = Some(rx);
    handle
}

/// Starts a run whose events go to `sink` (for example into an app's own message channel).
pub fn spawn_training_to(
    cfg: RunConfig,
    init: Option<Weights>,
    device: Device,
    sink: impl Fn(Event) + Send + 'static,
) -> TrainingHandle {
    spawn_worker(
        move |commands, emit| run(cfg, init, &device, commands, emit),
        sink,
    )
}

/// Runs `job` on the worker thread. A panic in `job` becomes an [`Event::Error`], so a crashed
/// run never takes its driver down.
pub fn spawn_worker<F>(job: F, sink: impl Fn(Event) + Send + 'static) -> TrainingHandle
where
    F: FnOnce(&Receiver<Command>, &dyn Fn(Event)) -> Result<(), TrainError> + Send + 'static,
{
    let (command_tx, command_rx) = channel();
    let thread = std::thread::Builder::new()
        .name("toylens-train".into())
        .spawn(move || {
            match catch_unwind(AssertUnwindSafe(|| job(&command_rx, &sink))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => sink(Event::Error(e.to_string())),
                Err(panic) => sink(Event::Error(format!(
                    "the training thread crashed: {}",
                    panic_message(&*panic)
                ))),
            }
            // The run's buffers go back to the OS here, not on whichever thread frees next
            // (the fused ops' scratch, kept from step to step, with them).
            crate::model::release_scratch();
            crate::memory::release_freed();
        })
        .expect("spawning a thread only fails when the OS is out of resources");
    TrainingHandle {
        commands: command_tx,
        events: None,
        thread: Some(thread),
    }
}

/// The message of a caught panic (`catch_unwind`'s payload or a panic hook's).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".into())
}

fn run(
    cfg: RunConfig,
    init: Option<Weights>,
    device: &Device,
    commands: &Receiver<Command>,
    emit: &dyn Fn(Event),
) -> Result<(), TrainError> {
    let trainer = match init {
        Some(w) => Trainer::with_weights(cfg, w, device)?,
        None => Trainer::new(cfg, device)?,
    };
    let mut paused = false;
    // Drains commands between steps; while paused, blocks on them instead of spinning.
    let mut poll = || loop {
        let command = if paused {
            match commands.recv_timeout(Duration::from_secs(3600)) {
                Ok(c) => c,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => Command::Stop,
            }
        } else {
            match commands.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) => return Control::Continue,
                Err(TryRecvError::Disconnected) => Command::Stop,
            }
        };
        match command {
            Command::Pause if !paused => {
                paused = true;
                emit(Event::Paused);
            }
            Command::Resume if paused => {
                paused = false;
                emit(Event::Resumed);
            }
            Command::Stop => return Control::Stop,
            _ => {}
        }
    };
    let outcome = drive(trainer, |progress| match progress {
        Progress::Started {
            total_epochs,
            steps_per_epoch,
            path,
            initial_weights,
        } => {
            emit(Event::Started {
                total_epochs,
                steps_per_epoch,
                path,
                initial_weights: initial_weights.clone(),
            });
            poll()
        }
        Progress::Step(step) => {
            emit(Event::Step(*step));
            poll()
        }
        Progress::Evaluation { metrics, weights } => {
            emit(Event::Evaluation {
                metrics: metrics.clone(),
                weights: weights.clone(),
            });
            Control::Continue
        }
    })?;
    let weights = outcome.checkpoint.weights;
    let epochs_done = outcome.checkpoint.epoch;
    emit(match outcome.ending.divergence() {
        Some(e) => Event::Diverged {
            message: e.to_string(),
            weights,
        },
        None => Event::Finished {
            reason: if outcome.ending == Ending::Stopped {
                FinishReason::Stopped
            } else {
                FinishReason::Completed
            },
            epochs_done,
            weights,
        },
    });
    Ok(())
}
