//! Opening and saving off the UI thread. Native dialogs only pick a path; reading and writing run
//! on a worker, and the result comes back as a [`Message`].

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use super::Message;
use crate::checkpoint::{Checkpoint, TmsCheckpoint};
use crate::task::SequencesConfig;

/// Why a path is being picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Open,
    Save,
    /// The metric history as CSV.
    ExportCsv,
    /// A screenshot of a panel as PNG.
    ExportPng,
    /// A data file to train a new model on (the Task menu's "From a file…").
    TrainData,
    /// A data file for the model in view: evaluated on, and fine-tuned on by Train.
    AttachData,
    /// Where the superposition model in view is saved.
    SaveTms,
    /// An SAE's folder (SAELens's layout) to attach.
    OpenSae,
    /// The folder the SAE in view is saved into.
    SaveSae,
    /// A sweep folder (`sweep.json` and a folder per run).
    OpenSweep,
}

/// What a data file read on a worker is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataUse {
    /// A new run of the default model for such data.
    NewRun,
    /// The model in view's task.
    Attach,
    /// The settings' own task, read again when the app starts.
    Restore,
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
        let (filter, exts, title, default_name): (_, &[&str], _, _) = match purpose {
            Purpose::Open => (
                "checkpoint or state dict",
                &["safetensors", "pth", "pt"],
                "Open checkpoint",
                "",
            ),
            Purpose::Save | Purpose::SaveTms => (
                "safetensors checkpoint",
                &["safetensors"],
                "Save checkpoint",
                "toylens.safetensors",
            ),
            Purpose::ExportCsv => ("CSV", &["csv"], "Export metrics as CSV", "metrics.csv"),
            Purpose::ExportPng => ("PNG image", &["png"], "Export panel as PNG", "toylens.png"),
            // Folders: no file filter.
            Purpose::OpenSae => (
                "",
                &[],
                "Open an SAE folder (cfg.json and sae_weights.safetensors)",
                "",
            ),
            Purpose::SaveSae => ("", &[], "Save the SAE into a folder", ""),
            Purpose::OpenSweep => ("", &[], "Open a sweep folder (with sweep.json)", ""),
            Purpose::TrainData | Purpose::AttachData => (
                "sequences (JSON Lines or NumPy)",
                &["jsonl", "json", "ndjson", "npy", "npz"],
                "Open a data file",
                "",
            ),
        };
        let mut dialog = rfd::FileDialog::new().set_title(title);
        if !exts.is_empty() {
            dialog = dialog.add_filter(filter, exts);
        }
        if let Some(dir) = start_dir {
            dialog = dialog.set_directory(dir);
        }
        let path = match purpose {
            Purpose::OpenSae | Purpose::SaveSae | Purpose::OpenSweep => dialog.pick_folder(),
            Purpose::Open | Purpose::TrainData | Purpose::AttachData => dialog.pick_file(),
            _ => dialog.set_file_name(default_name).save_file(),
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

/// Reads and validates a checkpoint on a worker thread: a superposition model's (told by its
/// header) or a transformer's.
pub fn open(path: PathBuf, tx: Sender<Message>, wake: impl Fn() + Send + 'static) {
    std::thread::spawn(move || {
        let tms = std::fs::read(&path)
            .ok()
            .filter(|bytes| TmsCheckpoint::is_tms(bytes));
        let message = match tms {
            Some(bytes) => Message::OpenedTms {
                result: TmsCheckpoint::from_bytes(&bytes).map_err(|e| e.to_string()),
                path,
            },
            None => Message::Opened {
                result: Checkpoint::load(&path).map_err(|e| e.to_string()),
                path,
            },
        };
        let _ = tx.send(message);
        wake();
    });
}

/// Writes a superposition checkpoint atomically on a worker thread.
pub fn save_tms(
    checkpoint: TmsCheckpoint,
    path: PathBuf,
    tx: Sender<Message>,
    wake: impl Fn() + Send + 'static,
) {
    std::thread::spawn(move || {
        let result = checkpoint.save(&path).map_err(|e| e.to_string());
        let _ = tx.send(Message::SavedTms { path, result });
        wake();
    });
}

/// Reads a data file's sequences on a worker thread (with a `vocab.json` beside it, if there is
/// one), or the settings' data-file task's again.
pub fn read_data(
    use_: DataUse,
    mut task: SequencesConfig,
    tx: Sender<Message>,
    wake: impl Fn() + Send + 'static,
) {
    std::thread::spawn(move || {
        let result = task
            .load(std::path::Path::new("."))
            .map(|()| task)
            .map_err(|e| e.to_string());
        let _ = tx.send(Message::DataRead { use_, result });
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

/// Asks the window for a screenshot and writes `rect` of it (in points) to `path` as PNG, off the
/// UI thread.
pub fn export_png(
    ctx: &egui::Context,
    rect: egui::Rect,
    path: PathBuf,
    tx: Sender<Message>,
    wake: impl Fn() + Send + 'static,
) {
    let pixels_per_point = ctx.pixels_per_point();
    let callback = egui::ScreenshotCallback::new(move |image| {
        std::thread::spawn(move || {
            let result = png_of(&image, rect, pixels_per_point).and_then(|bytes| {
                crate::checkpoint::write_atomically(&path, &bytes).map_err(|e| e.to_string())
            });
            let _ = tx.send(Message::Exported { path, result });
            wake();
        });
    });
    ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(callback));
}

/// Writes an export (CSV, PNG) atomically on a worker thread.
pub fn export(
    path: PathBuf,
    bytes: Vec<u8>,
    tx: Sender<Message>,
    wake: impl Fn() + Send + 'static,
) {
    std::thread::spawn(move || {
        let result = crate::checkpoint::write_atomically(&path, &bytes).map_err(|e| e.to_string());
        let _ = tx.send(Message::Exported { path, result });
        wake();
    });
}

/// Crops a window screenshot to `rect` (in points) and encodes it as PNG.
pub fn png_of(
    image: &egui::ColorImage,
    rect: egui::Rect,
    pixels_per_point: f32,
) -> Result<Vec<u8>, String> {
    let [w, h] = image.size;
    let px = |v: f32, max: usize| ((v * pixels_per_point).round().max(0.0) as usize).min(max);
    let (x0, y0, x1, y1) = (
        px(rect.min.x, w),
        px(rect.min.y, h),
        px(rect.max.x, w),
        px(rect.max.y, h),
    );
    if x1 <= x0 || y1 <= y0 {
        return Err("the panel is not on screen".into());
    }
    let mut rgba = Vec::with_capacity((x1 - x0) * (y1 - y0) * 4);
    for y in y0..y1 {
        for x in x0..x1 {
            rgba.extend_from_slice(&image.pixels[y * w + x].to_array());
        }
    }
    let buffer = image::RgbaImage::from_raw((x1 - x0) as u32, (y1 - y0) as u32, rgba)
        .ok_or("the screenshot has an unexpected size")?;
    let mut bytes = Vec::new();
    buffer
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}
