//! Distillation: a smaller U-Net (student) learns the teacher's soft maps
//! (binary cross-entropy) and the teacher run's refined masks (Dice), on the
//! same labelled tiles and with the same validation split. The student is
//! written as a run folder of its own, so `eval`, `predict` and `export`
//! treat it like any trained model.

use std::path::Path;
use std::time::Instant;

use nemascope_core::imageio::load_mask;
use nemascope_core::{Error, Mask, Plane, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::Tensor;

use crate::data::{clear_absent_cells, grid_regions, make_batch, Data, Geometry, Labelled};
use crate::eval;
use crate::stages::dice_loss_of;
use crate::train::{self, StageResult, State};
use crate::unet::UNet;

/// The student and its training budget (also the `distill` command's
/// options).
#[derive(Debug, Clone, clap::Args)]
pub struct DistillOptions {
    /// Student width of the first level (teacher: model.base).
    #[arg(long, default_value_t = 4)]
    pub base: i64,
    /// Student depth (number of poolings).
    #[arg(long, default_value_t = 4)]
    pub depth: usize,
    /// Depthwise-separable 3×3 convolutions (depthwise 3×3 + pointwise 1×1).
    #[arg(long)]
    pub separable: bool,
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Weight of the soft-map loss (BCE) beside the Dice loss on the masks.
    #[arg(long, default_value_t = 1.0)]
    pub soft_weight: f64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Draw batches as the teacher's were with `train.balance` (a slot per
    /// class among the regions holding it). Off: uniform draws, which on
    /// the synthetic frames counted better (docs/trainer.md: balanced, the
    /// student's egg map stayed below 0.5 and worms were over-counted more).
    #[arg(long)]
    pub balance: bool,
}

/// What [`distill`] made: the student's validation scores and the sizes
/// (parameters, multiply-adds per 384×512 frame) of both networks.
#[derive(Debug, Clone)]
pub struct Distilled {
    pub result: StageResult,
    pub teacher: (usize, usize),
    pub student: (usize, usize),
}

/// The teacher run's last refined (voted) masks, if it kept them.
fn refined_masks(run: &Path, data: &Data, rounds: usize) -> Result<Option<Vec<Option<Vec<Mask>>>>> {
    for k in (1..=rounds).rev() {
        let dir = run.join("masks").join(format!("refine{k}"));
        if dir.join("complete").exists() {
            let mut out = Vec::new();
            for it in &data.items {
                let ms = data
                    .classes
                    .iter()
                    .map(|c| load_mask(&dir.join(format!("{}_{c}.png", it.id))))
                    .collect::<Result<Vec<_>>>()?;
                out.push(Some(ms));
            }
            return Ok(Some(out));
        }
    }
    Ok(None)
}

/// Soft targets of a batch, laid out as `make_batch` lays out the inputs.
fn soft_batch(soft: &[Vec<Plane>], regions: &[Labelled], classes: usize) -> Tensor {
    let mut v = Vec::new();
    let (w, h) = (regions[0].0.w as i64, regions[0].0.h as i64);
    for (r, labels) in regions {
        for (c, map) in soft[r.item].iter().enumerate().take(classes) {
            let start = v.len();
            Geometry::default().apply(map, *r, &mut v);
            clear_absent_cells(&mut v[start..], r.w, r.h, &labels[c], 0.0);
        }
    }
    Tensor::from_slice(&v).reshape([regions.len() as i64, classes as i64, h, w])
}

/// Trains a student of `teacher_run` into `out` (a new run folder).
pub fn distill(teacher_run: &Path, out: &Path, o: &DistillOptions) -> Result<Distilled> {
    if out.join(train::STATE_FILE).exists() {
        return Err(Error::Invalid(format!(
            "{} already holds a run",
            out.display()
        )));
    }
    let (cfg, tstate, _tvs, teacher) = train::load_model(teacher_run, None)?;
    let device = train::device(&cfg)?;
    let data = crate::data::load(&cfg)?;
    let classes = data.classes.len();
    eprintln!("teacher maps for {} images", data.items.len());
    let soft: Vec<Vec<Plane>> = data
        .items
        .iter()
        .map(|it| eval::predict_maps(&teacher, &it.input, device))
        .collect::<Result<_>>()?;
    // Hard targets: the teacher run's refined masks, else its own maps
    // thresholded (a supervised or unrefined teacher).
    let hard = match refined_masks(teacher_run, &data, cfg.train.rounds)? {
        Some(m) => m,
        None => soft
            .iter()
            .map(|ms| Some(ms.iter().map(|m| m.threshold(cfg.vote.threshold)).collect()))
            .collect(),
    };
    let mut scfg = cfg.clone();
    scfg.model.base = o.base;
    scfg.model.depth = o.depth;
    scfg.model.separable = o.separable;
    scfg.validate()?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    train::write_atomic(&out.join(train::CONFIG_FILE), scfg.to_toml().as_bytes())?;
    tch::manual_seed(o.seed as i64);
    let vs = nn::VarStore::new(device);
    let net = UNet::new(&vs.root(), scfg.unet(classes));
    let mut opt = nn::RmsProp::default()
        .build(&vs, o.lr)
        .map_err(train::torch_err)?;
    let crop = cfg.data.crop;
    let settings = cfg.classes(&data.classes)?;
    let regions = grid_regions(&data, &data.train, crop, cfg.stride(), &settings)?;
    let val = grid_regions(&data, &data.val, crop, crop, &settings)?;
    if regions.is_empty() || val.is_empty() {
        return Err(Error::Invalid("no labelled tiles to distil on".into()));
    }
    let positives = train::positives_of(&regions, classes);
    let dice = cfg.train.dice;
    let loss = |net: &UNet, rs: &[Labelled], flip: (bool, bool), train: bool| -> Result<Tensor> {
        let b = make_batch(&data, rs, Some(&hard), None)?;
        let mut x = b.x;
        let mut s = soft_batch(&soft, rs, classes);
        let mut m = b.masks.expect("targets given");
        for (on, dim) in [(flip.0, 2), (flip.1, 3)] {
            if on {
                x = x.flip([dim]);
                s = s.flip([dim]);
                m = m.flip([dim]);
            }
        }
        let p = net
            .forward_t(&x.to_device(device), train)
            .clamp(1e-6, 1.0 - 1e-6);
        let bce =
            p.binary_cross_entropy::<Tensor>(&s.to_device(device), None, tch::Reduction::Mean);
        Ok(bce * o.soft_weight + dice_loss_of(dice, &p, &m.to_device(device)))
    };
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let start = Instant::now();
    let epoch = 100.min(o.steps.max(1));
    let mut best: Option<f64> = None;
    let mut sum = 0.0;
    for step in 0..o.steps {
        if train::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Invalid("interrupted".into()));
        }
        let rs: Vec<Labelled> = (0..o.batch)
            .map(|k| {
                let r = train::class_draw(&positives, o.balance, k, &mut rng)
                    .unwrap_or_else(|| rng.random_range(0..regions.len()));
                regions[r].clone()
            })
            .collect();
        let l = loss(&net, &rs, (rng.random(), rng.random()), true)?;
        opt.backward_step(&l);
        sum += l.double_value(&[]);
        if (step + 1) % epoch == 0 || step + 1 == o.steps {
            let vl = tch::no_grad(|| -> Result<f64> {
                let mut t = 0.0;
                for chunk in val.chunks(o.batch) {
                    t += loss(&net, chunk, (false, false), false)?.double_value(&[])
                        * chunk.len() as f64;
                }
                Ok(t / val.len() as f64)
            })?;
            let is_best = best.is_none_or(|b| vl < b);
            if is_best {
                best = Some(vl);
                save(&vs, &out.join(train::MODEL))?;
            }
            eprintln!(
                "student step {}/{}: train loss {:.4}, val loss {vl:.4}{} ({:.0} s)",
                step + 1,
                o.steps,
                sum / epoch as f64,
                if is_best { " (best)" } else { "" },
                start.elapsed().as_secs_f64()
            );
            sum = 0.0;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut vs2 = nn::VarStore::new(device);
    let best_net = UNet::new(&vs2.root(), scfg.unet(classes));
    vs2.load(out.join(train::MODEL)).map_err(train::torch_err)?;
    let preds = data
        .val
        .iter()
        .map(|&i| {
            let it = &data.items[i];
            let maps = eval::predict_maps(&best_net, &it.input, device)?;
            eval::native_masks(it, &maps, cfg.vote.threshold)
        })
        .collect::<Result<Vec<_>>>()?;
    let counters = eval::fit_counters(&data, &data.train);
    let s = eval::score(&data, &data.val, &preds, &counters)?;
    let result = train::result(
        &format!(
            "student (base {}, depth {}{})",
            o.base,
            o.depth,
            if o.separable { ", separable" } else { "" }
        ),
        s,
        None,
        Vec::new(),
    );
    let mut results = tstate.results.clone();
    results.push(result.clone());
    let state = State {
        classes: data.classes.clone(),
        phase: 0,
        epoch: 0,
        best_val: best,
        history: Vec::new(),
        results,
        seconds,
        steps: o.steps,
        done: true,
        skipped: tstate.skipped.clone(),
        ..State::default()
    };
    let json = serde_json::to_vec_pretty(&state).expect("state serialises");
    train::write_atomic(&out.join(train::STATE_FILE), &json)?;
    Ok(Distilled {
        result,
        teacher: size_of(&cfg.unet(classes)),
        student: size_of(&scfg.unet(classes)),
    })
}

fn save(vs: &nn::VarStore, path: &Path) -> Result<()> {
    train::save_weights(vs, path)
}

/// Parameters and multiply-adds per 384×512 frame of a network shape.
pub fn size_of(c: &crate::unet::UNetConfig) -> (usize, usize) {
    let w = nemascope_onnx::UNetWeights::random_shaped(
        c.in_channels as usize,
        c.classes as usize,
        c.base as usize,
        c.depth,
        c.separable,
        0,
    );
    (w.params(), w.macs(384, 512))
}
