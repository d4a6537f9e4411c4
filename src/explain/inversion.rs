//! Network inversion: gradient ascent (or descent) on the input pixels to find the image that
//! drives a neuron most (or least), within a fixed distance of the mean image, from several
//! random starts at once. Every start of every neuron is one image of one batch, so a whole
//! population is inverted with the same number of passes as one neuron.

use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::{Explainer, read_back};
use crate::config::{ConfigError, check_range};
use crate::model::Network;
use crate::results::ResultsError;

/// How preferred images are searched for.
#[derive(Config, Debug, PartialEq)]
pub struct InversionConfig {
    /// Random starts per neuron and direction; the best is shown, their agreement reported.
    #[config(default = 3)]
    pub starts: usize,
    /// Gradient steps.
    #[config(default = 60)]
    pub steps: usize,
    /// Distance allowed from the mean image, as a multiple of the data's typical contrast.
    #[config(default = 1.0)]
    pub budget_scale: f64,
    /// Smoothness prior: every update is blurred by a Gaussian of this σ (pixels), so the
    /// image is sought among smooth patterns rather than pixel noise. 0 turns it off.
    /// (σ = 2 with starts at 0.1 × budget, instead of σ = 1 and 0.5, raised the starts'
    /// agreement from 0.43 to 0.80 on the demo data: BENCHMARKS.md.)
    #[config(default = 2.0)]
    pub smoothness: f64,
    /// Distance of the random starts from the mean image, as a fraction of the budget: near
    /// it, so that little of the start's white noise survives where the gradient is weak.
    #[config(default = 0.1)]
    pub start_scale: f64,
    /// First and last step length, as a fraction of the budget (decays geometrically).
    #[config(default = 0.25)]
    pub first_step: f64,
    #[config(default = 0.02)]
    pub last_step: f64,
    /// Seeds the random starts.
    #[config(default = 0)]
    pub seed: u64,
}

impl InversionConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("starts", self.starts, 1..=64)?;
        check_range("steps", self.steps, 1..=100_000)?;
        for (flag, value, max) in [
            ("budget_scale", self.budget_scale, 100.0),
            ("smoothness", self.smoothness, 10.0),
            ("start_scale", self.start_scale, 1.0),
            ("first_step", self.first_step, 10.0),
            ("last_step", self.last_step, 10.0),
        ] {
            // Only the smoothness prior may be off (0); the rest must move the image.
            let low_ok = value > 0.0 || (flag == "smoothness" && value == 0.0);
            if !(value.is_finite() && value <= max && low_ok) {
                return Err(ConfigError::new(
                    flag,
                    format!("must be above 0 and at most {max}, got {value}"),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Ascent: the preferred image.
    Excite,
    /// Descent: the most suppressive image.
    Suppress,
}

impl Direction {
    fn sign(self) -> f32 {
        match self {
            Direction::Excite => 1.0,
            Direction::Suppress => -1.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub neuron: usize,
    pub direction: Direction,
}

/// One neuron's result in one direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inverted {
    pub neuron: usize,
    pub direction: Direction,
    /// The best start's image (`h × w` raw pixels).
    pub image: Vec<f32>,
    /// Its predicted rate (after the output ReLU) and drive (before it).
    pub rate: f32,
    pub drive: f32,
    /// Every start's final drive, best first.
    pub start_drives: Vec<f32>,
    /// Mean pairwise correlation of the starts' final images (minus the mean image): near 1
    /// when every start found the same pattern.
    pub consistency: f64,
    /// ‖image − mean image‖ / budget (≤ 1).
    pub norm_fraction: f64,
    /// Similarity of the recovered pattern to the neuron's true filters (demo data only).
    pub truth_similarity: Option<f64>,
}

/// An inversion under way: the images on the device, stepped with [`Explainer::step`].
pub struct Inversion {
    targets: Vec<Target>,
    config: InversionConfig,
    /// `targets × starts` images, target-major, on the plain device.
    images: Tensor<3>,
    /// `[batch, n_neurons]`: ±1 where a batch image's target neuron is, 0 elsewhere.
    selection: Tensor<2>,
    mean: Tensor<3>,
    blur: Option<Tensor<4>>,
    budget: f64,
    steps_done: usize,
}

impl Inversion {
    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    pub fn is_finished(&self) -> bool {
        self.steps_done >= self.config.steps
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }
}

/// `[batch, n_neurons]` with each image's target neuron marked by its direction's sign.
pub(super) fn selection(targets: &[Target], n_neurons: usize, device: &Device) -> Tensor<2> {
    let mut values = vec![0f32; targets.len() * n_neurons];
    for (b, target) in targets.iter().enumerate() {
        values[b * n_neurons + target.neuron] = target.direction.sign();
    }
    Tensor::from_data(
        TensorData::new(values, [targets.len(), n_neurons]),
        &device.clone().without_autodiff(),
    )
}

/// ∂(Σ_b selection[b] · drive[b]) / ∂images: each image's gradient of its target's drive.
pub(super) fn objective_gradient(
    model: &Network,
    images: Tensor<3>,
    selection: &Tensor<2>,
) -> Tensor<3> {
    let images = images.autodiff().require_grad();
    let objective = (model.drive(images.clone()) * selection.clone().autodiff()).sum();
    let grads = objective.backward();
    images
        .grad(&grads)
        .expect("the input images were marked to require gradients")
}

/// A normalised 2-D Gaussian kernel `[1, 1, k, k]` (k = 2⌈2σ⌉ + 1).
fn gaussian_kernel(sigma: f64, device: &Device) -> Tensor<4> {
    let half = (2.0 * sigma).ceil() as i64;
    let k = (2 * half + 1) as usize;
    let mut values: Vec<f32> = (0..k * k)
        .map(|i| {
            let (x, y) = ((i % k) as i64 - half, (i / k) as i64 - half);
            (-((x * x + y * y) as f64) / (2.0 * sigma * sigma)).exp() as f32
        })
        .collect();
    let total: f32 = values.iter().sum();
    values.iter_mut().for_each(|v| *v /= total);
    Tensor::from_data(TensorData::new(values, [1, 1, k, k]), device)
}

/// Per-image Euclidean norm of `[b, h, w]`, as `[b, 1, 1]`.
fn norms(x: Tensor<3>) -> Tensor<3> {
    x.powi_scalar(2).sum_dim(2).sum_dim(1).sqrt()
}

impl Explainer {
    /// Starts inverting `targets`, each from `config.starts` random images at
    /// `config.start_scale` of the budget from the mean image.
    pub fn invert(
        &self,
        targets: Vec<Target>,
        config: InversionConfig,
    ) -> Result<Inversion, ResultsError> {
        config.validate()?;
        let n_neurons = self.dataset.n_neurons;
        if let Some(bad) = targets.iter().find(|t| t.neuron >= n_neurons) {
            return Err(ResultsError::Mismatch(format!(
                "no neuron {} (the network predicts {n_neurons})",
                bad.neuron + 1
            )));
        }
        let plain = self.device.clone().without_autodiff();
        let (h, w) = (self.dataset.height, self.dataset.width);
        let pixels = h * w;
        let budget = self.budget * config.budget_scale;
        let per_image: Vec<Target> = targets
            .iter()
            .flat_map(|&t| std::iter::repeat_n(t, config.starts))
            .collect();
        let [low, high] = self.pixel_range;
        let mut starts = Vec::with_capacity(per_image.len() * pixels);
        for (b, target) in per_image.iter().enumerate() {
            // Each start's own random stream, named by neuron, direction and start: a
            // neuron's result does not depend on which others share its batch (the page
            // inverts a few at a time, `v1p explain` all at once).
            let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
            let direction = u64::from(target.direction == Direction::Suppress);
            rng.set_stream(
                ((target.neuron as u64 * 2 + direction) << 16) + (b % config.starts) as u64,
            );
            let noise: Vec<f64> = (0..pixels)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            let norm = noise.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            starts.extend(noise.iter().zip(&self.mean_image).map(|(v, &m)| {
                let offset = config.start_scale * budget * v / norm;
                (f64::from(m) + offset).clamp(low, high) as f32
            }));
        }
        let batch = per_image.len();
        Ok(Inversion {
            images: Tensor::from_data(TensorData::new(starts, [batch, h, w]), &plain),
            selection: selection(&per_image, n_neurons, &self.device),
            mean: Tensor::from_data(TensorData::new(self.mean_image.clone(), [1, h, w]), &plain),
            blur: (config.smoothness > 0.0).then(|| gaussian_kernel(config.smoothness, &plain)),
            budget,
            targets,
            config,
            steps_done: 0,
        })
    }

    /// Runs up to `n` more gradient steps (nothing is read back).
    pub fn step(&self, job: &mut Inversion, n: usize) {
        let [batch, h, w] = job.images.dims();
        let cfg = &job.config;
        for _ in 0..n {
            if job.is_finished() {
                break;
            }
            let mut gradient = objective_gradient(&self.model, job.images.clone(), &job.selection);
            if let Some(kernel) = &job.blur {
                let pad = (kernel.dims()[2] - 1) / 2;
                let options = ConvOptions::new([1, 1], [pad, pad], [1, 1], 1);
                gradient = conv2d(
                    gradient.reshape([batch, 1, h, w]),
                    kernel.clone(),
                    None,
                    options,
                )
                .reshape([batch, h, w]);
            }
            // A step of fixed length along the (smoothed) gradient, shrinking geometrically:
            // raw gradients differ by orders of magnitude between neurons.
            let progress = job.steps_done as f64 / (cfg.steps.max(2) - 1) as f64;
            let length =
                job.budget * cfg.first_step * (cfg.last_step / cfg.first_step).powf(progress);
            let direction = gradient.clone() / (norms(gradient) + 1e-12);
            let moved = job.images.clone() + direction * length as f32 - job.mean.clone();
            // Back within the budget around the mean image, and within the pixel range.
            let shrink = (norms(moved.clone()) / job.budget as f32).clamp_min(1.0);
            let [low, high] = self.pixel_range;
            job.images = (job.mean.clone() + moved / shrink).clamp(low, high);
            job.steps_done += 1;
        }
    }

    /// Steps, then reads back the mean of the targets' signed drives: the progress figure,
    /// and a synchronisation point so a GPU queue never runs far ahead of the caller.
    pub async fn advance(&self, job: &mut Inversion, n: usize) -> Result<f64, ResultsError> {
        self.step(job, n);
        let plain = self.model.valid();
        let signed = (plain.drive(job.images.clone()) * job.selection.clone()).sum();
        let value = read_back(signed).await?;
        Ok(f64::from(value[0]) / job.selection.dims()[0] as f64)
    }

    /// Reads the images back and picks, per target, the start that went furthest.
    pub async fn finish(&self, job: Inversion) -> Result<Vec<Inverted>, ResultsError> {
        let pixels = self.pixels();
        let starts = job.config.starts;
        let images = read_back(job.images).await?;
        let drives = self.drives(images.clone()).await?;
        let n_neurons = self.dataset.n_neurons;
        let mut results = Vec::with_capacity(job.targets.len());
        for (t, target) in job.targets.iter().enumerate() {
            let sign = target.direction.sign();
            let mut order: Vec<usize> = (t * starts..(t + 1) * starts).collect();
            let drive_of = |b: usize| drives[b * n_neurons + target.neuron];
            order.sort_by(|&a, &b| (sign * drive_of(b)).total_cmp(&(sign * drive_of(a))));
            let image_of = |b: usize| &images[b * pixels..(b + 1) * pixels];
            let centred: Vec<Vec<f32>> = order
                .iter()
                .map(|&b| super::centred(image_of(b), &self.mean_image))
                .collect();
            let mut pairs = Vec::new();
            for i in 0..centred.len() {
                for j in i + 1..centred.len() {
                    pairs.push(super::correlation(&centred[i], &centred[j]));
                }
            }
            let best = order[0];
            let norm = centred[0]
                .iter()
                .map(|&v| f64::from(v).powi(2))
                .sum::<f64>()
                .sqrt();
            let pattern = &centred[0];
            results.push(Inverted {
                neuron: target.neuron,
                direction: target.direction,
                image: image_of(best).to_vec(),
                rate: drive_of(best).max(0.0),
                drive: drive_of(best),
                start_drives: order.iter().map(|&b| drive_of(b)).collect(),
                consistency: if pairs.is_empty() {
                    1.0
                } else {
                    pairs.iter().sum::<f64>() / pairs.len() as f64
                },
                norm_fraction: norm / job.budget.max(1e-12),
                truth_similarity: self.truth.as_ref().map(|truth| {
                    // The suppressive image is compared with the negated filters.
                    let signed: Vec<f32> = pattern.iter().map(|&v| v * sign).collect();
                    super::similarity_to_truth(&signed, &truth[target.neuron].filters)
                }),
            });
        }
        Ok(results)
    }

    /// Inverts `targets` to the end in one call (the native runner, tests).
    pub async fn invert_all(
        &self,
        targets: Vec<Target>,
        config: InversionConfig,
    ) -> Result<Vec<Inverted>, ResultsError> {
        let mut job = self.invert(targets, config)?;
        while !job.is_finished() {
            self.advance(&mut job, 20).await?;
        }
        self.finish(job).await
    }
}
