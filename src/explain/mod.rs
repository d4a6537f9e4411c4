//! Looking inside a trained network, as the paper did to *reveal* the neural code: what image
//! each neuron prefers (and which one silences it), found by gradient ascent on the pixels;
//! its linear receptive-field estimate (the gradient at the mean image); the data's
//! spike-triggered average as the model-free comparison; and the predictions behind the
//! Pearson plot. Runs on any device (WebGPU or CPU) and reads back only when asked.

mod figures;
mod inversion;
mod truth;

use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::data::simulate::GroundTruth;
use crate::model::Network;
use crate::results::{NetworkWeights, ResultsError, SavedNetwork, read_back};
use crate::training::metrics::per_neuron_pearson;
use crate::training::{images_and_rates, predict};

pub use figures::{diverging, explain_files};
pub use inversion::{Direction, Inversion, InversionConfig, Inverted, Target};
pub use truth::similarity_to_truth;

/// How many of the data's images are listed as a neuron's top stimuli.
pub const TOP_STIMULI: usize = 6;

/// A saved network opened for inspection on one dataset and device.
pub struct Explainer {
    network: SavedNetwork,
    /// The network on the autodiff version of the device, its parameters frozen: only the
    /// input pixels get gradients.
    model: Network,
    device: Device,
    dataset: Dataset,
    mean_image: Vec<f32>,
    budget: f64,
    /// The data's lowest and highest pixel value: inverted images stay within them.
    pixel_range: [f64; 2],
    /// Per neuron, the true filters (demo data only).
    truth: Option<Vec<truth::TrueNeuron>>,
}

/// The first conv layer's kernels, as images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilterBank {
    pub count: usize,
    pub size: usize,
    /// `count × size × size` weights, row-major per kernel.
    pub weights: Vec<f32>,
}

/// What the page shows before any inversion: everything that needs one forward pass, one
/// gradient, or none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    pub height: usize,
    pub width: usize,
    pub n_images: usize,
    pub n_neurons: usize,
    pub conv1: FilterBank,
    /// The mean of the data's images, and the pixel-norm budget of the inversions around it
    /// (the data's median ‖image − mean image‖).
    pub mean_image: Vec<f32>,
    pub budget: f64,
    /// Predicted and measured rates of every image, `n_images × n_neurons`, row-major.
    pub predicted: Vec<f32>,
    pub measured: Vec<f32>,
    /// The images the network never trained on or was picked with (its split's evaluation set).
    pub eval_images: Vec<usize>,
    /// Pearson r of every neuron on the evaluation images.
    pub r: Vec<f64>,
    /// Per neuron, the gradient of its drive at the mean image (`n_neurons × h × w`): the
    /// network's linear receptive-field estimate.
    pub rf: Vec<f32>,
    /// Per neuron, the spike-triggered average: rate-weighted mean image minus the mean image.
    pub sta: Vec<f32>,
    /// Per neuron, the images with the highest measured and predicted rates, highest first.
    pub top_measured: Vec<Vec<usize>>,
    pub top_predicted: Vec<Vec<usize>>,
    /// On data with a ground truth (the demo session): per neuron, its cell type, its first
    /// true filter and how well the RF estimate and the STA match the true filters.
    pub truth: Option<Vec<TruthMatch>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthMatch {
    pub cell_type: String,
    /// The first of its true filters (`h × w`), for showing beside the recovered ones.
    pub filter: Vec<f32>,
    pub rf_similarity: f64,
    pub sta_similarity: f64,
}

impl Explainer {
    /// Opens `network` on `dataset` (which must be the shape it was trained on) on `device`.
    pub fn new(
        network: &SavedNetwork,
        dataset: &Dataset,
        device: &Device,
    ) -> Result<Self, ResultsError> {
        network.check_fits(dataset)?;
        let device = device.clone().autodiff();
        let model = network.weights.to_model(&network.info, &device)?.no_grad();
        let mean_image = mean_image(dataset);
        let budget = contrast_budget(dataset, &mean_image);
        let summary = dataset.summary();
        Ok(Self {
            pixel_range: [summary.pixel_min, summary.pixel_max],
            network: network.clone(),
            model,
            device,
            dataset: dataset.clone(),
            mean_image,
            budget,
            truth: None,
        })
    }

    /// Adds the ground truth of a simulated session, for comparing recovered filters with it.
    pub fn with_truth(mut self, truth: &GroundTruth) -> Result<Self, ResultsError> {
        self.truth = Some(truth::true_neurons(truth, &self.dataset)?);
        Ok(self)
    }

    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    pub fn network(&self) -> &SavedNetwork {
        &self.network
    }

    pub fn budget(&self) -> f64 {
        self.budget
    }

    pub fn mean_image(&self) -> &[f32] {
        &self.mean_image
    }

    pub fn has_truth(&self) -> bool {
        self.truth.is_some()
    }

    fn pixels(&self) -> usize {
        self.dataset.height * self.dataset.width
    }

    fn images_tensor(&self, pixels: Vec<f32>, device: &Device) -> Tensor<3> {
        let k = pixels.len() / self.pixels();
        Tensor::from_data(
            TensorData::new(pixels, [k, self.dataset.height, self.dataset.width]),
            device,
        )
    }

    /// Every neuron's drive (its output before the ReLU) for `k` images given as
    /// `k × h × w` pixels: `k × n_neurons`.
    pub async fn drives(&self, pixels: Vec<f32>) -> Result<Vec<f32>, ResultsError> {
        let plain = self.device.clone().without_autodiff();
        let model = self.model.valid();
        read_back(model.drive(self.images_tensor(pixels, &plain))).await
    }

    /// The gradient of neuron `neurons[b]`'s drive with respect to image `b`'s pixels, for
    /// images given as `k × h × w` pixels (`k = neurons.len()`).
    pub async fn input_gradients(
        &self,
        pixels: Vec<f32>,
        neurons: &[usize],
    ) -> Result<Vec<f32>, ResultsError> {
        let images = self.images_tensor(pixels, &self.device.clone().without_autodiff());
        let targets: Vec<Target> = neurons
            .iter()
            .map(|&neuron| Target {
                neuron,
                direction: Direction::Excite,
            })
            .collect();
        let selection = inversion::selection(&targets, self.dataset.n_neurons, &self.device);
        read_back(inversion::objective_gradient(
            &self.model,
            images,
            &selection,
        ))
        .await
    }

    /// The filters, predictions, receptive-field estimates and spike-triggered averages.
    pub async fn overview(&self) -> Result<Overview, ResultsError> {
        let dataset = &self.dataset;
        let (n, n_neurons) = (dataset.n_images, dataset.n_neurons);
        let plain = self.device.clone().without_autodiff();
        let all: Vec<usize> = (0..n).collect();
        let (images, _) = images_and_rates(dataset, &all, &plain);
        // The same chunked prediction that scored the run, so the r shown here is its r.
        let predicted = predict(&self.model.valid(), &images).await?;
        let neurons: Vec<usize> = (0..n_neurons).collect();
        let at_mean = self.mean_image.repeat(n_neurons);
        let rf = self.input_gradients(at_mean, &neurons).await?;
        let eval_images = self.network.info.split.eval.clone();
        let top = |rates: &[f32], neuron: usize| -> Vec<usize> {
            let mut order = all.clone();
            order.sort_by(|&a, &b| {
                rates[b * n_neurons + neuron].total_cmp(&rates[a * n_neurons + neuron])
            });
            order.truncate(TOP_STIMULI);
            order
        };
        let sta = spike_triggered_averages(dataset, &self.mean_image);
        let truth = self.truth.as_ref().map(|truth| {
            let pixels = self.pixels();
            truth
                .iter()
                .enumerate()
                .map(|(neuron, t)| TruthMatch {
                    cell_type: t.cell_type.clone(),
                    filter: t.filters[0].iter().map(|&v| v as f32).collect(),
                    rf_similarity: similarity_to_truth(
                        &rf[neuron * pixels..(neuron + 1) * pixels],
                        &t.filters,
                    ),
                    sta_similarity: similarity_to_truth(
                        &sta[neuron * pixels..(neuron + 1) * pixels],
                        &t.filters,
                    ),
                })
                .collect()
        });
        let conv1 = first_layer_filters(&self.network.weights, [dataset.height, dataset.width]);
        Ok(Overview {
            height: dataset.height,
            width: dataset.width,
            n_images: n,
            n_neurons,
            conv1,
            mean_image: self.mean_image.clone(),
            budget: self.budget,
            r: per_neuron_pearson(&predicted, &dataset.activity, n_neurons, &eval_images),
            top_measured: neurons.iter().map(|&i| top(&dataset.activity, i)).collect(),
            top_predicted: neurons.iter().map(|&i| top(&predicted, i)).collect(),
            measured: dataset.activity.clone(),
            predicted,
            eval_images,
            rf,
            sta,
            truth,
        })
    }
}

/// One neuron's figures, for reports and the benchmark table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuronSummary {
    pub neuron: usize,
    pub r: f64,
    /// Predicted rate of the preferred image, and the highest predicted for any data image.
    pub preferred_rate: Option<f32>,
    pub max_data_rate: f32,
    pub preferred_consistency: Option<f64>,
    pub suppressive_rate: Option<f32>,
    pub min_data_rate: f32,
    pub cell_type: Option<String>,
    pub preferred_truth: Option<f64>,
    pub rf_truth: Option<f64>,
    pub sta_truth: Option<f64>,
}

/// Median similarity to the true filters, per cell type of the demo data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruthByType {
    pub cell_type: String,
    pub neurons: usize,
    pub preferred: f64,
    pub rf: f64,
    pub sta: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub neurons: Vec<NeuronSummary>,
    /// Neurons whose preferred image is predicted a higher rate than every data image.
    pub preferred_beats_data: usize,
    pub median_consistency: f64,
    pub truth_by_type: Vec<TruthByType>,
}

/// The first layer's filters as square images: conv 1's, or — for an LN model, whose
/// first layer is its readout — each neuron's filter over the image (its receptive field;
/// empty when the images are not square).
fn first_layer_filters(weights: &NetworkWeights, [height, width]: [usize; 2]) -> FilterBank {
    let first = &weights.members[0];
    if let Some(conv1) = first.conv.first() {
        return FilterBank {
            count: conv1.weight_shape[0],
            size: conv1.weight_shape[2],
            weights: conv1.weight.clone(),
        };
    }
    let readout = &first.output; // [pixels, neurons]
    let (pixels, neurons) = (readout.weight_shape[0], readout.weight_shape[1]);
    if height != width || pixels != height * width {
        return FilterBank {
            count: 0,
            size: 0,
            weights: Vec::new(),
        };
    }
    let mut filters = vec![0.0; pixels * neurons];
    for p in 0..pixels {
        for n in 0..neurons {
            filters[n * pixels + p] = readout.weight[p * neurons + n];
        }
    }
    FilterBank {
        count: neurons,
        size: height,
        weights: filters,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The figures behind the views, per neuron and per cell type.
pub fn summarise(overview: &Overview, inverted: &[Inverted]) -> Summary {
    let n = overview.n_neurons;
    let find = |neuron: usize, direction: Direction| {
        inverted
            .iter()
            .find(|r| r.neuron == neuron && r.direction == direction)
    };
    let neurons: Vec<NeuronSummary> = (0..n)
        .map(|neuron| {
            let column = overview.predicted.iter().skip(neuron).step_by(n);
            let max_data_rate = column.clone().fold(f32::MIN, |m, &v| m.max(v));
            let min_data_rate = column.fold(f32::MAX, |m, &v| m.min(v));
            let (excite, suppress) = (
                find(neuron, Direction::Excite),
                find(neuron, Direction::Suppress),
            );
            let truth = overview.truth.as_ref().map(|t| &t[neuron]);
            NeuronSummary {
                neuron,
                r: overview.r[neuron],
                preferred_rate: excite.map(|r| r.rate),
                max_data_rate,
                preferred_consistency: excite.map(|r| r.consistency),
                suppressive_rate: suppress.map(|r| r.rate),
                min_data_rate,
                cell_type: truth.map(|t| t.cell_type.clone()),
                preferred_truth: excite.and_then(|r| r.truth_similarity),
                rf_truth: truth.map(|t| t.rf_similarity),
                sta_truth: truth.map(|t| t.sta_similarity),
            }
        })
        .collect();
    let mut types: Vec<String> = neurons.iter().filter_map(|s| s.cell_type.clone()).collect();
    types.sort();
    types.dedup();
    let truth_by_type = types
        .into_iter()
        .map(|cell_type| {
            let of_type: Vec<&NeuronSummary> = neurons
                .iter()
                .filter(|s| s.cell_type.as_deref() == Some(cell_type.as_str()))
                .collect();
            let med = |f: fn(&NeuronSummary) -> Option<f64>| {
                median(of_type.iter().filter_map(|s| f(s)).collect())
            };
            TruthByType {
                neurons: of_type.len(),
                preferred: med(|s| s.preferred_truth),
                rf: med(|s| s.rf_truth),
                sta: med(|s| s.sta_truth),
                cell_type,
            }
        })
        .collect();
    Summary {
        preferred_beats_data: neurons
            .iter()
            .filter(|s| s.preferred_rate.is_some_and(|r| r > s.max_data_rate))
            .count(),
        median_consistency: median(
            neurons
                .iter()
                .filter_map(|s| s.preferred_consistency)
                .collect(),
        ),
        neurons,
        truth_by_type,
    }
}

/// The mean of the data's images.
fn mean_image(dataset: &Dataset) -> Vec<f32> {
    let pixels = dataset.height * dataset.width;
    let mut sum = vec![0f64; pixels];
    for image in dataset.images.chunks_exact(pixels) {
        for (s, &p) in sum.iter_mut().zip(image) {
            *s += f64::from(p);
        }
    }
    sum.iter()
        .map(|s| (s / dataset.n_images.max(1) as f64) as f32)
        .collect()
}

/// The data's typical contrast: the median over images of ‖image − mean image‖₂. Preferred
/// images are found within this distance of the mean image, so they are as strong a stimulus
/// as a typical data image, not brighter or more contrasty.
fn contrast_budget(dataset: &Dataset, mean: &[f32]) -> f64 {
    let mut norms: Vec<f64> = dataset
        .images
        .chunks_exact(mean.len())
        .map(|image| {
            image
                .iter()
                .zip(mean)
                .map(|(&p, &m)| f64::from(p - m).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    norms.sort_by(f64::total_cmp);
    norms.get(norms.len() / 2).copied().unwrap_or(0.0)
}

/// Per neuron: Σᵢ rateᵢ · (imageᵢ − mean) / Σᵢ rateᵢ, over every image (zeros for a neuron
/// that never fired).
pub fn spike_triggered_averages(dataset: &Dataset, mean: &[f32]) -> Vec<f32> {
    let pixels = mean.len();
    let mut sta = vec![0f64; dataset.n_neurons * pixels];
    let mut total = vec![0f64; dataset.n_neurons];
    for (i, image) in dataset.images.chunks_exact(pixels).enumerate() {
        for neuron in 0..dataset.n_neurons {
            let rate = f64::from(dataset.rate(i, neuron));
            total[neuron] += rate;
            let row = &mut sta[neuron * pixels..(neuron + 1) * pixels];
            for ((s, &p), &m) in row.iter_mut().zip(image).zip(mean) {
                *s += rate * f64::from(p - m);
            }
        }
    }
    sta.chunks_exact(pixels)
        .zip(&total)
        .flat_map(|(row, &t)| {
            row.iter()
                .map(move |&s| if t > 0.0 { (s / t) as f32 } else { 0.0 })
        })
        .collect()
}

/// An image minus the mean image.
pub(crate) fn centred(image: &[f32], mean: &[f32]) -> Vec<f32> {
    image.iter().zip(mean).map(|(p, m)| p - m).collect()
}

/// Pearson correlation of two patterns (0 where either is flat).
pub fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let a: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
    let b: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
    crate::training::metrics::pearson(&a, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_dataset() -> Dataset {
        // 3 images of 1×2 pixels, 2 neurons.
        Dataset {
            sources: vec!["t.mat".into()],
            n_images: 3,
            height: 1,
            width: 2,
            n_neurons: 2,
            images: vec![0.0, 10.0, 2.0, 4.0, 4.0, 1.0],
            activity: vec![1.0, 0.0, 0.0, 0.0, 3.0, 0.0],
        }
    }

    #[test]
    fn spike_triggered_average_weights_images_by_rate() {
        let data = tiny_dataset();
        let mean = mean_image(&data);
        assert_eq!(mean, vec![2.0, 5.0]);
        let sta = spike_triggered_averages(&data, &mean);
        // Neuron 0: (1·[0,10] + 3·[4,1]) / 4 − [2,5] = [3, 3.25] − [2, 5]
        assert!(
            (sta[0] - 1.0).abs() < 1e-6 && (sta[1] + 1.75).abs() < 1e-6,
            "{sta:?}"
        );
        // Neuron 1 never fired.
        assert_eq!(&sta[2..], &[0.0, 0.0]);
    }

    #[test]
    fn budget_is_the_median_distance_from_the_mean_image() {
        let data = tiny_dataset();
        let mean = mean_image(&data);
        // Distances: √(4+25), √(0+1), √(4+16) → median √20.
        assert!((contrast_budget(&data, &mean) - 20f64.sqrt()).abs() < 1e-9);
    }
}
