//! The Slurm executor: an sbatch job-array script written into the sweep folder (each array
//! task trains the point of its `SLURM_ARRAY_TASK_ID`), submitted with `sbatch --array`, and
//! the array's state read back from `squeue` (and `sacct` where the cluster keeps accounts).
//! Slurm does the scheduling; toylens only writes the script and reads the results.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::SweepError;
use super::folder::SweepFolder;
use super::local::THREADS_ENV;
use super::outcome::Status;
use super::run::CONFIG;
use super::run::{failed_result, write_result};

/// The script's name in the sweep folder.
pub const SCRIPT: &str = "sweep.sbatch";
/// The jobs submitted for the sweep, newest last.
pub const JOBS: &str = "slurm.json";

#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    /// Slurm's `--time` (`MM`, `HH:MM:SS`, `D-HH`, …).
    pub time: Option<String>,
    pub cpus_per_task: usize,
    /// Slurm's `--mem` (`2G`, `500M`).
    pub mem: Option<String>,
    /// Array tasks running at once (`%K`).
    pub max_parallel: Option<usize>,
    pub stop_at_milestone: bool,
    /// The toylens binary the tasks run (absolute).
    pub binary: PathBuf,
}

/// A submitted array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub job_id: String,
    /// The array's indices as sbatch was given them (`0-49%8`).
    pub array: String,
}

/// A shell word, single-quoted where it must be.
fn quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Indices as sbatch's `--array` list: runs of consecutive ones as ranges, `%K` after.
pub fn array_spec(indices: &[usize], max_parallel: Option<usize>) -> String {
    let mut parts = Vec::new();
    let mut k = 0;
    while k < indices.len() {
        let start = indices[k];
        let mut end = start;
        while k + 1 < indices.len() && indices[k + 1] == end + 1 {
            k += 1;
            end += 1;
        }
        parts.push(if end > start {
            format!("{start}-{end}")
        } else {
            start.to_string()
        });
        k += 1;
    }
    let mut spec = parts.join(",");
    if let Some(k) = max_parallel {
        spec += &format!("%{k}");
    }
    spec
}

/// The job-array script for `folder` (absolute paths throughout, so it runs from anywhere).
pub fn script(folder: &SweepFolder, options: &SlurmOptions) -> Result<String, SweepError> {
    let root = std::path::absolute(&folder.root).map_err(|e| SweepError::io(&folder.root, e))?;
    let root_text = root.to_string_lossy();
    let mut s = String::from("#!/bin/bash\n");
    s += &format!(
        "# toylens sweep: the {} runs of {root_text} as a Slurm job array.\n\
         # Array task i trains the point in {root_text}/i/ from its {CONFIG}, writing its\n\
         # metrics.jsonl, checkpoint.safetensors and result.json there. Submit (toylens does) with\n\
         #   sbatch --array=0-{}%K {root_text}/{SCRIPT}\n\
         # and collect with `toylens sweep collect {root_text}`.\n",
        folder.len(),
        folder.len().saturating_sub(1),
    );
    s += "#SBATCH --job-name=toylens-sweep\n";
    s += &format!("#SBATCH --output={root_text}/%a/slurm-%A_%a.out\n");
    s += &format!("#SBATCH --cpus-per-task={}\n", options.cpus_per_task.max(1));
    if let Some(p) = &options.partition {
        s += &format!("#SBATCH --partition={p}\n");
    }
    if let Some(t) = &options.time {
        s += &format!("#SBATCH --time={t}\n");
    }
    if let Some(m) = &options.mem {
        s += &format!("#SBATCH --mem={m}\n");
    }
    s += "set -euo pipefail\n";
    s += &format!(
        "# The compute threads each run uses: the CPUs Slurm gave the task.\n\
         export {THREADS_ENV}=\"${{SLURM_CPUS_PER_TASK:-{}}}\"\n",
        options.cpus_per_task.max(1)
    );
    // What the binary needs from the submitting shell (CUDA's libraries, where it was built
    // with them).
    if let Ok(path) = std::env::var("LD_LIBRARY_PATH")
        && !path.is_empty()
    {
        s += &format!("export LD_LIBRARY_PATH={}\n", quote(&path));
    }
    s += &format!("TOYLENS={}\n", quote(&options.binary.to_string_lossy()));
    s += &format!("RUN={}/\"$SLURM_ARRAY_TASK_ID\"\n", quote(&root_text));
    s += &format!(
        "exec \"$TOYLENS\" train --config \"$RUN/{CONFIG}\" --run-dir \"$RUN\"{}\n",
        if options.stop_at_milestone {
            " --stop-at-milestone"
        } else {
            ""
        }
    );
    Ok(s)
}

/// The jobs submitted for `folder` so far.
pub fn jobs(folder: &SweepFolder) -> Vec<Job> {
    std::fs::read_to_string(folder.root.join(JOBS))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Writes the script and, unless `dry_run`, submits `indices` as an array; returns the script's
/// path and the job.
pub fn submit(
    folder: &SweepFolder,
    indices: &[usize],
    options: &SlurmOptions,
    dry_run: bool,
) -> Result<(PathBuf, Option<Job>), SweepError> {
    // Not while this machine's local executor runs points of the sweep.
    let _lock = (!dry_run)
        .then(|| super::local::lock_for_running(folder))
        .transpose()?;
    let path = folder.root.join(SCRIPT);
    let text = script(folder, options)?;
    super::write_file(&path, text.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
    }
    if dry_run || indices.is_empty() {
        return Ok((path, None));
    }
    let array = array_spec(indices, options.max_parallel);
    let output = Command::new("sbatch")
        .arg("--parsable")
        .arg(format!("--array={array}"))
        .arg(&path)
        .output()
        .map_err(|e| {
            SweepError::Invalid(format!(
                "cannot run sbatch ({e}): is Slurm installed here? `--dry-run` writes the script \
                 without submitting it"
            ))
        })?;
    if !output.status.success() {
        return Err(SweepError::Invalid(format!(
            "sbatch refused the array: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    // `--parsable` prints `jobid` or `jobid;cluster`.
    let job_id = String::from_utf8_lossy(&output.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let job = Job { job_id, array };
    let mut all = jobs(folder);
    all.push(job.clone());
    let json = serde_json::to_string_pretty(&all).expect("jobs serialise");
    super::write_file(&folder.root.join(JOBS), json.as_bytes())?;
    Ok((path, Some(job)))
}

/// Each array task Slurm still knows of: (point index, state), from `squeue` for the queued
/// and running ones and `sacct` (where accounting is on) for the ended ones; squeue's word
/// wins.
pub fn task_states(folder: &SweepFolder) -> Result<Vec<(usize, String)>, SweepError> {
    let jobs = jobs(folder);
    let mut states = std::collections::BTreeMap::new();
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
    // sacct first (it may be off: then it prints nothing useful and squeue alone speaks).
    if let Ok(out) = Command::new("sacct")
        .args(["-n", "-P", "-X", "-o", "JobID,State", "-j", &ids.join(",")])
        .output()
        && out.status.success()
    {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((id, state)) = line.split_once('|')
                && let Some(index) = array_index(id)
            {
                states.insert(
                    index,
                    state.split_whitespace().next().unwrap_or("").to_string(),
                );
            }
        }
    }
    let out = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i|%T", "-j", &ids.join(",")])
        .output()
        .map_err(|e| {
            SweepError::Invalid(format!("cannot run squeue ({e}): is Slurm installed here?"))
        })?;
    // squeue fails for jobs it no longer lists; that only means none is queued.
    if out.status.success() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((id, state)) = line.split_once('|')
                && let Some(index) = array_index(id)
            {
                states.insert(index, state.trim().to_string());
            }
        }
    }
    Ok(states.into_iter().collect())
}

/// The states in which Slurm has finished with a task (`sacct`'s and `squeue`'s words).
const ENDED: [&str; 9] = [
    "COMPLETED",
    "FAILED",
    "TIMEOUT",
    "CANCELLED",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
];

/// The points whose array tasks Slurm has queued or running, with their state (`PENDING`,
/// `RUNNING`, …); none for a sweep never submitted.
pub fn queued_tasks(
    folder: &SweepFolder,
) -> Result<std::collections::BTreeMap<usize, String>, SweepError> {
    Ok(task_states(folder)?
        .into_iter()
        .filter(|(_, state)| !ENDED.contains(&state.as_str()))
        .collect())
}

/// Writes a result for each task Slurm ended without one (out of memory, killed past its grace
/// time, cancelled), from what Slurm says where it keeps accounts; returns how many.
pub fn record_ended(folder: &SweepFolder) -> Result<usize, SweepError> {
    let mut recorded = 0;
    for (index, state) in task_states(folder).unwrap_or_default() {
        if index >= folder.len() || folder.state(index).has_result() {
            continue;
        }
        let status = match state.as_str() {
            "TIMEOUT" => Status::Timeout,
            "FAILED" | "CANCELLED" | "OUT_OF_MEMORY" | "NODE_FAIL" | "BOOT_FAIL" => Status::Failed,
            _ => continue,
        };
        let message = format!("Slurm ended the task ({state}) before it wrote a result");
        write_result(&folder.run_dir(index), &failed_result(status, message, 0.0))?;
        recorded += 1;
    }
    Ok(recorded)
}

/// The array index of `123_7` (7); none for the whole job or a step (`123_7.batch`).
fn array_index(id: &str) -> Option<usize> {
    let (_, task) = id.trim().split_once('_')?;
    task.parse().ok()
}

/// Whether `binary` looks like something the array tasks can run.
pub fn check_binary(binary: &Path) -> Result<(), SweepError> {
    if binary.is_absolute() && binary.is_file() {
        Ok(())
    } else {
        Err(SweepError::Invalid(format!(
            "{} is not a toylens binary the array tasks can run",
            binary.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_compress_runs_of_indices() {
        assert_eq!(array_spec(&[0, 1, 2, 3], Some(2)), "0-3%2");
        assert_eq!(array_spec(&[1, 3, 4, 5, 9], None), "1,3-5,9");
        assert_eq!(array_index("123_7"), Some(7));
        assert_eq!(array_index("123_7.batch"), None);
        assert_eq!(array_index("123"), None);
        assert_eq!(quote("/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(quote("/usr/bin/toylens"), "/usr/bin/toylens");
    }
}
