//! Writing files so that a crash or a full disk never leaves a half-written one.

use std::io::Write;
use std::path::Path;

use super::CheckpointError;

/// Writes `bytes` to `path` so that readers see either the old file or the complete new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    write_atomically_with(path, |file| file.write_all(bytes))
}

/// [`write_atomically`] with the writing done by `write`, which may fail part-way (tests inject
/// faults through it): on any error the temporary file is removed and `path` is untouched.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), CheckpointError> {
    let write_err = |source| CheckpointError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".toylens-save-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(write_err)?;
    write(tmp.as_file_mut()).map_err(write_err)?;
    // Temporary files are private (0600); a checkpoint gets the old file's mode or the usual one.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode());
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(write_err)?;
    }
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    // Make the rename itself durable; not every platform can open a directory, so best effort.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
