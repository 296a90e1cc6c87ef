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
fn tracking_follows_a_moving_face_and_searches_whole_frames_when_due_or_lost() {
    let Some(_) = assets("tracking_follows_a_moving_face_and_searches_whole_frames_when_due_or_lost") else {
        return;
    };
    use fer_runtime::track::FaceTracker;
    let finder = FaceFinder::new(&Detect::Auto, (48, 48)).unwrap();
    let portrait = astronaut();
    let boxes = |faces: &fer_runtime::Faces| -> Vec<BBox> { faces.faces.iter().filter_map(|f| f.bbox).collect() };
    // The face drifts right and down and comes closer; at frame 12 a second face comes in.
    let frame = |i: u32| close_up(&portrait, 240 + 4 * i, (40 + 8 * i as i64, 20 + 4 * i as i64), i >= 12);
    let mut tracker = FaceTracker::new(&finder, 5);
    for i in 0..16 {
        let img = frame(i);
        let full = boxes(&finder.find(&img));
        let tracked = tracker.find(&img);
        let got = boxes(&tracked);
        let faces_now = if i >= 12 { 2 } else { 1 };
        assert_eq!(full.len(), faces_now, "frame {i}: the full search finds {full:?}");
        // Frames 0, 5, 10 and 15 are searched whole; frames 12 to 14 follow the one face of
        // frame 11 and do not yet see the newcomer.
        let want = if (12..15).contains(&i) { 1 } else { faces_now };
        assert_eq!(got.len(), want, "frame {i}: tracked {got:?}, full search {full:?}");
        for (g, f) in got.iter().zip(&full) {
            assert!(g.iou(f) > 0.8, "frame {i}: tracked {g:?} against {f:?}");
        }
        // What is cropped for the model is the box with the finder's margin.
        let m = got[0].expand(finder.margin, 640, 480);
        assert_eq!((tracked.faces[0].image.width(), tracked.faces[0].image.height()), (m.w, m.h));
        assert_eq!(tracker.full_searches(), 1 + i as usize / 5, "frame {i}");
    }
    // The faces leave: the frame is searched whole at once, and the picture is classified whole.
    let empty = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(640, 480, image::Rgb([96, 96, 96])));
    let gone = tracker.find(&empty);
    assert_eq!(tracker.full_searches(), 5);
    assert!(gone.faces.len() == 1 && gone.faces[0].bbox.is_none() && gone.notice.is_some());
    // And with nothing to follow, every frame is searched whole until a face is found.
    let back = tracker.find(&frame(3));
    assert_eq!((tracker.full_searches(), boxes(&back).len()), (6, 1));
    // A frame of another size is searched whole.
    let smaller = image::DynamicImage::ImageRgb8(image::imageops::crop_imm(&frame(3).to_rgb8(), 0, 0, 600, 440).to_image());
    assert_eq!(boxes(&tracker.find(&smaller)).len(), 1);
    assert_eq!(tracker.full_searches(), 7);

    // Every frame searched whole: the finder's answers exactly.
    let mut every_frame = FaceTracker::new(&finder, 1);
    for i in [0, 1, 2, 13] {
        let img = frame(i);
        assert_eq!(boxes(&every_frame.find(&img)), boxes(&finder.find(&img)), "frame {i}");
    }
    assert_eq!(every_frame.full_searches(), 4);
}
