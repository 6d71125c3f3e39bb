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
use tch::nn::{self, OptimizerConfig};
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
    /// Weigh the teacher's foreground in the soft-map loss per class by
    /// `sqrt(background / foreground)` of its maps on the training images
    /// ([`foreground_weights`]). In a uniform batch a small class (eggs)
    /// is a sliver of the pixels, so the plain mean hardly asks for it.
    #[arg(long)]
    pub weigh_foreground: bool,
    /// Students to try at most: while the kept one has a class whose map
    /// is dead (it keeps under 0.1 of the teacher's, [`agreement`]),
    /// distil again from the next seed. Seeds 8 and 9 of the synthetic
    /// student killed its egg map, seed 7 did not (docs/trainer.md), and
    /// the validation loss does not show it.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=8))]
    pub tries: u64,
    /// Take the soft-map loss on the logits (no gradient is lost where a
    /// probability saturates) instead of on probabilities clamped to
    /// [1e-6, 1 − 1e-6]. Tried on seed 8, whose egg map dies: it dies
    /// with this too, its highest logit −2.8, far from saturated
    /// (docs/trainer.md), so the default stays the clamped loss.
    #[arg(long)]
    pub logit_loss: bool,
    /// Start each class's output bias at the logit of its share of the
    /// teacher's maps ([`foreground_share`]) instead of 0 (sigmoid 0.5
    /// everywhere). Tried with `--logit-loss` on seed 8: the egg map still
    /// died (docs/trainer.md); off by default.
    #[arg(long)]
    pub prior_bias: bool,
    /// Start the student as the teacher slimmed to its width (each
    /// unit's channels with the largest BatchNorm scale,
    /// [`crate::unet::slim_into`]) instead of from random weights, so it
    /// has the teacher's features from the first step. Needs a dense
    /// student of the teacher's depth. Tried on seeds 7 and 8 of the
    /// synthetic student: worms and cysts start ahead, the egg map is gone
    /// after one step and stays dead (docs/trainer.md); off by default.
    #[arg(long)]
    pub from_teacher: bool,
}

/// What [`distill`] made: the student's validation scores and the sizes
/// (parameters, multiply-adds per 384×512 frame) of both networks.
#[derive(Debug, Clone)]
pub struct Distilled {
    pub result: StageResult,
    pub teacher: (usize, usize),
    pub student: (usize, usize),
    /// The seed of the student kept, and how well it keeps the teacher's
    /// maps per class ([`agreement`]).
    pub seed: u64,
    pub kept: Vec<Option<f64>>,
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

/// Per class, the share of the pixels of `items` the teacher lights: its
/// soft maps' mean (a value counts as that fraction of a pixel).
pub fn foreground_share(soft: &[Vec<Plane>], items: &[usize], classes: usize) -> Vec<f64> {
    (0..classes)
        .map(|c| {
            let (mut fg, mut all) = (0.0f64, 0.0f64);
            for &i in items {
                let m = &soft[i][c];
                fg += m.data().iter().map(|&v| v as f64).sum::<f64>();
                all += m.len() as f64;
            }
            if all > 0.0 {
                fg / all
            } else {
                0.0
            }
        })
        .collect()
}

/// Per-class weight of the teacher's foreground: `sqrt(background /
/// foreground)` of its soft maps over `items` ([`foreground_share`]), at
/// least 1 (a class lit over half the pixels is not weighed down; 1 where
/// it has no foreground or no background). The square root, not the full
/// ratio, so that a rare class is asked for without the student painting
/// it everywhere (the full ratio is the balanced draws' prior shift again).
pub fn foreground_weights(soft: &[Vec<Plane>], items: &[usize], classes: usize) -> Vec<f64> {
    foreground_share(soft, items, classes)
        .into_iter()
        .map(|f| {
            if f <= 0.0 || f >= 1.0 {
                1.0
            } else {
                ((1.0 - f) / f).sqrt().max(1.0)
            }
        })
        .collect()
}

/// The output bias that makes a class's sigmoid start at its `share` of
/// the pixels (the prior initialisation of Lin et al., focal loss), the
/// share kept within [1e-4, 1 − 1e-4] so that a class the teacher never
/// lights starts low, not at −∞.
pub fn prior_bias(share: f64) -> f64 {
    let p = share.clamp(1e-4, 1.0 - 1e-4);
    (p / (1.0 - p)).ln()
}

/// Soft-map BCE of `pred` against the teacher's `s`, `pred` being logits
/// (`logits`) or probabilities, with each pixel weighted `1 + (w_c − 1)·s`
/// (`w_c` its class's [`foreground_weights`]), normalised by the weights'
/// sum so that its scale beside the Dice loss stays that of the plain
/// mean. `None`: the plain mean.
fn soft_loss(pred: &Tensor, s: &Tensor, weights: Option<&[f64]>, logits: bool) -> Tensor {
    let bce = if logits {
        pred.binary_cross_entropy_with_logits::<Tensor>(s, None, None, tch::Reduction::None)
    } else {
        pred.binary_cross_entropy::<Tensor>(s, None, tch::Reduction::None)
    };
    match weights {
        None => bce.mean(tch::Kind::Float),
        Some(w) => {
            let w = Tensor::from_slice(w)
                .to_kind(tch::Kind::Float)
                .to_device(pred.device())
                .view([1, -1, 1, 1]);
            let pixel = (s * (w - 1.0)) + 1.0;
            (bce * &pixel).sum(tch::Kind::Float) / pixel.sum(tch::Kind::Float)
        }
    }
}

/// Per class, how well a student keeps the teacher's map: the Dice of the
/// teacher's map at `threshold` with the student's at whichever of 0.05,
/// 0.10, …, 0.95 agrees best (export chooses each class's threshold
/// anyway, and a student may draw a class below 0.5 and still count it),
/// summed over paired images (`teacher[k]` and `student[k]` hold one
/// image's maps); `None` where the teacher lights nothing. A seed can
/// leave a student's class map dead while its validation loss, mostly
/// background, looks as good as any other's (docs/trainer.md); this sees
/// it without masks.
pub fn agreement(teacher: &[&[Plane]], student: &[Vec<Plane>], threshold: f32) -> Vec<Option<f64>> {
    const BINS: usize = 20;
    let classes = teacher.first().map_or(0, |t| t.len());
    (0..classes)
        .map(|c| {
            // student values binned by 0.05, apart for teacher-lit pixels
            let (mut lit, mut dark) = ([0u64; BINS], [0u64; BINS]);
            for (t, s) in teacher.iter().zip(student) {
                for (&a, &b) in t[c].data().iter().zip(s[c].data()) {
                    let bin = ((b * BINS as f32) as usize).min(BINS - 1);
                    if a > threshold {
                        lit[bin] += 1;
                    } else {
                        dark[bin] += 1;
                    }
                }
            }
            let teacher_lit: u64 = lit.iter().sum();
            (teacher_lit > 0).then(|| {
                (1..BINS)
                    .map(|k| {
                        let both: u64 = lit[k..].iter().sum();
                        let student_lit = both + dark[k..].iter().sum::<u64>();
                        2.0 * both as f64 / (teacher_lit + student_lit) as f64
                    })
                    .fold(0.0, f64::max)
            })
        })
        .collect()
}

/// [`agreement`] of `student_run` with `teacher_run` on the validation
/// images of `data` (the runs' data, loaded once by the caller), at the
/// teacher's vote threshold.
pub fn agreement_of(
    teacher_run: &Path,
    student_run: &Path,
    data: &Data,
) -> Result<Vec<Option<f64>>> {
    let (cfg, _, _tvs, teacher) = train::load_model(teacher_run, None)?;
    let (_, _, _svs, student) = train::load_model(student_run, None)?;
    let device = train::device(&cfg)?;
    let (mut t, mut s) = (Vec::new(), Vec::new());
    for &i in &data.val {
        let input = &data.items[i].input;
        t.push(eval::predict_maps(&teacher, input, device)?);
        s.push(eval::predict_maps(&student, input, device)?);
    }
    let t: Vec<&[Plane]> = t.iter().map(Vec::as_slice).collect();
    Ok(agreement(&t, &s, cfg.vote.threshold))
}

/// Why no bundle should be made from `student_run`: its map of a class
/// keeps next to none of `teacher_run`'s ([`dead_class`]), said in words;
/// `None` when every class the teacher lights survived, on `data`'s
/// validation images. Refuses a teacher of other classes.
pub fn lost_class(teacher_run: &Path, student_run: &Path, data: &Data) -> Result<Option<String>> {
    let (teacher, student) = (State::load(teacher_run)?, State::load(student_run)?);
    if teacher.classes != student.classes {
        return Err(Error::Invalid(format!(
            "{} learnt {:?} and {} {:?}: not a student and its teacher",
            teacher_run.display(),
            teacher.classes,
            student_run.display(),
            student.classes
        )));
    }
    let kept = agreement_of(teacher_run, student_run, data)?;
    Ok(dead_class(&kept).map(|c| {
        format!(
            "the student's {} map keeps {:.3} of the teacher's (dead below {DEAD})",
            student.classes[c],
            kept[c].unwrap_or(0.0)
        )
    }))
}

/// Trains a student of `teacher_run` into `out` (a new run folder).
pub fn distill(teacher_run: &Path, out: &Path, o: &DistillOptions) -> Result<Distilled> {
    if out.join(train::STATE_FILE).exists() {
        return Err(Error::Invalid(format!(
            "{} already holds a run",
            out.display()
        )));
    }
    let (cfg, tstate, tvs, teacher) = train::load_model(teacher_run, None)?;
    if o.from_teacher {
        let t = cfg.unet(tstate.classes.len());
        let s = crate::unet::UNetConfig {
            base: o.base,
            depth: o.depth,
            separable: o.separable,
            ..t
        };
        crate::unet::slimmable(t, s)?;
    }
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
    let crop = cfg.data.crop;
    let settings = cfg.classes(&data.classes)?;
    let regions = grid_regions(&data, &data.train, crop, cfg.stride(), &settings)?;
    let val = grid_regions(&data, &data.val, crop, crop, &settings)?;
    if regions.is_empty() || val.is_empty() {
        return Err(Error::Invalid("no labelled tiles to distil on".into()));
    }
    let positives = train::positives_of(&regions, classes);
    let weights = o
        .weigh_foreground
        .then(|| foreground_weights(&soft, &data.train, classes));
    if let Some(w) = &weights {
        let named: Vec<String> = data
            .classes
            .iter()
            .zip(w)
            .map(|(c, w)| format!("{c} {w:.1}"))
            .collect();
        eprintln!("teacher foreground weighed: {}", named.join(", "));
    }
    let dice = cfg.train.dice;
    let bias: Option<Vec<f64>> = o.prior_bias.then(|| {
        let share = foreground_share(&soft, &data.train, classes);
        let bias: Vec<f64> = share.iter().map(|&f| prior_bias(f)).collect();
        let named: Vec<String> = data
            .classes
            .iter()
            .zip(share.iter().zip(&bias))
            .map(|(c, (f, b))| format!("{c} {f:.4} ({b:.2})"))
            .collect();
        eprintln!(
            "output bias from the teacher's foreground share: {}",
            named.join(", ")
        );
        bias
    });
    // The loss of a batch, and the student's logits (validation reads each
    // class's highest: one that stays far below 0 is a dead map).
    let loss = |net: &UNet,
                rs: &[Labelled],
                flip: (bool, bool),
                train: bool|
     -> Result<(Tensor, Tensor)> {
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
        let z = net.logits(&x.to_device(device), train);
        let s = s.to_device(device);
        let (bce, p) = if o.logit_loss {
            (soft_loss(&z, &s, weights.as_deref(), true), z.sigmoid())
        } else {
            let p = z.sigmoid().clamp(1e-6, 1.0 - 1e-6);
            (soft_loss(&p, &s, weights.as_deref(), false), p)
        };
        Ok((
            bce * o.soft_weight + dice_loss_of(dice, &p, &m.to_device(device)),
            z,
        ))
    };
    let start = Instant::now();
    let epoch = 100.min(o.steps.max(1));
    // One student from `seed` into `file`, its best validation loss.
    let student = |seed: u64, file: &Path| -> Result<Option<f64>> {
        tch::manual_seed(seed as i64);
        let vs = nn::VarStore::new(device);
        let net = UNet::new(&vs.root(), scfg.unet(classes));
        if o.from_teacher {
            crate::unet::slim_into(&tvs, cfg.unet(classes), &vs, scfg.unet(classes))?;
        }
        if let Some(b) = &bias {
            net.set_head_bias(b);
        }
        let mut opt = nn::RmsProp::default()
            .build(&vs, o.lr)
            .map_err(train::torch_err)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
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
            let (l, _) = loss(&net, &rs, (rng.random(), rng.random()), true)?;
            opt.backward_step(&l);
            sum += l.double_value(&[]);
            if (step + 1) % epoch == 0 || step + 1 == o.steps {
                let (vl, top) = tch::no_grad(|| -> Result<(f64, Vec<f64>)> {
                    let (mut t, mut top) = (0.0, vec![f64::NEG_INFINITY; classes]);
                    for chunk in val.chunks(o.batch) {
                        let (l, z) = loss(&net, chunk, (false, false), false)?;
                        t += l.double_value(&[]) * chunk.len() as f64;
                        let z = z.amax([0, 2, 3], false);
                        for (c, v) in top.iter_mut().enumerate() {
                            *v = v.max(z.double_value(&[c as i64]));
                        }
                    }
                    Ok((t / val.len() as f64, top))
                })?;
                let is_best = best.is_none_or(|b| vl < b);
                if is_best {
                    best = Some(vl);
                    save(&vs, file)?;
                }
                let top: Vec<String> = top.iter().map(|v| format!("{v:.1}")).collect();
                eprintln!(
                    "student (seed {seed}) step {}/{}: train loss {:.4}, val loss {vl:.4}{}, highest logit {} ({:.0} s)",
                    step + 1,
                    o.steps,
                    sum / epoch as f64,
                    if is_best { " (best)" } else { "" },
                    top.join(" / "),
                    start.elapsed().as_secs_f64()
                );
                sum = 0.0;
            }
        }
        Ok(best)
    };
    // A student's maps on the validation images, from its file.
    let val_maps = |file: &Path| -> Result<Vec<Vec<Plane>>> {
        let mut vs = nn::VarStore::new(device);
        let net = UNet::new(&vs.root(), scfg.unet(classes));
        vs.load(file).map_err(train::torch_err)?;
        data.val
            .iter()
            .map(|&i| eval::predict_maps(&net, &data.items[i].input, device))
            .collect()
    };
    let teacher_val: Vec<&[Plane]> = data.val.iter().map(|&i| soft[i].as_slice()).collect();
    let (model, attempt) = (out.join(train::MODEL), out.join("attempt.safetensors"));
    let mut kept: Option<Try> = None;
    let tries = o.tries.max(1);
    for seed in o.seed..o.seed + tries {
        let best = student(seed, &attempt)?;
        let maps = val_maps(&attempt)?;
        let agree = agreement(&teacher_val, &maps, cfg.vote.threshold);
        eprintln!(
            "student (seed {seed}) against the teacher's maps (Dice, validation images): {}",
            named(&data.classes, &agree)
        );
        if kept.as_ref().is_none_or(|k| keeps_more(&agree, &k.agree)) {
            std::fs::rename(&attempt, &model).map_err(|e| Error::io(&model, e))?;
            kept = Some(Try {
                seed,
                best,
                agree,
                maps,
            });
        }
        let k = kept.as_ref().expect("kept above");
        if let Some(c) = dead_class(&k.agree) {
            eprintln!(
                "student (seed {}): its {} map keeps next to none of the teacher's ({:.3}){}",
                k.seed,
                data.classes[c],
                k.agree[c].unwrap_or(0.0),
                if seed + 1 < o.seed + tries {
                    format!("; distilling again from seed {}", seed + 1)
                } else {
                    format!("; no seed of {tries} kept it: a bundle of this student would count next to none (`export --teacher` ships its teacher instead)")
                }
            );
        } else {
            break;
        }
    }
    let _ = std::fs::remove_file(&attempt);
    let Try {
        seed,
        best,
        agree: kept,
        maps,
    } = kept.expect("at least one try");
    let seconds = start.elapsed().as_secs_f64();
    let preds = data
        .val
        .iter()
        .zip(&maps)
        .map(|(&i, m)| eval::native_masks(&data.items[i], m, cfg.vote.threshold))
        .collect::<Result<Vec<_>>>()?;
    let counters = eval::fit_counters(&data, &data.train);
    let s = eval::score(&data, &data.val, &preds, &counters)?;
    let result = train::result(
        &format!(
            "student (base {}, depth {}{}, seed {seed})",
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
        seed,
        kept,
    })
}

/// One student distilled: its seed, best validation loss, [`agreement`]
/// with the teacher and maps of the validation images.
struct Try {
    seed: u64,
    best: Option<f64>,
    agree: Vec<Option<f64>>,
    maps: Vec<Vec<Plane>>,
}

/// Below this [`agreement`] a student's class map counts as dead.
pub const DEAD: f64 = 0.1;

/// Whether one class's [`agreement`] says its map is dead (`None`, a class
/// the teacher lit nowhere, is not).
fn is_dead(a: &Option<f64>) -> bool {
    a.is_some_and(|a| a < DEAD)
}

/// The first class whose map is dead.
pub fn dead_class(agreement: &[Option<f64>]) -> Option<usize> {
    agreement.iter().position(is_dead)
}

/// Whether a student agreeing `a` with the teacher beats one agreeing `b`:
/// fewer dead classes, then a better worst-kept class.
pub fn keeps_more(a: &[Option<f64>], b: &[Option<f64>]) -> bool {
    let dead = |v: &[Option<f64>]| v.iter().filter(|x| is_dead(x)).count();
    let worst = |v: &[Option<f64>]| v.iter().flatten().copied().fold(f64::INFINITY, f64::min);
    (dead(a), -worst(a)) < (dead(b), -worst(b))
}

/// `worm 0.81, egg –, …`.
pub fn named(classes: &[String], v: &[Option<f64>]) -> String {
    classes
        .iter()
        .zip(v)
        .map(|(c, v)| format!("{c} {}", v.map_or("–".into(), |v| format!("{v:.3}"))))
        .collect::<Vec<_>>()
        .join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(values: &[f32]) -> Plane {
        Plane::from_vec(values.len(), 1, values.to_vec()).unwrap()
    }

    #[test]
    fn agreement_is_the_dice_with_the_teachers_map_at_the_students_best_threshold() {
        // class 0: teacher lit 3 pixels over two images; the student
        // above 0.6 on 2 of them and 1 more: 2·2 / (3 + 3) at 0.6, while
        // at 0.3 it adds the third and one more dark pixel (2·3 / (3 + 5)
        // = 0.75, the best) and at 0.95 keeps one lit pixel (2 / 4);
        // class 1: the student's map is dead; class 2: the teacher lights
        // nothing
        let teacher = [
            vec![
                plane(&[0.9, 0.8, 0.1]),
                plane(&[0.9, 0.9, 0.0]),
                plane(&[0.0; 3]),
            ],
            vec![plane(&[0.6, 0.0, 0.0]), plane(&[0.0; 3]), plane(&[0.2; 3])],
        ];
        let student = vec![
            vec![
                plane(&[0.7, 0.3, 0.9]),
                plane(&[0.02, 0.01, 0.0]),
                plane(&[0.5; 3]),
            ],
            vec![plane(&[0.99, 0.3, 0.0]), plane(&[0.0; 3]), plane(&[0.0; 3])],
        ];
        let t: Vec<&[Plane]> = teacher.iter().map(Vec::as_slice).collect();
        let a = agreement(&t, &student, 0.5);
        assert!((a[0].unwrap() - 0.75).abs() < 1e-12, "{a:?}");
        assert_eq!(a[1], Some(0.0));
        assert_eq!(a[2], None);
        let same = agreement(&t, teacher.as_ref(), 0.5);
        assert_eq!(same[0], Some(1.0));
    }

    #[test]
    fn a_dead_class_map_is_tried_again_and_fewer_dead_classes_win() {
        let alive = [Some(0.8), Some(0.3), None];
        let egg_dead = [Some(0.9), Some(0.0), Some(0.9)];
        assert_eq!(dead_class(&alive), None);
        assert_eq!(dead_class(&egg_dead), Some(1));
        assert_eq!(dead_class(&[Some(DEAD)]), None);
        // fewer dead classes first, however good the others are
        assert!(keeps_more(&alive, &egg_dead));
        assert!(!keeps_more(&egg_dead, &alive));
        // then the worst-kept class; a tie keeps the first
        assert!(keeps_more(&[Some(0.5), Some(0.4)], &[Some(0.9), Some(0.3)]));
        assert!(!keeps_more(
            &[Some(0.5), Some(0.4)],
            &[Some(0.4), Some(0.5)]
        ));
        assert!(keeps_more(
            &[Some(0.05), Some(0.9)],
            &[Some(0.01), Some(0.9)]
        ));
    }

    #[test]
    fn foreground_weights_are_the_root_of_background_over_foreground() {
        // item 0: class 0 has 1 of 8 pixels lit, class 1 none, class 2 all;
        // item 1 is left out and would change class 0 if it were counted
        let soft = vec![
            vec![
                plane(&[1., 0., 0., 0., 0., 0., 0., 0.]),
                plane(&[0.; 8]),
                plane(&[1.; 8]),
            ],
            vec![plane(&[1.; 8]), plane(&[0.; 8]), plane(&[1.; 8])],
        ];
        let w = foreground_weights(&soft, &[0], 3);
        assert!((w[0] - 7f64.sqrt()).abs() < 1e-9, "{w:?}");
        assert_eq!(w[1], 1.0);
        assert_eq!(w[2], 1.0);
        // soft values count as fractions of a pixel: 0.5 lit of 2 → 1
        let half = vec![vec![plane(&[0.5, 0.0])]];
        assert_eq!(foreground_weights(&half, &[0], 1), vec![3f64.sqrt()]);
    }

    #[test]
    fn weighted_soft_loss_asks_more_for_the_foreground() {
        // one class, two pixels: the lit one predicted badly, the dark well
        let s = Tensor::from_slice(&[1.0f32, 0.0]).view([1, 1, 1, 2]);
        let p = Tensor::from_slice(&[0.2f32, 0.1]).view([1, 1, 1, 2]);
        let plain = soft_loss(&p, &s, None, false).double_value(&[]);
        let ones = soft_loss(&p, &s, Some(&[1.0]), false).double_value(&[]);
        let weighted = soft_loss(&p, &s, Some(&[4.0]), false).double_value(&[]);
        assert!((plain - ones).abs() < 1e-6, "{plain} {ones}");
        // (4·(−ln 0.2) + (−ln 0.9)) / 5
        let want = (4.0 * -(0.2f64.ln()) - 0.9f64.ln()) / 5.0;
        assert!((weighted - want).abs() < 1e-5, "{weighted} {want}");
        assert!(weighted > plain);
        // the same loss from the logits
        let z = p.logit(None);
        let from_logits = soft_loss(&z, &s, Some(&[4.0]), true).double_value(&[]);
        assert!((from_logits - want).abs() < 1e-5, "{from_logits} {want}");
    }

    #[test]
    fn a_saturated_map_keeps_a_gradient_only_through_the_logits() {
        // a lit pixel the student gives logit −20 (p ≈ 2e-9): clamped at
        // 1e-6 the probability loss has no gradient, the logit loss −1
        let s = Tensor::from_slice(&[1.0f32]).view([1, 1, 1, 1]);
        let grad = |logits: bool| {
            let z = Tensor::from_slice(&[-20.0f32])
                .view([1, 1, 1, 1])
                .set_requires_grad(true);
            let pred = if logits {
                z.shallow_clone()
            } else {
                z.sigmoid().clamp(1e-6, 1.0 - 1e-6)
            };
            soft_loss(&pred, &s, None, logits).backward();
            z.grad().double_value(&[0, 0, 0, 0])
        };
        assert_eq!(grad(false), 0.0);
        assert!((grad(true) + 1.0).abs() < 1e-6, "{}", grad(true));
    }

    #[test]
    fn the_prior_bias_starts_each_sigmoid_at_its_share() {
        let sigmoid = |b: f64| 1.0 / (1.0 + (-b).exp());
        for share in [0.003, 0.1, 0.5, 0.9] {
            assert!(
                (sigmoid(prior_bias(share)) - share).abs() < 1e-12,
                "{share}"
            );
        }
        // a class the teacher never lights starts at 1e-4, finitely
        assert!((sigmoid(prior_bias(0.0)) - 1e-4).abs() < 1e-12);
        let soft = vec![vec![plane(&[1., 0., 0.5, 0.5])], vec![plane(&[0.; 4])]];
        assert_eq!(foreground_share(&soft, &[0], 1), vec![0.5]);
        assert_eq!(foreground_share(&soft, &[0, 1], 1), vec![0.25]);
    }
}
