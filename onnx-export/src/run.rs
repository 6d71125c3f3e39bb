//! Running an ONNX model with tract: loaded and optimised once, the plan
//! reused for every frame.

use crate::export::{self, Calibration, InputSize};
use crate::weights::UNetWeights;
use crate::Error;
use std::sync::Arc;
use tract_onnx::prelude::*;

/// One output of a run: its shape and its values, row-major.
pub type Output = (Vec<usize>, Vec<f32>);

/// The form a bundle's model runs in, named by its manifest's `precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// The float graph as written.
    Fp32,
    /// Integer convolutions (`QLinearConv`, int8 weights, uint8
    /// activations) written into the file.
    Int8,
    /// The float graph, run by tract in half precision (`f32_to_f16`):
    /// fast only on cores with FP16 arithmetic (ARMv8.2, e.g. Cortex-A76 and
    /// A55; docs/edge.md).
    F16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Int8, Precision::F16];
    pub const NAMES: [&'static str; 3] = [
        Precision::ALL[0].name(),
        Precision::ALL[1].name(),
        Precision::ALL[2].name(),
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
            Precision::F16 => "f16",
        }
    }

    /// The manifest's name, or an error listing the known ones.
    pub fn parse(name: &str) -> Result<Self, Error> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                Error::Model(format!(
                    "precision {name:?} is not one of {}",
                    Precision::NAMES.join(", ")
                ))
            })
    }
}

/// Takes tract's Intel AMX int8 kernels out of its dispatch, once, before
/// the first plan (tract probes the CPU once and keeps what it found).
///
/// tract 0.23.9 runs int8 matrix products on AMX cores (Sapphire Rapids
/// and later) with `avx512amx_mmm_i32_8x8`, and that kernel crashed int8
/// runs now and then with SIGSEGV inside it (2026-12-07: the trainer's
/// export test on CI, and twice in about twenty runs here; the core dump
/// in docs/edge.md). The kernel loads B in 64-K tiles from a panel padded
/// to K = 4, so its last load reads past the buffer
/// (docs/upstream/tract-amx-int8-overread.md). Without it tract takes its
/// AVX-512 VNNI kernels, which give the same integers. A user's own
/// `TRACT_CPU_ISA` edits are kept.
fn without_amx_int8() {
    #[cfg(target_arch = "x86_64")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let knob = &tract_onnx::tract_core::tract_linalg::knobs::TRACT_CPU_ISA;
            let spec = match knob.get() {
                Some(own) if !own.trim().is_empty() => format!("{own},-amx-int8"),
                _ => "-amx-int8".to_string(),
            };
            knob.set(Some(spec));
        });
    }
}

/// An optimised tract plan for a model with one `[1, C, H, W]` f32 input.
#[derive(Debug, Clone)]
pub struct Runner {
    plan: Arc<TypedSimplePlan>,
    /// `[1, C, H, W]` the plan runs on (a tile size may replace H and W).
    pub input_shape: [usize; 4],
    /// `[1, C, H, W]` as the model declares it.
    pub declared_shape: [usize; 4],
    /// The form the plan runs in.
    pub precision: Precision,
}

impl Runner {
    /// Parses, type-checks and optimises `bytes` (an ONNX model).
    pub fn load(bytes: &[u8]) -> Result<Self, Error> {
        Self::load_tiled(bytes, None)
    }

    /// As [`Runner::load`], with the plan made for `tile` (`[H, W]`)
    /// instead of the model's declared input: a fully convolutional model
    /// runs on any tile its pooling divides, and tract's working memory
    /// follows the tile's area (a unit with little memory uses small tiles
    /// on large frames).
    ///
    /// The file runs as written: int8 if it has integer convolutions,
    /// else fp32.
    pub fn load_tiled(bytes: &[u8], tile: Option<[usize; 2]>) -> Result<Self, Error> {
        let written = if integer_convolutions(bytes)? {
            Precision::Int8
        } else {
            Precision::Fp32
        };
        Self::plan(bytes, tile, written)
    }

    /// As [`Runner::load_tiled`], run in `precision`: `F16` converts the
    /// float graph to half precision before optimising; `Fp32` and `Int8`
    /// run the file as written (an int8 file is integer already).
    pub fn load_as(
        bytes: &[u8],
        tile: Option<[usize; 2]>,
        precision: Precision,
    ) -> Result<Self, Error> {
        // The form the manifest names is the form the file holds: integer
        // convolutions for int8 and none for the float forms.
        let integer = integer_convolutions(bytes)?;
        if integer != (precision == Precision::Int8) {
            return Err(Error::Model(format!(
                "the manifest says {}, but model.onnx {} integer convolutions",
                precision.name(),
                if integer { "has" } else { "has no" }
            )));
        }
        Self::plan(bytes, tile, precision)
    }

    /// The optimised plan of `bytes` in `precision` (checked by the caller).
    fn plan(bytes: &[u8], tile: Option<[usize; 2]>, precision: Precision) -> Result<Self, Error> {
        without_amx_int8();
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .map_err(|e| Error::Model(format!("not a model tract can read: {e:#}")))?;
        let fact = model
            .input_fact(0)
            .map_err(|e| Error::Model(format!("{e:#}")))?
            .clone();
        let shape: Vec<usize> = fact
            .shape
            .as_concrete_finite()
            .ok()
            .flatten()
            .ok_or_else(|| Error::Model("the model's input has no fixed shape".into()))?
            .to_vec();
        let mut input_shape: [usize; 4] = shape.as_slice().try_into().map_err(|_| {
            Error::Model(format!("the model's input is {shape:?}, not [1, C, H, W]"))
        })?;
        let declared_shape = input_shape;
        if let Some([th, tw]) = tile {
            input_shape[2] = th;
            input_shape[3] = tw;
            model = model
                .with_input_fact(0, f32::fact(input_shape).into())
                .map_err(|e| Error::Model(format!("tile {tw}x{th}: {e:#}")))?;
        }
        if input_shape[0] != 1 {
            return Err(Error::Model(format!(
                "batch {} instead of 1",
                input_shape[0]
            )));
        }
        let plan = model
            .into_typed()
            .and_then(|mut m| {
                if precision == Precision::F16 {
                    m.transform(&tract_onnx::tract_core::floats::FloatPrecisionTranslator::new(
                        f32::datum_type(),
                        f16::datum_type(),
                    ))?;
                }
                m.into_optimized()
            })
            .and_then(|m| m.into_runnable())
            .map_err(|e| match tile {
                Some([th, tw]) => Error::Model(format!(
                    "the model cannot run on {tw}x{th} tiles (its pooling must divide both sides): {e:#}"
                )),
                None => Error::Model(format!("tract cannot run the model: {e:#}")),
            })?;
        Ok(Runner {
            plan,
            input_shape,
            declared_shape,
            precision,
        })
    }

    /// Number of input values the model takes.
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Runs one input (row-major `[1, C, H, W]`), returns every output
    /// flattened, each with its shape.
    pub fn run(&self, input: &[f32]) -> Result<Vec<Output>, Error> {
        if input.len() != self.input_len() {
            return Err(Error::Shape(format!(
                "input has {} values, the model takes {:?}",
                input.len(),
                self.input_shape
            )));
        }
        let mut t = Tensor::from_shape(&self.input_shape, input)
            .map_err(|e| Error::Model(e.to_string()))?;
        if self.precision == Precision::F16 {
            t = t
                .cast_to::<f16>()
                .map_err(|e| Error::Model(e.to_string()))?
                .into_owned();
        }
        let out = self
            .plan
            .run(tvec!(t.into()))
            .map_err(|e| Error::Model(format!("inference failed: {e:#}")))?;
        out.iter()
            .map(|t| {
                let t = t
                    .cast_to::<f32>()
                    .map_err(|e| Error::Model(e.to_string()))?;
                let v = t
                    .try_as_plain_ram()
                    .and_then(|p| p.as_slice::<f32>().map(|s| s.to_vec()))
                    .map_err(|e| Error::Model(e.to_string()))?;
                Ok((t.shape().to_vec(), v))
            })
            .collect()
    }

    /// The first output only (the class maps).
    pub fn maps(&self, input: &[f32]) -> Result<Vec<f32>, Error> {
        Ok(self.run(input)?.swap_remove(0).1)
    }
}

/// Whether the ONNX file `bytes` has integer convolutions (`QLinearConv`
/// or `ConvInteger`).
pub fn integer_convolutions(bytes: &[u8]) -> Result<bool, Error> {
    use prost::Message;
    let m = tract_onnx::pb::ModelProto::decode(bytes)
        .map_err(|e| Error::Model(format!("not an ONNX model: {e}")))?;
    Ok(m.graph.is_some_and(|g| {
        g.node
            .iter()
            .any(|n| n.op_type == "QLinearConv" || n.op_type == "ConvInteger")
    }))
}

/// Activation ranges of `w` over `images` (each `[C, H, W]` at `size`),
/// measured with tract on the tapped fp32 graph.
pub fn calibrate(
    w: &UNetWeights,
    size: InputSize,
    images: &[Vec<f32>],
) -> Result<Calibration, Error> {
    if images.is_empty() {
        return Err(Error::Shape("calibration needs at least one image".into()));
    }
    let model = export::fp32(w, size, true)?;
    let runner = Runner::load(&crate::graph::encode(&model))?;
    let taps = export::tap_names(w).len();
    let mut cal: Option<Calibration> = None;
    for img in images {
        let out = runner.run(img)?;
        if out.len() != taps + 1 {
            return Err(Error::Model(format!(
                "tapped model gave {} outputs",
                out.len()
            )));
        }
        let range = |v: &[f32]| {
            v.iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                })
        };
        let this = Calibration {
            input: range(img),
            relu_max: out[1..taps].iter().map(|(_, v)| range(v).1).collect(),
            logits: range(&out[taps].1),
        };
        match &mut cal {
            Some(c) => c.merge(&this),
            None => cal = Some(this),
        }
    }
    Ok(cal.expect("at least one image"))
}
