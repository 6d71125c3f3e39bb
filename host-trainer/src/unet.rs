//! The U-Net: one sigmoid map per foreground class. Only layers that export
//! to ONNX operators tract runs: Conv (dense or depthwise), BatchNorm, Relu,
//! MaxPool, Resize (nearest ×2), Concat, Sigmoid.

use nemascope_core::{Error, Result};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

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

/// Whether a student of config `s` can start as a teacher of config `t`
/// slimmed ([`slim_into`]).
pub fn slimmable(t: UNetConfig, s: UNetConfig) -> Result<()> {
    if t.separable
        || s.separable
        || t.depth != s.depth
        || t.in_channels != s.in_channels
        || t.classes != s.classes
        || s.base > t.base
    {
        return Err(Error::Invalid(format!(
            "a student starts from its teacher only when both are dense and of one depth, the student no wider (teacher base {}, depth {}{}; student base {}, depth {}{})",
            t.base,
            t.depth,
            if t.separable { ", separable" } else { "" },
            s.base,
            s.depth,
            if s.separable { ", separable" } else { "" },
        )));
    }
    Ok(())
}

/// Starts `student` as `teacher` slimmed (network slimming, Liu et al.
/// 2017): at every unit it keeps the output channels whose BatchNorm scale
/// is largest in magnitude, as many as the student's level has, with the
/// convolution weights, BatchNorm parameters and running statistics of
/// those channels (and of the input channels kept upstream, skips
/// included), so a student starts from the teacher's features, not from
/// noise. Both must be dense, of one depth, with the same input channels
/// and classes, and the student no wider. A class the teacher spreads over
/// many weak channels does not survive it (the synthetic egg map,
/// docs/trainer.md).
pub fn slim_into(
    teacher: &nn::VarStore,
    t: UNetConfig,
    student: &nn::VarStore,
    s: UNetConfig,
) -> Result<()> {
    slimmable(t, s)?;
    let tv = teacher.variables();
    let sv = student.variables();
    let get = |vars: &std::collections::HashMap<String, Tensor>, name: &str| {
        vars.get(name)
            .map(Tensor::shallow_clone)
            .ok_or_else(|| Error::Invalid(format!("network has no variable {name}")))
    };
    let set = |name: &str, value: &Tensor| -> Result<()> {
        let dst = get(&sv, name)?;
        if dst.size() != value.size() {
            return Err(Error::Invalid(format!(
                "{name}: student {:?}, slimmed teacher {:?}",
                dst.size(),
                value.size()
            )));
        }
        tch::no_grad(|| dst.shallow_clone().copy_(value));
        Ok(())
    };
    // One unit: keep `k` outputs of `prefix.c{i}`/`prefix.b{i}` given the
    // kept inputs; returns the kept outputs (ascending teacher indices).
    let unit = |prefix: &str, i: usize, input: &Tensor, k: i64| -> Result<Tensor> {
        let bn = format!("{prefix}.b{i}");
        let gamma = get(&tv, &format!("{bn}.weight"))?;
        let (_, order) = gamma.abs().sort(0, true);
        let (out, _) = order.narrow(0, 0, k).sort(0, false);
        let w = get(&tv, &format!("{prefix}.c{i}.weight"))?
            .index_select(0, &out)
            .index_select(1, input);
        set(&format!("{prefix}.c{i}.weight"), &w)?;
        for p in ["weight", "bias", "running_mean", "running_var"] {
            let name = format!("{bn}.{p}");
            set(&name, &get(&tv, &name)?.index_select(0, &out))?;
        }
        Ok(out)
    };
    let device = teacher.device();
    let mut kept = Tensor::arange(t.in_channels, (Kind::Int64, device));
    let mut skips = Vec::new();
    for l in 0..=t.depth {
        let p = format!("down{l}");
        let k = s.base << l;
        kept = unit(&p, 2, &unit(&p, 1, &kept, k)?, k)?;
        skips.push(kept.shallow_clone());
    }
    skips.pop();
    for l in (0..t.depth).rev() {
        let p = format!("up{l}");
        let skip = skips.pop().expect("one skip per level") + (t.base << (l + 1));
        let k = s.base << l;
        kept = unit(&p, 2, &unit(&p, 1, &Tensor::cat(&[kept, skip], 0), k)?, k)?;
    }
    set(
        "head.weight",
        &get(&tv, "head.weight")?.index_select(1, &kept),
    )?;
    set("head.bias", &get(&tv, "head.bias")?)
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

    /// A teacher whose channels beyond the student's width are silent
    /// (BatchNorm scale and shift 0, so ReLU gives 0) computes exactly what
    /// its slimmed student computes: slimming keeps the live channels, their
    /// weights and statistics, and wires skips and the head to them.
    #[test]
    fn a_slimmed_student_computes_what_its_teacher_computes_when_the_rest_is_silent() {
        tch::manual_seed(3);
        let t = UNetConfig {
            classes: 2,
            base: 4,
            depth: 2,
            ..Default::default()
        };
        let s = UNetConfig { base: 2, ..t };
        let (tvs, svs) = (
            nn::VarStore::new(tch::Device::Cpu),
            nn::VarStore::new(tch::Device::Cpu),
        );
        let teacher = UNet::new(&tvs.root(), t);
        let student = UNet::new(&svs.root(), s);
        // Live channels at scattered places (not the first k), with
        // running statistics that are not the defaults.
        tch::no_grad(|| {
            for (name, v) in tvs.variables() {
                let Some(bn) = name.strip_suffix(".weight").filter(|n| n.contains(".b")) else {
                    continue;
                };
                let c = v.size()[0];
                let live =
                    Tensor::from_slice(&(0..c).map(|i| f32::from(i % 2 == 1)).collect::<Vec<_>>());
                v.shallow_clone().copy_(&(v.abs() + 0.5).g_mul(&live));
                let b = &tvs.variables()[&format!("{bn}.bias")];
                b.shallow_clone().copy_(&(b.rand_like() - 0.2).g_mul(&live));
                let m = &tvs.variables()[&format!("{bn}.running_mean")];
                m.shallow_clone().copy_(&(m.rand_like() * 0.1));
                let r = &tvs.variables()[&format!("{bn}.running_var")];
                r.shallow_clone().copy_(&(r.rand_like() + 0.5));
            }
        });
        slim_into(&tvs, t, &svs, s).unwrap();
        let x = Tensor::rand([2, 1, 16, 16], (Kind::Float, tch::Device::Cpu));
        let (a, b) = (teacher.logits(&x, false), student.logits(&x, false));
        let diff = (&a - &b).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "teacher and slimmed student differ by {diff}");
        // and the check can fail: another student does not match
        let other = nn::VarStore::new(tch::Device::Cpu);
        let net = UNet::new(&other.root(), s);
        assert!((&a - net.logits(&x, false)).abs().max().double_value(&[]) > 1e-3);
        // a wider student, or another depth, is refused
        let wide = nn::VarStore::new(tch::Device::Cpu);
        let _ = UNet::new(&wide.root(), UNetConfig { base: 8, ..t });
        assert!(slim_into(&tvs, t, &wide, UNetConfig { base: 8, ..t }).is_err());
        assert!(slimmable(t, UNetConfig { depth: 1, ..s }).is_err());
        assert!(slimmable(
            t,
            UNetConfig {
                separable: true,
                ..s
            }
        )
        .is_err());
    }

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
