//! Charts with plotters. Text is drawn with DejaVu Sans embedded in the binary (the `dejavu`
//! crate through plotters' `ab_glyph` backend), so figures render the same on a machine with no
//! system fonts.

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

/// Mean and sample std of `xs` (std `None` for fewer than two values).
fn mean_std(xs: &[f64]) -> (f64, Option<f64>) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, None);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, Some(var.sqrt()))
}

/// Reliability diagram (PNG or SVG by extension): per-bin accuracy bars, the gap to the diagonal
/// shaded, dashed identity line, ECE printed (mean ± std over the runs given), and a confidence
/// histogram panel below. Empty bins are not drawn.
pub fn reliability_diagram(path: &Path, title: &str, bins: &[Bin], eces: &[f64]) -> Result<()> {
    register_fonts();
    let size = (640, 760);
    let is_svg = path.extension().is_some_and(|e| e == "svg");
    if is_svg {
        let root = SVGBackend::new(path, size).into_drawing_area();
        draw_reliability(&root, title, bins, eces)?;
        root.present().map_err(|e| anyhow!("{e}"))
    } else {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        draw_reliability(&root, title, bins, eces)?;
        root.present().map_err(|e| anyhow!("{e}"))
    }
    .with_context(|| format!("cannot write {}", path.display()))
}

fn draw_reliability<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    bins: &[Bin],
    eces: &[f64],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing failed: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(title, (FONT, 22).into_font().style(FontStyle::Bold))
        .map_err(err)?;
    let (top, bottom) = root.split_vertically(540);

    let mut chart = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0f64..1.0, 0.0f64..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("confidence")
        .y_desc("accuracy")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .draw()
        .map_err(err)?;
    // Blue up to min(accuracy, confidence), red between accuracy and confidence (the gap), and a
    // black outline at the accuracy, so over- and under-confidence read the same way.
    let filled: Vec<&Bin> = bins.iter().filter(|b| b.count > 0).collect();
    chart
        .draw_series(filled.iter().map(|b| {
            let low = b.accuracy.min(b.confidence);
            Rectangle::new([(b.lower, 0.0), (b.upper, low)], BAR.filled())
        }))
        .map_err(err)?
        .label("accuracy (outlined bar)")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], BAR.filled()));
    chart
        .draw_series(filled.iter().map(|b| {
            Rectangle::new(
                [(b.lower, b.accuracy), (b.upper, b.confidence)],
                GAP.mix(0.45).filled(),
            )
        }))
        .map_err(err)?
        .label("gap to mean confidence")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], GAP.mix(0.45).filled()));
    chart
        .draw_series(filled.iter().map(|b| {
            Rectangle::new(
                [(b.lower, 0.0), (b.upper, b.accuracy)],
                BLACK.stroke_width(1),
            )
        }))
        .map_err(err)?;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            8,
            6,
            BLACK.stroke_width(2),
        ))
        .map_err(err)?
        .label("perfect calibration")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    let (mean, std) = mean_std(eces);
    let ece_text = match std {
        Some(s) => format!(
            "ECE = {:.2}% ± {:.2} ({} seeds)",
            mean * 100.0,
            s * 100.0,
            eces.len()
        ),
        None => format!("ECE = {:.2}%", mean * 100.0),
    };
    top.draw(&Text::new(
        ece_text,
        (90, 28),
        (FONT, 19).into_font().color(&BLACK),
    ))
    .map_err(err)?;

    let total: usize = bins.iter().map(|b| b.count).sum::<usize>().max(1);
    let max_share = bins
        .iter()
        .map(|b| b.count as f64 / total as f64)
        .fold(0.0, f64::max)
        .max(0.05);
    let mut hist = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0f64..1.0, 0.0f64..max_share * 100.0 * 1.1)
        .map_err(err)?;
    hist.configure_mesh()
        .disable_mesh()
        .x_desc("confidence")
        .y_desc("% of samples")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .draw()
        .map_err(err)?;
    hist.draw_series(filled.iter().map(|b| {
        Rectangle::new(
            [
                (b.lower, 0.0),
                (b.upper, b.count as f64 / total as f64 * 100.0),
            ],
            RGBColor(127, 127, 127).filled(),
        )
    }))
    .map_err(err)?;
    Ok(())
}
