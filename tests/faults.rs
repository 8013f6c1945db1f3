//! Faults while saving: a process killed mid-save, a write that fails part-way, a full disk and a
//! read-only file system. The old checkpoint must survive every one of them.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use candle_core::Device;
use rand::{Rng, SeedableRng};
use toylens::checkpoint::{Checkpoint, write_atomically, write_atomically_with};
use toylens::train::{Preset, RunConfig, train_to_checkpoint};

fn checkpoint(seed: u64, epochs: usize) -> Checkpoint {
    let mut cfg = RunConfig::from_preset(Preset::Fast);
    cfg.seed = seed;
    cfg.task.skip_trigram_mut().unwrap().train_size = 1_000;
    cfg.task.skip_trigram_mut().unwrap().val_size = 100;
    cfg.train.batch_size = 1_000;
    cfg.train.epochs = epochs;
    train_to_checkpoint(cfg, &Device::Cpu, |_| {}).unwrap()
}

fn temp_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".toylens-save-")
        })
        .count()
}

#[test]
fn a_write_failing_part_way_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let old = checkpoint(1, 3);
    old.save(&path).unwrap();
    let new_bytes = checkpoint(2, 3).to_bytes().unwrap();
    let err = write_atomically_with(&path, |file| {
        file.write_all(&new_bytes[..new_bytes.len() / 2])?;
        Err(std::io::Error::other(
            "injected failure after half the bytes",
        ))
    })
    .unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(Checkpoint::load(&path).unwrap(), old);
    assert_eq!(
        temp_files(dir.path()),
        0,
        "the temporary file was not removed"
    );
}

#[test]
fn a_full_disk_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let old = checkpoint(1, 2);
    old.save(&path).unwrap();
    let err = write_atomically_with(&path, |file| {
        file.write_all(b"partial")?;
        Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("model.safetensors"), "{err}");
    assert_eq!(Checkpoint::load(&path).unwrap(), old);
}

#[test]
fn a_read_only_file_system_is_a_clear_error() {
    // /proc refuses new files even to root.
    let err = checkpoint(1, 1)
        .save(Path::new("/proc/toylens-test.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot write /proc/toylens-test.safetensors"),
        "{err}"
    );
}

#[test]
fn killing_the_process_mid_save_never_leaves_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    // Two checkpoints of a few MB each, so a save takes long enough to be interrupted.
    let a = checkpoint(1, 1500);
    let b = checkpoint(2, 1500);
    let (bytes_a, bytes_b) = (a.to_bytes().unwrap(), b.to_bytes().unwrap());
    assert!(bytes_a.len() > 1_000_000, "{} bytes", bytes_a.len());
    write_atomically(&path, &bytes_a).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for round in 0..12 {
        // SAFETY: the child only writes files in a loop and is killed by the parent; it never
        // returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mut i = 0u64;
            loop {
                let bytes = if i.is_multiple_of(2) {
                    &bytes_b
                } else {
                    &bytes_a
                };
                let _ = write_atomically(&path, bytes);
                i += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(rng.random_range(2_000..60_000)));
        // SAFETY: pid is our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        let loaded = Checkpoint::load(&path)
            .unwrap_or_else(|e| panic!("round {round}: the file is broken after a kill: {e}"));
        assert!(
            loaded == a || loaded == b,
            "round {round}: unexpected contents: weights {} {}, history {} {}, snapshots {} {}, config {} {}",
            loaded.weights == a.weights,
            loaded.weights == b.weights,
            loaded.history == a.history,
            loaded.history == b.history,
            loaded.snapshots == a.snapshots,
            loaded.snapshots == b.snapshots,
            loaded.config == a.config,
            loaded.epoch == a.epoch,
        );
    }
    // Killed saves leave their temporary files behind (nothing can remove them): proof that the
    // kills landed inside saves, and yet the checkpoint itself was never half-written.
    assert!(temp_files(dir.path()) > 0, "no kill landed inside a save");
}
