//! The Haar cascade on a real photo: NASA's astronaut portrait (public domain, 512x512, one face
//! at roughly x 160..300, y 40..220). Skipped with a message when `$FER_ASSETS` is missing.

mod common;

use common::*;
use fer_runtime::{load_image, Detect, FaceFinder, HaarCascade, HaarParams, ImageLimits};

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
