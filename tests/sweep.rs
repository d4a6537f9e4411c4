//! `v1p sweep`: a small grid runs and is tabulated, an interrupted sweep resumes without
//! redoing finished cells, and a Slurm job array's outputs are collected into the same table.
#![cfg(not(target_arch = "wasm32"))] // native tests: they run the binary

use std::path::{Path, PathBuf};
use std::process::Command;

const V1P: &str = env!("CARGO_BIN_EXE_v1p");

fn demo() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/data/simulated-v1.mat").to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("v1p-sweep-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// 1 session × 2 models × 2 max_steps values × 2 seeds = 8 cells, each a second or two.
fn grid_args(out: &Path) -> Vec<String> {
    [
        "sweep",
        "--data",
        &demo(),
        "--model",
        "ln,gabor",
        "--seeds",
        "0..2",
        "--set",
        "max_steps=20,40",
        "--set",
        "eval_every=10",
        "--out",
        out.to_str().unwrap(),
        "--jobs",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run(args: &[String]) -> std::process::Output {
    let out = Command::new(V1P).args(args).output().expect("v1p runs");
    assert!(
        out.status.success(),
        "v1p {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn cell_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn mean_r(file: &Path) -> f64 {
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    value
        .pointer("/report/best/mean_r")
        .unwrap()
        .as_f64()
        .unwrap()
}

#[test]
fn a_grid_runs_resumes_and_is_tabulated() {
    let dir = scratch("local");
    let table = String::from_utf8(run(&grid_args(&dir)).stdout).unwrap();
    let files = cell_files(&dir);
    assert_eq!(files.len(), 8, "{files:?}");
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    // One row per model × setting combination (one session), each over 2 seeds.
    assert_eq!(csv.lines().count(), 1 + 4, "{csv}");
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.split(',').nth(2) == Some("2")),
        "{csv}"
    );
    assert!(
        table.contains("| ln max_steps=40 eval_every=10 |"),
        "{table}"
    );
    assert!(table.contains("8 of 8 cells finished"), "{table}");

    // Interrupted: one cell lost, one marked so we can see whether it is recomputed.
    let lost = &files[0];
    let kept = &files[1];
    std::fs::remove_file(lost).unwrap();
    let marked = std::fs::read_to_string(kept).unwrap().replacen(
        "\"mean_r\":",
        "\"mean_r\":0.987654,\"was_mean_r\":",
        1,
    );
    std::fs::write(kept, &marked).unwrap();
    let before = mean_r(kept);
    assert!((before - 0.987654).abs() < 1e-9, "the marker reads back");
    std::fs::write(dir.join("cells").join("stale.json.partial"), "{").unwrap();

    run(&grid_args(&dir));
    assert!(lost.exists(), "the missing cell was run again");
    assert_eq!(mean_r(kept), before, "a finished cell is not run again");
    let md = std::fs::read_to_string(dir.join("results.md")).unwrap();
    assert!(md.contains("8 of 8 cells finished"), "{md}");
    assert!(!dir.join("cells").join("stale.json").exists());

    // The grid grown in its folder (one more seed of one model): the table keeps every cell.
    let mut more = grid_args(&dir);
    let at = more.iter().position(|a| a == "ln,gabor").unwrap();
    more[at] = "gabor".into();
    let at = more.iter().position(|a| a == "0..2").unwrap();
    more[at] = "2".into();
    let table = String::from_utf8(run(&more).stdout).unwrap();
    assert!(table.contains("10 of 10 cells finished"), "{table}");
    assert!(
        table.contains("| ln max_steps=20 eval_every=10 |"),
        "{table}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_slurm_array_is_written_and_its_outputs_are_collected() {
    let dir = scratch("slurm");
    let mut args = grid_args(&dir);
    args.extend(["--emit".into(), "slurm".into()]);
    let out = run(&args);
    assert!(String::from_utf8_lossy(&out.stdout).contains("8 array tasks"));
    let script = std::fs::read_to_string(dir.join("sweep.slurm")).unwrap();
    assert!(script.contains("#SBATCH --array=0-7"), "{script}");
    assert!(cell_files(&dir).is_empty(), "--emit runs nothing itself");

    // What Slurm would do: run the script once per array index (here, 5 of the 8 tasks
    // finished, as when a job is still running or some tasks failed).
    for task in [0, 2, 3, 5, 7] {
        let status = Command::new("bash")
            .arg(dir.join("sweep.slurm"))
            .env("SLURM_ARRAY_TASK_ID", task.to_string())
            .env("V1P", V1P)
            .status()
            .unwrap();
        assert!(status.success(), "task {task}");
    }
    assert_eq!(cell_files(&dir).len(), 5);
    let table = String::from_utf8(
        run(&[
            "sweep".into(),
            "--collect".into(),
            dir.display().to_string(),
        ])
        .stdout,
    )
    .unwrap();
    assert!(table.contains("5 of 8 cells finished"), "{table}");
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let seeds: usize = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(seeds, 5, "{csv}");

    // A rerun of a finished task is skipped, not recomputed.
    let first = cell_files(&dir)[0].clone();
    let stamp = std::fs::metadata(&first).unwrap().modified().unwrap();
    let status = Command::new("bash")
        .arg(dir.join("sweep.slurm"))
        .env("SLURM_ARRAY_TASK_ID", "0")
        .env("V1P", V1P)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::metadata(&first).unwrap().modified().unwrap(),
        stamp
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_grids_are_refused_by_name() {
    for (extra, expected) in [
        (vec!["--seeds", "3..1"], "--seeds"),
        (vec!["--set", "max_steps"], "--set"),
        (vec!["--set", "seed=1,2"], "--set seed"),
        // Names and values are checked against the flag table before any cell runs.
        (vec!["--set", "conv9=1"], "--set conv9: not a flag"),
        (
            vec!["--set", "max_steps=20,abc"],
            "--set max_steps: \"abc\" is not a number",
        ),
        (vec!["--preset", "nonsense"], "--preset nonsense"),
    ] {
        let dir = scratch("bad");
        let demo = demo();
        let mut args = vec![
            "sweep",
            "--data",
            &demo,
            "--model",
            "gabor",
            "--out",
            dir.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = Command::new(V1P).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}
