//! `nemascope-edge count`: images or folders of images through a signed
//! bundle; per-image and per-sample counts, masks, overlays, CSV and JSON.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use nemascope_core::files::write_atomic;
use nemascope_core::imageio::{load_pixels, save_mask, stretched, LoadLimits, Luma};
use nemascope_core::objects::Calibration;
use nemascope_count::{count_frame, pixel_size, CountSettings};

use crate::config::MAX_MIN_AREA_UM2;
use crate::frames::inputs::{check_unique_stems, expand, path_key, Input};
use crate::report::{
    check_outputs, csv as report_csv, object_report, overlay, samples, CountRun, ImageReport,
};

use super::{open_model_tiled, parse_tile};

/// The `count` command's options.
#[derive(clap::Args)]
pub struct CountArgs {
    /// Image files, or folders of images (PNG, TIFF, JPEG).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Model bundle folder (default: the shipped BBBC010 worm model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Public key the bundle must be signed with (default: the
    /// shipped development key).
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// Sample name for every input (default: the folder's name).
    #[arg(long)]
    pub sample: Option<String>,
    /// Write `<stem>.png` per image, non-zero where any class was found.
    #[arg(long)]
    pub masks: Option<PathBuf>,
    /// Write `<stem>.png` per image: the frame with each class outlined.
    #[arg(long)]
    pub overlays: Option<PathBuf>,
    #[arg(long)]
    pub csv: Option<PathBuf>,
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The camera's pixel size in µm, for the measurements and size rules
    /// (default: the bundle's, the scale its model was trained at).
    #[arg(long)]
    pub um_per_px: Option<f32>,
    /// The camera's bits per pixel (8 to 16), for the light checks
    /// (default: found from each frame).
    #[arg(long, value_parser = clap::value_parser!(u8).range(8..=16))]
    pub bit_depth: Option<u8>,
    /// Bright-field light: a background at the top of the range is not
    /// called over-exposed.
    #[arg(long)]
    pub bright_field: bool,
    /// Objects smaller than this (µm²) are not counted.
    #[arg(long, default_value_t = 0.0)]
    pub min_area_um2: f32,
    /// Superpixel voting of the maps (the manifest's settings); off by
    /// default, the network alone segments.
    #[arg(long)]
    pub vote: bool,
    /// Run the model on WIDTHxHEIGHT tiles instead of its input size
    /// (less memory on large frames; see docs/edge.md).
    #[arg(long)]
    pub tile: Option<String>,
    /// Threads counting each frame (tiles side by side, objects measured
    /// in parallel); the counts do not depend on it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Replace output files that already exist.
    #[arg(long)]
    pub overwrite: bool,
}

/// Counts every input; an image that cannot be read or counted is reported
/// and skipped, and makes the command fail at the end.
pub fn count(a: CountArgs) -> anyhow::Result<()> {
    let min = a.min_area_um2;
    if !(min.is_finite() && (0.0..=MAX_MIN_AREA_UM2).contains(&min)) {
        bail!("--min-area-um2 {min}: 0 to {MAX_MIN_AREA_UM2} (µm²)");
    }
    if let Some(um) = a.um_per_px {
        if !nemascope_bundle::manifest::valid_um_per_px(um) {
            bail!("--um-per-px {um}: above 0 and at most 1000 (µm per pixel)");
        }
    }
    let tile = parse_tile(a.tile.as_deref())?;
    let model = open_model_tiled(a.model, a.public_key, tile)?;
    let px = pixel_size(a.um_per_px, &model.manifest);
    if let Some(w) = &px.warning {
        say!("nemascope-edge: --um-per-px: warning: {w}");
    }
    let settings = CountSettings {
        vote: a.vote,
        min_area_um2: min,
        bit_depth: a.bit_depth,
        bright_field: a.bright_field,
        threads: a.threads.into(),
        calibration: Calibration {
            um_per_px: px.um_per_px,
        },
        ..CountSettings::default()
    };
    let inputs = expand(&a.inputs, a.sample.as_deref())?;
    // Refuse before any work: clashing names, files that would be replaced.
    if a.masks.is_some() || a.overlays.is_some() {
        check_unique_stems(&inputs)?;
    }
    let stem = |i: &Input| {
        format!(
            "{}.png",
            path_key(std::path::Path::new(i.path.file_stem().unwrap_or_default()))
        )
    };
    let mut outputs = Vec::new();
    for (opt, dir) in [("--masks", &a.masks), ("--overlays", &a.overlays)] {
        if let Some(dir) = dir {
            outputs.extend(inputs.iter().map(|i| (opt, dir.join(stem(i)))));
        }
    }
    for (opt, f) in [("--csv", &a.csv), ("--json", &a.json)] {
        outputs.extend(f.iter().map(|f| (opt, f.clone())));
    }
    let input_paths: Vec<PathBuf> = inputs.iter().map(|i| i.path.clone()).collect();
    check_outputs(&input_paths, &outputs, a.overwrite)?;
    let classes = model.manifest.classes.clone();
    println!(
        "model {} ({}), {} images, {} µm per pixel ({})",
        model.manifest.name,
        classes.join("/"),
        inputs.len(),
        px.um_per_px,
        px.from
    );
    println!("| image | sample | {} | ms |", classes.join(" | "));
    println!("|---|---|{}---|", "---|".repeat(classes.len()));
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for i in &inputs {
        let t = Instant::now();
        // Image errors name the file already; counting errors are given it.
        let r = load_pixels(&i.path, LoadLimits::default())
            .map_err(|e| e.to_string())
            .and_then(|f| match count_frame(&model, &f, &settings) {
                Ok(c) => Ok((f, c)),
                Err(e) => Err(format!("{}: {e}", i.path.display())),
            });
        let (frame, counted) = match r {
            Ok(v) => v,
            Err(msg) => {
                say!("nemascope-edge: {msg}");
                failed.push((path_key(&i.path), msg));
                continue;
            }
        };
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if let Some(p) = counted.quality.problem() {
            say!("nemascope-edge: {}: warning: {p}", i.path.display());
        }
        if let Some(dir) = &a.masks {
            let any = counted.any().expect("a model has at least one class");
            save_mask(&any, &dir.join(stem(i)))?;
        }
        if let Some(dir) = &a.overlays {
            let p = dir.join(stem(i));
            overlay(
                &stretched(&frame.to_plane()),
                &counted
                    .masks
                    .iter()
                    .map(|m| m.to_mask())
                    .collect::<Vec<_>>(),
                &classes
                    .iter()
                    .cloned()
                    .zip(counted.counts.iter().copied())
                    .collect::<Vec<_>>(),
            )
            .save(&p)
            .map_err(|e| nemascope_core::Error::image(&p, e))?;
        }
        println!(
            "| {} | {} | {} | {ms:.0} |",
            i.path.display(),
            i.sample,
            counted
                .counts
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" | ")
        );
        reports.push(ImageReport {
            image: path_key(&i.path),
            sample: i.sample.clone(),
            counts: counted.counts.clone(),
            objects: counted
                .objects
                .iter()
                .map(|o| object_report(o, &classes))
                .collect(),
            ms,
        });
    }
    let totals = samples(&reports);
    println!();
    println!("| sample | images | {} |", classes.join(" | "));
    println!("|---|---|{}", "---|".repeat(classes.len()));
    for s in &totals {
        println!(
            "| {} | {} | {} |",
            s.sample,
            s.images,
            s.counts
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    if let Some(p) = &a.csv {
        write_atomic(p, &report_csv(&classes, &reports)?)?;
    }
    let n_failed = failed.len();
    if let Some(p) = &a.json {
        let run = CountRun {
            model: model.manifest.name.clone(),
            classes,
            um_per_px: px.um_per_px,
            images: reports,
            samples: totals,
            failed,
        };
        let bytes = serde_json::to_vec_pretty(&run).context("the JSON report")?;
        write_atomic(p, &bytes)?;
    }
    if n_failed > 0 {
        bail!(
            "{} of {} images could not be counted (listed above)",
            n_failed,
            inputs.len()
        );
    }
    Ok(())
}
