//! Faces followed through a stream's frames. Searching a whole frame is most of what a frame costs
//! (docs/RESULTS.md), and a face moves little from one frame to the next: between full searches,
//! each face is looked for only near where it was, at sizes near its size. A face that is not
//! found there, two faces that close in on one box, or a frame of another size bring the full
//! search back on that frame. So every face being followed is either found again or searched for
//! in the whole frame; a face that newly came in is found at the next full search, at most
//! `every - 1` frames late; and a followed face's box is near, not equal to, the full search's
//! (median IoU 0.94 on `bench/stream_track.py`'s stream).

use crate::face::{BBox, FaceFinder, Faces, HaarCascade, HaarParams};
use crate::preprocess::to_gray;
use image::{imageops, DynamicImage, GrayImage};

/// How far a face may move between two frames and still be followed, as a fraction of its size
/// per side: the region searched is the face's box grown by this much.
const REACH: f32 = 0.5;
/// How much a face may grow or shrink between two frames and still be followed.
const GROWTH: f64 = 1.25;

/// Finds faces in consecutive frames of one stream (see the module's notes).
///
/// ```no_run
/// use fer_runtime::{track::FaceTracker, Detect, FaceFinder};
/// let finder = FaceFinder::new(&Detect::Auto, (48, 48))?;
/// let mut tracker = FaceTracker::new(&finder, 10);
/// # let frames: Vec<image::DynamicImage> = Vec::new();
/// for frame in &frames {
///     let faces = tracker.find(frame); // a full search on frames 0, 10, 20, ...
/// }
/// # Ok::<(), fer_runtime::FerError>(())
/// ```
#[derive(Debug)]
pub struct FaceTracker<'f> {
    finder: &'f FaceFinder,
    every: usize,
    /// Frames since the last full search.
    since_full: usize,
    /// The faces of the frame before, and that frame's size.
    last: Vec<BBox>,
    last_size: (u32, u32),
    full_searches: usize,
}

impl<'f> FaceTracker<'f> {
    /// A tracker that searches whole frames every `every` frames (1: every frame, as
    /// [`FaceFinder::find`] alone would).
    pub fn new(finder: &'f FaceFinder, every: usize) -> FaceTracker<'f> {
        FaceTracker {
            finder,
            every: every.max(1),
            since_full: 0,
            last: Vec::new(),
            last_size: (0, 0),
            full_searches: 0,
        }
    }

    /// The regions to classify in the next frame, as [`FaceFinder::find`] gives them.
    pub fn find(&mut self, img: &DynamicImage) -> Faces {
        let Some(cascade) = self.finder.searches(img) else {
            self.last.clear();
            return self.finder.find(img);
        };
        let gray = to_gray(img);
        let size = gray.dimensions();
        let due = self.since_full + 1 >= self.every;
        let followed = match self.last.is_empty() || due || size != self.last_size {
            true => None,
            false => self.follow(cascade, &gray),
        };
        let boxes = match followed {
            Some(boxes) => {
                self.since_full += 1;
                boxes
            }
            None => {
                self.since_full = 0;
                self.full_searches += 1;
                cascade.detect(&gray, &self.finder.params)
            }
        };
        self.last.clone_from(&boxes);
        self.last_size = size;
        self.finder.faces_at(img, boxes)
    }

    /// How many frames were searched whole so far.
    pub fn full_searches(&self) -> usize {
        self.full_searches
    }

    /// Each face of the frame before, found again near where it was; `None` as soon as one is
    /// not found.
    fn follow(&self, cascade: &HaarCascade, gray: &GrayImage) -> Option<Vec<BBox>> {
        let mut found: Vec<BBox> = Vec::with_capacity(self.last.len());
        for before in &self.last {
            let region = before.expand(REACH, gray.width(), gray.height());
            let params = HaarParams {
                min_size: ((before.w.min(before.h) as f64 / GROWTH) as u32).max(self.finder.params.min_size),
                max_size: (before.w.max(before.h) as f64 * GROWTH).ceil() as u32,
                ..self.finder.params
            };
            let crop = imageops::crop_imm(gray, region.x, region.y, region.w, region.h).to_image();
            let again = cascade
                .detect(&crop, &params)
                .into_iter()
                .map(|b| BBox {
                    x: b.x + region.x,
                    y: b.y + region.y,
                    ..b
                })
                .min_by_key(|b| centre_distance2(b, before))?;
            // Two faces that close in on one box: which is which is for a full search to say.
            if found.iter().any(|f| f.iou(&again) > 0.5) {
                return None;
            }
            found.push(again);
        }
        Some(found)
    }
}

/// Squared distance between the centres of two boxes, in doubled pixels (integers, no rounding).
fn centre_distance2(a: &BBox, b: &BBox) -> i64 {
    let dx = (2 * a.x + a.w) as i64 - (2 * b.x + b.w) as i64;
    let dy = (2 * a.y + a.h) as i64 - (2 * b.y + b.h) as i64;
    dx * dx + dy * dy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_between_centres() {
        let a = BBox { x: 0, y: 0, w: 10, h: 10 };
        assert_eq!(centre_distance2(&a, &BBox { x: 3, y: 4, w: 10, h: 10 }), 100);
    }
}
