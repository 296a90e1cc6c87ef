//! Text on the pictures fer-run writes (annotated photos, the confusion matrix), in
//! embedded-graphics' built-in bitmap font: nothing (no font file) is needed on the device. The
//! font has the Latin-1 characters (labels such as "colère" or "überrascht"); a label with
//! others ("愤怒") is written as its class number instead ([`class_name`]), not as '?'s.

use embedded_graphics::mono_font::iso_8859_1::{FONT_9X15, FONT_9X15_BOLD};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::text::{Baseline, Text};
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

/// Pixel size of one character of the font (both weights), spacing included.
pub(crate) const CHAR_WIDTH: u32 = 9;
pub(crate) const CHAR_HEIGHT: u32 = 15;

/// A class's label as the pictures write it: the label when the font has all its characters,
/// else "class N" for class index N (the JSON and the table keep the label itself).
pub fn class_name(label: &str, index: usize) -> std::borrow::Cow<'_, str> {
    // Latin-1 and printable: what the font draws.
    let drawable = |c: char| (c as u32) < 0x100 && !c.is_control();
    match label.chars().all(drawable) {
        true => label.into(),
        false => format!("class {index}").into(),
    }
}

/// How wide `text` is drawn, in pixels.
pub(crate) fn text_width(text: &str) -> u32 {
    text.chars().count() as u32 * CHAR_WIDTH
}

/// A probability as the pictures write it: in whole percent, "<1%" / ">99%" where that rounds to
/// 0 or 100 (which would claim a certainty the model did not have).
pub fn percent(p: f32) -> String {
    match (100.0 * p).round() {
        w if w < 1.0 => "<1%".to_string(),
        w if w > 99.0 => ">99%".to_string(),
        w => format!("{w:.0}%"),
    }
}

/// Black or white, whichever reads better on `background`.
pub(crate) fn ink_on(background: Rgb<u8>) -> Rgb<u8> {
    let [r, g, b] = background.0;
    if 299 * r as u32 + 587 * g as u32 + 114 * b as u32 > 150_000 {
        Rgb([0, 0, 0])
    } else {
        Rgb([255, 255, 255])
    }
}

/// Fills the `w` x `h` rectangle at `(x, y)` with `color`, clipped to the canvas.
pub(crate) fn fill_rect(
    canvas: &mut RgbImage,
    (x, y): (u32, u32),
    (w, h): (u32, u32),
    color: Rgb<u8>,
) {
    let (cw, ch) = canvas.dimensions();
    for yy in y.min(ch)..y.saturating_add(h).min(ch) {
        for xx in x.min(cw)..x.saturating_add(w).min(cw) {
            canvas.put_pixel(xx, yy, color);
        }
    }
}

/// Draws `text` with its top-left corner at `(x, y)`; what falls outside the canvas is dropped.
pub(crate) fn text(
    canvas: &mut RgbImage,
    text: &str,
    (x, y): (i32, i32),
    ink: Rgb<u8>,
    bold: bool,
) {
    let font: &MonoFont = if bold { &FONT_9X15_BOLD } else { &FONT_9X15 };
    let [r, g, b] = ink.0;
    let style = MonoTextStyle::new(font, Rgb888::new(r, g, b));
    let Ok(_) =
        Text::with_baseline(text, Point::new(x, y), style, Baseline::Top).draw(&mut Canvas(canvas));
}

/// `text` in bold on a `background` tag, black or white ink for contrast, scaled by `scale`
/// (nearest neighbour: the font's pixels stay sharp).
pub(crate) fn tag(label: &str, background: Rgb<u8>, scale: u32) -> RgbImage {
    let pad = 2;
    let (width, height) = (text_width(label) + 2 * pad, CHAR_HEIGHT + 2 * pad);
    let mut tag = RgbImage::from_pixel(width, height, background);
    text(
        &mut tag,
        label,
        (pad as i32, pad as i32),
        ink_on(background),
        true,
    );
    if scale > 1 {
        imageops::resize(&tag, width * scale, height * scale, FilterType::Nearest)
    } else {
        tag
    }
}

/// An RGB image as an embedded-graphics draw target; pixels outside it are dropped.
struct Canvas<'a>(&'a mut RgbImage);

impl OriginDimensions for Canvas<'_> {
    fn size(&self) -> Size {
        Size::new(self.0.width(), self.0.height())
    }
}

impl DrawTarget for Canvas<'_> {
    type Color = Rgb888;
    type Error = std::convert::Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(
        &mut self,
        pixels: I,
    ) -> std::result::Result<(), Self::Error> {
        let (w, h) = self.0.dimensions();
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 && (p.x as u32) < w && (p.y as u32) < h {
                self.0
                    .put_pixel(p.x as u32, p.y as u32, Rgb([c.r(), c.g(), c.b()]));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ink lands inside the text's box and nowhere else; a tag is as wide as its text plus padding.
    #[test]
    fn text_stays_in_its_box() {
        let mut img = RgbImage::from_pixel(100, 40, Rgb([255, 255, 255]));
        text(&mut img, "abc", (10, 5), Rgb([0, 0, 0]), false);
        let inked: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0 == [0, 0, 0])
            .map(|(x, y, _)| (x, y))
            .collect();
        assert!(!inked.is_empty());
        assert!(
            inked
                .iter()
                .all(|&(x, y)| (10..10 + 3 * CHAR_WIDTH).contains(&x)
                    && (5..5 + CHAR_HEIGHT).contains(&y)),
            "{inked:?}"
        );
        // Text running off the canvas is clipped, not a panic.
        text(&mut img, "far off", (95, 35), Rgb([0, 0, 0]), true);
        let t = tag("ab", Rgb([20, 20, 20]), 3);
        assert_eq!(
            t.dimensions(),
            (3 * (2 * CHAR_WIDTH + 4), 3 * (CHAR_HEIGHT + 4))
        );
        assert_eq!(ink_on(Rgb([20, 20, 20])), Rgb([255, 255, 255]));
        assert!(
            t.pixels().any(|p| p.0 == [255, 255, 255]),
            "white ink on a dark tag"
        );
    }

    #[test]
    fn percentages_never_claim_certainty() {
        let shown: Vec<String> = [0.0, 0.0049, 0.006, 0.42, 0.994, 0.9951, 1.0]
            .iter()
            .map(|&p| percent(p))
            .collect();
        assert_eq!(shown, ["<1%", "<1%", "1%", "42%", "99%", ">99%", ">99%"]);
    }

    /// Latin-1 letters are drawn as themselves, not as the '?' of characters the font lacks.
    #[test]
    fn latin1_labels_are_drawn() {
        let draw_one = |t: &str| {
            let mut img = RgbImage::from_pixel(20, 20, Rgb([255, 255, 255]));
            text(&mut img, t, (0, 0), Rgb([0, 0, 0]), false);
            img
        };
        let unknown = draw_one("?");
        assert_ne!(draw_one("è"), unknown);
        assert_ne!(draw_one("ü"), draw_one("u"));
        assert_eq!(draw_one("怒"), unknown, "outside Latin-1");
    }
}
