//! The Gabor-energy model's fixed front end: a bank of Gabor filters tiling the image
//! (positions × orientations × spatial frequencies, even and odd phase), whose responses and
//! phase-invariant energies are the features a per-neuron ridge regression reads
//! ([`crate::training::ridge`]). Nothing here is learned.

use std::f64::consts::PI;

use burn::prelude::*;

use crate::config::ConfigError;

/// The bank's layout and the ridge's search.
#[derive(Config, Debug, PartialEq)]
pub struct GaborConfig {
    /// Orientations, evenly spaced over 180°.
    #[config(default = 8)]
    pub orientations: usize,
    /// Spatial frequencies, an octave apart from the finest.
    #[config(default = 3)]
    pub frequencies: usize,
    /// Wavelength of the finest Gabor, in pixels.
    #[config(default = 4.0)]
    pub min_wavelength: f64,
    /// Filter centres per side of the image (a grid of positions × positions).
    #[config(default = 7)]
    pub positions: usize,
}

impl GaborConfig {
    /// Every setting of the bank against its range (the flag table's).
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::config::flags::check_part(self, &["model", "gabor"], super::ModelFamily::Gabor)
    }

    /// Features per image: even, odd and energy of every filter pair.
    pub fn n_features(&self) -> usize {
        3 * self.positions * self.positions * self.orientations * self.frequencies
    }

    /// The even and odd filters of every (position, orientation, frequency), for images of
    /// `height` × `width` pixels.
    pub fn bank(&self, height: usize, width: usize) -> Result<GaborBank, ConfigError> {
        self.validate()?;
        let mut filters = Vec::new();
        let pixels = height * width;
        for f in 0..self.frequencies {
            let wavelength = self.min_wavelength * 2f64.powi(f as i32);
            // An envelope of about one wavelength: a V1-like bandwidth of ~1.5 octaves.
            let sigma = 0.5 * wavelength;
            for o in 0..self.orientations {
                let theta = PI * o as f64 / self.orientations as f64;
                let (sin, cos) = theta.sin_cos();
                for py in 0..self.positions {
                    for px in 0..self.positions {
                        let cy = (py as f64 + 0.5) * height as f64 / self.positions as f64 - 0.5;
                        let cx = (px as f64 + 0.5) * width as f64 / self.positions as f64 - 0.5;
                        let mut even = vec![0.0; pixels];
                        let mut odd = vec![0.0; pixels];
                        for y in 0..height {
                            for x in 0..width {
                                let (dy, dx) = (y as f64 - cy, x as f64 - cx);
                                let along = dx * cos + dy * sin;
                                let envelope = (-(dx * dx + dy * dy) / (2.0 * sigma * sigma)).exp();
                                let phase = 2.0 * PI * along / wavelength;
                                even[y * width + x] = envelope * phase.cos();
                                odd[y * width + x] = envelope * phase.sin();
                            }
                        }
                        // No response to uniform brightness: the even filter's DC removed.
                        remove_mean(&mut even);
                        normalise(&mut even);
                        normalise(&mut odd);
                        filters.push((even, odd));
                    }
                }
            }
        }
        Ok(GaborBank { pixels, filters })
    }
}

fn remove_mean(values: &mut [f64]) {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values.iter_mut().for_each(|v| *v -= mean);
}

fn normalise(values: &mut [f64]) {
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > 0.0 {
        values.iter_mut().for_each(|v| *v /= norm);
    }
}

/// Quadrature pairs of unit-norm Gabor filters.
pub struct GaborBank {
    pixels: usize,
    filters: Vec<(Vec<f64>, Vec<f64>)>,
}

impl GaborBank {
    /// Features of every image ([n_images × pixels], raw 0…255 pixel values): for each
    /// filter pair its even response, odd response and energy √(even² + odd²), computed on
    /// pixels mapped to −1…1. Row-major [n_images × 3·pairs].
    pub fn features(&self, images: &[f32]) -> Vec<f64> {
        let n_images = images.len() / self.pixels;
        let mut out = Vec::with_capacity(n_images * 3 * self.filters.len());
        for image in images.chunks_exact(self.pixels) {
            let centred: Vec<f64> = image
                .iter()
                .map(|&p| (f64::from(p) - 127.5) / 127.5)
                .collect();
            let dot =
                |filter: &[f64]| -> f64 { filter.iter().zip(&centred).map(|(f, p)| f * p).sum() };
            for (even, odd) in &self.filters {
                let (e, o) = (dot(even), dot(odd));
                out.extend([e, o, (e * e + o * o).sqrt()]);
            }
        }
        out
    }

    pub fn n_features(&self) -> usize {
        3 * self.filters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grating_excites_the_matching_orientation_most() {
        let config = GaborConfig::new().with_positions(1).with_frequencies(1);
        let bank = config.bank(33, 33).unwrap();
        assert_eq!(bank.n_features(), config.n_features());
        // A vertical grating (varies along x) of the bank's wavelength: orientation 0.
        let image: Vec<f32> = (0..33 * 33)
            .map(|i| {
                let x = (i % 33) as f64;
                (127.5 + 100.0 * (2.0 * PI * x / 4.0).cos()) as f32
            })
            .collect();
        let features = bank.features(&image);
        let energies: Vec<f64> = features.chunks(3).map(|c| c[2]).collect();
        let best = energies
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(best, 0, "energies by orientation: {energies:?}");
        assert!(energies[0] > 5.0 * energies[4], "{energies:?}");
    }

    #[test]
    fn uniform_images_give_no_even_response_and_bad_flags_are_named() {
        let bank = GaborConfig::new().bank(16, 16).unwrap();
        let grey = vec![200.0f32; 16 * 16];
        let features = bank.features(&grey);
        assert!(features.chunks(3).all(|c| c[0].abs() < 1e-9));
        let bad = GaborConfig::new().with_min_wavelength(1.0);
        assert_eq!(bad.validate().unwrap_err().flag, "gabor_min_wavelength");
        let bad = GaborConfig::new().with_orientations(0);
        assert_eq!(bad.validate().unwrap_err().flag, "gabor_orientations");
    }
}
