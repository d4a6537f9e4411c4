//! Evaluation, shared by training, the ridge fit, saved networks and the inside views:
//! predictions read back from the device, the seed's baseline, and the seed's scores.

use burn::prelude::*;

use super::metrics::{mean, mse, per_neuron_mse, per_neuron_pearson, per_neuron_variance};
use super::{BestNetwork, EvalRecord, TrainError, TrainingConfig, TrainingReport};
use crate::data::{Dataset, Split};
use crate::model::Network;

/// Images per forward pass when predicting whole sets (bounds GPU memory on big uploads).
const PREDICT_CHUNK: usize = 512;

/// The seed's baseline: every neuron's mean training rate, predicted for every image.
pub(crate) struct Baseline {
    /// Its loss on the evaluation images, per neuron and overall (`lossbaseline`).
    pub(crate) per_neuron: Vec<f64>,
    pub(crate) loss: f64,
    pub(crate) eval_variance: Vec<f64>,
}

impl Baseline {
    pub(crate) fn new(dataset: &Dataset, split: &Split) -> Self {
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
pub(crate) fn score(
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
    model: &Network,
    flags: TrainingConfig,
    dataset: &Dataset,
    split: Split,
    step: usize,
    device: &Device,
) -> Result<TrainingReport, TrainError> {
    let all: Vec<usize> = (0..dataset.n_images).collect();
    let (images, _) = images_and_rates(dataset, &all, device);
    let pred = predict(model, &images).await?;
    let n_params = flags
        .model
        .architecture([dataset.height, dataset.width], dataset.n_neurons)?
        .n_params();
    let steps_done = flags.max_steps.min(step + 1);
    Ok(single_evaluation_report(
        &pred, dataset, flags, split, step, steps_done, n_params,
    ))
}

/// A report whose history is one evaluation, which is also its best network: a reloaded
/// network, or a model fitted at once (the Gabor ridge).
pub(crate) fn single_evaluation_report(
    pred: &[f32],
    dataset: &Dataset,
    flags: TrainingConfig,
    split: Split,
    step: usize,
    steps_done: usize,
    n_params: usize,
) -> TrainingReport {
    let baseline = Baseline::new(dataset, &split);
    let (record, best) = score(pred, dataset, &split, &baseline, step);
    TrainingReport {
        steps_done,
        flags,
        n_params,
        split,
        baseline_loss: baseline.loss,
        baseline_loss_per_neuron: baseline.per_neuron,
        eval_variance: baseline.eval_variance,
        history: vec![record],
        best: Some(best),
    }
}

/// Forward passes over `images` in chunks, read back asynchronously (the browser forbids
/// blocking read-backs).
pub async fn predict(model: &Network, images: &Tensor<3>) -> Result<Vec<f32>, TrainError> {
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
