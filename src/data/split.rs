use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Which images train the network, which pick the best network (early stop), and which
/// measure it (evaluation). Index lists refer to the dataset's image order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub train: Vec<usize>,
    pub eval: Vec<usize>,
    pub early_stop: Vec<usize>,
}

/// Set sizes as the seed computes them: train = ceil(n·train_frac), early stop =
/// floor(n·earlystop_frac), evaluation = the rest (270 images → 180 / 52 / 38).
pub fn split_sizes(
    n_images: usize,
    trainingset_frac: f64,
    earlystop_frac: f64,
) -> Result<(usize, usize, usize), ConfigError> {
    for (flag, frac) in [
        ("trainingset_frac", trainingset_frac),
        ("earlystop_frac", earlystop_frac),
    ] {
        if !(frac > 0.0 && frac < 1.0) {
            return Err(ConfigError::new(
                flag,
                format!("must be a fraction between 0 and 1 (exclusive), got {frac}"),
            ));
        }
    }
    // A hair of tolerance so that 270 × (2/3) counts as 180, not 181, whatever the rounding.
    let n = n_images as f64;
    let train = (n * trainingset_frac - 1e-9).ceil().max(0.0) as usize;
    let early_stop = (n * earlystop_frac + 1e-9).floor() as usize;
    if train + early_stop >= n_images {
        return Err(ConfigError::new(
            "trainingset_frac",
            format!(
                "training ({train}) and early-stop ({early_stop}) images leave none of the \
                 {n_images} images for evaluation; lower trainingset_frac or earlystop_frac"
            ),
        ));
    }
    if early_stop == 0 {
        return Err(ConfigError::new(
            "earlystop_frac",
            format!("leaves no early-stop image out of {n_images}; raise it"),
        ));
    }
    Ok((train, n_images - train - early_stop, early_stop))
}

impl Split {
    /// A random permutation of the images from `seed`: train first, then evaluation, then
    /// early stop last, as the seed orders them.
    pub fn random(
        n_images: usize,
        trainingset_frac: f64,
        earlystop_frac: f64,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        let (train, eval, _) = split_sizes(n_images, trainingset_frac, earlystop_frac)?;
        let mut order: Vec<usize> = (0..n_images).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        Ok(Split {
            train: order[..train].to_vec(),
            eval: order[train..train + eval].to_vec(),
            early_stop: order[train + eval..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_sizes_for_270_images() {
        assert_eq!(
            split_sizes(270, 2.0 / 3.0, 1.0 / 7.0).unwrap(),
            (180, 52, 38)
        );
    }

    #[test]
    fn split_is_a_permutation_in_seed_order() {
        let split = Split::random(270, 2.0 / 3.0, 1.0 / 7.0, 7).unwrap();
        assert_eq!(
            (split.train.len(), split.eval.len(), split.early_stop.len()),
            (180, 52, 38)
        );
        let mut all: Vec<usize> =
            [&split.train[..], &split.eval[..], &split.early_stop[..]].concat();
        all.sort_unstable();
        assert_eq!(all, (0..270).collect::<Vec<_>>());
        assert_eq!(split, Split::random(270, 2.0 / 3.0, 1.0 / 7.0, 7).unwrap());
        assert_ne!(split, Split::random(270, 2.0 / 3.0, 1.0 / 7.0, 8).unwrap());
    }

    #[test]
    fn fractions_that_empty_a_set_are_refused_by_name() {
        assert_eq!(
            split_sizes(270, 0.9, 0.2).unwrap_err().flag,
            "trainingset_frac"
        );
        assert_eq!(split_sizes(5, 0.5, 0.1).unwrap_err().flag, "earlystop_frac");
        assert_eq!(
            split_sizes(270, 1.5, 0.1).unwrap_err().flag,
            "trainingset_frac"
        );
        assert_eq!(
            split_sizes(270, 0.5, f64::NAN).unwrap_err().flag,
            "earlystop_frac"
        );
    }
}
