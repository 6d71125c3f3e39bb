//! `nemascope-edge demo`, the built-in default: seeded synthetic frames
//! (a seed no model was trained on) counted by a [`Segmenter`] — the
//! shipped worm/egg/cyst bundle, the path the unit runs, or the classical
//! floor — and scored against the generator's exact truth.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use nemascope_core::counting::mean_abs_error;
use nemascope_core::imageio::{save_gray8, save_mask};
use nemascope_core::metrics::mean_dice_positive;
use nemascope_core::objects::Calibration;
use nemascope_core::synth::{generate, SynthConfig};
use nemascope_core::{Class, Mask};
use nemascope_count::{Classical, CountSettings, Segmenter};

use super::{models_dir, open_model};

/// The `demo` command's options.
#[derive(clap::Args)]
pub struct DemoArgs {
    #[arg(long, default_value_t = 24)]
    pub frames: usize,
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// The generator's preset: `mixed` (light and dense debris, the
    /// benchmark's and the shipped model's), `light`, `dense` or
    /// `classic` (the old, easier frames).
    #[arg(long, default_value = nemascope_core::synth::BENCHMARK_PRESET)]
    pub preset: String,
    /// Model bundle (default: the shipped synthetic worm/egg/cyst model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// The classical flat-field threshold with superpixel voting
    /// instead of a model (the floor the model is compared with).
    #[arg(long)]
    pub classical: bool,
    /// Frames (other seed) whose truth calibrates the classical path's
    /// per-object areas.
    #[arg(long, default_value_t = 16)]
    pub calibration_frames: usize,
    /// Write each frame, its truth and the found masks here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Frame `index` of the demo's preset, at the generator's own 512×384 and
/// 4 µm.
fn demo_config(preset: &str, index: u64) -> nemascope_core::Result<SynthConfig> {
    SynthConfig::preset(preset, index, 512, 384, 4.0)
}

/// Runs the demo with the segmenter the options name.
pub fn demo(a: DemoArgs) -> anyhow::Result<()> {
    let seg: Box<dyn Segmenter> = if a.classical {
        let mut c = Classical::default();
        let calib: Vec<(Vec<Mask>, [usize; 3])> = (0..a.calibration_frames as u64)
            .map(|i| {
                generate(
                    &demo_config(&a.preset, i)?,
                    a.seed.wrapping_add(1_000_000),
                    i,
                )
                .map(|f| (f.masks, f.counts))
            })
            .collect::<nemascope_core::Result<_>>()?;
        c.calibrate(&calib);
        println!("segmenter: classical flat-field threshold with superpixel voting (the floor a model is compared with)");
        Box::new(c)
    } else {
        let dir = a
            .model
            .or_else(|| Some(models_dir().join("synth-worm-egg-cyst")));
        let m = open_model(dir, a.public_key)?;
        println!(
            "model {} (the shipped bundles were trained on seed 11)",
            m.manifest.name
        );
        Box::new(m)
    };
    score(&*seg, a.frames.max(1), &a.preset, a.seed, a.out)
}

/// Each frame through `seg` as `count` and the unit run it, against the
/// generator's truth: per-frame counts, then per class totals, count
/// error and Dice.
fn score(
    seg: &dyn Segmenter,
    frames: usize,
    preset: &str,
    seed: u64,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let cfg = demo_config(preset, 0)?;
    let classes = seg.classes();
    // Which truth mask and count each class is scored against.
    let truth_of: Vec<Class> = classes
        .iter()
        .map(|c| Class::from_name(c).with_context(|| format!("class `{c}` has no synthetic truth")))
        .collect::<anyhow::Result<_>>()?;
    let settings = CountSettings {
        calibration: Calibration {
            um_per_px: cfg.um_per_px,
        },
        ..CountSettings::default()
    };
    println!(
        "nemascope demo: {frames} synthetic {}x{} frames, preset {preset}, seed {seed}",
        cfg.width, cfg.height
    );
    println!();
    let head: Vec<String> = classes.iter().map(|c| format!("{c}s true/found")).collect();
    println!("| frame | {} | ms |", head.join(" | "));
    println!("|---|{}---|", "---|".repeat(classes.len()));
    let n = classes.len();
    let (mut truth, mut found) = (vec![vec![]; n], vec![vec![]; n]);
    let mut pairs = vec![vec![]; n];
    let mut times = Vec::new();
    if let Some(dir) = &out {
        std::fs::create_dir_all(dir).map_err(|e| nemascope_core::Error::io(dir, e))?;
    }
    for i in 0..frames as u64 {
        let f = generate(&demo_config(preset, i)?, seed, i)?;
        let t = Instant::now();
        let c = seg.count(&f.image, &settings)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        times.push(ms);
        let mut cells = Vec::new();
        for (k, class) in truth_of.iter().enumerate() {
            truth[k].push(f.counts[class.index()]);
            found[k].push(c.counts[k]);
            pairs[k].push((c.mask(k), f.masks[class.index()].clone()));
            cells.push(format!("{}/{}", f.counts[class.index()], c.counts[k]));
        }
        println!("| {i} | {} | {ms:.1} |", cells.join(" | "));
        if let Some(dir) = &out {
            let id = format!("frame_{i:03}");
            save_gray8(&f.image, &dir.join(format!("{id}.png")))?;
            if let Some(m) = Mask::union(&f.masks.iter().collect::<Vec<_>>()) {
                save_mask(&m, &dir.join(format!("{id}_truth.png")))?;
            }
            if let Some(m) = c.any() {
                save_mask(&m, &dir.join(format!("{id}_found.png")))?;
            }
        }
    }
    println!();
    println!("| class | true total | found total | mean abs count error per frame | Dice (frames with the class) |");
    println!("|---|---|---|---|---|");
    for (k, c) in classes.iter().enumerate() {
        let d = mean_dice_positive(&pairs[k])?;
        println!(
            "| {c} | {} | {} | {:.2} | {} |",
            truth[k].iter().sum::<usize>(),
            found[k].iter().sum::<usize>(),
            mean_abs_error(&found[k], &truth[k]),
            d.map_or("–".into(), |d| format!("{d:.3}"))
        );
    }
    times.sort_by(f64::total_cmp);
    println!();
    println!(
        "median frame time {:.1} ms (one thread)",
        times[times.len() / 2]
    );
    Ok(())
}
