//! Results that outlive a run: a saved network loads back and gives the same r, a network
//! that does not fit the data is refused, and the exported files are named and shaped as
//! the seed's. (numpy reads the files in tests/numpy.)
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::module::Module;
use burn::prelude::*;
use v1_predictor::data::Dataset;
use v1_predictor::model::ModelConfig;
use v1_predictor::results::{self, ResultsError, SavedNetwork, import};
use v1_predictor::training::{OptimizerKind, Trainer, TrainingConfig, TrainingReport};

const STARTED: u64 = 1_700_000_000;

use common::demo_dataset as demo;

fn trained(dataset: Dataset, layers: usize) -> Trainer {
    let config = TrainingConfig::new()
        .with_optimizer(OptimizerKind::Adam)
        .with_learning_rate(1e-3)
        .with_batch_size(20)
        .with_max_steps(60)
        .with_eval_every(20)
        .with_seed(5)
        .with_model(
            ModelConfig::new()
                .with_numconvlayer(layers)
                .with_conv1(4)
                .with_conv2(6)
                .with_conv1size(5)
                .with_conv2size(3)
                .with_hidden1(24),
        );
    let mut trainer = Trainer::new(config, dataset, &Device::flex()).unwrap();
    pollster::block_on(trainer.run(|_| true)).unwrap();
    trainer
}

#[test]
fn a_saved_network_loads_back_and_gives_the_same_r() {
    for layers in [1, 2, 3] {
        let trainer = trained(demo(), layers);
        let best = trainer.best().unwrap().clone();
        let saved = pollster::block_on(SavedNetwork::best_of(&trainer, STARTED))
            .unwrap()
            .unwrap();
        assert_eq!(saved.info.step, best.step);
        assert_eq!(saved.weights.members[0].conv.len(), layers);

        let bytes = saved.to_burnpack().unwrap();
        let loaded = pollster::block_on(SavedNetwork::from_burnpack("net.bpk", &bytes)).unwrap();
        assert_eq!(loaded.info, saved.info);
        assert_eq!(loaded.weights, saved.weights);

        let report =
            pollster::block_on(loaded.evaluate(trainer.dataset(), &Device::flex())).unwrap();
        let again = report.best.unwrap();
        assert_eq!(again.step, best.step);
        assert_eq!(report.split, *trainer.split());
        for (a, b) in again.r.iter().zip(&best.r) {
            assert!((a - b).abs() < 1e-6, "r {a} after reload vs {b} before");
        }
        assert!((again.fve - best.fve).abs() < 1e-6);
        assert!(
            best.r.iter().any(|r| r.abs() > 0.1),
            "vacuous: every r is ~0"
        );
    }
}

#[test]
fn a_network_that_does_not_fit_the_data_is_refused() {
    let trainer = trained(demo(), 2);
    let saved = pollster::block_on(SavedNetwork::best_of(&trainer, STARTED))
        .unwrap()
        .unwrap();
    // Same shapes, other files: evaluated, with a caution.
    assert_eq!(saved.source_warning(trainer.dataset()), None);
    let mut renamed = demo();
    renamed.sources = vec!["another-session.mat".into()];
    let warning = saved.source_warning(&renamed).unwrap();
    assert!(warning.contains("simulated-v1.mat") && warning.contains("another-session.mat"));

    let mut fewer_neurons = demo();
    fewer_neurons.n_neurons = 10;
    fewer_neurons.activity = fewer_neurons
        .activity
        .chunks(40)
        .flat_map(|row| row[..10].to_vec())
        .collect();
    let error = pollster::block_on(saved.evaluate(&fewer_neurons, &Device::flex())).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, ResultsError::Mismatch(_)), "{message}");
    assert!(
        message.contains("40 neurons") && message.contains("10 neurons"),
        "{message}"
    );
    assert!(message.contains("simulated-v1.mat"), "{message}");
}

#[test]
fn files_that_are_not_saved_networks_get_a_clear_message() {
    let mat = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/simulated-v1.mat"
    ))
    .unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("session.mat", mat, "not a Burn record"),
        ("empty.bpk", Vec::new(), "not a Burn record"),
        (
            "other.bpk",
            // A Burn record of some other model: no metadata of ours.
            ModelConfig::new()
                .init([33, 33], 3, 0, &Device::flex())
                .unwrap()
                .into_record()
                .into_bytes()
                .unwrap()
                .to_vec(),
            "not a network saved by this page",
        ),
    ];
    for (name, bytes, expected) in cases {
        let error = pollster::block_on(SavedNetwork::from_burnpack(name, &bytes)).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(name) && message.contains(expected),
            "{message}"
        );
    }

    // A crafted file whose split indexes images that do not exist.
    let trainer = trained(demo(), 1);
    let mut saved = pollster::block_on(SavedNetwork::best_of(&trainer, STARTED))
        .unwrap()
        .unwrap();
    saved.info.split.eval[0] = 10_000;
    let bytes = saved.to_burnpack().unwrap();
    let error = pollster::block_on(SavedNetwork::from_burnpack("odd.bpk", &bytes)).unwrap_err();
    assert!(error.to_string().contains("split"), "{error}");

    // A truncated save: the header is fine, the data is not.
    let trainer = trained(demo(), 1);
    let saved = pollster::block_on(SavedNetwork::best_of(&trainer, STARTED))
        .unwrap()
        .unwrap();
    let bytes = saved.to_burnpack().unwrap();
    let error = pollster::block_on(SavedNetwork::from_burnpack(
        "cut.bpk",
        &bytes[..bytes.len() / 2],
    ))
    .unwrap_err();
    assert!(error.to_string().starts_with("cut.bpk"), "{error}");
}

#[test]
fn exports_are_tagged_with_the_start_time_and_named_as_the_seed() {
    let trainer = trained(demo(), 2);
    let cell_types: Vec<String> = (0..40).map(|i| format!("type{}", i % 3)).collect();
    let report = trainer.report();
    let files = results::report_files(&report, STARTED, &report_sources(), &cell_types).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "training_manualsave_1700000000.json",
            "training_manualsave_1700000000.npz",
            "pearsondata_1700000000.json",
            "pearsondata_1700000000.npz",
            "neurons_1700000000.csv",
        ]
    );
    let csv = String::from_utf8(files[4].bytes.clone()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 41);
    assert!(
        lines[0].starts_with("neuron,cell_type,pearson_r"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("1,type0,"), "{}", lines[1]);
    let json: serde_json::Value = serde_json::from_slice(&files[2].bytes).unwrap();
    assert_eq!(json["rval"].as_array().unwrap().len(), 40);
    assert_eq!(json["FLAGS"]["model"]["hidden1"], 24);

    // A report (from the page's storage, say) whose per-neuron lists disagree is refused.
    let mut broken = report.clone();
    broken.eval_variance.pop();
    assert!(matches!(
        results::report_files(&broken, STARTED, &[], &[]),
        Err(ResultsError::Mismatch(_))
    ));

    // Before the first evaluation there is no best network: only the training record.
    let fresh = Trainer::new(trainer.config().clone(), demo(), &Device::flex()).unwrap();
    let files = results::report_files(&fresh.report(), STARTED, &[], &[]).unwrap();
    assert_eq!(files.len(), 2);
    assert!(
        pollster::block_on(SavedNetwork::best_of(&fresh, STARTED))
            .unwrap()
            .is_none()
    );

    let saved = pollster::block_on(SavedNetwork::best_of(&trainer, STARTED))
        .unwrap()
        .unwrap();
    // Weights whose biases do not fit their layer are refused, not turned into a network.
    let mut short_bias = saved.clone();
    short_bias.weights.members[0]
        .hidden
        .as_mut()
        .unwrap()
        .bias
        .pop();
    assert!(matches!(
        short_bias.to_burnpack(),
        Err(ResultsError::Mismatch(_))
    ));

    let names: Vec<String> = results::network_files(&saved)
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        names,
        [
            "network_manualsave_1700000000.npz",
            "network_1700000000.bpk"
        ]
    );
}

fn report_sources() -> Vec<String> {
    vec!["simulated-v1.mat".into()]
}

#[test]
fn an_exported_run_reads_back_as_the_same_report() {
    let report = trained(demo(), 2).report();
    let files = results::report_files(&report, STARTED, &report_sources(), &[]).unwrap();
    let file = |prefix: &str| {
        files
            .iter()
            .find(|f| f.name.starts_with(prefix) && f.name.ends_with(".json"))
            .unwrap()
            .bytes
            .clone()
    };
    let (pearson, training) = (file("pearsondata_"), file("training_manualsave_"));

    let imported = import::report_from_exports(&pearson, Some(&training)).unwrap();
    assert_eq!(imported.started_unix, STARTED);
    assert_eq!(imported.sources, report_sources());
    // Everything but the parameter count (which the exports do not carry) comes back.
    let expected = TrainingReport {
        n_params: 0,
        ..report.clone()
    };
    // (serde_json reads decimals back to within an ulp, not always to the same bits.)
    assert_close(
        &serde_json::to_value(&imported.report).unwrap(),
        &serde_json::to_value(&expected).unwrap(),
    );

    // The Pearson data alone: the per-neuron results, no curves.
    let alone = import::report_from_exports(&pearson, None).unwrap();
    assert_close(
        &serde_json::to_value(&alone.report.best.as_ref().unwrap().r).unwrap(),
        &serde_json::to_value(&report.best.unwrap().r).unwrap(),
    );
    assert!(alone.report.history.is_empty());

    // Files of two different runs, or not exports at all, are refused in words.
    let other = results::report_files(&trained(demo(), 1).report(), STARTED + 1, &[], &[]).unwrap();
    let other_training = &other
        .iter()
        .find(|f| f.name.ends_with("1.json"))
        .unwrap()
        .bytes;
    let error = import::report_from_exports(&pearson, Some(other_training)).unwrap_err();
    assert!(error.to_string().contains("of run"), "{error}");
    let mut short: serde_json::Value = serde_json::from_slice(&pearson).unwrap();
    short["evalvariance"].as_array_mut().unwrap().pop();
    let short = serde_json::to_vec(&short).unwrap();
    let error = import::report_from_exports(&short, None).unwrap_err();
    assert!(error.to_string().contains("different lengths"), "{error}");
    let error = import::report_from_exports(b"{\"rval\": 3}", None).unwrap_err();
    assert!(error.to_string().contains("pearsondata"), "{error}");
}

/// Equal JSON values, numbers to 1e-12 relative.
fn assert_close(a: &serde_json::Value, b: &serde_json::Value) {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-12 * x.abs().max(y.abs()), "{x} != {y}");
        }
        (Array(x), Array(y)) => {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).for_each(|(x, y)| assert_close(x, y));
        }
        (Object(x), Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
            x.iter().for_each(|(k, v)| assert_close(v, &y[k]));
        }
        _ => assert_eq!(a, b),
    }
}
