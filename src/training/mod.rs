//! Training: the seed's loop (MSE, SGD or Adam, random batches, evaluation every 200 steps,
//! best network = lowest early-stop loss), written once for every backend.

mod evaluation;
pub mod metrics;
mod pace;
pub mod ridge;
mod trainer;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::model::{ModelConfig, ModelFamily, OutputFn};
pub use evaluation::{evaluate_network, images_and_rates, predict};
pub use pace::SlicePace;
pub use trainer::{GradientExchange, LocalFuture, Progress, TrainError, Trainer, piece_ranges};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Plain gradient descent, as the seed (`GradientDescentOptimizer`).
    Sgd,
    Adam,
}

/// What the network is trained to minimise. Early stopping always uses the seed's MSE, so
/// that runs with either loss pick their best network by the same rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum LossKind {
    /// Mean squared error, as the seed.
    Mse,
    /// Poisson negative log-likelihood (rate − count · log rate): rates are spike counts.
    Poisson,
}

impl LossKind {
    pub fn of(self, predicted: Tensor<2>, measured: Tensor<2>) -> Tensor<1> {
        // Flattened first: the GPU reduces a matrix one axis at a time (two launches).
        self.terms(predicted, measured).flatten::<1>(0, 1).mean()
    }

    /// The loss's terms, one per image and neuron, each divided by the number of terms in a
    /// batch of `batch` images: for the whole batch their sum is [`LossKind::of`], and for a
    /// part of it, that part's share. A training step starts its backward pass here (the
    /// gradient of a sum is that of each term), so it reduces nothing that only the gradient
    /// needs.
    pub fn scaled_terms(
        self,
        predicted: Tensor<2>,
        measured: Tensor<2>,
        batch: usize,
    ) -> Tensor<2> {
        let count = (batch * predicted.dims()[1]) as f64;
        self.terms(predicted, measured) / count
    }

    fn terms(self, predicted: Tensor<2>, measured: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Mse => (predicted - measured).powi_scalar(2),
            Self::Poisson => predicted.clone() - measured * (predicted + 1e-6).log(),
        }
    }
}

/// Every flag of the seed's `runnet.py` plus the optimizer, seed and evaluation interval.
#[derive(Config, Debug, PartialEq)]
pub struct TrainingConfig {
    /// Learning rate.
    #[config(default = 2e-4)]
    pub learning_rate: f64,
    /// Number of training steps (batches).
    #[config(default = 60000)]
    pub max_steps: usize,
    /// Images per training step.
    #[config(default = 50)]
    pub batch_size: usize,
    /// Fraction of the images used for training.
    #[config(default = "2.0 / 3.0")]
    pub trainingset_frac: f64,
    /// Fraction of the images used to pick the best network (early stopping).
    #[config(default = "1.0 / 7.0")]
    pub earlystop_frac: f64,
    #[config(default = "OptimizerKind::Sgd")]
    pub optimizer: OptimizerKind,
    /// Seeds the split, the initial weights, the batches and dropout.
    #[config(default = 0)]
    pub seed: u64,
    /// Steps between evaluations (the seed: 200).
    #[config(default = 200)]
    pub eval_every: usize,
    /// Stop after this many evaluations in a row without a lower early-stop loss
    /// (0 = never: train all `max_steps`, as the seed).
    #[config(default = 0)]
    pub patience: usize,
    /// Training loss: mse (the seed) or poisson.
    #[config(default = "LossKind::Mse")]
    pub loss: LossKind,
    /// L2 weight decay added to every gradient (0 = none, as the seed).
    #[config(default = 0.0)]
    pub weight_decay: f64,
    #[config(default = "ModelConfig::new()")]
    pub model: ModelConfig,
}

/// Named settings: the seed's published run, a quick Adam run, the classical baselines, and
/// the best recipe measured here (BENCHMARKS.md, "Models").
pub const PRESETS: [&str; 5] = ["seed", "fast", "best", "ln", "gabor"];

impl TrainingConfig {
    pub fn preset(name: &str) -> Option<Self> {
        let fast = Self::new()
            .with_optimizer(OptimizerKind::Adam)
            .with_learning_rate(1e-4)
            .with_max_steps(2000)
            .with_eval_every(100);
        match name {
            "seed" => Some(Self::new()),
            // Adam reaches its best early-stop loss after ~600 steps (REFERENCE.md).
            "fast" => Some(fast),
            // The ablation behind it is in BENCHMARKS.md ("Models"): standardised pixels and
            // a 3× higher learning rate did most; L2 weight decay a little; Poisson loss and
            // the factorised readout did not help here.
            "best" => Some(
                fast.with_learning_rate(3e-4)
                    // The gradient of the ablation's penalty 1e-3·Σw².
                    .with_weight_decay(2e-3)
                    // With weight decay the best step often sits at 2 000 (the ablation).
                    .with_max_steps(3000)
                    .with_patience(6)
                    .with_model(
                        ModelConfig::new()
                            .with_family(ModelFamily::Cnnplus)
                            .with_standardise(true),
                    ),
            ),
            "ln" => Some(
                // 1 089 weights per neuron from 180 images overfit within ~100 Adam steps:
                // a slow rate and a strong L2 penalty (sessions 01, 03, 07, 09: BENCHMARKS.md).
                fast.with_learning_rate(1e-4)
                    .with_loss(LossKind::Poisson)
                    .with_weight_decay(1.0)
                    .with_model(
                        ModelConfig::new()
                            .with_family(ModelFamily::Ln)
                            .with_output(OutputFn::Softplus)
                            .with_standardise(true),
                    ),
            ),
            "gabor" => Some(
                Self::new()
                    .with_max_steps(1)
                    .with_model(ModelConfig::new().with_family(ModelFamily::Gabor)),
            ),
            _ => None,
        }
    }

    /// The settings a model family starts from: its preset.
    pub fn for_family(family: ModelFamily) -> Self {
        let name = match family {
            ModelFamily::Cnn => "seed",
            ModelFamily::Cnnplus => "best",
            ModelFamily::Ln => "ln",
            ModelFamily::Gabor => "gabor",
        };
        Self::preset(name).expect("every family has a preset")
    }

    /// Refuses absurd values before any tensor is made; the error names the flag.
    pub fn validate(&self, n_images: usize) -> Result<(usize, usize, usize), ConfigError> {
        // Each flag against its own range (the table's); what follows checks flags together.
        crate::config::flags::check_ranges(self)?;
        if self.loss == LossKind::Poisson && self.model.output == OutputFn::Relu {
            return Err(ConfigError::new(
                "loss",
                "poisson needs a rate that is never exactly 0: use --output softplus or exp",
            ));
        }
        let sizes = crate::data::split_sizes(n_images, self.trainingset_frac, self.earlystop_frac)?;
        if self.batch_size == 0 || self.batch_size > sizes.0 {
            return Err(ConfigError::new(
                "batch_size",
                format!(
                    "must be between 1 and the {} training images, got {}",
                    sizes.0, self.batch_size
                ),
            ));
        }
        Ok(sizes)
    }

    /// The train / eval / early-stop split this run uses: drawn from `seed` alone, so every
    /// model trained or fitted with the same seed is scored on the same images.
    pub fn split(&self, n_images: usize) -> Result<crate::data::Split, ConfigError> {
        crate::data::Split::random(
            n_images,
            self.trainingset_frac,
            self.earlystop_frac,
            self.seed,
        )
    }

    /// Every check that needs the dataset's shape: [`Self::validate`], then the network's
    /// layers (or the Gabor bank, for the model without a network).
    pub fn validate_for(&self, dataset: &crate::data::Dataset) -> Result<(), ConfigError> {
        self.validate(dataset.n_images)?;
        if self.model.family.is_trained() {
            self.model
                .architecture([dataset.height, dataset.width], dataset.n_neurons)?;
        } else {
            self.model.gabor.validate()?;
        }
        Ok(())
    }

    /// Every setting that matters for this model, on one line (the runs panel, the plots):
    /// written from the flag table ([`crate::config::flags::summary`]).
    pub fn summary(&self) -> String {
        crate::config::flags::summary(self)
    }

    /// Whether the seed evaluates after update `step` (0-based): steps 1, 1 + k·eval_every,
    /// and the last.
    pub fn is_eval_step(&self, step: usize) -> bool {
        (step >= 1 && (step - 1).is_multiple_of(self.eval_every)) || step + 1 == self.max_steps
    }
}

/// One evaluation (dropout off): the seed's `trainlist`, `earlystoplist`, `evallist`, `rlist`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub step: usize,
    pub train_loss: f64,
    pub early_stop_loss: f64,
    pub eval_loss: f64,
    pub mean_r: f64,
}

/// The network with the lowest early-stop loss so far, and how it does on the eval images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestNetwork {
    pub step: usize,
    pub early_stop_loss: f64,
    pub eval_loss: f64,
    pub fve: f64,
    pub mean_r: f64,
    /// Pearson r of every neuron on the evaluation images.
    pub r: Vec<f64>,
    pub eval_loss_per_neuron: Vec<f64>,
}

/// What a finished (or stopped) run reports: everything the seed saved, in one object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingReport {
    pub flags: TrainingConfig,
    pub n_params: usize,
    pub steps_done: usize,
    pub split: crate::data::Split,
    pub baseline_loss: f64,
    pub baseline_loss_per_neuron: Vec<f64>,
    pub eval_variance: Vec<f64>,
    pub history: Vec<EvalRecord>,
    pub best: Option<BestNetwork>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A training step's backward pass starts from the scaled terms: their sum must be the
    /// loss, and their gradient the loss's, for each loss.
    #[test]
    fn the_scaled_terms_sum_to_the_loss_and_share_its_gradient() {
        let device = Device::flex().autodiff();
        let values = |seed: f32| -> Vec<f32> {
            (0..12)
                .map(|i| 0.1 + ((i as f32 + seed) * 0.37).sin().abs())
                .collect()
        };
        let measured = Tensor::<1>::from_floats(values(5.0).as_slice(), &device).reshape([3, 4]);
        for loss in [LossKind::Mse, LossKind::Poisson] {
            let predicted = || {
                Tensor::<1>::from_floats(values(0.0).as_slice(), &device)
                    .reshape([3, 4])
                    .require_grad()
            };
            let (a, b) = (predicted(), predicted());
            let whole = loss.of(a.clone(), measured.clone());
            let terms = loss.scaled_terms(b.clone(), measured.clone(), b.dims()[0]);
            let (whole_value, terms_sum): (f32, f32) = (
                whole.clone().into_scalar(),
                terms.clone().sum().into_scalar(),
            );
            assert!((whole_value - terms_sum).abs() < 1e-6, "{loss:?}");
            let (ga, gb) = (
                a.grad(&whole.backward()).unwrap(),
                b.grad(&terms.backward()).unwrap(),
            );
            let gap: f32 = (ga.clone() - gb).abs().max().into_scalar();
            assert!(gap < 1e-7, "{loss:?}: gradients differ by {gap}");
            let largest: f32 = ga.abs().max().into_scalar();
            assert!(largest > 1e-3, "{loss:?}: a gradient");
        }
    }
}
