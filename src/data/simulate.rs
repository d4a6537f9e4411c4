//! A simulated V1 recording session whose answers are known: natural-like stimuli
//! (dead leaves), a population of model neurons of known types, and Poisson trial noise —
//! written in exactly the seed's file format.

use std::f64::consts::PI;

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};
use serde::{Deserialize, Serialize};

use super::Dataset;

/// What to simulate; the defaults give a session shaped like the seed's files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulationConfig {
    pub seed: u64,
    pub n_images: usize,
    pub size: usize,
    pub n_neurons: usize,
    /// Trials averaged per image (the seed's files: 20).
    pub trials: usize,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            seed: 2017,
            n_images: 270,
            size: 33,
            n_neurons: 40,
            trials: 20,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellType {
    /// Gabor filter, half-wave rectified: linear in the image, one phase.
    Simple,
    /// Energy of a quadrature pair of Gabors: phase-invariant.
    Complex,
    /// Difference of Gaussians (on- or off-centre), rectified.
    CentreSurround,
    /// Oriented energy pooled over a large region, divided by the local contrast:
    /// texture-like and normalised, which no single filter explains.
    NormalisedTexture,
}

/// One model neuron: its type, filter parameters, and what the trial noise allows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulatedNeuron {
    pub cell_type: CellType,
    /// Receptive-field centre (column, row) in pixels.
    pub centre: [f64; 2],
    /// Gaussian envelope σ (pixels); for centre-surround, the centre's σ.
    pub sigma: f64,
    /// Preferred orientation (radians) where oriented.
    pub orientation: f64,
    /// Spatial frequency (cycles per pixel) where oriented.
    pub frequency: f64,
    pub phase: f64,
    /// +1 on-centre / -1 off-centre for centre-surround cells.
    pub polarity: f64,
    /// The noise-free mean rate (spikes per 50 ms bin) for every image.
    pub true_rate: Vec<f64>,
    /// Best Pearson r any model can reach against the trial-averaged rate, given Poisson
    /// noise: √(var(true) / (var(true) + mean(true)/trials)).
    pub r_ceiling: f64,
}

/// The session and its ground truth.
pub struct Simulation {
    pub dataset: Dataset,
    pub neurons: Vec<SimulatedNeuron>,
    pub config: SimulationConfig,
}

/// The ground-truth file written beside the `.mat`.
#[derive(Serialize, Deserialize)]
pub struct GroundTruth {
    pub config: SimulationConfig,
    pub description: String,
    pub neurons: Vec<SimulatedNeuron>,
}

impl GroundTruth {
    /// Reads a `…-truth.json` file's text; says what is wrong in words.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("not a ground-truth file ({e})"))
    }
}

pub fn simulate(config: &SimulationConfig) -> Simulation {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let size = config.size;
    let images: Vec<Vec<f64>> = (0..config.n_images)
        .map(|_| dead_leaves(&mut rng, size))
        .collect();
    let images = normalise_to_seed_statistics(images);

    let mut neurons = Vec::new();
    let mut activity = vec![0f32; config.n_images * config.n_neurons];
    for index in 0..config.n_neurons {
        let cell_type = match index % 10 {
            0..=3 => CellType::Simple,
            4..=6 => CellType::Complex,
            7 | 8 => CellType::CentreSurround,
            _ => CellType::NormalisedTexture,
        };
        let mut neuron = random_neuron(&mut rng, cell_type, size);
        let drive: Vec<f64> = images
            .iter()
            .map(|img| response(&neuron, img, size))
            .collect();
        neuron.true_rate = drive_to_rate(&mut rng, &drive);
        let mean = neuron.true_rate.iter().sum::<f64>() / config.n_images as f64;
        let var = neuron
            .true_rate
            .iter()
            .map(|r| (r - mean).powi(2))
            .sum::<f64>()
            / config.n_images as f64;
        neuron.r_ceiling = (var / (var + mean / config.trials as f64)).sqrt();
        for (i, &rate) in neuron.true_rate.iter().enumerate() {
            let spikes: f64 = (0..config.trials)
                .map(|_| match Poisson::new(rate) {
                    Ok(poisson) => poisson.sample(&mut rng),
                    Err(_) => 0.0, // rate 0
                })
                .sum();
            activity[i * config.n_neurons + index] = (spikes / config.trials as f64) as f32;
        }
        neurons.push(neuron);
    }
    let pixels = images.iter().flatten().map(|&p| p as f32).collect();
    Simulation {
        dataset: Dataset {
            sources: vec![format!("simulated-v1-seed{}.mat", config.seed)],
            n_images: config.n_images,
            height: size,
            width: size,
            n_neurons: config.n_neurons,
            images: pixels,
            activity,
        },
        neurons,
        config: config.clone(),
    }
}

/// Dead leaves: opaque discs of random grey, radii from a power law (p(r) ∝ r⁻³), dropped
/// until the image is covered — the 1/f spectrum and sharp occluding edges of natural scenes.
fn dead_leaves(rng: &mut impl Rng, size: usize) -> Vec<f64> {
    let mut image = vec![f64::NAN; size * size];
    let (r_min, r_max) = (1.0f64, size as f64 * 0.6);
    let mut uncovered = size * size;
    let mut drops = 0;
    // Leaves fall front to back: a pixel keeps the first leaf that covers it.
    while uncovered > 0 && drops < 5000 {
        drops += 1;
        // Inverse CDF of p(r) ∝ r⁻³ on [r_min, r_max].
        let u: f64 = rng.random();
        let radius = (r_min.powi(-2) - u * (r_min.powi(-2) - r_max.powi(-2))).powf(-0.5);
        let cx = rng.random::<f64>() * (size as f64 + 2.0 * radius) - radius;
        let cy = rng.random::<f64>() * (size as f64 + 2.0 * radius) - radius;
        // Normally distributed greys: after scaling, a few leaves reach black and white.
        let grey: f64 = StandardNormal.sample(rng);
        for y in 0..size {
            for x in 0..size {
                let pixel = &mut image[y * size + x];
                if pixel.is_nan()
                    && (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2) <= radius * radius
                {
                    *pixel = grey;
                    uncovered -= 1;
                }
            }
        }
    }
    image
        .iter()
        .map(|p| if p.is_nan() { 0.0 } else { *p })
        .collect()
}

/// Pixel mean ≈ 117 and sd ≈ 50 over the whole set, as the real files; stored as uint8.
fn normalise_to_seed_statistics(images: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let all: Vec<f64> = images.iter().flatten().copied().collect();
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    let sd = (all.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / all.len() as f64).sqrt();
    images
        .into_iter()
        .map(|img| {
            img.into_iter()
                .map(|p| (117.0 + 50.0 * (p - mean) / sd).round().clamp(0.0, 255.0))
                .collect()
        })
        .collect()
}

fn random_neuron(rng: &mut impl Rng, cell_type: CellType, size: usize) -> SimulatedNeuron {
    let mid = size as f64 / 2.0;
    let spread = size as f64 * 0.06;
    let mut uniform = |lo: f64, hi: f64| lo + (hi - lo) * rng.random::<f64>();
    let centre = [
        mid + uniform(-spread, spread),
        mid + uniform(-spread, spread),
    ];
    let sigma = match cell_type {
        CellType::NormalisedTexture => uniform(5.0, 8.0),
        CellType::CentreSurround => uniform(1.2, 2.5),
        _ => uniform(2.0, 4.5),
    };
    SimulatedNeuron {
        cell_type,
        centre,
        sigma,
        orientation: uniform(0.0, PI),
        frequency: uniform(0.05, 0.14),
        phase: uniform(0.0, 2.0 * PI),
        polarity: if uniform(0.0, 1.0) < 0.5 { 1.0 } else { -1.0 },
        true_rate: Vec::new(),
        r_ceiling: 0.0,
    }
}

fn gabor(n: &SimulatedNeuron, x: f64, y: f64, phase: f64, orientation: f64) -> f64 {
    let (dx, dy) = (x - n.centre[0], y - n.centre[1]);
    let along = dx * orientation.cos() + dy * orientation.sin();
    let envelope = (-(dx * dx + dy * dy) / (2.0 * n.sigma * n.sigma)).exp();
    envelope * (2.0 * PI * n.frequency * along + phase).cos()
}

fn difference_of_gaussians(n: &SimulatedNeuron, x: f64, y: f64) -> f64 {
    let d2 = (x - n.centre[0]).powi(2) + (y - n.centre[1]).powi(2);
    let (sc, ss) = (n.sigma, n.sigma * 2.5);
    (-d2 / (2.0 * sc * sc)).exp() / (sc * sc) - (-d2 / (2.0 * ss * ss)).exp() / (ss * ss)
}

/// Where the texture cell's small energy detectors sit, relative to its centre.
const TEXTURE_OFFSETS: [(f64, f64); 5] = [
    (-3.0, -3.0),
    (3.0, -3.0),
    (-3.0, 3.0),
    (3.0, 3.0),
    (0.0, 0.0),
];

fn texture_detector(n: &SimulatedNeuron, offset: (f64, f64)) -> SimulatedNeuron {
    SimulatedNeuron {
        centre: [n.centre[0] + offset.0, n.centre[1] + offset.1],
        sigma: 1.5,
        frequency: 0.2,
        ..n.clone()
    }
}

impl SimulatedNeuron {
    /// The image patterns this neuron's drive is built from, as `size`×`size` row-major
    /// images: the signed filter of a simple (its Gabor) or centre-surround cell (its
    /// difference of Gaussians times its polarity); the quadrature pair of a complex cell;
    /// the preferred-orientation pairs of a texture cell's detectors. A recovered pattern is
    /// compared with their span (see `explain::similarity_to_truth`).
    pub fn true_filters(&self, size: usize) -> Vec<Vec<f64>> {
        let render = |f: &dyn Fn(f64, f64) -> f64| -> Vec<f64> {
            (0..size * size)
                .map(|i| f((i % size) as f64, (i / size) as f64))
                .collect()
        };
        let quadrature = |n: &SimulatedNeuron| {
            [0.0, PI / 2.0].map(|phase| render(&|x, y| gabor(n, x, y, phase, n.orientation)))
        };
        match self.cell_type {
            CellType::Simple => vec![render(&|x, y| {
                gabor(self, x, y, self.phase, self.orientation)
            })],
            CellType::CentreSurround => {
                vec![render(&|x, y| {
                    self.polarity * difference_of_gaussians(self, x, y)
                })]
            }
            CellType::Complex => quadrature(self).to_vec(),
            CellType::NormalisedTexture => TEXTURE_OFFSETS
                .iter()
                .flat_map(|&offset| quadrature(&texture_detector(self, offset)))
                .collect(),
        }
    }
}

/// The neuron's drive for one image (pixels centred on the mean grey).
fn response(n: &SimulatedNeuron, image: &[f64], size: usize) -> f64 {
    let dot = |filter: &dyn Fn(f64, f64) -> f64| -> f64 {
        let mut sum = 0.0;
        for y in 0..size {
            for x in 0..size {
                sum += filter(x as f64, y as f64) * (image[y * size + x] - 117.0) / 50.0;
            }
        }
        sum
    };
    match n.cell_type {
        CellType::Simple => dot(&|x, y| gabor(n, x, y, n.phase, n.orientation)).max(0.0),
        CellType::Complex => {
            let even = dot(&|x, y| gabor(n, x, y, 0.0, n.orientation));
            let odd = dot(&|x, y| gabor(n, x, y, PI / 2.0, n.orientation));
            (even * even + odd * odd).sqrt()
        }
        CellType::CentreSurround => {
            (n.polarity * dot(&|x, y| difference_of_gaussians(n, x, y))).max(0.0)
        }
        CellType::NormalisedTexture => {
            // Small oriented energy detectors tiled over a large region...
            let mut preferred = 0.0;
            let mut all_orientations = 0.0;
            for offset in TEXTURE_OFFSETS {
                let local = texture_detector(n, offset);
                for k in 0..4 {
                    let theta = n.orientation + k as f64 * PI / 4.0;
                    let even = dot(&|x, y| gabor(&local, x, y, 0.0, theta));
                    let odd = dot(&|x, y| gabor(&local, x, y, PI / 2.0, theta));
                    let energy = even * even + odd * odd;
                    all_orientations += energy;
                    if k == 0 {
                        preferred += energy;
                    }
                }
            }
            // ...divided by the energy at all orientations: texture, normalised for contrast.
            preferred / (1.0 + 0.25 * all_orientations)
        }
    }
}

/// Scales a drive to spikes per 50 ms: mean ≈ 0.2–1.0 per neuron, peaks of a few spikes.
fn drive_to_rate(rng: &mut impl Rng, drive: &[f64]) -> Vec<f64> {
    let n = drive.len() as f64;
    let mean = drive.iter().sum::<f64>() / n;
    let sd = (drive.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n)
        .sqrt()
        .max(1e-12);
    let target_mean = 0.15 + 0.7 * rng.random::<f64>();
    let spontaneous = 0.05 + 0.1 * rng.random::<f64>();
    // An expansive nonlinearity on the standardised drive, then a gain for the mean.
    let shaped: Vec<f64> = drive
        .iter()
        .map(|d| ((d - mean) / sd + 1.0).max(0.0).powf(1.3))
        .collect();
    let shaped_mean = (shaped.iter().sum::<f64>() / n).max(1e-12);
    let gain = (target_mean - spontaneous).max(0.05) / shaped_mean;
    shaped.iter().map(|s| spontaneous + gain * s).collect()
}

/// The `.mat` bytes and the ground-truth JSON of a simulated session.
pub fn write_session(sim: &Simulation) -> (Vec<u8>, String) {
    let header = format!(
        "MATLAB 5.0 MAT-file, Platform: v1-predictor, simulated V1 session (seed {})",
        sim.config.seed
    );
    let truth = GroundTruth {
        config: sim.config.clone(),
        description: DESCRIPTION.to_string(),
        neurons: sim.neurons.clone(),
    };
    let json = serde_json::to_string(&truth).expect("plain data serialises");
    (write_mat(&sim.dataset, &header), json)
}

/// `session.mat` → `session-truth.json`.
pub fn truth_path(mat: &std::path::Path) -> std::path::PathBuf {
    let stem = mat
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    mat.with_file_name(format!("{stem}-truth.json"))
}

pub const DESCRIPTION: &str = "A simulated recording: 270 natural-like images (dead leaves) shown \
to 40 model V1 neurons whose filters we chose — simple, complex, centre-surround and \
contrast-normalised texture cells — with the trial-to-trial noise of real spike counts. \
Because the truth is known, you can see which kinds of cells the network learns to predict.";

/// A MAT level-5 file (uncompressed, little-endian) with `images` as uint8 [n, h, w] and
/// `activity` as double [n, neurons], exactly as the seed's files; byte-for-byte the same for
/// the same data (the header carries no date).
pub fn write_mat(dataset: &Dataset, header_text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut text = header_text.as_bytes().to_vec();
    text.resize(116, b' ');
    out.extend(text);
    out.extend([0u8; 8]); // subsystem data offset: none
    out.extend(0x0100u16.to_le_bytes());
    out.extend(b"IM");

    // MATLAB stores column-major: the first index varies fastest.
    let (n, h, w, k) = (
        dataset.n_images,
        dataset.height,
        dataset.width,
        dataset.n_neurons,
    );
    let mut pixels = Vec::with_capacity(n * h * w);
    for c in 0..w {
        for r in 0..h {
            for i in 0..n {
                pixels.push(dataset.image(i)[r * w + c] as u8);
            }
        }
    }
    let mut rates = Vec::with_capacity(n * k * 8);
    for neuron in 0..k {
        for i in 0..n {
            rates.extend(f64::from(dataset.rate(i, neuron)).to_le_bytes());
        }
    }
    // mxUINT8_CLASS = 9 stored as miUINT8 = 2; mxDOUBLE_CLASS = 6 stored as miDOUBLE = 9.
    out.extend(matrix_element("images", 9, &[n, h, w], 2, &pixels));
    out.extend(matrix_element("activity", 6, &[n, k], 9, &rates));
    out
}

fn element(data_type: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend(data_type.to_le_bytes());
    out.extend((payload.len() as u32).to_le_bytes());
    out.extend(payload);
    out.resize(out.len().next_multiple_of(8), 0);
    out
}

fn matrix_element(name: &str, class: u32, dims: &[usize], data_type: u32, data: &[u8]) -> Vec<u8> {
    let flags: Vec<u8> = [class, 0]
        .iter()
        .flat_map(|v: &u32| v.to_le_bytes())
        .collect();
    let dims: Vec<u8> = dims
        .iter()
        .flat_map(|&d| (d as i32).to_le_bytes())
        .collect();
    let mut payload = element(6, &flags); // miUINT32
    payload.extend(element(5, &dims)); // miINT32
    payload.extend(element(1, name.as_bytes())); // miINT8
    payload.extend(element(data_type, data));
    element(14, &payload) // miMATRIX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_mat_reads_back_identically() {
        let config = SimulationConfig {
            n_images: 12,
            size: 9,
            n_neurons: 10,
            ..SimulationConfig::default()
        };
        let sim = simulate(&config);
        let bytes = write_mat(&sim.dataset, "MATLAB 5.0 MAT-file, test");
        let back = crate::data::read_mat("sim.mat", &bytes).unwrap();
        assert_eq!(back.images, sim.dataset.images);
        assert_eq!(back.activity, sim.dataset.activity);
        assert_eq!(
            write_mat(&simulate(&config).dataset, "MATLAB 5.0 MAT-file, test"),
            bytes
        );
    }

    #[test]
    fn stimuli_and_rates_look_like_the_real_recordings() {
        let sim = simulate(&SimulationConfig::default());
        let s = sim.dataset.summary();
        assert!(
            (s.pixel_mean - 117.0).abs() < 3.0,
            "pixel mean {}",
            s.pixel_mean
        );
        assert!((s.pixel_sd - 50.0).abs() < 5.0, "pixel sd {}", s.pixel_sd);
        assert!(
            (0.3..0.8).contains(&s.mean_rate),
            "mean rate {}",
            s.mean_rate
        );
        assert!((2.0..10.0).contains(&s.max_rate), "max rate {}", s.max_rate);
        // Trial averages of 20 Poisson counts are multiples of 0.05.
        assert!(
            sim.dataset
                .activity
                .iter()
                .all(|a| ((a * 20.0) - (a * 20.0).round()).abs() < 1e-4)
        );
        let types: std::collections::HashSet<_> = sim.neurons.iter().map(|n| n.cell_type).collect();
        assert_eq!(types.len(), 4);
        assert!(
            sim.neurons
                .iter()
                .all(|n| n.r_ceiling > 0.3 && n.r_ceiling < 1.0)
        );
    }
}
