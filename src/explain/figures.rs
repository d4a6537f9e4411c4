//! The inside views as files: the arrays as `.npz` and the pictures as PNG montages, so that
//! `v1p explain` reproduces the page's views from a saved network without a browser.

use super::{Inverted, Overview, centred};
use crate::explain::Direction;
use crate::results::{ExportFile, NpzBuilder, ResultsError, rgb_png};

/// Pixels per image pixel in the montages, and the gap between tiles.
const ZOOM: usize = 4;
const GAP: usize = 4;

/// Blue (negative) – white (0) – red (positive), for a value already scaled to [-1, 1]:
/// the page's colour scale.
pub fn diverging(value: f32) -> [u8; 3] {
    let v = value.clamp(-1.0, 1.0);
    let fade = |t: f32| (255.0 * (1.0 - t)).round() as u8;
    if v >= 0.0 {
        [255, fade(v), fade(v)]
    } else {
        [fade(-v), fade(-v), 255]
    }
}

/// Values scaled by their largest magnitude (a flat tile stays white).
fn scaled(values: &[f32]) -> Vec<f32> {
    let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    values
        .iter()
        .map(|v| if max > 0.0 { v / max } else { 0.0 })
        .collect()
}

/// A grid of square-pixel tiles, each `[h, w]` values in [-1, 1], `columns` per row.
fn montage(
    tiles: &[Vec<f32>],
    [h, w]: [usize; 2],
    columns: usize,
) -> Result<Vec<u8>, ResultsError> {
    let rows = tiles.len().div_ceil(columns.max(1));
    let width = columns * (w * ZOOM + GAP) + GAP;
    let height = rows * (h * ZOOM + GAP) + GAP;
    let mut rgb = vec![255u8; width * height * 3];
    for (t, tile) in tiles.iter().enumerate() {
        let (x0, y0) = (
            GAP + (t % columns) * (w * ZOOM + GAP),
            GAP + (t / columns) * (h * ZOOM + GAP),
        );
        for y in 0..h * ZOOM {
            for x in 0..w * ZOOM {
                let colour = diverging(tile[(y / ZOOM) * w + x / ZOOM]);
                let at = ((y0 + y) * width + x0 + x) * 3;
                rgb[at..at + 3].copy_from_slice(&colour);
            }
        }
    }
    rgb_png(width as u32, height as u32, &rgb)
}

/// One result per neuron in `direction`, in neuron order.
fn by_neuron(
    inverted: &[Inverted],
    direction: Direction,
    n_neurons: usize,
) -> Vec<Option<&Inverted>> {
    let mut out = vec![None; n_neurons];
    for result in inverted.iter().filter(|r| r.direction == direction) {
        out[result.neuron] = Some(result);
    }
    out
}

/// `explain_T.npz` (every array), `explain_neurons_T.png` (one row per neuron: preferred
/// image, most suppressive image, RF estimate, STA, and the true filter where known, each
/// minus the mean image and scaled to its own largest value) and `conv1_filters_T.png`.
pub fn explain_files(
    overview: &Overview,
    inverted: &[Inverted],
    tag: u64,
) -> Result<Vec<ExportFile>, ResultsError> {
    let (h, w, n) = (overview.height, overview.width, overview.n_neurons);
    let pixels = h * w;
    let excite = by_neuron(inverted, Direction::Excite, n);
    let suppress = by_neuron(inverted, Direction::Suppress, n);
    let images_of = |results: &[Option<&Inverted>]| -> Vec<f32> {
        results
            .iter()
            .flat_map(|r| r.map_or_else(|| overview.mean_image.clone(), |r| r.image.clone()))
            .collect()
    };
    let field = |results: &[Option<&Inverted>], f: fn(&Inverted) -> f64| -> Vec<f64> {
        results.iter().map(|r| r.map_or(f64::NAN, f)).collect()
    };

    let mut npz = NpzBuilder::new();
    let k = overview.conv1.size;
    npz.f32s(
        "conv1_filters",
        &[overview.conv1.count, k, k],
        &overview.conv1.weights,
    )?
    .f32s("mean_image", &[h, w], &overview.mean_image)?
    .scalar_f64("budget", overview.budget)?
    .f32s("predicted", &[overview.n_images, n], &overview.predicted)?
    .f32s("measured", &[overview.n_images, n], &overview.measured)?
    .indices("evaltrials", &overview.eval_images)?
    .f64s("rval", &[n], &overview.r)?
    .f32s("rf", &[n, h, w], &overview.rf)?
    .f32s("sta", &[n, h, w], &overview.sta)?
    .f32s("preferred", &[n, h, w], &images_of(&excite))?
    .f64s(
        "preferred_rate",
        &[n],
        &field(&excite, |r| f64::from(r.rate)),
    )?
    .f64s(
        "preferred_consistency",
        &[n],
        &field(&excite, |r| r.consistency),
    )?
    .f32s("suppressive", &[n, h, w], &images_of(&suppress))?
    .f64s(
        "suppressive_rate",
        &[n],
        &field(&suppress, |r| f64::from(r.rate)),
    )?
    .f64s(
        "suppressive_consistency",
        &[n],
        &field(&suppress, |r| r.consistency),
    )?;
    npz.index_table("top_measured", &overview.top_measured)?
        .index_table("top_predicted", &overview.top_predicted)?;
    if let Some(truth) = &overview.truth {
        let filters: Vec<f32> = truth.iter().flat_map(|t| t.filter.clone()).collect();
        npz.f32s("true_filter", &[n, h, w], &filters)?
            .f64s(
                "rf_truth_similarity",
                &[n],
                &truth.iter().map(|t| t.rf_similarity).collect::<Vec<_>>(),
            )?
            .f64s(
                "sta_truth_similarity",
                &[n],
                &truth.iter().map(|t| t.sta_similarity).collect::<Vec<_>>(),
            )?
            .f64s(
                "preferred_truth_similarity",
                &[n],
                &field(&excite, |r| r.truth_similarity.unwrap_or(f64::NAN)),
            )?
            .text(
                "cell_types",
                &truth
                    .iter()
                    .map(|t| t.cell_type.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            )?;
    }

    let mut tiles = Vec::new();
    for neuron in 0..n {
        let range = neuron * pixels..(neuron + 1) * pixels;
        for result in [excite[neuron], suppress[neuron]] {
            tiles.push(scaled(&result.map_or_else(
                || vec![0.0; pixels],
                |r| centred(&r.image, &overview.mean_image),
            )));
        }
        tiles.push(scaled(&overview.rf[range.clone()]));
        tiles.push(scaled(&overview.sta[range]));
        if let Some(truth) = &overview.truth {
            tiles.push(scaled(&truth[neuron].filter));
        }
    }
    let columns = if overview.truth.is_some() { 5 } else { 4 };
    let filters: Vec<Vec<f32>> = {
        // One colour scale for every kernel, as the page draws them.
        let all = scaled(&overview.conv1.weights);
        all.chunks_exact(k * k).map(<[f32]>::to_vec).collect()
    };
    Ok(vec![
        ExportFile::new(
            format!("explain_{tag}.npz"),
            "application/octet-stream",
            npz.finish()?,
        ),
        ExportFile::new(
            format!("explain_neurons_{tag}.png"),
            "image/png",
            montage(&tiles, [h, w], columns)?,
        ),
        ExportFile::new(
            format!("conv1_filters_{tag}.png"),
            "image/png",
            montage(&filters, [k, k], 8)?,
        ),
    ])
}
