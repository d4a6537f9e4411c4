//! The Gabor-energy baseline's fit: ridge regression of every neuron's rate on the Gabor
//! bank's features, the ridge chosen per neuron on the early-stop images — the classical
//! model the paper compared its CNN with. Closed form, no training loop.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

use super::evaluation::single_evaluation_report;
use super::{TrainError, TrainingConfig, TrainingReport};
use crate::config::ConfigError;
use crate::data::Dataset;
use crate::model::ModelFamily;

/// Ridge strengths tried, as multiples of the mean eigenvalue of the training Gram matrix:
/// 10^-3 … 10^3 in half-decades.
fn ridge_grid(mean_eigenvalue: f64) -> Vec<f64> {
    (0..=12)
        .map(|k| mean_eigenvalue * 10f64.powf(k as f64 / 2.0 - 3.0))
        .collect()
}

/// Fits the Gabor-energy ridge model on the split the seed's trainer would draw from the
/// same seed, and reports it as a run whose best (only) evaluation is the fit.
pub fn fit_gabor_ridge(
    config: TrainingConfig,
    dataset: &Dataset,
) -> Result<TrainingReport, TrainError> {
    if config.model.family != ModelFamily::Gabor {
        return Err(ConfigError::new("model", "the ridge fit is the gabor model's").into());
    }
    config.validate(dataset.n_images)?;
    let bank = config.model.gabor.bank(dataset.height, dataset.width)?;
    let split = config.split(dataset.n_images)?;
    let n_features = bank.n_features();
    let features = DMatrix::from_row_slice(
        dataset.n_images,
        n_features,
        &bank.features(&dataset.images),
    );
    let rates = DMatrix::from_row_slice(
        dataset.n_images,
        dataset.n_neurons,
        &dataset
            .activity
            .iter()
            .map(|&r| f64::from(r))
            .collect::<Vec<_>>(),
    );
    let features = standardise(features, &split.train);
    let (_, paths) = ridge_path(&features, &rates, &split.train);

    // Each neuron keeps the ridge whose (non-negative) prediction has the lowest early-stop
    // error.
    let n = dataset.n_neurons;
    let mut chosen = vec![0usize; n];
    for (neuron, pick) in chosen.iter_mut().enumerate() {
        let error = |path: &DMatrix<f64>| -> f64 {
            split
                .early_stop
                .iter()
                .map(|&i| (path[(i, neuron)].max(0.0) - rates[(i, neuron)]).powi(2))
                .sum()
        };
        *pick = (0..paths.len())
            .min_by(|&a, &b| error(&paths[a]).total_cmp(&error(&paths[b])))
            .unwrap_or(0);
    }
    let mut predicted = vec![0f32; dataset.n_images * n];
    for i in 0..dataset.n_images {
        for (neuron, &k) in chosen.iter().enumerate() {
            // Rates cannot be negative: clipped at 0, as the CNN's ReLU output.
            predicted[i * n + neuron] = paths[k][(i, neuron)].max(0.0) as f32;
        }
    }
    let steps_done = config.max_steps;
    Ok(single_evaluation_report(
        &predicted,
        dataset,
        config,
        split,
        0,
        steps_done,
        n_features * n + n,
    ))
}

/// Every column shifted and scaled to mean 0, sd 1 over the training rows (a constant
/// column becomes 0), so that one ridge penalises every feature alike.
fn standardise(mut x: DMatrix<f64>, train: &[usize]) -> DMatrix<f64> {
    let count = train.len().max(1) as f64;
    for mut column in x.column_iter_mut() {
        let mean = train.iter().map(|&i| column[i]).sum::<f64>() / count;
        let var = train
            .iter()
            .map(|&i| (column[i] - mean).powi(2))
            .sum::<f64>()
            / count;
        let scale = if var > 1e-12 { var.sqrt().recip() } else { 0.0 };
        column.iter_mut().for_each(|v| *v = (*v - mean) * scale);
    }
    x
}

/// Ridge regression of `y` on `x` (with an intercept: the training mean of `y`), fitted on
/// the `train` rows for every ridge of the grid, predicting every row. Solved in the dual
/// (n_train × n_train Gram matrix, one eigendecomposition for the whole grid) since the
/// features far outnumber the training images. Returns the grid and one prediction matrix
/// [rows × outputs] per ridge.
pub(crate) fn ridge_path(
    x: &DMatrix<f64>,
    y: &DMatrix<f64>,
    train: &[usize],
) -> (Vec<f64>, Vec<DMatrix<f64>>) {
    let x_train = x.select_rows(train);
    let y_train = y.select_rows(train);
    let y_mean = y_train.row_mean();
    let mut y_centred = y_train;
    for mut row in y_centred.row_iter_mut() {
        row -= &y_mean;
    }
    let gram = &x_train * x_train.transpose();
    let eigen = SymmetricEigen::new(gram);
    let cross = x * x_train.transpose();
    let projected = eigen.eigenvectors.transpose() * &y_centred;
    let mean_eigenvalue = eigen.eigenvalues.mean().max(1e-12);
    let lambdas = ridge_grid(mean_eigenvalue);
    let paths = lambdas
        .iter()
        .map(|&lambda| {
            let shrink = DVector::from_iterator(
                eigen.eigenvalues.len(),
                eigen
                    .eigenvalues
                    .iter()
                    .map(|&e| 1.0 / (e.max(0.0) + lambda)),
            );
            let mut scaled = projected.clone();
            for (mut row, s) in scaled.row_iter_mut().zip(shrink.iter()) {
                row *= *s;
            }
            let alpha = &eigen.eigenvectors * scaled;
            let mut prediction = &cross * alpha;
            for mut row in prediction.row_iter_mut() {
                row += &y_mean;
            }
            prediction
        })
        .collect();
    (lambdas, paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn the_dual_path_matches_the_closed_form_primal_solution() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (rows, features, outputs) = (40, 12, 3);
        let x = DMatrix::from_fn(rows, features, |_, _| rng.random::<f64>() - 0.5);
        let y = DMatrix::from_fn(rows, outputs, |_, _| rng.random::<f64>());
        let train: Vec<usize> = (0..25).collect();
        // The primal solution with an intercept: w = (XcᵀXc + λI)⁻¹ Xcᵀ yc, with X's columns
        // centred on the training rows (as `standardise` leaves them), ŷ = x w + ȳ.
        let x_mean = x.select_rows(&train).row_mean();
        let mut x = x;
        for mut row in x.row_iter_mut() {
            row -= &x_mean;
        }
        let (lambdas, paths) = ridge_path(&x, &y, &train);
        let x_train = x.select_rows(&train);
        let y_train = y.select_rows(&train);
        let y_mean = y_train.row_mean();
        let mut yc = y_train;
        for mut row in yc.row_iter_mut() {
            row -= &y_mean;
        }
        assert_eq!(lambdas.len(), paths.len());
        for (lambda, path) in lambdas.iter().zip(&paths) {
            let a =
                x_train.transpose() * &x_train + DMatrix::identity(features, features) * *lambda;
            let w = a.cholesky().unwrap().solve(&(x_train.transpose() * &yc));
            let mut expected = &x * w;
            for mut row in expected.row_iter_mut() {
                row += &y_mean;
            }
            let difference = (path - &expected).abs().max();
            assert!(
                difference < 1e-8,
                "λ = {lambda}: largest difference {difference}"
            );
        }
    }
}
