//! Plots people would rather look at than read: training curves and the confusion matrix (PNG,
//! drawn with plotters; text uses a system TrueType font — DejaVu Sans on Debian).

use crate::train::EpochRecord;
use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::OnceLock;

const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a sans-serif font once; plots need one for their labels.
fn ensure_font() -> Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let path = std::env::var("FER_FONT")
            .ok()
            .into_iter()
            .chain(FONT_CANDIDATES.iter().map(|s| s.to_string()))
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| format!("no TrueType font found (tried {FONT_CANDIDATES:?}; set FER_FONT)"))?;
        let bytes: &'static [u8] = Box::leak(std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?.into_boxed_slice());
        register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| format!("{path}: not a usable font"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Loss and accuracy per epoch, two panels side by side; `val_label` names the val curves (which
/// weights they measured).
pub fn training_curves(path: &Path, history: &[EpochRecord], val_label: &str) -> Result<()> {
    ensure_font()?;
    let root = BitMapBackend::new(path, (1200, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    // Whole epochs on the x axis, so its labels are 1, 2, 3 ... (never 1.5).
    let n = history.len().max(2) as u32;
    let max_loss = history.iter().map(|r| r.train_loss).fold(0.0, f64::max).max(1e-3) * 1.1;
    let mut c = ChartBuilder::on(&left)
        .caption("training loss", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(1u32..n, 0f64..max_loss)?;
    c.configure_mesh().x_desc("epoch").draw()?;
    c.draw_series(LineSeries::new(history.iter().map(|r| (r.epoch as u32, r.train_loss)), RED.stroke_width(2)))?;
    let mut c = ChartBuilder::on(&right)
        .caption("accuracy (%)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(1u32..n, 0f64..100f64)?;
    c.configure_mesh().x_desc("epoch").draw()?;
    let val_mean_class = format!("{val_label} mean-class");
    for (name, color, f) in [
        ("train", BLUE, (|r: &EpochRecord| r.train_accuracy) as fn(&EpochRecord) -> f64),
        (val_label, GREEN, |r: &EpochRecord| r.val.accuracy),
        (val_mean_class.as_str(), MAGENTA, |r: &EpochRecord| r.val.mean_class_accuracy),
    ] {
        c.draw_series(LineSeries::new(history.iter().map(|r| (r.epoch as u32, 100.0 * f(r))), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    // Upper left: accuracy curves start low and rise, so that corner stays clear of them.
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Row-normalised confusion matrix with counts, true classes down, predictions across.
pub fn confusion_matrix(path: &Path, confusion: &[Vec<u64>], classes: &[String]) -> Result<()> {
    ensure_font()?;
    let k = confusion.len();
    let cell = 80i32;
    let margin = 120i32;
    let size = (margin + cell * k as i32 + 20) as u32;
    let root = BitMapBackend::new(path, (size, size + 30)).into_drawing_area();
    root.fill(&WHITE)?;
    let font = ("sans-serif", 16).into_font();
    root.draw(&Text::new("true \\ predicted", (8, 8), font.clone()))?;
    for (i, row) in confusion.iter().enumerate() {
        let total: u64 = row.iter().sum::<u64>().max(1);
        for (j, &v) in row.iter().enumerate() {
            let frac = v as f64 / total as f64;
            let x0 = margin + cell * j as i32;
            let y0 = margin + cell * i as i32;
            let shade = (255.0 * (1.0 - frac)) as u8;
            root.draw(&Rectangle::new([(x0, y0), (x0 + cell, y0 + cell)], RGBColor(shade, shade, 255).filled()))?;
            let color = if frac > 0.5 { WHITE } else { BLACK };
            root.draw(&Text::new(share_text(v, total), (x0 + 18, y0 + 22), font.clone().color(&color)))?;
            root.draw(&Text::new(format!("{v}"), (x0 + 18, y0 + 44), ("sans-serif", 13).into_font().color(&color)))?;
        }
        let name = classes.get(i).map(String::as_str).unwrap_or("?");
        root.draw(&Text::new(name.to_string(), (8, margin + cell * i as i32 + cell / 2 - 8), font.clone()))?;
        root.draw(&Text::new(name.chars().take(8).collect::<String>(), (margin + cell * i as i32 + 6, margin - 24), font.clone()))?;
    }
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A cell's share of its row in whole percent, as fer-run's picture writes it: "<1%" / ">99%" for
/// a share that rounds to 0 or 100 but is not (a count of 2 under "0%" reads as a contradiction).
fn share_text(count: u64, total: u64) -> String {
    match (count, (100.0 * count as f64 / total as f64).round()) {
        (0, _) => "0%".to_string(),
        (c, _) if c == total => "100%".to_string(),
        (_, w) if w < 1.0 => "<1%".to_string(),
        (_, w) if w > 99.0 => ">99%".to_string(),
        (_, w) => format!("{w:.0}%"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shares_that_round_to_the_ends_say_so() {
        let shown: Vec<String> = [(0, 250), (2, 467), (1, 3), (466, 467), (5, 5)].iter().map(|&(c, t)| super::share_text(c, t)).collect();
        assert_eq!(shown, ["0%", "<1%", "33%", ">99%", "100%"]);
    }
}
