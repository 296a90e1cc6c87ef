//! The face detector against its reference: OpenCV's own `CascadeClassifier.detectMultiScale`
//! (the set-up's opencv-python-headless 4.11) with the same cascade file and parameters (scale
//! factor 1.1, 3 neighbours, 30 px minimum; then faces of 45 to 80 px only, OpenCV's minSize and
//! maxSize), on the same gray pixels (lossless PNGs written here).
//! Pictures: the astronaut portrait, and frames made from it — a face pasted on a camera-sized
//! background, two faces of different sizes (one mirrored), a dim low-contrast copy.
//! Skipped with a message without `$FER_ASSETS` or the set-up's Python.

use fer_runtime::{preprocess::to_gray, HaarCascade, HaarParams};
use image::{imageops, GrayImage, Luma};
use std::path::PathBuf;

fn assets() -> Option<PathBuf> {
    match std::env::var_os("FER_ASSETS").map(PathBuf::from) {
        Some(p) if p.join("astronaut.png").is_file() => Some(p),
        _ => {
            eprintln!("SKIP: FER_ASSETS is not set or lacks astronaut.png; run scripts/setup.sh");
            None
        }
    }
}

/// `face` shrunk to `side` px and pasted at `at` on a flat `w` x `h` background.
fn frame(w: u32, h: u32, pastes: &[(&GrayImage, u32, (i64, i64))]) -> GrayImage {
    let mut out = GrayImage::from_pixel(w, h, Luma([96]));
    for (face, side, at) in pastes {
        let small = imageops::resize(*face, *side, *side, imageops::FilterType::Triangle);
        imageops::overlay(&mut out, &small, at.0, at.1);
    }
    out
}

#[test]
fn same_faces_as_opencv() {
    let Some(assets) = assets() else { return };
    let Some(python) = fer_tests::python_or_skip() else { return };
    let cascade_path = assets.join(fer_runtime::face::DEFAULT_CASCADE);
    let astronaut = to_gray(&image::open(assets.join("astronaut.png")).unwrap());
    let mirrored = imageops::flip_horizontal(&astronaut);
    let dim = GrayImage::from_fn(512, 512, |x, y| Luma([(astronaut.get_pixel(x, y)[0] as f32 * 0.5 + 30.0) as u8]));
    let pictures: Vec<(&str, GrayImage)> = vec![
        ("astronaut", astronaut.clone()),
        ("frame_640x480", frame(640, 480, &[(&astronaut, 400, (120, 40))])),
        ("two_faces_800x450", frame(800, 450, &[(&astronaut, 300, (40, 100)), (&mirrored, 190, (520, 30))])),
        ("dim", dim),
    ];
    let dir = fer_tests::temp_dir("detector_vs_opencv");
    let paths: Vec<PathBuf> = pictures
        .iter()
        .map(|(name, img)| {
            let p = dir.join(format!("{name}.png"));
            img.save(&p).unwrap();
            p
        })
        .collect();
    let script = r#"
import json, sys
import cv2
cascade = cv2.CascadeClassifier(sys.argv[1])
assert not cascade.empty(), sys.argv[1]
for low, high in json.loads(sys.argv[2]):
    for path in sys.argv[3:]:
        gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=3, minSize=(low, low), maxSize=(high, high))
        print(json.dumps(sorted([int(v) for v in b] for b in boxes)))
"#;
    // OpenCV's defaults (30 px, no largest size: maxSize 0x0), then a band of face sizes.
    let sizes = [(30u32, 0u32), (45, 80)];
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&cascade_path)
        .arg(serde_json::to_string(&sizes).unwrap())
        .args(&paths)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let opencv: Vec<Vec<[u32; 4]>> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(opencv.len(), sizes.len() * pictures.len());

    let cascade = HaarCascade::load(&cascade_path).unwrap();
    let mut faces = Vec::new();
    for (&(min_size, max_size), want) in sizes.iter().zip(opencv.chunks(pictures.len())) {
        // OpenCV scans every picture whole: no shrinking of large ones first.
        let params = HaarParams {
            min_size,
            max_size,
            max_side: 0,
            ..HaarParams::default()
        };
        let mut found = 0;
        for ((name, img), want) in pictures.iter().zip(want) {
            let mut got: Vec<[u32; 4]> = cascade.detect(img, &params).iter().map(|b| [b.x, b.y, b.w, b.h]).collect();
            got.sort();
            eprintln!("{name}, faces of {min_size}..{max_size} px: fer {got:?}, OpenCV {want:?}");
            assert_eq!(&got, want, "{name}, faces of {min_size}..{max_size} px");
            found += got.len();
        }
        faces.push(found);
    }
    assert!(faces[0] >= 5, "the pictures should hold at least five faces between them, found {}", faces[0]);
    assert!(faces[1] < faces[0], "the band of sizes should leave some faces out: {faces:?}");
}
