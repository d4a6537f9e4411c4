//! The seed's two figures — training progress and every neuron's Pearson r — drawn with
//! `plotters` on any backend: a `<canvas>` in the page (`web::plots`), a PNG natively
//! (`v1p train --out`). Sized in device pixels (`PlotOptions::scale`), so they stay sharp on
//! high-DPI screens and projectors.

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::training::TrainingReport;

// Okabe–Ito: distinguishable with every common colour-vision deficiency.
pub const BLACK: RGBColor = RGBColor(0, 0, 0);
pub const BLUE: RGBColor = RGBColor(0, 114, 178);
pub const ORANGE: RGBColor = RGBColor(230, 159, 0);
pub const VERMILLION: RGBColor = RGBColor(213, 94, 0);
pub const GREEN: RGBColor = RGBColor(0, 158, 115);
pub const SKY: RGBColor = RGBColor(86, 180, 233);
pub const PURPLE: RGBColor = RGBColor(204, 121, 167);
pub const GREY: RGBColor = RGBColor(120, 120, 120);

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct PlotOptions {
    /// devicePixelRatio: fonts and lines scale with it.
    pub scale: f64,
    /// Sort the Pearson bars by r (highest first) instead of by neuron.
    pub sort_by_r: bool,
    /// Optional label per neuron (e.g. the demo data's true cell types), used for colour.
    pub cell_types: Vec<String>,
}

impl PlotOptions {
    /// A length in CSS pixels, in canvas (device) pixels.
    pub fn px(&self, v: f64) -> i32 {
        (v * self.scale).round() as i32
    }

    pub fn font(&self, size: f64) -> FontDesc<'static> {
        ("sans-serif", size * self.scale).into_font()
    }
}

pub fn plot_error(e: impl std::fmt::Debug) -> String {
    format!("plot: {e:?}")
}

pub type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The legend box, top right, as every plot here has it.
pub fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    o: &PlotOptions,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(o.font(13.0))
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .draw()
        .map_err(plot_error)
}

/// The axis label under bar slot `x` of a per-neuron bar plot: the slot's neuron, numbered
/// from 1 as on the page, on every `every`-th slot (crowded axes would overlap).
pub fn neuron_label(order: &[usize], every: usize, x: f64) -> String {
    let slot = x.floor() as usize;
    match order.get(slot) {
        Some(neuron) if slot.is_multiple_of(every) => (neuron + 1).to_string(),
        _ => String::new(),
    }
}

/// Where the Pearson plot's bars lie, in backend pixels: the first bar's left edge, the last
/// bar's right edge, and the neuron of each slot — so a click can pick a neuron.
#[derive(Clone, Debug, Serialize)]
pub struct BarLayout {
    pub x0: i32,
    pub x1: i32,
    pub order: Vec<usize>,
}

/// Training (solid), early-stop (dashed) and evaluation (dotted) loss against step, y from
/// −0.1 to 2 × baseline loss; mean eval r on the right axis (−0.1…1); a vertical line at the
/// best step; flags and the best step's figures written on the plot — as the seed's PNG.
pub fn draw_progress<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    report: &TrainingReport,
    o: &PlotOptions,
) -> Result<(), String> {
    let max_step = report.flags.max_steps.max(2) as f64;
    let y_max = (2.0 * report.baseline_loss).max(0.05);
    let mut chart = ChartBuilder::on(area)
        .caption("Training progress", o.font(20.0))
        .margin(o.px(12.0))
        .x_label_area_size(o.px(42.0))
        .y_label_area_size(o.px(62.0))
        .right_y_label_area_size(o.px(56.0))
        .build_cartesian_2d(0.0..max_step, -0.1..y_max)
        .map_err(plot_error)?
        .set_secondary_coord(0.0..max_step, -0.1..1.0);
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss (mean squared error)")
        .label_style(o.font(14.0))
        .axis_desc_style(o.font(15.0))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_error)?;
    chart
        .configure_secondary_axes()
        .y_desc("mean r (evaluation images)")
        .label_style(o.font(14.0))
        .axis_desc_style(o.font(15.0))
        .draw()
        .map_err(plot_error)?;

    let width = o.px(2.5).max(1) as u32;
    let series = |f: fn(&crate::training::EvalRecord) -> f64| -> Vec<(f64, f64)> {
        report
            .history
            .iter()
            .map(|h| (h.step as f64, f(h).min(y_max)))
            .collect()
    };
    chart
        .draw_series(LineSeries::new(
            series(|h| h.train_loss),
            BLUE.stroke_width(width),
        ))
        .map_err(plot_error)?
        .label("training loss")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 24, y)], BLUE.stroke_width(width))
        });
    chart
        .draw_series(DashedLineSeries::new(
            series(|h| h.early_stop_loss),
            o.px(8.0),
            o.px(5.0),
            VERMILLION.stroke_width(width),
        ))
        .map_err(plot_error)?
        .label("early-stop loss (dashed)")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 24, y)], VERMILLION.stroke_width(width))
        });
    let dot = o.px(2.0).max(1);
    chart
        .draw_series(DottedLineSeries::new(
            series(|h| h.eval_loss),
            0,
            o.px(7.0),
            move |c| Circle::new(c, dot, GREEN.filled()),
        ))
        .map_err(plot_error)?
        .label("evaluation loss (dotted)")
        .legend(move |(x, y)| Circle::new((x + 12, y), dot, GREEN.filled()));
    chart
        .draw_secondary_series(LineSeries::new(
            report.history.iter().map(|h| (h.step as f64, h.mean_r)),
            ORANGE.stroke_width(width),
        ))
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(
            vec![
                (0.0, report.baseline_loss),
                (max_step, report.baseline_loss),
            ],
            GREY.stroke_width(1),
        ))
        .map_err(plot_error)?
        .label("baseline loss (mean rates)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], GREY.stroke_width(1)));
    // An empty primary series carries the legend entry of the secondary (mean r) line.
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
        .map_err(plot_error)?
        .label("mean r (right axis)")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 24, y)], ORANGE.stroke_width(width))
        });

    if let Some(best) = &report.best {
        let x = best.step as f64;
        chart
            .draw_series(LineSeries::new(
                vec![(x, -0.1), (x, y_max)],
                BLACK.mix(0.6).stroke_width(o.px(1.5).max(1) as u32),
            ))
            .map_err(plot_error)?;
        let eval_var = crate::training::metrics::mean(&report.eval_variance);
        let mut lines = vec![
            format!(
                "best step {}: mean r {:.3}, eval loss {:.4}, FVE {:.3}",
                best.step, best.mean_r, best.eval_loss, best.fve
            ),
            format!(
                "baseline loss {:.4}, eval variance {:.4}",
                report.baseline_loss, eval_var
            ),
        ];
        lines.extend(wrap_at_dots(&report.flags.summary(), SUMMARY_LINE_CHARS));
        let (x0, y0) = chart.plotting_area().get_pixel_range();
        for (i, line) in lines.iter().enumerate() {
            area.draw(&Text::new(
                line.clone(),
                (
                    x0.start + o.px(10.0),
                    y0.start + o.px(8.0 + 19.0 * i as f64),
                ),
                o.font(14.0),
            ))
            .map_err(plot_error)?;
        }
    }
    draw_legend(&mut chart, o)?;
    area.present().map_err(plot_error)?;
    Ok(())
}

/// Pearson r of every neuron for the best network, as bars, with the mean as a line.
///
/// Returns where the bars lie (`{x0, x1, order}`: canvas pixels of the first bar's left and
/// the last bar's right edge, and the neuron of each slot), so a click can pick a neuron.
pub fn draw_pearson<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    report: &TrainingReport,
    o: &PlotOptions,
) -> Result<Option<BarLayout>, String> {
    let Some(best) = &report.best else {
        area.draw(&Text::new(
            "No evaluation yet",
            (o.px(20.0), o.px(30.0)),
            o.font(18.0),
        ))
        .map_err(plot_error)?;
        area.present().map_err(plot_error)?;
        return Ok(None);
    };
    let mut order: Vec<usize> = (0..best.r.len()).collect();
    if o.sort_by_r {
        order.sort_by(|&a, &b| best.r[b].total_cmp(&best.r[a]));
    }
    let n = order.len();
    let y_min = best.r.iter().copied().fold(0.0f64, f64::min).min(-0.1);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("Pearson r per neuron, best network (step {})", best.step),
            o.font(20.0),
        )
        .margin(o.px(12.0))
        .x_label_area_size(o.px(42.0))
        .y_label_area_size(o.px(56.0))
        .build_cartesian_2d(0.0..n as f64, y_min..1.0)
        .map_err(plot_error)?;
    let label_every = (n / 20).max(1);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(if o.sort_by_r {
            "neuron (sorted by r)"
        } else {
            "neuron"
        })
        .y_desc("Pearson r (evaluation images)")
        .x_labels(n.min(40))
        .x_label_formatter(&|x| neuron_label(&order, label_every, *x))
        .label_style(o.font(13.0))
        .axis_desc_style(o.font(15.0))
        .draw()
        .map_err(plot_error)?;

    let palette = [BLUE, ORANGE, GREEN, PURPLE, SKY, VERMILLION];
    let mut kinds: Vec<String> = Vec::new();
    for t in &o.cell_types {
        if !kinds.contains(t) {
            kinds.push(t.clone());
        }
    }
    let colour = |neuron: usize| -> RGBColor {
        o.cell_types
            .get(neuron)
            .and_then(|t| kinds.iter().position(|k| k == t))
            .map_or(BLUE, |k| palette[k % palette.len()])
    };
    chart
        .draw_series(order.iter().enumerate().map(|(slot, &neuron)| {
            let r = best.r[neuron];
            Rectangle::new(
                [(slot as f64 + 0.12, 0.0), (slot as f64 + 0.88, r)],
                colour(neuron).filled(),
            )
        }))
        .map_err(plot_error)?;
    let width = o.px(2.0).max(1) as u32;
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, best.mean_r), (n as f64, best.mean_r)],
            BLACK.stroke_width(width),
        ))
        .map_err(plot_error)?
        .label(format!("mean r = {:.3}", best.mean_r))
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 24, y)], BLACK.stroke_width(width))
        });
    for (k, kind) in kinds.iter().enumerate() {
        let c = palette[k % palette.len()];
        let size = o.px(6.0);
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(plot_error)?
            .label(kind.clone())
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - size), (x + 2 * size, y + size)], c.filled())
            });
    }
    draw_legend(&mut chart, o)?;
    area.present().map_err(plot_error)?;
    let (x0, _) = chart.backend_coord(&(0.0, 0.0));
    let (x1, _) = chart.backend_coord(&(n as f64, 0.0));
    Ok(Some(BarLayout { x0, x1, order }))
}

/// The two figures as PNG files (`training_plot_T.png`, `pearsonplot_T.png`), drawn natively
/// with the embedded DejaVu Sans, as the page draws them on its canvas.
#[cfg(not(target_arch = "wasm32"))]
pub fn training_pngs(
    report: &TrainingReport,
    tag: u64,
) -> Result<Vec<crate::results::ExportFile>, crate::results::ResultsError> {
    use crate::results::{ExportFile, ResultsError, rgb_png};
    static FONT: std::sync::Once = std::sync::Once::new();
    FONT.call_once(|| {
        // The bytes are embedded and valid: failing here would be a build defect.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
    let (width, height) = (1200u32, 700u32);
    let options = PlotOptions {
        scale: 1.0,
        ..PlotOptions::default()
    };
    let mut files = Vec::new();
    for (name, pearson) in [
        (format!("training_plot_{tag}.png"), false),
        (format!("pearsonplot_{tag}.png"), true),
    ] {
        let mut rgb = vec![255u8; (width * height * 3) as usize];
        {
            let area = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
            area.fill(&WHITE)
                .map_err(|e| ResultsError::Write(plot_error(e)))?;
            if pearson {
                draw_pearson(&area, report, &options).map_err(ResultsError::Write)?;
            } else {
                draw_progress(&area, report, &options).map_err(ResultsError::Write)?;
            }
        }
        files.push(ExportFile::new(
            name,
            "image/png",
            rgb_png(width, height, &rgb)?,
        ));
    }
    Ok(files)
}

/// About as many characters as the progress plot's caption fits on one line.
const SUMMARY_LINE_CHARS: usize = 90;

/// Breaks a " · "-separated summary into lines of at most `width` characters (a longer part
/// gets a line of its own).
fn wrap_at_dots(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for part in text.split(" · ") {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 3 + part.chars().count() <= width => {
                line.push_str(" · ");
                line.push_str(part);
            }
            _ => lines.push(part.to_string()),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::{neuron_label, wrap_at_dots};

    #[test]
    fn bar_labels_name_the_slot_neuron_from_one_on_every_kth_slot() {
        let order = [2, 0, 1, 3];
        let labels: Vec<String> = (0..5)
            .map(|slot| neuron_label(&order, 2, slot as f64 + 0.5))
            .collect();
        assert_eq!(labels, ["3", "", "2", "", ""]);
    }

    #[test]
    fn a_long_summary_wraps_between_its_parts() {
        let lines = wrap_at_dots("cnn · lr 0.0002 · steps 60000 · batch 50", 20);
        assert_eq!(lines, ["cnn · lr 0.0002", "steps 60000", "batch 50"]);
        assert_eq!(wrap_at_dots("a very long part", 4), ["a very long part"]);
    }
}
