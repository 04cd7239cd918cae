//! The key (legend) of a figure, drawn by hand in a strip beside the plots: plotters' own legend
//! sits inside the plotting area, where it covers data.

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{draw_err, FONT};

/// What a key entry shows beside its label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Swatch {
    /// A line with a point marker in a series' colour; dashed, with a hollow marker, for runs
    /// still running.
    Line { color: RGBColor, dashed: bool },
    /// A filled box with this opacity, outlined in black when `outline`.
    Fill {
        color: RGBColor,
        opacity: f64,
        outline: bool,
    },
    /// A black vertical error bar.
    ErrorBar,
    /// Three boxes of the colour fading out: marks drawn fainter the fewer samples they hold.
    Fading(RGBColor),
    /// A dashed black line.
    Dashed,
}

/// One line of a key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    pub label: String,
    pub swatch: Swatch,
}

impl KeyEntry {
    pub fn new(label: impl Into<String>, swatch: Swatch) -> KeyEntry {
        KeyEntry {
            label: label.into(),
            swatch,
        }
    }
}

const KEY_FONT: u32 = 14;
/// Height of one key line, in pixels.
const ROW: i32 = 24;
/// Width of a swatch, in pixels.
const SWATCH: i32 = 30;
/// Space left and right of the key, in pixels.
const PAD: i32 = 12;

/// The width in pixels the key needs (0 without entries), measured with the embedded font.
pub fn key_width(entries: &[KeyEntry]) -> u32 {
    super::register_fonts();
    let font = (FONT, KEY_FONT).into_font();
    let text = entries
        .iter()
        .map(|e| {
            font.box_size(&e.label)
                .map_or(8 * e.label.len() as u32, |b| b.0)
        })
        .max();
    text.map_or(0, |w| w + (SWATCH + 3 * PAD) as u32)
}

/// Draws the key on `area` (the strip beside the plots), one entry per line from `top` down.
pub fn draw_key<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[KeyEntry],
    top: i32,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let font = (FONT, KEY_FONT)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, entry) in entries.iter().enumerate() {
        let y = top + ROW * i as i32 + ROW / 2;
        draw_swatch(area, entry.swatch, (PAD, y))?;
        area.draw(&Text::new(
            entry.label.as_str(),
            (PAD * 2 + SWATCH, y),
            font.clone(),
        ))
        .map_err(draw_err)?;
    }
    Ok(())
}

/// One swatch, its left edge at `x`, centred on `y`.
fn draw_swatch<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    swatch: Swatch,
    (x, y): (i32, i32),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let boxed = |x0: i32, x1: i32| [(x0, y - 7), (x1, y + 7)];
    match swatch {
        Swatch::Line { color, dashed } => draw_line_swatch(area, color, dashed, (x, y))?,
        Swatch::Fill {
            color,
            opacity,
            outline,
        } => {
            area.draw(&Rectangle::new(
                boxed(x, x + SWATCH),
                color.mix(opacity).filled(),
            ))
            .map_err(draw_err)?;
            if outline {
                area.draw(&Rectangle::new(boxed(x, x + SWATCH), BLACK.stroke_width(1)))
                    .map_err(draw_err)?;
            }
        }
        Swatch::ErrorBar => {
            let mid = x + SWATCH / 2;
            for path in [
                vec![(mid, y - 9), (mid, y + 9)],
                vec![(mid - 5, y - 9), (mid + 5, y - 9)],
                vec![(mid - 5, y + 9), (mid + 5, y + 9)],
            ] {
                area.draw(&PathElement::new(path, BLACK.stroke_width(1)))
                    .map_err(draw_err)?;
            }
            // plotters' error bars ring the mean.
            area.draw(&Circle::new((mid, y), 3, BLACK.stroke_width(1)))
                .map_err(draw_err)?;
        }
        Swatch::Fading(color) => {
            for (k, opacity) in [1.0, 0.6, 0.2].into_iter().enumerate() {
                let x0 = x + k as i32 * SWATCH / 3;
                area.draw(&Rectangle::new(
                    boxed(x0, x0 + SWATCH / 3 - 1),
                    color.mix(opacity).filled(),
                ))
                .map_err(draw_err)?;
            }
        }
        Swatch::Dashed => {
            for k in [0, 12, 24] {
                area.draw(&PathElement::new(
                    vec![(x + k, y), (x + (k + 7).min(SWATCH), y)],
                    BLACK.stroke_width(2),
                ))
                .map_err(draw_err)?;
            }
        }
    }
    Ok(())
}

/// A line swatch: solid with a filled marker, or dashed with a hollow one.
fn draw_line_swatch<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    color: RGBColor,
    dashed: bool,
    (x, y): (i32, i32),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let style = color.stroke_width(2);
    if dashed {
        for k in (0..SWATCH).step_by(10) {
            let end = (k + 6).min(SWATCH);
            area.draw(&PathElement::new(vec![(x + k, y), (x + end, y)], style))
                .map_err(draw_err)?;
        }
    } else {
        area.draw(&PathElement::new(vec![(x, y), (x + SWATCH, y)], style))
            .map_err(draw_err)?;
    }
    let centre = (x + SWATCH / 2, y);
    if dashed {
        area.draw(&Circle::new(centre, 4, WHITE.filled()))
            .map_err(draw_err)?;
        area.draw(&Circle::new(centre, 4, style)).map_err(draw_err)
    } else {
        area.draw(&Circle::new(centre, 4, color.filled()))
            .map_err(draw_err)
    }
}
