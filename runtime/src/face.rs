//! Face detection for full photos: OpenCV's Haar cascade (Viola–Jones, "Rapid Object Detection
//! using a Boosted Cascade of Simple Features", CVPR 2001, with Lienhart's extended feature set),
//! evaluated the way OpenCV's `CascadeClassifier::detectMultiScale` does: an image pyramid, a
//! sliding window per scale, each window normalised by its standard deviation (integral image +
//! squared integral image), boosted stages of trees, then `groupRectangles` to merge neighbours.
//!
//! It reads the XML of OpenCV's "new" cascade format (`<cascade>` with `<stages>`,
//! `<weakClassifiers>`, `<features>`), e.g. `haarcascade_frontalface_default.xml`.
//!
//! [`FaceFinder`] wraps the policy: pre-cropped faces are used as they are, full photos are
//! searched, and with no face found the whole image is classified (with a notice).

use crate::error::{FerError, Result};
use crate::preprocess::to_gray;
use image::{DynamicImage, GrayImage};
use rayon::prelude::*;
use serde::Serialize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// File name of the default frontal-face cascade, looked up by [`Detect::Auto`].
pub const DEFAULT_CASCADE: &str = "haarcascade_frontalface_default.xml";

/// A box in source-image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BBox {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl BBox {
    /// Intersection over union: 1 for the same box, 0 for boxes apart.
    ///
    /// ```
    /// use fer_runtime::BBox;
    /// let a = BBox { x: 0, y: 0, w: 10, h: 10 };
    /// assert_eq!(a.iou(&a), 1.0);
    /// assert_eq!(a.iou(&BBox { x: 5, y: 0, w: 10, h: 10 }), 50.0 / 150.0);
    /// assert_eq!(a.iou(&BBox { x: 20, y: 0, w: 5, h: 5 }), 0.0);
    /// ```
    pub fn iou(&self, other: &BBox) -> f64 {
        let w = (self.x + self.w).min(other.x + other.w).saturating_sub(self.x.max(other.x)) as f64;
        let h = (self.y + self.h).min(other.y + other.h).saturating_sub(self.y.max(other.y)) as f64;
        let inter = w * h;
        inter / ((self.w as f64 * self.h as f64) + (other.w as f64 * other.h as f64) - inter)
    }

    /// Whether the centre of `other` lies inside this box.
    ///
    /// ```
    /// use fer_runtime::BBox;
    /// let a = BBox { x: 0, y: 0, w: 10, h: 10 };
    /// assert!(a.holds_centre_of(&BBox { x: 4, y: 0, w: 10, h: 2 })); // centre (9, 1)
    /// assert!(!a.holds_centre_of(&BBox { x: 6, y: 0, w: 10, h: 10 }));
    /// ```
    pub fn holds_centre_of(&self, other: &BBox) -> bool {
        // In doubled pixels, so that the centre is a whole number.
        let inside = |start: u32, len: u32, o_start: u32, o_len: u32| {
            let c = 2 * o_start as u64 + o_len as u64;
            2 * start as u64 <= c && c < 2 * (start as u64 + len as u64)
        };
        inside(self.x, self.w, other.x, other.w) && inside(self.y, self.h, other.y, other.h)
    }

    /// The box grown by `margin` of its size on every side, clipped to a `width` x `height` image.
    ///
    /// ```
    /// use fer_runtime::BBox;
    /// let b = BBox { x: 10, y: 10, w: 20, h: 20 }.expand(0.25, 100, 35);
    /// assert_eq!(b, BBox { x: 5, y: 5, w: 30, h: 30 });
    /// ```
    pub fn expand(&self, margin: f32, width: u32, height: u32) -> BBox {
        let (dx, dy) = (
            (self.w as f32 * margin).round() as i64,
            (self.h as f32 * margin).round() as i64,
        );
        let x0 = (self.x as i64 - dx).max(0);
        let y0 = (self.y as i64 - dy).max(0);
        let x1 = (self.x as i64 + self.w as i64 + dx).min(width as i64);
        let y1 = (self.y as i64 + self.h as i64 + dy).min(height as i64);
        BBox {
            x: x0 as u32,
            y: y0 as u32,
            w: (x1 - x0).max(1) as u32,
            h: (y1 - y0).max(1) as u32,
        }
    }
}

/// Detection parameters, with OpenCV's usual values as defaults.
#[derive(Debug, Clone, Copy)]
pub struct HaarParams {
    /// Pyramid step between scales.
    pub scale_factor: f64,
    /// A face needs more than this many overlapping raw detections to be kept.
    pub min_neighbors: usize,
    /// Smallest face side, in source pixels.
    pub min_size: u32,
    /// Largest face side, in source pixels (0: no limit), as OpenCV's `maxSize`.
    pub max_size: u32,
    /// Photos are first shrunk to this longest side (boxes are mapped back): keeps detection
    /// fast on multi-megapixel frames where faces are large anyway.
    pub max_side: u32,
}

impl Default for HaarParams {
    fn default() -> Self {
        HaarParams {
            scale_factor: 1.1,
            min_neighbors: 3,
            min_size: 30,
            max_size: 0,
            max_side: 800,
        }
    }
}

#[derive(Debug, Clone)]
struct Rect {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
    weight: f64,
}

#[derive(Debug, Clone)]
struct Node {
    left: i32,
    right: i32,
    feature: usize,
    threshold: f64,
}

#[derive(Debug, Clone)]
struct Tree {
    nodes: Vec<Node>,
    leaves: Vec<f64>,
}

#[derive(Debug, Clone)]
struct Stage {
    threshold: f64,
    trees: Vec<Tree>,
}

/// A Haar cascade classifier loaded from OpenCV XML.
#[derive(Debug, Clone)]
pub struct HaarCascade {
    path: PathBuf,
    /// Training window (width, height), 24x24 for the frontal-face cascade.
    window: (usize, usize),
    /// The cascade as parsed: the tests' reference evaluation reads it.
    #[cfg(test)]
    stages: Vec<Stage>,
    #[cfg(test)]
    features: Vec<Vec<Rect>>,
    /// The cascade, flat, for [`LevelCascade`].
    shape: CascadeShape,
}

/// Largest cascade window side accepted: window coordinates are packed in 16 bits in
/// [`CascadeShape`] (OpenCV's cascades are 20 to 24 px).
const MAX_WINDOW: usize = 4096;

/// Integral images of one pyramid level, `(w + 1) x (h + 1)`, row-major.
struct Integral {
    stride: usize,
    sum: Vec<i64>,
    sqsum: Vec<i64>,
}

impl Integral {
    fn new(img: &GrayImage) -> Integral {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let stride = w + 1;
        let mut sum = vec![0i64; stride * (h + 1)];
        let mut sqsum = vec![0i64; stride * (h + 1)];
        let raw = img.as_raw();
        for y in 0..h {
            let (mut row, mut row_sq) = (0i64, 0i64);
            for x in 0..w {
                let v = raw[y * w + x] as i64;
                row += v;
                row_sq += v * v;
                let i = (y + 1) * stride + x + 1;
                sum[i] = sum[i - stride] + row;
                sqsum[i] = sqsum[i - stride] + row_sq;
            }
        }
        Integral { stride, sum, sqsum }
    }

    #[cfg(test)]
    fn rect(table: &[i64], stride: usize, x: usize, y: usize, w: usize, h: usize) -> i64 {
        let (a, b) = (y * stride + x, y * stride + x + w);
        let (c, d) = ((y + h) * stride + x, (y + h) * stride + x + w);
        table[d] - table[b] - table[c] + table[a]
    }
}

fn elements<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    node.children().filter(|n| n.is_element())
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    elements(node).find(|n| n.tag_name().name() == name)
}

impl HaarCascade {
    /// Reads a cascade from an OpenCV XML file.
    ///
    /// ```no_run
    /// use fer_runtime::{HaarCascade, HaarParams};
    /// let cascade = HaarCascade::load("haarcascade_frontalface_default.xml".as_ref())?;
    /// let gray = image::open("group.jpg").unwrap().to_luma8();
    /// for b in cascade.detect(&gray, &HaarParams::default()) {
    ///     println!("face at {},{} size {}x{}", b.x, b.y, b.w, b.h);
    /// }
    /// # Ok::<(), fer_runtime::FerError>(())
    /// ```
    pub fn load(path: &Path) -> Result<HaarCascade> {
        let text = std::fs::read_to_string(path).map_err(|e| FerError::io(path, e))?;
        Self::from_xml(&text, path)
    }

    /// Parses cascade XML; `path` only names the source in errors.
    pub fn from_xml(text: &str, path: &Path) -> Result<HaarCascade> {
        let err = |reason: String| FerError::Cascade {
            path: path.to_path_buf(),
            reason,
        };
        let doc = roxmltree::Document::parse(text).map_err(|source| FerError::Xml {
            path: path.to_path_buf(),
            source,
        })?;
        let cascade = doc
            .descendants()
            .find(|n| n.has_tag_name("cascade"))
            .ok_or_else(|| {
                err("no <cascade> element (only OpenCV's new cascade format is read)".into())
            })?;
        let text_of = |parent: roxmltree::Node, name: &str| -> Result<String> {
            child(parent, name)
                .and_then(|n| n.text())
                .map(|t| t.trim().to_string())
                .ok_or_else(|| {
                    err(format!(
                        "<{name}> missing in <{}>",
                        parent.tag_name().name()
                    ))
                })
        };
        let num = |parent: roxmltree::Node, name: &str| -> Result<f64> {
            let t = text_of(parent, name)?;
            t.parse::<f64>()
                .map_err(|_| err(format!("<{name}> is not a number: {t:?}")))
        };
        let numbers = |t: &str, what: &str| -> Result<Vec<f64>> {
            t.split_whitespace()
                .map(|s| {
                    s.parse::<f64>()
                        .map_err(|_| err(format!("bad number {s:?} in <{what}>")))
                })
                .collect()
        };
        for (tag, want) in [("stageType", "BOOST"), ("featureType", "HAAR")] {
            if let Ok(v) = text_of(cascade, tag) {
                if v != want {
                    return Err(err(format!("<{tag}> is {v}; only {want} is supported")));
                }
            }
        }
        let window = (
            num(cascade, "width")? as usize,
            num(cascade, "height")? as usize,
        );
        if window.0 < 3 || window.1 < 3 {
            return Err(err(format!(
                "window {}x{} is too small",
                window.0, window.1
            )));
        }
        if window.0 > MAX_WINDOW || window.1 > MAX_WINDOW {
            return Err(err(format!(
                "window {}x{} is larger than {MAX_WINDOW} px",
                window.0, window.1
            )));
        }

        let mut features = Vec::new();
        let fnode = child(cascade, "features").ok_or_else(|| err("<features> missing".into()))?;
        for (i, f) in elements(fnode).enumerate() {
            if let Some(t) = child(f, "tilted").and_then(|n| n.text()) {
                if t.trim() != "0" {
                    return Err(err(format!(
                        "feature {i} is tilted; tilted Haar features are not supported"
                    )));
                }
            }
            let rects =
                child(f, "rects").ok_or_else(|| err(format!("feature {i} has no <rects>")))?;
            let mut v = Vec::new();
            for r in elements(rects) {
                let n = numbers(r.text().unwrap_or(""), "rects")?;
                let [x, y, w, h, weight] = n[..] else {
                    return Err(err(format!(
                        "feature {i}: a rect needs 5 numbers, got {}",
                        n.len()
                    )));
                };
                if x < 0.0 || y < 0.0 || x + w > window.0 as f64 || y + h > window.1 as f64 {
                    return Err(err(format!(
                        "feature {i}: rect outside the {}x{} window",
                        window.0, window.1
                    )));
                }
                v.push(Rect {
                    x: x as usize,
                    y: y as usize,
                    w: w as usize,
                    h: h as usize,
                    weight,
                });
            }
            if v.len() > 3 {
                return Err(err(format!(
                    "feature {i} has {} rects; Haar features have at most 3",
                    v.len()
                )));
            }
            features.push(v);
        }

        let mut stages = Vec::new();
        let snode = child(cascade, "stages").ok_or_else(|| err("<stages> missing".into()))?;
        for (si, s) in elements(snode).enumerate() {
            let threshold = num(s, "stageThreshold")?;
            let weak = child(s, "weakClassifiers")
                .ok_or_else(|| err(format!("stage {si}: <weakClassifiers> missing")))?;
            let mut trees = Vec::new();
            for w in elements(weak) {
                let inner = numbers(&text_of(w, "internalNodes")?, "internalNodes")?;
                let leaves = numbers(&text_of(w, "leafValues")?, "leafValues")?;
                if inner.is_empty() || inner.len() % 4 != 0 {
                    return Err(err(format!(
                        "stage {si}: <internalNodes> needs groups of 4 numbers"
                    )));
                }
                let nodes: Vec<Node> = inner
                    .chunks_exact(4)
                    .map(|c| Node {
                        left: c[0] as i32,
                        right: c[1] as i32,
                        feature: c[2] as usize,
                        threshold: c[3],
                    })
                    .collect();
                for n in &nodes {
                    let in_range = |i: i32| {
                        if i > 0 {
                            (i as usize) < nodes.len()
                        } else {
                            ((-i) as usize) < leaves.len()
                        }
                    };
                    if n.feature >= features.len() || !in_range(n.left) || !in_range(n.right) {
                        return Err(err(format!(
                            "stage {si}: a node points outside its tree or the feature list"
                        )));
                    }
                }
                trees.push(Tree { nodes, leaves });
            }
            stages.push(Stage { threshold, trees });
        }
        if stages.is_empty() {
            return Err(err("no stages".into()));
        }
        let shape = CascadeShape::new(&stages, &features);
        Ok(HaarCascade {
            path: path.to_path_buf(),
            window,
            #[cfg(test)]
            stages,
            #[cfg(test)]
            features,
            shape,
        })
    }

    /// Where the cascade was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What OpenCV's `detectMultiScale` decides for the window at `(x, y)` of a pyramid level's
    /// integral images: the cascade as parsed, evaluated step by step as written, for the tests to
    /// hold [`LevelCascade::verdict`] to.
    #[cfg(test)]
    fn verdict(&self, ii: &Integral, x: usize, y: usize) -> Verdict {
        let (ww, wh) = self.window;
        let s = ii.stride;
        let area = ((ww - 2) * (wh - 2)) as f64;
        let sum = Integral::rect(&ii.sum, s, x + 1, y + 1, ww - 2, wh - 2);
        let sq = Integral::rect(&ii.sqsum, s, x + 1, y + 1, ww - 2, wh - 2);
        let Some(norm) = variance_norm(area, sum, sq) else {
            return Verdict::Flat;
        };
        for (si, stage) in self.stages.iter().enumerate() {
            let mut total = 0.0f64;
            for tree in &stage.trees {
                let mut idx = 0usize;
                let leaf = loop {
                    let node = &tree.nodes[idx];
                    let mut value = 0.0f32;
                    for (i, r) in self.features[node.feature].iter().enumerate() {
                        let term = r.weight as f32 * Integral::rect(&ii.sum, s, x + r.x, y + r.y, r.w, r.h) as f32;
                        value = if i == 0 { term } else { value + term };
                    }
                    let next = if ((value * norm) as f64) < node.threshold as f32 as f64 {
                        node.left
                    } else {
                        node.right
                    };
                    if next <= 0 {
                        break tree.leaves[(-next) as usize] as f32;
                    }
                    idx = next as usize;
                };
                total += leaf as f64;
            }
            if total < stage_threshold(stage.threshold) as f64 {
                return if si == 0 { Verdict::FirstStage } else { Verdict::LaterStage };
            }
        }
        Verdict::Face
    }

    /// Faces in a gray image, after grouping, in source pixels. The search is OpenCV's
    /// `CascadeClassifier::detectMultiScale` (4.x, CPU path): the same scales, pyramid, windows,
    /// single-precision evaluation and grouping (`tests/detector_vs_opencv.rs` holds it to
    /// OpenCV's own answers), after shrinking a photo larger than `params.max_side`.
    pub fn detect(&self, gray: &GrayImage, params: &HaarParams) -> Vec<BBox> {
        self.detect_with(gray, None, params)
    }

    /// [`HaarCascade::detect`] with `gray` already shrunk to the searched size (`shrunk`, not
    /// used unless of that size), as [`SearchPicture`] holds it.
    pub(crate) fn detect_with(&self, gray: &GrayImage, shrunk: Option<&GrayImage>, params: &HaarParams) -> Vec<BBox> {
        let pyramid = self.pyramid(gray.dimensions(), params);
        let raw = self.raw_windows(gray, shrunk, &pyramid, 0..pyramid.scales.len());
        group_faces(&raw, params)
    }

    /// The pyramid a search of an image of `size` walks, as OpenCV's scales: the factor grows in
    /// double precision and each level keeps it in single.
    pub(crate) fn pyramid(&self, size: (u32, u32), params: &HaarParams) -> Pyramid {
        let (searched, pre) = searched_size(size, params);
        let (ww, wh) = self.window;
        let step = params.scale_factor.max(1.01);
        let mut scales: Vec<f32> = Vec::new();
        let mut factor = 1.0f64;
        // Ends: the window (at least 3 px, checked on loading) outgrows the image.
        loop {
            let win = (cv_round(ww as f64 * factor), cv_round(wh as f64 * factor));
            if win.0 > searched.0 as i64 || win.1 > searched.1 as i64 {
                break;
            }
            let too_big = |side: i64| params.max_size > 0 && side as f64 * pre > params.max_size as f64;
            if too_big(win.0) || too_big(win.1) {
                break;
            }
            if (win.0 as f64 * pre) >= params.min_size as f64 && (win.1 as f64 * pre) >= params.min_size as f64 {
                scales.push(factor as f32);
            }
            factor *= step;
        }
        Pyramid {
            source: size,
            searched,
            pre,
            window: self.window,
            scales,
        }
    }

    /// The windows of `gray` that pass the whole cascade at the pyramid's levels `levels`
    /// (before grouping), in source pixels. `gray` is the size the pyramid was made for; `shrunk`,
    /// if given and of the searched size, is `gray` shrunk to it already.
    pub(crate) fn raw_windows(&self, gray: &GrayImage, shrunk: Option<&GrayImage>, pyramid: &Pyramid, levels: Range<usize>) -> Vec<BBox> {
        debug_assert_eq!(gray.dimensions(), pyramid.source);
        let scales = &pyramid.scales[levels];
        if scales.is_empty() || gray.dimensions() != pyramid.source {
            return Vec::new();
        }
        let pre = pyramid.pre;
        let shrunk_photo;
        let img = match shrunk.filter(|s| s.dimensions() == pyramid.searched) {
            _ if pyramid.searched == pyramid.source => gray,
            Some(shrunk) => shrunk,
            None => {
                shrunk_photo = crate::resize::gray(gray, pyramid.searched.0, pyramid.searched.1);
                &shrunk_photo
            }
        };
        let (ww, wh) = self.window;
        scales
            .par_iter()
            .flat_map_iter(|&sc| {
                let win = (
                    cv_round((ww as f32 * sc) as f64),
                    cv_round((wh as f32 * sc) as f64),
                );
                let (sw, sh) = pyramid.level_size(sc);
                if sw < ww || sh < wh {
                    return Vec::new();
                }
                // The first level is the picture itself: no copy.
                let shrunk;
                let level = if sw == img.width() as usize && sh == img.height() as usize {
                    img
                } else {
                    shrunk = pyramid_level(img, sw as u32, sh as u32);
                    &shrunk
                };
                let ii = Integral::new(level);
                let Some(laid_out) = LevelCascade::new(self, ii.stride) else {
                    return Vec::new();
                };
                let stride = window_stride(sc);
                // Rows are searched in parallel too: a level can be most of a search, and the
                // stream tracker searches a few levels at a time.
                let rows: Vec<usize> = (0..=(sh - wh)).step_by(stride).collect();
                rows.par_chunks(8)
                    .flat_map_iter(|rows| {
                        let mut found = Vec::new();
                        for &y in rows {
                            let mut x = 0;
                            while x <= sw - ww {
                                match laid_out.verdict(&ii, y * ii.stride + x) {
                                    Verdict::Face => found.push(BBox {
                                        x: (cv_round((x as f32 * sc) as f64) as f64 * pre).round() as u32,
                                        y: (cv_round((y as f32 * sc) as f64) as f64 * pre).round() as u32,
                                        w: (win.0 as f64 * pre).round() as u32,
                                        h: (win.1 as f64 * pre).round() as u32,
                                    }),
                                    // OpenCV's shortcut: past a window the first stage rejects,
                                    // the next one is not tried.
                                    Verdict::FirstStage => x += stride,
                                    Verdict::LaterStage | Verdict::Flat => {}
                                }
                                x += stride;
                            }
                        }
                        found
                    })
                    .collect::<Vec<BBox>>()
            })
            .collect()
    }
}

/// The size a picture of `size` is searched at (shrunk when its longer side is over
/// `params.max_side`), and the source pixels per searched pixel.
fn searched_size(size: (u32, u32), params: &HaarParams) -> ((u32, u32), f64) {
    let (w0, h0) = size;
    let longest = w0.max(h0);
    if params.max_side > 0 && longest > params.max_side {
        let r = params.max_side as f64 / longest as f64;
        (
            (((w0 as f64 * r).round() as u32).max(1), ((h0 as f64 * r).round() as u32).max(1)),
            longest as f64 / params.max_side as f64,
        )
    } else {
        (size, 1.0)
    }
}

/// A picture as a search reads it: gray, and for one past `max_side` that gray picture shrunk to
/// the size searched. Made by [`FaceFinder::prepare`] (for a stream, on the thread that decodes
/// the next frame while the one before is searched) for
/// [`FaceTracker::find_prepared`](crate::track::FaceTracker::find_prepared).
#[derive(Debug, Clone)]
pub struct SearchPicture {
    pub(crate) gray: GrayImage,
    /// `gray` at the searched size, when that is smaller.
    pub(crate) shrunk: Option<GrayImage>,
}

impl SearchPicture {
    /// `gray` made ready for searches with `params`.
    pub(crate) fn new(gray: GrayImage, params: &HaarParams) -> SearchPicture {
        let ((w, h), _) = searched_size(gray.dimensions(), params);
        let shrunk = ((w, h) != gray.dimensions()).then(|| crate::resize::gray(&gray, w, h));
        SearchPicture { gray, shrunk }
    }
}

/// The levels of one search: the image's size, the size it is searched at (`max_side`) and the
/// scales of its pyramid, smallest first. Made by [`HaarCascade::pyramid`]; a search may walk its
/// levels in parts ([`HaarCascade::raw_windows`]), as the stream tracker does.
#[derive(Debug, Clone)]
pub(crate) struct Pyramid {
    source: (u32, u32),
    searched: (u32, u32),
    /// Source pixels per searched pixel.
    pre: f64,
    window: (usize, usize),
    scales: Vec<f32>,
}

impl Pyramid {
    pub(crate) fn levels(&self) -> usize {
        self.scales.len()
    }

    /// The level's image size at scale `sc`.
    fn level_size(&self, sc: f32) -> (usize, usize) {
        let (iw, ih) = (self.searched.0 as f32, self.searched.1 as f32);
        (cv_round((iw / sc) as f64) as usize, cv_round((ih / sc) as f64) as usize)
    }

    /// How many windows level `i` evaluates: what its search costs, near enough.
    fn windows(&self, i: usize) -> u64 {
        let sc = self.scales[i];
        let ((sw, sh), (ww, wh)) = (self.level_size(sc), self.window);
        if sw < ww || sh < wh {
            return 0;
        }
        let stride = window_stride(sc);
        (((sw - ww) / stride + 1) * ((sh - wh) / stride + 1)) as u64
    }

    /// The levels cut into at most `n` runs of neighbouring levels, each with about an equal
    /// share of the windows (a level is never split, so a level of more than a share is a run
    /// alone, over it).
    pub(crate) fn runs(&self, n: usize) -> Vec<Range<usize>> {
        let costs: Vec<u64> = (0..self.levels()).map(|i| self.windows(i)).collect();
        let total: u64 = costs.iter().sum();
        let n = n.max(1) as u64;
        let (mut runs, mut start, mut sum) = (Vec::new(), 0, 0u64);
        for (i, c) in costs.iter().enumerate() {
            sum += c;
            // A run ends once the levels so far hold their share of the whole.
            if sum * n >= total * (runs.len() as u64 + 1) || i + 1 == costs.len() {
                runs.push(start..i + 1);
                start = i + 1;
            }
        }
        runs
    }
}

/// OpenCV's stride: every other window at fine scales, every window at coarse ones.
fn window_stride(scale: f32) -> usize {
    if scale >= 2.0 {
        1
    } else {
        2
    }
}

/// OpenCV's `cvRound` on a double: to the nearest integer, ties to even.
fn cv_round(v: f64) -> i64 {
    v.round_ties_even() as i64
}

/// A stage's threshold as OpenCV uses it: in single precision, lowered by its `THRESHOLD_EPS`
/// (1e-5) so that a sum equal to the threshold passes despite rounding.
fn stage_threshold(t: f64) -> f32 {
    t as f32 - 1e-5
}

/// The variance normalisation of a window (`HaarEvaluator::setWindow`): the inverse of
/// `sqrt(area · Σx² − (Σx)²)` over the window less a 1-pixel border, in single precision; `None`
/// for a window too flat to hold a face (pixel standard deviation 10 or less), which OpenCV
/// rejects before any stage.
fn variance_norm(area: f64, sum: i64, sq: i64) -> Option<f32> {
    let nf = area * sq as f64 - (sum as f64) * (sum as f64);
    if nf <= 0.0 {
        return None;
    }
    let norm = (1.0 / nf.sqrt()) as f32;
    (area * (norm as f64) < 0.1).then_some(norm)
}

/// What the cascade says about one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Passed every stage.
    Face,
    /// Rejected by the first stage: OpenCV then skips the next window along the row.
    FirstStage,
    LaterStage,
    /// Too flat to evaluate ([`variance_norm`]).
    Flat,
}

/// One level of the detector's image pyramid: `img` shrunk to `width` x `height` as OpenCV's
/// `detectMultiScale` shrinks it (`resize` with `INTER_LINEAR_EXACT`; the cascades were made for
/// those pixels): two taps per axis (no anti-aliasing), pixel centres aligned, 8-bit weights, the
/// horizontal pass kept at 8 fractional bits and the vertical at 16, rounded half up once at the
/// end. Bit for bit OpenCV's (`tests/detector_vs_opencv.rs`), and cheaper than an anti-aliased
/// resize, whose taps grow with the shrink factor.
fn pyramid_level(img: &GrayImage, width: u32, height: u32) -> GrayImage {
    // Per output index: the first source index and the second tap's weight out of 256 (the
    // first's is the rest); the edges take the edge pixel whole.
    let taps = |src: u32, dst: u32| -> Vec<(usize, u32)> {
        let scale = 1.0 / (dst as f64 / src as f64);
        (0..dst)
            .map(|d| {
                let f = scale * (d as f64 + 0.5) - 0.5;
                let i = f.floor();
                if i < 0.0 || src < 2 {
                    (0, 0)
                } else if i < (src - 1) as f64 {
                    (i as usize, ((f - i) * 256.0).round_ties_even() as u32)
                } else {
                    (src as usize - 2, 256)
                }
            })
            .collect()
    };
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (xs, ys) = (taps(w as u32, width), taps(h as u32, height));
    let src = img.as_raw();
    let row = |y: usize| -> Vec<u32> {
        let r = &src[y * w..][..w];
        xs.iter()
            .map(|&(x, b)| r[x] as u32 * (256 - b) + r[(x + 1).min(w - 1)] as u32 * b)
            .collect()
    };
    let mut out = Vec::with_capacity(width as usize * height as usize);
    let mut cached: Option<(usize, Vec<u32>, Vec<u32>)> = None;
    for &(y, b) in &ys {
        let (r0, r1) = match cached.take() {
            Some((cy, r0, r1)) if cy == y => (r0, r1),
            // Shrinking walks down the rows: the pair's second row is often the next pair's first.
            Some((cy, _, r1)) if cy + 1 == y => (r1, row((y + 1).min(h - 1))),
            _ => (row(y), row((y + 1).min(h - 1))),
        };
        out.extend(r0.iter().zip(&r1).map(|(&p, &q)| ((p * (256 - b) + q * b + (1 << 15)) >> 16) as u8));
        cached = Some((y, r0, r1));
    }
    GrayImage::from_raw(width, height, out).expect("length matches")
}

/// The cascade in flat arrays, in single precision as OpenCV keeps it, built once when it is
/// loaded: per stage its threshold and trees, per tree its nodes and leaves, per node its
/// rectangles' corners as window coordinates (packed `y << 16 | x`), weights and threshold.
/// Each pyramid level turns the corners into offsets for its row stride ([`LevelCascade::new`]).
#[derive(Debug, Clone)]
struct CascadeShape {
    /// Per stage: its threshold ([`stage_threshold`]) and its range in `trees`.
    stages: Vec<(f32, std::ops::Range<usize>)>,
    /// Per tree: its first node in `nodes` and its first leaf in `leaves`.
    trees: Vec<(usize, usize)>,
    nodes: Vec<LevelNode>,
    leaves: Vec<f32>,
}

#[derive(Debug, Clone, Copy)]
struct LevelNode {
    /// Up to three rectangles (Haar features have two or three): corners and weights; `rects`
    /// says how many are used. Offsets from a window's top-left integral entry in a
    /// [`LevelCascade`], packed window coordinates in the [`CascadeShape`].
    corners: [[u32; 4]; 3],
    weights: [f32; 3],
    rects: u32,
    threshold: f32,
    left: i32,
    right: i32,
}

/// A rectangle's four corners (top-left, top-right, bottom-left, bottom-right) as offsets in a
/// table of row stride `stride`.
fn corners(x: usize, y: usize, w: usize, h: usize, stride: usize) -> [usize; 4] {
    let a = y * stride + x;
    [a, a + w, a + h * stride, a + h * stride + w]
}

impl CascadeShape {
    fn new(stages: &[Stage], features: &[Vec<Rect>]) -> CascadeShape {
        let mut out = CascadeShape {
            stages: Vec::with_capacity(stages.len()),
            trees: Vec::new(),
            nodes: Vec::new(),
            leaves: Vec::new(),
        };
        for stage in stages {
            let first = out.trees.len();
            for tree in &stage.trees {
                out.trees.push((out.nodes.len(), out.leaves.len()));
                out.leaves.extend(tree.leaves.iter().map(|&l| l as f32));
                for node in &tree.nodes {
                    let rects = &features[node.feature];
                    let mut n = LevelNode {
                        corners: [[0; 4]; 3],
                        weights: [0.0; 3],
                        rects: rects.len() as u32,
                        threshold: node.threshold as f32,
                        left: node.left,
                        right: node.right,
                    };
                    // A stride of 1 << 16 packs y above x (the window is under 2^16 px).
                    for (i, r) in rects.iter().enumerate() {
                        n.corners[i] = corners(r.x, r.y, r.w, r.h, 1 << 16).map(|c| c as u32);
                        n.weights[i] = r.weight as f32;
                    }
                    out.nodes.push(n);
                }
            }
            out.stages.push((stage_threshold(stage.threshold), first..out.trees.len()));
        }
        out
    }
}

/// The cascade laid out for one pyramid level's integral images (row stride `stride`): each
/// feature's rectangles as the offsets of their four corners from a window's top-left entry, with
/// the rest of [`CascadeShape`]. Testing a window is then loads and multiply-adds from one base
/// index, without the corner arithmetic, the nested vectors and the bounds checks of the cascade
/// as parsed. The arithmetic and its order are [`HaarCascade::verdict`]'s, so the verdicts are
/// the same (`same_verdicts_as_…` test). Laying out a level is one pass over the nodes: 0.04 ms
/// for the frontal-face cascade, where walking the cascade as parsed took 0.12 ms (measured on
/// the stream of `bench/stream_track.py`, 1275 levels).
struct LevelCascade<'c> {
    shape: &'c CascadeShape,
    /// Offsets of the variance window's corners (the window less a 1-pixel border), and its area.
    norm: [u32; 4],
    norm_area: f64,
    nodes: Vec<LevelNode>,
    /// The largest offset any corner has: a window whose base index plus this is inside the
    /// tables is safe to test.
    reach: usize,
}

impl<'c> LevelCascade<'c> {
    /// `None` for a level so wide (over 170 million pixels a row) that its offsets overflow u32.
    fn new(cascade: &'c HaarCascade, stride: usize) -> Option<LevelCascade<'c>> {
        let shape = &cascade.shape;
        let (ww, wh) = cascade.window;
        let reach = corners(ww, wh, 0, 0, stride)[0];
        u32::try_from(reach).ok()?;
        // No offset is past `reach`: each fits in u32.
        let unpack = |packed: u32| ((packed >> 16) as usize * stride + (packed & 0xffff) as usize) as u32;
        Some(LevelCascade {
            shape,
            norm: corners(1, 1, ww - 2, wh - 2, stride).map(|c| c as u32),
            norm_area: ((ww - 2) * (wh - 2)) as f64,
            nodes: shape
                .nodes
                .iter()
                .map(|n| LevelNode {
                    corners: n.corners.map(|c| c.map(unpack)),
                    ..*n
                })
                .collect(),
            reach,
        })
    }

    /// The verdict on the window whose top-left integral entry is `base`.
    fn verdict(&self, ii: &Integral, base: usize) -> Verdict {
        // One bounds check for the whole window, then none.
        assert!(base + self.reach < ii.sum.len().min(ii.sqsum.len()));
        let (sum, sq) = (&ii.sum[base..], &ii.sqsum[base..]);
        // SAFETY: every corner offset is at most `reach`, checked above.
        let rect = |t: &[i64], c: &[u32; 4]| unsafe {
            let at = |i: usize| *t.get_unchecked(c[i] as usize);
            at(3) - at(1) - at(2) + at(0)
        };
        let Some(norm) = variance_norm(self.norm_area, rect(sum, &self.norm), rect(sq, &self.norm)) else {
            return Verdict::Flat;
        };
        for (si, (threshold, trees)) in self.shape.stages.iter().enumerate() {
            let mut total = 0.0f64;
            for &(first_node, first_leaf) in &self.shape.trees[trees.clone()] {
                let mut idx = first_node;
                let leaf = loop {
                    let node = &self.nodes[idx];
                    let mut value = node.weights[0] * rect(sum, &node.corners[0]) as f32;
                    for i in 1..node.rects as usize {
                        value += node.weights[i] * rect(sum, &node.corners[i]) as f32;
                    }
                    let next = if value * norm < node.threshold { node.left } else { node.right };
                    if next <= 0 {
                        break self.shape.leaves[first_leaf + (-next) as usize];
                    }
                    idx = first_node + next as usize;
                };
                total += leaf as f64;
            }
            if total < *threshold as f64 {
                return if si == 0 { Verdict::FirstStage } else { Verdict::LaterStage };
            }
        }
        Verdict::Face
    }
}

/// The faces among a search's raw windows: [`group_rectangles`] as `detectMultiScale` calls it
/// (`params.min_neighbors`, and OpenCV's similarity 0.2). The one grouping of a search, whether
/// its windows came in one call or in runs over several frames (the stream tracker).
pub(crate) fn group_faces(raw: &[BBox], params: &HaarParams) -> Vec<BBox> {
    group_rectangles(raw, params.min_neighbors, 0.2)
}

/// OpenCV's `groupRectangles`: clusters of similar boxes are averaged; clusters with at most
/// `threshold` members are dropped, as are boxes inside a stronger neighbouring box. A threshold
/// of 0 groups nothing and returns the boxes as they are, as OpenCV does.
pub fn group_rectangles(rects: &[BBox], threshold: usize, eps: f64) -> Vec<BBox> {
    if threshold == 0 {
        return rects.to_vec();
    }
    let n = rects.len();
    let similar = |a: &BBox, b: &BBox| {
        let delta = eps * (a.w.min(b.w) + a.h.min(b.h)) as f64 * 0.5;
        let close = |p: u32, q: u32| (p as f64 - q as f64).abs() <= delta;
        close(a.x, b.x)
            && close(a.y, b.y)
            && close(a.x + a.w, b.x + b.w)
            && close(a.y + a.h, b.y + b.h)
    };
    // Union-find partition into classes of similar boxes.
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..n {
        for j in (i + 1)..n {
            if similar(&rects[i], &rects[j]) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                if a != b {
                    parent[b] = a;
                }
            }
        }
    }
    let mut classes: std::collections::BTreeMap<usize, (f64, f64, f64, f64, usize)> =
        Default::default();
    for (i, r) in rects.iter().enumerate() {
        let c = classes.entry(root(&mut parent, i)).or_default();
        c.0 += r.x as f64;
        c.1 += r.y as f64;
        c.2 += r.w as f64;
        c.3 += r.h as f64;
        c.4 += 1;
    }
    // OpenCV averages in single precision and rounds ties to even.
    let avg: Vec<(BBox, usize)> = classes
        .values()
        .map(|&(x, y, w, h, k)| {
            let s = 1.0 / k as f32;
            let mean = |v: f64| (v as f32 * s).round_ties_even() as u32;
            (BBox { x: mean(x), y: mean(y), w: mean(w), h: mean(h) }, k)
        })
        .collect();
    let mut out = Vec::new();
    for (i, (r1, n1)) in avg.iter().enumerate() {
        if *n1 <= threshold {
            continue;
        }
        let inside_stronger = avg.iter().enumerate().any(|(j, (r2, n2))| {
            if i == j || *n2 <= threshold {
                return false;
            }
            let (dx, dy) = (
                cv_round(r2.w as f64 * eps),
                cv_round(r2.h as f64 * eps),
            );
            let (x1, y1, x2, y2) = (r1.x as i64, r1.y as i64, r2.x as i64, r2.y as i64);
            x1 >= x2 - dx
                && y1 >= y2 - dy
                && x1 + r1.w as i64 <= x2 + r2.w as i64 + dx
                && y1 + r1.h as i64 <= y2 + r2.h as i64 + dy
                && (*n2 > (*n1).max(3) || *n1 < 3)
        });
        if !inside_stronger {
            out.push(*r1);
        }
    }
    out
}

/// Which face detector to use, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Detect {
    /// The default cascade if it can be found (`$FER_ASSETS/`, then next to the executable), run
    /// only on images large enough to be photos rather than face crops.
    #[default]
    Auto,
    /// This cascade file, on every image.
    Haar(PathBuf),
    /// No detection: every image is a face crop.
    None,
}

impl FromStr for Detect {
    type Err = FerError;
    /// `auto`, `none` or `haar:<cascade.xml>`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Detect::Auto),
            "none" => Ok(Detect::None),
            _ => match s.strip_prefix("haar:") {
                Some(p) if !p.is_empty() => Ok(Detect::Haar(PathBuf::from(p))),
                _ => Err(FerError::Invalid {
                    what: "detector",
                    value: s.into(),
                    reason: "expected auto, none or haar:<cascade.xml>".into(),
                }),
            },
        }
    }
}

/// Where [`Detect::Auto`] looks for the default cascade, in order.
pub fn default_cascade_paths() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(dir) = std::env::var_os("FER_ASSETS").filter(|d| !d.is_empty()) {
        v.push(PathBuf::from(dir).join(DEFAULT_CASCADE));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        v.push(dir.join(DEFAULT_CASCADE));
    }
    v
}

/// One region to classify: a detected face, or the whole image.
#[derive(Debug, Clone)]
pub struct Face {
    /// The detected box (before the margin); `None` for the whole image.
    pub bbox: Option<BBox>,
    /// The pixels the model will see: the box grown by the margin, or the whole image.
    pub image: DynamicImage,
    /// Where `image` lies in the picture.
    pub region: BBox,
}

/// The regions found in one image.
#[derive(Debug, Clone)]
pub struct Faces {
    pub faces: Vec<Face>,
    /// Set when detection ran but found nothing and the whole image is used instead.
    pub notice: Option<String>,
}

/// Detection policy: which detector, on which images, and how much margin around each face.
#[derive(Debug, Clone)]
pub struct FaceFinder {
    cascade: Option<HaarCascade>,
    /// Run only on images whose shorter side is at least this (0: always).
    min_photo_side: u32,
    pub params: HaarParams,
    /// Margin added around each detected face, as a fraction of its size per side.
    pub margin: f32,
}

impl FaceFinder {
    /// Faces used as given: no detection.
    pub fn none() -> FaceFinder {
        FaceFinder {
            cascade: None,
            min_photo_side: 0,
            params: HaarParams::default(),
            margin: 0.15,
        }
    }

    /// The finder `detect` asks for; `input_size` (model H, W) decides which images count as
    /// photos in [`Detect::Auto`] mode (shorter side at least max(2 · input side, 200) pixels).
    ///
    /// ```
    /// use fer_runtime::{Detect, FaceFinder};
    /// let finder = FaceFinder::new(&Detect::None, (112, 112))?;
    /// let crop = image::DynamicImage::new_luma8(112, 112);
    /// let faces = finder.find(&crop);
    /// assert_eq!(faces.faces.len(), 1);
    /// assert!(faces.faces[0].bbox.is_none()); // the whole image is the face
    /// # Ok::<(), fer_runtime::FerError>(())
    /// ```
    pub fn new(detect: &Detect, input_size: (usize, usize)) -> Result<FaceFinder> {
        let mut f = FaceFinder::none();
        match detect {
            Detect::None => {}
            Detect::Haar(p) => f.cascade = Some(HaarCascade::load(p)?),
            Detect::Auto => {
                match default_cascade_paths().into_iter().find(|p| p.is_file()) {
                    Some(p) => f.cascade = Some(HaarCascade::load(&p)?),
                    None => tracing::warn!(
                        "no face detector: {DEFAULT_CASCADE} not found in $FER_ASSETS or next to the executable; \
                         images are classified whole (use --detect haar:<xml>)"
                    ),
                }
                f.min_photo_side = (2 * input_size.0.max(input_size.1) as u32).max(200);
            }
        }
        Ok(f)
    }

    /// Whether a detector is loaded.
    pub fn cascade(&self) -> Option<&HaarCascade> {
        self.cascade.as_ref()
    }

    /// The regions to classify in `img`.
    pub fn find(&self, img: &DynamicImage) -> Faces {
        match self.searches(img) {
            Some(cascade) => self.faces_at(img, cascade.detect(&to_gray(img), &self.params)),
            None => Faces::whole(img, None),
        }
    }

    /// What a search of `img` reads ([`SearchPicture`]: [`to_gray`], shrunk past `max_side`), or
    /// `None` when `img` is used whole. For a stream, made on the thread that decodes the next
    /// frame while the one before is tracked, and handed to
    /// [`FaceTracker::find_prepared`](crate::track::FaceTracker::find_prepared).
    pub fn prepare(&self, img: &DynamicImage) -> Option<SearchPicture> {
        self.searches(img).map(|_| SearchPicture::new(to_gray(img), &self.params))
    }

    /// The cascade to search `img` with, or `None` when `img` is used whole (no detector, or in
    /// auto mode an image too small to be a photo).
    pub(crate) fn searches(&self, img: &DynamicImage) -> Option<&HaarCascade> {
        self.cascade.as_ref().filter(|_| img.width().min(img.height()) >= self.min_photo_side)
    }

    /// The faces at `boxes` in reading order (top to bottom, then left to right), each cropped
    /// with the margin; the whole image, with a notice, when there are none.
    pub(crate) fn faces_at(&self, img: &DynamicImage, mut boxes: Vec<BBox>) -> Faces {
        if boxes.is_empty() {
            return Faces::whole(img, Some("no face found; the whole image was classified".into()));
        }
        boxes.sort_by_key(|b| (b.y, b.x));
        let faces = boxes
            .into_iter()
            .map(|b| {
                let m = b.expand(self.margin, img.width(), img.height());
                Face {
                    bbox: Some(b),
                    image: img.crop_imm(m.x, m.y, m.w, m.h),
                    region: m,
                }
            })
            .collect();
        Faces {
            faces,
            notice: None,
        }
    }
}

impl Faces {
    /// The whole image as the one region.
    fn whole(img: &DynamicImage, notice: Option<String>) -> Faces {
        Faces {
            faces: vec![Face {
                bbox: None,
                image: img.clone(),
                region: BBox {
                    x: 0,
                    y: 0,
                    w: img.width(),
                    h: img.height(),
                },
            }],
            notice,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"<?xml version="1.0"?>
<opencv_storage><cascade><stageType>BOOST</stageType><featureType>HAAR</featureType>
<height>4</height><width>4</width>
<stages><_><maxWeakCount>1</maxWeakCount><stageThreshold>0.5</stageThreshold>
<weakClassifiers><_><internalNodes>0 -1 0 0.0</internalNodes><leafValues>0.0 1.0</leafValues></_></weakClassifiers></_></stages>
<features><_><rects><_>0 0 4 2 -1.</_><_>0 2 4 2 1.</_></rects></_></features></cascade></opencv_storage>"#;

    #[test]
    fn a_one_feature_cascade_fires_where_the_bottom_is_brighter() {
        let c = HaarCascade::from_xml(TINY, Path::new("tiny.xml")).unwrap();
        // Dark top half, bright bottom half: the feature (bottom − top) is positive → right leaf 1.0 ≥ 0.5.
        let img = GrayImage::from_fn(4, 4, |_, y| image::Luma([if y < 2 { 10 } else { 200 }]));
        let ii = Integral::new(&img);
        assert_eq!(c.verdict(&ii, 0, 0), Verdict::Face);
        let flipped = GrayImage::from_fn(4, 4, |_, y| image::Luma([if y < 2 { 200 } else { 10 }]));
        assert_eq!(c.verdict(&Integral::new(&flipped), 0, 0), Verdict::FirstStage);
        // A window whose inner pixels barely vary (standard deviation 10 or less) is not tried.
        let flat = GrayImage::from_fn(4, 4, |_, y| image::Luma([if y < 2 { 100 } else { 110 }]));
        assert_eq!(c.verdict(&Integral::new(&flat), 0, 0), Verdict::Flat);
        let laid_out = LevelCascade::new(&c, 5).unwrap();
        assert_eq!(laid_out.verdict(&Integral::new(&flat), 0), Verdict::Flat);
    }

    /// OpenCV's `INTER_LINEAR_EXACT` shrink, worked by hand: 2:1 averages neighbours (rounded
    /// half down here: 50.5 → 50, since the vertical pass of a 1-row image weighs the row 256/256
    /// and adds the half once), a 1:1 axis is copied.
    #[test]
    fn pyramid_levels_interpolate_as_opencv() {
        let row = GrayImage::from_raw(4, 1, vec![0, 100, 200, 255]).unwrap();
        assert_eq!(pyramid_level(&row, 2, 1).into_raw(), vec![50, 228]);
        let flat = GrayImage::from_pixel(37, 23, image::Luma([77]));
        assert!(pyramid_level(&flat, 30, 19).pixels().all(|p| p[0] == 77));
    }

    /// Every window of several pyramid levels: the laid-out cascade gives every window the verdict
    /// the cascade as parsed gives it. With `$FER_ASSETS`, OpenCV's frontal-face cascade on the astronaut
    /// photo (thousands of windows reach late stages around the face); always, a two-stage cascade
    /// with two- and three-rectangle features and a two-node tree on a busy pattern.
    #[test]
    fn same_verdicts_as_the_cascade_as_parsed() {
        let check = |cascade: &HaarCascade, img: &GrayImage, min_passing: usize, levels: &[f64]| {
            let (ww, wh) = cascade.window;
            let (mut passing, mut windows) = (0, 0);
            for &f in levels {
                let (w, h) = ((img.width() as f64 / f) as u32, (img.height() as f64 / f) as u32);
                let level = pyramid_level(img, w, h);
                let ii = Integral::new(&level);
                let laid_out = LevelCascade::new(cascade, ii.stride).unwrap();
                for y in 0..=(h as usize - wh) {
                    for x in 0..=(w as usize - ww) {
                        let want = cascade.verdict(&ii, x, y);
                        assert_eq!(laid_out.verdict(&ii, y * ii.stride + x), want, "level {f}, window ({x}, {y})");
                        passing += (want == Verdict::Face) as usize;
                        windows += 1;
                    }
                }
            }
            eprintln!("{}: {passing} of {windows} windows pass", cascade.path.display());
            assert!(
                passing >= min_passing && passing < windows,
                "{}: {passing} of {windows} windows pass: the test needs both answers",
                cascade.path.display()
            );
        };
        let busy = GrayImage::from_fn(90, 70, |x, y| image::Luma([((x * x + 3 * y * y + x * y) % 256) as u8]));
        let two_stages = TINY
            .replace("<height>4</height><width>4</width>", "<height>6</height><width>5</width>")
            .replace(
                "</stages>",
                "<_><maxWeakCount>2</maxWeakCount><stageThreshold>-0.5</stageThreshold><weakClassifiers>\
                 <_><internalNodes>1 -1 1 0.05 0 -2 2 -0.1</internalNodes><leafValues>0.2 0.9 -0.4</leafValues></_>\
                 <_><internalNodes>0 -1 2 0.0</internalNodes><leafValues>-0.3 0.5</leafValues></_>\
                 </weakClassifiers></_></stages>",
            )
            .replace(
                "</features>",
                "<_><rects><_>0 0 5 6 -1.</_><_>1 1 3 3 3.</_><_>2 4 2 2 2.</_></rects></_>\
                 <_><rects><_>0 0 2 6 -1.</_><_>2 0 3 6 1.</_></rects></_></features>",
            );
        let c = HaarCascade::from_xml(&two_stages, Path::new("two.xml")).unwrap();
        check(&c, &busy, 100, &[1.0, 1.1, 1.5, 2.3]);
        if let Some(dir) = std::env::var_os("FER_ASSETS") {
            let dir = std::path::PathBuf::from(dir);
            let c = HaarCascade::load(&dir.join(DEFAULT_CASCADE)).unwrap();
            let photo = image::open(dir.join("astronaut.png")).unwrap();
            // The face's neighbourhood, to keep the exhaustive scan short in debug builds.
            let crop = to_gray(&photo.crop_imm(140, 30, 180, 180));
            check(&c, &crop, 10, &[1.0, 1.1, 1.5, 2.3, 3.0, 3.5, 4.0]);
        } else {
            eprintln!("same_verdicts_as_the_cascade_as_parsed: FER_ASSETS not set, the real cascade is not checked");
        }
    }

    /// The stream tracker searches a frame's pyramid a few levels at a time. Its runs cover every
    /// level once, in order, with about equal shares of the windows; their windows together are
    /// the one search's, window for window, so grouped they are its faces. With `$FER_ASSETS`,
    /// on the astronaut photo, whole, padded into a 4:3 frame, and enlarged past `max_side`.
    #[test]
    fn a_search_in_runs_of_levels_finds_what_one_search_finds() {
        let Some(dir) = std::env::var_os("FER_ASSETS").map(std::path::PathBuf::from) else {
            eprintln!("a_search_in_runs_of_levels_finds_what_one_search_finds: FER_ASSETS not set, skipped");
            return;
        };
        let c = HaarCascade::load(&dir.join(DEFAULT_CASCADE)).unwrap();
        let photo = to_gray(&image::open(dir.join("astronaut.png")).unwrap());
        let mut frame = GrayImage::from_pixel(640, 480, image::Luma([90]));
        image::imageops::overlay(&mut frame, &image::imageops::resize(&photo, 300, 300, image::imageops::FilterType::Triangle), 200, 120);
        let large = image::imageops::resize(&photo, 1000, 1000, image::imageops::FilterType::Triangle);
        let params = HaarParams::default();
        for img in [&photo, &frame, &large] {
            let pyramid = c.pyramid(img.dimensions(), &params);
            assert!(pyramid.levels() > 10, "{} levels", pyramid.levels());
            let whole = c.raw_windows(img, None, &pyramid, 0..pyramid.levels());
            let faces = c.detect(img, &params);
            assert!(!faces.is_empty() && whole.len() > faces.len());
            let costs: Vec<u64> = (0..pyramid.levels()).map(|i| pyramid.windows(i)).collect();
            let total: u64 = costs.iter().sum();
            for n in [3, 10, 1000] {
                let runs = pyramid.runs(n);
                assert!(runs.len() <= n && runs.len() <= pyramid.levels(), "{n}: {runs:?}");
                assert_eq!(runs.iter().flat_map(|r| r.clone()).collect::<Vec<_>>(), (0..pyramid.levels()).collect::<Vec<_>>());
                let largest = *costs.iter().max().unwrap();
                for r in &runs {
                    let cost: u64 = costs[r.clone()].iter().sum();
                    assert!(cost <= total / n as u64 + largest, "{n}: run {r:?} costs {cost} of {total}");
                }
                let in_runs: Vec<BBox> = runs.iter().flat_map(|r| c.raw_windows(img, None, &pyramid, r.clone())).collect();
                assert_eq!(in_runs, whole, "{n} runs");
                assert_eq!(group_faces(&in_runs, &params), faces);
            }
            // As many runs as asked for, where there are levels enough for them.
            assert_eq!(pyramid.runs(3).len(), 3);
        }
        // An image smaller than the window has no levels, and no runs.
        let tiny = GrayImage::new(10, 10);
        let pyramid = c.pyramid(tiny.dimensions(), &params);
        assert_eq!((pyramid.levels(), pyramid.runs(5).len()), (0, 0));
        assert!(c.raw_windows(&tiny, None, &pyramid, 0..0).is_empty());
        for empty in [GrayImage::new(0, 0), GrayImage::new(0, 2000)] {
            assert!(c.detect(&empty, &params).is_empty());
        }
    }

    #[test]
    fn integral_sums_match_direct_sums() {
        let img = GrayImage::from_fn(5, 4, |x, y| image::Luma([(x * 7 + y * 13) as u8]));
        let ii = Integral::new(&img);
        let direct: i64 = (1..4)
            .flat_map(|y| (2..5).map(move |x| (x * 7 + y * 13) as i64))
            .sum();
        assert_eq!(Integral::rect(&ii.sum, ii.stride, 2, 1, 3, 3), direct);
    }

    #[test]
    fn grouping_merges_neighbours_and_drops_lonely_boxes() {
        let b = |x, y, s| BBox { x, y, w: s, h: s };
        let rects = [
            b(100, 100, 50),
            b(102, 101, 50),
            b(99, 98, 52),
            b(101, 100, 48),
            b(300, 300, 40),
        ];
        let g = group_rectangles(&rects, 3, 0.2);
        // x averages to 100.5, which rounds to even (OpenCV's cvRound); y to 99.75, w and h to 50.
        assert_eq!(g, vec![b(100, 100, 50)]);
        assert!(group_rectangles(&rects, 4, 0.2).is_empty());
        assert_eq!(group_rectangles(&rects, 0, 0.2), rects.to_vec(), "0: no grouping, as OpenCV");
    }

    #[test]
    fn detect_option_parses() {
        assert_eq!("none".parse::<Detect>().unwrap(), Detect::None);
        assert_eq!(
            "haar:x.xml".parse::<Detect>().unwrap(),
            Detect::Haar("x.xml".into())
        );
        assert!("haar:".parse::<Detect>().is_err());
        assert!("yolo".parse::<Detect>().is_err());
    }

    #[test]
    fn malformed_cascades_are_refused_with_the_reason() {
        let e = HaarCascade::from_xml("<a/>", Path::new("x.xml")).unwrap_err();
        assert!(
            e.to_string().contains("x.xml") && e.to_string().contains("<cascade>"),
            "{e}"
        );
        let bad = TINY.replace("0 -1 0 0.0", "0 -1 7 0.0");
        assert!(HaarCascade::from_xml(&bad, Path::new("x.xml")).is_err());
        // Shapes the detector cannot lay out are refused when read, not met mid-detection.
        let four = TINY.replace("<_>0 2 4 2 1.</_>", "<_>0 2 4 2 1.</_><_>0 0 1 1 1.</_><_>0 1 1 1 1.</_>");
        let e = HaarCascade::from_xml(&four, Path::new("x.xml")).unwrap_err().to_string();
        assert!(e.contains("feature 0 has 4 rects"), "{e}");
        let huge = TINY.replace("<width>4</width>", "<width>5000</width>");
        let e = HaarCascade::from_xml(&huge, Path::new("x.xml")).unwrap_err().to_string();
        assert!(e.contains("larger than 4096"), "{e}");
        assert!(matches!(
            HaarCascade::from_xml("<cascade", Path::new("x.xml")),
            Err(FerError::Xml { .. })
        ));
    }
}
