//! `fer-run --annotate`: each input picture with its faces' boxes and predicted expressions drawn
//! on it, for people who would rather look than read a table (a PNG per picture; fer-run writes
//! a stream's frames into one [`crate::stream::MjpegWriter`] file). The tags are in the bitmap font of
//! the crate's private `draw` module (no font file needed on the device), enlarged by whole pixels on big pictures.

use crate::draw;
pub use crate::draw::{class_name, percent};
use crate::error::{FerError, Result};
use crate::face::BBox;
use crate::model::Prediction;
use image::imageops::{self, FilterType};
use image::{DynamicImage, Rgb, RgbImage};
use std::path::Path;

/// A picture whose shorter side is under this is enlarged first (by a whole factor, so boxes map
/// exactly), or a 48 px face crop would have no room for its tag.
pub const MIN_SIDE: u32 = 256;
/// ... but never past this on its longer side (a 1 x 5000 strip stays a strip).
const MAX_ENLARGED_SIDE: u32 = 4096;

/// One colour per class index, cycled beyond ten: the "tab10" palette, distinct on photos and for
/// the common colour-vision deficiencies.
const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// The colour of class `index`'s boxes and tags.
pub fn class_color(index: usize) -> Rgb<u8> {
    Rgb(PALETTE[index % PALETTE.len()])
}

/// The picture (as RGB, enlarged when small: see [`MIN_SIDE`]) with a box per face in its class's
/// colour and a "label 93%" tag (the top class's probability) above it, or inside its top edge
/// where there is no room. A face without a box (the whole picture was classified) frames the
/// whole picture.
pub fn annotate(img: &DynamicImage, faces: &[(Option<BBox>, &Prediction)]) -> RgbImage {
    let mut canvas = img.to_rgb8();
    let (w, h) = canvas.dimensions();
    let short = w.min(h).max(1);
    let zoom = MIN_SIDE
        .div_ceil(short)
        .min(MAX_ENLARGED_SIDE / w.max(h).max(1))
        .max(1);
    if zoom > 1 {
        canvas = imageops::resize(&canvas, w * zoom, h * zoom, FilterType::Triangle);
    }
    let short = short * zoom;
    let thickness = (short / 150).max(2);
    let tag_scale = (short / 500).max(1);
    for (bbox, p) in faces {
        let color = class_color(p.class_index);
        let b = match bbox {
            Some(b) => BBox {
                x: b.x * zoom,
                y: b.y * zoom,
                w: b.w * zoom,
                h: b.h * zoom,
            },
            None => BBox {
                x: 0,
                y: 0,
                w: canvas.width(),
                h: canvas.height(),
            },
        };
        draw_box(&mut canvas, b, thickness, color);
        let prob = p.probs.get(p.class_index).map_or(0.0, |(_, v)| *v);
        let tag = draw::tag(&format!("{} {}", class_name(&p.label, p.class_index), percent(prob)), color, tag_scale);
        let x = b.x.min(canvas.width().saturating_sub(tag.width()));
        let y = if b.y >= tag.height() {
            b.y - tag.height()
        } else {
            b.y.min(canvas.height().saturating_sub(tag.height()))
        };
        imageops::overlay(&mut canvas, &tag, x as i64, y as i64);
    }
    canvas
}

/// [`annotate`], written as a PNG at `path` (its folder is created).
pub fn save_annotated(
    path: &Path,
    img: &DynamicImage,
    faces: &[(Option<BBox>, &Prediction)],
) -> Result<()> {
    crate::error::create_parent(path)?;
    annotate(img, faces).save(path).map_err(FerError::from)
}

/// One face of a [`contact_sheet`] and the two classes written under it.
pub struct SheetTile<'a> {
    pub face: &'a DynamicImage,
    /// Upper line: e.g. the class of the face's folder (its label), and its probability.
    pub upper: (usize, String),
    /// Lower line: e.g. the predicted class and its probability.
    pub lower: (usize, String),
}

/// Side of a face on a contact sheet, in pixels (FER2013's 48 px crops, enlarged x2.67).
pub const SHEET_FACE: u32 = 128;
const SHEET_COLUMNS: u32 = 8;
const SHEET_GAP: u32 = 6;

/// Faces in a grid, eight to a row, each above two lines on the colour of their class index
/// ([`class_color`]): `fer-run eval --mistakes-png` shows misclassified faces with their label
/// over the prediction. `title` goes on top. Text longer than a face is wide is cut.
pub fn contact_sheet(title: &str, tiles: &[SheetTile]) -> RgbImage {
    let line = draw::CHAR_HEIGHT + 4;
    let columns = SHEET_COLUMNS.min(tiles.len() as u32).max(1);
    let rows = (tiles.len() as u32).div_ceil(columns);
    let (tile_w, tile_h) = (SHEET_FACE, SHEET_FACE + 2 * line);
    let top = SHEET_GAP + line + SHEET_GAP;
    let width =
        (SHEET_GAP + columns * (tile_w + SHEET_GAP)).max(draw::text_width(title) + 2 * SHEET_GAP);
    let height = top + rows * (tile_h + SHEET_GAP);
    let mut sheet = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    draw::text(
        &mut sheet,
        title,
        (SHEET_GAP as i32, SHEET_GAP as i32),
        Rgb([0, 0, 0]),
        true,
    );
    let chars = (tile_w / draw::CHAR_WIDTH) as usize;
    for (i, t) in tiles.iter().enumerate() {
        let (col, row) = (i as u32 % columns, i as u32 / columns);
        let (x, y) = (
            SHEET_GAP + col * (tile_w + SHEET_GAP),
            top + row * (tile_h + SHEET_GAP),
        );
        let face = t
            .face
            .resize_exact(SHEET_FACE, SHEET_FACE, FilterType::Triangle)
            .to_rgb8();
        imageops::overlay(&mut sheet, &face, x as i64, y as i64);
        for (n, (class, text)) in [&t.upper, &t.lower].into_iter().enumerate() {
            let color = class_color(*class);
            let y0 = y + SHEET_FACE + n as u32 * line;
            draw::fill_rect(&mut sheet, (x, y0), (tile_w, line), color);
            let text: String = text.chars().take(chars).collect();
            draw::text(
                &mut sheet,
                &text,
                (x as i32 + 2, y0 as i32 + 2),
                draw::ink_on(color),
                true,
            );
        }
    }
    sheet
}

/// A frame `t` pixels wide along the inside of `b`, clipped to the canvas.
fn draw_box(canvas: &mut RgbImage, b: BBox, t: u32, color: Rgb<u8>) {
    let (bottom, right) = (
        (b.y + b.h).saturating_sub(t).max(b.y),
        (b.x + b.w).saturating_sub(t).max(b.x),
    );
    draw::fill_rect(canvas, (b.x, b.y), (b.w, t), color);
    draw::fill_rect(canvas, (b.x, bottom), (b.w, t.min(b.h)), color);
    draw::fill_rect(canvas, (b.x, b.y), (t, b.h), color);
    draw::fill_rect(canvas, (right, b.y), (t.min(b.w), b.h), color);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(class_index: usize, p: f32) -> Prediction {
        let probs = (0..3)
            .map(|i| {
                (
                    format!("c{i}"),
                    if i == class_index { p } else { (1.0 - p) / 2.0 },
                )
            })
            .collect();
        Prediction {
            label: format!("c{class_index}"),
            class_index,
            probs,
            confidence: 0.5,
            cam: None,
            face_box: None,
        }
    }

    /// A label the font cannot draw is tagged by its class number: the picture is the one a
    /// model labelled "class 1" gives, where it was "??" before.
    #[test]
    fn labels_the_font_lacks_are_tagged_by_class_number() {
        let img = DynamicImage::new_rgb8(300, 300);
        let b = Some(BBox { x: 50, y: 60, w: 100, h: 100 });
        let tagged = |label: &str| {
            let p = Prediction { label: label.into(), ..prediction(1, 0.9) };
            annotate(&img, &[(b, &p)])
        };
        assert_eq!(tagged("愤怒"), tagged("class 1"));
        assert_ne!(tagged("colère"), tagged("class 1"), "Latin-1 labels are drawn as they are");
        assert_eq!(class_name("überrascht", 4), "überrascht");
        assert_eq!(class_name("a\tb", 0), "class 0");
    }

    /// A box is drawn in its class's colour along its edges and nowhere inside; its tag sits above
    /// it, holds the colour and some ink; the rest of the picture is untouched.
    #[test]
    fn boxes_and_tags_where_the_faces_are() {
        let gray = Rgb([90u8, 90, 90]);
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(600, 400, gray));
        let b = BBox {
            x: 200,
            y: 150,
            w: 120,
            h: 100,
        };
        let p = prediction(1, 0.93);
        let out = annotate(&img, &[(Some(b), &p)]);
        assert_eq!(
            out.dimensions(),
            (600, 400),
            "a picture of 256 px or more keeps its size"
        );
        let c = class_color(1);
        for (x, y) in [
            (200, 150),
            (319, 249),
            (260, 150),
            (200, 200),
            (319, 200),
            (260, 249),
        ] {
            assert_eq!(*out.get_pixel(x, y), c, "edge pixel ({x}, {y})");
        }
        assert_eq!(*out.get_pixel(260, 200), gray, "inside the box");
        assert_eq!(*out.get_pixel(10, 10), gray, "far from it");
        // The tag: the rows just above the box, from its left edge.
        let tag: Vec<_> = (135..150)
            .flat_map(|y| (200..250).map(move |x| (x, y)))
            .map(|(x, y)| *out.get_pixel(x, y))
            .collect();
        assert!(
            tag.iter().filter(|&&px| px == c).count() > tag.len() / 2,
            "tag background"
        );
        assert!(
            tag.iter()
                .any(|&px| px == Rgb([0, 0, 0]) || px == Rgb([255, 255, 255])),
            "tag ink"
        );
    }

    /// A 48 px face crop (no box: the whole image) is enlarged to 288 px and framed whole; a box at
    /// the top edge gets its tag inside; boxes that run off the picture are clipped, not a panic.
    #[test]
    fn small_crops_edges_and_boxes_off_the_picture() {
        let img =
            DynamicImage::ImageLuma8(image::GrayImage::from_pixel(48, 48, image::Luma([200])));
        let p = prediction(0, 0.6);
        let out = annotate(&img, &[(None, &p)]);
        assert_eq!(out.dimensions(), (288, 288));
        assert_eq!(
            *out.get_pixel(287, 287),
            class_color(0),
            "the frame's far corner"
        );
        assert_eq!(
            *out.get_pixel(144, 200),
            Rgb([200, 200, 200]),
            "the middle stays the picture"
        );

        let img = DynamicImage::ImageRgb8(RgbImage::new(300, 300));
        let out = annotate(
            &img,
            &[
                (
                    Some(BBox {
                        x: 250,
                        y: 0,
                        w: 200,
                        h: 500,
                    }),
                    &p,
                ),
                (
                    Some(BBox {
                        x: 400,
                        y: 400,
                        w: 9,
                        h: 9,
                    }),
                    &p,
                ),
            ],
        );
        assert_eq!(out.dimensions(), (300, 300));
        assert_eq!(
            *out.get_pixel(250, 299),
            class_color(0),
            "left edge of the clipped box"
        );
        let strip = annotate(
            &DynamicImage::ImageRgb8(RgbImage::new(1, 5000)),
            &[(None, &p)],
        );
        assert_eq!(
            strip.dimensions(),
            (1, 5000),
            "a strip is not enlarged past MAX_ENLARGED_SIDE"
        );
    }

    /// Each tile is its face scaled to SHEET_FACE px, then a strip in its label's colour and one
    /// in its prediction's; the grid wraps after eight; the sheet is at least as wide as its title.
    #[test]
    fn contact_sheet_tiles_faces_over_their_classes() {
        let faces: Vec<DynamicImage> = (0..10u8)
            .map(|i| {
                DynamicImage::ImageLuma8(image::GrayImage::from_pixel(
                    48,
                    48,
                    image::Luma([20 * i]),
                ))
            })
            .collect();
        let tiles: Vec<SheetTile> = faces
            .iter()
            .enumerate()
            .map(|(i, f)| SheetTile {
                face: f,
                upper: (i % 3, format!("c{} 10%", i % 3)),
                lower: (3, "c3 90%".into()),
            })
            .collect();
        let sheet = contact_sheet("ten faces", &tiles);
        let line = draw::CHAR_HEIGHT + 4;
        let top = SHEET_GAP + line + SHEET_GAP;
        let tile_h = SHEET_FACE + 2 * line;
        assert_eq!(
            sheet.dimensions(),
            (
                SHEET_GAP + 8 * (SHEET_FACE + SHEET_GAP),
                top + 2 * (tile_h + SHEET_GAP)
            )
        );
        for i in [0u32, 7, 8, 9] {
            let (x, y) = (
                SHEET_GAP + (i % 8) * (SHEET_FACE + SHEET_GAP),
                top + (i / 8) * (tile_h + SHEET_GAP),
            );
            let v = 20 * i as u8;
            assert_eq!(*sheet.get_pixel(x + 60, y + 60), Rgb([v, v, v]), "face {i}");
            assert_eq!(
                *sheet.get_pixel(x + SHEET_FACE - 1, y + SHEET_FACE + 1),
                class_color(i as usize % 3),
                "label strip {i}"
            );
            assert_eq!(
                *sheet.get_pixel(x + SHEET_FACE - 1, y + SHEET_FACE + line + 1),
                class_color(3),
                "prediction strip {i}"
            );
        }
        let one = contact_sheet("a title wider than one tile of the sheet", &tiles[..1]);
        assert_eq!(
            one.width(),
            draw::text_width("a title wider than one tile of the sheet") + 2 * SHEET_GAP
        );
    }
}
