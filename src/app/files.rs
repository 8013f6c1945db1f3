//! Opening and saving off the UI thread. Native dialogs only pick a path; reading and writing run
//! on a worker, and the result comes back as a [`Message`].

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use super::Message;
use crate::checkpoint::Checkpoint;

/// Why a path is being picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Open,
    Save,
}

/// A dialog that answers faster than this did not show anything: no portal and no zenity.
const NO_BACKEND_WITHIN: Duration = Duration::from_millis(150);

/// Shows a native dialog on a worker thread.
pub fn pick(
    purpose: Purpose,
    start_dir: Option<PathBuf>,
    tx: Sender<Message>,
    wake: impl Fn() + Send + 'static,
) {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut dialog = rfd::FileDialog::new()
            .add_filter("safetensors checkpoint", &["safetensors"])
            .set_title(match purpose {
                Purpose::Open => "Open checkpoint",
                Purpose::Save => "Save checkpoint",
            });
        if let Some(dir) = start_dir {
            dialog = dialog.set_directory(dir);
        }
        let path = match purpose {
            Purpose::Open => dialog.pick_file(),
            Purpose::Save => dialog.set_file_name("toylens.safetensors").save_file(),
        };
        let no_backend = path.is_none() && started.elapsed() < NO_BACKEND_WITHIN;
        let _ = tx.send(Message::Picked {
            purpose,
            path,
            no_backend,
        });
        wake();
    });
}

/// Reads and validates a checkpoint on a worker thread.
pub fn open(path: PathBuf, tx: Sender<Message>, wake: impl Fn() + Send + 'static) {
    std::thread::spawn(move || {
        let result = Checkpoint::load(&path).map_err(|e| e.to_string());
        let _ = tx.send(Message::Opened { path, result });
        wake();
    });
}

/// Writes a checkpoint atomically on a worker thread. `version` is the session version saved, so
/// the app only clears the dirty marker if nothing changed meanwhile.
pub fn save(
    checkpoint: Checkpoint,
    path: PathBuf,
    version: u64,
    tx: Sender<Message>,
    wake: impl Fn() + Send + 'static,
) {
    std::thread::spawn(move || {
        let result = checkpoint.save(&path).map_err(|e| e.to_string());
        let _ = tx.send(Message::Saved {
            path,
            result,
            version,
        });
        wake();
    });
}
