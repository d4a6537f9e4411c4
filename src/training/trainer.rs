use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::evaluation::{Baseline, images_and_rates, predict, score};
use super::{BestNetwork, EvalRecord, OptimizerKind, TrainingConfig, TrainingReport};
use crate::config::ConfigError;
use crate::data::{Dataset, Split};
use crate::model::{InputScaling, Network, OutputFn, init};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("the device failed while reading results back: {0}")]
    Device(String),
    #[error(
        "training diverged at step {step}: the loss became {loss} (not a finite number); \
         lower --learning_rate and train again"
    )]
    Diverged { step: usize, loss: f64 },
}

/// Where a run stands; sent to the progress callback and the page.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Updates done so far.
    pub steps_done: usize,
    pub max_steps: usize,
    /// Present when this stretch of steps ended with an evaluation.
    pub evaluation: Option<EvalRecord>,
    pub best: Option<BestNetwork>,
    pub finished: bool,
}

/// One training run: owns the network, the optimizer, the data on the device, and the
/// record of evaluations. Drive it with [`Trainer::advance`] (the page, in slices between
/// which it can pause or stop) or [`Trainer::run`] (the native runner, tests).
pub struct Trainer {
    config: TrainingConfig,
    device: Device,
    model: Network,
    best_model: Option<Network>,
    optimizer: ModuleOptimizer,
    dataset: Dataset,
    split: Split,
    n_params: usize,
    /// Training images and rates in split order, on the (autodiff) device.
    train_images: Tensor<3>,
    train_rates: Tensor<2>,
    /// Every image, on the plain device, for evaluation.
    all_images: Tensor<3>,
    rng: ChaCha8Rng,
    steps_done: usize,
    baseline: Baseline,
    history: Vec<EvalRecord>,
    best: Option<BestNetwork>,
}

impl Trainer {
    /// Checks the flags against the dataset, splits it, and builds the network on `device`
    /// (any backend; autodiff is added here).
    pub fn new(
        config: TrainingConfig,
        dataset: Dataset,
        device: &Device,
    ) -> Result<Self, TrainError> {
        config.validate(dataset.n_images)?;
        let arch = config
            .model
            .architecture([dataset.height, dataset.width], dataset.n_neurons)?;
        let split = config.split(dataset.n_images)?;
        let device = device.clone().autodiff();
        device.seed(config.seed);
        let model = config.model.init(
            [dataset.height, dataset.width],
            dataset.n_neurons,
            config.seed.wrapping_add(1),
            &device,
        )?;
        // Burn's weight decay adds `weight_decay · w` to every gradient (L2).
        let decay =
            (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
        let mut model = model;
        if config.model.standardise {
            let pixels = dataset.height * dataset.width;
            model.input_scaling = InputScaling::standardising(
                split
                    .train
                    .iter()
                    .flat_map(|&i| dataset.images[i * pixels..(i + 1) * pixels].iter().copied()),
            );
        }
        // A smooth output starts every neuron at its mean training rate (the GLM habit); the
        // seed's ReLU keeps the seed's zero biases.
        if config.model.output != OutputFn::Relu {
            let bias: Vec<f32> = dataset
                .mean_rates(&split.train)
                .iter()
                .map(|&rate| config.model.output.inverse(rate.max(1e-3)) as f32)
                .collect();
            for member in &mut model.members {
                member.output.bias = Some(init::param(bias.clone(), [bias.len()], &device));
            }
        }
        let optimizer = match config.optimizer {
            OptimizerKind::Sgd => SgdConfig::new().with_weight_decay(decay).init(),
            OptimizerKind::Adam => AdamConfig::new().with_weight_decay(decay).init(),
        };

        let (train_images, train_rates) = images_and_rates(&dataset, &split.train, &device);
        let plain = device.clone().without_autodiff();
        let all: Vec<usize> = (0..dataset.n_images).collect();
        let (all_images, _) = images_and_rates(&dataset, &all, &plain);

        let baseline = Baseline::new(&dataset, &split);

        Ok(Self {
            rng: ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(2)),
            config,
            device,
            model,
            best_model: None,
            optimizer,
            dataset,
            split,
            n_params: arch.n_params(),
            train_images,
            train_rates,
            all_images,
            steps_done: 0,
            baseline,
            history: Vec::new(),
            best: None,
        })
    }

    pub fn config(&self) -> &TrainingConfig {
        &self.config
    }

    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// At `max_steps`, or — with `patience` — when that many evaluations in a row have not
    /// lowered the early-stop loss (the best network is then unlikely to change).
    pub fn is_finished(&self) -> bool {
        self.steps_done >= self.config.max_steps || self.out_of_patience()
    }

    fn out_of_patience(&self) -> bool {
        let patience = self.config.patience;
        let Some(best) = &self.best else {
            return false;
        };
        patience > 0
            && self
                .history
                .iter()
                .filter(|record| record.step > best.step)
                .count()
                >= patience
    }

    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    /// A read-back of one weight, for the page's loop: in the browser it answers once the
    /// device has done every update queued before it (on WebGPU an update only queues work).
    /// Nothing is queued until the future is first polled.
    pub fn device_done(&self) -> impl Future<Output = Result<(), TrainError>> + 'static {
        let weight = self.model.members[0]
            .output
            .weight
            .val()
            .slice([0..1, 0..1]);
        async move {
            weight
                .into_data_async()
                .await
                .map(|_| ())
                .map_err(|e| TrainError::Device(format!("{e:?}")))
        }
    }

    /// One SGD/Adam update on a random batch; nothing is read back.
    fn update(&mut self) {
        let n_train = self.split.train.len();
        let picks = rand::seq::index::sample(&mut self.rng, n_train, self.config.batch_size);
        let picks: Vec<i64> = picks.into_iter().map(|i| i as i64).collect();
        let picks = Tensor::<1, Int>::from_data(
            TensorData::new(picks, [self.config.batch_size]),
            &self.device,
        );
        let images = self.train_images.clone().select(0, picks.clone());
        let rates = self.train_rates.clone().select(0, picks);
        let keep = self.config.model.dropout;
        let hidden = self.config.model.hidden1;
        let batch = self.config.batch_size;
        // One mask per member, drawn in member order (member 0 draws what a single network
        // would, so a one-network run repeats the seed's draws exactly).
        let masks: Vec<Option<Tensor<2>>> = (0..self.model.n_members())
            .map(|k| {
                if keep >= 1.0 || self.model.members[k].hidden.is_none() {
                    return None;
                }
                let mask: Vec<f32> = (0..batch * hidden)
                    .map(|_| {
                        if self.rng.random::<f64>() < keep {
                            (1.0 / keep) as f32
                        } else {
                            0.0
                        }
                    })
                    .collect();
                Some(Tensor::from_data(
                    TensorData::new(mask, [batch, hidden]),
                    &self.device,
                ))
            })
            .collect();
        // Each member learns from its own loss; the sum trains them all in one backward pass.
        // The loss's value is never read here, so the backward pass starts from its terms.
        let loss_terms = self
            .model
            .member_rates(images, masks)
            .into_iter()
            .map(|rates_k| self.config.loss.scaled_terms(rates_k, rates.clone()))
            .reduce(|a, b| a + b)
            .expect("a network has at least one member");
        let grads = GradientsParams::from_grads(loss_terms.backward(), &self.model);
        self.model = self
            .optimizer
            .step(self.config.learning_rate, self.model.clone(), grads);
    }

    /// Runs up to `max_updates` updates, stopping early right after an evaluation (when the
    /// seed evaluates) so that the caller can report it. Reads back only when it evaluates.
    pub async fn advance(&mut self, max_updates: usize) -> Result<Progress, TrainError> {
        let mut evaluation = None;
        for _ in 0..max_updates {
            if self.is_finished() {
                break;
            }
            self.update();
            let step = self.steps_done;
            self.steps_done += 1;
            if self.config.is_eval_step(step) {
                evaluation = Some(self.evaluate(step).await?);
                break;
            }
        }
        Ok(Progress {
            steps_done: self.steps_done,
            max_steps: self.config.max_steps,
            evaluation,
            best: self.best.clone(),
            finished: self.is_finished(),
        })
    }

    /// Trains to the end; `on_progress` sees every slice and may stop the run early by
    /// returning `false`.
    pub async fn run(
        &mut self,
        mut on_progress: impl FnMut(&Progress) -> bool,
    ) -> Result<(), TrainError> {
        let slice = self.config.eval_every.clamp(1, 25);
        while !self.is_finished() {
            let progress = self.advance(slice).await?;
            if !on_progress(&progress) {
                break;
            }
        }
        Ok(())
    }

    /// The seed's evaluation: losses on the three sets and r on the eval set, dropout off.
    async fn evaluate(&mut self, step: usize) -> Result<EvalRecord, TrainError> {
        let model = self.model.valid();
        let pred = predict(&model, &self.all_images).await?;
        let (record, best) = score(&pred, &self.dataset, &self.split, &self.baseline, step);
        if !record.train_loss.is_finite() {
            return Err(TrainError::Diverged {
                step,
                loss: record.train_loss,
            });
        }
        let improved = self
            .best
            .as_ref()
            .is_none_or(|b| record.early_stop_loss < b.early_stop_loss);
        if improved {
            self.best = Some(best);
            self.best_model = Some(model);
        }
        self.history.push(record.clone());
        Ok(record)
    }

    pub fn split(&self) -> &Split {
        &self.split
    }

    /// The network being trained, as it is now (with autodiff).
    pub fn model(&self) -> &Network {
        &self.model
    }

    /// How the best network so far did (`None` before the first evaluation).
    pub fn best(&self) -> Option<&BestNetwork> {
        self.best.as_ref()
    }

    /// The best network so far (lowest early-stop loss), without autodiff.
    pub fn best_model(&self) -> Option<&Network> {
        self.best_model.as_ref()
    }

    pub fn report(&self) -> TrainingReport {
        TrainingReport {
            flags: self.config.clone(),
            n_params: self.n_params,
            steps_done: self.steps_done,
            split: self.split.clone(),
            baseline_loss: self.baseline.loss,
            baseline_loss_per_neuron: self.baseline.per_neuron.clone(),
            eval_variance: self.baseline.eval_variance.clone(),
            history: self.history.clone(),
            best: self.best.clone(),
        }
    }
}
