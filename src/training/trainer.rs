use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::metrics::{mean, mse, per_neuron_mse, per_neuron_pearson, per_neuron_variance};
use super::{BestNetwork, EvalRecord, OptimizerKind, TrainingConfig, TrainingReport};
use crate::config::ConfigError;
use crate::data::{Dataset, Split};
use crate::model::ConvNetDrop;

/// Images per forward pass when predicting whole sets (bounds GPU memory on big uploads).
const PREDICT_CHUNK: usize = 512;

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
    model: ConvNetDrop,
    best_model: Option<ConvNetDrop>,
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
        let split = Split::random(
            dataset.n_images,
            config.trainingset_frac,
            config.earlystop_frac,
            config.seed,
        )?;
        let device = device.clone().autodiff();
        device.seed(config.seed);
        let model = config.model.init(
            [dataset.height, dataset.width],
            dataset.n_neurons,
            config.seed.wrapping_add(1),
            &device,
        )?;
        let optimizer = match config.optimizer {
            OptimizerKind::Sgd => SgdConfig::new().init(),
            OptimizerKind::Adam => AdamConfig::new().init(),
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

    pub fn is_finished(&self) -> bool {
        self.steps_done >= self.config.max_steps
    }

    pub fn steps_done(&self) -> usize {
        self.steps_done
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
        let prediction = if keep < 1.0 {
            let hidden = self.config.model.hidden1;
            let mask: Vec<f32> = (0..self.config.batch_size * hidden)
                .map(|_| {
                    if self.rng.random::<f64>() < keep {
                        (1.0 / keep) as f32
                    } else {
                        0.0
                    }
                })
                .collect();
            let mask = Tensor::from_data(
                TensorData::new(mask, [self.config.batch_size, hidden]),
                &self.device,
            );
            self.model.forward_with_dropout(images, mask)
        } else {
            self.model.forward(images)
        };
        let loss = (prediction - rates).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
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

    /// How the best network so far did (`None` before the first evaluation).
    pub fn best(&self) -> Option<&BestNetwork> {
        self.best.as_ref()
    }

    /// The best network so far (lowest early-stop loss), without autodiff.
    pub fn best_model(&self) -> Option<&ConvNetDrop> {
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

/// The seed's baseline: every neuron's mean training rate, predicted for every image.
struct Baseline {
    /// Its loss on the evaluation images, per neuron and overall (`lossbaseline`).
    per_neuron: Vec<f64>,
    loss: f64,
    eval_variance: Vec<f64>,
}

impl Baseline {
    fn new(dataset: &Dataset, split: &Split) -> Self {
        let train_means = dataset.mean_rates(&split.train);
        let prediction: Vec<f32> = (0..dataset.n_images)
            .flat_map(|_| train_means.iter().map(|&m| m as f32))
            .collect();
        let per_neuron = per_neuron_mse(
            &prediction,
            &dataset.activity,
            dataset.n_neurons,
            &split.eval,
        );
        Self {
            loss: mean(&per_neuron),
            per_neuron,
            eval_variance: per_neuron_variance(&dataset.activity, dataset.n_neurons, &split.eval),
        }
    }
}

/// Scores predictions for every image [n_images × neurons] as the seed does: the losses on
/// the three sets, and — should this be the best network — r and loss per neuron.
fn score(
    pred: &[f32],
    dataset: &Dataset,
    split: &Split,
    baseline: &Baseline,
    step: usize,
) -> (EvalRecord, BestNetwork) {
    let (rates, n) = (&dataset.activity, dataset.n_neurons);
    let r = per_neuron_pearson(pred, rates, n, &split.eval);
    let record = EvalRecord {
        step,
        train_loss: mse(pred, rates, n, &split.train),
        early_stop_loss: mse(pred, rates, n, &split.early_stop),
        eval_loss: mse(pred, rates, n, &split.eval),
        mean_r: mean(&r),
    };
    let best = BestNetwork {
        step,
        early_stop_loss: record.early_stop_loss,
        eval_loss: record.eval_loss,
        fve: 1.0 - record.eval_loss / baseline.loss,
        mean_r: record.mean_r,
        r,
        eval_loss_per_neuron: per_neuron_mse(pred, rates, n, &split.eval),
    };
    (record, best)
}

/// Evaluates a finished network (a reloaded one, say) on `split` of `dataset`, as the seed
/// evaluates its best network, and reports it as a run whose best network is this one.
pub async fn evaluate_network(
    model: &ConvNetDrop,
    flags: TrainingConfig,
    dataset: &Dataset,
    split: Split,
    step: usize,
    device: &Device,
) -> Result<TrainingReport, TrainError> {
    let all: Vec<usize> = (0..dataset.n_images).collect();
    let (images, _) = images_and_rates(dataset, &all, device);
    let pred = predict(model, &images).await?;
    let baseline = Baseline::new(dataset, &split);
    let (record, best) = score(&pred, dataset, &split, &baseline, step);
    let n_params = flags
        .model
        .architecture([dataset.height, dataset.width], dataset.n_neurons)?
        .n_params();
    Ok(TrainingReport {
        steps_done: flags.max_steps.min(step + 1),
        flags,
        n_params,
        split,
        baseline_loss: baseline.loss,
        baseline_loss_per_neuron: baseline.per_neuron,
        eval_variance: baseline.eval_variance,
        history: vec![record],
        best: Some(best),
    })
}

/// Forward passes over `images` in chunks, read back asynchronously (the browser forbids
/// blocking read-backs).
pub async fn predict(model: &ConvNetDrop, images: &Tensor<3>) -> Result<Vec<f32>, TrainError> {
    let n = images.dims()[0];
    let mut out = Vec::new();
    for start in (0..n).step_by(PREDICT_CHUNK) {
        let end = (start + PREDICT_CHUNK).min(n);
        let chunk = images.clone().slice(start..end);
        let data = model
            .forward(chunk)
            .into_data_async()
            .await
            .map_err(|e| TrainError::Device(format!("{e:?}")))?;
        out.extend(
            data.convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| TrainError::Device(format!("{e:?}")))?,
        );
    }
    Ok(out)
}

/// The given images and their rates as tensors [k, h, w] and [k, neurons] on `device`.
pub fn images_and_rates(
    dataset: &Dataset,
    indices: &[usize],
    device: &Device,
) -> (Tensor<3>, Tensor<2>) {
    let mut pixels = Vec::with_capacity(indices.len() * dataset.height * dataset.width);
    let mut rates = Vec::with_capacity(indices.len() * dataset.n_neurons);
    for &i in indices {
        pixels.extend_from_slice(dataset.image(i));
        rates.extend_from_slice(
            &dataset.activity[i * dataset.n_neurons..(i + 1) * dataset.n_neurons],
        );
    }
    (
        Tensor::from_data(
            TensorData::new(pixels, [indices.len(), dataset.height, dataset.width]),
            device,
        ),
        Tensor::from_data(
            TensorData::new(rates, [indices.len(), dataset.n_neurons]),
            device,
        ),
    )
}
