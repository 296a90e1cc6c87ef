//! Bilinear ("Triangle") resize of 8-bit images that reproduces `image::imageops::resize(..,
//! FilterType::Triangle)` bit for bit, several times faster.
//!
//! Why its own code: the trainer resizes its faces with the `image` crate's Triangle filter, so
//! the runtime has to feed a model exactly those pixels (parity), but `image` samples one pixel at
//! a time through its generic pixel API and walks the columns of its float buffer, which cost
//! 0.23 ms per 48→112 px gray face, a third of a 112 px MobileNetV2 on ONNX Runtime. This version
//! does the same floating-point operations in the same order per output value (weights from the
//! same formula, accumulated tap by tap, rounded half away from zero), only laid out so that the
//! vertical pass runs along contiguous rows. `tests::matches_image_crate_bit_for_bit` pins that.

/// The taps of every output index along one axis, padded to one width so the inner loops have
/// a fixed trip count: output `o` reads source indices `first[o] ..= first[o] + width - 1` with
/// `weights[o * width ..][..width]`. Padding weights are zero and come before the real ones, so
/// the running sum stays exactly what `image` computes (0 + 0·x = 0, then the same additions).
struct Taps {
    width: usize,
    first: Vec<usize>,
    weights: Vec<f32>,
}

/// `image`'s `vertical_sample` / `horizontal_sample` weights (Triangle kernel, support 1,
/// widened by the ratio when shrinking, normalised by their sum).
fn axis_taps(src_len: u32, dst_len: u32) -> Taps {
    let ratio = src_len as f32 / dst_len as f32;
    let sratio = if ratio < 1.0 { 1.0 } else { ratio };
    let src_support = sratio; // the Triangle filter's support (1.0) times sratio
                              // Every window holds at most 2 * ceil(support) + 1 taps, so pad to that width up front and
                              // fill one flat buffer (no per-output allocations).
    let width = (2.0 * src_support.ceil()) as usize + 1;
    let width = width.min(src_len.max(1) as usize);
    let mut taps = Taps {
        width,
        first: Vec::with_capacity(dst_len as usize),
        weights: Vec::with_capacity(dst_len as usize * width),
    };
    let mut window = Vec::with_capacity(width);
    for out in 0..dst_len {
        let centre = (out as f32 + 0.5) * ratio;
        let left = ((centre - src_support).floor() as i64).clamp(0, src_len as i64 - 1);
        let right = ((centre + src_support).ceil() as i64).clamp(left + 1, src_len as i64);
        let centre = centre - 0.5;
        window.clear();
        window.extend((left..right).map(|i| triangle((i as f32 - centre) / sratio)));
        let mut sum = 0.0f32;
        for w in &window {
            sum += w;
        }
        // Pad on the left, or on the right where the window would start before index 0.
        let left = left as usize;
        let pad = width - window.len();
        let first = left.saturating_sub(pad);
        let before = left - first;
        taps.first.push(first);
        taps.weights.extend(std::iter::repeat_n(0.0, before));
        taps.weights.extend(window.iter().map(|w| w / sum));
        taps.weights.extend(std::iter::repeat_n(0.0, pad - before));
    }
    taps
}

fn triangle(x: f32) -> f32 {
    if x.abs() < 1.0 {
        1.0 - x.abs()
    } else {
        0.0
    }
}

/// `image`'s float-to-byte step: clamp to 0..=255, round half away from zero. Done without
/// `f32::round`, a libm call on baseline x86-64: for 0 <= t < 2^23 the fraction `t - trunc(t)`
/// is exact, so comparing it with 0.5 rounds exactly as `round` does.
#[inline]
fn to_byte(t: f32) -> u8 {
    let t = t.clamp(0.0, 255.0);
    let whole = t as u32;
    (whole + (t - whole as f32 >= 0.5) as u32) as u8
}

/// Resizes an interleaved 8-bit image of `channels` channels (row-major, `width * channels`
/// bytes per row) to `new_width` x `new_height`. Same result as
/// `image::imageops::resize(&buf, new_width, new_height, FilterType::Triangle)` on the
/// corresponding `ImageBuffer`.
///
/// ```
/// let gray = vec![0u8, 255, 255, 0]; // 2x2
/// let big = fer_runtime::resize::triangle_u8(&gray, 2, 2, 1, 4, 4);
/// assert_eq!(big.len(), 16);
/// ```
pub fn triangle_u8(
    src: &[u8],
    width: u32,
    height: u32,
    channels: usize,
    new_width: u32,
    new_height: u32,
) -> Vec<u8> {
    match channels {
        1 => resize_channels::<1>(src, width, height, new_width, new_height),
        3 => resize_channels::<3>(src, width, height, new_width, new_height),
        4 => resize_channels::<4>(src, width, height, new_width, new_height),
        2 => resize_channels::<2>(src, width, height, new_width, new_height),
        _ => panic!("triangle_u8 handles 1 to 4 channels, got {channels}"),
    }
}

fn resize_channels<const C: usize>(
    src: &[u8],
    width: u32,
    height: u32,
    new_width: u32,
    new_height: u32,
) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    assert_eq!(
        src.len(),
        w * h * C,
        "buffer length must be width * height * channels"
    );
    let out_len = new_width as usize * new_height as usize * C;
    if w == 0 || h == 0 {
        return vec![0; out_len];
    }
    if (width, height) == (new_width, new_height) {
        return src.to_vec();
    }
    let row = w * C;

    // Vertical pass into floats: each output row is a weighted sum of whole source rows, added
    // tap by tap (the order `image` adds them in for each pixel).
    let rows = axis_taps(height, new_height);
    let mut tmp = vec![0.0f32; new_height as usize * row];
    for (o, out) in tmp.chunks_exact_mut(row).enumerate() {
        let weights = &rows.weights[o * rows.width..][..rows.width];
        for (i, &wt) in weights.iter().enumerate() {
            let src_row = &src[(rows.first[o] + i) * row..][..row];
            for (t, &p) in out.iter_mut().zip(src_row) {
                *t += p as f32 * wt;
            }
        }
    }

    // Horizontal pass back to bytes.
    let cols = axis_taps(width, new_width);
    let k = cols.width;
    let new_row = new_width as usize * C;
    let mut out = vec![0u8; out_len];
    for (tmp_row, out_row) in tmp.chunks_exact(row).zip(out.chunks_exact_mut(new_row)) {
        for ((px, &first), weights) in out_row
            .chunks_exact_mut(C)
            .zip(&cols.first)
            .zip(cols.weights.chunks_exact(k))
        {
            let window = &tmp_row[first * C..][..k * C];
            let mut t = [0.0f32; C];
            for (taps, &wt) in window.chunks_exact(C).zip(weights) {
                for ch in 0..C {
                    t[ch] += taps[ch] * wt;
                }
            }
            for ch in 0..C {
                px[ch] = to_byte(t[ch]);
            }
        }
    }
    out
}

/// [`triangle_u8`] on a grayscale image.
pub fn gray(img: &image::GrayImage, new_width: u32, new_height: u32) -> image::GrayImage {
    let (w, h) = img.dimensions();
    let data = triangle_u8(img.as_raw(), w, h, 1, new_width, new_height);
    image::GrayImage::from_raw(new_width, new_height, data).expect("length matches")
}

/// [`triangle_u8`] on an RGB image.
pub fn rgb(img: &image::RgbImage, new_width: u32, new_height: u32) -> image::RgbImage {
    let (w, h) = img.dimensions();
    let data = triangle_u8(img.as_raw(), w, h, 3, new_width, new_height);
    image::RgbImage::from_raw(new_width, new_height, data).expect("length matches")
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::{resize, FilterType};

    /// A deterministic pseudo-random byte stream.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        crate::test_rng::lcg(seed).map(|s| (s >> 56) as u8).take(n).collect()
    }

    #[test]
    fn matches_image_crate_bit_for_bit() {
        // Up, down, one axis only, odd ratios, 1-pixel edges, and the sizes fer-run meets.
        let sizes: &[((u32, u32), (u32, u32))] = &[
            ((48, 48), (112, 112)),
            ((48, 48), (224, 224)),
            ((112, 112), (48, 48)),
            ((640, 480), (112, 112)),
            ((37, 91), (112, 48)),
            ((1, 1), (5, 3)),
            ((7, 1), (3, 9)),
            ((100, 60), (100, 61)),
            ((100, 60), (33, 60)),
            ((255, 3), (2, 2)),
        ];
        for (k, &((w, h), (nw, nh))) in sizes.iter().enumerate() {
            assert_matches_image(w, h, nw, nh, k as u64);
        }
    }

    #[test]
    fn matches_image_crate_on_random_sizes() {
        for k in 0..300u64 {
            let d = noise(4, 1000 + k);
            let (w, h) = (1 + d[0] as u32 % 70, 1 + d[1] as u32 % 70);
            let (nw, nh) = (1 + d[2] as u32 % 70, 1 + d[3] as u32 % 70);
            assert_matches_image(w, h, nw, nh, k);
        }
    }

    /// Gray and RGB noise images of `w` x `h` resized to `nw` x `nh` by both implementations.
    fn assert_matches_image(w: u32, h: u32, nw: u32, nh: u32, seed: u64) {
        let g = image::GrayImage::from_raw(w, h, noise((w * h) as usize, seed)).unwrap();
        let ours = gray(&g, nw, nh);
        assert_eq!(
            ours,
            resize(&g, nw, nh, FilterType::Triangle),
            "gray {w}x{h} -> {nw}x{nh}"
        );
        let c = image::RgbImage::from_raw(w, h, noise((3 * w * h) as usize, 100 + seed)).unwrap();
        let ours = rgb(&c, nw, nh);
        assert_eq!(
            ours,
            resize(&c, nw, nh, FilterType::Triangle),
            "rgb {w}x{h} -> {nw}x{nh}"
        );
    }

    #[test]
    fn byte_rounding_is_round_half_away_from_zero() {
        for t in [
            -3.0f32, 0.0, 0.49999997, 0.5, 1.5, 2.5, 127.49999, 254.5, 254.99998, 255.0, 300.0,
        ] {
            assert_eq!(to_byte(t), t.clamp(0.0, 255.0).round() as u8, "{t}");
        }
    }

    #[test]
    fn same_size_is_a_copy_and_empty_gives_black() {
        let g = image::GrayImage::from_raw(3, 2, vec![1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(gray(&g, 3, 2), g);
        assert_eq!(triangle_u8(&[], 0, 0, 1, 2, 2), vec![0; 4]);
    }
}
