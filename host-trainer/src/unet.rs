//! The U-Net: one sigmoid map per foreground class. Only layers that export
//! to ONNX operators tract runs: Conv, BatchNorm, Relu, MaxPool, Resize
//! (nearest ×2), Concat, Sigmoid.

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Depth (number of 2× poolings) and width (channels of the first level,
/// doubled at each level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UNetConfig {
    pub in_channels: i64,
    pub classes: i64,
    pub base: i64,
    pub depth: usize,
}

impl Default for UNetConfig {
    fn default() -> Self {
        UNetConfig {
            in_channels: 1,
            classes: 1,
            base: 16,
            depth: 4,
        }
    }
}

/// Conv3×3–BN–ReLU, twice.
#[derive(Debug)]
struct DoubleConv {
    c1: nn::Conv2D,
    b1: nn::BatchNorm,
    c2: nn::Conv2D,
    b2: nn::BatchNorm,
}

impl DoubleConv {
    fn new(p: &nn::Path, cin: i64, cout: i64) -> Self {
        let cfg = nn::ConvConfig {
            padding: 1,
            bias: false,
            ..Default::default()
        };
        DoubleConv {
            c1: nn::conv2d(p / "c1", cin, cout, 3, cfg),
            b1: nn::batch_norm2d(p / "b1", cout, Default::default()),
            c2: nn::conv2d(p / "c2", cout, cout, 3, cfg),
            b2: nn::batch_norm2d(p / "b2", cout, Default::default()),
        }
    }
}

impl ModuleT for DoubleConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.c1)
            .apply_t(&self.b1, train)
            .relu()
            .apply(&self.c2)
            .apply_t(&self.b2, train)
            .relu()
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
        for (l, &w) in widths.iter().enumerate() {
            down.push(DoubleConv::new(&(p / format!("down{l}")), cin, w));
            cin = w;
        }
        let mut up = Vec::new();
        for l in (0..config.depth).rev() {
            up.push(DoubleConv::new(
                &(p / format!("up{l}")),
                widths[l + 1] + widths[l],
                widths[l],
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
}

impl ModuleT for UNet {
    /// `[B, in, H, W]` → per-class probabilities `[B, classes, H, W]`.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
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
        x.apply(&self.head).sigmoid()
    }
}
