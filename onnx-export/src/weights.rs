//! The U-Net's weights as plain arrays: what the trainer hands over and
//! what the writers read. BatchNorm is folded into the convolution before
//! export, so the graph holds only Conv (weight + bias), each followed by
//! ReLU. A depthwise-separable network has the same layout with each 3×3
//! convolution split in two: a depthwise 3×3 (`groups = cin`) and a
//! pointwise 1×1, both with BatchNorm and ReLU (MobileNet v1's unit).

use crate::Error;

/// One convolution, `[cout, cin / groups, k, k]` row-major (ONNX and torch
/// layout), with its bias. Output channel `o` reads the input channels of
/// group `o / (cout / groups)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    pub cout: usize,
    pub cin: usize,
    pub k: usize,
    pub groups: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// BatchNorm in inference form.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub eps: f32,
}

impl Conv {
    /// A dense convolution with the given shape; checks the array lengths.
    pub fn new(
        cout: usize,
        cin: usize,
        k: usize,
        weight: Vec<f32>,
        bias: Vec<f32>,
    ) -> Result<Self, Error> {
        Self::grouped(cout, cin, k, 1, weight, bias)
    }

    /// A grouped convolution (`groups = cin = cout` is depthwise).
    pub fn grouped(
        cout: usize,
        cin: usize,
        k: usize,
        groups: usize,
        weight: Vec<f32>,
        bias: Vec<f32>,
    ) -> Result<Self, Error> {
        if groups == 0 || cin % groups != 0 || cout % groups != 0 {
            return Err(Error::Shape(format!(
                "conv {cout}x{cin}: {groups} groups do not divide the channels"
            )));
        }
        if weight.len() != cout * (cin / groups) * k * k || bias.len() != cout {
            return Err(Error::Shape(format!(
                "conv {cout}x{cin}x{k}x{k} in {groups} groups: {} weights and {} biases",
                weight.len(),
                bias.len()
            )));
        }
        if weight.iter().chain(&bias).any(|v| !v.is_finite()) {
            return Err(Error::Shape("conv weights hold NaN or infinity".into()));
        }
        Ok(Conv {
            cout,
            cin,
            k,
            groups,
            weight,
            bias,
        })
    }

    /// Weights per output channel: `cin / groups · k · k`.
    pub fn per_output(&self) -> usize {
        self.cin / self.groups * self.k * self.k
    }

    /// `bn(conv(x))` as one convolution: `w' = w·γ/√(σ²+ε)`,
    /// `b' = (b − μ)·γ/√(σ²+ε) + β`.
    pub fn fold(mut self, bn: &BatchNorm) -> Result<Self, Error> {
        let n = self.cout;
        if [&bn.gamma, &bn.beta, &bn.mean, &bn.var]
            .iter()
            .any(|v| v.len() != n)
        {
            return Err(Error::Shape(format!(
                "batch norm for {n} channels has other lengths"
            )));
        }
        let per = self.per_output();
        for c in 0..n {
            let s = bn.gamma[c] / (bn.var[c] + bn.eps).sqrt();
            for w in &mut self.weight[c * per..(c + 1) * per] {
                *w *= s;
            }
            self.bias[c] = (self.bias[c] - bn.mean[c]) * s + bn.beta[c];
        }
        Ok(self)
    }

    /// Multiply-adds per output pixel.
    pub fn macs_per_pixel(&self) -> usize {
        self.cout * self.per_output()
    }

    pub fn params(&self) -> usize {
        self.weight.len() + self.bias.len()
    }
}

/// The convolutions of one U-Net level, in order, each followed by ReLU:
/// two 3×3 (dense), or for a separable network depthwise + pointwise twice.
pub type Block = Vec<Conv>;

/// The whole network after folding: one block per level on the way down
/// (`down[l]`), one on the way up (`up[i]` for level `depth − 1 − i`), and
/// the 1×1 head. Same layout as the trainer's U-Net.
#[derive(Debug, Clone, PartialEq)]
pub struct UNetWeights {
    pub depth: usize,
    pub down: Vec<Block>,
    pub up: Vec<Block>,
    pub head: Conv,
}

impl UNetWeights {
    pub fn in_channels(&self) -> usize {
        self.down[0][0].cin
    }

    pub fn classes(&self) -> usize {
        self.head.cout
    }

    /// Channels of each level, first to bottleneck.
    pub fn widths(&self) -> Vec<usize> {
        self.down
            .iter()
            .map(|d| d.last().map_or(0, |c| c.cout))
            .collect()
    }

    /// Whether any convolution is grouped (a depthwise-separable network).
    pub fn separable(&self) -> bool {
        self.convs().any(|c| c.groups > 1)
    }

    /// Checks that every layer's channels meet its neighbours'.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::Shape(what));
        if self.down.len() != self.depth + 1 || self.up.len() != self.depth {
            return bad(format!(
                "depth {} needs {} down and {} up blocks, got {} and {}",
                self.depth,
                self.depth + 1,
                self.depth,
                self.down.len(),
                self.up.len()
            ));
        }
        if self.down.iter().chain(&self.up).any(|b| b.is_empty()) {
            return bad("a block has no convolution".into());
        }
        // Each block starts from `cin` channels and must end at its level's width.
        let chains = |b: &Block, mut cin: usize, width: usize| {
            for c in b {
                let ok = c.cin == cin
                    && c.k % 2 == 1
                    && c.groups > 0
                    && c.cin % c.groups == 0
                    && c.cout % c.groups == 0
                    && c.weight.len() == c.cout * c.per_output()
                    && c.bias.len() == c.cout;
                if !ok {
                    return false;
                }
                cin = c.cout;
            }
            cin == width
        };
        let w = self.widths();
        let mut cin = self.in_channels();
        for (l, b) in self.down.iter().enumerate() {
            if !chains(b, cin, w[l]) {
                return bad(format!("down block {l} does not chain"));
            }
            cin = w[l];
        }
        for (i, b) in self.up.iter().enumerate() {
            let l = self.depth - 1 - i;
            if !chains(b, cin + w[l], w[l]) {
                return bad(format!("up block for level {l} does not chain"));
            }
            cin = w[l];
        }
        if self.head.k != 1 || self.head.cin != cin || self.head.groups != 1 {
            return bad("head does not chain".into());
        }
        Ok(())
    }

    /// Every convolution in graph order: down blocks, up blocks, head.
    pub fn convs(&self) -> impl Iterator<Item = &Conv> {
        self.down
            .iter()
            .chain(&self.up)
            .flat_map(|b| b.iter())
            .chain(std::iter::once(&self.head))
    }

    pub fn params(&self) -> usize {
        self.convs().map(Conv::params).sum()
    }

    /// Multiply-adds for one `h × w` frame.
    pub fn macs(&self, h: usize, w: usize) -> usize {
        let at = |l: usize| (h >> l) * (w >> l);
        let block = |b: &Block| b.iter().map(Conv::macs_per_pixel).sum::<usize>();
        let down: usize = self
            .down
            .iter()
            .enumerate()
            .map(|(l, b)| at(l) * block(b))
            .sum();
        let up: usize = self
            .up
            .iter()
            .enumerate()
            .map(|(i, b)| at(self.depth - 1 - i) * block(b))
            .sum();
        down + up + at(0) * self.head.macs_per_pixel()
    }

    /// A network with seeded random weights (He-style scale), for tests and
    /// tools that need a model without a trainer.
    pub fn random(
        in_channels: usize,
        classes: usize,
        base: usize,
        depth: usize,
        seed: u64,
    ) -> Self {
        Self::random_shaped(in_channels, classes, base, depth, false, seed)
    }

    /// [`UNetWeights::random`], dense or depthwise-separable. As in the
    /// trainer, the network's first convolution stays dense (a depthwise
    /// filter on a one-channel image is one 3×3 filter).
    pub fn random_shaped(
        in_channels: usize,
        classes: usize,
        base: usize,
        depth: usize,
        separable: bool,
        seed: u64,
    ) -> Self {
        // A tiny xorshift keeps this crate free of a rand dependency.
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
        };
        let mut conv = |cout: usize, cin: usize, k: usize, groups: usize| {
            let per = cin / groups * k * k;
            let scale = (3.0 / per as f32).sqrt();
            Conv {
                cout,
                cin,
                k,
                groups,
                weight: (0..cout * per).map(|_| next() * scale).collect(),
                bias: (0..cout).map(|_| next() * 0.1).collect(),
            }
        };
        // One "3×3 convolution" of the block: dense, or depthwise + pointwise.
        let mut unit = |b: &mut Block, cout: usize, cin: usize, sep: bool| {
            if sep {
                b.push(conv(cin, cin, 3, cin));
                b.push(conv(cout, cin, 1, 1));
            } else {
                b.push(conv(cout, cin, 3, 1));
            }
        };
        let widths: Vec<usize> = (0..=depth).map(|l| base << l).collect();
        let mut down = Vec::new();
        let mut cin = in_channels;
        for (l, &w) in widths.iter().enumerate() {
            let mut b = Vec::new();
            unit(&mut b, w, cin, separable && l > 0);
            unit(&mut b, w, w, separable);
            down.push(b);
            cin = w;
        }
        let mut up = Vec::new();
        for l in (0..depth).rev() {
            let mut b = Vec::new();
            unit(&mut b, widths[l], cin + widths[l], separable);
            unit(&mut b, widths[l], widths[l], separable);
            up.push(b);
            cin = widths[l];
        }
        let head = conv(classes, cin, 1, 1);
        UNetWeights {
            depth,
            down,
            up,
            head,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_matches_conv_then_batch_norm_on_one_pixel() {
        let conv = Conv::new(2, 1, 1, vec![2.0, -1.0], vec![0.5, 0.0]).unwrap();
        let bn = BatchNorm {
            gamma: vec![1.5, 0.5],
            beta: vec![0.1, -0.2],
            mean: vec![0.3, 1.0],
            var: vec![4.0, 0.25],
            eps: 0.0,
        };
        let x = 0.7f32;
        let want: Vec<f32> = (0..2)
            .map(|c| {
                let y = conv.weight[c] * x + conv.bias[c];
                (y - bn.mean[c]) / bn.var[c].sqrt() * bn.gamma[c] + bn.beta[c]
            })
            .collect();
        let f = conv.fold(&bn).unwrap();
        for (c, w) in want.iter().enumerate() {
            assert!((f.weight[c] * x + f.bias[c] - w).abs() < 1e-6);
        }
    }

    #[test]
    fn shapes_are_checked() {
        assert!(Conv::new(2, 1, 3, vec![0.0; 17], vec![0.0; 2]).is_err());
        assert!(Conv::new(1, 1, 1, vec![f32::NAN], vec![0.0]).is_err());
        assert!(Conv::grouped(4, 6, 3, 4, vec![0.0; 4 * 9], vec![0.0; 4]).is_err());
        let dw = Conv::grouped(3, 3, 3, 3, vec![0.0; 27], vec![0.0; 3]).unwrap();
        assert_eq!((dw.per_output(), dw.macs_per_pixel()), (9, 27));
        let mut w = UNetWeights::random(1, 2, 4, 2, 1);
        w.check().unwrap();
        assert_eq!(w.widths(), vec![4, 8, 16]);
        w.up[0][0].cin += 1;
        assert!(w.check().is_err());
        let mut s = UNetWeights::random_shaped(1, 2, 4, 2, true, 1);
        s.check().unwrap();
        assert!(s.separable() && !UNetWeights::random(1, 2, 4, 2, 1).separable());
        assert_eq!(s.widths(), vec![4, 8, 16]);
        s.down[1][0].groups = 3; // 4 channels in 3 groups
        assert!(s.check().is_err());
    }

    #[test]
    fn counts_parameters_and_multiply_adds() {
        let w = UNetWeights::random(1, 1, 2, 1, 3);
        // down0: 2·1·9 + 2·2·9, down1: 4·2·9 + 4·4·9, up: 2·6·9 + 2·2·9, head 1·2
        let macs_px = [18 + 36, 72 + 144, 108 + 36, 2];
        assert_eq!(
            w.macs(4, 4),
            16 * macs_px[0] + 4 * macs_px[1] + 16 * macs_px[2] + 16 * macs_px[3]
        );
        assert_eq!(
            w.params(),
            macs_px.iter().sum::<usize>() + 2 + 2 + 4 + 4 + 2 + 2 + 1
        );
        let s = UNetWeights::random_shaped(1, 1, 2, 1, true, 3);
        // down0: dense 2·1·9, then dw 2·9 + pw 2·2; down1: dw 2·9 + pw 4·2,
        // dw 4·9 + pw 4·4; up: dw 6·9 + pw 2·6, dw 2·9 + pw 2·2; head 1·2
        let macs_px = [18 + 18 + 4, 18 + 8 + 36 + 16, 54 + 12 + 18 + 4, 2];
        assert_eq!(
            s.macs(4, 4),
            16 * macs_px[0] + 4 * macs_px[1] + 16 * macs_px[2] + 16 * macs_px[3]
        );
        // biases: down0 2+2+2, down1 2+4+4+4, up 6+2+2+2, head 1
        assert_eq!(s.params(), macs_px.iter().sum::<usize>() + 6 + 14 + 12 + 1);
    }
}
