//! The flag table (`config::flags`): it covers the config, round-trips every preset, and
//! refuses bad text by name.

use std::collections::BTreeSet;

use serde_json::Value;
use v1_predictor::config::flags::{
    self, FLAGS, Kind, Shown, apply_flags, check_ranges, flag_values, set_flag,
};
use v1_predictor::model::ModelFamily;
use v1_predictor::training::{PRESETS, TrainingConfig};

/// Leaves of the config that are deliberately not flags, and why.
const NOT_FLAGS: &[(&[&str], &str)] = &[(
    &["model", "family"],
    "the model is chosen by --model (the page's model menu), not a flag of the seed",
)];

fn leaves(value: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                path.push(key.clone());
                leaves(child, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

#[test]
fn every_leaf_of_the_config_is_one_flag_or_exempt() {
    let mut found = Vec::new();
    leaves(
        &serde_json::to_value(TrainingConfig::new()).unwrap(),
        &mut Vec::new(),
        &mut found,
    );
    for leaf in &found {
        let exempt = NOT_FLAGS.iter().any(|(p, _)| p == leaf);
        let uses = FLAGS.iter().filter(|f| f.path == leaf.as_slice()).count();
        assert!(
            exempt || uses == 1,
            "config field {leaf:?} is a flag {uses} times: add it to FLAGS (or to NOT_FLAGS with a reason)"
        );
        assert!(!(exempt && uses > 0), "{leaf:?} is exempt but in the table");
    }
    for flag in FLAGS {
        assert!(
            found.iter().any(|l| l == flag.path),
            "--{}: its path {:?} is not a field of TrainingConfig",
            flag.name,
            flag.path
        );
    }
}

#[test]
fn names_and_help_texts_are_unique_and_sentences() {
    let names: BTreeSet<_> = FLAGS.iter().map(|f| f.name).collect();
    let helps: BTreeSet<_> = FLAGS.iter().map(|f| f.help).collect();
    let labels: BTreeSet<_> = FLAGS.iter().map(|f| f.label).collect();
    assert_eq!(names.len(), FLAGS.len());
    assert_eq!(helps.len(), FLAGS.len(), "two flags share a help text");
    assert_eq!(labels.len(), FLAGS.len(), "two flags share a label");
    for flag in FLAGS {
        assert!(flag.help.ends_with('.'), "--{}: {}", flag.name, flag.help);
        assert!(!flag.families.is_empty(), "--{}", flag.name);
    }
}

#[test]
fn a_first_time_visitor_sees_a_few_flags_per_model() {
    for family in ModelFamily::ALL {
        let everyday = FLAGS
            .iter()
            .filter(|f| f.everyday && f.applies_to(family))
            .count();
        assert!((1..=5).contains(&everyday), "{family:?}: {everyday}");
    }
    // The Gabor ridge has no training loop: only the split's flags and its bank apply.
    let gabor: Vec<_> = FLAGS
        .iter()
        .filter(|f| f.applies_to(ModelFamily::Gabor))
        .map(|f| f.name)
        .collect();
    assert_eq!(
        gabor,
        [
            "trainingset_frac",
            "earlystop_frac",
            "seed",
            "gabor_orientations",
            "gabor_frequencies",
            "gabor_min_wavelength",
            "gabor_positions"
        ]
    );
}

#[test]
fn every_preset_is_in_range_and_round_trips_through_text() {
    for name in PRESETS {
        let preset = TrainingConfig::preset(name).unwrap();
        check_ranges(&preset).unwrap_or_else(|e| panic!("preset {name}: {e}"));
        let values = flag_values(&preset);
        assert_eq!(values.len(), FLAGS.len());
        // From another preset of the same model, so that every value has to be set.
        let mut config = TrainingConfig::new();
        config.model.family = preset.model.family;
        apply_flags(&mut config, values.iter().map(|(n, t)| (*n, t.as_str()))).unwrap();
        assert_eq!(config, preset, "preset {name}");
    }
    let fast = flag_values(&TrainingConfig::preset("fast").unwrap());
    let text = |name: &str| fast.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    // Floats as short as round-trips, whole numbers without a point.
    assert_eq!(text("learning_rate"), "0.0001");
    assert_eq!(text("trainingset_frac"), (2.0f64 / 3.0).to_string());
    assert_eq!(text("max_steps"), "2000");
    assert_eq!(text("optimizer"), "adam");
    assert_eq!(text("standardise"), "false");
    assert_eq!(text("gabor_min_wavelength"), "4");
}

#[test]
fn set_flag_reaches_nested_fields_and_takes_whole_numbers_written_as_floats() {
    let mut config = TrainingConfig::new();
    set_flag(&mut config, "conv1", " 8 ").unwrap();
    set_flag(&mut config, "gabor_positions", "5").unwrap();
    set_flag(&mut config, "max_steps", "1e3").unwrap();
    set_flag(&mut config, "output", "softplus").unwrap();
    set_flag(&mut config, "standardise", "true").unwrap();
    set_flag(&mut config, "learning_rate", "3e-4").unwrap();
    assert_eq!(config.model.conv1, 8);
    assert_eq!(config.model.gabor.positions, 5);
    assert_eq!(config.max_steps, 1000);
    assert_eq!(config.model.output, v1_predictor::model::OutputFn::Softplus);
    assert!(config.model.standardise);
    assert_eq!(config.learning_rate, 3e-4);
}

#[test]
fn bad_text_and_out_of_range_values_name_the_flag_in_plain_words() {
    let cases = [
        ("conv1", "abc", "\"abc\" is not a number"),
        ("conv1", "0", "must be between 1 and 512, got 0"),
        ("conv1", "2.5", "must be a whole number ≥ 0, got 2.5"),
        ("seed", "-1", "must be a whole number ≥ 0, got -1"),
        // A JavaScript number holds whole numbers exactly only up to 2^53 - 1.
        ("seed", "1e20", "1e20 is too large"),
        (
            "seed",
            "9007199254740992",
            "must be between 0 and 9007199254740991, got 9007199254740992",
        ),
        (
            "learning_rate",
            "0",
            "must be above 0 and at most 10, got 0",
        ),
        ("learning_rate", "nan", "\"nan\" is not a number"),
        (
            "trainingset_frac",
            "1",
            "must be above 0 and below 1, got 1",
        ),
        ("weight_decay", "2", "must be between 0 and 1, got 2"),
        ("dropout", "", "\"\" is not a number"),
        (
            "optimizer",
            "rmsprop",
            "\"rmsprop\" is not one of sgd, adam",
        ),
        ("standardise", "yes", "\"yes\" is not true or false"),
    ];
    for (name, text, message) in cases {
        let mut config = TrainingConfig::new();
        let error = set_flag(&mut config, name, text).unwrap_err();
        assert_eq!(error.flag, name);
        assert_eq!(error.message, message, "--{name} {text}");
        assert_eq!(
            config,
            TrainingConfig::new(),
            "a refused value changes nothing"
        );
    }
    let error = set_flag(&mut TrainingConfig::new(), "conv9", "1").unwrap_err();
    assert_eq!(error.flag, "conv9");
    // Several at once: the first bad one is reported, and nothing is changed.
    let mut config = TrainingConfig::new();
    let error = apply_flags(&mut config, [("conv1", "8"), ("nk1", "0")]).unwrap_err();
    assert_eq!(error.flag, "nk1");
    assert_eq!(config.model.conv1, 16);
}

#[test]
fn validation_uses_the_table_for_the_flags_of_the_run_s_model() {
    let absurd = TrainingConfig::new().with_max_steps(0);
    assert_eq!(check_ranges(&absurd).unwrap_err().flag, "max_steps");
    assert_eq!(absurd.validate(270).unwrap_err().flag, "max_steps");
    // A CNN setting means nothing to the Gabor ridge: not refused there.
    let mut gabor = TrainingConfig::preset("gabor").unwrap();
    gabor.model.conv1 = 0;
    assert!(check_ranges(&gabor).is_ok());
    gabor.model.gabor.orientations = 0;
    assert_eq!(check_ranges(&gabor).unwrap_err().flag, "gabor_orientations");
}

#[test]
fn the_page_s_view_of_the_table_has_kinds_ranges_and_families() {
    let table = serde_json::to_value(flags::table()).unwrap();
    let conv1 = table
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "conv1")
        .unwrap();
    assert_eq!(conv1["kind"], "int");
    assert_eq!(conv1["min"], 1.0);
    assert_eq!(conv1["max"], 512.0);
    assert_eq!(conv1["group"], "CNN params");
    assert_eq!(conv1["label"], "filters in layer 1");
    assert_eq!(conv1["everyday"], true);
    assert_eq!(conv1["families"], serde_json::json!(["cnn", "cnnplus"]));
    assert!(conv1.get("choices").is_none() && conv1.get("minExclusive").is_none());
    for flag in FLAGS {
        let info = flag.info();
        match flag.kind {
            Kind::Choice(choices) => assert_eq!(info.choices, Some(choices)),
            Kind::Bool => assert_eq!(info.choices, Some(&["false", "true"][..])),
            Kind::Int { .. } | Kind::Float { .. } => assert!(info.min.is_some()),
        }
    }
}

#[test]
fn a_run_s_summary_is_written_from_the_table() {
    let mut config = TrainingConfig::new();
    let seed = config.summary();
    assert!(seed.starts_with("cnn · lr 0.0002 · steps "), "{seed}");
    // Every flag of the model with words in the table is in the summary, with its value.
    for flag in FLAGS.iter().filter(|f| f.applies_to(ModelFamily::Cnn)) {
        if let Some(Shown::Always(words) | Shown::SecondConv(words)) = flag.shown {
            assert!(seed.contains(words), "{} missing from {seed}", flag.name);
        }
    }
    assert!(
        seed.contains("train 0.666667"),
        "fractions are short: {seed}"
    );
    // A change of a flag changes its words; "off" values and a missing layer are left out.
    assert!(
        !seed.contains("patience") && !seed.contains("ensemble"),
        "{seed}"
    );
    set_flag(&mut config, "learning_rate", "0.00012345").unwrap();
    set_flag(&mut config, "patience", "5").unwrap();
    set_flag(&mut config, "numconvlayer", "1").unwrap();
    set_flag(&mut config, "standardise", "true").unwrap();
    let changed = config.summary();
    assert!(
        changed.contains("lr 0.00012345 ·") && changed.contains("patience 5"),
        "{changed}"
    );
    assert!(changed.contains("conv layers 1"), "{changed}");
    assert!(
        changed.contains("standardised pixels") && !changed.contains("conv2"),
        "{changed}"
    );
    // Another model shows its own flags only.
    let gabor = TrainingConfig::preset("gabor").unwrap();
    let text = gabor.summary();
    assert!(
        text.starts_with("gabor · ") && text.contains("orientations 8"),
        "{text}"
    );
    assert!(
        text.contains("features · ridge per neuron") && !text.contains("lr "),
        "{text}"
    );
}
