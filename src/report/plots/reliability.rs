//! Reliability diagrams (hollance / TorchUncertainty style): per-bin accuracy bars averaged over
//! seeds, the gap to the bin's mean confidence shaded, a dashed identity line, the ECE, and a
//! confidence histogram. A bin is drawn fainter the fewer samples it holds (opacity
//! 0.2 + 0.8 · count / largest count: hollance's bin-importance shading, which normalises the
//! count between the smallest and the largest instead), so a bin of a handful of samples cannot
//! dominate the picture; its error bar is drawn only with at least [`MIN_ERROR_BAR_SAMPLES`]
//! samples per seed.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use super::key::{draw_key, key_width, KeyEntry, Swatch};
use super::{draw_err, mean_std, render, Ticked, BAR, FONT, GAP};
use crate::metrics::Bin;

/// Error bars (spread over seeds) are drawn only for bins with at least this many samples per
/// seed: the spread of a bin of two or three samples is noise, and it spans the whole axis.
pub const MIN_ERROR_BAR_SAMPLES: usize = 10;

/// Opacity of the gap shading at full count.
const GAP_OPACITY: f64 = 0.6;

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

/// Opacity of a bin's marks: 0.2 + 0.8 · count / `max_count`, at most 1.
pub fn opacity(count: usize, max_count: usize) -> f64 {
    (0.2 + 0.8 * count as f64 / max_count.max(1) as f64).min(1.0)
}

/// Whether a bin of `seeds` seeds gets an error bar.
fn has_error_bar(b: &MeanBin, seeds: usize) -> bool {
    b.accuracy_std > 0.0 && b.count >= MIN_ERROR_BAR_SAMPLES * seeds.max(1)
}

/// Whether the ECE box, `size` = (width, height) as fractions of the plot, fits in the plot's
/// top-left corner without touching a drawn mark (bar, gap shading or error bar) of `bins`.
pub fn ece_box_fits(bins: &[MeanBin], seeds: usize, size: (f64, f64)) -> bool {
    let (right, bottom) = (0.02 + size.0 + 0.02, 0.98 - size.1 - 0.02);
    !bins.iter().filter(|b| b.count > 0).any(|b| {
        let err = if has_error_bar(b, seeds) {
            b.accuracy_std
        } else {
            0.0
        };
        let top = (b.accuracy + err).max(b.confidence);
        b.lower < right && top > bottom
    })
}

/// The key of the reliability diagrams of `panels` (their bins, `seeds` seeds each).
fn reliability_key(panels: &[&[MeanBin]], seeds: usize) -> Vec<KeyEntry> {
    let fill = |color, opacity, outline| Swatch::Fill {
        color,
        opacity,
        outline,
    };
    let mut key = vec![
        KeyEntry::new("accuracy (outlined bar)", fill(BAR, 1.0, true)),
        KeyEntry::new("gap to mean confidence", fill(GAP, GAP_OPACITY, false)),
    ];
    if panels
        .iter()
        .any(|p| p.iter().any(|b| has_error_bar(b, seeds)))
    {
        key.push(KeyEntry::new(
            format!("±1 std over {seeds} seeds (bins ≥ {MIN_ERROR_BAR_SAMPLES}/seed)"),
            Swatch::ErrorBar,
        ));
    }
    key.push(KeyEntry::new("perfect calibration", Swatch::Dashed));
    key.push(KeyEntry::new("fainter: fewer samples", Swatch::Fading(BAR)));
    key
}

/// Reliability diagram of one method on one split, with its confidence histogram below and its
/// key on the right.
pub fn reliability_diagram(
    path: &std::path::Path,
    title: &str,
    bins: &[MeanBin],
    eces: &[f64],
) -> Result<()> {
    let key = reliability_key(&[bins], eces.len());
    let width = 600 + key_width(&key);
    render!(path, (width, 760), |root| {
        root.fill(&WHITE).map_err(draw_err)?;
        let root = root
            .titled(title, (FONT, 20).into_font().style(FontStyle::Bold))
            .map_err(draw_err)?;
        let (plots, side) = root.split_horizontally(600);
        let (top, bottom) = plots.split_vertically(plots.dim_in_pixel().1 * 3 / 4);
        draw_reliability(&top, None, bins, eces)?;
        draw_confidence_histogram(&bottom, bins)?;
        draw_key(&side, &key, 20)
    })
}

/// The reliability diagrams of several methods side by side (no histograms), one key.
pub fn reliability_grid(
    path: &std::path::Path,
    title: &str,
    panels: &[(String, Vec<MeanBin>, Vec<f64>)],
) -> Result<()> {
    let cols = panels.len().clamp(1, 3);
    let rows = panels.len().div_ceil(cols).max(1);
    let seeds = panels.iter().map(|p| p.2.len()).max().unwrap_or(1);
    let bins: Vec<&[MeanBin]> = panels.iter().map(|p| p.1.as_slice()).collect();
    let key = reliability_key(&bins, seeds);
    let plots_width = 420 * cols as u32;
    let size = (plots_width + key_width(&key), 440 * rows as u32 + 40);
    render!(path, size, |root| {
        root.fill(&WHITE).map_err(draw_err)?;
        let root = root
            .titled(title, (FONT, 24).into_font().style(FontStyle::Bold))
            .map_err(draw_err)?;
        let (plots, side) = root.split_horizontally(plots_width);
        for (area, (name, bins, eces)) in plots.split_evenly((rows, cols)).iter().zip(panels) {
            draw_reliability(area, Some(name), bins, eces)?;
        }
        draw_key(&side, &key, 30)
    })
}

/// The axes of a chart with f64 coordinates on both sides.
type Chart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// One diagram on `area`, titled `caption` when given. The ECE goes in a box in the top-left
/// corner when no mark is there, else into the caption.
fn draw_reliability<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: Option<&str>,
    bins: &[MeanBin],
    eces: &[f64],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE).map_err(draw_err)?;
    let ece = ece_text(eces);
    let font = (FONT, 15).into_font();
    let text = font.box_size(&ece).map_err(draw_err)?;
    let (w, h) = area.dim_in_pixel();
    // The plot is the area less the label areas (55 + 40 px), margins and caption.
    let plot = ((w as f64 - 80.0).max(1.0), (h as f64 - 100.0).max(1.0));
    let size = ((text.0 + 16) as f64 / plot.0, (text.1 + 12) as f64 / plot.1);
    let boxed = ece_box_fits(bins, eces.len(), size);
    let caption = match (caption, boxed) {
        (Some(c), true) => Some(c.to_string()),
        (Some(c), false) => Some(format!("{c} · {ece}")),
        (None, true) => None,
        (None, false) => Some(ece.clone()),
    };
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55);
    if let Some(c) = &caption {
        builder.caption(c, (FONT, 17).into_font().style(FontStyle::Bold));
    }
    let mut chart = builder
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
    draw_calibration_bars(&mut chart, bins, eces.len())?;
    if boxed {
        draw_ece_box(&chart, &ece, text)?;
    }
    Ok(())
}

/// The ECE in a white, outlined box in the top-left corner of the plot.
fn draw_ece_box<DB: DrawingBackend>(
    chart: &Chart<'_, DB>,
    ece: &str,
    text: (u32, u32),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let area = chart.plotting_area().strip_coord_spec();
    let (w, h) = area.dim_in_pixel();
    let x0 = (0.02 * w as f64) as i32;
    let y0 = (0.02 * h as f64) as i32;
    let (x1, y1) = (x0 + text.0 as i32 + 16, y0 + text.1 as i32 + 12);
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], WHITE.filled()))
        .map_err(draw_err)?;
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))
        .map_err(draw_err)?;
    let font = (FONT, 15)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    area.draw(&Text::new(ece, (x0 + 8, (y0 + y1) / 2), font))
        .map_err(draw_err)
}

/// Blue up to min(accuracy, confidence), red between accuracy and confidence (the gap), and a
/// black outline at the accuracy, so over- and under-confidence read the same way; the spread
/// over seeds as error bars; the dashed identity line. Each bin's marks fade with its count.
fn draw_calibration_bars<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    bins: &[MeanBin],
    seeds: usize,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let filled: Vec<&MeanBin> = bins.iter().filter(|b| b.count > 0).collect();
    let max_count = filled.iter().map(|b| b.count).max().unwrap_or(1);
    let alpha = |b: &MeanBin| opacity(b.count, max_count);
    chart
        .draw_series(filled.iter().map(|b| {
            let low = b.accuracy.min(b.confidence);
            Rectangle::new([(b.lower, 0.0), (b.upper, low)], BAR.mix(alpha(b)).filled())
        }))
        .map_err(draw_err)?;
    chart
        .draw_series(filled.iter().map(|b| {
            Rectangle::new(
                [(b.lower, b.accuracy), (b.upper, b.confidence)],
                GAP.mix(GAP_OPACITY * alpha(b)).filled(),
            )
        }))
        .map_err(draw_err)?;
    chart
        .draw_series(filled.iter().map(|b| {
            Rectangle::new(
                [(b.lower, 0.0), (b.upper, b.accuracy)],
                BLACK.mix(alpha(b)).stroke_width(1),
            )
        }))
        .map_err(draw_err)?;
    chart
        .draw_series(filled.iter().filter(|b| has_error_bar(b, seeds)).map(|b| {
            ErrorBar::new_vertical(
                (b.lower + b.upper) / 2.0,
                (b.accuracy - b.accuracy_std).max(0.0),
                b.accuracy,
                (b.accuracy + b.accuracy_std).min(1.0),
                BLACK.mix(alpha(b)).stroke_width(1),
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
        .map_err(draw_err)?;
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

/// The share of samples per confidence bin, in %, with ticks every 10 or 20 %.
fn draw_confidence_histogram<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    bins: &[MeanBin],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let filled: Vec<&MeanBin> = bins.iter().filter(|b| b.count > 0).collect();
    let total: usize = filled.iter().map(|b| b.count).sum::<usize>().max(1);
    let share = |b: &MeanBin| b.count as f64 / total as f64 * 100.0;
    let top = filled.iter().map(|b| share(b)).fold(5.0, f64::max) * 1.1;
    let step = if top > 50.0 {
        20.0
    } else if top > 20.0 {
        10.0
    } else {
        5.0
    };
    let ticks: Vec<f64> = (0..)
        .map(|k| k as f64 * step)
        .take_while(|t| *t <= top)
        .collect();
    let mut hist = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0f64..1.0, Ticked::new(0.0..top, ticks))
        .map_err(draw_err)?;
    hist.configure_mesh()
        .disable_mesh()
        .x_desc("confidence")
        .y_desc("% of samples")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(draw_err)?;
    hist.draw_series(filled.iter().map(|b| {
        Rectangle::new(
            [(b.lower, 0.0), (b.upper, share(b))],
            RGBColor(127, 127, 127).filled(),
        )
    }))
    .map_err(draw_err)?;
    Ok(())
}
