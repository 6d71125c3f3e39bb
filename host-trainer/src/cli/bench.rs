//! `bench-step`: one training step's time, for the Rust/PyTorch comparison.

use std::time::Instant;

use anyhow::Result;
use tch::nn::{ModuleT, OptimizerConfig};

use crate::config::Config;
use crate::train;

/// Times training steps of stage 1 on random input.
pub fn bench_step(cfg: &Config, steps: usize, warmup: usize) -> Result<()> {
    if cfg.train.threads > 0 {
        tch::set_num_threads(cfg.train.threads);
    }
    let device = train::device(cfg)?;
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(device);
    let net = crate::unet::UNet::new(&vs.root(), cfg.unet(1));
    let mut opt = tch::nn::RmsProp::default().build(&vs, cfg.train.lr)?;
    let s = cfg.data.crop.max(1) as i64;
    let b = cfg.train.batch as i64;
    let x = tch::Tensor::randn([b, 1, s, s], (tch::Kind::Float, device));
    let y = tch::Tensor::ones([b, 1], (tch::Kind::Float, device));
    let pooling = cfg.pooling()?;
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        let scores =
            crate::pooling::pool(&net.forward_t(&x, true), pooling).clamp(1e-6, 1.0 - 1e-6);
        let loss = scores.binary_cross_entropy::<tch::Tensor>(&y, None, tch::Reduction::Mean);
        opt.backward_step(&loss);
        let _ = loss.double_value(&[]);
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "rust/tch: batch {b} x 1 x {s} x {s}, base {} depth {}, threads {}: median {:.4} s/step (min {:.4}, max {:.4}, {steps} steps)",
        cfg.model.base,
        cfg.model.depth,
        tch::get_num_threads(),
        median,
        times[0],
        times[times.len() - 1]
    );
    Ok(())
}
