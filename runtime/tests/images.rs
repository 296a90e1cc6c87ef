//! Image loading: each bad file gives an error that names it, and a huge image is refused from its
//! header, quickly, before any pixel buffer is allocated.

mod common;

use common::*;
use fer_runtime::{decode_image, load_image, FerError, ImageLimits};
use std::time::{Duration, Instant};

#[test]
fn good_images_of_each_format_load() {
    let dir = tmpdir("img-good");
    let img = pattern(33, 21, 1);
    for ext in ["png", "jpg", "bmp"] {
        let p = dir.join(format!("a.{ext}"));
        img.save(&p).unwrap();
        let back = load_image(&p, &ImageLimits::default()).unwrap();
        assert_eq!((back.width(), back.height()), (33, 21), "{ext}");
    }
}

#[test]
fn bad_files_give_errors_naming_them() {
    let dir = tmpdir("img-bad");
    let limits = ImageLimits::default();

    let missing = dir.join("missing.png");
    let e = load_image(&missing, &limits).unwrap_err();
    assert!(
        matches!(e, FerError::Io { .. }) && e.to_string().contains("missing.png"),
        "{e}"
    );

    let text = dir.join("notes.png");
    std::fs::write(&text, "just text, not pixels\n").unwrap();
    let e = load_image(&text, &limits).unwrap_err();
    assert!(
        matches!(e, FerError::NotAnImage { .. }) && e.to_string().contains("notes.png"),
        "{e}"
    );

    let cut = dir.join("cut.png");
    truncated_png(&cut);
    let e = load_image(&cut, &limits).unwrap_err();
    assert!(
        matches!(e, FerError::Decode { .. }) && e.to_string().contains("cut.png"),
        "{e}"
    );
}

#[test]
fn a_20000_by_20000_png_is_refused_before_decoding() {
    let dir = tmpdir("img-huge");
    let huge = dir.join("huge.png");
    std::fs::write(&huge, huge_png_header(20_000, 20_000)).unwrap();
    let t = Instant::now();
    let e = load_image(&huge, &ImageLimits::default()).unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    match &e {
        FerError::ImageTooLarge { width, height, .. } => {
            assert_eq!((*width, *height), (20_000, 20_000))
        }
        other => panic!("expected ImageTooLarge, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("huge.png") && msg.contains("20000x20000") && msg.contains("400.0 megapixels"),
        "{msg}"
    );
    // The limit is configurable: a normal image over a tiny limit is refused the same way.
    let small = dir.join("small.png");
    pattern(100, 100, 2).save(&small).unwrap();
    assert!(matches!(
        load_image(&small, &ImageLimits { max_pixels: 9_999 }),
        Err(FerError::ImageTooLarge { .. })
    ));
    assert!(load_image(&small, &ImageLimits { max_pixels: 10_000 }).is_ok());
}

/// Bytes in memory decode as their file does, with the same checks, and the errors carry the
/// name given for them.
#[test]
fn decode_image_reads_bytes_as_load_image_reads_files() {
    let dir = tmpdir("img-bytes");
    let limits = ImageLimits::default();
    let name = std::path::Path::new("stdin:7");
    for ext in ["png", "jpg", "webp"] {
        let p = dir.join(format!("a.{ext}"));
        pattern(33, 21, 3).save(&p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let from_bytes = decode_image(&bytes, name, &limits).unwrap();
        let from_file = load_image(&p, &limits).unwrap();
        assert_eq!(from_bytes.as_bytes(), from_file.as_bytes(), "{ext}");
    }
    let message = |bytes: &[u8], limits: &ImageLimits| decode_image(bytes, name, limits).unwrap_err();
    let e = message(b"just text", &limits);
    assert!(matches!(e, FerError::NotAnImage { .. }), "{e:?}");
    assert!(e.to_string().starts_with("stdin:7: not a supported image"), "{e}");
    let e = message(&[], &limits);
    assert!(matches!(e, FerError::NotAnImage { .. }), "{e:?}");
    let cut = dir.join("cut.png");
    truncated_png(&cut);
    let e = message(&std::fs::read(&cut).unwrap(), &limits);
    assert!(matches!(e, FerError::Decode { .. }) && e.to_string().starts_with("stdin:7: cannot decode"), "{e}");
    let e = message(&huge_png_header(20_000, 20_000), &limits);
    assert!(e.to_string().starts_with("stdin:7: image is 20000x20000"), "{e}");
}
