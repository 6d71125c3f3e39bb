//! The U-Net: one sigmoid map per foreground class. Only layers that export
//! to ONNX operators tract runs: Conv (dense or depthwise), BatchNorm, Relu,
//! MaxPool, Resize (nearest ×2), Concat, Sigmoid.

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Depth (number of 2× poolings), width (channels of the first level,
/// doubled at each level), and whether 3×3 convolutions are
/// depthwise-separable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UNetConfig {
    pub in_channels: i64,
    pub classes: i64,
    pub base: i64,
    pub depth: usize,
    pub separable: bool,
}

impl Default for UNetConfig {
    fn default() -> Self {
        UNetConfig {
            in_channels: 1,
            classes: 1,
            base: 16,
            depth: 4,
            separable: false,
        }
    }
}

/// One "3×3 convolution" with BatchNorm and ReLU: dense (`c{i}`, `b{i}`), or
/// depthwise-separable as MobileNet v1 (depthwise 3×3 `c{i}d`/`b{i}d`, ReLU,
/// pointwise 1×1 `c{i}`/`b{i}`, ReLU): about 9× fewer multiply-adds. The
/// names of the dense form are those of earlier runs, which still load.
#[derive(Debug)]
struct Unit {
    depthwise: Option<(nn::Conv2D, nn::BatchNorm)>,
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl Unit {
    fn new(p: &nn::Path, i: usize, cin: i64, cout: i64, separable: bool) -> Self {
        let cfg = |padding, groups| nn::ConvConfig {
            padding,
            groups,
            bias: false,
            ..Default::default()
        };
        let bn = |name: String, c| nn::batch_norm2d(p / name, c, Default::default());
        if separable {
            Unit {
                depthwise: Some((
                    nn::conv2d(p / format!("c{i}d"), cin, cin, 3, cfg(1, cin)),
                    bn(format!("b{i}d"), cin),
                )),
                conv: nn::conv2d(p / format!("c{i}"), cin, cout, 1, cfg(0, 1)),
                bn: bn(format!("b{i}"), cout),
            }
        } else {
            Unit {
                depthwise: None,
                conv: nn::conv2d(p / format!("c{i}"), cin, cout, 3, cfg(1, 1)),
                bn: bn(format!("b{i}"), cout),
            }
        }
    }
}

impl ModuleT for Unit {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let xs = match &self.depthwise {
            Some((c, b)) => xs.apply(c).apply_t(b, train).relu(),
            None => xs.shallow_clone(),
        };
        xs.apply(&self.conv).apply_t(&self.bn, train).relu()
    }
}

/// Two units: one level of the U-Net.
#[derive(Debug)]
struct DoubleConv([Unit; 2]);

impl DoubleConv {
    /// `separable[i]`: whether unit `i` is depthwise-separable.
    fn new(p: &nn::Path, cin: i64, cout: i64, separable: [bool; 2]) -> Self {
        DoubleConv([
            Unit::new(p, 1, cin, cout, separable[0]),
            Unit::new(p, 2, cout, cout, separable[1]),
        ])
    }
}

impl ModuleT for DoubleConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.0[1].forward_t(&self.0[0].forward_t(xs, train), train)
    }
}

/// The network.
#[derive(Debug)]
pub struct UNet {
    pub config: UNetConfig,
    down: Vec<DoubleConv>,
    up: Vec<DoubleConv>,
    head: nn::Conv2D,
}

impl UNet {
    pub fn new(p: &nn::Path, config: UNetConfig) -> Self {
        let widths: Vec<i64> = (0..=config.depth).map(|l| config.base << l).collect();
        let mut down = Vec::new();
        let mut cin = config.in_channels;
        let sep = config.separable;
        for (l, &w) in widths.iter().enumerate() {
            // The first convolution stays dense: a depthwise 3×3 of a
            // one-channel image would be a single filter.
            let first = [sep && l > 0, sep];
            down.push(DoubleConv::new(&(p / format!("down{l}")), cin, w, first));
            cin = w;
        }
        let mut up = Vec::new();
        for l in (0..config.depth).rev() {
            up.push(DoubleConv::new(
                &(p / format!("up{l}")),
                widths[l + 1] + widths[l],
                widths[l],
                [sep, sep],
            ));
        }
        let head = nn::conv2d(p / "head", widths[0], config.classes, 1, Default::default());
        UNet {
            config,
            down,
            up,
            head,
        }
    }

    /// `[B, in, H, W]` → per-class logits `[B, classes, H, W]` (before the
    /// sigmoid): a loss on logits keeps its gradient where a probability
    /// has saturated.
    pub fn logits(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut skips = Vec::with_capacity(self.down.len());
        let mut x = xs.shallow_clone();
        for (l, block) in self.down.iter().enumerate() {
            if l > 0 {
                x = x.max_pool2d_default(2);
            }
            x = block.forward_t(&x, train);
            skips.push(x.shallow_clone());
        }
        skips.pop();
        for block in &self.up {
            let skip = skips.pop().expect("one skip per level");
            let size = skip.size();
            x = x.upsample_nearest2d([size[2], size[3]], None, None);
            x = block.forward_t(&Tensor::cat(&[x, skip], 1), train);
        }
        x.apply(&self.head)
    }

    /// Sets each class's output bias (the head's), e.g. to the logit of
    /// its share of the pixels, so that training starts from the prior
    /// rather than from 0.5 everywhere.
    pub fn set_head_bias(&self, bias: &[f64]) {
        if let Some(b) = &self.head.bs {
            let v = Tensor::from_slice(bias)
                .to_kind(b.kind())
                .to_device(b.device());
            tch::no_grad(|| b.shallow_clone().copy_(&v));
        }
    }
}

impl ModuleT for UNet {
    /// `[B, in, H, W]` → per-class probabilities `[B, classes, H, W]`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.logits(xs, train).sigmoid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_head_bias_sets_each_class_output_bias() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let config = UNetConfig {
            classes: 2,
            base: 2,
            depth: 1,
            ..Default::default()
        };
        let net = UNet::new(&vs.root(), config);
        net.set_head_bias(&[-2.0, 0.5]);
        let b = vs.variables()["head.bias"].shallow_clone();
        assert_eq!(Vec::<f32>::try_from(&b).unwrap(), vec![-2.0, 0.5]);
        // logits keep the graph (for training) and the maps' shape
        let z = net.logits(
            &Tensor::zeros([1, 1, 8, 8], (tch::Kind::Float, tch::Device::Cpu)),
            false,
        );
        assert!(z.requires_grad());
        assert_eq!(z.size(), vec![1, 2, 8, 8]);
    }
}
