//! `v1p sweep`: a grid of runs (sessions × models × seeds × flag values), each cell one
//! `v1p train --json` process. Locally the cells run on the machine's cores with one
//! progress bar and resume after an interrupt (a cell whose result file exists is skipped);
//! for a cluster, `--emit slurm` writes a Slurm job-array script instead, and `--collect`
//! builds the results table from whatever cells have finished, wherever they ran.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use v1_predictor::config::flags;
use v1_predictor::model::ModelFamily;
use v1_predictor::training::{PRESETS, TrainingConfig};

#[derive(Args)]
pub struct SweepArgs {
    /// Session files (.mat): each is its own session of the grid.
    #[arg(long = "data")]
    data: Vec<PathBuf>,
    /// Models, comma-separated: cnn, cnnplus, ln, gabor.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "cnn")]
    model: Vec<ModelFamily>,
    /// Seeds (each seeds the split and the initial weights): a range `0..3` (3 excluded) or
    /// a list `0,4,7`.
    #[arg(long, default_value = "0..3")]
    seeds: String,
    /// Named settings for the cells of that preset's model, e.g. `fast` for the cnn cells
    /// (repeatable: `--preset fast --preset best`); other cells start from their model's own
    /// preset.
    #[arg(long)]
    preset: Vec<String>,
    /// A flag of `v1p train` and its values, e.g. `--set learning_rate=1e-4,3e-4`;
    /// repeat for more flags (the grid is their product).
    #[arg(long = "set")]
    set: Vec<String>,
    /// The sweep's folder: manifest, one result file per cell, logs, results table.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Cells run at once (default: one per two cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Write a job script for a cluster scheduler instead of running the cells.
    #[arg(long, value_enum)]
    emit: Option<Scheduler>,
    /// Build the results table (results.csv, results.md) of the sweep in this folder from
    /// the cells that have finished.
    #[arg(long, conflicts_with_all = ["data", "out", "emit"])]
    collect: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Scheduler {
    Slurm,
}

/// One run of the grid.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cell {
    id: String,
    session: String,
    model: ModelFamily,
    seed: u64,
    /// The `--set` flags' values of this cell, in the order given.
    settings: Vec<(String, String)>,
    /// Arguments of `v1p` for this cell.
    args: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    cells: Vec<Cell>,
}

pub fn sweep(args: &SweepArgs) -> ExitCode {
    let result = match &args.collect {
        Some(dir) => collect(dir).map(|table| print!("{table}")),
        None => plan_and_run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn plan_and_run(args: &SweepArgs) -> Result<(), String> {
    let dir = args
        .out
        .as_ref()
        .ok_or("--out DIR is needed (or --collect DIR)")?;
    if args.data.is_empty() {
        return Err("--data: give at least one session file".into());
    }
    let cells = plan(args)?;
    std::fs::create_dir_all(dir.join("cells"))
        .and_then(|_| std::fs::create_dir_all(dir.join("logs")))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // A grid run again into its folder with more models, seeds or values grows it: the
    // manifest keeps the cells it had, so the table shows them all.
    let mut all = read_manifest(dir).map(|m| m.cells).unwrap_or_default();
    for cell in &cells {
        if !all.iter().any(|c| c.id == cell.id) {
            all.push(cell.clone());
        }
    }
    let manifest =
        serde_json::to_string_pretty(&Manifest { cells: all }).map_err(|e| e.to_string())?;
    write(&dir.join("sweep.json"), &manifest)?;
    match args.emit {
        Some(Scheduler::Slurm) => emit_slurm(dir, &cells),
        None => {
            run_cells(dir, &cells, args.jobs)?;
            let table = collect(dir)?;
            print!("{table}");
            Ok(())
        }
    }
}

/// The grid: sessions × models × seeds × every combination of the `--set` values.
fn plan(args: &SweepArgs) -> Result<Vec<Cell>, String> {
    let seeds = parse_seeds(&args.seeds)?;
    let mut settings_grid: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for set in &args.set {
        let (flag, values) = set
            .split_once('=')
            .ok_or_else(|| format!("--set {set}: write it as flag=value1,value2"))?;
        let flag = flag.trim_start_matches('-').to_string();
        if ["data", "model", "seed", "json", "out", "preset"].contains(&flag.as_str()) {
            return Err(format!(
                "--set {flag}: this flag is set by the sweep itself"
            ));
        }
        // Known flags and good values only, refused now rather than in every cell.
        let known = flags::find(&flag).ok_or_else(|| {
            format!("--set {flag}: not a flag of v1p train (see v1p train --help)")
        })?;
        let values: Vec<&str> = values.split(',').filter(|v| !v.is_empty()).collect();
        if values.is_empty() {
            return Err(format!("--set {set}: no values"));
        }
        for value in &values {
            known
                .parse(value)
                .map_err(|e| format!("--set {flag}: {}", e.message))?;
        }
        settings_grid = settings_grid
            .into_iter()
            .flat_map(|done| {
                let flag = flag.clone();
                values.iter().map(move |v| {
                    let mut next = done.clone();
                    next.push((flag.clone(), v.to_string()));
                    next
                })
            })
            .collect();
    }
    let mut presets = BTreeMap::new();
    for name in &args.preset {
        let config = TrainingConfig::preset(name)
            .ok_or_else(|| format!("--preset {name}: not one of {}", PRESETS.join(", ")))?;
        if presets.insert(config.model.family, name.clone()).is_some() {
            return Err(format!("--preset {name}: two presets for the same model"));
        }
    }
    // Seeds outermost: an interrupted or partial sweep has every session at its first
    // seeds before any at its last.
    let mut cells = Vec::new();
    for &seed in &seeds {
        for data in &args.data {
            let data = std::path::absolute(data).map_err(|e| format!("{}: {e}", data.display()))?;
            let session = data
                .file_stem()
                .map_or_else(|| "session".into(), |s| s.to_string_lossy().into_owned());
            for &model in &args.model {
                for settings in &settings_grid {
                    let mut id = format!("{session}__{}__seed{seed}", model.name());
                    let mut cell_args = vec![
                        "train".to_string(),
                        "--data".into(),
                        data.display().to_string(),
                        "--model".into(),
                        model.name().into(),
                        "--seed".into(),
                        seed.to_string(),
                    ];
                    if let Some(preset) = presets.get(&model) {
                        cell_args.extend(["--preset".into(), preset.clone()]);
                    }
                    for (flag, value) in settings {
                        id.push_str(&format!("__{flag}={value}"));
                        cell_args.extend([format!("--{flag}"), value.clone()]);
                    }
                    cell_args.push("--json".into());
                    cells.push(Cell {
                        id: id.replace(
                            |c: char| !c.is_ascii_alphanumeric() && !"._=-".contains(c),
                            "_",
                        ),
                        session: session.clone(),
                        model,
                        seed,
                        settings: settings.clone(),
                        args: cell_args,
                    });
                }
            }
        }
    }
    Ok(cells)
}

fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("--seeds {text}: write a range (0..3) or a list (0,4,7)");
    let seeds: Vec<u64> = if let Some((a, b)) = text.split_once("..") {
        let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        (a..b).collect()
    } else {
        text.split(',')
            .map(|s| s.trim().parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?
    };
    if seeds.is_empty() || seeds.len() > 1000 {
        return Err(bad());
    }
    Ok(seeds)
}

fn result_path(dir: &Path, cell: &Cell) -> PathBuf {
    dir.join("cells").join(format!("{}.json", cell.id))
}

/// The `v1p train --json` output of a finished cell, if it has one.
fn finished(dir: &Path, cell: &Cell) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(result_path(dir, cell)).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.pointer("/report/best/mean_r")?.as_f64()?;
    Some(value)
}

fn run_cells(dir: &Path, cells: &[Cell], jobs: Option<usize>) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = jobs.unwrap_or((cores / 2).max(1)).clamp(1, 64);
    let threads_each = (cores / jobs).max(1);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let todo: Vec<Cell> = cells
        .iter()
        .filter(|c| finished(dir, c).is_none())
        .cloned()
        .collect();
    let bar = ProgressBar::new(cells.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} cells  elapsed {elapsed}  eta {eta}  {msg}",
        )
        .expect("valid template"),
    );
    bar.set_position((cells.len() - todo.len()) as u64);
    if todo.len() < cells.len() {
        bar.println(format!(
            "resuming: {} of {} cells already done",
            cells.len() - todo.len(),
            cells.len()
        ));
    }
    // Popped from the end: reversed so that cells run in the planned order.
    let queue = Arc::new(Mutex::new(todo.into_iter().rev().collect::<Vec<_>>()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let (queue, failures, bar, exe) = (queue.clone(), failures.clone(), &bar, &exe);
            scope.spawn(move || {
                loop {
                    let Some(cell) = queue.lock().expect("queue").pop() else {
                        break;
                    };
                    bar.set_message(cell.id.clone());
                    if let Err(e) = run_cell(dir, exe, &cell, threads_each) {
                        failures
                            .lock()
                            .expect("failures")
                            .push(format!("{}: {e}", cell.id));
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let failures = failures.lock().expect("failures");
    if !failures.is_empty() {
        return Err(format!(
            "{} cells failed (logs in {}): {}",
            failures.len(),
            dir.join("logs").display(),
            failures.join("; ")
        ));
    }
    Ok(())
}

/// Runs one cell; its result is written under a temporary name and renamed when complete,
/// so an interrupted cell is never mistaken for a finished one.
fn run_cell(dir: &Path, exe: &Path, cell: &Cell, threads: usize) -> Result<(), String> {
    let path = result_path(dir, cell);
    let partial = path.with_extension("json.partial");
    let stdout = std::fs::File::create(&partial).map_err(|e| e.to_string())?;
    let stderr = std::fs::File::create(dir.join("logs").join(format!("{}.log", cell.id)))
        .map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command
        .args(&cell.args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        command.env("RAYON_NUM_THREADS", threads.to_string());
    }
    let status = command.status().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("exited with {status}"));
    }
    std::fs::rename(&partial, &path).map_err(|e| e.to_string())
}

fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// A Slurm job array, one task per cell: each runs its `v1p train --json` into the cell's
/// result file, skipping a cell that has finished (so the array can be resubmitted).
fn emit_slurm(dir: &Path, cells: &[Cell]) -> Result<(), String> {
    let dir = std::path::absolute(dir).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let lines: Vec<String> = cells
        .iter()
        .map(|c| {
            let args: Vec<String> = c.args.iter().map(|a| shell_quote(a)).collect();
            format!("{}\t{}", c.id, args.join(" "))
        })
        .collect();
    write(&dir.join("cells.tsv"), &(lines.join("\n") + "\n"))?;
    let script = format!(
        r#"#!/bin/bash
# Written by `v1p sweep --emit slurm`: {n} cells, one array task each.
# Submit with: sbatch {script}   — then: v1p sweep --collect {dir}
#SBATCH --job-name=v1p-sweep
#SBATCH --array=0-{last}
#SBATCH --cpus-per-task=2
#SBATCH --mem=4G
#SBATCH --time=00:30:00
#SBATCH --output={dir}/logs/slurm-%A_%a.log
set -euo pipefail
SWEEP_DIR={dir_q}
V1P=${{V1P:-{exe}}}
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$SWEEP_DIR/cells.tsv")
id=${{line%%$'\t'*}}
args=${{line#*$'\t'}}
result="$SWEEP_DIR/cells/$id.json"
if [ -s "$result" ]; then echo "$id: already done"; exit 0; fi
export RAYON_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-2}}
eval "\"\$V1P\" $args" > "$result.partial"
mv "$result.partial" "$result"
"#,
        n = cells.len(),
        last = cells.len().saturating_sub(1),
        script = dir.join("sweep.slurm").display(),
        dir = dir.display(),
        dir_q = shell_quote(&dir.display().to_string()),
        exe = shell_quote(&exe.display().to_string()),
    );
    write(&dir.join("sweep.slurm"), &script)?;
    println!(
        "wrote {} ({} array tasks) and {}; after the jobs: v1p sweep --collect {}",
        dir.join("sweep.slurm").display(),
        cells.len(),
        dir.join("cells.tsv").display(),
        dir.display()
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// One row of the results table: a (session, model, settings) over its seeds.
struct Row {
    r: Vec<f64>,
    seconds: Vec<f64>,
}

fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

fn read_manifest(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join("sweep.json");
    std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (is this a sweep folder?)", path.display()))
        .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("{}: {e}", path.display())))
}

/// Session names without the part they all share at the end (`01mean50ms_smallim…` → `01`),
/// so that ten sessions fit across a table.
fn short_names(sessions: &[String]) -> Vec<String> {
    if sessions.len() < 2 {
        return sessions.to_vec();
    }
    let shortest = sessions.iter().map(|s| s.len()).min().unwrap_or(0);
    let mut common = 0;
    while common < shortest
        && sessions.iter().all(|s| {
            s.as_bytes()[s.len() - common - 1]
                == sessions[0].as_bytes()[sessions[0].len() - common - 1]
        })
    {
        common += 1;
    }
    // Keep at least one character of each name.
    let common = common.min(shortest.saturating_sub(1));
    sessions
        .iter()
        .map(|s| String::from_utf8_lossy(&s.as_bytes()[..s.len() - common]).into_owned())
        .collect()
}

/// Reads the manifest and the finished cells; writes results.csv (one row per session ×
/// model × settings: mean ± sd of the mean r over seeds) and results.md (models × sessions);
/// returns the markdown.
fn collect(dir: &Path) -> Result<String, String> {
    let manifest = read_manifest(dir)?;
    let mut rows: BTreeMap<(String, String), BTreeMap<String, Row>> = BTreeMap::new();
    let mut done = 0;
    for cell in &manifest.cells {
        let Some(result) = finished(dir, cell) else {
            continue;
        };
        done += 1;
        let label = std::iter::once(cell.model.name().to_string())
            .chain(cell.settings.iter().map(|(k, v)| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(" ");
        let row = rows
            .entry((format!("{:?}", cell.model), label))
            .or_default()
            .entry(cell.session.clone())
            .or_insert(Row {
                r: Vec::new(),
                seconds: Vec::new(),
            });
        row.r.push(
            result
                .pointer("/report/best/mean_r")
                .and_then(|v| v.as_f64())
                .unwrap_or(f64::NAN),
        );
        row.seconds.push(
            result
                .pointer("/timing/total_seconds")
                .and_then(|v| v.as_f64())
                .unwrap_or(f64::NAN),
        );
    }
    let sessions: Vec<String> = {
        let mut s: Vec<String> = manifest.cells.iter().map(|c| c.session.clone()).collect();
        s.dedup();
        s.sort();
        s.dedup();
        s
    };
    let mut csv = String::from("model,session,seeds,mean_r,sd_r,mean_seconds\n");
    let headings = short_names(&sessions);
    let mut md = format!(
        "{done} of {} cells finished. Mean r over seeds (± sd), per session; \"all\" = mean of \
         the session means.\n\n| model | {} | all | s per run |\n|---|{}---|---|\n",
        manifest.cells.len(),
        headings.join(" | "),
        "---|".repeat(sessions.len())
    );
    for ((_, label), by_session) in &rows {
        let mut cells_md = Vec::new();
        let mut session_means = Vec::new();
        let mut seconds = Vec::new();
        for session in &sessions {
            match by_session.get(session) {
                Some(row) => {
                    let (mean, sd) = mean_sd(&row.r);
                    session_means.push(mean);
                    seconds.extend(&row.seconds);
                    csv.push_str(&format!(
                        "{label},{session},{},{mean:.4},{sd:.4},{:.1}\n",
                        row.r.len(),
                        mean_sd(&row.seconds).0
                    ));
                    cells_md.push(if row.r.len() > 1 {
                        format!("{mean:.3} ± {sd:.3}")
                    } else {
                        format!("{mean:.3}")
                    });
                }
                None => cells_md.push("–".into()),
            }
        }
        let all = if session_means.len() == sessions.len() {
            format!("**{:.3}**", mean_sd(&session_means).0)
        } else {
            format!("({:.3}, partial)", mean_sd(&session_means).0)
        };
        md.push_str(&format!(
            "| {label} | {} | {all} | {:.0} |\n",
            cells_md.join(" | "),
            mean_sd(&seconds).0
        ));
    }
    write(&dir.join("results.csv"), &csv)?;
    write(&dir.join("results.md"), &md)?;
    Ok(md)
}
