//! The bundled demo session in `data/` is exactly what `v1p simulate` makes from its
//! default seed, and reads like one of the seed's files.
#![cfg(not(target_arch = "wasm32"))] // native tests: they read files and run Python

use std::path::Path;

use v1_predictor::data::read_mat;
use v1_predictor::data::simulate::{GroundTruth, SimulationConfig, simulate, write_session};

fn bundled(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join(name),
    )
    .unwrap()
}

#[test]
fn regenerating_the_demo_session_gives_the_same_bytes() {
    let (mat, truth) = write_session(&simulate(&SimulationConfig::default()));
    assert!(
        mat == bundled("simulated-v1.mat"),
        "data/simulated-v1.mat differs: regenerate with `v1p simulate --out data/simulated-v1.mat`"
    );
    assert!(
        truth.as_bytes() == bundled("simulated-v1-truth.json"),
        "data/simulated-v1-truth.json differs"
    );
}

#[test]
fn demo_session_has_the_seeds_format_and_its_truth_matches() {
    let data = read_mat("simulated-v1.mat", &bundled("simulated-v1.mat")).unwrap();
    assert_eq!(
        (data.n_images, data.height, data.width, data.n_neurons),
        (270, 33, 33, 40)
    );
    let truth: GroundTruth = serde_json::from_slice(&bundled("simulated-v1-truth.json")).unwrap();
    assert_eq!(truth.neurons.len(), 40);
    // The measured rates are noisy samples of the true ones: strongly but not perfectly related.
    for (k, neuron) in truth.neurons.iter().enumerate() {
        let measured: Vec<f64> = (0..270).map(|i| f64::from(data.rate(i, k))).collect();
        let r = v1_predictor::training::metrics::pearson(&measured, &neuron.true_rate);
        assert!(r > 0.5 && r < 1.0, "neuron {k}: r(measured, true) = {r}");
        assert!(
            (r - neuron.r_ceiling).abs() < 0.15,
            "neuron {k}: r {r} vs ceiling {}",
            neuron.r_ceiling
        );
    }
}
