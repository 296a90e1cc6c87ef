//! `fer-train`: noise-robust facial-expression recognition trained with tch, exported to ONNX.
//!
//! - [`data`]: dataset readers (FER2013 CSV, image folders, RAF-DB, path/label CSV), label noise
//! - [`augment`]: GPU-side augmentation (resize, random crop, flip, random erasing)
//! - [`nn`]: trainable blocks, each with its tch `forward` and its ONNX emission side by side
//! - [`models`]: backbones (ResNet-18/50, SE-ResNet-50, MobileNetV2, IVSA's VGG) and the heads
//!   (linear + CAM, IVSA's 3 FC, GReFEL's reliability balancing, DAN's MAN + AFN)
//! - [`methods`]: losses and recipes (cross-entropy, EAC, DacFER, GReFEL, DAN + attention consistency)
//! - [`distill`]: knowledge distillation from a teacher's stored logits (`distill` in a config)
//! - [`autocast`]: bf16 mixed precision (`train.bf16`)
//! - [`train`]: the training loop, optimisers, schedulers, checkpoints
//! - [`fpenv`]: subnormal floats flushed to zero on the CPU (they slow x86 arithmetic down)
//! - [`bench`](mod@bench): the training step timed as the PyTorch peer's benchmark times it

pub mod augment;
pub mod autocast;
pub mod bench;
pub mod data;
pub mod distill;
pub mod ema;
pub mod models;
pub mod nn;
pub mod onnx_init;
pub mod checkpoint;
pub mod config;
pub mod export;
pub mod methods;
pub mod metrics;
pub mod optim;
pub mod plots;
pub mod train;
pub mod eval;
pub mod fpenv;
