//! Written graphs run in tract and give what a direct evaluation of the same
//! weights gives: fp32 within 1e-4, int8 close to fp32, and the int8 file
//! really holds integer convolutions.

use nemascope_onnx::export::{self, InputSize};
use nemascope_onnx::graph::encode;
use nemascope_onnx::run::{calibrate, Runner};
use nemascope_onnx::{Conv, Precision, UNetWeights};
use prost::Message;

/// `[C, H, W]` → `[cout, H, W]`, zero padding, then optional ReLU. Output
/// channel `o` reads the `cin / groups` input channels of its group.
fn conv(x: &[f32], c: usize, h: usize, w: usize, k: &Conv, relu: bool) -> Vec<f32> {
    assert_eq!(c, k.cin);
    let p = (k.k / 2) as isize;
    let (gin, gout) = (c / k.groups, k.cout / k.groups);
    let mut out = vec![0f32; k.cout * h * w];
    for o in 0..k.cout {
        let first = o / gout * gin;
        for y in 0..h {
            for xx in 0..w {
                let mut s = k.bias[o];
                for gi in 0..gin {
                    let i = first + gi;
                    for dy in 0..k.k {
                        for dx in 0..k.k {
                            let (sy, sx) =
                                (y as isize + dy as isize - p, xx as isize + dx as isize - p);
                            if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                                continue;
                            }
                            s += k.weight[((o * gin + gi) * k.k + dy) * k.k + dx]
                                * x[(i * h + sy as usize) * w + sx as usize];
                        }
                    }
                }
                out[(o * h + y) * w + xx] = if relu { s.max(0.0) } else { s };
            }
        }
    }
    out
}

fn pool(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(c * h * w / 4);
    for i in 0..c {
        for y in 0..h / 2 {
            for xx in 0..w / 2 {
                let at = |dy: usize, dx: usize| x[(i * h + 2 * y + dy) * w + 2 * xx + dx];
                out.push(at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)));
            }
        }
    }
    out
}

fn up(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(c * h * w * 4);
    for i in 0..c {
        for y in 0..2 * h {
            for xx in 0..2 * w {
                out.push(x[(i * h + y / 2) * w + xx / 2]);
            }
        }
    }
    out
}

fn forward(net: &UNetWeights, x: &[f32], h: usize, w: usize) -> Vec<f32> {
    let mut x = x.to_vec();
    let mut c = net.in_channels();
    let mut skips = Vec::new();
    for (l, block) in net.down.iter().enumerate() {
        if l > 0 {
            x = pool(&x, c, h >> (l - 1), w >> (l - 1));
        }
        for k in block {
            x = conv(&x, c, h >> l, w >> l, k, true);
            c = k.cout;
        }
        skips.push((x.clone(), c));
    }
    skips.pop();
    for (i, block) in net.up.iter().enumerate() {
        let l = net.depth - 1 - i;
        let (s, sc) = skips.pop().unwrap();
        x = up(&x, c, h >> (l + 1), w >> (l + 1));
        x.extend(s);
        c += sc;
        for k in block {
            x = conv(&x, c, h >> l, w >> l, k, true);
            c = k.cout;
        }
    }
    conv(&x, c, h, w, &net.head, false)
        .into_iter()
        .map(|v| 1.0 / (1.0 + (-v).exp()))
        .collect()
}

/// A smooth image with a bright blob, standardised-looking values.
fn image(h: usize, w: usize, seed: usize) -> Vec<f32> {
    (0..h * w)
        .map(|i| {
            let (y, x) = ((i / w) as f32, (i % w) as f32);
            let d = ((y - (h / 3 + seed) as f32).powi(2) + (x - (w / 2) as f32).powi(2)).sqrt();
            (x * 0.13 + y * 0.07 + seed as f32).sin() + 2.0 * (-d / 4.0).exp()
        })
        .collect()
}

#[test]
fn fp32_export_matches_direct_evaluation() {
    fp32_matches(UNetWeights::random(1, 2, 3, 3, 11));
}

#[test]
fn separable_fp32_export_matches_direct_evaluation() {
    let net = UNetWeights::random_shaped(1, 2, 4, 3, true, 12);
    assert!(net.separable());
    fp32_matches(net);
}

fn fp32_matches(net: UNetWeights) {
    let (h, w) = (16, 24);
    let model = export::fp32(
        &net,
        InputSize {
            height: h,
            width: w,
        },
        false,
    )
    .unwrap();
    let runner = Runner::load(&encode(&model)).unwrap();
    assert_eq!(runner.input_shape, [1, 1, h, w]);
    for seed in 0..2 {
        let x = image(h, w, seed);
        let got = runner.maps(&x).unwrap();
        let want = forward(&net, &x, h, w);
        assert_eq!(got.len(), 2 * h * w);
        let err = got
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1e-4, "max |tract − direct| = {err}");
        // the maps are not constant, so the comparison means something
        let spread =
            want.iter().fold(0f32, |m, v| m.max(*v)) - want.iter().fold(1f32, |m, v| m.min(*v));
        assert!(spread > 0.01, "spread {spread}");
    }
}

/// The f16 form: the same float file, run by tract in half precision,
/// gives maps within half-precision rounding of the direct evaluation (on
/// aarch64 under qemu in CI, where tract picks its FP16 kernels when the
/// emulated core has them).
#[test]
fn f16_plan_is_close_to_direct_evaluation() {
    for net in [
        UNetWeights::random(1, 2, 3, 3, 11),
        UNetWeights::random_shaped(1, 2, 4, 3, true, 12),
    ] {
        let (h, w) = (16, 24);
        let size = InputSize {
            height: h,
            width: w,
        };
        let bytes = encode(&export::fp32(&net, size, false).unwrap());
        let runner = Runner::load_as(&bytes, None, Precision::F16).unwrap();
        assert_eq!(runner.precision, Precision::F16);
        for seed in 0..2 {
            let x = image(h, w, seed);
            let got = runner.maps(&x).unwrap();
            let want = forward(&net, &x, h, w);
            assert_eq!(got.len(), want.len());
            let err = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            // f16 keeps 11 significant bits: a probability is off by a
            // few thousandths after a dozen layers, never by more.
            assert!(err < 2e-2, "max |f16 − direct| = {err}");
            let exact = Runner::load(&bytes).unwrap().maps(&x).unwrap();
            assert_ne!(got, exact, "the f16 plan computed in f32");
        }
    }
}

#[test]
fn int8_export_is_integer_and_close_to_fp32() {
    int8_close(UNetWeights::random(1, 1, 4, 2, 3));
}

#[test]
fn separable_int8_export_is_integer_and_close_to_fp32() {
    // seed 4: a random net whose ReLUs are not all dead (its maps vary)
    int8_close(UNetWeights::random_shaped(1, 1, 4, 2, true, 4));
}

fn int8_close(net: UNetWeights) {
    let (h, w) = (32, 32);
    let size = InputSize {
        height: h,
        width: w,
    };
    let images: Vec<Vec<f32>> = (0..3).map(|s| image(h, w, s)).collect();
    let cal = calibrate(&net, size, &images).unwrap();
    let q = export::int8(&net, size, &cal).unwrap();
    let ops: Vec<&str> = q
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .map(|n| n.op_type.as_str())
        .collect();
    assert_eq!(
        ops.iter().filter(|o| **o == "QLinearConv").count(),
        net.convs().count()
    );
    let grouped = q
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .filter(|n| n.attribute.iter().any(|a| a.name == "group" && a.i > 1));
    assert_eq!(
        grouped.count(),
        net.convs().filter(|c| c.groups > 1).count()
    );
    assert!(!ops.contains(&"Conv"), "no float convolution left: {ops:?}");
    let bytes = encode(&q);
    // decodes back to the same graph
    let back = tract_onnx::pb::ModelProto::decode(&bytes[..]).unwrap();
    assert_eq!(back, q);
    let fp = Runner::load(&encode(&export::fp32(&net, size, false).unwrap())).unwrap();
    let i8r = Runner::load(&bytes).unwrap();
    let mut worst = 0f32;
    for x in images.iter().chain(std::iter::once(&image(h, w, 7))) {
        let a = fp.maps(x).unwrap();
        let b = i8r.maps(x).unwrap();
        let spread = a.iter().fold(0f32, |m, v| m.max(*v)) - a.iter().fold(1f32, |m, v| m.min(*v));
        assert!(
            spread > 0.005,
            "fp32 maps nearly constant ({spread}): pick another seed"
        );
        let mean = a.iter().zip(&b).map(|(a, b)| (a - b).abs()).sum::<f32>() / a.len() as f32;
        worst = worst.max(mean);
        assert!(
            a != b,
            "int8 output equal to fp32 bit for bit: not quantised"
        );
    }
    assert!(worst < 0.02, "mean |int8 − fp32| = {worst}");
}

#[test]
fn runner_refuses_wrong_input_and_garbage() {
    let net = UNetWeights::random(1, 1, 2, 1, 1);
    let r = Runner::load(&encode(
        &export::fp32(
            &net,
            InputSize {
                height: 8,
                width: 8,
            },
            false,
        )
        .unwrap(),
    ))
    .unwrap();
    let e = r.maps(&[0.0; 10]).unwrap_err().to_string();
    assert!(e.contains("10 values"), "{e}");
    assert!(Runner::load(b"not an onnx file").is_err());
    assert!(Runner::load(&[]).is_err());
}

#[test]
fn a_plan_made_for_another_tile_size_matches_direct_evaluation() {
    // Exported for 16×24, run on 32×40 tiles: the network is fully
    // convolutional, so the same weights give the direct result there.
    let net = UNetWeights::random_shaped(1, 2, 4, 3, true, 13);
    let size = InputSize {
        height: 16,
        width: 24,
    };
    let bytes = encode(&export::fp32(&net, size, false).unwrap());
    let runner = Runner::load_tiled(&bytes, Some([32, 40])).unwrap();
    assert_eq!(runner.input_shape, [1, 1, 32, 40]);
    let x = image(32, 40, 1);
    let got = runner.maps(&x).unwrap();
    let want = forward(&net, &x, 32, 40);
    let err = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err < 1e-4, "max |tract − direct| = {err}");
    // Three poolings need sides divisible by 8; sizes are written
    // WIDTHxHEIGHT, as `--tile` takes them.
    let e = Runner::load_tiled(&bytes, Some([20, 24]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("24x20"), "{e}");
}

/// tract's AMX int8 kernel crashed int8 runs now and then (`run.rs`,
/// `without_amx_int8`): once a plan is made, tract's dispatch holds no AMX
/// int8, on a machine that has it too (this one, the CI machines).
#[test]
fn plans_run_without_tracts_amx_int8_kernel() {
    use tract_onnx::tract_core::tract_linalg::isa::{native, Isa};
    let net = UNetWeights::random(1, 2, 3, 3, 11);
    let size = InputSize {
        height: 16,
        width: 24,
    };
    Runner::load(&encode(&export::fp32(&net, size, false).unwrap())).unwrap();
    assert!(!native().has(Isa::X86_64AmxInt8), "{:?}", native());
}
