//! The last line of defence. If the UI thread panics (which no user action should make happen),
//! the model in view and its history are written to a recovery checkpoint beside the settings
//! before the app goes down, and the next start offers to reopen it.

use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;

/// Where the recovery checkpoint goes: beside eframe's settings (`~/.local/share/toylens`).
pub fn default_path() -> Option<PathBuf> {
    eframe::storage_dir("toylens").map(|dir| dir.join("recovered.safetensors"))
}

/// Writes `checkpoint` to `path` (atomically, like every save).
pub fn write(path: &Path, checkpoint: &Checkpoint) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    checkpoint.save(path).map_err(|e| e.to_string())
}

/// Removes a recovery checkpoint that was reopened or declined.
pub fn discard(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        log::warn!("cannot remove {}: {e}", path.display());
    }
}
