//! Image loading and the model-input transform the metadata prescribes: colour conversion (gray or
//! RGB), bilinear resize to the input size, scaling to [0, 1], per-channel `(x - mean) / std`, and
//! replication of a gray image to 3 channels when the model takes 3.
//!
//! Gray uses the ITU-R BT.601 weights (0.299 R + 0.587 G + 0.114 B), as OpenCV's `BGR2GRAY` and
//! PIL's `convert("L")` do, so a gray-trained model sees what those pipelines produced.

use crate::error::{FerError, Result};
use crate::metadata::{ColorMode, ModelInfo};
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
    let open = || -> Result<ImageReader<std::io::BufReader<std::fs::File>>> {
        // The content decides, not the extension: text named `.jpg` is "not an image", not a
        // JPEG decoding error.
        let mut magic = [0u8; 16];
        let n = read_prefix(path, &mut magic).map_err(|e| FerError::io(path, e))?;
        let mut reader = ImageReader::open(path).map_err(|e| FerError::io(path, e))?;
        match image::guess_format(&magic[..n]) {
            Ok(format) => reader.set_format(format),
            Err(_) => {
                return Err(FerError::NotAnImage {
                    path: path.to_path_buf(),
                })
            }
        }
        Ok(reader)
    };
    // Header only: the decoder reads the dimensions without allocating the pixel buffer. The
    // image crate's own limits are lifted for this read so that our check, with its clearer
    // message, is the one that refuses a huge image.
    let mut header = open()?;
    header.no_limits();
    let (width, height) = header
        .into_dimensions()
        .map_err(|source| FerError::Decode {
            path: path.to_path_buf(),
            source,
        })?;
    if width as u64 * height as u64 > limits.max_pixels {
        return Err(FerError::ImageTooLarge {
            path: path.to_path_buf(),
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    let mut reader = open()?;
    let mut lim = image::Limits::default();
    // Second guard for formats whose header lies: at most 16 bytes per allowed pixel (RGBA16).
    lim.max_alloc = Some(limits.max_pixels.saturating_mul(16));
    reader.limits(lim);
    reader.decode().map_err(|source| FerError::Decode {
        path: path.to_path_buf(),
        source,
    })
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
    if let DynamicImage::ImageLuma8(g) = img {
        return g.clone();
    }
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let data = rgb
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0;
            (0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32)
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect();
    GrayImage::from_raw(w, h, data).expect("buffer length matches dimensions")
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
        }
    }

    /// One image as a `[C, H, W]` tensor.
    ///
    /// ```
    /// use fer_runtime::{ColorMode, Preprocessor};
    /// let pre = Preprocessor { size: (2, 2), color: ColorMode::Gray, channels: 3,
    ///                          mean: vec![0.5; 3], std: vec![0.5; 3] };
    /// let white = image::DynamicImage::new_rgb8(4, 4).brighten(255);
    /// let x = pre.tensor(&white);
    /// assert_eq!(x.shape(), &[3, 2, 2]); // gray replicated to the model's 3 channels
    /// assert!(x.iter().all(|v| (v - 1.0).abs() < 1e-6)); // (1 - 0.5) / 0.5
    /// ```
    pub fn tensor(&self, img: &DynamicImage) -> Array3<f32> {
        let (h, w) = self.size;
        let mut x = Array3::<f32>::zeros((self.channels, h, w));
        match self.color {
            ColorMode::Gray => {
                let g = crate::resize::gray(&to_gray(img), w as u32, h as u32);
                for (c, mut plane) in x.axis_iter_mut(Axis(0)).enumerate() {
                    let (m, s) = (self.mean[c], self.std[c]);
                    for (v, p) in plane.iter_mut().zip(g.as_raw()) {
                        *v = (*p as f32 / 255.0 - m) / s;
                    }
                }
            }
            ColorMode::Rgb => {
                let rgb = crate::resize::rgb(&img.to_rgb8(), w as u32, h as u32);
                let raw = rgb.as_raw();
                for (c, mut plane) in x.axis_iter_mut(Axis(0)).enumerate() {
                    let (m, s) = (self.mean[c], self.std[c]);
                    for (i, v) in plane.iter_mut().enumerate() {
                        *v = (raw[3 * i + c] as f32 / 255.0 - m) / s;
                    }
                }
            }
        }
        x
    }

    /// Several images as one `[N, C, H, W]` batch (converted in parallel).
    pub fn batch(&self, imgs: &[DynamicImage]) -> Array4<f32> {
        let (h, w) = self.size;
        let mut x = Array4::<f32>::zeros((imgs.len(), self.channels, h, w));
        let tensors: Vec<Array3<f32>> = imgs.par_iter().map(|img| self.tensor(img)).collect();
        for (mut slot, t) in x.axis_iter_mut(Axis(0)).zip(&tensors) {
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
    }
}
