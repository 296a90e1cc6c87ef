//! The Haar cascade on a real photo: NASA's astronaut portrait (public domain, 512x512, one face
//! at roughly x 160..300, y 40..220). Skipped with a message when `$FER_ASSETS` is missing.

mod common;

use common::*;
use fer_runtime::{load_image, BBox, Detect, FaceFinder, HaarCascade, HaarParams, ImageLimits};

#[test]
fn finds_exactly_the_astronauts_face() {
    let Some(assets) = assets("finds_exactly_the_astronauts_face") else {
        return;
    };
    let img = load_image(&assets.join("astronaut.png"), &ImageLimits::default()).unwrap();
    let cascade = HaarCascade::load(&assets.join("haarcascade_frontalface_default.xml")).unwrap();
    let t = std::time::Instant::now();
    let boxes = cascade.detect(
        &fer_runtime::preprocess::to_gray(&img),
        &HaarParams::default(),
    );
    eprintln!("detected {boxes:?} in {:?}", t.elapsed());
    assert_eq!(boxes.len(), 1, "{boxes:?}");
    let b = boxes[0];
    let (cx, cy) = (b.x + b.w / 2, b.y + b.h / 2);
    assert!(
        (160..=300).contains(&cx) && (40..=220).contains(&cy),
        "centre {cx},{cy} of {b:?}"
    );
    assert!(
        b.x + 20 >= 160 && b.x + b.w <= 300 + 20 && b.y + 20 >= 40 && b.y + b.h <= 220 + 20,
        "{b:?}"
    );
    assert!((60..=180).contains(&b.w), "{b:?}");

    // The finder crops it with its margin; saved for a human to look at.
    let finder = FaceFinder::new(
        &Detect::Haar(assets.join("haarcascade_frontalface_default.xml")),
        (48, 48),
    )
    .unwrap();
    let faces = finder.find(&img);
    assert_eq!(faces.faces.len(), 1);
    assert!(faces.notice.is_none());
    let face = &faces.faces[0];
    assert_eq!(face.bbox, Some(b));
    let grown = b.expand(finder.margin, 512, 512);
    assert_eq!(
        (face.image.width(), face.image.height()),
        (grown.w, grown.h)
    );
    let out = tmpdir("face").join("astronaut_face.png");
    face.image.save(&out).unwrap();
    eprintln!("face crop written to {}", out.display());
}

#[test]
fn auto_mode_uses_small_images_whole_and_falls_back_when_no_face() {
    let Some(_) = assets("auto_mode_uses_small_images_whole_and_falls_back_when_no_face") else {
        return;
    };
    // $FER_ASSETS is set, so auto finds the default cascade.
    let finder = FaceFinder::new(&Detect::Auto, (48, 48)).unwrap();
    assert!(finder.cascade().is_some());
    let crop = image::DynamicImage::ImageRgb8(pattern(120, 120, 1));
    let faces = finder.find(&crop);
    assert!(faces.faces.len() == 1 && faces.faces[0].bbox.is_none() && faces.notice.is_none());
    // A large image with no face: the whole image, with a notice.
    let flat = image::DynamicImage::new_rgb8(400, 300);
    let faces = finder.find(&flat);
    assert_eq!(faces.faces.len(), 1);
    assert!(faces.faces[0].bbox.is_none());
    assert_eq!(
        (faces.faces[0].image.width(), faces.faces[0].image.height()),
        (400, 300)
    );
    assert!(faces.notice.as_deref().unwrap().contains("no face"));
}

#[test]
fn tracking_follows_a_moving_face_and_finds_newcomers_with_a_search_spread_over_frames() {
    let Some(_) = assets("tracking_follows_a_moving_face_and_finds_newcomers_with_a_search_spread_over_frames") else {
        return;
    };
    tracking_follows_faces_in_frames_enlarged(1);
}

/// Frames over the finder's `max_side` (800), which each search shrinks before it looks (the
/// sweep's run the whole frame, a followed face its region): the tracker follows the same faces
/// as on small frames, in nearly the full search's boxes.
#[test]
fn tracking_follows_faces_in_frames_past_max_side() {
    let Some(_) = assets("tracking_follows_faces_in_frames_past_max_side") else {
        return;
    };
    tracking_follows_faces_in_frames_enlarged(2);
}

/// The tracking test on `close_up`'s 640x480 frames enlarged `k` times.
fn tracking_follows_faces_in_frames_enlarged(k: u32) {
    use fer_runtime::track::FaceTracker;
    let finder = FaceFinder::new(&Detect::Auto, (48, 48)).unwrap();
    let portrait = astronaut();
    let boxes = |faces: &fer_runtime::Faces| -> Vec<BBox> { faces.faces.iter().filter_map(|f| f.bbox).collect() };
    let (width, height) = (640 * k, 480 * k);
    let enlarged = |img: image::DynamicImage| match k {
        1 => img,
        k => img.resize_exact(img.width() * k, img.height() * k, image::imageops::FilterType::Triangle),
    };
    // The face drifts right and down and comes closer; at frame 7 a second face comes in.
    let frame = |i: u32| enlarged(close_up(&portrait, 240 + 4 * i, (40 + 8 * i as i64, 20 + 4 * i as i64), i >= 7));
    let mut tracker = FaceTracker::new(&finder, 5);
    // The same frames with what the search reads made beforehand (gray, shrunk past max_side), as
    // fer-run's reader thread makes it: the same faces.
    let mut prepared = FaceTracker::new(&finder, 5);
    let mut newcomer_found = None;
    for i in 0..16 {
        let img = frame(i);
        let full = boxes(&finder.find(&img));
        let tracked = tracker.find(&img);
        let got = boxes(&tracked);
        assert_eq!(boxes(&prepared.find_prepared(&img, finder.prepare(&img))), got, "frame {i}");
        assert_eq!(full.len(), if i >= 7 { 2 } else { 1 }, "frame {i}: the full search finds {full:?}");
        // Every face tracked is one the full search finds, in nearly its box.
        for g in &got {
            assert!(full.iter().any(|f| g.iou(f) > 0.8), "frame {i}: tracked {g:?}, full search {full:?}");
        }
        // The first face is never lost; the newcomer, once found, neither.
        let want = if newcomer_found.is_some() { 2 } else { got.len().max(1) };
        assert_eq!(got.len(), want, "frame {i}: tracked {got:?}, full search {full:?}");
        if got.len() == 2 && newcomer_found.is_none() {
            newcomer_found = Some(i);
        }
        // What is cropped for the model is the box with the finder's margin.
        let m = got[0].expand(finder.margin, width, height);
        assert_eq!((tracked.faces[0].image.width(), tracked.faces[0].image.height()), (m.w, m.h));
        // Frame 0 alone is searched whole at once; a search spread over five frames ends on
        // frames 5, 10 and 15.
        assert_eq!((tracker.full_searches(), tracker.sweeps()), (1, i as usize / 5), "frame {i}");
    }
    // The newcomer is found by the end of the first sweep that saw it whole (frames 11 to 15)
    // at the latest.
    eprintln!("the newcomer of frame 7 was found on frame {newcomer_found:?}");
    assert!(newcomer_found.is_some_and(|f| f <= 15), "{newcomer_found:?}");
    // The faces leave: they are lost, so the frame is searched whole at once, and the picture is
    // classified whole.
    let empty = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(width, height, image::Rgb([96, 96, 96])));
    let gone = tracker.find(&empty);
    assert_eq!(tracker.full_searches(), 2);
    assert!(gone.faces.len() == 1 && gone.faces[0].bbox.is_none() && gone.notice.is_some());
    // With nothing to follow, the spread search goes on: a face that comes back is found when it
    // ends, five frames on, and no frame is searched whole at once.
    for k in 1..=5 {
        let back = boxes(&tracker.find(&frame(3)));
        assert_eq!((back.len(), tracker.full_searches()), (usize::from(k == 5), 2), "frame {k} back");
    }
    assert_eq!(boxes(&tracker.find(&frame(3))).len(), 1);
    // A frame of another size is searched whole.
    let smaller = image::DynamicImage::ImageRgb8(image::imageops::crop_imm(&frame(3).to_rgb8(), 0, 0, 600 * k, 440 * k).to_image());
    assert_eq!(boxes(&tracker.find(&smaller)).len(), 1);
    assert_eq!(tracker.full_searches(), 3);
    // What was prepared for a frame of another size is not used; a picture used whole has nothing.
    let mut fresh = FaceTracker::new(&finder, 5);
    let blank = finder.prepare(&image::DynamicImage::new_rgb8(width / 2, height / 2));
    assert_eq!(boxes(&fresh.find_prepared(&frame(3), blank)), boxes(&finder.find(&frame(3))));
    assert!(finder.prepare(&image::DynamicImage::new_rgb8(40, 40)).is_none());

    // Every frame searched whole: the finder's answers exactly.
    let mut every_frame = FaceTracker::new(&finder, 1);
    for i in [0, 1, 2, 13] {
        let img = frame(i);
        assert_eq!(boxes(&every_frame.find(&img)), boxes(&finder.find(&img)), "frame {i}");
    }
    assert_eq!((every_frame.full_searches(), every_frame.sweeps()), (4, 0));
}
