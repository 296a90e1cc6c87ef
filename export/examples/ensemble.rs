//! Joins fer models into one ONNX file that averages their class probabilities
//! (`fer_export::ensemble`: the members must see a face alike; a smaller member's input is resized
//! inside the graph):
//!
//!     cargo run --release -p fer-export --example ensemble -- a.onnx b.onnx [more.onnx] out.onnx
//!
//! The file is checked in tract before it is written (atomically). It carries no validation
//! accuracy of its own: measure it with `fer-run eval` on both backends, then record it with
//! `scripts/set_metadata.py out.onnx fer.val_accuracy=...`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut paths: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let output = paths.pop().filter(|_| paths.len() >= 2);
    let output = output.ok_or("usage: ensemble <a.onnx> <b.onnx> [more.onnx ...] <out.onnx>")?;
    if paths.contains(&output) {
        return Err(format!("{} is one of the members: write the ensemble to a new file", output.display()));
    }
    let names: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned()))
        .collect();
    let members = names
        .iter()
        .zip(&paths)
        .map(|(name, p)| Ok((name.as_str(), fer_export::load(p).map_err(|e| e.to_string())?)))
        .collect::<Result<Vec<_>, String>>()?;
    let (mut model, built) = fer_export::ensemble::ensemble(&members).map_err(|e| e.to_string())?;
    fer_export::flush_subnormals(&mut model);
    let (h, w) = built.input_size;
    fer_export::check::load_in_tract(&fer_export::to_bytes(&model), &[1, built.channels, h, w])
        .map_err(|e| format!("the ensemble does not load in tract, nothing written: {e}"))?;
    fer_export::save(&model, &output).map_err(|e| e.to_string())?;
    for (name, size) in names.iter().zip(&built.member_sizes) {
        let resized = if *size == built.input_size { String::new() } else { format!(", resized from {h}x{w}") };
        println!("  {name}: {}x{} input{resized}", size.0, size.1);
    }
    let cam = match &built.cam {
        Ok((mh, mw)) => format!("cam the mean of the members' maps at {mh}x{mw}"),
        Err(why) => format!("no cam output ({why})"),
    };
    let mb = std::fs::metadata(&output).map(|m| m.len() as f64 / 1e6).unwrap_or(f64::NAN);
    println!("wrote {} ({mb:.1} MB): {h}x{w} input, probs the mean of {} models, {cam}", output.display(), members.len());
    println!("next: fer-run eval -m {} <val dir> (both backends), then scripts/set_metadata.py ... fer.val_accuracy=", output.display());
    Ok(())
}
