//! `fer-run` end to end: the built binary on a directory of images, JSON output, per-item errors
//! and the exit code, CAM overlays, bench and info.

mod common;

use common::*;
use fer_export::ColorMode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The fer-run under test; through `$FER_RUN_WRAPPER` (a command and its arguments) when set:
/// scripts/check_aarch64.sh runs an aarch64 build under qemu-user this way.
fn fer_run_command() -> Command {
    let bin = env!("CARGO_BIN_EXE_fer-run");
    let wrapper = std::env::var("FER_RUN_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(words).arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

fn fer_run(args: &[&str]) -> Output {
    let out = fer_run_command()
        .args(args)
        .output()
        .expect("fer-run runs");
    logged(&format!("fer-run {}", args.join(" ")), out)
}

/// `out`, after printing it for a failing test's log.
fn logged(command: &str, out: Output) -> Output {
    eprintln!(
        "{command}\n--- status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

struct Fixture {
    dir: PathBuf,
    model: String,
    images: PathBuf,
}

/// A cam-capable gray model and a directory of 5 images (png, jpg, bmp, one in a subdirectory)
/// plus a text file the directory walk must skip.
fn fixture(name: &str) -> Fixture {
    let dir = tmpdir(name);
    let spec = ConvSpec {
        cam: true,
        ..ConvSpec::gray(24, 21)
    };
    let model = save(&conv_model(&spec), &dir.join("model.onnx"))
        .display()
        .to_string();
    let images = dir.join("images");
    std::fs::create_dir_all(images.join("more")).unwrap();
    pattern(40, 30, 1).save(images.join("a.png")).unwrap();
    pattern(64, 64, 2).save(images.join("b.jpg")).unwrap();
    pattern(50, 45, 3).save(images.join("c.bmp")).unwrap();
    pattern(32, 32, 4).save(images.join("d.PNG")).unwrap();
    pattern(36, 44, 5).save(images.join("more/e.jpeg")).unwrap();
    std::fs::write(images.join("README.txt"), "not an image").unwrap();
    Fixture { dir, model, images }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A reader that goes away (`fer-run info ... | head -1`) ends fer-run quietly, by SIGPIPE as
/// other Unix tools end, not by a panic about a broken pipe.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_fer_run_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let f = fixture("closed_stdout");
    // The reader is gone before fer-run starts, so its first line meets a closed pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = fer_run_command()
        .args(["info", "-m", &f.model])
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}\n{stderr}", out.status);
}

#[test]
fn a_directory_yields_one_json_result_per_image() {
    let f = fixture("cli-dir");
    for backend in ["tract", "auto"] {
        let out = fer_run(&[
            "--model",
            &f.model,
            "--backend",
            backend,
            "--json",
            &s(&f.images),
        ]);
        assert!(out.status.success());
        let lines = json_lines(&out);
        let files: Vec<&str> = lines.iter().map(|l| l["file"].as_str().unwrap()).collect();
        let want: Vec<String> = ["a.png", "b.jpg", "c.bmp", "d.PNG", "more/e.jpeg"]
            .iter()
            .map(|n| s(&f.images.join(n)))
            .collect();
        assert_eq!(files, want);
        for l in &lines {
            assert!(l["box"].is_null(), "small images are classified whole: {l}");
            let probs = l["probs"].as_object().unwrap();
            assert_eq!(
                probs.keys().collect::<Vec<_>>(),
                LABELS.iter().collect::<Vec<_>>()
            );
            let sum: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
            assert!((sum - 1.0).abs() < 1e-4);
            let label = l["label"].as_str().unwrap();
            let best = probs
                .iter()
                .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
                .unwrap()
                .0;
            assert_eq!(label, best);
            let c = l["confidence"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&c));
        }
    }
}

/// WebP, GIF and TIFF are decoded like PNG and JPEG, and picked up by the directory walk: the same
/// gray face saved losslessly in each format gets the PNG's probabilities.
#[test]
fn webp_gif_and_tiff_faces_classify_as_their_png() {
    let f = fixture("cli-formats");
    let dir = f.dir.join("formats");
    std::fs::create_dir_all(&dir).unwrap();
    let face = image::DynamicImage::ImageRgb8(pattern(40, 30, 1)).to_luma8();
    let names = ["a.png", "b.webp", "c.gif", "d.tiff", "e.TIF"];
    for name in names {
        if name.ends_with(".gif") {
            // The GIF encoder takes RGBA; 256 gray levels or fewer keep an exact palette.
            image::DynamicImage::ImageLuma8(face.clone())
                .to_rgba8()
                .save(dir.join(name))
        } else {
            face.save(dir.join(name))
        }
        .unwrap();
    }
    let out = fer_run(&["-m", &f.model, "--backend", "tract", "--json", &s(&dir)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    let files: Vec<&str> = lines.iter().map(|l| l["file"].as_str().unwrap()).collect();
    let want: Vec<String> = names.iter().map(|n| s(&dir.join(n))).collect();
    assert_eq!(files, want);
    let png = lines[0]["probs"].as_object().unwrap();
    for line in &lines[1..] {
        for (class, p) in line["probs"].as_object().unwrap() {
            let d = (p.as_f64().unwrap() - png[class].as_f64().unwrap()).abs();
            assert!(d < 1e-6, "{}: {class} differs by {d}", line["file"]);
        }
    }
}

/// fer-run with `stdin` as its input; the bytes are written from another thread, so a fer-run
/// that answers early cannot block on a full pipe.
fn fer_run_stdin(args: &[&str], input: Vec<u8>) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = fer_run_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fer-run runs");
    let mut stdin = child.stdin.take().unwrap();
    // fer-run may stop reading (and close the pipe) at a broken frame: not an error here.
    let writer = std::thread::spawn(move || drop(stdin.write_all(&input)));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    logged(&format!("fer-run {} < stdin", args.join(" ")), out)
}

/// `-` reads images one after another from stdin (a camera's MJPEG, ffmpeg's image2pipe): each
/// frame gets exactly what its file gets, under the name stdin:<i>, and is answered while the
/// stream is still open, before the next frame has come.
#[test]
fn frames_on_stdin_are_classified_as_they_arrive() {
    use std::io::{BufRead, Write};
    use std::process::Stdio;
    let f = fixture("cli-stdin");
    let files: Vec<String> = ["a.png", "b.jpg", "more/e.jpeg", "d.PNG"]
        .iter()
        .map(|n| s(&f.images.join(n)))
        .collect();
    let frames: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let args = ["-m", f.model.as_str(), "--backend", "tract", "--json"];
    let file_args: Vec<&str> = args.iter().copied().chain(files.iter().map(|f| f.as_str())).collect();
    let by_file = json_lines(&fer_run(&file_args));
    assert_eq!(by_file.len(), 4);

    let mut child = fer_run_command()
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    stdin.write_all(&frames[0]).unwrap();
    stdin.flush().unwrap();
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("frame 0 is answered while stdin is still open");
    for frame in &frames[1..] {
        stdin.write_all(frame).unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let lines: Vec<Value> = std::iter::once(first)
        .chain(rx.iter())
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    for (i, (line, want)) in lines.iter().zip(&by_file).enumerate() {
        assert_eq!(line["file"], format!("stdin:{i}"));
        assert_eq!(line["probs"], want["probs"], "frame {i} against {}", want["file"]);
    }

    // A stream cut inside its second frame: the first is classified, the second is a named
    // error, and the exit status says so.
    let cut = [&frames[0][..], &frames[1][..frames[1].len() / 2]].concat();
    let out = fer_run_stdin(&[&args[..], &["-"]].concat(), cut);
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["probs"], by_file[0]["probs"]);
    assert_eq!(lines[1]["file"], "stdin:1");
    let error = lines[1]["error"].as_str().unwrap();
    assert!(error.contains("the stream ended inside this frame"), "{error}");

    // Nothing on stdin, and `-` beside other inputs.
    let out = fer_run_stdin(&["-m", &f.model, "--backend", "tract", "-"], Vec::new());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stdin: the stream ended before any image came in"), "{stderr}");
    let out = fer_run(&["-m", &f.model, "-", &files[0]]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot be mixed with other inputs"), "{stderr}");
}

#[test]
fn batch_size_does_not_change_results() {
    let f = fixture("cli-batch");
    let run = |b: &str| {
        json_lines(&fer_run(&[
            "-m",
            &f.model,
            "--backend",
            "tract",
            "--json",
            "--batch",
            b,
            &s(&f.images),
        ]))
    };
    // Batch 3 over 5 images: two chunks, the second decoded while the first is classified.
    let (one, three) = (run("1"), run("3"));
    assert_eq!((one.len(), three.len()), (5, 5));
    for (a, b) in one.iter().zip(&three) {
        assert_eq!(a["file"], b["file"], "results come out in input order");
        assert_eq!(a["label"], b["label"]);
        for (k, v) in a["probs"].as_object().unwrap() {
            assert!((v.as_f64().unwrap() - b["probs"][k].as_f64().unwrap()).abs() < 1e-5);
        }
    }
}

#[test]
fn the_table_lists_every_image_and_globs_expand() {
    let f = fixture("cli-table");
    let glob = s(&f.images.join("*.png"));
    let out = fer_run(&[
        "-m",
        &f.model,
        "--backend",
        "tract",
        &glob,
        &s(&f.images.join("b.jpg")),
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("FILE") && lines[0].contains("LABEL") && lines[0].contains("CONF")
    );
    // The glob matches a.png (d.PNG differs in case on Linux), then b.jpg.
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[1].contains("a.png") && lines[2].contains("b.jpg"));
    assert!(lines[1..]
        .iter()
        .all(|l| l.contains("whole image") && LABELS.iter().any(|lab| l.contains(lab))));
    // The header says what the model is and its recorded accuracy (a stand-in shows as one).
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[tiny, eac, val accuracy 50.0%] on tract"), "{err}");
    // The summary: counts, then time and rate.
    let summary = err.lines().last().unwrap();
    assert!(summary.starts_with("2 input(s), 2 face(s) classified, 0 failed, in ") && summary.ends_with(" inputs/s)"), "{summary}");
}

#[test]
fn bad_items_are_reported_one_by_one_and_the_exit_code_is_non_zero() {
    let f = fixture("cli-errors");
    let missing = f.dir.join("missing.png");
    let text = f.dir.join("notes.jpg");
    std::fs::write(&text, "hello").unwrap();
    let cut = f.dir.join("cut.png");
    truncated_png(&cut);
    let huge = f.dir.join("huge.png");
    std::fs::write(&huge, huge_png_header(20_000, 20_000)).unwrap();
    let good = f.images.join("a.png");
    let nomatch = s(&f.dir.join("nothing*.png"));
    let args = [
        s(&missing),
        s(&good),
        s(&text),
        s(&cut),
        s(&huge),
        nomatch.clone(),
        s(&f.images.join("c.bmp")),
    ];

    let t = std::time::Instant::now();
    let mut argv = vec!["-m", f.model.as_str(), "--backend", "tract", "--json"];
    argv.extend(args.iter().map(String::as_str));
    let out = fer_run(&argv);
    assert!(
        t.elapsed().as_secs() < 30,
        "the huge image must not be decoded"
    );
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 7);
    let expect = [
        (s(&missing), Some("No such file")),
        (s(&good), None),
        (s(&text), Some("not a supported image")),
        (s(&cut), Some("cannot decode")),
        (s(&huge), Some("over the limit")),
        (nomatch, Some("matches no image")),
        (s(&f.images.join("c.bmp")), None),
    ];
    for (line, (file, err)) in lines.iter().zip(expect) {
        assert_eq!(line["file"].as_str().unwrap(), file);
        match err {
            Some(e) => {
                let msg = line["error"].as_str().unwrap();
                assert!(msg.contains(e) && msg.contains(&file), "{msg}");
            }
            None => assert!(line["label"].is_string(), "{line}"),
        }
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("5 of 7 input(s) failed"));

    // Table mode: errors go to stderr, one line each naming the file; results still on stdout.
    let out = fer_run(&[
        "-m",
        &f.model,
        "--backend",
        "tract",
        &s(&missing),
        &s(&good),
        &s(&cut),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 2, "{stderr}");
    assert!(errors[0].contains("missing.png") && errors[1].contains("cut.png"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("a.png"));
}

#[test]
fn unusable_models_are_refused_with_the_reason() {
    let f = fixture("cli-models");
    let rank2 = s(&save(&rank2_model(), &f.dir.join("rank2.onnx")));
    let out = fer_run(&["-m", &rank2, &s(&f.images)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rank2.onnx") && err.contains("rank 2"),
        "{err}"
    );

    let junk = f.dir.join("junk.onnx");
    std::fs::write(&junk, "definitely not protobuf").unwrap();
    let out = fer_run(&["-m", &s(&junk), &s(&f.images)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an ONNX model"));

    // The OS's reason is said once: in the file's line, not again under it.
    let out = fer_run(&["-m", &s(&f.dir.join("absent.onnx")), &s(&f.images)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("absent.onnx: No such file"), "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");

    // --cam on a model without a cam output.
    let spec = ConvSpec::gray(8, 1);
    let nocam = s(&save(&conv_model(&spec), &f.dir.join("nocam.onnx")));
    let out = fer_run(&[
        "-m",
        &nocam,
        "--cam",
        &s(&f.dir.join("cams")),
        &s(&f.images),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `cam` output"));
    // tract cannot run on CUDA.
    let out = fer_run(&[
        "-m",
        &nocam,
        "--backend",
        "tract",
        "--device",
        "cuda",
        &s(&f.images),
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn cam_overlays_have_each_images_size() {
    let f = fixture("cli-cam");
    let cams = f.dir.join("cams");
    let out = fer_run(&[
        "-m",
        &f.model,
        "--backend",
        "tract",
        "--json",
        "--cam",
        &s(&cams),
        &s(&f.images),
    ]);
    assert!(out.status.success());
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 5);
    for l in &lines {
        let src = image::open(l["file"].as_str().unwrap()).unwrap();
        let cam_file = l["cam"].as_str().unwrap();
        assert!(cam_file.ends_with("_cam.png"), "{cam_file}");
        let overlay = image::open(cam_file).unwrap();
        assert_eq!(
            (overlay.width(), overlay.height()),
            (src.width(), src.height()),
            "{cam_file}"
        );
    }
}

/// `--annotate`: one picture per input, named after it, enlarged by a whole factor when under
/// 256 px (these crops are whole-image faces, framed in the predicted class's colour); a folder
/// that cannot be written fails each input with the reason, and the exit status says so.
#[test]
fn annotated_pictures_frame_each_face_in_its_class_colour() {
    let f = fixture("cli-annotate");
    let dir = f.dir.join("annotated");
    let out = fer_run(&["-m", &f.model, "--backend", "tract", "--json", "--annotate", &s(&dir), &s(&f.images)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 5);
    for l in &lines {
        let file = PathBuf::from(l["file"].as_str().unwrap());
        let src = image::open(&file).unwrap();
        let stem = file.file_stem().unwrap().to_string_lossy().to_string();
        let drawn = image::open(dir.join(format!("{stem}_annotated.png"))).unwrap().to_rgb8();
        let zoom = 256u32.div_ceil(src.width().min(src.height()));
        assert_eq!(drawn.dimensions(), (src.width() * zoom, src.height() * zoom), "{stem}");
        let color = fer_runtime::annotate::class_color(l["class_index"].as_u64().unwrap() as usize);
        assert_eq!(*drawn.get_pixel(drawn.width() - 1, drawn.height() - 1), color, "{stem}");
    }

    // Written into the inputs' own folder, an output never replaces an input: photos/a.png's
    // picture goes to a_annotated_1.png because a_annotated.png is itself an input.
    let photos = f.dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::copy(f.images.join("a.png"), photos.join("a.png")).unwrap();
    std::fs::copy(f.images.join("d.PNG"), photos.join("a_annotated.png")).unwrap();
    let before = std::fs::read(photos.join("a_annotated.png")).unwrap();
    let out = fer_run(&["-m", &f.model, "--backend", "tract", "--annotate", &s(&photos), &s(&photos)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(photos.join("a_annotated.png")).unwrap(), before, "an input was overwritten");
    assert!(photos.join("a_annotated_1.png").is_file() && photos.join("a_annotated_annotated.png").is_file());

    let blocked = f.dir.join("a-file");
    std::fs::write(&blocked, "not a folder").unwrap();
    let out = fer_run(&["-m", &f.model, "--backend", "tract", "--annotate", &s(&blocked), &s(&f.images.join("a.png"))]);
    assert_eq!(out.status.code(), Some(1));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("a.png") && text.contains("writing the annotated picture"), "{text}");
}

/// The pictures fer-run writes per input go, for a stream, into one Motion-JPEG file each, whose
/// frames show what the same pictures show as files.
#[test]
fn a_streams_pictures_go_into_motion_jpeg_files() {
    let f = fixture("cli-annotate-stream");
    let names = ["a.png", "b.jpg", "d.PNG"];
    let stream: Vec<u8> = names.iter().flat_map(|n| std::fs::read(f.images.join(n)).unwrap()).collect();
    // The same pictures as files: their annotated and CAM PNGs are what each frame should show.
    let pngs = f.dir.join("pngs");
    let files: Vec<String> = names.iter().map(|n| s(&f.images.join(n))).collect();
    let args = ["-m", f.model.as_str(), "--backend", "tract", "--json"];
    let outputs = |dir: &std::path::Path| ["--annotate".to_string(), s(dir), "--cam".to_string(), s(&dir.join("cams"))];
    let to_files: Vec<String> = outputs(&pngs).into_iter().chain(files.iter().cloned()).collect();
    let out = fer_run(&[&args[..], &to_files.iter().map(|a| a.as_str()).collect::<Vec<_>>()[..]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let dir = f.dir.join("video");
    let to_videos: Vec<String> = outputs(&dir).into_iter().chain(["-".to_string()]).collect();
    let out = fer_run_stdin(&[&args[..], &to_videos.iter().map(|a| a.as_str()).collect::<Vec<_>>()[..]].concat(), stream);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut written: Vec<_> = walk(&dir);
    written.sort();
    assert_eq!(written, [dir.join("cams/stdin_cam.mjpeg"), dir.join("stdin_annotated.mjpeg")], "one file each, no PNG per frame");
    for line in json_lines(&out) {
        assert_eq!(line["cam"], s(&dir.join("cams/stdin_cam.mjpeg")), "each face's CAM is in the stream's CAM video");
    }
    // Each video's frames are the pictures the files got, JPEG-encoded: byte for byte.
    let frames = |video: std::path::PathBuf| -> Vec<Vec<u8>> {
        let frames: Vec<_> = fer_runtime::stream::FrameStream::new(std::fs::File::open(&video).unwrap(), "video")
            .map(|f| f.unwrap().bytes)
            .collect();
        assert_eq!(frames.len(), 3, "{}", video.display());
        frames
    };
    let as_jpeg = |png: std::path::PathBuf| fer_runtime::stream::encode_jpeg(&image::open(&png).unwrap().to_rgb8()).unwrap();
    let annotated = frames(dir.join("stdin_annotated.mjpeg"));
    let cams = frames(dir.join("cams/stdin_cam.mjpeg"));
    for (i, name) in names.iter().enumerate() {
        let stem = std::path::Path::new(name).file_stem().unwrap().to_string_lossy().to_string();
        assert!(annotated[i] == as_jpeg(pngs.join(format!("{stem}_annotated.png"))), "{name}, annotated");
        // These pictures are classified whole and the model sees all of each: the CAM frame is
        // the picture's overlay.
        assert!(cams[i] == as_jpeg(pngs.join(format!("cams/{stem}_cam.png"))), "{name}, CAM");
    }

    // A second run keeps the first run's videos and records beside them.
    let before = std::fs::read(dir.join("stdin_annotated.mjpeg")).unwrap();
    let one_frame = std::fs::read(f.images.join("a.png")).unwrap();
    let out = fer_run_stdin(&[&args[..], &to_videos.iter().map(|a| a.as_str()).collect::<Vec<_>>()[..]].concat(), one_frame);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(dir.join("stdin_annotated.mjpeg")).unwrap() == before, "the first recording was overwritten");
    assert_eq!(frames(dir.join("cams/stdin_cam.mjpeg")).len(), 3);
    for second in [dir.join("stdin_annotated_1.mjpeg"), dir.join("cams/stdin_cam_1.mjpeg")] {
        let n = fer_runtime::stream::FrameStream::new(std::fs::File::open(&second).unwrap(), "second").count();
        assert_eq!(n, 1, "{}", second.display());
    }

    // A folder that cannot be made fails before any frame is read, naming the path.
    let blocked = f.dir.join("a-file");
    std::fs::write(&blocked, "not a folder").unwrap();
    for option in ["--annotate", "--cam"] {
        let out = fer_run_stdin(&["-m", &f.model, option, blocked.to_str().unwrap(), "-"], Vec::new());
        assert_eq!(out.status.code(), Some(1));
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains(option) && text.contains("a-file"), "{text}");
    }
}

/// `--video-split` and `--video-keep`: a stream's videos go on into numbered files (by size or
/// time) and keep only the newest; each face's `cam` names the file its frame went into.
#[test]
fn a_streams_videos_split_by_size_or_time_and_keep_the_newest() {
    let f = fixture("cli-video-split");
    let names = ["a.png", "b.jpg", "d.PNG"];
    let stream: Vec<u8> = names.iter().flat_map(|n| std::fs::read(f.images.join(n)).unwrap()).collect();
    let dir = f.dir.join("video");
    let cams = dir.join("cams");
    let args = ["-m", &f.model, "--backend", "tract", "--json", "--annotate", &s(&dir), "--cam", &s(&cams)];
    // One byte: every frame fills its file.
    let split = [&args[..], &["--video-split", "1", "--video-keep", "2", "-"]].concat();
    let out = fer_run_stdin(&split, stream.clone());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cam_files: Vec<_> = json_lines(&out).iter().map(|l| l["cam"].as_str().unwrap().to_string()).collect();
    let numbered = |d: &std::path::Path, stem: &str| [d.join(format!("{stem}.mjpeg")), d.join(format!("{stem}_1.mjpeg")), d.join(format!("{stem}_2.mjpeg"))];
    assert_eq!(cam_files, numbered(&cams, "stdin_cam").map(|p| s(&p)), "frame i went into file i");
    let mut written = walk(&dir);
    written.sort();
    let [_, a1, a2] = numbered(&dir, "stdin_annotated");
    let [_, c1, c2] = numbered(&cams, "stdin_cam");
    assert_eq!(written, [c1, c2, a1.clone(), a2], "the oldest of each removed, two kept");
    let in_a1: Vec<_> = fer_runtime::stream::FrameStream::new(std::fs::File::open(&a1).unwrap(), "a1").collect();
    assert_eq!(in_a1.len(), 1);
    assert!(image::load_from_memory(&in_a1[0].as_ref().unwrap().bytes).is_ok());
    // The summary after a table says where the frames are.
    let other = f.dir.join("other");
    let out = fer_run_stdin(&["-m", &f.model, "--backend", "tract", "--annotate", &s(&other), "--video-split", "1", "--video-keep", "2", "-"], stream.clone());
    let text = String::from_utf8_lossy(&out.stderr);
    let [_, first, last] = numbered(&other, "stdin_annotated");
    let said = format!("3 annotated frame(s) in 2 files, {} to {} (1 older removed, --video-keep)", first.display(), last.display());
    assert!(text.contains(&said), "{text}");

    // A split no video would use is refused, as is --video-keep alone.
    let files = fer_run(&["-m", &f.model, "--annotate", &s(&dir), "--video-split", "1M", &s(&f.images.join("a.png"))]);
    assert_eq!(files.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&files.stderr).contains("only a stream's videos are split"));
    let keep_alone = fer_run_stdin(&["-m", &f.model, "--annotate", &s(&dir), "--video-keep", "2", "-"], Vec::new());
    assert_eq!(keep_alone.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&keep_alone.stderr).contains("--video-split"));
    let bad = fer_run_stdin(&["-m", &f.model, "--annotate", &s(&dir), "--video-split", "12X", "-"], Vec::new());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown unit `X`"));
    let minutes = fer_run_stdin(&["-m", &f.model, "--annotate", &s(&dir), "--video-split", "30m", "-"], Vec::new());
    assert!(String::from_utf8_lossy(&minutes.stderr).contains("write 30M for a size or 30min for a time"));

    // Split by time: three frames within an hour share the first file.
    let hourly = f.dir.join("hourly");
    let out = fer_run_stdin(&["-m", &f.model, "--backend", "tract", "--json", "--cam", &s(&hourly), "--video-split", "1h", "-"], stream);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cam_files: Vec<_> = json_lines(&out).iter().map(|l| l["cam"].as_str().unwrap().to_string()).collect();
    assert_eq!(cam_files, vec![s(&hourly.join("stdin_cam.mjpeg")); 3]);
    assert_eq!(walk(&hourly), [hourly.join("stdin_cam.mjpeg")]);
}

/// The README's live view: made a FIFO first, the annotated video feeds a player frame by frame.
#[test]
fn a_streams_annotated_video_can_be_a_fifo_for_a_live_view() {
    let f = fixture("cli-annotate-fifo");
    let dir = f.dir.join("live");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("stdin_annotated.mjpeg");
    match std::process::Command::new("mkfifo").arg(&fifo).status() {
        Ok(status) if status.success() => {}
        _ => {
            eprintln!("skipping a_streams_annotated_video_can_be_a_fifo_for_a_live_view: no mkfifo here");
            return;
        }
    }
    // The player: reads the FIFO to its end.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let stream: Vec<u8> = ["a.png", "b.jpg"].iter().flat_map(|n| std::fs::read(f.images.join(n)).unwrap()).collect();
    let out = fer_run_stdin(&["-m", &f.model, "--backend", "tract", "--annotate", &s(&dir), "-"], stream);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = reader.join().unwrap();
    let frames: Vec<_> = fer_runtime::stream::FrameStream::new(&seen[..], "fifo").map(|f| f.unwrap()).collect();
    assert_eq!(frames.len(), 2, "both frames came through the FIFO");
}

/// On a stream's CAM frame each face's overlay sits where the face is in the picture: the frame
/// is the picture with the PNGs the same picture gets as a file pasted at the faces' crops.
#[test]
fn a_streams_cam_frames_paint_each_face_where_it_is() {
    let Some(_) = assets("a_streams_cam_frames_paint_each_face_where_it_is") else {
        return;
    };
    let f = fixture("cli-cam-stream");
    let mut jpeg = Vec::new();
    close_up(&astronaut(), 260, (60, 40), true)
        .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .unwrap();
    let file = f.dir.join("frame.jpg");
    std::fs::write(&file, &jpeg).unwrap();
    let pngs = f.dir.join("pngs");
    let out = fer_run(&["-m", &f.model, "--backend", "tract", "--json", "--cam", &s(&pngs), &s(&file)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "the close-up and the second face");
    let video = f.dir.join("video");
    let out = fer_run_stdin(&["-m", &f.model, "--backend", "tract", "--cam", &s(&video), "-"], jpeg.clone());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut want = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    for (i, line) in lines.iter().enumerate() {
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| line["box"][k].as_u64().unwrap() as u32);
        let crop = fer_runtime::BBox { x, y, w, h }.expand(0.15, 640, 480);
        let overlay = image::open(pngs.join(format!("frame_face{i}_cam.png"))).unwrap().to_rgb8();
        // This model sees the whole crop.
        assert_eq!(overlay.dimensions(), (crop.w, crop.h), "face {i}");
        image::imageops::replace(&mut want, &overlay, crop.x as i64, crop.y as i64);
    }
    let want_jpeg = fer_runtime::stream::encode_jpeg(&want).unwrap();
    assert!(std::fs::read(video.join("stdin_cam.mjpeg")).unwrap() == want_jpeg, "the CAM frame differs");
}

/// Every file under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p)
            } else {
                vec![p]
            }
        })
        .collect()
}

/// The astronaut's face on a 640x480 gray frame: OpenCV's cascade with its default 3 neighbours
/// also finds a false face on the suit (OpenCV itself does, `tests/detector_vs_opencv.rs`);
/// `--min-neighbors 5` keeps the real one only; `--min-face` bounds the search from below.
#[test]
fn min_neighbors_drops_a_false_face() {
    let Some(assets) = assets("min_neighbors_drops_a_false_face") else {
        return;
    };
    let f = fixture("cli-neighbours");
    let face = image::open(assets.join("astronaut.png")).unwrap().to_luma8();
    let mut frame = image::GrayImage::from_pixel(640, 480, image::Luma([96]));
    let face = image::imageops::resize(&face, 400, 400, image::imageops::FilterType::Triangle);
    image::imageops::overlay(&mut frame, &face, 120, 40);
    let path = f.dir.join("frame.png");
    frame.save(&path).unwrap();
    // Each face's box's x, or None for the whole picture.
    let boxes = |extra: &[&str]| -> Vec<Option<u64>> {
        let args: Vec<&str> = ["-m", f.model.as_str(), "--backend", "tract", "--json"]
            .iter()
            .chain(extra)
            .copied()
            .chain([path.to_str().unwrap()])
            .collect();
        let out = fer_run(&args);
        assert!(out.status.success());
        json_lines(&out).iter().map(|l| l["box"]["x"].as_u64()).collect()
    };
    assert_eq!(boxes(&[]), vec![Some(257), Some(340)], "the face, then the false one below it to the right");
    assert_eq!(boxes(&["--min-neighbors", "5"]), vec![Some(257)]);
    // Both are under 110 px: searching for larger faces only finds none (the whole picture).
    assert_eq!(boxes(&["--min-face", "110"]), vec![None]);
    // 0 would classify every raw window (OpenCV's ungrouped output): refused.
    let out = fer_run(&["-m", &f.model, "--min-neighbors", "0", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--min-neighbors"));
}

#[test]
fn a_stream_tracks_faces_between_full_searches() {
    let Some(_) = assets("a_stream_tracks_faces_between_full_searches") else {
        return;
    };
    let f = fixture("cli-track");
    // Six 640x480 JPEG frames, one after another as a camera writes them: a face drifting, and
    // from frame 2 a second one.
    let portrait = astronaut();
    let stream: Vec<u8> = (0..6u32)
        .flat_map(|i| {
            let mut jpeg = Vec::new();
            close_up(&portrait, 240 + 4 * i, (40 + 8 * i as i64, 20 + 4 * i as i64), i >= 2)
                .write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
                .unwrap();
            jpeg
        })
        .collect();
    // Each frame's boxes, in order.
    let boxes = |every: &str| -> Vec<Vec<fer_runtime::BBox>> {
        let args = ["-m", f.model.as_str(), "--backend", "tract", "--json", "--detect-every", every, "-"];
        let out = fer_run_stdin(&args, stream.clone());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut frames = vec![Vec::new(); 6];
        for l in json_lines(&out) {
            let i: usize = l["file"].as_str().unwrap()["stdin:".len()..].parse().unwrap();
            let b = &l["box"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| b[k].as_u64().unwrap() as u32);
            frames[i].push(fer_runtime::BBox { x, y, w, h });
        }
        frames
    };
    let full = boxes("1");
    let tracked = boxes("4");
    let counts = |frames: &[Vec<fer_runtime::BBox>]| frames.iter().map(Vec::len).collect::<Vec<_>>();
    assert_eq!(counts(&full), [1, 1, 2, 2, 2, 2]);
    // Frame 0 is searched whole. Frames 1 to 4 follow its one face, and each searches a quarter
    // of the pyramid's levels; the search ends on frame 4 and finds the second face.
    assert_eq!(counts(&tracked), [1, 1, 1, 1, 2, 2]);
    for (i, (t, f)) in tracked.iter().zip(&full).enumerate() {
        for (a, b) in t.iter().zip(f) {
            assert!(a.iou(b) > 0.8, "frame {i}: tracked {a:?}, full search {b:?}");
        }
    }
    let out = fer_run(&["-m", &f.model, "--detect-every", "0", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--detect-every"));
}

#[test]
fn the_astronaut_photo_gets_one_face_box() {
    if assets("the_astronaut_photo_gets_one_face_box").is_none() {
        return;
    }
    let f = fixture("cli-face");
    let photo = s(&PathBuf::from(std::env::var("FER_ASSETS").unwrap()).join("astronaut.png"));
    let cams = f.dir.join("cams");
    let out = fer_run(&[
        "-m",
        &f.model,
        "--backend",
        "tract",
        "--json",
        "--cam",
        &s(&cams),
        "--annotate",
        &s(&cams),
        &photo,
    ]);
    assert!(out.status.success());
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    let b = &lines[0]["box"];
    let (x, y, w, h) = (
        b["x"].as_u64().unwrap(),
        b["y"].as_u64().unwrap(),
        b["w"].as_u64().unwrap(),
        b["h"].as_u64().unwrap(),
    );
    assert!(
        (160..=300).contains(&(x + w / 2)) && (40..=220).contains(&(y + h / 2)),
        "{b}"
    );
    // The annotated photo keeps its size and frames the reported box (not the margin's crop).
    let drawn = image::open(cams.join("astronaut_annotated.png")).unwrap().to_rgb8();
    assert_eq!(drawn.dimensions(), (512, 512));
    let color = fer_runtime::annotate::class_color(lines[0]["class_index"].as_u64().unwrap() as usize);
    let (x1, y1) = ((x + w - 1) as u32, (y + h - 1) as u32);
    assert_eq!((*drawn.get_pixel(x as u32, y as u32), *drawn.get_pixel(x1, y1)), (color, color), "{b}");
    // The overlay covers the face crop (box plus margin), not the whole photo.
    let overlay = image::open(lines[0]["cam"].as_str().unwrap()).unwrap();
    assert!(
        overlay.width() > w as u32 && overlay.width() < 512,
        "{}",
        overlay.width()
    );
    // --no-detect classifies the whole photo.
    let out = fer_run(&[
        "-m",
        &f.model,
        "--backend",
        "tract",
        "--json",
        "--no-detect",
        &photo,
    ]);
    assert!(json_lines(&out)[0]["box"].is_null());
}

#[test]
fn bench_reports_latency_and_throughput() {
    let f = fixture("cli-bench");
    let out = fer_run(&[
        "bench",
        "-m",
        &f.model,
        "--backend",
        "tract",
        "--batch",
        "2",
        "--iters",
        "6",
        "--warmup",
        "1",
        "--json",
    ]);
    assert!(out.status.success());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (r["batch"].as_u64(), r["iters"].as_u64()),
        (Some(2), Some(6))
    );
    assert_eq!(r["what"], "inference");
    let (p50, p95, p99) = (
        r["p50_ms"].as_f64().unwrap(),
        r["p95_ms"].as_f64().unwrap(),
        r["p99_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p95 && p95 <= p99);
    assert!(r["throughput"].as_f64().unwrap() > 0.0);

    let out = fer_run(&[
        "bench",
        "-m",
        &f.model,
        "--backend",
        "tract",
        "--iters",
        "3",
        "--warmup",
        "0",
        "--images",
        &s(&f.images),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("decode+preprocess+inference")
            && text.contains("p99")
            && text.contains("img/s"),
        "{text}"
    );
}

#[test]
fn info_prints_metadata_and_io() {
    let f = fixture("cli-info");
    let out = fer_run(&["info", "-m", &f.model]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "angry, happy, neutral, sad (4)",
        "24x24",
        "color gray",
        "input: float32 [N, 1, 24, 24]",
        "cam: float32 [N, 4, 24, 24]",
        "fer.method = eac",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let out = fer_run(&["info", "-m", &f.model, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["metadata"]["input_size"], serde_json::json!([24, 24]));
    assert_eq!(v["channels"], 1);

    let help = fer_run(&["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("Examples:"));
}

#[test]
fn ort_with_a_missing_cuda_provider_warns_and_runs_on_cpu() {
    if !ort_ready("ort_with_a_missing_cuda_provider_warns_and_runs_on_cpu") {
        return;
    }
    let f = fixture("cli-cuda");
    let out = fer_run(&[
        "-m",
        &f.model,
        "--backend",
        "ort",
        "--device",
        "cuda",
        "--json",
        &s(&f.images.join("a.png")),
    ]);
    assert!(out.status.success());
    assert_eq!(json_lines(&out).len(), 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CUDA") && err.contains("CPU"), "{err}");
}

/// `fer-run eval` on a labelled folder: a 1-channel gray model whose logit for class k is
/// `w_k · mean(pixel)`, so dark images are "a" and bright ones the last class; accuracy is known.
#[test]
fn eval_reports_accuracy_on_a_labelled_folder() {
    let dir = tmpdir("cli_eval");
    let k = LABELS.len();
    // Normalised mean m = (v/255 - 0.5)/0.5: class 0 wins for m < 0, the last class for m > 0.
    let mut weight = vec![0f32; k];
    weight[0] = -10.0;
    weight[k - 1] = 10.0;
    let model = save(
        &linear_model(1, ColorMode::Gray, (8, 8), &weight, &vec![0.0; k], &[0.5], &[0.5]),
        &dir.join("m.onnx"),
    );
    let data = dir.join("data");
    for (class, value, n) in [(LABELS[0], 20u8, 3), (LABELS[k - 1], 230u8, 2)] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..n {
            image::GrayImage::from_pixel(8, 8, image::Luma([value])).save(data.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    // One bright image filed under class 0: predicted as the last class, so 4 of 5 are right.
    image::GrayImage::from_pixel(8, 8, image::Luma([230])).save(data.join(LABELS[0]).join("wrong.png")).unwrap();
    let out = fer_run(&["eval", "--model", model.to_str().unwrap(), "--backend", "tract", "--json", data.to_str().unwrap()]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["images"], 6);
    assert!((v["accuracy"].as_f64().unwrap() - 5.0 / 6.0).abs() < 1e-9, "{v}");
    assert!((v["mean_class_accuracy"].as_f64().unwrap() - (3.0 / 4.0 + 1.0) / 2.0).abs() < 1e-9, "{v}");
    // Class 0: 4 faces, 3 predicted, all right; the last: 2 faces, 3 predicted, 2 right; the others
    // have neither, so no F1 (null) and no place in the macro mean.
    assert!((v["macro_f1"].as_f64().unwrap() - (6.0 / 7.0 + 4.0 / 5.0) / 2.0).abs() < 1e-9, "{v}");
    assert_eq!((&v["per_class"][0]["faces"], &v["per_class"][0]["precision"]), (&Value::from(4), &Value::from(1.0)), "{v}");
    assert_eq!(v["per_class"][1]["f1"], Value::Null, "{v}");
    assert_eq!(v["confusion"][0][k - 1], 1, "{v}");
    let out = fer_run(&["val", "--model", model.to_str().unwrap(), "--backend", "tract", data.to_str().unwrap()]);
    assert!(out.status.success(), "the alias `val` runs eval");
    let text = String::from_utf8_lossy(&out.stdout);
    let row0 = format!("{:>10}        4   75.00%   100.00%   0.8571", LABELS[0]);
    assert!(text.contains("6 images (tract") && text.contains("macro-F1 0.8286") && text.contains(&row0), "{text}");
    assert!(text.contains("confusion (rows: true, columns: predicted)"), "{text}");
    // --mistakes lists the one misfiled face, with both probabilities; a path that cannot be
    // written fails after the scores are printed, naming the option and the path.
    let mistakes = dir.join("mistakes.jsonl");
    let out = fer_run(&["eval", "--model", model.to_str().unwrap(), "--backend", "tract", "--mistakes", &s(&mistakes), &s(&data)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = std::fs::read_to_string(&mistakes).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0]["file"].as_str().unwrap().ends_with("wrong.png"), "{}", lines[0]);
    assert_eq!((&lines[0]["label"], &lines[0]["predicted"]), (&Value::from(LABELS[0]), &Value::from(LABELS[k - 1])));
    let (p_label, p_predicted) = (lines[0]["p_label"].as_f64().unwrap(), lines[0]["p_predicted"].as_f64().unwrap());
    assert!(p_label < 0.01 && p_predicted > 0.99, "{}", lines[0]);
    // --mistakes-png: that face on the library's contact sheet, over its label and the prediction.
    let sheet = dir.join("mistakes.png");
    let out = fer_run(&["eval", "--model", model.to_str().unwrap(), "--backend", "tract", "--mistakes-png", &s(&sheet), &s(&data)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let face = image::open(lines[0]["file"].as_str().unwrap()).unwrap();
    let tile = fer_runtime::annotate::SheetTile {
        face: &face,
        upper: (0, format!("{} {}", LABELS[0], fer_runtime::annotate::percent(p_label as f32))),
        lower: (k - 1, format!("{} {}", LABELS[k - 1], fer_runtime::annotate::percent(p_predicted as f32))),
    };
    let title = "1 of 1 misclassified faces, the least probable label first (upper: the folder's label, lower: the prediction)";
    assert_eq!(image::open(&sheet).unwrap().to_rgb8(), fer_runtime::annotate::contact_sheet(title, &[tile]));
    let out = fer_run(&["eval", "--model", model.to_str().unwrap(), "--backend", "tract", "--mistakes", &s(&dir.join("no/such/dir/m.jsonl")), &s(&data)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--mistakes") && err.contains("no/such/dir/m.jsonl"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("macro-F1"), "the scores still printed");
    // --confusion-png draws the library's picture of these scores; one that cannot be written
    // does not stop --mistakes from being written, and both failures are named.
    let png = dir.join("confusion.png");
    let out = fer_run(&["eval", "--model", model.to_str().unwrap(), "--backend", "tract", "--json", "--confusion-png", &s(&png), &s(&data)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let labels: Vec<String> = v["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
    let confusion: Vec<Vec<u64>> = serde_json::from_value(v["confusion"].clone()).unwrap();
    let scores = fer_runtime::metrics::Scores::from_confusion(&labels, confusion);
    assert_eq!(image::open(&png).unwrap().to_rgb8(), scores.confusion_image());
    std::fs::remove_file(&mistakes).unwrap();
    let out = fer_run(&["eval", "--model", model.to_str().unwrap(), "--backend", "tract", "--confusion-png", &s(&dir.join("no/such/dir/c.png")), "--mistakes", &s(&mistakes), &s(&data)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--confusion-png") && err.contains("no/such/dir/c.png"), "{err}");
    assert!(mistakes.exists(), "--mistakes is written although the picture could not be");

    std::fs::create_dir_all(data.join("contempt")).unwrap();
    let out = fer_run(&["eval", "--model", model.to_str().unwrap(), "--backend", "tract", data.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("class folder `contempt`"));

    // A file that is not an image stops the evaluation with its name (no accuracy over a part).
    std::fs::remove_dir(data.join("contempt")).unwrap();
    std::fs::write(data.join(LABELS[k - 1]).join("broken.png"), b"not a png").unwrap();
    let out = fer_run(&["eval", "--model", model.to_str().unwrap(), "--backend", "tract", "--batch", "2", data.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.png") && !err.contains("accuracy"), "{err}");
}

/// `--tta`: eval says which it used and still counts every image; ten-crop on a file without
/// `fer.crop_pad` is refused with the key's name; bench refuses it without `--images` (its random
/// tensor has no faces to mirror or crop).
#[test]
fn tta_is_reported_and_refused_where_it_cannot_apply() {
    let f = fixture("cli_tta");
    let data = f.dir.join("data");
    std::fs::create_dir_all(data.join(LABELS[0])).unwrap();
    pattern(30, 30, 7).save(data.join(LABELS[0]).join("a.png")).unwrap();
    let out = fer_run(&["eval", "--model", &f.model, "--backend", "tract", "--tta", "flip", "--json", &s(&data)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["tta"].as_str(), v["images"].as_u64()), (Some("flip"), Some(1)), "{v}");

    let out = fer_run(&["eval", "--model", &f.model, "--backend", "tract", "--tta", "ten-crop", &s(&data)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fer.crop_pad"), "{}", String::from_utf8_lossy(&out.stderr));

    let out = fer_run(&["bench", "--model", &f.model, "--backend", "tract", "--tta", "flip", "--iters", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--images"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = fer_run(&["bench", "--model", &f.model, "--backend", "tract", "--tta", "flip", "--iters", "2", "--json", "--images", &s(&f.images)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["what"], "decode+preprocess+inference, tta flip", "{v}");
}

/// A centre-crop model's CAM overlay covers the part of the face the model saw: a 56 px face at
/// input 24 + crop pad 4 shows the model its middle 48 px.
#[test]
fn cam_overlays_of_a_centre_crop_model_cover_what_it_saw() {
    let dir = tmpdir("cli_cam_centre");
    let spec = ConvSpec {
        cam: true,
        ..ConvSpec::gray(24, 9)
    };
    let proto = with_props(conv_model(&spec), &[("fer.crop_pad", "4"), ("fer.eval_view", "centre_crop")]);
    let model = save(&proto, &dir.join("m.onnx"));
    pattern(56, 56, 2).save(dir.join("face.png")).unwrap();
    let cams = dir.join("cams");
    let out = fer_run(&["--model", &s(&model), "--backend", "tract", "--no-detect", "--cam", &s(&cams), &s(&dir.join("face.png"))]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let overlay = image::open(cams.join("face_cam.png")).unwrap();
    assert_eq!((overlay.width(), overlay.height()), (48, 48));
}
