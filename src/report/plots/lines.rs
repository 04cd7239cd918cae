//! Line charts: one or more panels of lines with point markers and error bars. A method keeps
//! one colour across every panel of a figure, runs still running are drawn dashed, one key
//! beside the panels names every line and mark, and axes can carry their ticks exactly at the
//! values a grid used (imbalance ratios, images per class).

use std::path::Path;

use anyhow::Result;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::key::{draw_key, key_width, KeyEntry, Swatch};
use super::{draw_err, render, Ticked, FONT, PALETTE};

/// One line of a line chart: (x, mean, std) points.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64, Option<f64>)>,
    /// A run still training: drawn dashed, keyed `<method> (running)`.
    pub running: bool,
}

impl Series {
    /// The key entry the series belongs to: per-run series (`method (seed k)`) share their
    /// method's colour and one entry, so a chart of every run stays readable.
    pub fn legend_group(&self) -> &str {
        match self.name.find(" (seed ") {
            Some(at) if self.name.ends_with(')') => &self.name[..at],
            _ => &self.name,
        }
    }

    /// The points as drawn: on log10 axes where asked, without the points that cannot be drawn
    /// (a diverged run's NaN or infinite values, values ≤ 0 on a log axis; no error bars on a log
    /// y axis).
    fn plotted(&self, log_x: bool, log_y: bool) -> Series {
        let points = self
            .points
            .iter()
            .filter_map(|&(x, y, e)| {
                let e = e.filter(|e| e.is_finite() && !log_y);
                Some((on_axis(x, log_x)?, on_axis(y, log_y)?, e))
            })
            .collect();
        Series {
            name: self.name.clone(),
            points,
            running: self.running,
        }
    }
}

/// `v` on a linear or log10 axis; `None` where it cannot be drawn.
fn on_axis(v: f64, log: bool) -> Option<f64> {
    let v = if log { v.log10() } else { v };
    v.is_finite().then_some(v)
}

/// One panel of a figure.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    /// A log10 x axis.
    pub log_x: bool,
    /// A log10 y axis, for values that span orders of magnitude (a collapsing run's gradient
    /// norm goes from 1 to 1e17).
    pub log_y: bool,
    /// Ticks exactly at these x values (the grid's); empty: chosen automatically.
    pub x_ticks: Vec<f64>,
    pub series: Vec<Series>,
}

/// Size of a panel of a multi-panel figure, in pixels.
const PANEL: (u32, u32) = (560, 420);
/// Size of a single-panel chart, in pixels.
const SINGLE: (u32, u32) = (720, 480);
/// Height of a figure's title, in pixels.
const TITLE: u32 = 44;

/// A single-panel line chart with its key on the right, titled `title` (the panel's own title is
/// not drawn).
pub fn line_chart(path: &Path, title: &str, panel: &Panel) -> Result<()> {
    let panel = Panel {
        title: String::new(),
        ..panel.clone()
    };
    figure(path, title, std::slice::from_ref(&panel), 1, SINGLE)
}

/// Panels (each with its own axes), `columns` per row, one key on the right for all of them.
pub fn panels(path: &Path, title: &str, panels: &[Panel], columns: usize) -> Result<()> {
    figure(path, title, panels, columns, PANEL)
}

fn figure(
    path: &Path,
    title: &str,
    panels: &[Panel],
    columns: usize,
    panel_size: (u32, u32),
) -> Result<()> {
    let palette = Palette::of(panels);
    let key = line_key(panels, &palette);
    let columns = columns.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(columns).max(1);
    let plots_width = panel_size.0 * columns as u32;
    let size = (
        plots_width + key_width(&key),
        TITLE + panel_size.1 * rows as u32,
    );
    render!(path, size, |root| {
        root.fill(&WHITE).map_err(draw_err)?;
        let root = root
            .titled(title, (FONT, 22).into_font().style(FontStyle::Bold))
            .map_err(draw_err)?;
        let (plots, side) = root.split_horizontally(plots_width);
        for (area, panel) in plots.split_evenly((rows, columns)).iter().zip(panels) {
            draw_panel(area, panel, &palette)?;
        }
        draw_key(&side, &key, 30)
    })
}

/// The key groups of a figure in first-seen order; a group's colour is its place in the list.
struct Palette {
    groups: Vec<String>,
}

impl Palette {
    fn of(panels: &[Panel]) -> Palette {
        let mut groups: Vec<String> = Vec::new();
        for s in panels.iter().flat_map(|p| &p.series) {
            if !groups.iter().any(|g| g == s.legend_group()) {
                groups.push(s.legend_group().to_string());
            }
        }
        Palette { groups }
    }

    fn color(&self, group: &str) -> RGBColor {
        let i = self.groups.iter().position(|g| g == group).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    }
}

/// One entry per group (solid), one per group with running runs (dashed, `(running)`), and the
/// error bars when any point has one.
fn line_key(panels: &[Panel], palette: &Palette) -> Vec<KeyEntry> {
    let series: Vec<&Series> = panels.iter().flat_map(|p| &p.series).collect();
    let mut key = Vec::new();
    for group in &palette.groups {
        let color = palette.color(group);
        let of_group = || series.iter().filter(|s| s.legend_group() == group);
        if of_group().any(|s| !s.running) {
            let dashed = false;
            key.push(KeyEntry::new(group, Swatch::Line { color, dashed }));
        }
        if of_group().any(|s| s.running) {
            let dashed = true;
            let label = format!("{group} (running)");
            key.push(KeyEntry::new(label, Swatch::Line { color, dashed }));
        }
    }
    let error_bars = panels.iter().any(|p| {
        p.series.iter().any(|s| {
            s.plotted(p.log_x, p.log_y)
                .points
                .iter()
                .any(|q| q.2.is_some())
        })
    });
    if error_bars {
        key.push(KeyEntry::new("±1 std over seeds", Swatch::ErrorBar));
    }
    key
}

/// The ticks of a log10 axis from `lo` to `hi` (log10 values): at powers of ten (every k-th
/// power over more than eight decades, k a multiple of the span / 8), with 2 and 5 times them
/// when the range spans less than three decades, with every integer multiple when it spans less
/// than one.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = hi - lo;
    if span > 8.0 {
        let step = (span / 8.0).ceil() as i32;
        return ((lo.ceil() as i32)..=(hi.floor() as i32))
            .filter(|d| d.rem_euclid(step) == 0)
            .map(f64::from)
            .collect();
    }
    let mantissas: &[f64] = if span >= 3.0 {
        &[1.0]
    } else if span >= 1.0 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    };
    let mut ticks = Vec::new();
    for decade in (lo.floor() as i32 - 1)..=(hi.ceil() as i32) {
        for m in mantissas {
            let t = m.log10() + decade as f64;
            if (lo..=hi).contains(&t) {
                ticks.push(t);
            }
        }
    }
    ticks
}

/// A tick label: the value with at most three decimals, powers of ten for very large or very
/// small values.
pub fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(0.001..100_000.0).contains(&a) {
        return format!("{v:.1e}").replace(".0e", "e");
    }
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// The ticks of an axis from `lo` to `hi` (drawn values): `given` (real values) where there are
/// any, else powers of ten on a log axis, else plotters' own.
fn axis_ticks(lo: f64, hi: f64, log: bool, given: &[f64]) -> Vec<f64> {
    let given: Vec<f64> = given
        .iter()
        .filter_map(|&v| on_axis(v, log))
        .filter(|v| (lo..=hi).contains(v))
        .collect();
    if !given.is_empty() {
        given
    } else if log {
        log_ticks(lo, hi)
    } else {
        RangedCoordf64::from(lo..hi).key_points(8)
    }
}

fn bounds(series: &[Series]) -> ((f64, f64), (f64, f64)) {
    let mut xs = (f64::INFINITY, f64::NEG_INFINITY);
    let mut ys = (f64::INFINITY, f64::NEG_INFINITY);
    for s in series {
        for &(x, y, e) in &s.points {
            let e = e.unwrap_or(0.0);
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

/// The axes of a line chart: f64 on both sides, with chosen ticks.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<Ticked, Ticked>>;

/// One panel on `area`, coloured by `palette`; tick labels give the real values on log axes.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    palette: &Palette,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (log_x, log_y) = (panel.log_x, panel.log_y);
    let series: Vec<Series> = panel
        .series
        .iter()
        .map(|s| s.plotted(log_x, log_y))
        .collect();
    let ((x0, x1), (y0, y1)) = bounds(&series);
    let pad = ((x1 - x0) * 0.05).max(if log_x { 0.05 } else { 0.0 });
    let (x0, x1) = (x0 - pad, x1 + pad);
    let x_ticks = axis_ticks(x0, x1, log_x, &panel.x_ticks);
    let y_ticks = axis_ticks(y0, y1, log_y, &[]);
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(64);
    if !panel.title.is_empty() {
        builder.caption(&panel.title, (FONT, 18).into_font().style(FontStyle::Bold));
    }
    let mut chart = builder
        .build_cartesian_2d(Ticked::new(x0..x1, x_ticks), Ticked::new(y0..y1, y_ticks))
        .map_err(draw_err)?;
    let real = |v: f64, log: bool| tick_label(if log { 10f64.powf(v) } else { v });
    chart
        .configure_mesh()
        .x_desc(panel.x_desc.as_str())
        .y_desc(panel.y_desc.as_str())
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .x_label_formatter(&|v| real(*v, log_x))
        .y_label_formatter(&|v| real(*v, log_y))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(draw_err)?;
    for s in &series {
        draw_series_line(&mut chart, s, palette.color(s.legend_group()))?;
    }
    Ok(())
}

/// One series: a line (dashed for a running run), point markers and error bars.
fn draw_series_line<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    s: &Series,
    color: RGBColor,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let line = s.points.iter().map(|&(x, y, _)| (x, y));
    if s.running {
        chart
            .draw_series(DashedLineSeries::new(line, 8, 5, color.stroke_width(2)))
            .map_err(draw_err)?;
    } else {
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))
            .map_err(draw_err)?;
    }
    // Hollow markers for a running run, so it reads apart from its method's mean.
    let marker = if s.running {
        color.stroke_width(2)
    } else {
        color.filled()
    };
    chart
        .draw_series(
            s.points
                .iter()
                .map(|&(x, y, _)| Circle::new((x, y), 4, marker)),
        )
        .map_err(draw_err)?;
    chart
        .draw_series(s.points.iter().filter_map(|&(x, y, e)| {
            e.map(|e| ErrorBar::new_vertical(x, y - e, y, y + e, color.stroke_width(1), 8))
        }))
        .map_err(draw_err)?;
    Ok(())
}
