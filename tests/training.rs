//! The engine natively on the CPU backend: shapes, flag checks, evaluation schedule, best
//! network, determinism, and a short run on a real recording.
#![cfg(not(target_arch = "wasm32"))] // native tests: they read files and run Python

mod common;

use burn::prelude::*;
use v1_predictor::data::{Dataset, read_mat};
use v1_predictor::model::ModelConfig;
use v1_predictor::training::{OptimizerKind, Trainer, TrainingConfig, metrics};

/// A small population: every image has four quadrants of random brightness (plus pixel
/// noise), and neuron k fires in proportion to the brightness of quadrant k (rectified).
fn synthetic(n_images: usize, size: usize, n_neurons: usize) -> Dataset {
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f32 / (1u64 << 31) as f32
    };
    let (mut images, mut activity) = (Vec::new(), Vec::new());
    for _ in 0..n_images {
        let levels: Vec<f32> = (0..4).map(|_| next()).collect();
        for r in 0..size {
            for c in 0..size {
                let quadrant = (r * 2 / size) * 2 + c * 2 / size;
                images.push((levels[quadrant] * 200.0 + next() * 55.0).round());
            }
        }
        for neuron in 0..n_neurons {
            activity.push((((levels[neuron % 4] - 0.3).max(0.0) * 3.0) * 20.0).round() / 20.0);
        }
    }
    Dataset {
        sources: vec!["synthetic".into()],
        n_images,
        height: size,
        width: size,
        n_neurons,
        images,
        activity,
    }
}

fn small_config() -> TrainingConfig {
    TrainingConfig::new()
        .with_optimizer(OptimizerKind::Adam)
        .with_learning_rate(1e-3)
        .with_batch_size(16)
        .with_max_steps(120)
        .with_eval_every(40)
        .with_model(
            ModelConfig::new()
                .with_conv1(4)
                .with_conv2(8)
                .with_conv1size(3)
                .with_conv2size(3)
                .with_hidden1(32),
        )
}

fn run(config: TrainingConfig, dataset: Dataset) -> v1_predictor::training::TrainingReport {
    let mut trainer = Trainer::new(config, dataset, &Device::flex()).unwrap();
    pollster::block_on(trainer.run(|_| true)).unwrap();
    trainer.report()
}

#[test]
fn output_has_one_rate_per_neuron_for_one_two_and_three_conv_layers() {
    let device = Device::flex();
    for layers in 1..=3 {
        let config = ModelConfig::new()
            .with_numconvlayer(layers)
            .with_conv1size(3)
            .with_conv2size(3)
            .with_conv1(4)
            .with_conv2(6)
            .with_hidden1(10);
        let model = config.init([33, 33], 7, 0, &device).unwrap();
        let out = model.forward(Tensor::<3>::ones([5, 33, 33], &device) * 100.0);
        assert_eq!(out.dims(), [5, 7], "numconvlayer {layers}");
        let values = out
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        assert!(
            values.iter().all(|v| *v >= 0.0),
            "the output ReLU keeps rates ≥ 0"
        );
        assert_eq!(model.members[0].conv_blocks.len(), layers);
    }
}

#[test]
fn absurd_training_flags_are_refused_by_name_before_training() {
    let data = synthetic(60, 16, 4);
    let cases = [
        (small_config().with_max_steps(0), "max_steps"),
        (small_config().with_batch_size(41), "batch_size"), // 40 training images
        (small_config().with_batch_size(0), "batch_size"),
        (small_config().with_learning_rate(f64::NAN), "learning_rate"),
        (small_config().with_learning_rate(-1.0), "learning_rate"),
        (small_config().with_eval_every(0), "eval_every"),
        (
            small_config().with_trainingset_frac(0.95),
            "trainingset_frac",
        ),
        (small_config().with_model(ModelConfig::new()), "conv2size"), // 16 px shrink to nothing
    ];
    for (config, flag) in cases {
        let err = Trainer::new(config.clone(), data.clone(), &Device::flex())
            .err()
            .unwrap_or_else(|| panic!("{config:?} accepted"));
        assert!(
            err.to_string().starts_with(&format!("--{flag}:")),
            "{flag}: {err}"
        );
    }
}

#[test]
fn evaluates_at_the_seeds_steps_and_keeps_the_lowest_early_stop_network() {
    let data = synthetic(60, 16, 4);
    let config = small_config().with_max_steps(95).with_eval_every(20);
    let report = run(config, data.clone());
    let steps: Vec<usize> = report.history.iter().map(|h| h.step).collect();
    assert_eq!(steps, vec![1, 21, 41, 61, 81, 94]);
    assert_eq!(
        (
            report.split.train.len(),
            report.split.eval.len(),
            report.split.early_stop.len()
        ),
        (40, 12, 8)
    );

    let best = report.best.clone().unwrap();
    let lowest = report
        .history
        .iter()
        .min_by(|a, b| a.early_stop_loss.total_cmp(&b.early_stop_loss))
        .unwrap();
    assert_eq!(best.step, lowest.step);
    assert_eq!(best.eval_loss, lowest.eval_loss);
    assert!((best.mean_r - lowest.mean_r).abs() < 1e-12);
    assert_eq!(best.r.len(), 4);

    // Baseline: each neuron's mean training rate, scored on the eval images.
    let means = data.mean_rates(&report.split.train);
    let baseline: Vec<f32> = (0..data.n_images)
        .flat_map(|_| means.iter().map(|&m| m as f32))
        .collect();
    let expected = metrics::mse(&baseline, &data.activity, 4, &report.split.eval);
    assert!((report.baseline_loss - expected).abs() < 1e-9);
    assert!((best.fve - (1.0 - best.eval_loss / report.baseline_loss)).abs() < 1e-12);
}

#[test]
fn training_lowers_the_loss_and_learns_the_neurons() {
    let one_layer = ModelConfig::new()
        .with_numconvlayer(1)
        .with_conv1(4)
        .with_conv1size(3)
        .with_hidden1(32);
    let config = small_config()
        .with_max_steps(400)
        .with_eval_every(100)
        .with_model(one_layer);
    let report = run(config, synthetic(80, 16, 4));
    let first = &report.history[0];
    let last = report.history.last().unwrap();
    assert!(
        last.train_loss < 0.5 * first.train_loss,
        "{} → {}",
        first.train_loss,
        last.train_loss
    );
    let best = report.best.unwrap();
    assert!(best.mean_r > 0.5, "mean r {}", best.mean_r);
    assert!(best.fve > 0.0, "FVE {}", best.fve);
}

#[test]
fn same_seed_same_numbers_other_seed_other_numbers() {
    let data = synthetic(60, 16, 4);
    let a = run(small_config(), data.clone());
    let b = run(small_config(), data.clone());
    assert_eq!(a, b);
    let c = run(small_config().with_seed(1), data);
    assert_ne!(a.split, c.split);
    assert_ne!(a.history, c.history);
}

#[test]
fn a_diverging_learning_rate_stops_with_a_message() {
    // On the real recording, plain SGD at lr 10 overflows within a few steps.
    let Some(bytes) = common::kohn_session(common::SESSION_07) else {
        return;
    };
    let data = read_mat(common::SESSION_07, &bytes).unwrap();
    let config = TrainingConfig::new()
        .with_learning_rate(10.0)
        .with_max_steps(60)
        .with_eval_every(5);
    let mut trainer = Trainer::new(config, data, &Device::flex()).unwrap();
    let err = pollster::block_on(trainer.run(|_| true)).expect_err("lr 10 must diverge");
    assert!(
        err.to_string().contains("diverged") && err.to_string().contains("learning_rate"),
        "{err}"
    );
}

#[test]
fn fast_adam_run_on_session_07_reaches_mean_r_040() {
    let Some(bytes) = common::kohn_session(common::SESSION_07) else {
        return;
    };
    let data = read_mat(common::SESSION_07, &bytes).unwrap();
    let config = TrainingConfig::preset("fast").unwrap().with_max_steps(800);
    let report = run(config, data);
    let best = report.best.unwrap();
    eprintln!(
        "session 07, Adam 1e-4, 800 steps: best step {}, mean r {:.3}, FVE {:.3}",
        best.step, best.mean_r, best.fve
    );
    assert_eq!(best.r.len(), 36);
    assert!(best.mean_r >= 0.40, "mean r {:.3}", best.mean_r);
}
