//! `toylens sweep`: a grid of runs over any config fields and seeds, in a sweep folder, run here
//! or as a Slurm job array; `sweep collect`, `resume` and `status` on such a folder.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::tms::AnyPreset;
use crate::sweep::local::{LocalEvent, LocalOptions, run_local};
use crate::sweep::slurm::{SlurmOptions, check_binary, submit, task_states};
use crate::sweep::{
    Axis, PointState, Status, Summary, SweepFolder, SweepSpec, parse_axis, parse_seeds,
    preset_config,
};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub action: Option<SweepAction>,
    #[command(flatten)]
    pub new: NewSweep,
}

#[derive(Debug, Subcommand)]
pub enum SweepAction {
    /// Write summary.csv and summary.json from the runs that have finished.
    Collect {
        /// The sweep folder.
        dir: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run again the points with no result or a failed one (none already queued on Slurm).
    Resume {
        dir: PathBuf,
        #[command(flatten)]
        executor: ExecutorArgs,
        #[arg(long)]
        json: bool,
    },
    /// How many runs are done, failed, running or waiting, and what Slurm says of the array.
    Status {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// A new sweep.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct NewSweep {
    /// The base config (JSON; any model family). Without it: the preset(s), else `fast`.
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["preset", "sweep"])]
    pub config: Option<PathBuf>,
    /// A whole sweep file: {"base": {config}, "axes": [{"field", "values"}], "seeds": [..],
    /// "stop_at_milestone": bool}. --grid and --seeds add to it.
    #[arg(long, value_name = "SWEEP.json", conflicts_with = "preset")]
    pub sweep: Option<PathBuf>,
    /// Presets, comma-separated: one is the base; several are an axis.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub preset: Vec<AnyPreset>,
    /// An axis: a config field and its values, e.g. `train.lr=3e-4,1e-3,3e-3` or
    /// `task.p=53,113`. Repeat for more axes; the grid is every combination.
    #[arg(long, value_name = "FIELD=V1,V2,…")]
    pub grid: Vec<String>,
    /// Seeds: a range `0..5` (end excluded), a list `0,3,7` or one seed.
    #[arg(long, default_value = "0..5")]
    pub seeds: String,
    /// Learning rates, comma-separated: the same as `--grid train.lr=…`.
    #[arg(long, value_delimiter = ',')]
    pub lr: Vec<f64>,
    /// Epochs per run (`train.epochs`), for tasks that count epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Steps per run (`train.steps`), for tasks that count steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// End each run at its task's milestone (see `train --stop-at-milestone`).
    #[arg(long)]
    pub stop_at_milestone: bool,
    /// The sweep folder to create (missing or empty).
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// Write a grid of more than 10 000 runs.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub executor: ExecutorArgs,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    /// Child processes on this machine.
    Local,
    /// A job array submitted with sbatch.
    Slurm,
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    #[arg(long, value_enum, default_value = "local")]
    pub executor: Executor,
    /// Local: runs at once (default: the cores over --threads).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Local: compute threads per run.
    #[arg(long, default_value = "1")]
    pub threads: usize,
    /// Each run's time limit, as Slurm writes it (`30`, `1:00:00`, `2-00`): Slurm's --time, or
    /// the local executor's own limit. A run stopped there is recorded as `timeout`.
    #[arg(long)]
    pub time: Option<String>,
    /// Slurm: the partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm: CPUs per array task (each run's threads).
    #[arg(long, default_value = "1")]
    pub cpus_per_task: usize,
    /// Slurm: memory per task (`2G`).
    #[arg(long)]
    pub mem: Option<String>,
    /// Slurm: array tasks running at once (`%K`).
    #[arg(long)]
    pub max_parallel: Option<usize>,
    /// Slurm: write the script, submit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Slurm: wait for the array to end, then collect.
    #[arg(long)]
    pub wait: bool,
}

/// Most runs a sweep writes without `--yes`.
const CONFIRM_ABOVE: usize = 10_000;
/// Most runs a sweep writes at all.
const MAX_RUNS: usize = 10_000_000;

pub fn sweep(args: SweepArgs) -> Result<()> {
    match args.action {
        Some(SweepAction::Collect { dir, json }) => collect(&SweepFolder::open(&dir)?, json),
        Some(SweepAction::Resume {
            dir,
            executor,
            json,
        }) => resume(&dir, &executor, json),
        Some(SweepAction::Status { dir, json }) => status(&dir, json),
        None => new_sweep(args.new),
    }
}

/// Slurm's time formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
fn parse_time(text: &str) -> Result<Duration> {
    let bad = || anyhow::anyhow!("--time {text}: write minutes (30), H:MM:SS or D-HH[:MM[:SS]]");
    let (days, rest) = match text.split_once('-') {
        Some((d, rest)) => (d.parse::<u64>().map_err(|_| bad())?, rest),
        None => (0, text),
    };
    let parts: Vec<u64> = rest
        .split(':')
        .map(|p| p.parse::<u64>().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let seconds = match (text.contains('-'), parts.as_slice()) {
        (false, [m]) => m * 60,
        (false, [m, s]) => m * 60 + s,
        (false, [h, m, s]) | (true, [h, m, s]) => h * 3600 + m * 60 + s,
        (true, [h]) => h * 3600,
        (true, [h, m]) => h * 3600 + m * 60,
        _ => return Err(bad()),
    } + days * 86_400;
    if seconds == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(seconds))
}

/// The sweep the flags describe, and the folder its relative data paths are read from.
fn spec_of(args: &NewSweep) -> Result<(SweepSpec, PathBuf)> {
    let folder_of = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let read_json = |p: &Path| -> Result<Value> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("in {}", p.display()))
    };
    let (mut spec, base_dir) = if let Some(path) = &args.sweep {
        let spec: SweepSpec = serde_json::from_value(read_json(path)?)
            .with_context(|| format!("in {}", path.display()))?;
        (spec, folder_of(path))
    } else {
        let mut spec = SweepSpec {
            base: Value::Object(Default::default()),
            axes: Vec::new(),
            seeds: Vec::new(),
            stop_at_milestone: false,
        };
        let presets: Vec<String> = args
            .preset
            .iter()
            .filter_map(|p| p.to_possible_value().map(|v| v.get_name().to_string()))
            .collect();
        let dir = match (&args.config, presets.len()) {
            (Some(path), _) => {
                spec.base = read_json(path)?;
                folder_of(path)
            }
            // One preset is the base, not a column of the summary.
            (None, 0 | 1) => {
                let name = presets.first().map_or("fast", String::as_str);
                spec.base = preset_config(&Value::from(name)).map_err(anyhow::Error::msg)?;
                PathBuf::from(".")
            }
            (None, _) => {
                spec.axes.push(Axis {
                    field: "preset".into(),
                    values: presets.into_iter().map(Value::from).collect(),
                });
                PathBuf::from(".")
            }
        };
        (spec, dir)
    };
    for text in &args.grid {
        spec.axes.push(parse_axis(text)?);
    }
    if !args.lr.is_empty() {
        spec.axes.push(Axis {
            field: "train.lr".into(),
            values: args.lr.iter().map(|&l| Value::from(l)).collect(),
        });
    }
    if args.sweep.is_none() || args.seeds != "0..5" {
        spec.seeds = parse_seeds(&args.seeds)?;
    }
    for (field, value) in [("train.epochs", args.epochs), ("train.steps", args.steps)] {
        if let Some(v) = value {
            if v == 0 {
                bail!(
                    "--{} must be at least 1",
                    field.trim_start_matches("train.")
                );
            }
            spec.axes.push(Axis {
                field: field.into(),
                values: vec![Value::from(v)],
            });
        }
    }
    spec.stop_at_milestone |= args.stop_at_milestone;
    Ok((spec, base_dir))
}

fn new_sweep(args: NewSweep) -> Result<()> {
    let out = args.out.clone().context("--out is required")?;
    let (spec, base_dir) = spec_of(&args)?;
    let runs = spec.len();
    if runs > MAX_RUNS {
        bail!("the grid has {runs} runs; toylens writes at most {MAX_RUNS}");
    }
    if runs > CONFIRM_ABOVE && !args.yes {
        bail!(
            "the grid has {runs} runs (a folder each); pass --yes to write them all, or sweep \
             fewer values"
        );
    }
    let folder = SweepFolder::create(&out, spec, &base_dir)?;
    eprintln!("wrote {runs} runs into {}", out.display());
    let all: Vec<usize> = (0..folder.len()).collect();
    execute(&folder, &all, &args.executor, args.json)
}

fn resume(dir: &Path, executor: &ExecutorArgs, json: bool) -> Result<()> {
    let folder = SweepFolder::open(dir)?;
    // Refused before anything is said or done while another process runs its points here
    // (the executor takes the lock for itself when it starts).
    drop(crate::sweep::local::lock_for_running(&folder)?);
    let mut todo = folder.to_rerun();
    // Tasks Slurm still has queued or running are left to it.
    let queued = crate::sweep::slurm::queued_tasks(&folder)?;
    todo.retain(|i| !queued.contains_key(i));
    if todo.is_empty() {
        eprintln!(
            "every run of {} has a result; nothing to resume",
            dir.display()
        );
        return collect(&folder, json);
    }
    eprintln!("{} of {} runs to run again", todo.len(), folder.len());
    execute(&folder, &todo, executor, json)
}

/// The toylens binary that runs the points: this one.
fn this_binary() -> Result<PathBuf> {
    let path = std::env::current_exe().context("cannot find the toylens binary")?;
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}

fn execute(folder: &SweepFolder, indices: &[usize], args: &ExecutorArgs, json: bool) -> Result<()> {
    let stop_at_milestone = folder.file.spec.stop_at_milestone;
    match args.executor {
        Executor::Local => {
            if args.threads == 0 || args.parallel == Some(0) {
                bail!("--threads and --parallel must be at least 1");
            }
            let options = LocalOptions {
                binary: this_binary()?,
                parallel: args
                    .parallel
                    .unwrap_or_else(|| LocalOptions::default_parallel(args.threads)),
                threads: args.threads,
                time_limit: args.time.as_deref().map(parse_time).transpose()?,
                stop_at_milestone,
            };
            run_here(folder, indices, &options)?;
            collect(folder, json)
        }
        Executor::Slurm => {
            if let Some(t) = &args.time {
                parse_time(t)?;
            }
            let options = SlurmOptions {
                partition: args.partition.clone(),
                time: args.time.clone(),
                cpus_per_task: args.cpus_per_task,
                mem: args.mem.clone(),
                max_parallel: args.max_parallel,
                stop_at_milestone,
                binary: this_binary()?,
            };
            check_binary(&options.binary)?;
            let (script, job) = submit(folder, indices, &options, args.dry_run)?;
            match job {
                None => println!("wrote {} (not submitted)", script.display()),
                Some(job) => {
                    println!(
                        "submitted job {} (array {}) from {}",
                        job.job_id,
                        job.array,
                        script.display()
                    );
                    if args.wait {
                        wait_for_slurm(folder)?;
                        return collect(folder, json);
                    }
                    println!(
                        "follow it with `toylens sweep status {0}`; `toylens sweep collect {0}` \
                         summarises what has finished",
                        folder.root.display()
                    );
                }
            }
            Ok(())
        }
    }
}

/// The local executor with a progress bar over runs.
fn run_here(folder: &SweepFolder, indices: &[usize], options: &LocalOptions) -> Result<()> {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(indices.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} runs, {msg} ({eta} left)",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    let (mut running, mut bad) = (0usize, 0usize);
    eprintln!(
        "running {} runs here, {} at a time with {} thread{} each",
        indices.len(),
        options.parallel,
        options.threads,
        if options.threads == 1 { "" } else { "s" }
    );
    run_local(folder, indices, options, |event| match event {
        LocalEvent::Started(_) => {
            running += 1;
            bar.set_message(format!("{running} running, {bad} not done"));
        }
        LocalEvent::Finished(index, result) => {
            running -= 1;
            if result.status != Status::Done {
                bad += 1;
            }
            bar.inc(1);
            bar.set_message(format!("{running} running, {bad} not done"));
            let line = format!(
                "run {index} {}: {}{}",
                describe_point(folder, index),
                result.status.name(),
                result
                    .message
                    .as_deref()
                    .map_or(String::new(), |m| format!(" ({m})"))
            );
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
    })?;
    bar.finish_and_clear();
    Ok(())
}

/// `train.lr=0.001 seed=1`.
fn describe_point(folder: &SweepFolder, index: usize) -> String {
    let point = &folder.file.points[index];
    folder
        .file
        .spec
        .axes
        .iter()
        .zip(&point.values)
        .map(|(a, v)| format!("{}={v}", a.field))
        .chain([format!("seed={}", point.seed)])
        .collect::<Vec<_>>()
        .join(" ")
}

fn wait_for_slurm(folder: &SweepFolder) -> Result<()> {
    while !crate::sweep::slurm::queued_tasks(folder)?.is_empty() {
        std::thread::sleep(Duration::from_secs(2));
    }
    Ok(())
}

fn collect(folder: &SweepFolder, json: bool) -> Result<()> {
    crate::sweep::slurm::record_ended(folder)?;
    let summary = Summary::read(folder);
    summary.write(folder)?;
    if json {
        println!("{}", summary.json());
        return Ok(());
    }
    print_table(&summary);
    for (index, why) in &summary.unreadable {
        eprintln!("run {index}: its result does not read: {why}");
    }
    println!(
        "{} finished, {} not yet; wrote {}",
        summary.rows.len(),
        summary.unfinished(),
        folder.root.join(crate::sweep::SUMMARY_CSV).display()
    );
    Ok(())
}

fn print_table(summary: &Summary) {
    let mut header: Vec<String> = summary.fields.clone();
    header.extend(
        [
            "seed",
            "status",
            "trained",
            "loss",
            "score",
            "milestone",
            "regime",
        ]
        .map(String::from),
    );
    let mut rows = vec![header];
    for row in &summary.rows {
        let r = &row.result;
        let mut cells: Vec<String> = summary
            .fields
            .iter()
            .map(|f| match row.values.get(f) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            })
            .collect();
        let number = |k: &str| r.metrics.get(k).map_or("-".into(), |v| format!("{v:.4}"));
        cells.extend([
            row.seed.to_string(),
            r.status.name().into(),
            r.trained.to_string(),
            number("loss"),
            number("score"),
            r.milestones
                .get("milestone")
                .map_or("never".into(), |m| m.to_string()),
            r.regime.clone().unwrap_or_else(|| "-".into()),
        ]);
        rows.push(cells);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:>w$}"))
            .collect();
        println!("{}", line.join("  "));
    }
}

fn status(dir: &Path, json: bool) -> Result<()> {
    let folder = SweepFolder::open(dir)?;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..folder.len() {
        let key = match folder.state(i) {
            PointState::Pending => "not started".to_string(),
            PointState::Started(_) => "started, no result yet".to_string(),
            PointState::Unreadable(_) => "unreadable".to_string(),
            PointState::Finished(r) => r.status.name().to_string(),
        };
        *counts.entry(key).or_default() += 1;
    }
    let slurm = if crate::sweep::slurm::jobs(&folder).is_empty() {
        Vec::new()
    } else {
        task_states(&folder)?
    };
    let mut by_state = std::collections::BTreeMap::<String, usize>::new();
    for (_, s) in &slurm {
        *by_state.entry(s.clone()).or_default() += 1;
    }
    if json {
        let value = serde_json::json!({
            "runs": folder.len(),
            "results": counts,
            "slurm_jobs": crate::sweep::slurm::jobs(&folder),
            "slurm_tasks": by_state,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("{}: {} runs", dir.display(), folder.len());
    for (k, n) in &counts {
        println!("  {k}: {n}");
    }
    for job in crate::sweep::slurm::jobs(&folder) {
        println!("  slurm job {} (array {})", job.job_id, job.array);
    }
    if !by_state.is_empty() {
        let text: Vec<String> = by_state.iter().map(|(s, n)| format!("{s} {n}")).collect();
        println!("  slurm tasks: {}", text.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_times_read_as_slurm_reads_them() {
        assert_eq!(parse_time("30").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_time("1:30").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_time("1:00:05").unwrap(), Duration::from_secs(3605));
        assert_eq!(parse_time("2-00").unwrap(), Duration::from_secs(2 * 86_400));
        assert_eq!(
            parse_time("1-2:3").unwrap(),
            Duration::from_secs(86_400 + 7380)
        );
        for bad in ["", "0", "x", "1:2:3:4", "-5"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
