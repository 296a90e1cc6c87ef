//! Where tract spends its time on a model: runs the optimised batch-1 plan `--iters` times and
//! prints the total per operator kind, slowest first. A maintainer's tool for the tract backend:
//!
//!     cargo run --release -p fer-runtime --example tract_profile -- model.onnx [iters]
//!
//! Like the runtime it prepares the graph with `fer_runtime::prepare_tract_graph` (the backend's
//! depthwise op, tract's `conv_nhwc` transform); `TRACT_TRANSFORMS=` profiles the graph without either, `TRACT_TRANSFORMS=a,b` applies other registered transforms instead.
//! It runs single-threaded unless `FER_TRACT_THREADS=n` gives it the runtime's intra-op pool
//! (`fer_runtime::intra_op`), whose split gates `FER_TRACT_PANEL_GATE` / `FER_TRACT_ELEMENT_GATE`
//! override. `TRACT_PROFILE_NODES=1` lists every node (id, op, output shape)
//! instead of totals per operator kind, `TRACT_PROFILE_NODES=info` adds what tract says of each node
//! (for a matrix product: m, k, n and the kernel picked).
//!
//! A float16 file is profiled as the runtime runs it: upcast to float32 on targets without native
//! half precision (part of `prepare_tract_graph`).

use anyhow::Context;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use fer_runtime::intra_op::IntraOp;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_core::plan::{eval, SimplePlan, SimpleState};

fn main() -> TractResult<()> {
    // The kernel choice `fer-run` makes (set `TRACT_X86_KIND=intel` to profile tract's own).
    // SAFETY: no other thread exists yet.
    unsafe { fer_runtime::prefer_tile_use_kernels() };
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).context("usage: tract_profile <model.onnx> [iters]")?;
    let iters: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(50);
    let model = tract_onnx::onnx().model_for_path(path)?;
    let fact = model.input_fact(0)?.clone();
    let shape: Vec<usize> = fact
        .shape
        .dims()
        .enumerate()
        .map(|(i, d)| if i == 0 { Some(1) } else { d.concretize().and_then(|d| d.to_i64().ok().map(|d| d as usize)) })
        .collect::<Option<_>>()
        .context("input dims other than the batch must be fixed")?;
    let mut model = model.with_input_fact(0, f32::fact(&shape).into())?.into_typed()?;
    // The runtime's tract backend's graph (its depthwise op, then convolutions channel-last);
    // `TRACT_TRANSFORMS=` (empty) profiles ONNX's own layout with tract's ops only, a comma list
    // tries other registered transforms instead.
    match std::env::var("TRACT_TRANSFORMS") {
        Err(_) => fer_runtime::prepare_tract_graph(&mut model)?,
        Ok(names) => {
            for name in names.split(',').filter(|n| !n.is_empty()) {
                let t = tract_onnx::tract_core::transform::get_transform(name)?.with_context(|| format!("tract has no transform `{name}`"))?;
                t.transform(&mut model)?;
            }
        }
    }
    let model = model.into_optimized()?;
    let plan = SimplePlan::new(model)?;
    let mut state = SimpleState::new(&plan)?;
    let input: Tensor = tract_ndarray::ArrayD::<f32>::from_elem(shape, 0.1).into();
    let mut per_op: HashMap<String, (Duration, usize)> = HashMap::new();
    let per_node = std::env::var_os("TRACT_PROFILE_NODES").is_some_and(|v| v != "0");
    // `TRACT_PROFILE_NODES=info` adds each node's own description (the kernel a matrix product picked).
    let with_info = std::env::var_os("TRACT_PROFILE_NODES").is_some_and(|v| v == "info");
    // `FER_TRACT_THREADS=n` (n > 1) profiles on an intra-op pool of n threads, as the runtime runs.
    let threads = std::env::var("FER_TRACT_THREADS").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(1);
    let pool = IntraOp::with_threads(threads);
    // Trying other split gates than the runtime's: `FER_TRACT_PANEL_GATE=n` (kernel tiles of a
    // matrix product), `FER_TRACT_ELEMENT_GATE=n` (output values of depthwise / element-wise ops).
    let gate = |name: &str| -> TractResult<Option<usize>> {
        std::env::var(name).ok().map(|v| v.parse::<usize>().with_context(|| format!("{name}={v}: expected a whole number"))).transpose()
    };
    if let Some(n) = gate("FER_TRACT_PANEL_GATE")? {
        tract_linalg::multithread::set_threading_panel_threshold(n);
    }
    if let Some(n) = gate("FER_TRACT_ELEMENT_GATE")? {
        tract_linalg::multithread::set_threading_element_threshold(n);
    }
    let t0 = Instant::now();
    pool.run(|| -> TractResult<()> {
        for _ in 0..iters {
            state.run_plan_with_eval(tvec!(input.clone().into()), |ctx, st, node, inputs| {
                let t = Instant::now();
                let out = eval(ctx, st, node, inputs);
                let key = if per_node {
                    let mut key = format!("{} {} {:?}", node.id, node.op().name(), node.outputs[0].fact.shape);
                    if with_info {
                        key += &format!(" [{}]", node.op().info().unwrap_or_default().join("; "));
                    }
                    key
                } else {
                    node.op().name().to_string()
                };
                let e = per_op.entry(key).or_default();
                e.0 += t.elapsed();
                e.1 += 1;
                out
            })?;
        }
        Ok(())
    })?;
    let total = t0.elapsed();
    let mut rows: Vec<_> = per_op.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.cmp(&a.1 .0));
    println!("{:28} {:>10} {:>8} {:>6}", if per_node { "node" } else { "op" }, "ms/run", "nodes", "share");
    for (op, (d, n)) in rows {
        let ms = d.as_secs_f64() * 1e3 / iters as f64;
        println!("{op:28} {ms:10.3} {:8} {:5.1}%", n / iters, 100.0 * d.as_secs_f64() / total.as_secs_f64());
    }
    println!("total {:.3} ms/run", total.as_secs_f64() * 1e3 / iters as f64);
    Ok(())
}
