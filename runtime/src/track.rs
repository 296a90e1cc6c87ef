//! Faces followed through a stream's frames. Searching a whole frame is most of what a frame costs
//! (docs/RESULTS.md), and a face moves little from one frame to the next: each face is looked for
//! only near where it was, at sizes near its size. A face that is not found there, two faces that
//! close in on one box, or a frame of another size bring the full search back on that frame. So
//! every face being followed is either found again or searched for in the whole frame, and a
//! followed face's box is near, not equal to, the full search's (median IoU 0.94 on
//! `bench/stream_track.py`'s stream).
//!
//! Faces that come into view are found by a search of the whole frame spread over `every`
//! frames: the pyramid's levels are cut into `every` runs of about equal cost (fewer when it has
//! fewer levels, about 30 for a 640x480 frame), and each frame searches one run, so that only the first frame, and one where a face is lost, pays for a whole
//! search (searching every `every`-th frame whole made that frame several times a tracked one's
//! cost). The windows the runs find are grouped when the last run is done; a face among them that
//! is not being followed is looked for again in the current frame near where the sweep saw it,
//! and joins the followed faces if it is there. A face that comes into view is so found within
//! `2 · every - 1` frames: the sweep under way may have passed its size already. The levels a face
//! spans are neighbours, searched in the same frame or in neighbouring ones, so a face moving
//! while the sweep goes on still gathers its windows into one group.

use crate::face::{group_faces, BBox, FaceFinder, Faces, HaarCascade, HaarParams, Pyramid, SearchPicture};
use crate::preprocess::to_gray;
use image::{imageops, DynamicImage, GrayImage};
use std::ops::Range;

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
///     let faces = tracker.find(frame); // frame 0 searched whole, then a tenth of a search a frame
/// }
/// # Ok::<(), fer_runtime::FerError>(())
/// ```
#[derive(Debug)]
pub struct FaceTracker<'f> {
    finder: &'f FaceFinder,
    every: usize,
    /// The faces of the frame before, and that frame's size.
    last: Vec<BBox>,
    last_size: (u32, u32),
    /// The search of the whole frame under way, spread over frames.
    sweep: Option<Sweep>,
    full_searches: usize,
    sweeps: usize,
}

/// A search of the whole frame done a run of pyramid levels per frame.
#[derive(Debug)]
struct Sweep {
    pyramid: Pyramid,
    runs: Vec<Range<usize>>,
    /// How many runs are searched.
    done: usize,
    /// The windows they found, not yet grouped.
    windows: Vec<BBox>,
}

impl<'f> FaceTracker<'f> {
    /// A tracker whose search for faces coming into view is spread over `every` frames (1: the
    /// whole frame every frame, as [`FaceFinder::find`] alone would).
    pub fn new(finder: &'f FaceFinder, every: usize) -> FaceTracker<'f> {
        FaceTracker {
            finder,
            every: every.max(1),
            last: Vec::new(),
            last_size: (0, 0),
            sweep: None,
            full_searches: 0,
            sweeps: 0,
        }
    }

    /// The regions to classify in the next frame, as [`FaceFinder::find`] gives them.
    pub fn find(&mut self, img: &DynamicImage) -> Faces {
        self.find_prepared(img, None)
    }

    /// [`FaceTracker::find`] given what the search reads, made beforehand (on another thread) by
    /// [`FaceFinder::prepare`]; the same faces. A picture of another size than `img` is not used.
    pub fn find_prepared(&mut self, img: &DynamicImage, picture: Option<SearchPicture>) -> Faces {
        let Some(cascade) = self.finder.searches(img) else {
            self.last.clear();
            self.sweep = None;
            return self.finder.find(img);
        };
        let picture = picture
            .filter(|p| p.gray.dimensions() == (img.width(), img.height()))
            .unwrap_or_else(|| SearchPicture::new(to_gray(img), &self.finder.params));
        let size = picture.gray.dimensions();
        let followed = match self.every > 1 && size == self.last_size {
            true => self.follow(cascade, &picture.gray),
            false => None,
        };
        let boxes = match followed {
            Some(mut boxes) => {
                self.sweep_on(cascade, &picture, &mut boxes);
                boxes
            }
            None => {
                self.sweep = None;
                self.full_searches += 1;
                cascade.detect_with(&picture.gray, picture.shrunk.as_ref(), &self.finder.params)
            }
        };
        self.last.clone_from(&boxes);
        self.last_size = size;
        self.finder.faces_at(img, boxes)
    }

    /// How many frames were searched whole at once so far: the first, and those where a face
    /// was lost or the frame's size changed.
    pub fn full_searches(&self) -> usize {
        self.full_searches
    }

    /// How many searches spread over frames were completed so far.
    pub fn sweeps(&self) -> usize {
        self.sweeps
    }

    /// Each face of the frame before, found again near where it was; `None` as soon as one is
    /// not found. No faces before: none now.
    fn follow(&self, cascade: &HaarCascade, gray: &GrayImage) -> Option<Vec<BBox>> {
        let mut found: Vec<BBox> = Vec::with_capacity(self.last.len());
        for before in &self.last {
            let again = self.near(cascade, gray, before)?;
            // Two faces that close in on one box: which is which is for a full search to say.
            if found.iter().any(|f| f.iou(&again) > 0.5) {
                return None;
            }
            found.push(again);
        }
        Some(found)
    }

    /// The face in `gray` nearest to `before`, within its reach and at sizes near its size.
    fn near(&self, cascade: &HaarCascade, gray: &GrayImage, before: &BBox) -> Option<BBox> {
        let region = before.expand(REACH, gray.width(), gray.height());
        let params = HaarParams {
            min_size: ((before.w.min(before.h) as f64 / GROWTH) as u32).max(self.finder.params.min_size),
            max_size: (before.w.max(before.h) as f64 * GROWTH).ceil() as u32,
            ..self.finder.params
        };
        let crop = imageops::crop_imm(gray, region.x, region.y, region.w, region.h).to_image();
        cascade
            .detect(&crop, &params)
            .into_iter()
            .map(|b| BBox {
                x: b.x + region.x,
                y: b.y + region.y,
                ..b
            })
            .min_by_key(|b| centre_distance2(b, before))
    }

    /// Searches this frame's run of the sweep (starting a sweep if none is under way); when it
    /// was the last run, adds the faces the sweep found that are not among `followed`.
    fn sweep_on(&mut self, cascade: &HaarCascade, picture: &SearchPicture, followed: &mut Vec<BBox>) {
        let gray = &picture.gray;
        let params = &self.finder.params;
        let sweep = self.sweep.get_or_insert_with(|| {
            let pyramid = cascade.pyramid(gray.dimensions(), params);
            Sweep {
                runs: pyramid.runs(self.every),
                pyramid,
                done: 0,
                windows: Vec::new(),
            }
        });
        if let Some(run) = sweep.runs.get(sweep.done) {
            sweep.windows.extend(cascade.raw_windows(gray, picture.shrunk.as_ref(), &sweep.pyramid, run.clone()));
            sweep.done += 1;
        }
        if sweep.done < sweep.runs.len() {
            return;
        }
        let found = group_faces(&sweep.windows, params);
        self.sweep = None;
        self.sweeps += 1;
        // A face of the sweep is one being followed when either box holds the other's centre:
        // the sweep saw it up to `every` frames ago, and it may have moved since. Any other is
        // looked for again in this frame, as a followed face is: the sweep's windows come from
        // several frames, and those of a moving face can add up to a group no one frame has.
        for f in found {
            let known = |f: &BBox| followed.iter().any(|b| b.holds_centre_of(f) || f.holds_centre_of(b));
            if known(&f) {
                continue;
            }
            if let Some(now) = self.near(cascade, gray, &f).filter(|now| !known(now)) {
                followed.push(now);
            }
        }
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
