//! `fer-train`: train, evaluate and export noise-robust facial-expression models.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use fer_train::config::Config;
use fer_train::train::Trainer;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "fer-train",
    version,
    about = "Train noise-robust facial-expression recognition models (CE, EAC, DacFER, GReFEL, IVSA, DAN) with libtorch and export them to ONNX",
    after_help = "Examples:
  fer-train fit --config configs/fer2013_r18_eac.yaml
  fer-train fit --config configs/fer2013_r18_eac.yaml --set noise.rate=0.3 --set name=r18_eac_n30
  fer-train fit --resume runs/r18_eac                  # continue a run with its own config
  fer-train fit --resume runs/r18_eac --set train.epochs=60      # ... and extend it
  fer-train eval --run runs/r18_eac --split val
  fer-train export --run runs/r18_eac --out eac_r18.onnx --cam
  fer-train summarize --run runs/r18_eac          # summary.json + plots of a run stopped early
  fer-train cache --config configs/fer2013_r18_eac.yaml           # decode the data once
  fer-train bench --arch resnet18 --method eac --size 224 --batch 64  # training-step img/s

A run directory holds config.yaml (resolved), last.safetensors + state.json (resumable checkpoint),
best.safetensors, metrics.csv, curves.png, confusion.png, summary.json and model.onnx.

Environment: RUST_LOG (tracing filter, default info); FER_KEEP_SUBNORMALS=1 keeps subnormal floats,
which fer-train otherwise flushes to zero because they slow CPU training down (src/fpenv.rs)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model from a YAML config (see configs/); exports model.onnx at the end. Ctrl-C stops
    /// at the next step and exports and summarizes the last finished epoch (`--resume` goes on).
    #[command(visible_alias = "train")]
    Fit {
        /// Recipe file, e.g. configs/fer2013_r18_eac.yaml (not with `--resume <RUN_DIR>`, which
        /// reads the run's own config.yaml).
        #[arg(long, value_name = "FILE.yaml")]
        config: Option<PathBuf>,
        /// Override a config value: --set train.epochs=5 --set model.arch=mbv2 (values are YAML).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Continue a run from its last checkpoint. `--resume runs/<name>`: with its own config (its
        /// config.yaml), changed only by this command's --set (more epochs, a restart), each change
        /// logged. After --config: the run <out_dir>/<name> it names, whose config.yaml may differ
        /// only where this command's --set say so; any other difference (a --set left out, a
        /// recipe edited since) is refused, listed key by key.
        #[arg(long, value_name = "RUN_DIR", num_args = 0..=1)]
        resume: Option<Option<PathBuf>>,
    },
    /// Print accuracy, mean class accuracy, macro-F1, each class's recall / precision / F1 and the
    /// confusion matrix of a checkpoint.
    #[command(visible_alias = "val")]
    Eval {
        /// Run directory (holds config.yaml and the checkpoint).
        #[arg(long)]
        run: PathBuf,
        /// Checkpoint file inside the run (default: best.safetensors, else last.safetensors).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Split to evaluate.
        #[arg(long, default_value = "val")]
        split: String,
        /// Override the data section, e.g. --set data.root=/data/rafdb --set data.format=rafdb.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Also write the confusion matrix PNG here.
        #[arg(long)]
        confusion_png: Option<PathBuf>,
        /// Print the metrics as JSON.
        #[arg(long)]
        json: bool,
        /// For a run with train.ema_decay: measure the raw weights it trained, not their moving
        /// average (needs last.safetensors; best.safetensors holds the average alone).
        #[arg(long)]
        raw_weights: bool,
    },
    /// Decode a config's train and val splits once into its dataset cache (splits.cache_dir), so
    /// later runs, and a GPU box that receives only the cache files, start without decoding images.
    Cache {
        /// Recipe file whose data and splits sections say what to decode, e.g. configs/fer2013_r18_eac.yaml.
        #[arg(long)]
        config: PathBuf,
        /// Override a config value, as in `fit` (e.g. --set data.root=/data/fer2013).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Report what libtorch sees (CUDA, cuDNN, devices) and run a small matmul on each device.
    Doctor,
    /// Time the training step (forward, the method's loss, backward, Adam) on random data, as
    /// ../shared/reference/peer_bench.py times PyTorch eager; bench/train_vs_pytorch.py runs both.
    Bench {
        #[arg(long, value_enum, default_value = "resnet18")]
        arch: fer_train::models::Arch,
        /// Training method: ce, eac, dacfer, grefel_rb or dan (default hyper-parameters).
        #[arg(long, default_value = "eac")]
        method: String,
        /// Input side in pixels.
        #[arg(long, default_value_t = 224)]
        size: i64,
        #[arg(long, default_value_t = 64)]
        batch: i64,
        /// Untimed steps first (cuDNN autotuning, allocator warm-up).
        #[arg(long, default_value_t = 8)]
        warmup: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 30)]
        iters: usize,
        /// auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Channels-last input batches, as train.channels_last.
        #[arg(long)]
        channels_last: bool,
        /// bf16 autocast, as train.bf16 (the peer's `amp` rows).
        #[arg(long)]
        bf16: bool,
        /// Print the result as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Write summary.json, curves.png and confusion.png of a run from its state.json, as `fit` does
    /// at its end: for a run stopped before its last epoch (Ctrl-C, a deadline). Needs no checkpoint.
    Summarize {
        /// Run directory (holds config.yaml and state.json), e.g. runs/fer2013_r18_eac.
        #[arg(long)]
        run: PathBuf,
    },
    /// Write the ONNX graph of a checkpoint (with the contract's metadata).
    Export {
        /// Run directory (holds config.yaml, classes.json and the checkpoint), e.g. runs/fer2013_r18_eac.
        #[arg(long)]
        run: PathBuf,
        /// Checkpoint file inside the run (default: best.safetensors, else last.safetensors);
        /// `--checkpoint last.safetensors` exports the final epoch, as `fit` does.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Where to write the .onnx file (see docs/onnx-contract.md for its inputs, outputs and metadata).
        #[arg(long)]
        out: PathBuf,
        /// Add the `cam` output (class activation maps).
        #[arg(long)]
        cam: bool,
        /// Store float16 weights (float32 interface).
        #[arg(long)]
        fp16: bool,
        /// Store the large Conv/Gemm weights as int8 with one scale per output channel: a quarter
        /// of the float32 size, computed in float32 (check its accuracy with `fer-run eval`).
        #[arg(long, conflicts_with = "fp16")]
        int8_weights: bool,
    },
}

fn main() -> std::process::ExitCode {
    // Rust ignores SIGPIPE, so a closed pipe (`fer-train doctor | head -1`) made println! panic;
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
/// "Caused by" only if the lines above have not said it. (runtime/src/main.rs has the same
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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    // Before anything starts a thread, so libtorch's pool inherits it (fpenv says why).
    if fer_train::fpenv::keep_subnormals_requested() {
        tracing::info!("FER_KEEP_SUBNORMALS: subnormal floats are kept (slow on x86 CPUs)");
    } else {
        fer_train::fpenv::flush_subnormals_to_zero();
    }
    match Cli::parse().command {
        Command::Fit { config, overrides, resume } => run_fit(config, overrides, resume),
        Command::Eval { run, checkpoint, split, overrides, confusion_png, json, raw_weights } => {
            run_eval(run, checkpoint, split, overrides, confusion_png, json, raw_weights)
        }
        Command::Export { run, checkpoint, out, cam, fp16, int8_weights } => {
            use fer_train::export::WeightStorage;
            let weights = match (fp16, int8_weights) {
                (true, _) => WeightStorage::Float16,
                (_, true) => WeightStorage::Int8,
                _ => WeightStorage::Float32,
            };
            run_export(run, checkpoint, out, cam, weights)
        }
        Command::Summarize { run } => {
            let s = fer_train::eval::summarize_run(&run)?;
            println!(
                "{}: {} epochs, val acc {:.2}% (best {:.2}% at epoch {}, mean of last 5 {:.2}%), wrote {}",
                s.name,
                s.epochs,
                100.0 * s.final_val.accuracy,
                100.0 * s.best_val_accuracy,
                s.best_epoch,
                100.0 * s.last5_val_accuracy_mean,
                run.join("summary.json").display()
            );
            Ok(())
        }
        Command::Doctor => run_doctor(),
        Command::Cache { config, overrides } => run_cache(config, overrides),
        Command::Bench { arch, method, size, batch, warmup, iters, device, channels_last, bf16, json } => {
            let bench = fer_train::bench::StepBench {
                arch,
                method: fer_train::bench::method_by_name(&method)?,
                size,
                batch,
                warmup,
                iters,
                device: fer_train::train::select_device(&device)?,
                channels_last,
                bf16,
            };
            run_bench(&bench, json)
        }
    }
}

fn run_fit(config: Option<PathBuf>, overrides: Vec<String>, resume: Option<Option<PathBuf>>) -> Result<()> {
    let cfg = fit_config(config.as_deref(), &overrides, resume.as_ref())?;
    fer_train::train::stop_on_ctrl_c()?;
    let mut trainer = Trainer::new(cfg, resume.is_some())?;
    let s = trainer.fit()?;
    if trainer.interrupted {
        print!(
            "stopped by Ctrl-C after epoch {} of {} (`fer-train fit --resume {}` continues it); ",
            s.epochs,
            trainer.cfg.train.epochs,
            trainer.run_dir.display()
        );
    }
    println!(
        "{}: val acc {:.2}%{} (best {:.2}% at epoch {}, mean of last 5 {:.2}%), mean-class {:.2}%, macro-F1 {:.3}, {:.0} img/s{}",
        s.name,
        100.0 * s.final_val.accuracy,
        s.final_val_raw_weights.as_ref().map(|m| format!(" averaged, {:.2}% raw", 100.0 * m.accuracy)).unwrap_or_default(),
        100.0 * s.best_val_accuracy,
        s.best_epoch,
        100.0 * s.last5_val_accuracy_mean,
        100.0 * s.final_val.mean_class_accuracy,
        s.final_val.macro_f1,
        s.train_img_per_s,
        s.onnx.map(|p| format!(", exported {}", p.display())).unwrap_or_default()
    );
    if trainer.interrupted {
        std::process::exit(130); // as a shell reports a Ctrl-C'd command
    }
    Ok(())
}

/// The config `fit` trains with: the recipe and its --set; when resuming, the run's own
/// config.yaml changed only where a --set says so (a recipe edited since the run started, or a
/// --set left out, would silently change a run half-way through).
fn fit_config(config: Option<&std::path::Path>, overrides: &[String], resume: Option<&Option<PathBuf>>) -> Result<Config> {
    let show = |changes: &[fer_train::config::Change]| changes.iter().map(|c| format!("\n  {c}")).collect::<String>();
    let (cfg, run) = match (config, resume) {
        (Some(_), Some(Some(run))) => bail!(
            "--resume {}: a run goes on with its own config.yaml; leave out --config (or name the run by --config and a bare --resume)",
            run.display()
        ),
        (None, Some(Some(run))) => {
            if let Some(o) = overrides.iter().find(|o| matches!(o.split('=').next(), Some("name" | "out_dir"))) {
                bail!("--set {o}: a resumed run goes on in its own folder, {}", run.display());
            }
            if !run.join("config.yaml").is_file() {
                bail!("--resume {}: no config.yaml there, so not a run folder (fit writes one into each run it starts)", run.display());
            }
            (Config::of_run(run, overrides)?, run.clone())
        }
        (Some(config), _) => {
            let cfg = Config::load(config, overrides)?;
            match resume {
                Some(_) if cfg.run_dir().join("config.yaml").is_file() => {
                    let run = cfg.run_dir();
                    (cfg, run)
                }
                // Nothing to compare with: a fresh run, or a resume that Trainer::new refuses.
                _ => return Ok(cfg),
            }
        }
        (None, _) => bail!("fit needs a recipe: --config <FILE.yaml> (configs/ has one per method), or --resume <RUN_DIR> to continue a run"),
    };
    let mut started = Config::of_run(&run, &[])?;
    (started.name, started.out_dir) = (cfg.name.clone(), cfg.out_dir.clone());
    let (asked, unasked): (Vec<_>, Vec<_>) = cfg.changes_from(&started).into_iter().partition(|c| c.written_by(overrides).is_some());
    if !unasked.is_empty() {
        bail!(
            "--resume: {} with this command's --set differs from {}, the config the run trains with, where no --set asks for it (was -> now):{}\nTo go on with the run's own config: fer-train fit --resume {} [--set only what you mean to change]",
            config.map_or("the recipe".into(), |c| c.display().to_string()),
            run.join("config.yaml").display(),
            show(&unasked),
            run.display()
        );
    }
    if !asked.is_empty() {
        tracing::info!("resuming {} with changes from its config.yaml:{}", run.display(), show(&asked));
    }
    Ok(cfg)
}

fn run_eval(
    run: PathBuf,
    checkpoint: Option<PathBuf>,
    split: String,
    overrides: Vec<String>,
    confusion_png: Option<PathBuf>,
    json: bool,
    raw_weights: bool,
) -> Result<()> {
    let loaded = fer_train::eval::LoadedRun::open(&run, checkpoint.as_deref(), &overrides, raw_weights)?;
    let (metrics, classes) = loaded.evaluate(&split)?;
    if let Some(png) = confusion_png {
        fer_train::plots::confusion_matrix(&png, &metrics.confusion, &classes).with_context(|| format!("drawing {}", png.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string(&metrics)?);
    } else {
        // Which view the numbers are for: they differ by points (docs/RESULTS.md, eval views).
        let t = &loaded.cfg.train;
        let view = if t.ten_crop_eval { "ten-crop" } else { t.eval_view.name() };
        let weights = if loaded.averaged { ", the weights' moving average" } else { "" };
        println!("{} on {split} ({} images, view {view}{weights})", run.display(), metrics.confusion.iter().flatten().sum::<u64>());
        print!("{}", fer_train::eval::report(&metrics, &classes));
    }
    Ok(())
}

fn run_export(run: PathBuf, checkpoint: Option<PathBuf>, out: PathBuf, cam: bool, weights: fer_train::export::WeightStorage) -> Result<()> {
    let loaded = fer_train::eval::LoadedRun::open(&run, checkpoint.as_deref(), &[], false)?;
    let val_acc = loaded.recorded_val_accuracy();
    fer_train::export::export_model(&loaded.model, &loaded.cfg, &loaded.classes, val_acc, &out, cam, weights)?;
    println!("wrote {} ({} classes, input {}x{})", out.display(), loaded.classes.len(), loaded.cfg.model.input_size, loaded.cfg.model.input_size);
    Ok(())
}

fn run_cache(config: PathBuf, overrides: Vec<String>) -> Result<()> {
    let cfg = Config::load(&config, &overrides)?;
    let dir = cfg.splits.cache_dir.as_deref().context("splits.cache_dir is null: this config caches nothing; set one (--set splits.cache_dir=.cache/data)")?;
    for split in [&cfg.splits.train, &cfg.splits.val] {
        let ds = fer_train::data::load_split_cached(&cfg.data, split, Some(dir))?;
        let path = fer_train::data::cache_path(&cfg.data, split, dir);
        println!("{split}: {} images, {} classes -> {}", ds.len(), ds.num_classes(), path.display());
    }
    Ok(())
}

fn run_bench(bench: &fer_train::bench::StepBench, json: bool) -> Result<()> {
    let t = fer_train::bench::time_training_step(bench)?;
    if json {
        println!("{}", serde_json::to_string(&t)?);
    } else {
        println!(
            "{} {} step, {}x{} px, batch {}, {}{}{}: {:.2} ms/step, {:.1} img/s ({} timed steps)",
            t.arch,
            t.method,
            t.size,
            t.size,
            t.batch,
            t.device,
            if t.channels_last { ", channels-last" } else { "" },
            if t.bf16 { ", bf16 autocast" } else { "" },
            t.ms_per_step,
            t.img_per_s,
            t.iters
        );
    }
    Ok(())
}

fn run_doctor() -> Result<()> {
    use tch::{Cuda, Device, Kind, Tensor};
    println!("fer-train {} (tch 0.24.0, built for libtorch 2.11.0)", env!("CARGO_PKG_VERSION"));
    println!("CUDA available: {}, devices: {}, cuDNN: {}", Cuda::is_available(), Cuda::device_count(), Cuda::cudnn_is_available());
    let flushed = fer_train::fpenv::libtorch_flushes_subnormals();
    println!("Cpu: subnormal floats {}", if flushed { "flushed to zero" } else { "kept (slow on x86; FER_KEEP_SUBNORMALS is set, or this CPU has no flush switch)" });
    let mut devices = vec![Device::Cpu];
    devices.extend((0..Cuda::device_count() as usize).map(Device::Cuda));
    for d in devices {
        // (A·B)·1 summed two ways: a real kernel on the device, checked against closed form.
        let a = Tensor::ones([256, 256], (Kind::Float, d));
        let got = a.matmul(&a).sum(Kind::Double).double_value(&[]);
        let want = 256.0f64.powi(3);
        anyhow::ensure!((got - want).abs() < 1e-3 * want, "matmul on {d:?} gave {got}, expected {want}");
        println!("{d:?}: 256x256 matmul ok ({got})");
        // The same product under bf16 autocast (train.bf16): it must run in bf16 and stay exact
        // (every entry is 256, a power of two).
        if fer_train::autocast::AVAILABLE {
            let (kind, got) = fer_train::autocast::bf16(d, true, || {
                let p = a.matmul(&a);
                (p.kind(), p.sum(Kind::Double).double_value(&[]))
            });
            anyhow::ensure!(kind == Kind::BFloat16 && got == want, "bf16 autocast on {d:?}: the matmul gave {kind:?}, sum {got} (expected BFloat16, {want})");
            let slow = d == Device::Cpu && !fer_train::autocast::cpu_has_bf16();
            println!("{d:?}: bf16 autocast ok{}", if slow { " (no bf16 instructions: slower than float32 here)" } else { "" });
        } else {
            println!("{d:?}: bf16 autocast not in this build");
        }
    }
    Ok(())
}
