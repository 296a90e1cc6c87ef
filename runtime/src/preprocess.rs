//! Image loading and the model-input transform the metadata prescribes: colour conversion (gray or
//! RGB), bilinear resize to the input size (or to the input size plus `fer.crop_pad` and its
//! centre crop, `fer.eval_view`), scaling to [0, 1], per-channel `(x - mean) / std`, and
//! replication of a gray image to 3 channels when the model takes 3; and the test-time
//! augmentation views ([`Tta`]).
//!
//! Gray uses the ITU-R BT.601 weights (0.299 R + 0.587 G + 0.114 B), as OpenCV's `BGR2GRAY` and
//! PIL's `convert("L")` do, so a gray-trained model sees what those pipelines produced.

use crate::error::{FerError, Result};
use crate::metadata::{ColorMode, EvalView, ModelInfo};
use image::{DynamicImage, GrayImage, ImageReader};
use ndarray::{Array3, Array4, Axis};
use rayon::prelude::*;
use std::path::Path;

/// Limits applied before an image is decoded, so a hostile or huge file fails fast and cheaply.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    /// Most pixels (width x height) an image may claim in its header.
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    /// 100 megapixels: far beyond any camera frame, far below what exhausts an edge device.
    fn default() -> Self {
        ImageLimits {
            max_pixels: 100_000_000,
        }
    }
}

/// Opens and decodes an image, checking its header dimensions against `limits` first.
///
/// ```no_run
/// use fer_runtime::{load_image, ImageLimits};
/// let img = load_image("face.png".as_ref(), &ImageLimits::default())?;
/// println!("{}x{}", img.width(), img.height());
/// # Ok::<(), fer_runtime::FerError>(())
/// ```
pub fn load_image(path: &Path, limits: &ImageLimits) -> Result<DynamicImage> {
    let mut magic = [0u8; 16];
    let n = read_prefix(path, &mut magic).map_err(|e| FerError::io(path, e))?;
    decode_checked(
        || ImageReader::open(path).map_err(|e| FerError::io(path, e)),
        &magic[..n],
        path,
        limits,
    )
}

/// Decodes an image held in memory (a frame of [`crate::stream::FrameStream`], an upload, a
/// camera buffer) as [`load_image`] decodes a file, with the same checks; `name` stands for the
/// file in errors ("stdin:3: cannot decode image: …").
///
/// ```no_run
/// use fer_runtime::{decode_image, ImageLimits};
/// let bytes = std::fs::read("face.jpg")?;
/// let img = decode_image(&bytes, "upload".as_ref(), &ImageLimits::default())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode_image(bytes: &[u8], name: &Path, limits: &ImageLimits) -> Result<DynamicImage> {
    let open = || Ok(ImageReader::new(std::io::Cursor::new(bytes)));
    decode_checked(open, &bytes[..bytes.len().min(16)], name, limits)
}

/// What [`load_image`] and [`decode_image`] share: the format from the first bytes (`magic`), the
/// header's size against `limits`, then the decode. `open` gives a fresh reader at the start.
fn decode_checked<R: std::io::BufRead + std::io::Seek>(
    open: impl Fn() -> Result<ImageReader<R>>,
    magic: &[u8],
    path: &Path,
    limits: &ImageLimits,
) -> Result<DynamicImage> {
    // The content decides, not the extension: text named `.jpg` is "not an image", not a JPEG
    // decoding error.
    let format = image::guess_format(magic).map_err(|_| FerError::NotAnImage {
        path: path.to_path_buf(),
    })?;
    let decode_error = |source| FerError::Decode {
        path: path.to_path_buf(),
        source,
    };
    // Header only: the decoder reads the dimensions without allocating the pixel buffer. The
    // image crate's own limits are lifted for this read so that our check, with its clearer
    // message, is the one that refuses a huge image.
    let mut header = open()?;
    header.set_format(format);
    header.no_limits();
    let (width, height) = header.into_dimensions().map_err(decode_error)?;
    if width as u64 * height as u64 > limits.max_pixels {
        return Err(FerError::ImageTooLarge {
            path: path.to_path_buf(),
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    let mut reader = open()?;
    reader.set_format(format);
    let mut lim = image::Limits::default();
    // Second guard for formats whose header lies: at most 16 bytes per allowed pixel (RGBA16).
    lim.max_alloc = Some(limits.max_pixels.saturating_mul(16));
    reader.limits(lim);
    reader.decode().map_err(decode_error)
}

/// Reads up to `buf.len()` bytes from the start of the file.
fn read_prefix(path: &Path, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// BT.601 luma, rounded, from any image (alpha is ignored).
pub fn to_gray(img: &DynamicImage) -> GrayImage {
    let converted;
    let rgb = match img {
        DynamicImage::ImageLuma8(g) => return g.clone(),
        // Most decoded photos and frames: read in place, not copied first.
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => {
            converted = other.to_rgb8();
            &converted
        }
    };
    let (w, h) = rgb.dimensions();
    let data = rgb.as_raw().chunks_exact(3).map(|p| luma(p[0], p[1], p[2])).collect();
    GrayImage::from_raw(w, h, data).expect("buffer length matches dimensions")
}

/// One pixel's BT.601 luma, rounded half up. `+ 0.5` and truncation give `round()`'s answer for
/// every 8-bit colour (no weighted sum lands within rounding error of a half; the tests try all
/// 2^24), and unlike `round()`, which is a libm call on baseline x86-64, it vectorises: a
/// 640x480 frame took 1 ms before.
#[inline]
fn luma(r: u8, g: u8, b: u8) -> u8 {
    // `as u8` saturates: 255 stays 255.
    (0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32 + 0.5) as u8
}

/// Test-time augmentation: several views of each face, their class probabilities averaged
/// (`fer-run --tta`). The first view is always the model's own eval view (the centre crop for
/// ten-crop), and a face's `cam` comes from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tta {
    /// One view: the one the model's metadata prescribes.
    #[default]
    None,
    /// That view and its mirror image (2x the inference).
    Flip,
    /// IVSA's ten-crop (`fer-train`'s `train.ten_crop_eval`): the face resized to the input size
    /// plus `fer.crop_pad`, its centre and four corner crops, and their mirrors (10x).
    TenCrop,
}

impl Tta {
    /// Views per face.
    pub fn views(self) -> usize {
        match self {
            Tta::None => 1,
            Tta::Flip => 2,
            Tta::TenCrop => 10,
        }
    }
}

impl std::str::FromStr for Tta {
    type Err = FerError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "none" => Ok(Tta::None),
            "flip" => Ok(Tta::Flip),
            "ten-crop" | "tencrop" | "10-crop" => Ok(Tta::TenCrop),
            _ => Err(FerError::Invalid {
                what: "tta",
                value: s.into(),
                reason: "expected none, flip or ten-crop".into(),
            }),
        }
    }
}

impl std::fmt::Display for Tta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tta::None => "none",
            Tta::Flip => "flip",
            Tta::TenCrop => "ten-crop",
        })
    }
}

/// The transform from an image to one model input `[C, H, W]`.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    /// Input height and width.
    pub size: (usize, usize),
    pub color: ColorMode,
    /// Model input channels (1 or 3).
    pub channels: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// The training's crop margin (`fer.crop_pad`, 0 when the file does not say): the centre-crop
    /// and ten-crop views cut the input size out of a resize this much larger.
    pub crop_pad: usize,
    pub view: EvalView,
}

/// A face resized once, from which views are cut: 8-bit pixels, `src_channels` interleaved.
struct Resized {
    raw: Vec<u8>,
    width: usize,
    src_channels: usize,
}

impl Preprocessor {
    /// The transform a model's metadata prescribes.
    pub fn from_info(info: &ModelInfo) -> Self {
        let m = &info.metadata;
        Preprocessor {
            size: m.input_size,
            color: m.color,
            channels: info.channels,
            mean: m.mean.clone(),
            std: m.std.clone(),
            crop_pad: m.crop_pad.unwrap_or(0),
            view: m.eval_view,
        }
    }

    /// One image as a `[C, H, W]` tensor.
    ///
    /// ```
    /// use fer_runtime::{ColorMode, EvalView, Preprocessor};
    /// let pre = Preprocessor { size: (2, 2), color: ColorMode::Gray, channels: 3,
    ///                          mean: vec![0.5; 3], std: vec![0.5; 3], crop_pad: 0, view: EvalView::Resize };
    /// let white = image::DynamicImage::new_rgb8(4, 4).brighten(255);
    /// let x = pre.tensor(&white);
    /// assert_eq!(x.shape(), &[3, 2, 2]); // gray replicated to the model's 3 channels
    /// assert!(x.iter().all(|v| (v - 1.0).abs() < 1e-6)); // (1 - 0.5) / 0.5
    /// ```
    pub fn tensor(&self, img: &DynamicImage) -> Array3<f32> {
        self.views(img, Tta::None).remove(0)
    }

    /// The `tta.views()` views of one image, the eval view first.
    pub fn views(&self, img: &DynamicImage, tta: Tta) -> Vec<Array3<f32>> {
        let (h, w) = self.size;
        let p = self.crop_pad;
        let padded = tta == Tta::TenCrop || self.view == EvalView::CentreCrop;
        let r = if padded {
            self.resized(img, h + p, w + p)
        } else {
            self.resized(img, h, w)
        };
        let main = if padded { (p / 2, p / 2) } else { (0, 0) };
        let mut offsets = vec![main];
        if tta == Tta::TenCrop {
            offsets.extend([(0, 0), (0, p), (p, 0), (p, p)]);
        }
        let mut out: Vec<Array3<f32>> = offsets.iter().map(|&(t, l)| self.cut(&r, t, l, false)).collect();
        if tta != Tta::None {
            out.extend(offsets.iter().map(|&(t, l)| self.cut(&r, t, l, true)));
        }
        out
    }

    /// The part of a `width` x `height` image that the first view of [`Preprocessor::views`] (the
    /// one a prediction's CAM comes from) shows the model, as `(x, y, w, h)`: the whole image, or
    /// for the centre crop (the eval view's, or ten-crop's first) its middle
    /// `input / (input + crop_pad)`.
    pub fn seen_region(&self, width: u32, height: u32, tta: Tta) -> (u32, u32, u32, u32) {
        if self.view != EvalView::CentreCrop && tta != Tta::TenCrop {
            return (0, 0, width, height);
        }
        let (h, w) = self.size;
        let p = self.crop_pad;
        let along = |len: u32, inside: usize| -> (u32, u32) {
            let scale = len as f64 / (inside + p) as f64;
            let start = (((p / 2) as f64 * scale).round() as u32).min(len.saturating_sub(1));
            let size = ((inside as f64 * scale).round() as u32).clamp(1, (len - start).max(1));
            (start, size)
        };
        let (x, cw) = along(width, w);
        let (y, ch) = along(height, h);
        (x, y, cw, ch)
    }

    fn resized(&self, img: &DynamicImage, h: usize, w: usize) -> Resized {
        let (raw, src_channels) = match self.color {
            ColorMode::Gray => (crate::resize::gray(&to_gray(img), w as u32, h as u32).into_raw(), 1),
            ColorMode::Rgb => (crate::resize::rgb(&img.to_rgb8(), w as u32, h as u32).into_raw(), 3),
        };
        Resized {
            raw,
            width: w,
            src_channels,
        }
    }

    /// The input-size window at (`top`, `left`) of `r`, mirrored if `flip`, scaled to [0, 1],
    /// normalised per channel; gray is replicated to every model channel.
    fn cut(&self, r: &Resized, top: usize, left: usize, flip: bool) -> Array3<f32> {
        let (h, w) = self.size;
        let sc = r.src_channels;
        let mut x = Array3::<f32>::zeros((self.channels, h, w));
        for (c, mut plane) in x.axis_iter_mut(Axis(0)).enumerate() {
            let (m, s) = (self.mean[c], self.std[c]);
            let src_c = if sc == 1 { 0 } else { c };
            let norm = |p: &[u8]| (p[src_c] as f32 / 255.0 - m) / s;
            for (y, mut row) in plane.axis_iter_mut(Axis(0)).enumerate() {
                let start = ((top + y) * r.width + left) * sc;
                let pixels = r.raw[start..start + w * sc].chunks_exact(sc);
                if flip {
                    row.iter_mut().zip(pixels.rev()).for_each(|(v, p)| *v = norm(p));
                } else {
                    row.iter_mut().zip(pixels).for_each(|(v, p)| *v = norm(p));
                }
            }
        }
        x
    }

    /// Several images as one `[N, C, H, W]` batch (converted in parallel).
    pub fn batch(&self, imgs: &[DynamicImage]) -> Array4<f32> {
        self.views_batch(imgs, Tta::None)
    }

    /// Every image's `tta.views()` views as one `[N * V, C, H, W]` batch, each image's views
    /// together, in [`Preprocessor::views`] order.
    pub fn views_batch(&self, imgs: &[DynamicImage], tta: Tta) -> Array4<f32> {
        let (h, w) = self.size;
        let v = tta.views();
        let mut x = Array4::<f32>::zeros((imgs.len() * v, self.channels, h, w));
        let views: Vec<Vec<Array3<f32>>> = imgs.par_iter().map(|img| self.views(img, tta)).collect();
        for (mut slot, t) in x.axis_iter_mut(Axis(0)).zip(views.iter().flatten()) {
            slot.assign(t);
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::RgbImage;

    #[test]
    fn rgb_channels_are_normalised_separately() {
        let pre = Preprocessor {
            size: (3, 5),
            color: ColorMode::Rgb,
            channels: 3,
            mean: vec![0.0, 0.5, 1.0],
            std: vec![1.0, 0.5, 2.0],
            crop_pad: 0,
            view: EvalView::Resize,
        };
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(7, 7, image::Rgb([255, 0, 51])));
        let x = pre.tensor(&img);
        assert_eq!(x.shape(), &[3, 3, 5]);
        for (c, want) in [1.0f32, -1.0, (0.2 - 1.0) / 2.0].into_iter().enumerate() {
            assert!(
                x.index_axis(Axis(0), c)
                    .iter()
                    .all(|v| (v - want).abs() < 1e-6),
                "channel {c}"
            );
        }
    }

    #[test]
    fn gray_uses_bt601_weights() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, image::Rgb([100, 150, 200])));
        let want = (0.299f32 * 100.0 + 0.587 * 150.0 + 0.114 * 200.0).round() as u8;
        assert_eq!(to_gray(&img).get_pixel(0, 0).0[0], want);
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(1, 1, image::Rgba([100, 150, 200, 7])));
        assert_eq!(to_gray(&rgba).get_pixel(0, 0).0[0], want);
    }

    #[test]
    fn fast_luma_rounds_as_round_does_for_every_colour() {
        for rgb in 0..1u32 << 24 {
            let [r, g, b, _] = rgb.to_le_bytes();
            let want = (0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32).round().clamp(0.0, 255.0) as u8;
            assert_eq!(luma(r, g, b), want, "{r} {g} {b}");
        }
    }

    fn gradient(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageLuma8(GrayImage::from_fn(w, h, |x, y| image::Luma([(x * 13 + y * 7) as u8])))
    }

    fn gray_pre(size: usize, crop_pad: usize, view: EvalView) -> Preprocessor {
        Preprocessor {
            size: (size, size),
            color: ColorMode::Gray,
            channels: 1,
            mean: vec![0.0],
            std: vec![1.0],
            crop_pad,
            view,
        }
    }

    #[test]
    fn centre_crop_view_is_the_middle_of_the_larger_resize() {
        let img = gradient(17, 17);
        let crop = gray_pre(8, 4, EvalView::CentreCrop).tensor(&img);
        let big = gray_pre(12, 0, EvalView::Resize).tensor(&img);
        assert_eq!(crop, big.slice(ndarray::s![.., 2..10, 2..10]));
        // and not the plain resize
        assert_ne!(crop, gray_pre(8, 4, EvalView::Resize).tensor(&img));
    }

    #[test]
    fn tta_views_are_the_eval_view_its_crops_and_their_mirrors() {
        let img = gradient(17, 15);
        let pre = gray_pre(8, 4, EvalView::Resize);
        let flip = pre.views(&img, Tta::Flip);
        assert_eq!(flip.len(), 2);
        assert_eq!(flip[0], pre.tensor(&img));
        assert_eq!(flip[1], flip[0].slice(ndarray::s![.., .., ..;-1]));
        let ten = pre.views(&img, Tta::TenCrop);
        assert_eq!(ten.len(), 10);
        let big = gray_pre(12, 0, EvalView::Resize).tensor(&img);
        for (k, (t, l)) in [(2, 2), (0, 0), (0, 4), (4, 0), (4, 4)].into_iter().enumerate() {
            let want = big.slice(ndarray::s![.., t..t + 8, l..l + 8]);
            assert_eq!(ten[k], want, "crop {k}");
            assert_eq!(ten[k + 5], want.slice(ndarray::s![.., .., ..;-1]), "mirror of crop {k}");
        }
        let batch = pre.views_batch(&[img.clone(), gradient(9, 9)], Tta::Flip);
        assert_eq!(batch.shape(), &[4, 1, 8, 8]);
        assert_eq!(batch.index_axis(Axis(0), 1), flip[1]);
    }

    #[test]
    fn the_seen_region_is_the_centre_crop_in_image_pixels() {
        let crop = gray_pre(48, 4, EvalView::CentreCrop);
        assert_eq!(crop.seen_region(104, 52, Tta::None), (4, 2, 96, 48));
        assert_eq!(crop.seen_region(104, 52, Tta::Flip), (4, 2, 96, 48));
        let resize = gray_pre(48, 4, EvalView::Resize);
        assert_eq!(resize.seen_region(104, 52, Tta::None), (0, 0, 104, 52));
        assert_eq!(resize.seen_region(104, 52, Tta::Flip), (0, 0, 104, 52));
        // Ten-crop's first view is the centre crop whatever the eval view.
        assert_eq!(resize.seen_region(104, 52, Tta::TenCrop), (4, 2, 96, 48));
        // Tiny images still give a non-empty region inside the image.
        let (x, y, w, h) = crop.seen_region(1, 1, Tta::None);
        assert!(x + w <= 1 && y + h <= 1 && w >= 1 && h >= 1);
    }

    #[test]
    fn tta_names_parse() {
        assert_eq!("ten-crop".parse::<Tta>().unwrap(), Tta::TenCrop);
        assert_eq!("TEN_CROP".parse::<Tta>().unwrap(), Tta::TenCrop);
        assert_eq!("flip".parse::<Tta>().unwrap(), Tta::Flip);
        assert!("five-crop".parse::<Tta>().is_err());
    }
}
