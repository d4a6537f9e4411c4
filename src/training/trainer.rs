use std::future::Future;
use std::pin::Pin;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::evaluation::{Baseline, images_and_rates, predict, score};
use super::{BestNetwork, EvalRecord, LossKind, OptimizerKind, TrainingConfig, TrainingReport};
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
    train_images: TrainingImages,
    train_rates: Tensor<2>,
    /// Every image, on the plain device, for evaluation.
    all_images: Tensor<3>,
    rng: ChaCha8Rng,
    steps_done: usize,
    baseline: Baseline,
    history: Vec<EvalRecord>,
    best: Option<BestNetwork>,
    halves: Halves,
    /// Why the partner of a shared batch stopped sharing, if it did ([`Trainer::share_batches`]).
    partner_lost: Option<String>,
}

/// How a training step takes its batch's gradient.
enum Halves {
    /// The batch whole: a GPU, or one thread natively.
    No,
    /// In two halves, side by side where there are threads (natively on the CPU with two or
    /// more), one after the other where there are not.
    Here,
    /// One half here; the other in a partner that runs the same trainer (same seed, same
    /// draws) and swaps its half's gradient for this one's each step: the page's CPU runs,
    /// in two workers (web::engine).
    Shared {
        mine: usize,
        partner: Box<dyn GradientExchange>,
    },
}

/// A future that stays on its thread (the page's futures hold JS values).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The other half of each batch, computed elsewhere (see [`Trainer::share_batches`]).
pub trait GradientExchange {
    /// Sends this side's half-gradient of step `step`, one slice of values per parameter in
    /// the network's parameter order (copied before this returns), and gives the other
    /// side's in pieces of the same lengths, or `None` once the other side has ended the run.
    fn swap(
        &self,
        step: usize,
        mine: &[&[f32]],
    ) -> LocalFuture<'_, Result<Option<Vec<Vec<f32>>>, TrainError>>;
}

/// Where each parameter's piece lies in a half's message of `total` values, for pieces of
/// `lengths` (this side's): a message of another length is refused, since pieces cut from it
/// would fit and the surplus or shortfall would go unseen.
pub fn piece_ranges(
    lengths: &[usize],
    total: usize,
) -> Result<Vec<std::ops::Range<usize>>, TrainError> {
    let expected: usize = lengths.iter().sum();
    if total != expected {
        return Err(TrainError::Device(format!(
            "the other half's gradient has {total} values, not the {expected} this network's take"
        )));
    }
    let mut at = 0;
    Ok(lengths
        .iter()
        .map(|&len| {
            at += len;
            at - len..at
        })
        .collect())
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
        let train_images = TrainingImages::new(train_images);
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
            halves: Halves::No,
            partner_lost: None,
        }
        .with_default_halves())
    }

    fn with_default_halves(mut self) -> Self {
        self.halves = if self.batch_in_halves() {
            Halves::Here
        } else {
            Halves::No
        };
        self
    }

    /// From now on each step computes half of its batch here (`half` 0, the first, or 1) and
    /// takes the other half's gradient from `partner`, a trainer built alike (same flags,
    /// data and device kind) that shares with this one as the other half. Both then apply the
    /// same sum, so they stay the same network, step after step; only half 0 needs to
    /// evaluate. The numbers are those of [`Halves::Here`] to the bit. Should the partner fail,
    /// half 0 computes both halves from then on ([`Trainer::partner_lost`]).
    ///
    /// Only a trainer that takes its batches in halves shares them (the CPU backend, a batch
    /// of two or more): `false`, and nothing changes, for any other.
    #[must_use]
    pub fn share_batches(&mut self, half: usize, partner: Box<dyn GradientExchange>) -> bool {
        assert!(half < 2, "a batch has two halves");
        if !matches!(self.halves, Halves::Here) {
            return false;
        }
        self.halves = Halves::Shared {
            mine: half,
            partner,
        };
        true
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

    /// One SGD/Adam update on a random batch; nothing is read back. `false` when the batch's
    /// other half will not come: the partner has ended the run.
    async fn update(&mut self) -> Result<bool, TrainError> {
        let n_train = self.split.train.len();
        let picks = rand::seq::index::sample(&mut self.rng, n_train, self.config.batch_size);
        let picks: Vec<i64> = picks.into_iter().map(|i| i as i64).collect();
        let picks = Tensor::<1, Int>::from_data(
            TensorData::new(picks, [self.config.batch_size]),
            &self.device,
        );
        let images = self.train_images.batch(picks.clone());
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
        let loss = self.config.loss;
        let grads = match &self.halves {
            Halves::No => part_gradients(&self.model, loss, images, rates, masks, batch),
            Halves::Here => batch_gradients(&self.model, loss, images, rates, masks, true),
            Halves::Shared { mine, partner } => {
                let mine = *mine;
                let part = |half| batch_part(&images, &rates, &masks, half_range(half, batch));
                let (images_own, rates_own, masks_own) = part(mine);
                let mut own =
                    part_gradients(&self.model, loss, images_own, rates_own, masks_own, batch);
                let values = take_gradient_values(&self.model, &mut own);
                let slices: Vec<&[f32]> = values
                    .iter()
                    .map(|values| values.data.as_slice::<f32>().expect("f32 after convert"))
                    .collect();
                let swapped = partner.swap(self.steps_done, &slices);
                put_gradient_values_back(&self.model, &mut own, values);
                let theirs = match swapped.await {
                    Ok(Some(theirs)) => gradients_from_pieces(&self.model, &own, theirs),
                    // The partner's side ends its run when half 0 ends it.
                    Ok(None) if mine == 1 => return Ok(false),
                    Ok(None) => Err(TrainError::Device("it ended the run".into())),
                    Err(e) => Err(e),
                };
                let theirs = match theirs {
                    Ok(theirs) => theirs,
                    // Said to half 0 (web::halves), which then goes on alone.
                    Err(e) if mine == 1 => return Err(e),
                    // Half 0 goes on alone, both halves here: the same numbers, at one worker's
                    // pace.
                    Err(e) => {
                        self.partner_lost = Some(e.to_string());
                        let (images_other, rates_other, masks_other) = part(1);
                        part_gradients(
                            &self.model,
                            loss,
                            images_other,
                            rates_other,
                            masks_other,
                            batch,
                        )
                    }
                };
                match mine {
                    0 => sum_of_halves(&self.model, own, theirs),
                    _ => sum_of_halves(&self.model, theirs, own),
                }
            }
        };
        if self.partner_lost.is_some() {
            self.halves = Halves::Here;
        }
        // The update may write each parameter in place only where nothing else holds it, so
        // the network is moved into it. On the GPU that keeps the conv filters in the layout
        // they were made in (`model::filters_param`): the filter gradients are held until the
        // update is done, so that it cannot write into a gradient's buffer (and layout)
        // instead. On the CPU nothing is held, and a gradient's buffer may be reused.
        let held_filter_grads: Vec<Tensor<4>> = if self.on_cpu() {
            Vec::new()
        } else {
            self.model
                .members
                .iter()
                .flat_map(|member| &member.conv_blocks)
                .filter_map(|block| grads.get::<4>(block.conv.weight.id))
                .collect()
        };
        let emptied = self.model.emptied();
        let model = std::mem::replace(&mut self.model, emptied);
        self.model = self.optimizer.step(self.config.learning_rate, model, grads);
        drop(held_filter_grads);
        Ok(true)
    }

    fn on_cpu(&self) -> bool {
        self.device.clone().without_autodiff() == Device::flex()
    }

    /// On the CPU backend a batch's gradient is taken in two halves: natively with two threads
    /// or more (at once), and always in the page, whose workers may share them
    /// ([`Trainer::share_batches`]) — so that a seed gives the same numbers on every laptop,
    /// whatever its cores. A GPU takes the batch whole.
    fn batch_in_halves(&self) -> bool {
        #[cfg(not(target_arch = "wasm32"))]
        let threads = rayon::current_num_threads();
        #[cfg(target_arch = "wasm32")]
        let threads = 2;
        threads >= 2 && self.config.batch_size >= 2 && self.on_cpu()
    }

    /// Why the batch's other half stopped coming from the partner (the run then went on
    /// with both halves here), once; `None` while it comes or where there is no partner.
    pub fn partner_lost(&mut self) -> Option<String> {
        self.partner_lost.take()
    }

    /// A partner's loop ([`Trainer::share_batches`] with half 1): trains, without evaluating,
    /// until the run's last step or until half 0 ends the run.
    pub async fn follow(&mut self) -> Result<(), TrainError> {
        while self.steps_done < self.config.max_steps {
            if !self.update().await? {
                break;
            }
            self.steps_done += 1;
        }
        Ok(())
    }

    /// Runs up to `max_updates` updates, stopping early right after an evaluation (when the
    /// seed evaluates) so that the caller can report it. Reads back only when it evaluates.
    pub async fn advance(&mut self, max_updates: usize) -> Result<Progress, TrainError> {
        let mut evaluation = None;
        for _ in 0..max_updates {
            if self.is_finished() {
                break;
            }
            if !self.update().await? {
                // Only a partner's side ends a run here: `follow` is its loop, not this.
                break;
            }
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
            // On the GPU the best network gets filters of its own: sharing the training
            // network's would keep the next update from writing them in place (`update`).
            self.best_model = Some(if self.on_cpu() {
                model
            } else {
                model.with_own_filters()
            });
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

/// The gradient of the loss of a batch. With `in_halves`, the halves' forward and backward
/// passes run side by side, one per thread: a step is many small operations, which
/// burn-flex shares out over two threads less well than two independent halves
/// (BENCHMARKS.md). Each half's terms are divided by the whole batch's count, so the two
/// gradients sum to the batch's.
fn batch_gradients(
    model: &Network,
    loss: LossKind,
    images: Tensor<4>,
    rates: Tensor<2>,
    masks: Vec<Option<Tensor<2>>>,
    in_halves: bool,
) -> GradientsParams {
    let batch = images.dims()[0];
    if !in_halves || batch < 2 {
        return part_gradients(model, loss, images, rates, masks, batch);
    }
    let part = |half| batch_part(&images, &rates, &masks, half_range(half, batch));
    let ((images_a, rates_a, masks_a), (images_b, rates_b, masks_b)) = (part(0), part(1));
    // The second half's network has autodiff leaves of its own (the same parameters and
    // ids): halves sharing one graph would each consume the other's tape in their backward
    // passes.
    let forked = model.clone().fork(&images_b.device());
    let (a, b) = side_by_side(
        || part_gradients(model, loss, images_a, rates_a, masks_a, batch),
        || part_gradients(&forked, loss, images_b, rates_b, masks_b, batch),
    );
    sum_of_halves(model, a, b)
}

/// The first half's gradient plus the second's, always in that order (the same sum on both
/// sides of a shared batch).
fn sum_of_halves(
    model: &Network,
    first: GradientsParams,
    second: GradientsParams,
) -> GradientsParams {
    let mut sum = GradientsAccumulator::new();
    sum.accumulate(model, first);
    sum.accumulate(model, second);
    sum.grads()
}

/// The images of a batch's half: 0 the first `batch / 2`, 1 the rest.
fn half_range(half: usize, batch: usize) -> std::ops::Range<usize> {
    match half {
        0 => 0..batch / 2,
        _ => batch / 2..batch,
    }
}

type BatchPart = (Tensor<4>, Tensor<2>, Vec<Option<Tensor<2>>>);

/// Images, rates and dropout masks of the batch's images `range`.
fn batch_part(
    images: &Tensor<4>,
    rates: &Tensor<2>,
    masks: &[Option<Tensor<2>>],
    range: std::ops::Range<usize>,
) -> BatchPart {
    let (start, len) = (range.start, range.len());
    let masks = masks
        .iter()
        .map(|mask| mask.clone().map(|mask| mask.narrow(0, start, len)))
        .collect();
    (
        images.clone().narrow(0, start, len),
        rates.clone().narrow(0, start, len),
        masks,
    )
}

/// One parameter's gradient as values, and where it came from.
struct GradientValues {
    param: ParamId,
    data: TensorData,
    device: Device,
}

/// Every gradient of `grads`, in the order in which `model` visits its parameters, as values:
/// what a shared batch's half sends to the other worker. They are taken out of `grads` (put
/// back by [`put_gradient_values_back`]), so that a gradient that nothing else holds becomes
/// its values without a copy. For the seed's network (500 KB) in the page's two workers,
/// dropping the flattened vector's copies cut sending a half from 0.25–0.28 ms a step to
/// 0.17, and taking the other's in from 0.07–0.08 ms to 0.06 (BENCHMARKS.md).
fn take_gradient_values(model: &Network, grads: &mut GradientsParams) -> Vec<GradientValues> {
    struct Take<'a> {
        grads: &'a mut GradientsParams,
        taken: Vec<GradientValues>,
    }
    impl ModuleVisitor for Take<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.remove::<D>(param.id) {
                self.taken.push(GradientValues {
                    param: param.id,
                    device: grad.device(),
                    data: grad.into_data().convert::<f32>(),
                });
            }
        }
    }
    let mut take = Take {
        grads,
        taken: Vec::new(),
    };
    model.visit(&mut take);
    take.taken
}

/// The values [`take_gradient_values`] took out of `grads`, back in as tensors (no copy).
fn put_gradient_values_back(
    model: &Network,
    grads: &mut GradientsParams,
    taken: Vec<GradientValues>,
) {
    struct PutBack<'a, I: Iterator<Item = GradientValues>> {
        grads: &'a mut GradientsParams,
        taken: std::iter::Peekable<I>,
    }
    impl<I: Iterator<Item = GradientValues>> ModuleVisitor for PutBack<'_, I> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(values) = self.taken.next_if(|values| values.param == param.id) {
                let grad = Tensor::from_data(values.data, &values.device);
                self.grads.register::<D>(param.id, grad);
            }
        }
    }
    model.visit(&mut PutBack {
        grads,
        taken: taken.into_iter().peekable(),
    });
}

/// The other half's gradients from their values, one piece per parameter
/// ([`take_gradient_values`]), shaped and placed as `like`'s (this half's: the same
/// parameters have gradients on both sides).
fn gradients_from_pieces(
    model: &Network,
    like: &GradientsParams,
    pieces: Vec<Vec<f32>>,
) -> Result<GradientsParams, TrainError> {
    struct Unflatten<'a, I> {
        like: &'a GradientsParams,
        pieces: I,
        wrong: Option<String>,
        grads: GradientsParams,
    }
    impl<I: Iterator<Item = Vec<f32>>> ModuleVisitor for Unflatten<'_, I> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let Some(own) = self.like.get::<D>(param.id) else {
                return;
            };
            let dims = own.dims();
            let wanted = dims.iter().product::<usize>();
            match self.pieces.next() {
                Some(piece) if piece.len() == wanted => {
                    let grad = Tensor::from_data(TensorData::new(piece, dims), &own.device());
                    self.grads.register::<D>(param.id, grad);
                }
                piece => {
                    self.wrong.get_or_insert(format!(
                        "the other half's gradient of a parameter has {} values, not the {wanted} \
                         this network's takes",
                        piece.map_or(0, |piece| piece.len())
                    ));
                }
            }
        }
    }
    let n_pieces = pieces.len();
    let mut unflatten = Unflatten {
        like,
        pieces: pieces.into_iter(),
        wrong: None,
        grads: GradientsParams::new(),
    };
    model.visit(&mut unflatten);
    if let Some(wrong) = unflatten.wrong {
        return Err(TrainError::Device(wrong));
    }
    if n_pieces != like.len() {
        return Err(TrainError::Device(format!(
            "the other half sent gradients of {n_pieces} parameters, not of {}",
            like.len()
        )));
    }
    Ok(unflatten.grads)
}

/// The gradient of the loss of `images`, a part of a batch of `batch` images (or all of it).
/// Each member learns from its own loss; the sum trains them all in one backward pass. The
/// loss's value is never read here, so the backward pass starts from its terms.
fn part_gradients(
    model: &Network,
    loss: LossKind,
    images: Tensor<4>,
    rates: Tensor<2>,
    masks: Vec<Option<Tensor<2>>>,
    batch: usize,
) -> GradientsParams {
    let loss_terms = model
        .member_rates(images, masks)
        .into_iter()
        .map(|rates_k| loss.scaled_terms(rates_k, rates.clone(), batch))
        .reduce(|a, b| a + b)
        .expect("a network has at least one member");
    GradientsParams::from_grads(loss_terms.backward(), model)
}

/// The training images on the device, laid out for the backend's convolution. On the GPU
/// they are stored [height, width, image, 1], so that a batch picked from them has the image
/// axis innermost: the GPU's convolution reads that as it is, and its filter gradient, which
/// takes the images as channels, then needs no copy of them (one kernel launch per step
/// fewer; BENCHMARKS.md). On the CPU they stay [image, height, width, 1].
struct TrainingImages {
    stored: Tensor<4>,
    image_axis: usize,
}

impl TrainingImages {
    fn new(images: Tensor<3>) -> Self {
        let [count, height, width] = images.dims();
        if images.device().without_autodiff() == Device::flex() {
            let stored = images.reshape([count, height, width, 1]);
            return Self {
                stored,
                image_axis: 0,
            };
        }
        let stored = images.permute([1, 2, 0]).reshape([height, width, count, 1]);
        Self {
            stored,
            image_axis: 2,
        }
    }

    /// The images `picks` as [batch, 1, height, width].
    fn batch(&self, picks: Tensor<1, Int>) -> Tensor<4> {
        let picked = self.stored.clone().select(self.image_axis, picks);
        match self.image_axis {
            0 => picked.permute([0, 3, 1, 2]),
            _ => picked.permute([2, 3, 0, 1]),
        }
    }
}

/// `a` and `b` at once on burn-flex's thread pool (natively), or one after the other.
fn side_by_side<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    #[cfg(not(target_arch = "wasm32"))]
    return rayon::join(a, b);
    #[cfg(target_arch = "wasm32")]
    (a(), b())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;

    /// Taken in halves, a batch's gradient must be the whole batch's, for every parameter of
    /// every member, with each member's dropout mask. It fails if each half divided by its
    /// own count (twice the gradient), or if a half took another half's masks or rates.
    #[test]
    fn a_batch_in_halves_has_the_whole_batchs_gradient() {
        let device = Device::flex().autodiff();
        let config = ModelConfig::new()
            .with_conv1(4)
            .with_conv2(5)
            .with_hidden1(12)
            .with_ensemble(2);
        let network = config.init([33, 33], 6, 5, &device).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut values = |n: usize, scale: f64| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.random::<f64>() * scale) as f32)
                .collect()
        };
        let batch = 9;
        let images = Tensor::<1>::from_floats(values(batch * 33 * 33, 255.0).as_slice(), &device)
            .reshape([batch, 1, 33, 33]);
        let rates = Tensor::<1>::from_floats(values(batch * 6, 2.0).as_slice(), &device)
            .reshape([batch, 6]);
        let mask = |values: Vec<f32>| {
            let kept: Vec<f32> = values
                .iter()
                .map(|&v| if v < 0.5 { 0.0 } else { 2.0 })
                .collect();
            Some(Tensor::<1>::from_floats(kept.as_slice(), &device).reshape([batch, 12]))
        };
        let masks = vec![mask(values(batch * 12, 1.0)), mask(values(batch * 12, 1.0))];
        let gradients = |in_halves| {
            batch_gradients(
                &network,
                LossKind::Mse,
                images.clone(),
                rates.clone(),
                masks.clone(),
                in_halves,
            )
        };
        let (whole, halves) = (gradients(false), gradients(true));
        for (k, member) in network.members.iter().enumerate() {
            let hidden = member.hidden.as_ref().unwrap();
            let pairs: Vec<(String, Tensor<1>, Tensor<1>)> = vec![
                {
                    let id = member.conv_blocks[0].conv.weight.id;
                    let get = |g: &GradientsParams| g.get::<4>(id).unwrap().flatten::<1>(0, 3);
                    ("conv 1 weights".into(), get(&whole), get(&halves))
                },
                {
                    let id = member.conv_blocks[1].conv.weight.id;
                    let get = |g: &GradientsParams| g.get::<4>(id).unwrap().flatten::<1>(0, 3);
                    ("conv 2 weights".into(), get(&whole), get(&halves))
                },
                {
                    let id = hidden.weight.id;
                    let get = |g: &GradientsParams| g.get::<2>(id).unwrap().flatten::<1>(0, 1);
                    ("hidden weights".into(), get(&whole), get(&halves))
                },
                {
                    let id = member.output.bias.as_ref().unwrap().id;
                    let get = |g: &GradientsParams| g.get::<1>(id).unwrap();
                    ("output biases".into(), get(&whole), get(&halves))
                },
            ];
            for (name, whole, halves) in pairs {
                let largest: f32 = whole.clone().abs().max().into_scalar();
                let gap: f32 = (whole - halves).abs().max().into_scalar();
                assert!(largest > 0.0, "member {k}, {name}: no gradient");
                assert!(
                    gap <= 1e-4 * largest,
                    "member {k}, {name}: halves differ by {gap} (largest {largest})"
                );
            }
        }
    }

    /// The other half's values, taken out of a gradient and read back, give it again; a piece
    /// of the wrong length, or a piece too few or too many, is refused with a message, not
    /// taken apart wrongly.
    #[test]
    fn gradient_values_go_back_to_their_parameters_and_wrong_pieces_are_refused() {
        let device = Device::flex().autodiff();
        let network = ModelConfig::new()
            .with_conv1(2)
            .with_conv2(3)
            .with_hidden1(4)
            .init([33, 33], 2, 1, &device)
            .unwrap();
        let images =
            Tensor::<4>::random([2, 1, 33, 33], burn::tensor::Distribution::Default, &device);
        let rates = Tensor::<2>::ones([2, 2], &device);
        let mut grads = part_gradients(&network, LossKind::Mse, images, rates, vec![None], 2);
        let before = gradient_list(&network, &grads);
        let taken = take_gradient_values(&network, &mut grads);
        assert!(grads.is_empty(), "every gradient was taken out");
        let pieces: Vec<Vec<f32>> = taken
            .iter()
            .map(|values| values.data.as_slice::<f32>().unwrap().to_vec())
            .collect();
        put_gradient_values_back(&network, &mut grads, taken);
        assert_eq!(gradient_list(&network, &grads), before, "put back");
        let theirs = gradients_from_pieces(&network, &grads, pieces.clone()).unwrap();
        assert_eq!(gradient_list(&network, &theirs), before, "read back");

        let mut short = pieces.clone();
        short[2].pop();
        let mut long = pieces.clone();
        long[0].push(0.0);
        for (wrong, said) in [
            (short, format!("has {} values", pieces[2].len() - 1)),
            (long, format!("has {} values", pieces[0].len() + 1)),
            (
                pieces[1..].to_vec(),
                format!("has {} values", pieces[1].len()),
            ),
            (
                [pieces.clone(), vec![vec![0.0]]].concat(),
                format!("of {} parameters", pieces.len() + 1),
            ),
        ] {
            let Err(error) = gradients_from_pieces(&network, &grads, wrong) else {
                panic!("wrong pieces were taken ({said})");
            };
            assert!(error.to_string().contains(&said), "{error} ({said})");
        }
    }

    /// A half's message is cut where each piece lies, and refused if it holds one value too
    /// few or too many.
    #[test]
    fn a_message_is_cut_into_its_pieces_and_one_of_the_wrong_length_is_refused() {
        let lengths = [3, 0, 5, 2];
        assert_eq!(
            piece_ranges(&lengths, 10).unwrap(),
            vec![0..3, 3..3, 3..8, 8..10]
        );
        for wrong in [9, 11] {
            let Err(error) = piece_ranges(&lengths, wrong) else {
                panic!("a message of {wrong} values was taken");
            };
            assert!(
                error
                    .to_string()
                    .contains(&format!("has {wrong} values, not the 10")),
                "{error}"
            );
        }
    }

    /// Every gradient's values, in the order in which `model` visits its parameters.
    fn gradient_list(model: &Network, grads: &GradientsParams) -> Vec<Vec<f32>> {
        struct List<'a>(&'a GradientsParams, Vec<Vec<f32>>);
        impl ModuleVisitor for List<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(grad) = self.0.get::<D>(param.id) {
                    let data = grad.into_data().convert::<f32>();
                    self.1.push(data.as_slice::<f32>().unwrap().to_vec());
                }
            }
        }
        let mut list = List(grads, Vec::new());
        model.visit(&mut list);
        list.1
    }

    /// Natively only: the test drives both trainers with `pollster`.
    #[cfg(not(target_arch = "wasm32"))]
    mod shared_batches {
        use std::cell::RefCell;
        use std::collections::VecDeque;
        use std::rc::Rc;
        use std::task::{Poll, Waker};

        use super::*;

        /// The page's two workers: two trainers that share each batch train, step after step, the
        /// network that one trainer in halves trains, to the bit (and so the same as each other).
        /// It fails if a side took the wrong half, if the vector put a gradient on the wrong
        /// parameter, or if a side applied its own half alone.
        #[test]
        fn two_trainers_sharing_batches_train_the_network_one_trainer_in_halves_does() {
            let mut alone = trainer();
            alone.halves = Halves::Here;
            pollster::block_on(alone.follow()).unwrap();

            let mailboxes = Rc::new(Mailboxes::default());
            let (mut first, mut second) = (trainer(), trainer());
            assert!(first.share_batches(0, Box::new(Side(0, mailboxes.clone()))));
            assert!(second.share_batches(1, Box::new(Side(1, mailboxes))));
            {
                let (a, b) = (first.follow(), second.follow());
                let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
                let (mut a_done, mut b_done) = (false, false);
                pollster::block_on(std::future::poll_fn(|cx| {
                    if !a_done && let Poll::Ready(result) = a.as_mut().poll(cx) {
                        result.unwrap();
                        a_done = true;
                    }
                    if !b_done && let Poll::Ready(result) = b.as_mut().poll(cx) {
                        result.unwrap();
                        b_done = true;
                    }
                    if a_done && b_done {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                }));
            }

            assert_eq!(first.steps_done(), 4);
            assert_eq!(second.steps_done(), 4);
            let untrained = weights(trainer().model());
            let reference = weights(alone.model());
            assert_ne!(reference, untrained, "four steps moved the weights");
            assert_eq!(
                weights(first.model()),
                reference,
                "the first half's network"
            );
            assert_eq!(
                weights(second.model()),
                reference,
                "the second half's network"
            );
        }

        /// A partner that fails leaves the first half to go on with both halves: the run
        /// ends with the network of one trainer in halves, and says once why.
        #[test]
        fn a_first_half_whose_partner_fails_goes_on_alone_with_the_same_numbers() {
            struct Failing;
            impl GradientExchange for Failing {
                fn swap(
                    &self,
                    _step: usize,
                    _mine: &[&[f32]],
                ) -> LocalFuture<'_, Result<Option<Vec<Vec<f32>>>, TrainError>> {
                    Box::pin(async { Err(TrainError::Device("the second worker stopped".into())) })
                }
            }
            let (mut alone, mut first) = (trainer(), trainer());
            alone.halves = Halves::Here;
            assert!(first.share_batches(0, Box::new(Failing)));
            pollster::block_on(alone.follow()).unwrap();
            pollster::block_on(first.follow()).unwrap();
            assert_eq!(first.steps_done(), 4);
            assert_eq!(weights(first.model()), weights(alone.model()));
            let reason = first.partner_lost().expect("the loss is told");
            assert!(reason.contains("the second worker stopped"), "{reason}");
            assert_eq!(first.partner_lost(), None, "told once");
        }

        /// A batch of one has no halves: it is not shared, and trains as before.
        #[test]
        fn a_batch_of_one_is_not_shared() {
            let mut single = trainer();
            single.config.batch_size = 1;
            single = single.with_default_halves();
            assert!(!single.share_batches(0, Box::new(Side(0, Rc::default()))));
            pollster::block_on(single.follow()).unwrap();
            assert_eq!(single.steps_done(), 4);
        }

        /// The test's trainer: a small ensemble on the demo data, batch 9, four Adam steps.
        fn trainer() -> Trainer {
            let config = TrainingConfig::new()
                .with_optimizer(OptimizerKind::Adam)
                .with_learning_rate(1e-3)
                .with_max_steps(4)
                .with_batch_size(9)
                .with_seed(5)
                .with_model(
                    ModelConfig::new()
                        .with_conv1(4)
                        .with_conv2(5)
                        .with_hidden1(12)
                        .with_ensemble(2),
                );
            let demo = crate::data::read_mat(
                "simulated-v1.mat",
                include_bytes!("../../data/simulated-v1.mat"),
            )
            .expect("the demo data loads");
            Trainer::new(config, demo, &Device::flex()).unwrap()
        }

        /// Every parameter's values, in visiting order.
        fn weights(model: &Network) -> Vec<f32> {
            struct Values(Vec<f32>);
            impl ModuleVisitor for Values {
                fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                    let data = param.val().into_data().convert::<f32>();
                    self.0.extend_from_slice(data.as_slice::<f32>().unwrap());
                }
            }
            let mut values = Values(Vec::new());
            model.visit(&mut values);
            values.0
        }

        /// Two in-memory mailboxes, one per side: what the other side sent, in order.
        #[derive(Default)]
        struct Mailboxes {
            letters: RefCell<[VecDeque<Vec<Vec<f32>>>; 2]>,
            waiting: RefCell<[Option<Waker>; 2]>,
        }

        struct Side(usize, Rc<Mailboxes>);

        impl GradientExchange for Side {
            fn swap(
                &self,
                _step: usize,
                mine: &[&[f32]],
            ) -> LocalFuture<'_, Result<Option<Vec<Vec<f32>>>, TrainError>> {
                let (me, other) = (self.0, 1 - self.0);
                let mine = mine.iter().map(|piece| piece.to_vec()).collect();
                self.1.letters.borrow_mut()[other].push_back(mine);
                if let Some(waker) = self.1.waiting.borrow_mut()[other].take() {
                    waker.wake();
                }
                Box::pin(std::future::poll_fn(move |cx| {
                    match self.1.letters.borrow_mut()[me].pop_front() {
                        Some(theirs) => Poll::Ready(Ok(Some(theirs))),
                        None => {
                            self.1.waiting.borrow_mut()[me] = Some(cx.waker().clone());
                            Poll::Pending
                        }
                    }
                }))
            }
        }
    }
}
