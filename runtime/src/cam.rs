//! Class-activation-map overlays: the predicted class's map (EAC's `M = W_fc · F`, the model's
//! `cam` output) upsampled bilinearly to the image, min-max normalised, coloured with a jet-like
//! map and blended over the image, so one can see where the model looked.

use crate::error::{FerError, Result};
use image::{DynamicImage, Rgb, RgbImage};
use ndarray::{Array2, ArrayView2};
use std::path::Path;

/// Bilinear resize of a `[h, w]` map to `[height, width]` (pixel centres aligned, as PyTorch's
/// `interpolate(..., align_corners=False)`).
pub fn upsample(map: ArrayView2<f32>, height: usize, width: usize) -> Array2<f32> {
    let (h, w) = map.dim();
    let mut out = Array2::<f32>::zeros((height, width));
    if h == 0 || w == 0 {
        return out;
    }
    let coord = |i: usize, src: usize, dst: usize| -> (usize, usize, f32) {
        let c = ((i as f32 + 0.5) * src as f32 / dst as f32 - 0.5).clamp(0.0, (src - 1) as f32);
        let i0 = c.floor() as usize;
        (i0, (i0 + 1).min(src - 1), c - i0 as f32)
    };
    for y in 0..height {
        let (y0, y1, fy) = coord(y, h, height);
        for x in 0..width {
            let (x0, x1, fx) = coord(x, w, width);
            let top = map[[y0, x0]] * (1.0 - fx) + map[[y0, x1]] * fx;
            let bottom = map[[y1, x0]] * (1.0 - fx) + map[[y1, x1]] * fx;
            out[[y, x]] = top * (1.0 - fy) + bottom * fy;
        }
    }
    out
}

/// Min-max normalisation to [0, 1]; a flat map becomes all zeros.
pub fn normalize(map: &mut Array2<f32>) {
    let (lo, hi) = map
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let range = hi - lo;
    map.mapv_inplace(|v| {
        if range > 0.0 && range.is_finite() {
            (v - lo) / range
        } else {
            0.0
        }
    });
}

/// Jet-like colour for `v` in [0, 1]: blue, cyan, yellow, red.
///
/// ```
/// use fer_runtime::cam::jet;
/// assert_eq!(jet(0.0), [0, 0, 128]);
/// assert_eq!(jet(1.0), [128, 0, 0]);
/// ```
pub fn jet(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    let ch = |offset: f32| ((1.5 - (4.0 * v - offset).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [ch(3.0), ch(2.0), ch(1.0)]
}

/// `img` with the heat map of `map` blended over it (`alpha` = heat-map weight), same size as `img`.
pub fn overlay(img: &DynamicImage, map: ArrayView2<f32>, alpha: f32) -> RgbImage {
    let mut rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    let mut up = upsample(map, h as usize, w as usize);
    normalize(&mut up);
    for (x, y, p) in rgb.enumerate_pixels_mut() {
        let heat = jet(up[[y as usize, x as usize]]);
        let blend = |a: u8, b: u8| ((1.0 - alpha) * a as f32 + alpha * b as f32).round() as u8;
        *p = Rgb([
            blend(p[0], heat[0]),
            blend(p[1], heat[1]),
            blend(p[2], heat[2]),
        ]);
    }
    rgb
}

/// The heat map's weight in fer-run's overlays.
pub const ALPHA: f32 = 0.45;

/// Writes [`overlay`] as a PNG.
pub fn save_overlay(path: &Path, img: &DynamicImage, map: ArrayView2<f32>) -> Result<()> {
    crate::error::create_parent(path)?;
    overlay(img, map, ALPHA).save(path).map_err(FerError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn upsampling_keeps_constant_maps_and_interpolates_between_centres() {
        let flat = Array2::from_elem((3, 3), 2.0f32);
        assert!(upsample(flat.view(), 7, 5)
            .iter()
            .all(|v| (v - 2.0).abs() < 1e-6));
        let ramp = array![[0.0f32, 1.0]];
        let up = upsample(ramp.view(), 1, 4);
        // Output centres at 0.125, 0.375, 0.625, 0.875 of the width map to source -0.25..1.25, clamped.
        let want = [0.0, 0.25, 0.75, 1.0];
        for (g, w) in up.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{up:?}");
        }
    }

    #[test]
    fn overlay_has_the_image_size_and_marks_the_hot_spot_red() {
        let img = DynamicImage::new_rgb8(40, 30);
        let mut map = Array2::<f32>::zeros((4, 4));
        map[[0, 3]] = 1.0; // top right
        let out = overlay(&img, map.view(), 1.0);
        assert_eq!(out.dimensions(), (40, 30));
        let hot = out.get_pixel(39, 0);
        let cold = out.get_pixel(0, 29);
        assert!(hot[0] > 100 && hot[2] == 0, "{hot:?}");
        assert!(cold[2] > 100 && cold[0] == 0, "{cold:?}");
    }
}
