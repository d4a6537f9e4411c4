use serde::{Deserialize, Serialize};

use super::mat::{DataError, FileError};

/// Stimuli and responses of one recording (or several recordings of the same images).
///
/// Stored row-major, as numpy would index them: `images[i, row, col]`, `activity[i, neuron]`.
/// Pixels keep their raw values (0..255 for the seed's files): the seed does not normalise.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// File names the data came from, in order.
    pub sources: Vec<String>,
    pub n_images: usize,
    pub height: usize,
    pub width: usize,
    pub n_neurons: usize,
    /// `n_images * height * width` pixel values.
    pub images: Vec<f32>,
    /// `n_images * n_neurons` mean spike counts.
    pub activity: Vec<f32>,
}

/// What the page and `v1p inspect` show about a dataset.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DatasetSummary {
    pub sources: Vec<String>,
    pub n_images: usize,
    pub height: usize,
    pub width: usize,
    pub n_neurons: usize,
    pub mean_rate: f64,
    pub max_rate: f64,
    pub pixel_mean: f64,
    pub pixel_sd: f64,
    pub pixel_min: f64,
    pub pixel_max: f64,
}

impl Dataset {
    pub fn image(&self, index: usize) -> &[f32] {
        let size = self.height * self.width;
        &self.images[index * size..(index + 1) * size]
    }

    pub fn rate(&self, image: usize, neuron: usize) -> f32 {
        self.activity[image * self.n_neurons + neuron]
    }

    /// Mean rate of every neuron over the given images.
    pub fn mean_rates(&self, images: &[usize]) -> Vec<f64> {
        let mut means = vec![0.0; self.n_neurons];
        for &i in images {
            for (neuron, mean) in means.iter_mut().enumerate() {
                *mean += f64::from(self.rate(i, neuron));
            }
        }
        let count = images.len().max(1) as f64;
        means.iter_mut().for_each(|m| *m /= count);
        means
    }

    pub fn summary(&self) -> DatasetSummary {
        let (pixel_mean, pixel_sd) = mean_sd(&self.images);
        let (mean_rate, _) = mean_sd(&self.activity);
        let fold = |init: f32, f: fn(f32, f32) -> f32, v: &[f32]| v.iter().copied().fold(init, f);
        DatasetSummary {
            sources: self.sources.clone(),
            n_images: self.n_images,
            height: self.height,
            width: self.width,
            n_neurons: self.n_neurons,
            mean_rate,
            max_rate: f64::from(fold(f32::MIN, f32::max, &self.activity)),
            pixel_mean,
            pixel_sd,
            pixel_min: f64::from(fold(f32::MAX, f32::min, &self.images)),
            pixel_max: f64::from(fold(f32::MIN, f32::max, &self.images)),
        }
    }
}

fn mean_sd(values: &[f32]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

/// Concatenates the neurons of recordings made with the same images.
pub fn combine(datasets: Vec<Dataset>) -> Result<Dataset, FileError> {
    let mut iter = datasets.into_iter();
    let Some(mut combined) = iter.next() else {
        return Err(FileError {
            file: String::new(),
            error: DataError::NoFiles,
        });
    };
    for next in iter {
        let file = next.sources.join(", ");
        let same_shape = (next.n_images, next.height, next.width)
            == (combined.n_images, combined.height, combined.width);
        if !same_shape || next.images != combined.images {
            return Err(FileError {
                file,
                error: DataError::DifferentImages {
                    first: combined.sources[0].clone(),
                },
            });
        }
        let n_neurons = combined.n_neurons + next.n_neurons;
        let mut activity = Vec::with_capacity(combined.n_images * n_neurons);
        for i in 0..combined.n_images {
            activity.extend_from_slice(
                &combined.activity[i * combined.n_neurons..(i + 1) * combined.n_neurons],
            );
            activity
                .extend_from_slice(&next.activity[i * next.n_neurons..(i + 1) * next.n_neurons]);
        }
        combined.activity = activity;
        combined.n_neurons = n_neurons;
        combined.sources.extend(next.sources);
    }
    Ok(combined)
}
