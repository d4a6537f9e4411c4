//! The model families behind one engine: the LN model recovers a known filter, the Gabor
//! ridge predicts a phase-invariant (complex) cell, ensembles average their members, every
//! trainable family reloads with the same r, and each family's flags are checked by name.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use v1_predictor::data::Dataset;
use v1_predictor::model::{GaborConfig, ModelConfig, ModelFamily, OutputFn};
use v1_predictor::results::SavedNetwork;
use v1_predictor::training::ridge::fit_gabor_ridge;
use v1_predictor::training::{LossKind, Trainer, TrainingConfig, TrainingReport};

const SIZE: usize = 16;

/// White-noise images (pixels uniform in 0…255) and neurons driven by `drive(image in
/// −1…1)`, their rates Poisson-free (the expected count), so that the test asks only whether
/// the model can represent the neuron.
type Drive<'a> = &'a dyn Fn(&[f64]) -> f64;

fn noise_dataset(n_images: usize, drives: &[Drive]) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut images = Vec::new();
    let mut activity = Vec::new();
    for _ in 0..n_images {
        let image: Vec<f32> = (0..SIZE * SIZE)
            .map(|_| (rng.random::<f64>() * 255.0).round() as f32)
            .collect();
        let centred: Vec<f64> = image
            .iter()
            .map(|&p| (f64::from(p) - 127.5) / 127.5)
            .collect();
        activity.extend(drives.iter().map(|drive| drive(&centred) as f32));
        images.extend(image);
    }
    Dataset {
        sources: vec!["noise".into()],
        n_images,
        height: SIZE,
        width: SIZE,
        n_neurons: drives.len(),
        images,
        activity,
    }
}

/// A Gabor-like filter centred at (cy, cx): the "true" receptive field of a simulated cell.
fn filter(cy: f64, cx: f64, theta: f64, phase: f64) -> Vec<f64> {
    (0..SIZE * SIZE)
        .map(|i| {
            let (y, x) = ((i / SIZE) as f64 - cy, (i % SIZE) as f64 - cx);
            let along = x * theta.cos() + y * theta.sin();
            (-(x * x + y * y) / 8.0).exp()
                * (2.0 * std::f64::consts::PI * along / 6.0 + phase).cos()
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn softplus(x: f64) -> f64 {
    (1.0 + x.exp()).ln()
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    v1_predictor::training::metrics::pearson(a, b)
}

fn train(config: TrainingConfig, dataset: Dataset) -> Trainer {
    let mut trainer = Trainer::new(config, dataset, &Device::flex()).unwrap();
    pollster::block_on(trainer.run(|_| true)).unwrap();
    trainer
}

#[test]
fn ln_recovers_a_known_linear_filter() {
    let true_filters = [filter(6.0, 6.0, 0.3, 0.0), filter(9.0, 10.0, 1.6, 1.0)];
    let (a, b) = (&true_filters[0], &true_filters[1]);
    let first = |x: &[f64]| softplus(0.8 * dot(a, x) - 0.5);
    let second = |x: &[f64]| softplus(0.8 * dot(b, x) - 0.5);
    let dataset = noise_dataset(1200, &[&first, &second]);
    // Plenty of images and no noise: no need for the real data's slow rate and penalty.
    let config = TrainingConfig::for_family(ModelFamily::Ln)
        .with_learning_rate(1e-3)
        .with_weight_decay(0.0)
        .with_max_steps(1500)
        .with_seed(3);
    let trainer = train(config, dataset);
    let best = trainer.best().unwrap();
    assert!(
        best.mean_r > 0.9,
        "LN predicts an LN neuron with r {}",
        best.mean_r
    );
    let saved = pollster::block_on(SavedNetwork::best_of(&trainer, 0))
        .unwrap()
        .unwrap();
    let readout = &saved.weights.members[0].output; // [pixels, neurons]
    assert_eq!(readout.weight_shape, vec![SIZE * SIZE, 2]);
    assert!(saved.weights.members[0].conv.is_empty());
    for (neuron, truth) in true_filters.iter().enumerate() {
        let learned: Vec<f64> = (0..SIZE * SIZE)
            .map(|p| f64::from(readout.weight[p * 2 + neuron]))
            .collect();
        let r = correlation(&learned, truth);
        assert!(
            r > 0.9,
            "neuron {neuron}: learned filter vs true filter r = {r}"
        );
    }
}

#[test]
fn gabor_ridge_predicts_a_complex_cell_that_no_linear_filter_can() {
    // A complex cell: the energy of a quadrature pair — invisible to any single linear filter.
    let (even, odd) = (
        filter(8.0, 8.0, 0.0, 0.0),
        filter(8.0, 8.0, 0.0, std::f64::consts::FRAC_PI_2),
    );
    let complex = |x: &[f64]| 0.05 * (dot(&even, x).powi(2) + dot(&odd, x).powi(2));
    let dataset = noise_dataset(900, &[&complex]);
    let gabor = TrainingConfig::for_family(ModelFamily::Gabor).with_model(
        ModelConfig::new()
            .with_family(ModelFamily::Gabor)
            .with_gabor(
                GaborConfig::new()
                    .with_min_wavelength(6.0)
                    .with_positions(4),
            ),
    );
    let report = fit_gabor_ridge(gabor, &dataset).unwrap();
    let ridge_r = report.best.as_ref().unwrap().mean_r;
    assert!(ridge_r > 0.6, "Gabor-energy ridge r {ridge_r}");
    assert_eq!(report.history.len(), 1);

    let ln = TrainingConfig::for_family(ModelFamily::Ln).with_max_steps(600);
    let ln_r = train(ln, dataset).best().unwrap().mean_r;
    assert!(ln_r < ridge_r - 0.3, "LN r {ln_r} vs ridge r {ridge_r}");
}

#[test]
fn the_ridge_and_the_trainer_split_the_same_images_from_the_same_seed() {
    let dataset = common::demo_dataset();
    let gabor = TrainingConfig::for_family(ModelFamily::Gabor).with_seed(4);
    let report = fit_gabor_ridge(gabor, &dataset).unwrap();
    let cnn = TrainingConfig::preset("fast").unwrap().with_seed(4);
    let trainer = Trainer::new(cnn, dataset, &Device::flex()).unwrap();
    assert_eq!(&report.split, trainer.split());
}

#[test]
fn an_ensemble_predicts_the_mean_of_its_members() {
    let device = Device::flex();
    let single = ModelConfig::new()
        .with_conv1(3)
        .with_conv2(4)
        .with_hidden1(8);
    let ensemble = single.clone().with_ensemble(3);
    let one = single.init([33, 33], 5, 7, &device).unwrap();
    let three = ensemble.init([33, 33], 5, 7, &device).unwrap();
    assert_eq!(three.members.len(), 3);
    let weights = |m: &v1_predictor::model::Member| {
        m.conv_blocks[0]
            .conv
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    // Member 0 is the network a single run builds; the others start elsewhere.
    assert_eq!(weights(&three.members[0]), weights(&one.members[0]));
    assert_ne!(weights(&three.members[1]), weights(&three.members[0]));

    let images = Tensor::<3>::from_data(
        TensorData::new(
            (0..2 * 33 * 33)
                .map(|i| (i % 255) as f32)
                .collect::<Vec<_>>(),
            [2, 33, 33],
        ),
        &device,
    );
    let mean = three
        .forward(images.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let members = three.member_rates(v1_predictor::model::planes(images), vec![None, None, None]);
    let by_hand: Vec<f32> = {
        let rates: Vec<Vec<f32>> = members
            .into_iter()
            .map(|r| r.into_data().try_to_vec::<f32>().unwrap())
            .collect();
        (0..mean.len())
            .map(|i| rates.iter().map(|r| r[i]).sum::<f32>() / 3.0)
            .collect()
    };
    for (a, b) in mean.iter().zip(&by_hand) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

fn reloaded_r(trainer: &Trainer) -> (TrainingReport, Vec<f64>) {
    let saved = pollster::block_on(SavedNetwork::best_of(trainer, 1))
        .unwrap()
        .unwrap();
    let bytes = saved.to_burnpack().unwrap();
    let loaded = pollster::block_on(SavedNetwork::from_burnpack("n.bpk", &bytes)).unwrap();
    assert_eq!(loaded.weights, saved.weights);
    let report = pollster::block_on(loaded.evaluate(trainer.dataset(), &Device::flex())).unwrap();
    let r = report.best.as_ref().unwrap().r.clone();
    (report, r)
}

#[test]
fn ln_and_ensemble_networks_reload_with_the_same_r() {
    let small_cnn = ModelConfig::new()
        .with_family(ModelFamily::Cnnplus)
        .with_conv1(3)
        .with_conv2(4)
        .with_conv1size(5)
        .with_conv2size(3)
        .with_hidden1(16)
        .with_output(OutputFn::Softplus)
        .with_ensemble(3);
    let configs = [
        TrainingConfig::for_family(ModelFamily::Ln)
            .with_max_steps(80)
            .with_eval_every(20),
        TrainingConfig::for_family(ModelFamily::Cnnplus)
            .with_max_steps(40)
            .with_eval_every(20)
            .with_batch_size(20)
            .with_model(small_cnn),
    ];
    for config in configs {
        let family = config.model.family;
        let trainer = train(config, common::demo_dataset());
        let best = trainer.best().unwrap().clone();
        let (report, r) = reloaded_r(&trainer);
        assert_eq!(report.flags.model.family, family);
        for (a, b) in r.iter().zip(&best.r) {
            assert!(
                (a - b).abs() < 1e-6,
                "{family:?}: r {a} after reload vs {b}"
            );
        }
        assert!(
            best.r.iter().any(|r| r.abs() > 0.1),
            "{family:?}: vacuous r"
        );
    }
}

#[test]
fn each_familys_flags_are_checked_by_name() {
    let dataset = common::demo_dataset();
    let cases = [
        (
            TrainingConfig::preset("fast")
                .unwrap()
                .with_loss(LossKind::Poisson),
            "loss",
        ),
        (
            TrainingConfig::preset("fast")
                .unwrap()
                .with_weight_decay(-1.0),
            "weight_decay",
        ),
        (
            TrainingConfig::preset("best").unwrap().with_model(
                ModelConfig::new()
                    .with_output(OutputFn::Softplus)
                    .with_ensemble(0),
            ),
            "ensemble",
        ),
    ];
    for (config, flag) in cases {
        let error = Trainer::new(config, dataset.clone(), &Device::flex())
            .err()
            .expect("refused");
        assert!(
            error.to_string().starts_with(&format!("--{flag}:")),
            "{error}"
        );
    }
    let bad_bank = TrainingConfig::for_family(ModelFamily::Gabor).with_model(
        ModelConfig::new()
            .with_family(ModelFamily::Gabor)
            .with_gabor(GaborConfig::new().with_positions(0)),
    );
    let error = fit_gabor_ridge(bad_bank, &dataset).unwrap_err();
    assert!(
        error.to_string().starts_with("--gabor_positions:"),
        "{error}"
    );
    // The ridge has no network for the trainer to build.
    let gabor = TrainingConfig::for_family(ModelFamily::Gabor);
    assert!(Trainer::new(gabor, dataset, &Device::flex()).is_err());
}

#[test]
fn patience_stops_a_run_once_the_early_stop_loss_no_longer_improves() {
    let config = TrainingConfig::for_family(ModelFamily::Ln)
        .with_learning_rate(0.02)
        .with_max_steps(3000)
        .with_eval_every(10);
    let patient = train(config.clone().with_patience(3), common::demo_dataset()).report();
    let best = patient.best.as_ref().unwrap().step;
    assert!(patient.steps_done < 3000, "stopped early");
    let after: Vec<usize> = patient
        .history
        .iter()
        .map(|r| r.step)
        .filter(|&s| s > best)
        .collect();
    assert_eq!(
        after.len(),
        3,
        "three evaluations without improvement: {after:?}"
    );
    // The same run without patience has the same best network (it is the same run up to
    // there) and trains every step.
    let full = train(config, common::demo_dataset()).report();
    assert_eq!(full.steps_done, 3000);
    assert!(
        full.best.as_ref().unwrap().early_stop_loss
            <= patient.best.as_ref().unwrap().early_stop_loss
    );
}
