//! From tch to ONNX: the exported fp32 graph gives tch's output within 1e-4
//! (BatchNorm folded, Resize for the upsampling) and int8 stays close.
//!
//! Apart from tests/export.rs so that its end-to-end run has the process,
//! and the global torch generator, to itself: run beside these, what it
//! drew depended on the interleaving, so its path changed from run to run.

use nemascope_onnx::export::{self as onnx, InputSize};
use nemascope_onnx::graph::encode;
use nemascope_onnx::Runner;
use nemascope_train::export::unet_weights;
use nemascope_train::unet::{UNet, UNetConfig};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

#[test]
fn tch_and_tract_agree_within_1e_4() {
    agree(false);
}

#[test]
fn separable_tch_and_tract_agree_within_1e_4() {
    agree(true);
}

fn agree(separable: bool) {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let cfg = UNetConfig {
        in_channels: 1,
        classes: 2,
        base: 4,
        depth: 2,
        separable,
    };
    let net = UNet::new(&vs.root(), cfg);
    // Training-mode passes move BatchNorm's running statistics away from
    // 0/1, so folding them is really tested.
    for _ in 0..5 {
        let x = Tensor::randn([2, 1, 32, 48], (Kind::Float, tch::Device::Cpu)) * 2.0 + 0.5;
        let _ = net.forward_t(&x, true);
    }
    let x = Tensor::randn([1, 1, 32, 48], (Kind::Float, tch::Device::Cpu));
    let want: Vec<f32> =
        Vec::try_from(tch::no_grad(|| net.forward_t(&x, false)).flatten(0, -1)).unwrap();
    let w = unet_weights(&vs, cfg).unwrap();
    assert_eq!(w.separable(), separable);
    // a config that disagrees with the weights is refused
    assert!(unet_weights(
        &vs,
        UNetConfig {
            separable: !separable,
            ..cfg
        }
    )
    .is_err());
    let size = InputSize {
        height: 32,
        width: 48,
    };
    let runner = Runner::load(&encode(&onnx::fp32(&w, size, false).unwrap())).unwrap();
    let input: Vec<f32> = Vec::try_from(x.flatten(0, -1)).unwrap();
    let got = runner.maps(&input).unwrap();
    let err = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err < 1e-4, "max |tract − tch| = {err}");

    let cal = nemascope_onnx::run::calibrate(&w, size, std::slice::from_ref(&input)).unwrap();
    let q = Runner::load(&encode(&onnx::int8(&w, size, &cal).unwrap())).unwrap();
    let qo = q.maps(&input).unwrap();
    let mean = qo
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / want.len() as f32;
    assert!(mean < 0.03, "mean |int8 − tch| = {mean}");
}
