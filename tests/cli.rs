//! The `v1p` command: exit codes, messages and the `--json` report.
#![cfg(not(target_arch = "wasm32"))] // native tests: they run the binary

mod common;

use std::process::Command;

fn v1p(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_v1p"))
        .args(args)
        .output()
        .expect("v1p runs")
}

/// A run of a few seconds: the fast preset, 20 steps of a small network.
const TINY_RUN: &[&str] = &[
    "--preset",
    "fast",
    "--max_steps",
    "20",
    "--eval_every",
    "10",
    "--conv1",
    "4",
    "--conv2",
    "8",
    "--hidden1",
    "16",
];

fn demo() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/data/simulated-v1.mat").to_string()
}

#[test]
fn inspect_summarises_a_good_file_and_exits_2_on_a_bad_one() {
    let ok = v1p(&["inspect", &demo()]);
    assert!(ok.status.success());
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        text.contains("270 × 33×33") && text.contains("neurons: 40"),
        "{text}"
    );

    let bad = common::fixtures().join("v73.mat");
    let out = v1p(&["inspect", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("v73.mat") && err.contains("-v7"), "{err}");
}

#[test]
fn train_refuses_a_bad_flag_with_exit_2_and_names_it() {
    let out = v1p(&["train", "--data", &demo(), "--batch_size", "1000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--batch_size"));
}

#[test]
fn train_json_reports_flags_split_history_best_and_timing() {
    let out = v1p(&[
        "train",
        "--data",
        &demo(),
        "--preset",
        "fast",
        "--max_steps",
        "30",
        "--eval_every",
        "10",
        "--conv1",
        "4",
        "--conv2",
        "8",
        "--hidden1",
        "16",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &json["report"];
    assert_eq!(report["flags"]["optimizer"], "adam");
    assert_eq!(report["flags"]["model"]["conv1"], 4);
    assert_eq!(report["split"]["train"].as_array().unwrap().len(), 180);
    let steps: Vec<u64> = report["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![1, 11, 21, 29]);
    assert_eq!(report["best"]["r"].as_array().unwrap().len(), 40);
    assert!(report["baseline_loss"].as_f64().unwrap() > 0.0);
    assert!(json["timing"]["ms_per_step"].as_f64().unwrap() > 0.0);
}

#[test]
fn train_refuses_an_out_folder_it_cannot_create_before_training() {
    // A file where the folder should be: refused at once, exit 2, before any step.
    let blocker = std::env::temp_dir().join(format!("v1p-not-a-folder-{}", std::process::id()));
    std::fs::write(&blocker, b"x").unwrap();
    let out_dir = blocker.join("results");
    let out = v1p(&[
        "train",
        "--data",
        &demo(),
        "--max_steps",
        "100000",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    std::fs::remove_file(&blocker).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot create") && err.contains("results"),
        "{err}"
    );
}

#[test]
fn explain_writes_the_views_of_a_saved_network_and_refuses_bad_input() {
    let dir = std::env::temp_dir().join(format!("v1p-explain-{}", std::process::id()));
    let dir_text = dir.to_str().unwrap();
    let data = demo();
    let trained = v1p(&[&["train", "--data", &data], TINY_RUN, &["--out", dir_text]].concat());
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    let network = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "bpk"))
        .expect("a .bpk was written");
    let network = network.to_str().unwrap();

    let out = v1p(&[
        "explain",
        "--network",
        network,
        "--data",
        &demo(),
        "--out",
        dir_text,
        "--steps",
        "4",
        "--starts",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The ground truth beside the demo data is found and compared, per cell type.
    assert_eq!(
        json["summary"]["truth_by_type"].as_array().unwrap().len(),
        4
    );
    assert_eq!(json["summary"]["neurons"].as_array().unwrap().len(), 40);
    let names: Vec<&str> = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for (name, prefix) in names
        .iter()
        .zip(["explain_", "explain_neurons_", "conv1_filters_"])
    {
        assert!(name.starts_with(prefix), "{name}");
        let path = dir.join(name);
        assert!(
            std::fs::metadata(&path).unwrap().len() > 100,
            "{}",
            path.display()
        );
    }

    // Bad input: not a network, another session's data, absurd settings — exit 2, in words.
    let not_a_network = v1p(&[
        "explain",
        "--network",
        &demo(),
        "--data",
        &demo(),
        "--out",
        dir_text,
    ]);
    assert_eq!(not_a_network.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_a_network.stderr).contains("not a Burn record"));
    if let Some(session) = common::kohn_session(common::SESSION_07) {
        let other = dir.join(common::SESSION_07);
        std::fs::write(&other, session).unwrap();
        let out = v1p(&[
            "explain",
            "--network",
            network,
            "--data",
            other.to_str().unwrap(),
            "--out",
            dir_text,
        ]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("load the data it was trained on"));
    }
    let absurd = v1p(&[
        "explain",
        "--network",
        network,
        "--data",
        &demo(),
        "--out",
        dir_text,
        "--starts",
        "0",
    ]);
    assert_eq!(absurd.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&absurd.stderr).contains("starts"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_help_lists_every_flag_of_the_table_with_its_help() {
    let out = v1p(&["train", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in v1_predictor::config::flags::FLAGS {
        assert!(
            help.contains(&format!("--{} <", flag.name)),
            "--{}",
            flag.name
        );
        assert!(
            help.contains(flag.help),
            "--{}: {}\n{help}",
            flag.name,
            flag.help
        );
    }
    assert!(help.contains("--config <FILE>"), "{help}");
}

#[test]
fn train_config_re_runs_a_run_from_its_record_and_flags_override_it() {
    let dir = std::env::temp_dir().join(format!("v1p-config-{}", std::process::id()));
    let (first_dir, again_dir) = (dir.join("first"), dir.join("again"));
    let data = demo();
    let run = |extra: &[&str], out: &std::path::Path| {
        let mut args = vec!["train", "--data", data.as_str()];
        args.extend(extra);
        args.extend(["--out", out.to_str().unwrap(), "--json"]);
        let out = v1p(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let record_of = |dir: &std::path::Path| {
        let path = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with("training_manualsave_") && name.ends_with(".json")
            })
            .expect("a training record was written");
        let text = std::fs::read_to_string(&path).unwrap();
        (
            path,
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        )
    };
    let first = run(&[TINY_RUN, &["--seed", "3"]].concat(), &first_dir);
    let (record, first_record) = record_of(&first_dir);
    let again = run(&["--config", record.to_str().unwrap()], &again_dir);
    let (_, again_record) = record_of(&again_dir);
    // Same flags, same seed: the same numbers.
    assert!(first["report"]["best"]["mean_r"].is_f64(), "{first}");
    assert_eq!(first_record["FLAGS"], again_record["FLAGS"]);
    assert_eq!(first["report"]["flags"], again["report"]["flags"]);
    assert_eq!(
        first["report"]["best"]["mean_r"],
        again["report"]["best"]["mean_r"]
    );
    assert_eq!(first["report"]["best"]["r"], again["report"]["best"]["r"]);

    // A flag on the command line changes the record's value, and only it.
    let changed = v1p(&[
        "train",
        "--data",
        &demo(),
        "--config",
        record.to_str().unwrap(),
        "--max_steps",
        "5",
        "--json",
    ]);
    assert!(changed.status.success());
    let changed: serde_json::Value = serde_json::from_slice(&changed.stdout).unwrap();
    let mut expected = first["report"]["flags"].clone();
    expected["max_steps"] = 5.into();
    assert_eq!(changed["report"]["flags"], expected);

    // Not with --preset or --model; a file that is not a record is refused by name.
    for extra in [["--preset", "fast"], ["--model", "ln"]] {
        let mut args = vec!["train", "--data", data.as_str()];
        args.extend(["--config", record.to_str().unwrap()]);
        args.extend(extra);
        let out = v1p(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
    }
    let not_a_record = v1p(&["train", "--data", &demo(), "--config", &demo()]);
    assert_eq!(not_a_record.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_a_record.stderr).contains("--config"));
    std::fs::remove_dir_all(&dir).unwrap();
}
