//! The `nemascope-data` commands: datasets, tiles and superpixels from
//! the command line (feature `cli`); its `main.rs` parses and dispatches.

use std::path::PathBuf;
use std::time::Instant;

use crate::counting::{mean_abs_error, AreaCounter, CountSample};
use crate::dataset::{bbbc010, generic, tiles};
use crate::felzenszwalb::{self, Params};
use crate::imageio::{load_mask, load_plane, resize_bilinear, stretched};
use crate::objects::{basic_stats, label_components};
use crate::synth::{self, SynthConfig};
use crate::{npy, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nemascope-data",
    version,
    about = "nemascope datasets, tiles and superpixels"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a seeded synthetic dataset (worms, eggs, cysts, debris) in the generic layout.
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 100)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 512)]
        width: usize,
        #[arg(long, default_value_t = 384)]
        height: usize,
        /// Pixel size in µm (object sizes are drawn in µm).
        #[arg(long, default_value_t = 4.0)]
        um_per_px: f32,
        /// classic, light (light debris), dense (dense debris) or mixed
        /// (even frames light, odd dense).
        #[arg(long, default_value = "classic")]
        preset: String,
        /// The frozen benchmark (mixed preset, its own seed, 240 frames);
        /// overrides --seed, --count and --preset.
        #[arg(long)]
        benchmark: bool,
    },
    /// Cut images with masks into tiles with image-level labels only.
    Tiles {
        /// A generic dataset folder (labels.csv with mask columns); default: BBBC010.
        #[arg(long)]
        dataset: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 128)]
        size: usize,
        #[arg(long, default_value_t = 96)]
        stride: usize,
        #[arg(long, default_value_t = 60)]
        min_pixels: usize,
    },
    /// Felzenszwalb superpixels of one image, written as a .npy label map.
    Superpixels {
        image: PathBuf,
        #[arg(long, default_value_t = 100.0)]
        scale: f32,
        #[arg(long, default_value_t = 0.8)]
        sigma: f32,
        #[arg(long, default_value_t = 20)]
        min_size: usize,
        /// Stretch the 0.5–99.5 % quantiles to 0..1 first (recommended for dim 16-bit images).
        #[arg(long)]
        stretch: bool,
        /// Resize to WIDTHxHEIGHT (bilinear) before segmenting.
        #[arg(long, value_parser = parse_size)]
        resize: Option<(usize, usize)>,
        /// Write the label map here (.npy, uint32).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the plane that was segmented here (.npy, float32).
        #[arg(long)]
        dump_input: Option<PathBuf>,
        /// Time this many runs and print the median.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
    /// Worm-count error on BBBC010's true masks: plain components vs area splitting
    /// (reference area fitted leave-one-well-out).
    Bbbc010Counts {
        #[arg(long)]
        root: Option<PathBuf>,
    },
}

/// Runs the command the line names.
pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Synth {
            out,
            count,
            seed,
            width,
            height,
            um_per_px,
            preset,
            benchmark,
        } => {
            let (seed, count, preset) = if benchmark {
                (
                    synth::BENCHMARK_SEED,
                    synth::BENCHMARK_FRAMES,
                    synth::BENCHMARK_PRESET.to_string(),
                )
            } else {
                (seed, count, preset)
            };
            let cfg = |i| SynthConfig::preset(&preset, i, width, height, um_per_px);
            cfg(0)?;
            let ds = synth::write_dataset_with(&out, cfg, seed, count)?;
            let mut totals = vec![0usize; ds.classes.len()];
            let mut negatives = 0;
            for s in &ds.samples {
                for (t, c) in totals.iter_mut().zip(&s.counts) {
                    *t += c.unwrap_or(0);
                }
                negatives += s.present.iter().all(|&p| !p) as usize;
            }
            println!(
                "wrote {count} frames to {} ({negatives} negatives)",
                out.display()
            );
            for (c, t) in ds.classes.iter().zip(totals) {
                println!("  {c:>5}: {t} instances");
            }
        }
        Cmd::Tiles {
            dataset,
            out,
            size,
            stride,
            min_pixels,
        } => {
            let ds = match dataset {
                Some(d) => generic::read(&d)?,
                None => bbbc010::to_dataset(&bbbc010::open(&bbbc010::default_root())?),
            };
            let s = tiles::write_tiles(
                &ds,
                tiles::TileSpec {
                    size,
                    stride,
                    min_pixels,
                },
                &out,
            )?;
            println!(
                "{} images -> {} tiles ({} negatives, {} ambiguous skipped) in {}",
                s.images,
                s.tiles,
                s.negatives,
                s.skipped_ambiguous,
                out.display()
            );
        }
        Cmd::Superpixels {
            image,
            scale,
            sigma,
            min_size,
            stretch: st,
            resize,
            out,
            dump_input,
            repeat,
        } => {
            let mut plane = load_plane(&image)?;
            if st {
                plane = stretched(&plane);
            }
            if let Some((w, h)) = resize {
                plane = resize_bilinear(&plane, w, h)?;
            }
            if let Some(p) = dump_input {
                npy::write(&plane, &p)?;
            }
            let params = Params {
                scale,
                sigma,
                min_size,
            };
            let mut times = Vec::new();
            let mut seg = None;
            for _ in 0..repeat.max(1) {
                let t = Instant::now();
                seg = Some(felzenszwalb::segment(&plane, &params)?);
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            times.sort_by(f64::total_cmp);
            let seg = seg.expect("at least one run");
            println!(
                "{} segments, median {:.2} ms, min {:.2} ms over {} runs ({}x{})",
                seg.count,
                times[times.len() / 2],
                times[0],
                times.len(),
                plane.width(),
                plane.height()
            );
            if let Some(out) = out {
                npy::write(&seg.labels, &out)?;
            }
        }
        Cmd::Bbbc010Counts { root } => {
            let root = root.unwrap_or_else(bbbc010::default_root);
            let wells = bbbc010::open(&root)?;
            let mut samples = Vec::new();
            for w in &wells {
                let comps = label_components(&load_mask(&w.mask)?);
                let areas = basic_stats(&comps).iter().map(|o| o.area).collect();
                samples.push(CountSample {
                    areas,
                    count: w.worm_count,
                });
            }
            let truth: Vec<usize> = samples.iter().map(|s| s.count).collect();
            let plain: Vec<usize> = samples.iter().map(|s| s.areas.len()).collect();
            let mut split = Vec::new();
            let mut refs = Vec::new();
            for i in 0..samples.len() {
                let rest: Vec<CountSample> = samples
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, s)| s.clone())
                    .collect();
                let c = AreaCounter::fit(&rest)?;
                refs.push(c.reference_area);
                split.push(c.count(&samples[i].areas));
            }
            let mean_ref = refs.iter().sum::<f64>() / refs.len() as f64;
            println!(
                "BBBC010 true masks, {} wells, {} worms",
                wells.len(),
                truth.iter().sum::<usize>()
            );
            println!("| method | mean abs count error (worms/well) |");
            println!("|---|---|");
            println!(
                "| plain 8-connected components | {:.2} |",
                mean_abs_error(&plain, &truth)
            );
            println!("| area split, reference fitted leave-one-well-out (mean {mean_ref:.0} px) | {:.2} |", mean_abs_error(&split, &truth));
        }
    }
    Ok(())
}

fn parse_size(s: &str) -> std::result::Result<(usize, usize), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or("expected WIDTHxHEIGHT, e.g. 512x384")?;
    let w: usize = w.parse().map_err(|_| format!("bad width `{w}`"))?;
    let h: usize = h.parse().map_err(|_| format!("bad height `{h}`"))?;
    if w == 0 || h == 0 {
        return Err("width and height must be > 0".into());
    }
    Ok((w, h))
}
