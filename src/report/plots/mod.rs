//! Charts with plotters, as PNG or SVG (chosen by the file extension). Text is drawn with DejaVu
//! Sans embedded in the binary (the `dejavu` crate through plotters' `ab_glyph` backend), so
//! figures render the same on a machine with no system fonts.
//!
//! Every figure keeps its key (legend) in a strip of its own beside the plots, so no key ever
//! covers data, and every mark drawn has a key entry: [`reliability`] draws the reliability
//! diagrams, [`lines`] the line charts and multi-panel figures, [`forest`] the forest plots of
//! the claims, and [`key`] the keys.

pub mod forest;
pub mod key;
pub mod lines;
pub mod reliability;

use std::sync::Once;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::FontStyle;

pub use forest::{forest_plot, ForestRow};
pub use lines::{line_chart, log_ticks, panels, tick_label, Panel, Series};
pub use reliability::{
    ece_box_fits, mean_bins, opacity, reliability_diagram, reliability_grid, MeanBin,
    MIN_ERROR_BAR_SAMPLES,
};

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

/// An f64 axis with its ticks chosen by the caller (plotters' own `WithKeyPoints` drops the f64
/// axis' label formatting, so it cannot take the formatter every chart sets).
#[derive(Debug, Clone)]
struct Ticked {
    range: (f64, f64),
    ticks: Vec<f64>,
}

impl Ticked {
    fn new(range: std::ops::Range<f64>, ticks: Vec<f64>) -> Ticked {
        Ticked {
            range: (range.start, range.end),
            ticks,
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn range(&self) -> std::ops::Range<f64> {
        self.range.0..self.range.1
    }

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        plotters::coord::types::RangedCoordf64::from(self.range()).map(value, limit)
    }

    /// The ticks as bold points; no light points (no minor grid lines).
    fn key_points<H: plotters::coord::ranged1d::KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }
}

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// Renders `$body` (which draws on `$root`) into a PNG or SVG file, by extension. A macro because
/// the body is generic over the two backends.
macro_rules! render {
    ($path:expr, $size:expr, |$root:ident| $body:expr) => {{
        use anyhow::Context as _;
        $crate::report::plots::register_fonts();
        let path: &std::path::Path = $path;
        // Drawn to a temporary file and renamed: concurrent reports never leave a torn figure.
        let tmp = $crate::util::temp_beside(path);
        let result: anyhow::Result<()> = if path.extension().is_some_and(|e| e == "svg") {
            let $root = SVGBackend::new(&tmp, $size).into_drawing_area();
            ($body).and_then(|_| $root.present().map_err($crate::report::plots::draw_err))
        } else {
            let $root = BitMapBackend::new(&tmp, $size).into_drawing_area();
            ($body).and_then(|_| $root.present().map_err($crate::report::plots::draw_err))
        };
        result
            .and_then(|_| std::fs::rename(&tmp, path).map_err(anyhow::Error::from))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
            .with_context(|| format!("cannot write {}", path.display()))
    }};
}
pub(crate) use render;
