//! The Features workspace's workers: training an SAE, summarising its latents, and reading and
//! writing SAE folders, each
//! on its own thread and reporting back as [`Message::Sae`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::time::Instant;

use super::{
    ModelInputs, SUMMARY_BATCH, SUMMARY_EXAMPLES, SUMMARY_INPUTS, SaeDraft, SaeEvent, SaeTarget,
    WAKE_INTERVAL,
};
use crate::app::Message;
use crate::checkpoint::SaeCheckpoint;
use crate::sae::features::summarise;
use crate::sae::{Positions, SaeTrainer};
use crate::train::panic_message;

/// Trains on a worker thread, reporting every evaluation; a panic ends the run with its
/// message instead of taking the app down.
pub(super) fn spawn_training(
    id: u64,
    draft: SaeDraft,
    inputs: ModelInputs,
    model_name: String,
    stop: Arc<AtomicBool>,
    tx: Sender<Message>,
    wake: impl Fn() + Send + 'static,
) {
    std::thread::Builder::new()
        .name("toylens-sae".into())
        .spawn(move || {
            let mut last_wake = Instant::now() - WAKE_INTERVAL;
            let mut trainer: Option<SaeTrainer> = None;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let source = inputs.source(&draft.hook, draft.positions)?;
                let t = trainer
                    .insert(SaeTrainer::new(draft.run.clone(), source).map_err(|e| e.to_string())?);
                t.drive(&stop, |_, metrics| {
                    let _ = tx.send(Message::Sae(SaeEvent::Progress {
                        job: id,
                        metrics: metrics.clone(),
                    }));
                    if last_wake.elapsed() >= WAKE_INTERVAL {
                        last_wake = Instant::now();
                        wake();
                    }
                })
                .map_err(|e| e.to_string())
            }));
            let result = match result {
                Ok(r) => r,
                Err(panic) => Err(format!("training failed: {}", panic_message(&*panic))),
            };
            let sae = trainer
                .filter(|t| t.step_count() > 0)
                .map(|t| SaeCheckpoint {
                    architecture: t.run().architecture,
                    weights: t.weights().clone(),
                    hook_name: t.hook_name(),
                    model_name,
                    run: Some(t.run().clone()),
                    history: t.history().to_vec(),
                    positions: (draft.target == SaeTarget::Transformer).then_some(draft.positions),
                });
            let _ = tx.send(Message::Sae(SaeEvent::Ended {
                job: id,
                result,
                sae,
            }));
            wake();
        })
        .expect("a thread for training the SAE");
}

/// Reads an SAE folder on a worker thread.
pub fn open(path: PathBuf, tx: Sender<Message>, wake: impl Fn() + Send + 'static) {
    std::thread::spawn(move || {
        let result = SaeCheckpoint::load(&path).map_err(|e| e.to_string());
        let _ = tx.send(Message::Sae(SaeEvent::Opened { path, result }));
        wake();
    });
}

/// Writes an SAE folder on a worker thread (each file whole or not at all).
pub fn save(
    sae: Arc<SaeCheckpoint>,
    version: u64,
    path: PathBuf,
    tx: Sender<Message>,
    wake: impl Fn() + Send + 'static,
) {
    std::thread::spawn(move || {
        let result = sae.save(&path).map_err(|e| e.to_string());
        let _ = tx.send(Message::Sae(SaeEvent::Saved {
            path,
            version,
            result,
        }));
        wake();
    });
}

/// Summarises every latent of `sae` (the SAE of `version`) on fresh activations of `inputs`, on
/// a worker thread.
pub(super) fn spawn_summary(
    version: u64,
    sae: Arc<SaeCheckpoint>,
    inputs: ModelInputs,
    tx: Sender<Message>,
    wake: impl Fn() + Send + 'static,
) {
    std::thread::Builder::new()
        .name("toylens-sae-features".into())
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let positions = sae.positions.unwrap_or(Positions::All);
                let mut source = inputs.source(&sae.hook_name, positions)?;
                summarise(
                    &sae.weights,
                    sae.architecture,
                    source.as_mut(),
                    SUMMARY_INPUTS / SUMMARY_BATCH,
                    SUMMARY_BATCH,
                    SUMMARY_EXAMPLES,
                    0,
                )
            }))
            .unwrap_or_else(|p| Err(format!("summarising failed: {}", panic_message(&*p))));
            let _ = tx.send(Message::Sae(SaeEvent::Summarised { version, result }));
            wake();
        })
        .expect("a thread for the SAE's features");
}
