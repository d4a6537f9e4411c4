//! The seed's initialisation (TensorFlow's `truncated_normal`), drawn on the host.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// `n` draws from N(0, std²), redrawing any beyond two standard deviations, as
/// `tf.truncated_normal` does.
pub fn truncated_normal(rng: &mut impl Rng, std: f64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            loop {
                let z: f64 = StandardNormal.sample(rng);
                if z.abs() <= 2.0 {
                    break (z * std) as f32;
                }
            }
        })
        .collect()
}

pub fn param<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Param<Tensor<D>> {
    Param::from_data(TensorData::new(values, shape), device)
}

/// A dense layer: W [fan_in, fan_out] ~ truncated normal(σ = 0.1/√fan_in), b = 0.
pub fn dense(rng: &mut impl Rng, fan_in: usize, fan_out: usize, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(fan_in, fan_out).init(device);
    let std = 0.1 / (fan_in as f64).sqrt();
    linear.weight = param(
        truncated_normal(rng, std, fan_in * fan_out),
        [fan_in, fan_out],
        device,
    );
    linear.bias = Some(param(vec![0.0; fan_out], [fan_out], device));
    linear
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn truncated_normal_stays_within_two_sigma_with_the_right_spread() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let values = truncated_normal(&mut rng, 0.1, 20_000);
        assert!(values.iter().all(|v| v.abs() <= 0.2 + 1e-6));
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        let sd =
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / values.len() as f32).sqrt();
        assert!(mean.abs() < 0.003, "mean {mean}");
        // A normal truncated at ±2σ keeps 0.88σ of spread.
        assert!((sd - 0.088).abs() < 0.003, "sd {sd}");
    }
}
