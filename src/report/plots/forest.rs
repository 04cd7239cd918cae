//! Forest plots of the claims: one row per claim and split, the mean paired difference with its
//! 95 % interval, and a dashed line at zero.

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::{draw_err, render, BAR, FONT};

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
