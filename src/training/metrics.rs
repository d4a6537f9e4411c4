//! Losses and correlations computed on the host, in f64, from one read-back of predictions.

/// Mean squared error over the given images and all neurons (the seed's loss).
pub fn mse(pred: &[f32], target: &[f32], n_neurons: usize, images: &[usize]) -> f64 {
    per_neuron_mse(pred, target, n_neurons, images)
        .iter()
        .sum::<f64>()
        / n_neurons as f64
}

/// Mean squared error of each neuron over the given images.
pub fn per_neuron_mse(
    pred: &[f32],
    target: &[f32],
    n_neurons: usize,
    images: &[usize],
) -> Vec<f64> {
    let mut sums = vec![0.0; n_neurons];
    for &i in images {
        for (neuron, sum) in sums.iter_mut().enumerate() {
            let k = i * n_neurons + neuron;
            *sum += (f64::from(pred[k]) - f64::from(target[k])).powi(2);
        }
    }
    let count = images.len().max(1) as f64;
    sums.iter().map(|s| s / count).collect()
}

/// Pearson r of two series; 0 where either is constant (the seed's NaN → 0).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    if x.is_empty() {
        return 0.0;
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    let r = sxy / (sxx * syy).sqrt();
    if r.is_finite() { r } else { 0.0 }
}

/// Pearson r of every neuron between predicted and measured rates over the given images.
pub fn per_neuron_pearson(
    pred: &[f32],
    target: &[f32],
    n_neurons: usize,
    images: &[usize],
) -> Vec<f64> {
    (0..n_neurons)
        .map(|neuron| {
            let column = |v: &[f32]| -> Vec<f64> {
                images
                    .iter()
                    .map(|&i| f64::from(v[i * n_neurons + neuron]))
                    .collect()
            };
            pearson(&column(pred), &column(target))
        })
        .collect()
}

/// Variance (population) of each neuron's rate over the given images.
pub fn per_neuron_variance(target: &[f32], n_neurons: usize, images: &[usize]) -> Vec<f64> {
    (0..n_neurons)
        .map(|neuron| {
            let values: Vec<f64> = images
                .iter()
                .map(|&i| f64::from(target[i * n_neurons + neuron]))
                .collect();
            let n = values.len().max(1) as f64;
            let mean = values.iter().sum::<f64>() / n;
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n
        })
        .collect()
}

pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_matches_hand_computed_values() {
        // x = 1,2,3,4; y = 2,4,5,9: sxy = 11, sxx = 5, syy = 26 → r = 11 / √130
        let r = pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 5.0, 9.0]);
        assert!((r - 11.0 / 130f64.sqrt()).abs() < 1e-12, "{r}");
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // A constant prediction has no correlation: NaN → 0 as in the seed.
        assert_eq!(pearson(&[0.0, 0.0, 0.0], &[1.0, 2.0, 3.0]), 0.0);
    }

    #[test]
    fn per_neuron_metrics_use_only_the_given_images() {
        // 3 images × 2 neurons, row-major
        let pred = [1.0, 0.0, 2.0, 0.0, 9.0, 9.0];
        let target = [1.0, 1.0, 3.0, 1.0, 0.0, 0.0];
        let images = [0, 1];
        assert_eq!(per_neuron_mse(&pred, &target, 2, &images), vec![0.5, 1.0]);
        assert_eq!(mse(&pred, &target, 2, &images), 0.75);
        let r = per_neuron_pearson(&pred, &target, 2, &images);
        assert!((r[0] - 1.0).abs() < 1e-12);
        assert_eq!(r[1], 0.0);
        assert_eq!(per_neuron_variance(&target, 2, &images), vec![1.0, 0.0]);
    }
}
