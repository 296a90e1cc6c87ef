//! One trait over the inference backends: ONNX Runtime (`ort` feature; CPU, CUDA, TensorRT
//! execution providers) and tract (pure Rust, CPU, any target including aarch64).
//! Both return the contract's outputs as [`Outputs`], checked here, in one place.

#[cfg(feature = "ort")]
mod ep;
#[cfg(feature = "ort")]
pub(crate) mod ort;
pub(crate) mod tract;
mod tract_ops;
pub use tract::{prefer_tile_use_kernels, prepare_tract_graph};

use crate::error::{FerError, Result};
use crate::metadata::{outputs as names, ModelInfo};
use ndarray::{Array1, Array2, Array4, ArrayD, ArrayView4, Ix1, Ix2, Ix4};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// An execution provider for ONNX Runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda,
    /// TensorRT, with CUDA then CPU behind it for the nodes TensorRT does not take.
    TensorRt,
}

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// ONNX Runtime on the given device (falls back to CPU, with a warning, if the device's
    /// execution provider is missing).
    Ort { device: Device },
    /// tract, pure Rust, CPU.
    Tract,
    /// ONNX Runtime on CPU if its library loads (`ORT_DYLIB_PATH`, or `libonnxruntime.so` on the
    /// library path), else tract.
    #[default]
    Auto,
}

impl FromStr for Device {
    type Err = FerError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            "tensorrt" | "trt" => Ok(Device::TensorRt),
            _ => Err(FerError::Invalid {
                what: "device",
                value: s.into(),
                reason: "expected cpu, cuda or tensorrt".into(),
            }),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::TensorRt => "tensorrt",
        })
    }
}

impl FromStr for Backend {
    type Err = FerError;
    /// `auto`, `tract`, `ort` (CPU) or `ort:<device>`.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        match lower.split_once(':') {
            Some(("ort", dev)) => Ok(Backend::Ort {
                device: dev.parse()?,
            }),
            None if lower == "ort" => Ok(Backend::Ort {
                device: Device::Cpu,
            }),
            None if lower == "tract" => Ok(Backend::Tract),
            None if lower == "auto" => Ok(Backend::Auto),
            _ => Err(FerError::Invalid {
                what: "backend",
                value: s.into(),
                reason: "expected auto, tract, ort or ort:<cpu|cuda|tensorrt>".into(),
            }),
        }
    }
}

/// Whether ONNX Runtime can be used: the crate was built with `ort` and its library loads.
pub fn ort_available() -> bool {
    #[cfg(feature = "ort")]
    {
        ort::environment().is_ok()
    }
    #[cfg(not(feature = "ort"))]
    {
        false
    }
}

/// The contract's outputs for a batch of `N` images and `K` classes.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// `[N, K]`.
    pub logits: Array2<f32>,
    /// `[N, K]`, the model's (possibly corrected) class distribution.
    pub probs: Array2<f32>,
    /// `[N, K, h, w]` class activation maps, when the model has them.
    pub cam: Option<Array4<f32>>,
    /// `[N]`, when the model computes its own confidence (GReFEL).
    pub confidence: Option<Array1<f32>>,
}

impl Outputs {
    /// Assembles and checks named backend outputs for a batch of `n`.
    pub(crate) fn from_named(mut named: Vec<(String, ArrayD<f32>)>, n: usize) -> Result<Outputs> {
        let mut take = |name: &str| {
            named
                .iter()
                .position(|(k, _)| k == name)
                .map(|i| named.swap_remove(i).1)
        };
        let bad = |name: &str, reason: String| FerError::Output {
            name: name.into(),
            reason,
        };
        let nk = |name: &str, a: ArrayD<f32>| -> Result<Array2<f32>> {
            let shape = a.shape().to_vec();
            let a = a
                .into_dimensionality::<Ix2>()
                .map_err(|_| bad(name, format!("shape {shape:?}, expected [N, K]")))?;
            if a.nrows() != n {
                return Err(bad(name, format!("shape {shape:?} for a batch of {n}")));
            }
            Ok(a)
        };
        let logits = nk(
            names::LOGITS,
            take(names::LOGITS).ok_or_else(|| bad(names::LOGITS, "missing".into()))?,
        )?;
        let probs = nk(
            names::PROBS,
            take(names::PROBS).ok_or_else(|| bad(names::PROBS, "missing".into()))?,
        )?;
        if logits.dim() != probs.dim() {
            return Err(bad(
                names::PROBS,
                format!(
                    "shape {:?} differs from logits {:?}",
                    probs.dim(),
                    logits.dim()
                ),
            ));
        }
        let k = probs.ncols();
        let cam = match take(names::CAM) {
            Some(a) => {
                let shape = a.shape().to_vec();
                let a = a.into_dimensionality::<Ix4>().map_err(|_| {
                    bad(
                        names::CAM,
                        format!("shape {shape:?}, expected [N, K, h, w]"),
                    )
                })?;
                if a.dim().0 != n || a.dim().1 != k {
                    return Err(bad(
                        names::CAM,
                        format!("shape {shape:?}, expected [{n}, {k}, h, w]"),
                    ));
                }
                Some(a)
            }
            None => None,
        };
        let confidence = match take(names::CONFIDENCE) {
            Some(a) => {
                let shape = a.shape().to_vec();
                // [N] by the contract; [N, 1] is accepted as the same thing.
                let flat = if shape.len() == 2 && shape[1] == 1 {
                    a.into_shape_with_order(vec![n])?
                } else {
                    a
                };
                let a = flat.into_dimensionality::<Ix1>().map_err(|_| {
                    bad(names::CONFIDENCE, format!("shape {shape:?}, expected [N]"))
                })?;
                if a.len() != n {
                    return Err(bad(
                        names::CONFIDENCE,
                        format!("shape {shape:?} for a batch of {n}"),
                    ));
                }
                Some(a)
            }
            None => None,
        };
        Ok(Outputs {
            logits,
            probs,
            cam,
            confidence,
        })
    }
}

/// A loaded model on one backend. Implementations are `Send + Sync`: one engine serves many
/// threads (ONNX Runtime's session behind a mutex, tract's plans shared read-only).
pub trait Engine: Send + Sync {
    /// Runs a batch `[N, C, H, W]` (already preprocessed) through the model.
    fn run(&self, x: ArrayView4<f32>) -> Result<Outputs>;
    /// What runs the model, e.g. `onnxruntime (CPUExecutionProvider)` or `tract`.
    fn name(&self) -> String;
}

/// Opens `bytes` (the model file at `path`) on the requested backend.
pub(crate) fn open(
    bytes: &[u8],
    proto: &tract_onnx::pb::ModelProto,
    path: &Path,
    info: &ModelInfo,
    backend: Backend,
) -> Result<Box<dyn Engine>> {
    match backend {
        Backend::Tract => Ok(Box::new(tract::TractEngine::new(proto, path, info)?)),
        Backend::Ort { device } => open_ort(bytes, info, device),
        Backend::Auto => {
            if ort_available() {
                open_ort(bytes, info, Device::Cpu)
            } else {
                tracing::info!("ONNX Runtime not available; using tract");
                Ok(Box::new(tract::TractEngine::new(proto, path, info)?))
            }
        }
    }
}

#[cfg(feature = "ort")]
fn open_ort(bytes: &[u8], info: &ModelInfo, device: Device) -> Result<Box<dyn Engine>> {
    Ok(Box::new(ort::OrtEngine::new(bytes, info, device)?))
}

#[cfg(not(feature = "ort"))]
fn open_ort(_: &[u8], _: &ModelInfo, _: Device) -> Result<Box<dyn Engine>> {
    Err(FerError::OrtUnavailable(
        "fer-runtime was built without the `ort` feature; use the tract backend".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn arr(shape: &[usize]) -> ArrayD<f32> {
        ArrayD::zeros(IxDyn(shape))
    }

    #[test]
    fn backend_and_device_parse() {
        assert_eq!(
            "ort:cuda".parse::<Backend>().unwrap(),
            Backend::Ort {
                device: Device::Cuda
            }
        );
        assert_eq!(
            "ORT".parse::<Backend>().unwrap(),
            Backend::Ort {
                device: Device::Cpu
            }
        );
        assert_eq!("tract".parse::<Backend>().unwrap(), Backend::Tract);
        assert!("onnx".parse::<Backend>().is_err());
        assert_eq!("trt".parse::<Device>().unwrap(), Device::TensorRt);
    }

    #[test]
    fn outputs_are_checked_against_the_contract() {
        let ok = vec![
            ("probs".to_string(), arr(&[2, 3])),
            ("logits".to_string(), arr(&[2, 3])),
            ("confidence".to_string(), arr(&[2, 1])),
            ("cam".to_string(), arr(&[2, 3, 4, 4])),
        ];
        let o = Outputs::from_named(ok, 2).unwrap();
        assert_eq!(o.confidence.unwrap().len(), 2);
        assert_eq!(o.cam.unwrap().dim(), (2, 3, 4, 4));
        let wrong_batch = vec![
            ("probs".to_string(), arr(&[1, 3])),
            ("logits".to_string(), arr(&[1, 3])),
        ];
        assert!(matches!(
            Outputs::from_named(wrong_batch, 2),
            Err(FerError::Output { .. })
        ));
        let wrong_cam = vec![
            ("probs".to_string(), arr(&[1, 3])),
            ("logits".to_string(), arr(&[1, 3])),
            ("cam".to_string(), arr(&[1, 2, 4, 4])),
        ];
        assert!(
            matches!(Outputs::from_named(wrong_cam, 1), Err(FerError::Output { name, .. }) if name == "cam")
        );
    }
}
