//! `fer-run`: classifies facial expressions in images with a fer ONNX model (ONNX Runtime or
//! tract), finds faces in full photos, writes CAM overlays, benchmarks, and shows model metadata.
// The doc comments below are clap's --help text, where <dir>/<class> is meant literally.
#![allow(rustdoc::invalid_html_tags)]

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use fer_runtime::{
    annotate, bench, cam, collect_inputs, decode_image, load_image, output,
    stream::{FrameStream, MjpegWriter, Rotation, Split},
    track::FaceTracker, Backend, Detect, Device, FaceFinder, Faces, FerError, ImageLimits, Model, ModelInfo, Prediction, SearchPicture, Tta,
};
use image::DynamicImage;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const EXAMPLES: &str = "\
Examples:
  fer-run --model eac_mbv2.onnx face.png              classify one face crop
  fer-run -m eac_mbv2.onnx photos/ --json > out.jsonl every image under photos/, JSON lines
  fer-run -m eac_mbv2.onnx 'shots/*.jpg' --cam cams/   also write class-activation overlays
  fer-run -m eac_mbv2.onnx group.jpg --annotate out/   the photo with boxes and expressions drawn
  fer-run -m m.onnx group.jpg --detect haar:haarcascade_frontalface_default.xml
  fer-run -m m.onnx frames/ --backend ort --device cuda --batch 32
  rpicam-vid -t 0 --codec mjpeg -o - | fer-run -m eac_mbv2.onnx --json -
                                                      a live camera, frame by frame (Raspberry Pi)
  ffmpeg -i /dev/video0 -c:v mjpeg -f image2pipe - | fer-run -m eac_mbv2.onnx -   (any webcam)
  fer-run bench -m m.onnx --batch 8 --iters 200        inference latency (p50/p95/p99) and img/s
  fer-run bench -m m.onnx --images photos/ --backend tract   decode + preprocess + inference
  fer-run info -m m.onnx                               labels, input size, colour, mean/std, I/O
  fer-run eval -m m.onnx val/ --confusion-png cm.png   scores on <class>/ folders, and the matrix drawn
  fer-run eval -m m.onnx train/ --mistakes-png m.png   the labels most worth checking, as pictures

Faces: with --detect auto (the default) images whose shorter side is at least
max(2 x model input side, 200) px are treated as photos and searched with OpenCV's frontal-face
Haar cascade ($FER_ASSETS/haarcascade_frontalface_default.xml, or next to fer-run); smaller images
are taken as face crops. When no face is found the whole image is classified, with a notice.
On a stream (`-`) faces are tracked, and the search for new ones is spread over --detect-every frames.

Backends: auto = ONNX Runtime (CPU) if libonnxruntime loads (ORT_DYLIB_PATH, or the library path),
else tract. --device cuda|tensorrt needs ONNX Runtime with that provider; without it fer-run warns
and runs on CPU. tract uses one thread per core for a single image (FER_TRACT_THREADS=n to change
it); on Intel CPUs fer-run sets TRACT_X86_KIND=other (tract's tile-use kernel choice, faster here
than its Intel cost model) unless you set it.

Output: a table (file, face box, label, confidence, top probabilities), or with --json one object
per face: {\"file\", \"face\", \"box\" (null = whole image), \"label\", \"class_index\",
\"confidence\", \"probs\": {label: p}, \"cam\"?, \"notice\"?}; a failed input is {\"file\", \"error\"}.
Exit status: 0 if every input was classified, 1 if any failed (each failure names its file).";

#[derive(Parser)]
#[command(
    name = "fer-run",
    version,
    about = "Facial-expression recognition with fer ONNX models (ONNX Runtime or tract).",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no subcommand, fer-run predicts.
    #[command(flatten)]
    predict: PredictArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Classify images (what fer-run does with no subcommand).
    Predict(PredictArgs),
    /// Measure latency (p50/p95/p99, mean) and throughput.
    Bench(BenchArgs),
    /// Print a model's metadata, inputs and outputs.
    Info(InfoArgs),
    /// Accuracy, mean class accuracy, macro-F1, per-class scores and the confusion matrix on a
    /// labelled folder of face crops (<dir>/<class>/*.png, classes named as in the model's labels),
    /// in `fer-train eval`'s layout: checks a deployed file against its checkpoint.
    #[command(visible_alias = "val")]
    Eval(EvalArgs),
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Folder with one sub-folder per class (named as the model's labels).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Faces per model call.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    batch: u16,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Also write each misclassified face as a JSON line {file, label, predicted, p_predicted,
    /// p_label}, the most doubtful label first (the lowest probability of its folder's class): run
    /// on a training set, the labels most worth checking by eye.
    #[arg(long, value_name = "FILE.jsonl")]
    mistakes: Option<PathBuf>,
    /// Also draw the most doubtful misclassified faces (up to 64, in --mistakes' order) in a grid,
    /// each over its folder's label and the prediction, with their probabilities.
    #[arg(long, value_name = "FILE.png")]
    mistakes_png: Option<PathBuf>,
    /// Also draw the confusion matrix as a PNG: each cell shaded by its share of its row (the
    /// diagonal is each class's recall), with that share and the count, under the three scores.
    #[arg(long, value_name = "FILE.png")]
    confusion_png: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    /// ONNX Runtime if its library loads, else tract.
    Auto,
    /// ONNX Runtime (needs libonnxruntime: ORT_DYLIB_PATH or the library path).
    Ort,
    /// tract: pure Rust, CPU.
    Tract,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
    Tensorrt,
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// The ONNX model (fer contract: input [N, C, H, W], outputs logits and probs, fer.* metadata).
    // `Option` only so that the top-level (flattened) copy can be absent when a subcommand is
    // given; clap still requires it wherever it applies.
    #[arg(short, long, value_name = "FILE.onnx", required = true)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// Execution provider for ONNX Runtime.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// Test-time augmentation: average each face's class probabilities over its mirror image
    /// (flip, 2x the inference) or over IVSA's ten crops (ten-crop, 10x; needs the model's
    /// fer.crop_pad). More accurate, slower; `fer-run eval --tta ...` says by how much.
    #[arg(long, value_enum, default_value = "none")]
    tta: TtaArg,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TtaArg {
    None,
    Flip,
    TenCrop,
}

#[derive(Args, Clone)]
struct PredictArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Images, directories (walked for png/jpg/bmp/webp/gif/tiff) or glob patterns (quote them);
    /// or `-` alone: images arriving on stdin, each answered as it comes (JPEG/MJPEG or PNG frames
    /// one after another, as a camera or `ffmpeg -f image2pipe` writes them; or one image of any
    /// readable format). Frames are named stdin:0, stdin:1, ...
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
    /// One JSON object per face (or failed input) per line, instead of a table.
    #[arg(long)]
    json: bool,
    /// Write, per face, a PNG of the face with the predicted class's activation map over it
    /// (models with a `cam` output; for a centre-crop model or --tta ten-crop, the middle of the
    /// face, which that view showed the model). A stream's (`-`) frames go into one Motion-JPEG
    /// file instead, DIR/stdin_cam.mjpeg (named as --annotate's video): each frame with its
    /// faces' maps where they are.
    #[arg(long, value_name = "DIR")]
    cam: Option<PathBuf>,
    /// Write, per input, a PNG of the picture with each face's box and predicted expression drawn
    /// on it (<name>_annotated.png; face crops under 256 px are enlarged first). A stream's (`-`)
    /// frames go into one Motion-JPEG file instead, DIR/stdin_annotated.mjpeg (an earlier run's
    /// is kept: the new one is then stdin_annotated_1.mjpeg, ...; a FIFO there is written to).
    /// Watch it with `ffplay -f mjpeg`, or VLC.
    #[arg(long, value_name = "DIR")]
    annotate: Option<PathBuf>,
    /// Face detector: auto, none, or haar:<cascade.xml>.
    #[arg(long, default_value = "auto", value_name = "auto|none|haar:XML")]
    detect: Detect,
    /// Same as --detect none: every image is a face crop.
    #[arg(long, conflicts_with = "detect")]
    no_detect: bool,
    /// Faces per model call.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    batch: u16,
    /// Margin added around each detected face, as a fraction of its size per side.
    #[arg(long, default_value_t = 0.15)]
    face_margin: f32,
    /// A face needs more than this many overlapping raw detections (OpenCV's minNeighbors; its
    /// default, 3). Raise it (5) to drop false faces on busy backgrounds, lower it for small faces.
    /// At least 1: OpenCV's 0 returns every raw window ungrouped, dozens per face.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    min_neighbors: u16,
    /// Smallest face searched for, in pixels of the picture (OpenCV's minSize). Faces near a
    /// camera are large: 80 made a 640x480 stream 2.2 times as fast (docs/RESULTS.md).
    #[arg(long, default_value_t = 30, value_name = "PX")]
    min_face: u32,
    /// On a stream (`-`), look for each face only near where it was in the frame before, and
    /// spread the search of the whole frame for new faces over N frames (a tenth of the search a
    /// frame at 10). Only the first frame, and one where a face is not found near where it was
    /// (or two faces meet, or the frame size changes), are searched whole at once. A face that comes into view is found
    /// within 2N frames. 1: the whole frame every frame.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    detect_every: u16,
    /// Images with more pixels than this are refused before decoding.
    #[arg(long, default_value_t = 100.0, value_name = "MP")]
    max_megapixels: f64,
    /// A stream's videos (--annotate, --cam) go on into a new file (stdin_annotated_1.mjpeg, _2,
    /// ...) each time the current one reaches SIZE: 500M, 2G (K, M, G, T: powers of 1024; a
    /// plain number is bytes); or each TIME from a file's first frame: 1h, 30min, 90s. An
    /// annotated 640x480 frame is 25-55 KB: 3-6 GB an hour at 30 fps.
    #[arg(long, value_name = "SIZE|TIME", value_parser = parse_split)]
    video_split: Option<Split>,
    /// With --video-split: keep only the newest N files of each video, removing the oldest as a
    /// new one starts, so a camera left running uses at most about N x SIZE of disk per video
    /// (or keeps the last N x TIME of it).
    #[arg(long, value_name = "N", requires = "video_split", value_parser = clap::value_parser!(u16).range(1..))]
    video_keep: Option<u16>,
}

/// `--video-split`: a time (`1h`, `30min`, `90s`, `1.5h`) or a size ([`parse_size`]). A bare
/// `m` is refused: both a size (`M`) and minutes are meant by it.
fn parse_split(text: &str) -> Result<Split, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let time = [("h", 3600.0), ("min", 60.0), ("s", 1.0)]
        .into_iter()
        .find_map(|(unit, secs)| Some((lower.strip_suffix(unit)?, unit, secs)));
    let Some((number, unit, secs)) = time else {
        if t.ends_with('m') && t[..t.len() - 1].trim().parse::<f64>().is_ok() {
            let n = t[..t.len() - 1].trim();
            return Err(format!("`m` could be MiB or minutes: write {n}M for a size or {n}min for a time"));
        }
        return parse_size(t).map(Split::Bytes);
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("expected a time such as 1h, 30min or 90s before `{unit}`"))?;
    match std::time::Duration::try_from_secs_f64(value * secs) {
        Ok(d) if !d.is_zero() => Ok(Split::Every(d)),
        Ok(_) => Err("the time must be more than zero".into()),
        Err(_) if value * secs > 0.0 => Err("the time is too long".into()),
        Err(_) => Err("the time must be more than zero".into()),
    }
}

/// A size in bytes from `500M`, `2G`, `64K`, `1.5G` or `1000` (K, M, G, T: powers of 1024; a
/// trailing `B` or `iB` is allowed).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (number, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, ' '),
    };
    let scale = match unit {
        ' ' => 1u64,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        'T' => 1 << 40,
        _ => return Err(format!("unknown unit `{unit}` (use K, M, G or T)")),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| "expected a size such as 500M, 2G or a number of bytes".to_string())?;
    let bytes = value * scale as f64;
    if bytes < 1.0 {
        return Err("the size must be at least one byte".into());
    }
    if bytes >= u64::MAX as f64 {
        return Err("the size is too large".into());
    }
    Ok(bytes as u64)
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Images per call.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    batch: u16,
    /// Timed calls.
    #[arg(long, default_value_t = 200)]
    iters: usize,
    /// Untimed calls first (lazy initialisation, caches).
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Time decode + preprocess + inference on these images (directory, glob or files) instead of
    /// inference alone on a random batch.
    #[arg(long, value_name = "DIR|GLOB")]
    images: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct InfoArgs {
    /// The ONNX model.
    #[arg(short, long, value_name = "FILE.onnx")]
    model: PathBuf,
    /// Print as one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> std::process::ExitCode {
    // Rust ignores SIGPIPE, so a closed pipe (`fer-run info ... | head -1`) made println! panic;
    // the default action ends the process quietly, as other Unix tools do. SAFETY: no thread yet.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", report(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// anyhow's report of a failed command, without its repeats. The project's errors put their
/// cause's text into their own message (`x.png: cannot decode image: unexpected end of file`),
/// so that a library user who prints only the message gets the reason; a cause is listed under
/// "Caused by" only if the lines above have not said it. (trainer/src/main.rs has the same
/// function: the design keeps the runtime and the trainer free of each other.)
fn report(e: &anyhow::Error) -> String {
    let mut said = e.to_string();
    let mut causes = Vec::new();
    for cause in e.chain().skip(1).map(|c| c.to_string()) {
        if !said.contains(&cause) {
            said = format!("{said}\n{cause}");
            causes.push(cause);
        }
    }
    let mut out = e.to_string();
    if !causes.is_empty() {
        out.push_str("\n\nCaused by:");
    }
    for (i, cause) in causes.iter().enumerate() {
        match causes.len() {
            1 => out.push_str(&format!("\n    {cause}")),
            _ => out.push_str(&format!("\n    {i}: {cause}")),
        }
    }
    out
}

fn run() -> Result<()> {
    // SAFETY: nothing else runs yet; tract reads the setting when a model is loaded.
    unsafe { fer_runtime::prefer_tile_use_kernels() };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Predict(a)) => run_predict(a),
        Some(Command::Bench(a)) => run_bench(a),
        Some(Command::Info(a)) => run_info(a),
        Some(Command::Eval(a)) => run_eval(a),
        None => run_predict(cli.predict),
    }
}

impl ModelArgs {
    fn path(&self) -> &Path {
        self.model.as_deref().expect("clap requires --model")
    }
}

fn backend(a: &ModelArgs) -> Result<Backend> {
    let device = match a.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => Device::Cuda,
        DeviceArg::Tensorrt => Device::TensorRt,
    };
    Ok(match (a.backend, device) {
        (BackendArg::Tract, Device::Cpu) => Backend::Tract,
        (BackendArg::Tract, d) => bail!("--device {d} needs ONNX Runtime; tract runs on CPU only"),
        (BackendArg::Ort, d) => Backend::Ort { device: d },
        // Asking for a GPU is asking for ONNX Runtime.
        (BackendArg::Auto, Device::Cpu) => Backend::Auto,
        (BackendArg::Auto, d) => Backend::Ort { device: d },
    })
}

fn load_model(a: &ModelArgs) -> Result<Model> {
    let tta = match a.tta {
        TtaArg::None => Tta::None,
        TtaArg::Flip => Tta::Flip,
        TtaArg::TenCrop => Tta::TenCrop,
    };
    let model = Model::load(a.path(), backend(a)?)
        .and_then(|m| m.with_tta(tta))
        .context("cannot use the model")?;
    tracing::info!("{} on {}", a.path().display(), model.backend_name());
    Ok(model)
}

/// The file (or pattern) an input error is about, for the JSON `file` field.
fn subject(e: &FerError) -> String {
    match e {
        FerError::Io { path, .. }
        | FerError::NotAnImage { path }
        | FerError::Decode { path, .. }
        | FerError::ImageTooLarge { path, .. } => path.display().to_string(),
        FerError::Glob { pattern, .. } => pattern.clone(),
        FerError::Stream { name, .. } => name.clone(),
        _ => String::new(),
    }
}

/// Where an input's bytes come from: a file, or a frame of the image stream on stdin (`-`).
enum Source {
    File(fer_runtime::Result<PathBuf>),
    /// A stream's frame, decoded ahead ([`read_ahead`]), with what a search of it reads.
    Frame(fer_runtime::Result<(DynamicImage, Option<SearchPicture>)>),
}

/// One input after decoding and face finding.
struct Item {
    name: String,
    faces: std::result::Result<Faces, String>,
    /// The decoded picture, kept for --annotate.
    picture: Option<DynamicImage>,
    /// One per face once classified (or the batch's error).
    predictions: Vec<std::result::Result<Prediction, String>>,
}

fn progress_bar(n: usize, json: bool) -> ProgressBar {
    let show =
        n >= 8 && std::io::stderr().is_terminal() && !(json && std::io::stdout().is_terminal());
    if !show {
        return ProgressBar::with_draw_target(Some(n as u64), ProgressDrawTarget::hidden());
    }
    let pb = ProgressBar::with_draw_target(Some(n as u64), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  eta {eta}")
            .expect("valid template"),
    );
    pb
}

/// `<dir>/<base>.png`, or `<base>_1.png`, ... if an earlier output of this run took that name or
/// it is one of the run's inputs (`inputs`: their real paths), which an output must never replace
/// (`fer-run photos/ --annotate photos/` with a `photos/a_annotated.png` already there).
fn unique_png(dir: &Path, base: &str, used: &mut HashSet<PathBuf>, inputs: &HashSet<PathBuf>) -> PathBuf {
    let is_input = |p: &Path| std::fs::canonicalize(p).is_ok_and(|real| inputs.contains(&real));
    let mut p = dir.join(format!("{base}.png"));
    let mut k = 1;
    while is_input(&p) || !used.insert(p.clone()) {
        p = dir.join(format!("{base}_{k}.png"));
        k += 1;
    }
    p
}

/// The files `--annotate DIR` and `--cam DIR` write a stream's frames to.
const STREAM_VIDEO: &str = "stdin_annotated.mjpeg";
const STREAM_CAM_VIDEO: &str = "stdin_cam.mjpeg";

/// Where a stream's video went, for the summary line: its file, or its first and last files when
/// `--video-split` made several, and how many `--video-keep` removed.
fn recording_files(video: &MjpegWriter) -> String {
    let files: Vec<_> = video.files().collect();
    let mut text = match files[..] {
        [] => video.path().display().to_string(),
        [one] => one.display().to_string(),
        [first, .., last] => format!("{} files, {} to {}", files.len(), first.display(), last.display()),
    };
    if video.removed() > 0 {
        text += &format!(" ({} older removed, --video-keep)", video.removed());
    }
    text
}

/// An input's file name without its folder and extension, to name what fer-run writes about it.
/// A ':' becomes '_' (Windows refuses it in names).
fn stem(file: &str) -> String {
    Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().replace(':', "_"))
        .unwrap_or_else(|| "image".into())
}

fn run_predict(a: PredictArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    if a.cam.is_some() && !model.info().has_cam() {
        bail!(
            "--cam: model {} has no `cam` output, so there is no activation map to draw",
            a.model.path().display()
        );
    }
    let detect = if a.no_detect {
        Detect::None
    } else {
        a.detect.clone()
    };
    let mut finder = FaceFinder::new(&detect, model.metadata().input_size).context("--detect")?;
    finder.margin = a.face_margin;
    finder.params.min_neighbors = a.min_neighbors as usize;
    finder.params.min_size = a.min_face;
    let limits = ImageLimits {
        max_pixels: (a.max_megapixels * 1e6) as u64,
    };
    let batch = a.batch as usize;
    let from_stdin = a.images.iter().any(|i| i == "-");
    if from_stdin && a.images.len() > 1 {
        bail!("`-` (images from stdin) cannot be mixed with other inputs: give it alone");
    }

    let items = if from_stdin { Vec::new() } else { collect_inputs(&a.images) };
    // What --cam / --annotate must not write over.
    let input_files: HashSet<PathBuf> = match a.cam.is_some() || a.annotate.is_some() {
        true => items.iter().flatten().filter_map(|p| std::fs::canonicalize(p).ok()).collect(),
        false => HashSet::new(),
    };
    let names: Vec<String> = items
        .iter()
        .map(|i| match i {
            Ok(p) => p.display().to_string(),
            Err(e) => subject(e),
        })
        .collect();
    let file_width = match from_stdin {
        true => "stdin:00000".len(),
        false => names.iter().map(|n| n.chars().count()).max().unwrap_or(4).clamp(4, 60),
    };
    // A stream's length is unknown: no bar.
    let pb = progress_bar(items.len(), a.json);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !a.json {
        // What the model is and the accuracy recorded when it was trained, so nobody mistakes a
        // stand-in for a trained model.
        let meta = model.metadata();
        let mut about: Vec<String> = [meta.backbone.clone(), meta.method.clone()].into_iter().flatten().collect();
        if let Some(v) = meta.val_accuracy {
            about.push(format!("val accuracy {:.1}%", 100.0 * v));
        }
        let about = if about.is_empty() { String::new() } else { format!(" [{}]", about.join(", ")) };
        eprintln!(
            "model {}{about} on {} ({} classes)",
            a.model.path().display(),
            model.backend_name(),
            model.labels().len()
        );
        writeln!(out, "{}", output::table_header(file_width))?;
    }

    // From the first input read, not the model load: a stream's rate is its frames per second.
    let started = std::time::Instant::now();
    let mut total = 0usize;
    let mut failed = 0usize;
    let mut faces_done = 0usize;
    let mut used_names = HashSet::new();
    let mut annotated = 0usize;
    let mut queue = items.into_iter().map(Source::File).zip(names);
    let chunks: Box<dyn Iterator<Item = Vec<(Source, String)>> + Send> = if from_stdin {
        // One frame at a time, each answered as soon as it is classified: a camera's frames are
        // classified as they come, not when a batch has filled. Each is read, decoded, made gray
        // and (past the detector's max_side) shrunk on a thread of its own while the one before
        // is searched for faces, which must go one frame after the other.
        let finder = finder.clone();
        Box::new(read_ahead(FrameStream::new(std::io::stdin(), "stdin").map(move |frame| {
            vec![match frame {
                Ok(f) => {
                    let decoded = decode_image(&f.bytes, Path::new(&f.name), &limits).map(|img| {
                        let picture = finder.prepare(&img);
                        (img, picture)
                    });
                    (Source::Frame(decoded), f.name)
                }
                Err(e) => {
                    let name = subject(&e);
                    (Source::Frame(Err(e)), name)
                }
            }]
        })))
    } else {
        Box::new(
            std::iter::from_fn(move || Some(queue.by_ref().take(batch).collect::<Vec<_>>()))
                .take_while(|chunk| !chunk.is_empty()),
        )
    };
    // A stream's frames follow each other: faces are tracked between full searches.
    let tracker = from_stdin.then(|| Mutex::new(FaceTracker::new(&finder, a.detect_every as usize)));
    // A stream's pictures go into videos, opened before the first frame is read: a folder that
    // cannot be written to fails at once.
    if a.video_split.is_some() && !(from_stdin && (a.annotate.is_some() || a.cam.is_some())) {
        bail!("--video-split: only a stream's videos are split (input `-` with --annotate or --cam)");
    }
    let rotation = a.video_split.map(|split| Rotation {
        split,
        keep: a.video_keep.map(usize::from),
    });
    let stream_video = |dir: &Option<PathBuf>, name: &str, option: &str| -> Result<Option<MjpegWriter>> {
        match (dir, from_stdin) {
            (Some(dir), true) => Ok(Some(MjpegWriter::record(dir, name, rotation).context(option.to_string())?)),
            _ => Ok(None),
        }
    };
    let mut video = stream_video(&a.annotate, STREAM_VIDEO, "--annotate")?;
    let mut cam_video = stream_video(&a.cam, STREAM_CAM_VIDEO, "--cam")?;
    let keep_pictures = a.annotate.is_some() || cam_video.is_some();
    // Decode and find faces in parallel; inputs that fail keep their place with the error.
    let decode = |chunk: Vec<(Source, String)>| -> Vec<Item> {
        chunk
            .into_par_iter()
            .map(|(source, name)| {
                let (image, picture) = match source {
                    Source::File(path) => (path.and_then(|p| load_image(&p, &limits)), None),
                    Source::Frame(Ok((img, picture))) => (Ok(img), picture),
                    Source::Frame(Err(e)) => (Err(e), None),
                };
                let found = |img: &DynamicImage| match &tracker {
                    // A poisoned lock held no broken invariant: the tracker state is whole boxes.
                    Some(t) => t.lock().unwrap_or_else(|e| e.into_inner()).find_prepared(img, picture),
                    None => finder.find(img),
                };
                let (faces, picture) = match image {
                    Ok(img) => (Ok(found(&img)), keep_pictures.then_some(img)),
                    Err(e) => (Err(e.to_string()), None),
                };
                Item {
                    name,
                    faces,
                    picture,
                    predictions: Vec::new(),
                }
            })
            .collect()
    };
    let infer = |mut prepared: Vec<Item>| {
        classify(&model, &mut prepared, batch);
        prepared
    };
    let overlap = if from_stdin { Overlap::Pipeline } else { Overlap::Prefetch };
    overlapped(chunks, overlap, decode, infer, |prepared| {
        for item in &prepared {
            pb.inc(1);
            total += 1;
            let faces = match &item.faces {
                Ok(f) => f,
                Err(e) => {
                    failed += 1;
                    pb.suspend(|| report_error(&mut out, a.json, &item.name, e))?;
                    continue;
                }
            };
            let mut item_failed = false;
            let mut drawn = Vec::new();
            // A stream's CAM frame: the picture, each face's heat map over what the model saw.
            let mut cam_frame = item.picture.as_ref().filter(|_| cam_video.is_some()).map(|p| p.to_rgb8());
            for (i, (face, pred)) in faces.faces.iter().zip(&item.predictions).enumerate() {
                let mut pred = match pred {
                    Ok(p) => p.clone(),
                    Err(e) => {
                        item_failed = true;
                        pb.suspend(|| report_error(&mut out, a.json, &item.name, e))?;
                        continue;
                    }
                };
                pred.face_box = face.bbox;
                let mut cam_file = None;
                // The CAM covers what its view saw: for a centre crop (the model's view or
                // ten-crop's first), the face's middle.
                let seen = || {
                    let (x, y, w, h) = model.preprocessor().seen_region(face.image.width(), face.image.height(), model.tta());
                    ((face.region.x + x, face.region.y + y), face.image.crop_imm(x, y, w, h))
                };
                if let (Some(frame), Some(map)) = (&mut cam_frame, &pred.cam) {
                    let ((x, y), seen) = seen();
                    image::imageops::replace(frame, &cam::overlay(&seen, map.view(), cam::ALPHA), x as i64, y as i64);
                    cam_file = cam_video.as_ref().map(|v| v.path().display().to_string());
                } else if let (Some(dir), Some(map)) = (&a.cam, &pred.cam) {
                    let base = match faces.faces.len() {
                        1 => format!("{}_cam", stem(&item.name)),
                        _ => format!("{}_face{i}_cam", stem(&item.name)),
                    };
                    let p = unique_png(dir, &base, &mut used_names, &input_files);
                    match cam::save_overlay(&p, &seen().1, map.view()) {
                        Ok(()) => cam_file = Some(p.display().to_string()),
                        Err(e) => {
                            item_failed = true;
                            pb.suspend(|| {
                                report_error(
                                    &mut out,
                                    a.json,
                                    &item.name,
                                    &format!("writing CAM overlay: {e}"),
                                )
                            })?;
                        }
                    }
                }
                let record = output::Record {
                    file: &item.name,
                    face: i,
                    prediction: &pred,
                    cam_path: cam_file.as_deref(),
                    notice: faces.notice.as_deref(),
                };
                let line = if a.json {
                    record.to_json()
                } else {
                    record.to_row(file_width)
                };
                pb.suspend(|| writeln!(out, "{line}"))?;
                faces_done += 1;
                drawn.push((face.bbox, pred));
            }
            if let (Some(video), Some(frame)) = (&mut cam_video, &cam_frame) {
                if let Err(e) = video.push(frame) {
                    item_failed = true;
                    pb.suspend(|| report_error(&mut out, a.json, &item.name, &format!("writing the CAM frame: {e}")))?;
                }
            }
            if let (Some(dir), Some(picture)) = (&a.annotate, &item.picture) {
                let faces: Vec<_> = drawn.iter().map(|(b, p)| (*b, p)).collect();
                let written = match &mut video {
                    Some(video) => video.push(&annotate::annotate(picture, &faces)),
                    None => {
                        let p = unique_png(dir, &format!("{}_annotated", stem(&item.name)), &mut used_names, &input_files);
                        annotate::save_annotated(&p, picture, &faces)
                    }
                };
                match written {
                    Ok(()) => annotated += 1,
                    Err(e) => {
                        item_failed = true;
                        pb.suspend(|| report_error(&mut out, a.json, &item.name, &format!("writing the annotated picture: {e}")))?;
                    }
                }
            }
            failed += item_failed as usize;
        }
        out.flush()?;
        Ok(())
    })?;
    pb.finish_and_clear();
    if from_stdin && total == 0 {
        bail!("stdin: the stream ended before any image came in");
    }
    if !a.json {
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "{total} input(s), {faces_done} face(s) classified, {failed} failed, in {seconds:.1} s ({:.1} inputs/s)",
            total as f64 / seconds.max(1e-9)
        );
        match (&a.annotate, &video) {
            (_, Some(video)) => eprintln!(
                "{annotated} annotated frame(s) in {} (ffplay -f mjpeg plays it)",
                recording_files(video)
            ),
            (Some(dir), None) => eprintln!("{annotated} annotated picture(s) in {}", dir.display()),
            (None, None) => {}
        }
        if let Some(video) = &cam_video {
            eprintln!("{} CAM frame(s) in {}", video.frames(), recording_files(video));
        }
    }
    if failed > 0 {
        bail!("{failed} of {total} input(s) failed");
    }
    Ok(())
}

/// How [`overlapped`] overlaps the decoding of inputs with the inference.
#[derive(Debug, Clone, Copy)]
enum Overlap {
    /// Each chunk is decoded beside the inference of the chunk before, the two started together:
    /// the cores that the inference leaves idle decode the next images. For files, which are all
    /// there to be read.
    Prefetch,
    /// A thread takes each chunk as it comes and decodes it, one chunk ahead at most, while the
    /// calling thread infers and emits the chunk before. For a live stream: its next frame may not
    /// exist yet, and a frame's answer must not wait for it.
    Pipeline,
}

/// Runs `chunks` through `decode`, then `infer`, then `emit`, in order, overlapping the decoding
/// of a chunk with the inference of the one before as `overlap` says. `emit` runs on the calling
/// thread (it may hold stdout) and its first error stops the loop.
fn overlapped<C: Send, D: Send, R: Send>(
    mut chunks: impl Iterator<Item = C> + Send,
    overlap: Overlap,
    decode: impl Fn(C) -> D + Sync,
    infer: impl Fn(D) -> R + Sync,
    mut emit: impl FnMut(R) -> Result<()>,
) -> Result<()> {
    match overlap {
        Overlap::Prefetch => {
            let mut next = chunks.next().map(&decode);
            while let Some(current) = next.take() {
                let following = chunks.next();
                let (done, decoded) = rayon::join(|| infer(current), || following.map(&decode));
                emit(done)?;
                next = decoded;
            }
            Ok(())
        }
        Overlap::Pipeline => std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let decode = &decode;
            s.spawn(move || {
                // After an error below, this thread ends at its next send: on a live stream that
                // is when the next frame comes (the read in between cannot be interrupted).
                for chunk in chunks {
                    if tx.send(decode(chunk)).is_err() {
                        break;
                    }
                }
            });
            rx.into_iter().try_for_each(|decoded| emit(infer(decoded)))
        }),
    }
}

/// `items` made on a thread of their own, one ahead of the caller, who gets them in order: a
/// stream's next frame is read and decoded while the caller works on the one before. The thread
/// ends at its next item once the iterator is dropped.
fn read_ahead<T: Send + 'static>(items: impl Iterator<Item = T> + Send + 'static) -> impl Iterator<Item = T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        for item in items {
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    rx.into_iter()
}

/// Runs every face of `items` through the model, `batch` faces per call.
fn classify(model: &Model, items: &mut [Item], batch: usize) {
    let crops: Vec<(usize, image::DynamicImage)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, it)| it.faces.as_ref().ok().map(|f| (i, f)))
        .flat_map(|(i, f)| f.faces.iter().map(move |face| (i, face.image.clone())))
        .collect();
    for group in crops.chunks(batch) {
        let imgs: Vec<image::DynamicImage> = group.iter().map(|(_, img)| img.clone()).collect();
        match model.predict_batch(&imgs) {
            Ok(preds) => {
                for ((i, _), p) in group.iter().zip(preds) {
                    items[*i].predictions.push(Ok(p));
                }
            }
            Err(e) => {
                for (i, _) in group {
                    items[*i]
                        .predictions
                        .push(Err(format!("inference failed: {e}")));
                }
            }
        }
    }
}

fn report_error(
    out: &mut impl Write,
    json: bool,
    name: &str,
    e: &dyn std::fmt::Display,
) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", output::error_json(name, e))
    } else {
        let msg = e.to_string();
        // Errors from the library already name the file; add it where they do not.
        if name.is_empty() || msg.contains(name) {
            eprintln!("error: {msg}");
        } else {
            eprintln!("error: {name}: {msg}");
        }
        Ok(())
    }
}

fn run_bench(a: BenchArgs) -> Result<()> {
    if a.images.is_none() && a.model.tta != TtaArg::None {
        bail!("--tta applies to images: time it with --images <DIR|GLOB>");
    }
    let model = load_model(&a.model)?;
    let batch = a.batch as usize;
    let report = match &a.images {
        None => bench::bench_tensor(&model, batch, a.warmup, a.iters)?,
        Some(spec) => {
            let files: Vec<PathBuf> = collect_inputs(&[spec])
                .into_iter()
                .collect::<fer_runtime::Result<_>>()
                .context("--images")?;
            if files.is_empty() {
                bail!("--images {spec}: no image files found ({})", fer_runtime::inputs::image_formats());
            }
            bench::bench_images(&model, &files, batch, a.warmup, a.iters)?
        }
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let (h, w) = model.metadata().input_size;
        println!(
            "model       {} ({}x{}x{}, {} classes)",
            a.model.path().display(),
            model.info().channels,
            h,
            w,
            model.labels().len()
        );
        println!("backend     {}", report.backend);
        println!(
            "timed       {} , batch {}, {} iterations after {} warm-up",
            report.what, report.batch, report.iters, a.warmup
        );
        println!(
            "latency ms  mean {:.3}  p50 {:.3}  p95 {:.3}  p99 {:.3}  min {:.3}  max {:.3}",
            report.mean_ms,
            report.p50_ms,
            report.p95_ms,
            report.p99_ms,
            report.min_ms,
            report.max_ms
        );
        println!("throughput  {:.1} img/s", report.throughput);
    }
    Ok(())
}

fn run_info(a: InfoArgs) -> Result<()> {
    let info = ModelInfo::read(&a.model).context("cannot read the model")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    let m = &info.metadata;
    println!("model        {}", a.model.display());
    println!(
        "producer     {}",
        if info.producer.is_empty() {
            "?"
        } else {
            &info.producer
        }
    );
    println!(
        "opset        {}",
        info.opset.map_or("?".into(), |o| o.to_string())
    );
    println!("labels       {} ({})", m.labels.join(", "), m.labels.len());
    println!(
        "input size   {}x{} (HxW), {} channel(s), color {}",
        m.input_size.0, m.input_size.1, info.channels, m.color
    );
    println!("mean / std   {:?} / {:?}", m.mean, m.std);
    println!(
        "eval view    {}{}",
        m.eval_view,
        m.crop_pad.map_or(String::new(), |p| format!(" (crop pad {p} px)"))
    );
    for (k, v) in [
        ("method", &m.method),
        ("backbone", &m.backbone),
        ("data", &m.data),
    ] {
        println!("{k:<12} {}", v.as_deref().unwrap_or("-"));
    }
    println!(
        "val accuracy {}",
        m.val_accuracy.map_or("-".into(), |v| format!("{v:.4}"))
    );
    println!("inputs");
    for t in &info.inputs {
        println!("  {t}");
    }
    println!("outputs");
    for t in &info.outputs {
        println!("  {t}");
    }
    println!("metadata_props");
    for (k, v) in &m.props {
        println!("  {k} = {v}");
    }
    for n in &info.notices {
        println!("note: {n}");
    }
    Ok(())
}

fn run_eval(a: EvalArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let labels = model.labels().to_vec();
    let mut files: Vec<(PathBuf, usize)> = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&a.dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(class) = labels.iter().position(|l| l.eq_ignore_ascii_case(&name)) else {
            bail!("{}: class folder `{name}` is not one of the model's labels {labels:?}", a.dir.display());
        };
        let dir = e.path();
        for f in collect_inputs(&[dir.to_string_lossy()]) {
            files.push((f?, class));
        }
    }
    if files.is_empty() {
        bail!("{}: no images in class sub-folders", a.dir.display());
    }
    let k = labels.len();
    let mut confusion = vec![vec![0u64; k]; k];
    let bar = progress_bar(files.len(), a.json);
    let limits = ImageLimits::default();
    // Each chunk travels as its labels and its decoded images, then its predictions.
    let decode = |chunk: &[(PathBuf, usize)]| {
        let imgs = chunk
            .par_iter()
            .map(|(f, _)| load_image(f, &limits))
            .collect::<std::result::Result<Vec<_>, _>>();
        (chunk.iter().map(|&(_, y)| y).collect::<Vec<_>>(), imgs)
    };
    let infer = |(ys, imgs): (Vec<usize>, std::result::Result<Vec<_>, FerError>)| {
        (ys, imgs.and_then(|imgs| model.predict_batch(&imgs)))
    };
    let mut mistakes: Vec<Mistake> = Vec::new();
    let want_mistakes = a.mistakes.is_some() || a.mistakes_png.is_some();
    let mut done = 0;
    overlapped(files.chunks(a.batch as usize), Overlap::Prefetch, decode, infer, |(ys, preds)| {
        for (i, (&y, p)) in ys.iter().zip(preds?).enumerate() {
            confusion[y][p.class_index] += 1;
            if want_mistakes && p.class_index != y {
                mistakes.push(Mistake {
                    file: done + i,
                    label: y,
                    predicted: p.class_index,
                    p_label: p.probs[y].1,
                    p_predicted: p.probs[p.class_index].1,
                });
            }
        }
        done += ys.len();
        bar.inc(ys.len() as u64);
        Ok(())
    })?;
    bar.finish_and_clear();
    let scores = fer_runtime::metrics::Scores::from_confusion(&labels, confusion);
    let tta = model.tta().to_string();
    if a.json {
        let mut v = serde_json::to_value(&scores)?;
        v["model"] = serde_json::json!(model.path());
        v["backend"] = model.backend_name().into();
        v["tta"] = tta.into();
        v["labels"] = labels.clone().into();
        println!("{v}");
    } else {
        let tta = if model.tta() == Tta::None { String::new() } else { format!(", tta {tta}") };
        println!("{}: {} images ({}{tta})", a.dir.display(), scores.images, model.backend_name());
        print!("{}", scores.report());
    }
    // After the scores, so a file that cannot be written does not cost them, nor the other file.
    let mut failed = Vec::new();
    if let Some(path) = &a.confusion_png {
        if let Err(e) = scores.save_confusion_png(path) {
            failed.push(format!("--confusion-png {e}"));
        }
    }
    // The most doubtful label first.
    mistakes.sort_by(|x, y| x.p_label.total_cmp(&y.p_label));
    if let Some(path) = &a.mistakes_png {
        if let Err(e) = save_mistakes_png(path, &mistakes, &files, &labels, &limits) {
            failed.push(format!("--mistakes-png {}: {e:#}", path.display()));
        }
    }
    if let Some(path) = &a.mistakes {
        // Six decimals: an f32 widened to f64 prints a tail of digits it never had.
        let round = |v: f32| (v as f64 * 1e6).round() / 1e6;
        let text: String = mistakes
            .iter()
            .map(|m| {
                let line = serde_json::json!({"file": files[m.file].0, "label": labels[m.label],
                    "predicted": labels[m.predicted], "p_predicted": round(m.p_predicted), "p_label": round(m.p_label)});
                format!("{line}\n")
            })
            .collect();
        match std::fs::write(path, text) {
            Err(e) => failed.push(format!("--mistakes {}: {e}", path.display())),
            Ok(()) if !a.json => {
                eprintln!("{} misclassified face(s), the most doubtful label first: {}", mistakes.len(), path.display())
            }
            Ok(()) => {}
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

/// A misclassified face of `fer-run eval`: its index in the file list, its folder's class, the
/// prediction, and the probabilities of both.
struct Mistake {
    file: usize,
    label: usize,
    predicted: usize,
    p_label: f32,
    p_predicted: f32,
}

/// `--mistakes-png`: the first 64 of `mistakes` (sorted, most doubtful first) on a contact sheet.
fn save_mistakes_png(path: &Path, mistakes: &[Mistake], files: &[(PathBuf, usize)], labels: &[String], limits: &ImageLimits) -> Result<()> {
    const MOST: usize = 64;
    let shown = &mistakes[..mistakes.len().min(MOST)];
    let faces = shown.par_iter().map(|m| load_image(&files[m.file].0, limits)).collect::<std::result::Result<Vec<_>, _>>()?;
    let tiles: Vec<_> = shown
        .iter()
        .zip(&faces)
        .map(|(m, face)| annotate::SheetTile {
            face,
            upper: (m.label, format!("{} {}", annotate::class_name(&labels[m.label], m.label), annotate::percent(m.p_label))),
            lower: (
                m.predicted,
                format!("{} {}", annotate::class_name(&labels[m.predicted], m.predicted), annotate::percent(m.p_predicted)),
            ),
        })
        .collect();
    let title = format!(
        "{} of {} misclassified faces, the least probable label first (upper: the folder's label, lower: the prediction)",
        shown.len(),
        mistakes.len()
    );
    annotate::contact_sheet(&title, &tiles).save_with_format(path, image::ImageFormat::Png)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn sizes_read_with_binary_units() {
        for (text, bytes) in [
            ("1000", 1000),
            ("64K", 64 << 10),
            ("64k", 64 << 10),
            ("500M", 500 << 20),
            ("500MB", 500 << 20),
            ("500MiB", 500 << 20),
            ("1.5G", 3 << 29),
            (" 2G ", 2 << 30),
            ("1T", 1 << 40),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for (text, why) in [
            ("", "expected a size"),
            ("M", "expected a size"),
            ("12X", "unknown unit `X`"),
            ("0", "at least one byte"),
            ("-5M", "at least one byte"),
            ("0.1", "at least one byte"),
            ("nan", "unknown unit"),
            ("1e30G", "too large"),
        ] {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn video_splits_read_as_times_or_sizes() {
        use std::time::Duration;
        for (text, split) in [
            ("1h", Split::Every(Duration::from_secs(3600))),
            ("1.5H", Split::Every(Duration::from_secs(5400))),
            ("30min", Split::Every(Duration::from_secs(1800))),
            (" 90 s ", Split::Every(Duration::from_secs(90))),
            ("0.001s", Split::Every(Duration::from_millis(1))),
            ("500M", Split::Bytes(500 << 20)),
            ("2GiB", Split::Bytes(2 << 30)),
            ("1000", Split::Bytes(1000)),
        ] {
            assert_eq!(parse_split(text), Ok(split), "{text}");
        }
        for (text, why) in [
            ("30m", "write 30M for a size or 30min for a time"),
            ("0h", "more than zero"),
            ("-2min", "more than zero"),
            ("1e300h", "too long"),
            ("5ms", "expected a time"),
            ("h", "expected a time"),
            ("12X", "unknown unit `X`"),
        ] {
            let err = parse_split(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    /// A stream's frames read ahead come in their order, and the reading thread stops once the
    /// reader is gone instead of reading the stream on.
    #[test]
    fn read_ahead_keeps_the_order_and_stops_when_dropped() {
        assert_eq!(read_ahead(0..50).collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
        let (made_tx, made) = mpsc::channel();
        let endless = (0..).inspect(move |i| made_tx.send(*i).unwrap());
        let mut frames = read_ahead(endless);
        assert_eq!((frames.next(), frames.next()), (Some(0), Some(1)));
        drop(frames);
        // The thread ends (and drops its sender) after at most the item in the channel and the
        // one it was sending.
        let mut count = 0;
        loop {
            match made.recv_timeout(std::time::Duration::from_secs(20)) {
                Ok(_) => count += 1,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the reading thread went on after its reader was dropped"),
            }
        }
        assert!(count <= 4, "{count} items made");
    }

    #[test]
    fn overlapped_keeps_the_order_in_both_modes() {
        for overlap in [Overlap::Prefetch, Overlap::Pipeline] {
            let mut got = Vec::new();
            overlapped(0..20, overlap, |c| c * 2, |d| d + 1, |r| {
                got.push(r);
                Ok(())
            })
            .unwrap();
            assert_eq!(got, (0..20).map(|c| c * 2 + 1).collect::<Vec<_>>(), "{overlap:?}");
        }
    }

    /// A live stream's frame is answered before the next frame exists: frames arrive on a channel
    /// only after the frame before was emitted.
    #[test]
    fn a_pipelined_chunk_is_emitted_before_the_next_one_comes() {
        let (frames, arriving) = mpsc::channel::<usize>();
        let (emitted, answers) = mpsc::channel::<usize>();
        let feeder = std::thread::spawn(move || {
            for i in 0..5 {
                frames.send(i).unwrap();
                let answer = answers.recv_timeout(Duration::from_secs(20));
                assert_eq!(answer, Ok(i), "frame {i} was not answered before frame {} came", i + 1);
            }
        });
        overlapped(arriving.into_iter(), Overlap::Pipeline, |c| c, |d| d, |r| {
            emitted.send(r).unwrap();
            Ok(())
        })
        .unwrap();
        feeder.join().unwrap();
    }

    /// An error from `emit` stops the run, and the thread that reads ahead stops reading.
    #[test]
    fn a_pipeline_stops_reading_after_an_error() {
        let decoded = AtomicUsize::new(0);
        let result = overlapped(
            0..1000,
            Overlap::Pipeline,
            |c| {
                decoded.fetch_add(1, Ordering::SeqCst);
                c
            },
            |d| d,
            |r| if r == 3 { Err(anyhow::anyhow!("stdout closed")) } else { Ok(()) },
        );
        assert_eq!(result.unwrap_err().to_string(), "stdout closed");
        // Chunks 0 to 3, one waiting in the channel and one being decoded, at most.
        assert!(decoded.load(Ordering::SeqCst) <= 6, "{} decoded", decoded.load(Ordering::SeqCst));
    }
}
