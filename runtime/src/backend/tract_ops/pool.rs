//! Max pooling channel-last. Not for its own speed (a ResNet stem's 3x3 pooling is a small part of
//! a run) but for the layout: left to tract, the pooling stays channel-first between the stem
//! convolution and the first residual block, and the layout moves around it cannot be cancelled
//! (its output feeds both a convolution and a residual add), which cost ResNet-18 eight moves and
//! its unfused activations.

use super::Geometry;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::MaxPool;
use tract_onnx::tract_core::ops::nn::DataFormat;

/// `[N, H, W, C]` float32 → `[N, OH, OW, C]`, the maximum over each window's taps inside the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MaxPoolNhwc {
    g: Geometry,
}

impl Op for MaxPoolNhwc {
    fn name(&self) -> StaticName {
        "FerMaxPoolNhwc".into()
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPoolNhwc {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let g = &self.g;
        let x = args_1!(inputs);
        let n = g.batch_of("FerMaxPoolNhwc", x.shape())?;
        let x = x.try_as_plain_ram()?.as_slice::<f32>()?;
        let mut out = vec![f32::NEG_INFINITY; n * g.oh * g.ow * g.cout];
        let c = g.cin;
        for (xi, oi) in x
            .chunks_exact(g.h * g.w * c)
            .zip(out.chunks_exact_mut(g.oh * g.ow * c))
        {
            for oy in 0..g.oh {
                let (by, ky0, ky1) = g.row_taps(oy);
                for ox in 0..g.ow {
                    let (bx, kx0, kx1) = g.col_taps(ox);
                    let o = &mut oi[(oy * g.ow + ox) * c..][..c];
                    for ky in ky0..ky1 {
                        let iy = (by + (ky * g.dilation.0) as isize) as usize;
                        for kx in kx0..kx1 {
                            let ix = (bx + (kx * g.dilation.1) as isize) as usize;
                            for (m, &v) in o.iter_mut().zip(&xi[(iy * g.w + ix) * c..][..c]) {
                                *m = m.max(v);
                            }
                        }
                    }
                }
            }
        }
        let out = tract_ndarray::Array4::from_shape_vec((n, g.oh, g.ow, c), out)?;
        Ok(tvec!(Tensor::from(out).into_tvalue()))
    }
}

impl TypedOp for MaxPoolNhwc {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(self.g.output_fact(inputs[0]))
    }

    as_op!();
}

impl MaxPoolNhwc {
    /// The op for a float32 NCHW 2-D max pooling of a concrete shape without index output.
    pub(super) fn from_pool(
        model: &TypedModel,
        node: &TypedNode,
        pool: &MaxPool,
    ) -> TractResult<Option<MaxPoolNhwc>> {
        let spec = &pool.pool_spec;
        let x = model.outlet_fact(node.inputs[0])?;
        let Some(shape) = x.shape.as_concrete() else {
            return Ok(None);
        };
        if pool.with_index_outputs.is_some()
            || x.datum_type != f32::datum_type()
            || spec.data_format != DataFormat::NCHW
            || spec.kernel_shape.len() != 2
            || shape.len() != 4
            || node.inputs.len() != 1
        {
            return Ok(None);
        }
        let g = Geometry::of(spec, shape[1], (shape[2], shape[3]));
        Ok(Some(MaxPoolNhwc { g }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::values;
    use super::*;

    #[test]
    fn max_pool_matches_the_definition_with_padding_and_strides() {
        // ResNet's stem pooling (3x3, stride 2, pad 1) and an asymmetric one.
        for (h, w, c, k, s, pad) in [
            (9, 9, 16, (3, 3), (2, 2), ((1, 1), (1, 1))),
            (5, 7, 3, (2, 3), (1, 2), ((0, 1), (1, 0))),
        ] {
            let out =
                |len: usize, (b, a): (usize, usize), k: usize, s: usize| (len + b + a - k) / s + 1;
            let g = Geometry {
                h,
                w,
                cin: c,
                cout: c,
                kh: k.0,
                kw: k.1,
                stride: s,
                dilation: (1, 1),
                pad: (pad.0 .0, pad.1 .0),
                pad_end: (pad.0 .1, pad.1 .1),
                oh: out(h, pad.0, k.0, s.0),
                ow: out(w, pad.1, k.1, s.1),
            };
            let x = values(h * w * c, 5);
            let op = MaxPoolNhwc { g: g.clone() };
            let got = op
                .eval(
                    &EvalContext::out_of_plan(),
                    tvec![Tensor::from_shape(&[1, h, w, c], &x).unwrap().into_tvalue()],
                )
                .unwrap();
            let got = got[0]
                .try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec();
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for ch in 0..c {
                        let mut m = f32::NEG_INFINITY;
                        for ky in 0..k.0 {
                            for kx in 0..k.1 {
                                let (iy, ix) = (
                                    (oy * s.0 + ky) as isize - g.pad.0 as isize,
                                    (ox * s.1 + kx) as isize - g.pad.1 as isize,
                                );
                                if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                    m = m.max(x[(iy as usize * w + ix as usize) * c + ch]);
                                }
                            }
                        }
                        assert_eq!(got[(oy * g.ow + ox) * c + ch], m, "({oy}, {ox}, {ch})");
                    }
                }
            }
        }
    }
}
