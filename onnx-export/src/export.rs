//! The U-Net as an ONNX graph, fp32 or int8.
//!
//! fp32: Conv → Relu pairs (grouped for depthwise layers), MaxPool, `Resize` (nearest ×2, opset 13, no
//! `Upsample`), Concat, a 1×1 head and Sigmoid.
//!
//! int8: every convolution is a `QLinearConv` (uint8 activations, int8
//! weights with one scale per output channel, int32 bias), so tract does the
//! multiply-adds in integers. ReLU is the uint8 clamp at zero point 0.
//! MaxPool and Resize move uint8 values; the two inputs of each Concat are
//! given the same scale at calibration so it concatenates bytes. Float math
//! is left only at the ends: QuantizeLinear of the image and
//! DequantizeLinear + Sigmoid of the head's logits.

use crate::graph::{Attr, Elem, Graph};
use crate::weights::{Conv, UNetWeights};
use crate::Error;
use tract_onnx::pb::ModelProto;

/// Name of the graph input, `[1, in_channels, h, w]` f32 (standardised).
pub const INPUT: &str = "image";
/// Name of the graph output, `[1, classes, h, w]` f32 probabilities.
pub const OUTPUT: &str = "maps";

/// Fixed input size of an exported graph: both sides multiples of
/// `2^depth` so every pooling halves exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSize {
    pub height: usize,
    pub width: usize,
}

impl InputSize {
    pub fn check(&self, depth: usize) -> Result<(), Error> {
        let m = 1usize << depth;
        if self.height == 0 || self.width == 0 || self.height % m != 0 || self.width % m != 0 {
            return Err(Error::Shape(format!(
                "input {}×{} is not a multiple of {m} (2^depth) on both sides",
                self.height, self.width
            )));
        }
        Ok(())
    }
}

/// Activation ranges measured on sample images: the image's min/max, each
/// ReLU output's max in [`UNetWeights::convs`] order (head excluded), and
/// the head logits' min/max.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub input: (f32, f32),
    pub relu_max: Vec<f32>,
    pub logits: (f32, f32),
}

impl Calibration {
    /// Widens `self` to cover `other` (ranges from more images).
    pub fn merge(&mut self, other: &Calibration) {
        self.input.0 = self.input.0.min(other.input.0);
        self.input.1 = self.input.1.max(other.input.1);
        for (a, b) in self.relu_max.iter_mut().zip(&other.relu_max) {
            *a = a.max(*b);
        }
        self.logits.0 = self.logits.0.min(other.logits.0);
        self.logits.1 = self.logits.1.max(other.logits.1);
    }
}

/// Names of the values a tapped fp32 graph outputs after `maps`: every ReLU
/// output then the logits; [`crate::run::calibrate`] reads them back.
pub fn tap_names(w: &UNetWeights) -> Vec<String> {
    let mut names = Vec::new();
    for (l, b) in w.down.iter().enumerate() {
        names.extend((0..b.len()).map(|j| format!("down{l}.{j}")));
    }
    for (i, b) in w.up.iter().enumerate() {
        let l = w.depth - 1 - i;
        names.extend((0..b.len()).map(|j| format!("up{l}.{j}")));
    }
    names.push("logits".into());
    names
}

/// The fp32 graph. With `taps`, every ReLU output and the logits are extra
/// graph outputs (for calibration).
pub fn fp32(w: &UNetWeights, size: InputSize, taps: bool) -> Result<ModelProto, Error> {
    w.check()?;
    size.check(w.depth)?;
    let mut g = Graph::new("nemascope_unet");
    let (h, wd) = (size.height as i64, size.width as i64);
    let mut x = g.input(INPUT, Elem::F32, &[1, w.in_channels() as i64, h, wd]);
    let scales = g.f32s("up_scales", &[4], &[1.0, 1.0, 2.0, 2.0]);
    let widths = w.widths();
    let mut tapped = Vec::new();
    let mut skips = Vec::new();
    let conv_relu = |g: &mut Graph,
                     x: &str,
                     c: &Conv,
                     name: &str,
                     tapped: &mut Vec<(String, i64, i64, i64)>,
                     lv: usize| {
        let wt = g.f32s(&format!("{name}.w"), &dims(c), &c.weight);
        let b = g.f32s(&format!("{name}.b"), &[c.cout as i64], &c.bias);
        let y = g.node(
            "Conv",
            &[x, &wt, &b],
            &format!("{name}.conv"),
            &conv_attrs(c),
        );
        let y = g.node("Relu", &[&y], name, &[]);
        tapped.push((y.clone(), c.cout as i64, h >> lv, wd >> lv));
        y
    };
    for (l, block) in w.down.iter().enumerate() {
        if l > 0 {
            x = g.node("MaxPool", &[&x], &format!("pool{l}"), &pool_attrs());
        }
        for (j, c) in block.iter().enumerate() {
            x = conv_relu(&mut g, &x, c, &format!("down{l}.{j}"), &mut tapped, l);
        }
        skips.push(x.clone());
    }
    skips.pop();
    for (i, block) in w.up.iter().enumerate() {
        let l = w.depth - 1 - i;
        let skip = skips.pop().expect("one skip per level");
        x = upsample_concat(&mut g, &x, &skip, &scales, l);
        for (j, c) in block.iter().enumerate() {
            x = conv_relu(&mut g, &x, c, &format!("up{l}.{j}"), &mut tapped, l);
        }
        debug_assert_eq!(block.last().map(|c| c.cout), Some(widths[l]));
    }
    let hw = g.f32s("head.w", &dims(&w.head), &w.head.weight);
    let hb = g.f32s("head.b", &[w.head.cout as i64], &w.head.bias);
    let logits = g.node("Conv", &[&x, &hw, &hb], "logits", &conv_attrs(&w.head));
    let maps = g.node("Sigmoid", &[&logits], OUTPUT, &[]);
    let classes = w.classes() as i64;
    g.output(&maps, Elem::F32, &[1, classes, h, wd]);
    if taps {
        for (name, c, th, tw) in tapped {
            g.output(&name, Elem::F32, &[1, c, th, tw]);
        }
        g.output(&logits, Elem::F32, &[1, classes, h, wd]);
    }
    Ok(g.model("nemascope U-Net, fp32, BatchNorm folded"))
}

/// uint8 scale for `[0, max]`.
fn relu_scale(max: f32) -> f32 {
    if max.is_finite() && max > 1e-8 {
        max / 255.0
    } else {
        1.0 / 255.0
    }
}

/// uint8 scale and zero point for `[min, max]` (widened to hold 0).
pub fn affine_u8(min: f32, max: f32) -> (f32, u8) {
    let (lo, hi) = (min.min(0.0), max.max(0.0));
    let scale = if hi - lo > 1e-8 {
        (hi - lo) / 255.0
    } else {
        1.0 / 255.0
    };
    let zp = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zp)
}

/// Symmetric int8 weights with one scale per output channel.
pub fn quantize_weights(c: &Conv) -> (Vec<i8>, Vec<f32>) {
    let per = c.per_output();
    let mut q = Vec::with_capacity(c.weight.len());
    let mut scales = Vec::with_capacity(c.cout);
    for ch in c.weight.chunks(per) {
        let m = ch.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = if m > 0.0 { m / 127.0 } else { 1.0 };
        scales.push(s);
        q.extend(
            ch.iter()
                .map(|v| (v / s).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

/// The output scale of every ReLU convolution, the two inputs of each
/// Concat made equal (the larger range wins) so it needs no requantising.
fn relu_scales(w: &UNetWeights, cal: &Calibration) -> Result<Vec<f32>, Error> {
    let n = w.convs().count() - 1;
    if cal.relu_max.len() != n {
        return Err(Error::Shape(format!(
            "calibration has {} ReLU ranges, the network {n}",
            cal.relu_max.len()
        )));
    }
    let mut max = cal.relu_max.clone();
    // Index (in `convs` order) of each block's last ReLU: the output of
    // down[l], and of the value that is upsampled into level l.
    let ends: Vec<usize> = w
        .down
        .iter()
        .chain(&w.up)
        .scan(0, |at, b| {
            *at += b.len();
            Some(*at - 1)
        })
        .collect();
    let down_out = |l: usize| ends[l];
    let up_out = |l: usize| ends[w.depth + 1 + (w.depth - 1 - l)];
    for l in (0..w.depth).rev() {
        let from = if l + 1 == w.depth {
            down_out(w.depth)
        } else {
            up_out(l + 1)
        };
        let m = max[from].max(max[down_out(l)]);
        max[from] = m;
        max[down_out(l)] = m;
    }
    // Sharing can chain (a value is both a skip and an upsample source only
    // at the bottleneck, which is never a skip), so one pass settles it.
    Ok(max.into_iter().map(relu_scale).collect())
}

/// The int8 graph with activation scales from `cal`.
pub fn int8(w: &UNetWeights, size: InputSize, cal: &Calibration) -> Result<ModelProto, Error> {
    w.check()?;
    size.check(w.depth)?;
    let out_scales = relu_scales(w, cal)?;
    let mut g = Graph::new("nemascope_unet_int8");
    let (h, wd) = (size.height as i64, size.width as i64);
    let input = g.input(INPUT, Elem::F32, &[1, w.in_channels() as i64, h, wd]);
    let (in_scale, in_zp) = affine_u8(cal.input.0, cal.input.1);
    let s = g.f32s("image.scale", &[], &[in_scale]);
    let z = g.u8s("image.zp", &[], &[in_zp]);
    let mut x = g.node("QuantizeLinear", &[&input, &s, &z], "image.q", &[]);
    let mut xs = (s, z, in_scale);
    let zero_u8 = g.u8s("zp0", &[], &[0]);
    let up_scales = g.f32s("up_scales", &[4], &[1.0, 1.0, 2.0, 2.0]);
    let mut idx = 0usize;
    let qconv = |g: &mut Graph,
                 x: &str,
                 xs: &(String, String, f32),
                 c: &Conv,
                 name: &str,
                 ys: (String, String)| {
        let (q, ws) = quantize_weights(c);
        let wq = g.i8s(&format!("{name}.wq"), &dims(c), &q);
        let wsn = g.f32s(&format!("{name}.ws"), &[c.cout as i64], &ws);
        let wz = g.i8s(&format!("{name}.wz"), &[c.cout as i64], &vec![0; c.cout]);
        let bias: Vec<i32> = c
            .bias
            .iter()
            .zip(&ws)
            .map(|(b, s)| {
                (b / (xs.2 * s))
                    .round()
                    .clamp(i32::MIN as f32, i32::MAX as f32) as i32
            })
            .collect();
        let bq = g.i32s(&format!("{name}.bq"), &[c.cout as i64], &bias);
        g.node(
            "QLinearConv",
            &[x, &xs.0, &xs.1, &wq, &wsn, &wz, &ys.0, &ys.1, &bq],
            name,
            &conv_attrs(c),
        )
    };
    let mut relu = |g: &mut Graph, x: &str, xs: &(String, String, f32), c: &Conv, name: &str| {
        let sc = out_scales[idx];
        idx += 1;
        let sn = g.f32s(&format!("{name}.ys"), &[], &[sc]);
        let y = qconv(g, x, xs, c, name, (sn.clone(), zero_u8.clone()));
        (y, (sn, zero_u8.clone(), sc))
    };
    let mut skips = Vec::new();
    for (l, block) in w.down.iter().enumerate() {
        if l > 0 {
            x = g.node("MaxPool", &[&x], &format!("pool{l}"), &pool_attrs());
        }
        for (j, c) in block.iter().enumerate() {
            (x, xs) = relu(&mut g, &x, &xs, c, &format!("down{l}.{j}"));
        }
        skips.push((x.clone(), xs.clone()));
    }
    skips.pop();
    for (i, block) in w.up.iter().enumerate() {
        let l = w.depth - 1 - i;
        let (skip, ss) = skips.pop().expect("one skip per level");
        if (ss.2 - xs.2).abs() > ss.2 * 1e-6 {
            return Err(Error::Shape(format!("concat at level {l}: scales differ")));
        }
        x = upsample_concat(&mut g, &x, &skip, &up_scales, l);
        for (j, c) in block.iter().enumerate() {
            (x, xs) = relu(&mut g, &x, &xs, c, &format!("up{l}.{j}"));
        }
    }
    let (ls, lz) = affine_u8(cal.logits.0, cal.logits.1);
    let lsn = g.f32s("logits.ys", &[], &[ls]);
    let lzn = g.u8s("logits.zp", &[], &[lz]);
    let lq = qconv(
        &mut g,
        &x,
        &xs,
        &w.head,
        "logits.q",
        (lsn.clone(), lzn.clone()),
    );
    let logits = g.node("DequantizeLinear", &[&lq, &lsn, &lzn], "logits", &[]);
    let maps = g.node("Sigmoid", &[&logits], OUTPUT, &[]);
    g.output(&maps, Elem::F32, &[1, w.classes() as i64, h, wd]);
    Ok(g.model("nemascope U-Net, int8 (QLinearConv, per-channel weight scales)"))
}

/// The decoder's join at level `l`: `x` repeated ×2 (`Resize`), then
/// concatenated with the encoder's `skip` along channels. The same in fp32
/// and int8 (both only move values).
fn upsample_concat(g: &mut Graph, x: &str, skip: &str, scales: &str, l: usize) -> String {
    let u = g.node(
        "Resize",
        &[x, "", scales],
        &format!("resize{l}"),
        &resize_attrs(),
    );
    g.node(
        "Concat",
        &[&u, skip],
        &format!("cat{l}"),
        &[("axis", Attr::Int(1))],
    )
}

fn dims(c: &Conv) -> [i64; 4] {
    let k = c.k as i64;
    [c.cout as i64, (c.cin / c.groups) as i64, k, k]
}

fn conv_attrs(c: &Conv) -> Vec<(&'static str, Attr)> {
    let (k, p) = (c.k as i64, (c.k / 2) as i64);
    vec![
        ("kernel_shape", Attr::Ints(vec![k, k])),
        ("pads", Attr::Ints(vec![p, p, p, p])),
        ("strides", Attr::Ints(vec![1, 1])),
        ("group", Attr::Int(c.groups as i64)),
    ]
}

fn pool_attrs() -> Vec<(&'static str, Attr)> {
    vec![
        ("kernel_shape", Attr::Ints(vec![2, 2])),
        ("strides", Attr::Ints(vec![2, 2])),
    ]
}

/// Nearest ×2 that repeats each pixel, as torch's `upsample_nearest2d`.
fn resize_attrs() -> Vec<(&'static str, Attr)> {
    vec![
        ("mode", Attr::Str("nearest")),
        ("coordinate_transformation_mode", Attr::Str("asymmetric")),
        ("nearest_mode", Attr::Str("floor")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_covers_range_and_zero() {
        let (s, z) = affine_u8(-2.0, 6.0);
        assert!((s - 8.0 / 255.0).abs() < 1e-7);
        assert_eq!(z, 64);
        let (s, z) = affine_u8(1.0, 3.0); // widened to [0, 3]
        assert!((s - 3.0 / 255.0).abs() < 1e-7);
        assert_eq!(z, 0);
    }

    #[test]
    fn weights_quantise_per_channel() {
        let c = Conv::new(2, 1, 1, vec![0.5, -0.01], vec![0.0, 0.0]).unwrap();
        let (q, s) = quantize_weights(&c);
        assert_eq!(q, vec![127, -127]);
        assert!((s[0] - 0.5 / 127.0).abs() < 1e-9 && (s[1] - 0.01 / 127.0).abs() < 1e-9);
    }

    #[test]
    fn concat_inputs_share_a_scale() {
        let w = UNetWeights::random(1, 1, 2, 2, 5);
        let n = tap_names(&w).len() - 1;
        let cal = Calibration {
            input: (-1.0, 1.0),
            relu_max: (1..=n).map(|i| i as f32).collect(),
            logits: (-1.0, 1.0),
        };
        let s = relu_scales(&w, &cal).unwrap();
        // level 1: down1.1 (index 3) with the bottleneck down2.1 (5);
        // level 0: down0.1 (1) with up1.1 (7).
        assert_eq!(s[3], s[5]);
        assert_eq!(s[1], s[7]);
        assert!((s[5] - 6.0 / 255.0).abs() < 1e-7);
        assert!((s[7] - 8.0 / 255.0).abs() < 1e-7);
        assert!(relu_scales(
            &w,
            &Calibration {
                relu_max: vec![1.0],
                ..cal
            }
        )
        .is_err());
    }

    #[test]
    fn sizes_must_divide() {
        assert!(InputSize {
            height: 384,
            width: 512
        }
        .check(4)
        .is_ok());
        assert!(InputSize {
            height: 520,
            width: 696
        }
        .check(4)
        .is_err());
        assert!(InputSize {
            height: 0,
            width: 16
        }
        .check(1)
        .is_err());
    }
}
