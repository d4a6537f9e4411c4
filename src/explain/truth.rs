//! Comparing what inversion recovers with the true filters of the simulated demo session:
//! the check that no real recording allows.

use crate::data::Dataset;
use crate::data::simulate::GroundTruth;
use crate::results::ResultsError;

/// One simulated neuron's type and true filters (see `SimulatedNeuron::true_filters`).
#[derive(Clone, Debug)]
pub(super) struct TrueNeuron {
    pub cell_type: String,
    pub filters: Vec<Vec<f64>>,
}

pub(super) fn true_neurons(
    truth: &GroundTruth,
    dataset: &Dataset,
) -> Result<Vec<TrueNeuron>, ResultsError> {
    let size = truth.config.size;
    if truth.neurons.len() != dataset.n_neurons || [size, size] != [dataset.height, dataset.width] {
        return Err(ResultsError::Mismatch(format!(
            "the ground truth describes {} neurons and {size}×{size} images, but the dataset \
             has {} neurons and {}×{} images",
            truth.neurons.len(),
            dataset.n_neurons,
            dataset.height,
            dataset.width
        )));
    }
    Ok(truth
        .neurons
        .iter()
        .map(|n| TrueNeuron {
            cell_type: serde_json::to_value(n.cell_type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            filters: n.true_filters(size),
        })
        .collect())
}

fn centred(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let values: Vec<f64> = values.collect();
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    values.iter().map(|v| v - mean).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// How much of a recovered pattern lies along the true filters: the cosine between the
/// (mean-removed) pattern and its projection on their span. With one filter (simple and
/// centre-surround cells) it is the signed correlation, so an inverted pattern counts as
/// wrong; with several (a complex cell's quadrature pair, a texture cell's detectors) it is
/// the unsigned fraction, since any phase of those drives the cell.
pub fn similarity_to_truth(pattern: &[f32], filters: &[Vec<f64>]) -> f64 {
    let p = centred(pattern.iter().map(|&v| f64::from(v)));
    let p_norm = dot(&p, &p).sqrt();
    if p_norm == 0.0 {
        return 0.0;
    }
    // Gram–Schmidt: an orthonormal basis of the filters' span.
    let mut basis: Vec<Vec<f64>> = Vec::new();
    for filter in filters {
        let mut v = centred(filter.iter().copied());
        for b in &basis {
            let along = dot(&v, b);
            v.iter_mut().zip(b).for_each(|(x, y)| *x -= along * y);
        }
        let norm = dot(&v, &v).sqrt();
        if norm > 1e-9 {
            basis.push(v.iter().map(|x| x / norm).collect());
        }
    }
    match basis.as_slice() {
        [] => 0.0,
        [only] => dot(&p, only) / p_norm,
        many => many.iter().map(|b| dot(&p, b).powi(2)).sum::<f64>().sqrt() / p_norm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_filter_gives_the_signed_correlation() {
        let filter = vec![1.0, -1.0, 2.0, 0.0];
        let same: Vec<f32> = filter.iter().map(|&v| (3.0 * v + 7.0) as f32).collect();
        let negated: Vec<f32> = filter.iter().map(|&v| (-v) as f32).collect();
        assert!((similarity_to_truth(&same, std::slice::from_ref(&filter)) - 1.0).abs() < 1e-9);
        assert!((similarity_to_truth(&negated, &[filter]) + 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_quadrature_pair_accepts_any_phase() {
        let n = 16;
        let wave = |phase: f64| -> Vec<f64> {
            (0..n)
                .map(|i| (2.0 * std::f64::consts::PI * i as f64 / n as f64 + phase).cos())
                .collect()
        };
        let pair = [wave(0.0), wave(std::f64::consts::FRAC_PI_2)];
        for phase in [0.3, 1.0, 2.5, 4.0] {
            let pattern: Vec<f32> = wave(phase).iter().map(|&v| v as f32).collect();
            assert!((similarity_to_truth(&pattern, &pair) - 1.0).abs() < 1e-6);
        }
        // A pattern orthogonal to both scores 0.
        let other: Vec<f32> = (0..n)
            .map(|i| (4.0 * std::f64::consts::PI * i as f64 / n as f64).cos() as f32)
            .collect();
        assert!(similarity_to_truth(&other, &pair).abs() < 1e-6);
    }
}
