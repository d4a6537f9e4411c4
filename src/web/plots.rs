//! The page's plots on a `<canvas>`: the seed's two figures (drawn by `crate::plots`, shared
//! with the native PNGs), the comparison of two runs, and the inside views' scatter and
//! stimulus bars.

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use web_sys::HtmlCanvasElement;

use super::canvas::MeasuredCanvas;
use crate::plots::{self, BLUE, GREY, ORANGE, PlotOptions, VERMILLION, draw_legend};
use crate::training::TrainingReport;

fn options(value: JsValue) -> Result<PlotOptions, JsValue> {
    let mut options: PlotOptions = if value.is_undefined() || value.is_null() {
        PlotOptions::default()
    } else {
        serde_wasm_bindgen::from_value(value).map_err(|e| JsValue::from_str(&e.to_string()))?
    };
    if options.scale.is_nan() || options.scale <= 0.0 {
        options.scale = 1.0;
    }
    Ok(options)
}

/// What both plots start from: the report, the options and a cleared canvas.
fn prepare(
    canvas: HtmlCanvasElement,
    report_value: JsValue,
    options_value: JsValue,
) -> Result<
    (
        TrainingReport,
        PlotOptions,
        DrawingArea<MeasuredCanvas, Shift>,
    ),
    JsValue,
> {
    Ok((
        report(report_value)?,
        options(options_value)?,
        root(canvas)?,
    ))
}

fn report(value: JsValue) -> Result<TrainingReport, JsValue> {
    serde_wasm_bindgen::from_value(value).map_err(|e| JsValue::from_str(&e.to_string()))
}

fn plot_error(e: impl std::fmt::Debug) -> JsValue {
    JsValue::from_str(&format!("plot: {e:?}"))
}

fn root(canvas: HtmlCanvasElement) -> Result<DrawingArea<MeasuredCanvas, Shift>, JsValue> {
    let backend =
        MeasuredCanvas::new(canvas).ok_or_else(|| JsValue::from_str("no 2D canvas context"))?;
    let area = backend.into_drawing_area();
    area.fill(&WHITE).map_err(plot_error)?;
    Ok(area)
}

/// Training (solid), early-stop (dashed) and evaluation (dotted) loss against step, with
/// mean r on a second axis: `plots::draw_progress` on the canvas.
#[wasm_bindgen(js_name = drawProgress)]
pub fn draw_progress(
    canvas: HtmlCanvasElement,
    report_value: JsValue,
    options_value: JsValue,
) -> Result<(), JsValue> {
    let (report, o, area) = prepare(canvas, report_value, options_value)?;
    Ok(plots::draw_progress(&area, &report, &o)?)
}

/// Pearson r of every neuron for the best network (`plots::draw_pearson`). Returns where the
/// bars lie (`{x0, x1, order}` in canvas pixels), so a click can pick a neuron; null before
/// the first evaluation.
#[wasm_bindgen(js_name = drawPearson)]
pub fn draw_pearson(
    canvas: HtmlCanvasElement,
    report_value: JsValue,
    options_value: JsValue,
) -> Result<JsValue, JsValue> {
    let (report, o, area) = prepare(canvas, report_value, options_value)?;
    match plots::draw_pearson(&area, &report, &o)? {
        Some(layout) => {
            serde_wasm_bindgen::to_value(&layout).map_err(|e| JsValue::from_str(&e.to_string()))
        }
        None => Ok(JsValue::NULL),
    }
}

/// One run to compare: its name on the page and its report.
#[derive(Deserialize)]
struct LabelledRun {
    label: String,
    report: TrainingReport,
}

/// Two runs side by side: their progress curves overlaid (evaluation loss solid, training
/// loss dashed, one colour per run), and every neuron's r in run A against run B.
#[wasm_bindgen(js_name = drawCompare)]
pub fn draw_compare(
    canvas: HtmlCanvasElement,
    runs_value: JsValue,
    options_value: JsValue,
) -> Result<(), JsValue> {
    let runs: Vec<LabelledRun> = serde_wasm_bindgen::from_value(runs_value)
        .map_err(|e| JsValue::from_str(&e.to_string()))?;
    let [a, b] = <[LabelledRun; 2]>::try_from(runs)
        .map_err(|_| JsValue::from_str("compare needs exactly two runs"))?;
    let o = options(options_value)?;
    let area = root(canvas)?;
    let (left, right) = area.split_horizontally(area.dim_in_pixel().0 as i32 / 2);
    draw_overlay(&left, &o, &a, &b)?;
    draw_scatter(&right, &o, &a, &b)?;
    area.present().map_err(plot_error)?;
    Ok(())
}

const RUN_COLOURS: [RGBColor; 2] = [BLUE, VERMILLION];

fn draw_overlay(
    area: &DrawingArea<MeasuredCanvas, Shift>,
    o: &PlotOptions,
    a: &LabelledRun,
    b: &LabelledRun,
) -> Result<(), JsValue> {
    let runs = [a, b];
    let max_step = runs
        .iter()
        .map(|r| r.report.flags.max_steps)
        .max()
        .unwrap_or(2)
        .max(2) as f64;
    let y_max = runs
        .iter()
        .map(|r| 2.0 * r.report.baseline_loss)
        .fold(0.05, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Progress: evaluation loss (solid), training (dashed)",
            o.font(17.0),
        )
        .margin(o.px(10.0))
        .x_label_area_size(o.px(40.0))
        .y_label_area_size(o.px(58.0))
        .build_cartesian_2d(0.0..max_step, 0.0..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .label_style(o.font(13.0))
        .axis_desc_style(o.font(14.0))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_error)?;
    let width = o.px(2.5).max(1) as u32;
    for (run, colour) in runs.iter().zip(RUN_COLOURS) {
        let points = |f: fn(&crate::training::EvalRecord) -> f64| -> Vec<(f64, f64)> {
            run.report
                .history
                .iter()
                .map(|h| (h.step as f64, f(h).min(y_max)))
                .collect()
        };
        let best = run
            .report
            .best
            .as_ref()
            .map_or(String::new(), |b| format!(" (best r {:.3})", b.mean_r));
        chart
            .draw_series(LineSeries::new(
                points(|h| h.eval_loss),
                colour.stroke_width(width),
            ))
            .map_err(plot_error)?
            .label(format!("{}{best}", run.label))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(width))
            });
        // Markers too: a loaded network has a single evaluation, which no line shows.
        let dot = o.px(3.0).max(2);
        chart
            .draw_series(
                points(|h| h.eval_loss)
                    .into_iter()
                    .map(move |p| Circle::new(p, dot, colour.filled())),
            )
            .map_err(plot_error)?;
        chart
            .draw_series(DashedLineSeries::new(
                points(|h| h.train_loss),
                o.px(7.0),
                o.px(5.0),
                colour.mix(0.7).stroke_width(width),
            ))
            .map_err(plot_error)?;
    }
    draw_legend(&mut chart, o)?;
    Ok(())
}

fn draw_scatter(
    area: &DrawingArea<MeasuredCanvas, Shift>,
    o: &PlotOptions,
    a: &LabelledRun,
    b: &LabelledRun,
) -> Result<(), JsValue> {
    let (Some(best_a), Some(best_b)) = (&a.report.best, &b.report.best) else {
        return note(area, o, "Both runs need an evaluation to compare their r.");
    };
    if best_a.r.len() != best_b.r.len() {
        return note(
            area,
            o,
            &format!(
                "The runs predict different neurons ({} vs {}): no per-neuron comparison.",
                best_a.r.len(),
                best_b.r.len()
            ),
        );
    }
    let low = best_a
        .r
        .iter()
        .chain(&best_b.r)
        .copied()
        .fold(-0.1f64, f64::min);
    let chart = identity_scatter(
        area,
        o,
        "Pearson r per neuron: run A vs run B".to_string(),
        [format!("r, A: {}", a.label), format!("r, B: {}", b.label)],
        low..1.0,
        best_a.r.iter().copied().zip(best_b.r.iter().copied()),
    )?;
    let better = best_a
        .r
        .iter()
        .zip(&best_b.r)
        .filter(|(x, y)| y > x)
        .count();
    // Pixel ranges are absolute on the canvas; `area` (the right half) draws relative to
    // its own corner.
    let (x0, y0) = chart.plotting_area().get_pixel_range();
    let (ax, ay) = area.get_pixel_range();
    let (x0, y0) = (x0.start - ax.start, y0.start - ay.start);
    for (i, line) in [
        format!("B better for {better} of {} neurons", best_a.r.len()),
        format!("mean r: A {:.3}, B {:.3}", best_a.mean_r, best_b.mean_r),
    ]
    .into_iter()
    .enumerate()
    {
        area.draw(&Text::new(
            line,
            (x0 + o.px(8.0), y0 + o.px(6.0 + 18.0 * i as f64)),
            o.font(13.0),
        ))
        .map_err(plot_error)?;
    }
    Ok(())
}

/// The same range on both axes, the identity line (where x = y) and a dot per point: what
/// the comparison of two runs and the predicted-vs-measured plot share.
fn identity_scatter<'a>(
    area: &'a DrawingArea<MeasuredCanvas, Shift>,
    o: &PlotOptions,
    caption: String,
    [x_desc, y_desc]: [String; 2],
    range: std::ops::Range<f64>,
    points: impl Iterator<Item = (f64, f64)>,
) -> Result<plots::Chart<'a, MeasuredCanvas>, JsValue> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, o.font(16.0))
        .margin(o.px(10.0))
        .x_label_area_size(o.px(40.0))
        .y_label_area_size(o.px(50.0))
        .build_cartesian_2d(range.clone(), range.clone())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(o.font(13.0))
        .axis_desc_style(o.font(14.0))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(
            vec![(range.start, range.start), (range.end, range.end)],
            GREY.stroke_width(1),
        ))
        .map_err(plot_error)?;
    let dot = o.px(4.0).max(2);
    chart
        .draw_series(points.map(|p| Circle::new(p, dot, BLUE.mix(0.75).filled())))
        .map_err(plot_error)?;
    Ok(chart)
}

fn note(
    area: &DrawingArea<MeasuredCanvas, Shift>,
    o: &PlotOptions,
    text: &str,
) -> Result<(), JsValue> {
    area.draw(&Text::new(
        text.to_string(),
        (o.px(16.0), o.px(40.0)),
        o.font(15.0),
    ))
    .map_err(plot_error)
}

/// One neuron's predicted against measured rate on the evaluation images.
#[derive(Deserialize)]
struct NeuronScatter {
    neuron: usize,
    measured: Vec<f64>,
    predicted: Vec<f64>,
    r: f64,
}

/// Predicted vs measured rate of one neuron on the evaluation images, with the identity line.
#[wasm_bindgen(js_name = drawNeuronScatter)]
pub fn draw_neuron_scatter(
    canvas: HtmlCanvasElement,
    data: JsValue,
    options_value: JsValue,
) -> Result<(), JsValue> {
    let d: NeuronScatter =
        serde_wasm_bindgen::from_value(data).map_err(|e| JsValue::from_str(&e.to_string()))?;
    let o = options(options_value)?;
    let area = root(canvas)?;
    let top = d
        .measured
        .iter()
        .chain(&d.predicted)
        .copied()
        .fold(0.1f64, f64::max)
        * 1.05;
    identity_scatter(
        &area,
        &o,
        format!(
            "Neuron {}: predicted vs measured, r = {:.3}",
            d.neuron + 1,
            d.r
        ),
        [
            "measured rate (spikes / 50 ms)".to_string(),
            "predicted rate".to_string(),
        ],
        0.0..top,
        d.measured.iter().copied().zip(d.predicted.iter().copied()),
    )?;
    area.present().map_err(plot_error)?;
    Ok(())
}

/// Every neuron's measured and predicted rate for one image.
#[derive(Deserialize)]
struct StimulusRates {
    image: usize,
    measured: Vec<f64>,
    predicted: Vec<f64>,
}

/// Paired bars per neuron: measured (dark) and predicted (light) rate for one image.
#[wasm_bindgen(js_name = drawStimulusRates)]
pub fn draw_stimulus_rates(
    canvas: HtmlCanvasElement,
    data: JsValue,
    options_value: JsValue,
) -> Result<(), JsValue> {
    let d: StimulusRates =
        serde_wasm_bindgen::from_value(data).map_err(|e| JsValue::from_str(&e.to_string()))?;
    let o = options(options_value)?;
    let area = root(canvas)?;
    let n = d.measured.len();
    let top = d
        .measured
        .iter()
        .chain(&d.predicted)
        .copied()
        .fold(0.1f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&area)
        .caption(
            format!("Image {}: every neuron's rate", d.image + 1),
            o.font(16.0),
        )
        .margin(o.px(10.0))
        .x_label_area_size(o.px(40.0))
        .y_label_area_size(o.px(50.0))
        .build_cartesian_2d(0.0..n as f64, 0.0..top)
        .map_err(plot_error)?;
    let in_order: Vec<usize> = (0..n).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("neuron")
        .y_desc("rate (spikes / 50 ms)")
        .x_labels(n.min(40))
        .x_label_formatter(&|x| plots::neuron_label(&in_order, (n / 20).max(1), *x))
        .label_style(o.font(12.0))
        .axis_desc_style(o.font(13.0))
        .draw()
        .map_err(plot_error)?;
    for (values, colour, offset, label) in [
        (&d.measured, BLUE, 0.1, "measured"),
        (&d.predicted, ORANGE, 0.5, "predicted"),
    ] {
        let size = o.px(6.0);
        chart
            .draw_series(values.iter().enumerate().map(|(i, &v)| {
                Rectangle::new(
                    [(i as f64 + offset, 0.0), (i as f64 + offset + 0.4, v)],
                    colour.filled(),
                )
            }))
            .map_err(plot_error)?
            .label(label)
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - size), (x + 2 * size, y + size)], colour.filled())
            });
    }
    draw_legend(&mut chart, &o)?;
    area.present().map_err(plot_error)?;
    Ok(())
}

/// Signed values as RGBA pixels on the page's diverging scale (blue − / white 0 / red +),
/// scaled by `scale` (the largest magnitude shown, so that tiles can share one scale).
#[wasm_bindgen(js_name = divergingPixels)]
pub fn diverging_pixels(values: &[f32], scale: f32) -> Vec<u8> {
    let scale = if scale > 0.0 { scale } else { 1.0 };
    values
        .iter()
        .flat_map(|&v| {
            let [r, g, b] = crate::explain::diverging(v / scale);
            [r, g, b, 255]
        })
        .collect()
}
