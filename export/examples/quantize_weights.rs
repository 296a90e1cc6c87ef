//! Rewrites a model's large Conv and Gemm weights as int8 with per-channel scales
//! (`fer_export::int8`), so a ResNet-18 fits the 20 MB a shipped file may take:
//!
//!     cargo run --release -p fer-export --example quantize_weights -- model.onnx out.onnx
//!
//! A float16 file (`fer-train export --fp16`, or a model returned from the GPU machine) is first
//! turned back into float32 (`fer_export::fp16::to_fp32`). Check the result's accuracy with
//! `fer-run eval` on both backends before shipping it: the card reports that number.

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
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [input, output] = args.as_slice() else {
        return Err("usage: quantize_weights <model.onnx> <out.onnx>".into());
    };
    if input == output {
        return Err("write the int8 file next to the original, not over it".into());
    }
    let mut model = fer_export::load(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let graph = model.graph.as_ref().filter(|g| !g.node.is_empty());
    let graph = graph.ok_or_else(|| {
        format!(
            "{}: not an ONNX model (no graph nodes); nothing written",
            input.display()
        )
    })?;
    let float16 = fer_export::pb::tensor_proto::DataType::Float16 as i32;
    if graph.initializer.iter().any(|t| t.data_type == float16) {
        model = fer_export::fp16::to_fp32(model).map_err(|e| e.to_string())?;
        println!("{}: float16 weights, read back as float32", input.display());
    }
    let (mut model, q) = fer_export::int8::quantize_weights(model, fer_export::int8::MIN_ELEMENTS)
        .map_err(|e| format!("{}: {e}", input.display()))?;
    fer_export::flush_subnormals(&mut model);
    fer_export::save(&model, output).map_err(|e| e.to_string())?;
    let size = |p: &PathBuf| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1e6)
            .unwrap_or(f64::NAN)
    };
    println!(
        "{} ({:.1} MB) -> {} ({:.1} MB): {} weights, {} values as int8, worst rounding {:.3} % of a channel's largest weight",
        input.display(),
        size(input),
        output.display(),
        size(output),
        q.tensors,
        q.elements,
        100.0 * q.worst_relative_error
    );
    Ok(())
}
