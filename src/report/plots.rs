//! Charts with plotters, as PNG or SVG (chosen by the file extension). Text is drawn with DejaVu
//! Sans embedded in the binary (the `dejavu` crate through plotters' `ab_glyph` backend), so
//! figures render the same on a machine with no system fonts.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::metrics::Bin;

/// Font family name used by every chart.
const FONT: &str = "sans-serif";

/// Registers the embedded fonts once per process.
pub fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("embedded DejaVu Sans is a valid font"));
        plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
            .unwrap_or_else(|_| panic!("embedded DejaVu Sans Bold is a valid font"));
    });
}

const BAR: RGBColor = RGBColor(31, 119, 180);
const GAP: RGBColor = RGBColor(214, 39, 40);
/// Line colours for methods (tab10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Mean and sample std of `xs` (std `None` for fewer than two values).
pub fn mean_std(xs: &[f64]) -> (f64, Option<f64>) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, None);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, Some(var.sqrt()))
}

/// One reliability bin averaged over seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanBin {
    pub lower: f64,
    pub upper: f64,
    /// Samples over all seeds.
    pub count: usize,
    /// Mean over the seeds where the bin is non-empty.
    pub accuracy: f64,
    pub confidence: f64,
    /// Spread of the accuracy over those seeds (sample std; 0 with one seed).
    pub accuracy_std: f64,
}

/// Per-bin mean over seeds (each seed's bins as stored in `reliability.json`).
pub fn mean_bins(per_seed: &[Vec<Bin>]) -> Vec<MeanBin> {
    let Some(first) = per_seed.first() else {
        return Vec::new();
    };
    (0..first.len())
        .map(|k| {
            // Seeds whose file has fewer bins do not contribute to the missing ones.
            let filled: Vec<&Bin> = per_seed
                .iter()
                .filter_map(|b| b.get(k))
                .filter(|b| b.count > 0)
                .collect();
            let accs: Vec<f64> = filled.iter().map(|b| b.accuracy).collect();
            let confs: Vec<f64> = filled.iter().map(|b| b.confidence).collect();
            let (accuracy, std) = if accs.is_empty() {
                (0.0, None)
            } else {
                mean_std(&accs)
            };
            MeanBin {
                lower: first[k].lower,
                upper: first[k].upper,
                count: filled.iter().map(|b| b.count).sum(),
                accuracy,
                confidence: if confs.is_empty() {
                    0.0
                } else {
                    mean_std(&confs).0
                },
                accuracy_std: std.unwrap_or(0.0),
            }
        })
        .collect()
}

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// Renders `$body` (which draws on `$root`) into a PNG or SVG file, by extension. A macro because
/// the body is generic over the two backends.
macro_rules! render {
    ($path:expr, $size:expr, |$root:ident| $body:expr) => {{
        register_fonts();
        let path: &Path = $path;
        // Drawn to a temporary file and renamed: concurrent reports never leave a torn figure.
        let tmp = crate::util::temp_beside(path);
        let result: Result<()> = if path.extension().is_some_and(|e| e == "svg") {
            let $root = SVGBackend::new(&tmp, $size).into_drawing_area();
            ($body).and_then(|_| $root.present().map_err(draw_err))
        } else {
            let $root = BitMapBackend::new(&tmp, $size).into_drawing_area();
            ($body).and_then(|_| $root.present().map_err(draw_err))
        };
        result
            .and_then(|_| std::fs::rename(&tmp, path).map_err(anyhow::Error::from))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
            .with_context(|| format!("cannot write {}", path.display()))
    }};
}

/// Reliability diagram (hollance / TorchUncertainty style): per-bin accuracy bars (mean over
/// seeds, error bar = spread), the gap to the mean confidence shaded, dashed identity line, ECE
/// printed (mean ± std over seeds), and a confidence histogram below. Empty bins are not drawn.
pub fn reliability_diagram(path: &Path, title: &str, bins: &[MeanBin], eces: &[f64]) -> Result<()> {
    render!(path, (640, 760), |root| draw_reliability(
        &root, title, bins, eces, true
    ))
}

/// The reliability diagrams of several methods side by side (no histograms).
pub fn reliability_grid(
    path: &Path,
    title: &str,
    panels: &[(String, Vec<MeanBin>, Vec<f64>)],
) -> Result<()> {
    let cols = panels.len().clamp(1, 3);
    let rows = panels.len().div_ceil(cols).max(1);
    let size = (420 * cols as u32, 460 * rows as u32 + 40);
    render!(path, size, |root| draw_grid(
        &root,
        title,
        panels,
        (rows, cols)
    ))
}

fn draw_grid<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[(String, Vec<MeanBin>, Vec<f64>)],
    shape: (usize, usize),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(draw_err)?;
    let root = root
        .titled(title, (FONT, 24).into_font().style(FontStyle::Bold))
        .map_err(draw_err)?;
    for (area, (name, bins, eces)) in root.split_evenly(shape).iter().zip(panels) {
        draw_reliability(area, name, bins, eces, false)?;
    }
    Ok(())
}

/// The axes of a chart with f64 coordinates on both sides.
type Chart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn draw_reliability<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    bins: &[MeanBin],
    eces: &[f64],
    histogram: bool,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(draw_err)?;
    let root = root
        .titled(title, (FONT, 20).into_font().style(FontStyle::Bold))
        .map_err(draw_err)?;
    let h = root.dim_in_pixel().1 as i32;
    let (top, bottom) = root.split_vertically(if histogram { h * 3 / 4 } else { h });
    let mut chart = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0f64..1.0, 0.0f64..1.0)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("confidence")
        .y_desc("accuracy")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(draw_err)?;
    let filled: Vec<&MeanBin> = bins.iter().filter(|b| b.count > 0).collect();
    draw_calibration_bars(&mut chart, &filled)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)?;
    top.draw(&Text::new(
        ece_text(eces),
        (80, 24),
        (FONT, 17).into_font().color(&BLACK),
    ))
    .map_err(draw_err)?;
    if histogram {
        draw_confidence_histogram(&bottom, &filled)?;
    }
    Ok(())
}

/// Blue up to min(accuracy, confidence), red between accuracy and confidence (the gap), and a
/// black outline at the accuracy, so over- and under-confidence read the same way; the spread
/// over seeds as error bars; the dashed identity line.
fn draw_calibration_bars<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    filled: &[&MeanBin],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .draw_series(filled.iter().map(|b| {
            let low = b.accuracy.min(b.confidence);
            Rectangle::new([(b.lower, 0.0), (b.upper, low)], BAR.filled())
        }))
        .map_err(draw_err)?
        .label("accuracy (outlined bar)")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], BAR.filled()));
    chart
        .draw_series(filled.iter().map(|b| {
            Rectangle::new(
                [(b.lower, b.accuracy), (b.upper, b.confidence)],
                GAP.mix(0.45).filled(),
            )
        }))
        .map_err(draw_err)?
        .label("gap to mean confidence")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], GAP.mix(0.45).filled()));
    chart
        .draw_series(filled.iter().map(|b| {
            Rectangle::new(
                [(b.lower, 0.0), (b.upper, b.accuracy)],
                BLACK.stroke_width(1),
            )
        }))
        .map_err(draw_err)?;
    chart
        .draw_series(filled.iter().filter(|b| b.accuracy_std > 0.0).map(|b| {
            let x = (b.lower + b.upper) / 2.0;
            ErrorBar::new_vertical(
                x,
                (b.accuracy - b.accuracy_std).max(0.0),
                b.accuracy,
                (b.accuracy + b.accuracy_std).min(1.0),
                BLACK.stroke_width(1),
                6,
            )
        }))
        .map_err(draw_err)?;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            8,
            6,
            BLACK.stroke_width(2),
        ))
        .map_err(draw_err)?
        .label("perfect calibration")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(2)));
    Ok(())
}

/// "ECE = m% ± s (n seeds)", or "ECE = m%" for one seed.
fn ece_text(eces: &[f64]) -> String {
    match mean_std(eces) {
        (mean, Some(s)) => format!(
            "ECE = {:.2}% ± {:.2} ({} seeds)",
            mean * 100.0,
            s * 100.0,
            eces.len()
        ),
        (mean, None) => format!("ECE = {:.2}%", mean * 100.0),
    }
}

/// The share of samples per confidence bin.
fn draw_confidence_histogram<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    filled: &[&MeanBin],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let total: usize = filled.iter().map(|b| b.count).sum::<usize>().max(1);
    let max_share = filled
        .iter()
        .map(|b| b.count as f64 / total as f64)
        .fold(0.0, f64::max)
        .max(0.05);
    let mut hist = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0f64..1.0, 0.0f64..max_share * 110.0)
        .map_err(draw_err)?;
    hist.configure_mesh()
        .disable_mesh()
        .x_desc("confidence")
        .y_desc("% of samples")
        .y_labels(4)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(draw_err)?;
    hist.draw_series(filled.iter().map(|b| {
        Rectangle::new(
            [
                (b.lower, 0.0),
                (b.upper, b.count as f64 / total as f64 * 100.0),
            ],
            RGBColor(127, 127, 127).filled(),
        )
    }))
    .map_err(draw_err)?;
    Ok(())
}

/// One series as a line with point markers and error bars, `tx` mapping x to the axis.
/// Draws one series; `label` gives it a legend entry (the first series of its legend group).
fn draw_series_line<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    s: &Series,
    color: RGBColor,
    label: Option<&str>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let line = chart
        .draw_series(LineSeries::new(
            s.points.iter().map(|&(x, y, _)| (x, y)),
            color.stroke_width(2),
        ))
        .map_err(draw_err)?;
    if let Some(label) = label {
        line.label(label).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
        });
    }
    chart
        .draw_series(
            s.points
                .iter()
                .map(|&(x, y, _)| Circle::new((x, y), 4, color.filled())),
        )
        .map_err(draw_err)?;
    chart
        .draw_series(s.points.iter().filter_map(|&(x, y, e)| {
            e.map(|e| ErrorBar::new_vertical(x, y - e, y, y + e, color.stroke_width(1), 8))
        }))
        .map_err(draw_err)?;
    Ok(())
}

/// One line of a line chart: (x, mean, std) points.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64, Option<f64>)>,
}

impl Series {
    /// The legend entry the series belongs to: per-run series (`method (seed k)`) share their
    /// method's colour and one entry, so a chart of every run stays readable.
    fn legend_group(&self) -> &str {
        match self.name.find(" (seed ") {
            Some(at) if self.name.ends_with(')') => &self.name[..at],
            _ => &self.name,
        }
    }

    /// The points as drawn: on log10 axes where asked, without the points that cannot be drawn
    /// (a diverged run's NaN or infinite values, values ≤ 0 on a log axis; no error bars on a log
    /// y axis).
    fn plotted(&self, log_x: bool, log_y: bool) -> Series {
        let axis = |v: f64, log: bool| {
            let v = if log { v.log10() } else { v };
            v.is_finite().then_some(v)
        };
        let points = self
            .points
            .iter()
            .filter_map(|&(x, y, e)| {
                let e = e.filter(|e| e.is_finite() && !log_y);
                Some((axis(x, log_x)?, axis(y, log_y)?, e))
            })
            .collect();
        Series {
            name: self.name.clone(),
            points,
        }
    }
}

/// A tick label of a log10 axis: the real value.
fn log_tick(v: f64) -> String {
    let real = 10f64.powf(v);
    if (0.01..100_000.0).contains(&real) {
        format!("{}", (real * 100.0).round() / 100.0)
    } else {
        format!("{real:.0e}")
    }
}

/// A tick label of a linear axis: three decimals at most, powers of ten for very large or small
/// values.
fn linear_tick(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(0.001..100_000.0).contains(&a) {
        format!("{v:.1e}")
    } else {
        format!("{}", (v * 1000.0).round() / 1000.0)
    }
}

/// Line chart with error bars (accuracy vs imbalance ratio, vs images per class).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    log_x: bool,
    series: &[Series],
) -> Result<()> {
    render!(path, (760, 520), |root| draw_lines(
        &root,
        title,
        x_desc,
        y_desc,
        (log_x, false),
        series
    ))
}

fn bounds(series: &[Series], with_err: bool) -> ((f64, f64), (f64, f64)) {
    let mut xs = (f64::INFINITY, f64::NEG_INFINITY);
    let mut ys = (f64::INFINITY, f64::NEG_INFINITY);
    for s in series {
        for &(x, y, e) in &s.points {
            let e = if with_err { e.unwrap_or(0.0) } else { 0.0 };
            xs = (xs.0.min(x), xs.1.max(x));
            ys = (ys.0.min(y - e), ys.1.max(y + e));
        }
    }
    if !xs.0.is_finite() {
        return ((0.0, 1.0), (0.0, 1.0));
    }
    if xs.0 == xs.1 {
        xs = (xs.0 - 1.0, xs.1 + 1.0);
    }
    let pad = ((ys.1 - ys.0) * 0.1).max(1e-3);
    (xs, (ys.0 - pad, ys.1 + pad))
}

/// Draws every series, one colour and one legend entry per legend group.
fn draw_grouped<DB: DrawingBackend>(chart: &mut Chart<'_, DB>, series: &[Series]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let mut groups: Vec<&str> = Vec::new();
    for s in series {
        let group = s.legend_group();
        let first = !groups.contains(&group);
        if first {
            groups.push(group);
        }
        let i = groups.iter().position(|g| *g == group).unwrap_or(0);
        draw_series_line(chart, s, PALETTE[i % PALETTE.len()], first.then_some(group))?;
    }
    Ok(())
}

/// A line chart on `root`; `log` puts the x and/or y axis on a log10 scale (ticks labelled with
/// the real values).
fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    log: (bool, bool),
    series: &[Series],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(draw_err)?;
    let (log_x, log_y) = log;
    let series: Vec<Series> = series.iter().map(|s| s.plotted(log_x, log_y)).collect();
    let ((x0, x1), (y0, y1)) = bounds(&series, true);
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, (FONT, 20).into_font().style(FontStyle::Bold))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(60);
    let pad = if log_x {
        ((x1 - x0) * 0.05).max(0.05)
    } else {
        (x1 - x0) * 0.05
    };
    let mut chart = builder
        .build_cartesian_2d(x0 - pad..x1 + pad, y0..y1)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .x_label_formatter(&|v| {
            if log_x {
                return log_tick(*v);
            }
            let real = *v;
            if (real - real.round()).abs() < 1e-6 || real.abs() >= 10.0 {
                format!("{real:.0}")
            } else if real.abs() >= 1.0 {
                format!("{real:.1}")
            } else {
                format!("{real:.2}")
            }
        })
        .y_label_formatter(&|v| {
            if log_y {
                log_tick(*v)
            } else {
                linear_tick(*v)
            }
        })
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(draw_err)?;
    draw_grouped(&mut chart, &series)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

/// Training curves: train loss (left) and test accuracy (right) per epoch, one line per method
/// (mean over seeds, error bars = spread).
pub fn training_curves(
    path: &Path,
    title: &str,
    loss: &[Series],
    accuracy: &[Series],
) -> Result<()> {
    render!(path, (1200, 500), |root| draw_curves(
        &root, title, loss, accuracy
    ))
}

fn draw_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    loss: &[Series],
    accuracy: &[Series],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(draw_err)?;
    let root = root
        .titled(title, (FONT, 22).into_font().style(FontStyle::Bold))
        .map_err(draw_err)?;
    let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
    draw_lines(&left, "train loss", "epoch", "loss", (false, false), loss)?;
    draw_lines(
        &right,
        "test accuracy",
        "epoch",
        "accuracy (%)",
        (false, false),
        accuracy,
    )
}

/// One panel of a multi-panel chart.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    /// A log10 y axis, for values that span orders of magnitude (a collapsing run's gradient
    /// norm goes from 1 to 1e17).
    pub log_y: bool,
    pub series: Vec<Series>,
}

/// Line charts (each panel its own axes), two panels per row.
pub fn panels(path: &Path, title: &str, panels: &[Panel]) -> Result<()> {
    let rows = panels.len().div_ceil(2).max(1) as u32;
    render!(path, (1200, 60 + 440 * rows), |root| draw_panels(
        &root, title, panels
    ))
}

fn draw_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[Panel],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(draw_err)?;
    let root = root
        .titled(title, (FONT, 22).into_font().style(FontStyle::Bold))
        .map_err(draw_err)?;
    let rows = panels.len().div_ceil(2).max(1);
    for (area, panel) in root.split_evenly((rows, 2)).iter().zip(panels) {
        draw_lines(
            area,
            &panel.title,
            &panel.x_desc,
            &panel.y_desc,
            (false, panel.log_y),
            &panel.series,
        )?;
    }
    Ok(())
}

/// One row of a forest plot: its label, the estimate and its interval.
pub type ForestRow = (String, f64, Option<(f64, f64)>);

/// Forest plot: one row per claim and split, the mean difference as a point with its 95 %
/// interval as a horizontal bar, and a dashed line at zero (no difference). Rows are listed top
/// down in the order given.
pub fn forest_plot(path: &Path, title: &str, x_desc: &str, rows: &[ForestRow]) -> Result<()> {
    let height = 120 + 34 * rows.len().max(1) as u32;
    render!(path, (900, height), |root| draw_forest(
        &root, title, x_desc, rows
    ))
}

fn draw_forest<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    rows: &[ForestRow],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(draw_err)?;
    let n = rows.len() as i32;
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for (_, mean, interval) in rows {
        let (a, b) = interval.unwrap_or((*mean, *mean));
        lo = lo.min(a).min(*mean);
        hi = hi.max(b).max(*mean);
    }
    let pad = ((hi - lo) * 0.08).max(1e-3);
    // Row i is drawn at n - 1 - i so the first row is at the top.
    let label_of = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(k) if (0..n).contains(k) => rows[(n - 1 - k) as usize].0.clone(),
        _ => String::new(),
    };
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 20).into_font().style(FontStyle::Bold))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(360)
        .build_cartesian_2d((lo - pad)..(hi + pad), (0..(n - 1).max(0)).into_segmented())
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(x_desc)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .y_labels(rows.len().max(1))
        .y_label_formatter(&label_of)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(draw_err)?;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, SegmentValue::Exact(0)), (0.0, SegmentValue::Exact(n))],
            6,
            5,
            BLACK.stroke_width(1),
        ))
        .map_err(draw_err)?;
    for (i, (_, mean, interval)) in rows.iter().enumerate() {
        let y = SegmentValue::CenterOf(n - 1 - i as i32);
        if let Some((a, b)) = interval {
            chart
                .draw_series(std::iter::once(ErrorBar::new_horizontal(
                    y.clone(),
                    *a,
                    *mean,
                    *b,
                    BAR.stroke_width(2),
                    10,
                )))
                .map_err(draw_err)?;
        }
        chart
            .draw_series(std::iter::once(Circle::new((*mean, y), 5, BAR.filled())))
            .map_err(draw_err)?;
    }
    Ok(())
}
