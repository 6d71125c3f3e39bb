//! `nemascope-edge`: count nematodes in microscope frames.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use nemascope_core::counting::mean_abs_error;
use nemascope_core::files::write_atomic;
use nemascope_core::imageio::{load_pixels, stretch, LoadLimits, Luma};
use nemascope_core::imageio::{save_gray8, save_mask};
use nemascope_core::metrics::{dice, mean_dice_positive};
use nemascope_core::objects::Calibration;
use nemascope_core::synth::{generate, SynthConfig};
use nemascope_core::{Class, Error, Mask, Result};
use nemascope_edge::config::{Config, PanelKind, MAX_MIN_AREA_UM2};
use nemascope_edge::count::{count_frame, pixel_size, CountSettings};
use nemascope_edge::inputs::path_key;
use nemascope_edge::inputs::{check_unique_stems, expand, Input};
use nemascope_edge::journal::{Journal, Record};
use nemascope_edge::listener::ListenOptions;
use nemascope_edge::model::{Model, ModelWatch};
use nemascope_edge::pipeline::Pipeline;
use nemascope_edge::report::{
    check_free, check_outputs, csv as report_csv, overlay, samples, ImageReport, ObjectReport,
    RunReport,
};
use nemascope_edge::service::Service;

#[derive(Parser)]
#[command(
    name = "nemascope-edge",
    version,
    about = "Count nematodes in microscope frames"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The built-in default: seeded synthetic frames (a seed no model was
    /// trained on) counted by the shipped worm/egg/cyst model bundle, the
    /// path the unit runs, scored against their exact truth.
    Demo {
        #[arg(long, default_value_t = 24)]
        frames: usize,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// The generator's preset: `mixed` (light and dense debris, the
        /// benchmark's and the shipped model's), `light`, `dense` or
        /// `classic` (the old, easier frames).
        #[arg(long, default_value = nemascope_core::synth::BENCHMARK_PRESET)]
        preset: String,
        /// Model bundle (default: the shipped synthetic worm/egg/cyst model).
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// The classical flat-field threshold with superpixel voting
        /// instead of a model (the floor the model is compared with).
        #[arg(long)]
        classical: bool,
        /// Frames (other seed) whose truth calibrates the classical path's
        /// per-object areas.
        #[arg(long, default_value_t = 16)]
        calibration_frames: usize,
        /// Write each frame, its truth and the found masks here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Append `count` made-up records to the journal in DIR as fast as it
    /// can, printing each sequence number once it is durable (the journal's
    /// kill test drives this; hidden from help).
    #[command(hide = true)]
    JournalWriter {
        dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
    },
    /// Count the objects of every class in images with a signed model
    /// bundle: per-image and per-sample counts (a folder is a sample), and
    /// optionally masks, overlays, CSV and JSON.
    Count(CountArgs),
    /// Render the unit's screen to a PNG, as the panel would show it.
    Preview(PreviewArgs),
    /// Time decode-to-counts on an image file, or a seeded synthetic frame
    /// of the given size (16-bit PNG in memory), and report the peak
    /// resident memory: run it pinned to one core (`taskset -c 0`) to
    /// measure one core.
    Bench {
        /// Image to count (read from its file every run).
        #[arg(long, conflicts_with = "size")]
        image: Option<PathBuf>,
        /// Frame size WIDTHxHEIGHT (the paper's camera: 4112x3008).
        #[arg(long, default_value = "512x384")]
        size: String,
        #[arg(long, default_value_t = 7)]
        runs: usize,
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Run the model on WIDTHxHEIGHT tiles instead of its input size
        /// (less memory; see docs/edge.md).
        #[arg(long)]
        tile: Option<String>,
    },
    /// The unit's service: count frames from the configured source,
    /// journal each result, show it on the panel and report it over the
    /// serial link (hardware/edge.toml; hardware/nemascope-edge.service).
    Run {
        /// The unit's configuration file.
        #[arg(long, default_value = "/etc/nemascope/edge.toml")]
        config: PathBuf,
        /// Stop once the source is used up and every report is
        /// acknowledged (a list of files, synthetic frames); a watched
        /// folder or camera runs for ever.
        #[arg(long)]
        until_done: bool,
    },
    /// The host's end of the serial link: store every report the unit
    /// sends, once, in a JSON-lines file (durable before acknowledged).
    Listen {
        /// Serial port to the unit (e.g. /dev/ttyUSB0).
        #[arg(long)]
        port: PathBuf,
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
        /// Report file; reopened where it stopped.
        #[arg(long)]
        out: PathBuf,
        /// Stop once report number N is stored.
        #[arg(long)]
        until: Option<u64>,
    },
    /// Check a model bundle: signature under the public key, model hash,
    /// manifest values, and that tract loads and runs the model.
    CheckModel {
        bundle: PathBuf,
        /// The unit's configured public key (hex, from `nemascope-train keygen`).
        #[arg(long)]
        public_key: PathBuf,
    },
}

fn check_model(bundle: &std::path::Path, key: &std::path::Path) -> std::result::Result<(), String> {
    let m = Model::open(bundle, key).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let input = vec![0f32; m.runner.input_len()];
    m.runner
        .maps(&input)
        .map_err(|e| format!("bundle refused: {e}"))?;
    let mf = &m.manifest;
    println!("{}: accepted", bundle.display());
    println!(
        "  name {}, {} model, classes {:?}",
        mf.name, mf.precision, mf.classes
    );
    println!(
        "  input {:?}, pixel scale {}, threshold {}",
        mf.input, mf.pixel_scale, mf.threshold
    );
    for (k, v) in &mf.metrics {
        println!("  {k} = {v:.4}");
    }
    println!("  one inference {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    Ok(())
}

/// Where the shipped bundles are: `NEMASCOPE_MODELS`, else the source
/// tree's `models/` (a unit's install sets the variable; hardware/).
fn models_dir() -> PathBuf {
    std::env::var_os("NEMASCOPE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../models")))
}

/// The bundle in `model` under `public_key`, each defaulting to the
/// shipped BBBC010 worm model and the shipped development key.
fn open_model(model: Option<PathBuf>, public_key: Option<PathBuf>) -> Result<Model> {
    open_model_tiled(model, public_key, None)
}

/// [`open_model`] with the plan made for `tile` (`[H, W]`).
fn open_model_tiled(
    model: Option<PathBuf>,
    public_key: Option<PathBuf>,
    tile: Option<[usize; 2]>,
) -> Result<Model> {
    let (dir, key) = bundle_paths(model, public_key);
    Model::open_tiled(&dir, &key, tile).map_err(|e| Error::Invalid(e.to_string()))
}

/// The bundle folder and public key, defaulting to the shipped BBBC010
/// worm model and development key.
fn bundle_paths(model: Option<PathBuf>, public_key: Option<PathBuf>) -> (PathBuf, PathBuf) {
    (
        model.unwrap_or_else(|| models_dir().join("bbbc010-worm")),
        public_key.unwrap_or_else(|| models_dir().join("nemascope-dev.pub")),
    )
}

/// `--tile WIDTHxHEIGHT` as `[H, W]`.
fn parse_tile(tile: Option<&str>) -> Result<Option<[usize; 2]>> {
    tile.map(|t| {
        nemascope_edge::config::parse_tile(t).map_err(|e| Error::Invalid(format!("--tile {e}")))
    })
    .transpose()
}

/// The `count` command's options.
#[derive(clap::Args)]
struct CountArgs {
    /// Image files, or folders of images (PNG, TIFF, JPEG).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Model bundle folder (default: the shipped BBBC010 worm model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Public key the bundle must be signed with (default: the
    /// shipped development key).
    #[arg(long)]
    public_key: Option<PathBuf>,
    /// Sample name for every input (default: the folder's name).
    #[arg(long)]
    sample: Option<String>,
    /// Write `<stem>.png` per image, non-zero where any class was found.
    #[arg(long)]
    masks: Option<PathBuf>,
    /// Write `<stem>.png` per image: the frame with each class outlined.
    #[arg(long)]
    overlays: Option<PathBuf>,
    #[arg(long)]
    csv: Option<PathBuf>,
    #[arg(long)]
    json: Option<PathBuf>,
    /// The camera's pixel size in µm, for the measurements and size rules
    /// (default: the bundle's, the scale its model was trained at).
    #[arg(long)]
    um_per_px: Option<f32>,
    /// The camera's bits per pixel (8 to 16), for the light checks
    /// (default: found from each frame).
    #[arg(long, value_parser = clap::value_parser!(u8).range(8..=16))]
    bit_depth: Option<u8>,
    /// Objects smaller than this (µm²) are not counted.
    #[arg(long, default_value_t = 0.0)]
    min_area_um2: f32,
    /// Superpixel voting of the maps (the manifest's settings); off by
    /// default, the network alone segments.
    #[arg(long)]
    vote: bool,
    /// Run the model on WIDTHxHEIGHT tiles instead of its input size
    /// (less memory on large frames; see docs/edge.md).
    #[arg(long)]
    tile: Option<String>,
    /// Replace output files that already exist.
    #[arg(long)]
    overwrite: bool,
}

/// The `preview` command's options: what the screen shows.
#[derive(clap::Args)]
struct PreviewArgs {
    /// PNG to write (refused if it exists, unless --overwrite).
    #[arg(long)]
    out: PathBuf,
    /// `color` (240×320 ST7789) or `mono` (128×64 SSD1306).
    #[arg(long, default_value = "color")]
    panel: String,
    /// Each panel pixel as N×N PNG pixels, for viewing.
    #[arg(long, default_value_t = 2)]
    scale: u32,
    #[arg(long, default_value = "plot-7")]
    sample: String,
    #[arg(long, default_value = "worm,egg,cyst")]
    classes: String,
    #[arg(long, default_value = "12,3,0")]
    counts: String,
    #[arg(long, default_value_t = 51)]
    frame_ms: u32,
    #[arg(long, default_value = "bbbc010-worm-student")]
    model: String,
    /// `up`, `down`, `off`, or the number of unsent reports.
    #[arg(long, default_value = "up")]
    link: String,
    /// Warning bits (1 frame quality, 2 model, 4 disk, 8 backlog).
    #[arg(long, default_value_t = 0)]
    warnings: u8,
    #[arg(long)]
    overwrite: bool,
}

fn preview(a: PreviewArgs) -> Result<()> {
    use nemascope_edge::display::{LinkState, Screen};
    let classes: Vec<&str> = a.classes.split(',').map(str::trim).collect();
    let counts = a
        .counts
        .split(',')
        .map(|c| c.trim().parse::<u32>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| {
            Error::Invalid(format!(
                "--counts {}: expected numbers like 12,3,0",
                a.counts
            ))
        })?;
    if counts.len() != classes.len() {
        return Err(Error::Invalid(format!(
            "{} classes but {} counts",
            classes.len(),
            counts.len()
        )));
    }
    let link = match a.link.as_str() {
        "up" => LinkState::Up,
        "down" => LinkState::Down,
        "off" => LinkState::Off,
        n => LinkState::Backlog(n.parse().map_err(|_| {
            Error::Invalid(format!("--link {n}: expected up, down, off or a number"))
        })?),
    };
    if !(1..=8).contains(&a.scale) {
        return Err(Error::Invalid(format!("--scale {}: 1 to 8", a.scale)));
    }
    check_free(&a.out, a.overwrite)?;
    let screen = Screen {
        sample: a.sample,
        counts: classes.iter().map(|c| c.to_string()).zip(counts).collect(),
        frame_ms: a.frame_ms,
        model: a.model,
        link,
        warnings: a.warnings,
    };
    let kind = match a.panel.as_str() {
        "color" => PanelKind::Color,
        "mono" => PanelKind::Mono,
        p => {
            return Err(Error::Invalid(format!(
                "--panel {p}: expected color or mono"
            )))
        }
    };
    let img = nemascope_edge::panels::render(&screen, kind, a.scale);
    let (w, h) = (img.width(), img.height());
    img.save(&a.out).map_err(|e| Error::image(&a.out, e))?;
    println!(
        "{}: {}x{} preview of the {} panel",
        a.out.display(),
        w,
        h,
        a.panel
    );
    Ok(())
}

/// Counts every input; an image that cannot be read or counted is reported
/// and skipped, and makes the command fail at the end.
fn count(a: CountArgs) -> Result<()> {
    let min = a.min_area_um2;
    if !(min.is_finite() && (0.0..=MAX_MIN_AREA_UM2).contains(&min)) {
        return Err(Error::Invalid(format!(
            "--min-area-um2 {min}: 0 to {MAX_MIN_AREA_UM2} (µm²)"
        )));
    }
    if let Some(um) = a.um_per_px {
        if !nemascope_bundle::manifest::valid_um_per_px(um) {
            return Err(Error::Invalid(format!(
                "--um-per-px {um}: above 0 and at most 1000 (µm per pixel)"
            )));
        }
    }
    let tile = parse_tile(a.tile.as_deref())?;
    let model = open_model_tiled(a.model, a.public_key, tile)?;
    let px = pixel_size(a.um_per_px, &model.manifest);
    if let Some(w) = &px.warning {
        nemascope_edge::say!("nemascope-edge: --um-per-px: warning: {w}");
    }
    let settings = CountSettings {
        vote: a.vote,
        min_area_um2: min,
        bit_depth: a.bit_depth,
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
        let r = load_pixels(&i.path, LoadLimits::default())
            .and_then(|f| count_frame(&model, &f, &settings).map(|c| (f, c)));
        let (frame, counted) = match r {
            Ok(v) => v,
            Err(e) => {
                // Image errors name the file already; model errors do not.
                let (path, msg) = (i.path.display().to_string(), e.to_string());
                if msg.contains(&path) {
                    nemascope_edge::say!("nemascope-edge: {msg}");
                } else {
                    nemascope_edge::say!("nemascope-edge: {path}: {msg}");
                }
                failed.push((path_key(&i.path), e.to_string()));
                continue;
            }
        };
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if let Some(p) = counted.quality.problem() {
            nemascope_edge::say!("nemascope-edge: {}: warning: {p}", i.path.display());
        }
        if let Some(dir) = &a.masks {
            let any = counted.any().expect("a model has at least one class");
            save_mask(&any, &dir.join(stem(i)))?;
        }
        if let Some(dir) = &a.overlays {
            let p = dir.join(stem(i));
            overlay(
                &stretch(&frame.to_plane(), 0.005, 0.995),
                &counted
                    .masks
                    .iter()
                    .map(|m| m.to_mask())
                    .collect::<Vec<_>>(),
            )
            .save(&p)
            .map_err(|e| Error::image(&p, e))?;
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
                .map(|o| ObjectReport::new(o, &classes))
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
    if let Some(p) = &a.json {
        let run = RunReport {
            model: &model.manifest.name,
            classes: &classes,
            um_per_px: px.um_per_px,
            images: &reports,
            samples: totals,
            failed: &failed,
        };
        let bytes = serde_json::to_vec_pretty(&run).expect("report serialises");
        write_atomic(p, &bytes)?;
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{} of {} images could not be counted (listed above)",
            failed.len(),
            inputs.len()
        )))
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), MiB.
/// Peak resident memory since start or the last [`reset_peak_rss`].
fn peak_rss_mib() -> Option<f64> {
    status_mib("VmHWM:")
}

/// Starts the peak over from the current resident size (Linux ≥ 4.0), so
/// making the synthetic frame does not count as processing it.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn status_mib(field: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn bench(
    image: Option<PathBuf>,
    size: &str,
    runs: usize,
    model: Option<PathBuf>,
    public_key: Option<PathBuf>,
    tile: Option<[usize; 2]>,
) -> Result<()> {
    let model = open_model_tiled(model, public_key, tile)?;
    // The frame is read from its file every run, as the unit reads it.
    let (path, temporary) = match image {
        Some(p) => (p, false),
        None => (synthetic_png(size)?, true),
    };
    let name = path.clone();
    let reset = reset_peak_rss();
    let before = status_mib("VmRSS:");
    let mut times = Vec::new();
    let mut counts = Vec::new();
    let mut dims = (0, 0);
    let mut result = Ok(());
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let c = load_pixels(&path, LoadLimits::default())
            .and_then(|f| count_frame(&model, &f, &CountSettings::default()).map(|c| (f, c)));
        let (f, c) = match c {
            Ok(v) => v,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        times.push(t.elapsed().as_secs_f64() * 1e3);
        counts = c.counts;
        dims = (f.width(), f.height());
    }
    if temporary {
        let _ = std::fs::remove_file(&path);
    }
    result?;
    times.sort_by(f64::total_cmp);
    println!(
        "{} on {} ({}x{}, model input {:?}): decode to counts median {:.1} ms (min {:.1}, max {:.1}, {} runs); counts {counts:?}",
        model.manifest.name,
        name.display(),
        dims.0,
        dims.1,
        model.runner.input_shape,
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len()
    );
    if let (Some(b), Some(p)) = (before, peak_rss_mib()) {
        let since = if reset {
            "while counting"
        } else {
            "since start (this kernel cannot reset the peak)"
        };
        println!(
            "peak resident memory {since} {p:.1} MiB (resident before the first frame {b:.1} MiB)"
        );
    }
    Ok(())
}

/// A seeded synthetic frame of `size` (WIDTHxHEIGHT) as a 16-bit PNG in
/// the temporary folder; the caller removes it.
fn synthetic_png(size: &str) -> Result<PathBuf> {
    let bad = || Error::Invalid(format!("--size {size}: expected WIDTHxHEIGHT"));
    let (w, h) = size.split_once('x').ok_or_else(bad)?;
    let (w, h): (usize, usize) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    let cfg = SynthConfig {
        width: w,
        height: h,
        ..SynthConfig::default()
    };
    let tmp = std::env::temp_dir().join(format!("nemascope-bench-{}.png", std::process::id()));
    nemascope_core::imageio::save_gray16(&generate(&cfg, 1, 0)?.image, &tmp)?;
    Ok(tmp)
}

/// The demo with a model bundle: each frame through `count_frame`, as
/// `count` and the unit run it, against the generator's truth.
fn demo_model(
    model: &Model,
    frames: usize,
    preset: &str,
    seed: u64,
    out: Option<PathBuf>,
) -> Result<()> {
    let cfg = demo_config(preset, 0)?;
    let classes = &model.manifest.classes;
    // Which truth mask and count each model class is scored against.
    let truth_of: Vec<Class> = classes
        .iter()
        .map(|c| {
            Class::from_name(c)
                .ok_or_else(|| Error::Invalid(format!("model class `{c}` has no synthetic truth")))
        })
        .collect::<Result<_>>()?;
    let settings = CountSettings {
        calibration: Calibration {
            um_per_px: cfg.um_per_px,
        },
        ..CountSettings::default()
    };
    println!(
        "nemascope demo: model {} on {frames} synthetic {}x{} frames, preset {preset}, seed {seed} (the model was trained on seed 11)",
        model.manifest.name, cfg.width, cfg.height
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
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    for i in 0..frames as u64 {
        let f = generate(&demo_config(preset, i)?, seed, i)?;
        let t = Instant::now();
        let c = count_frame(model, &f.image, &settings)?;
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
        "median frame time {:.1} ms (count_frame, one thread)",
        times[times.len() / 2]
    );
    println!("the classical floor on the same frames: nemascope-edge demo --classical");
    Ok(())
}

/// Frame `index` of the demo's preset, at the generator's own 512×384 and
/// 4 µm.
fn demo_config(preset: &str, index: u64) -> Result<SynthConfig> {
    SynthConfig::preset(preset, index, 512, 384, 4.0)
}

fn demo(
    frames: usize,
    preset: &str,
    seed: u64,
    calibration_frames: usize,
    out: Option<PathBuf>,
) -> Result<()> {
    let mut pipe = Pipeline::default();
    let calib: Vec<(Vec<Mask>, [usize; 3])> = (0..calibration_frames as u64)
        .map(|i| {
            generate(&demo_config(preset, i)?, seed.wrapping_add(1_000_000), i)
                .map(|f| (f.masks, f.counts))
        })
        .collect::<Result<_>>()?;
    pipe.calibrate(&calib)?;
    println!("nemascope demo: {frames} synthetic 512x384 frames, preset {preset}, seed {seed}");
    println!("segmenter: classical flat-field threshold with superpixel voting (the floor a model is compared with)");
    println!();
    println!("| frame | worms true/found | eggs true/found | cysts true/found | Dice voted fg | Dice classified | ms |");
    println!("|---|---|---|---|---|---|---|");
    let (mut truth, mut found) = ([vec![], vec![], vec![]], [vec![], vec![], vec![]]);
    let mut pairs = Vec::new();
    let mut classified_pairs = Vec::new();
    let mut times = Vec::new();
    for i in 0..frames as u64 {
        let f = generate(&demo_config(preset, i)?, seed, i)?;
        let t = Instant::now();
        let r = pipe.process(&f.image)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        times.push(ms);
        let true_fg = Mask::union(&f.masks.iter().collect::<Vec<_>>()).expect("3 classes");
        let d = dice(&r.foreground, &true_fg)?;
        let classified = Mask::union(&r.masks.iter().collect::<Vec<_>>()).expect("3 classes");
        let dc = dice(&classified, &true_fg)?;
        let has_objects = true_fg.count() > 0;
        let score = |v: f64| {
            if has_objects {
                format!("{v:.3}")
            } else {
                "–".to_string()
            }
        };
        for k in 0..3 {
            truth[k].push(f.counts[k]);
            found[k].push(r.counts[k]);
        }
        println!(
            "| {i} | {}/{} | {}/{} | {}/{} | {} | {} | {ms:.1} |",
            f.counts[0],
            r.counts[0],
            f.counts[1],
            r.counts[1],
            f.counts[2],
            r.counts[2],
            score(d),
            score(dc)
        );
        if let Some(dir) = &out {
            let id = format!("frame_{i:03}");
            save_gray8(&f.image, &dir.join(format!("{id}.png")))?;
            save_mask(&true_fg, &dir.join(format!("{id}_truth.png")))?;
            save_mask(&r.foreground, &dir.join(format!("{id}_found.png")))?;
        }
        classified_pairs.push((classified, true_fg.clone()));
        pairs.push((r.foreground, true_fg));
    }
    println!();
    println!("| class | true total | found total | mean abs count error per frame |");
    println!("|---|---|---|---|");
    for (k, c) in Class::ALL.iter().enumerate() {
        println!(
            "| {c} | {} | {} | {:.2} |",
            truth[k].iter().sum::<usize>(),
            found[k].iter().sum::<usize>(),
            mean_abs_error(&found[k], &truth[k])
        );
    }
    times.sort_by(f64::total_cmp);
    println!();
    println!(
        "mean Dice over frames with objects: voted foreground {:.3}, classified objects {:.3}; median frame time {:.1} ms",
        mean_dice_positive(&pairs)?.unwrap_or(f64::NAN),
        mean_dice_positive(&classified_pairs)?.unwrap_or(f64::NAN),
        times[times.len() / 2]
    );
    Ok(())
}

fn parse_tile_cfg(t: &str) -> Result<[usize; 2]> {
    nemascope_edge::config::parse_tile(t).map_err(|e| Error::Invalid(format!("count.tile {e}")))
}

/// The service loop on the configured unit.
fn run(config: &std::path::Path, until_done: bool) -> Result<()> {
    nemascope_edge::trust::check(config, "config").map_err(Error::Invalid)?;
    let cfg = Config::load(config).map_err(|e| Error::Invalid(e.to_string()))?;
    let tile = cfg.count.tile.as_deref().map(parse_tile_cfg).transpose()?;
    let (dir, key) = bundle_paths(cfg.model.bundle.clone(), cfg.model.public_key.clone());
    nemascope_edge::trust::check(&key, "public key").map_err(Error::Invalid)?;
    let (watch, model) = ModelWatch::open(
        &dir,
        &key,
        tile,
        &cfg.journal.dir.join("model-last-good"),
        std::time::Duration::from_secs(cfg.model.check_s),
    )
    .map_err(|e| Error::Invalid(e.to_string()))?;
    if let Some(why) = &watch.refused {
        nemascope_edge::say!(
            "model: {} refused: {why}; running the last accepted bundle, {}",
            dir.display(),
            model.manifest.name
        );
    }
    nemascope_edge::say!(
        "nemascope-edge {}: model {} ({}), journal {}",
        env!("CARGO_PKG_VERSION"),
        model.manifest.name,
        model.manifest.classes.join("/"),
        cfg.journal.dir.display()
    );
    let mut service =
        Service::open(&cfg, model, Some(watch)).map_err(|e| Error::Invalid(e.to_string()))?;
    service
        .run(until_done)
        .map_err(|e| Error::Invalid(e.to_string()))
}

fn journal_writer(dir: &std::path::Path, count: u64) -> std::result::Result<(), String> {
    use std::io::Write;
    let mut j = Journal::open(dir).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    for i in 0..count {
        let seq = j
            .append(&Record {
                time_ms: i,
                sample: "kill-test".into(),
                source: format!("frame{i}"),
                counts: [i as u32, (i % 7) as u32, (i % 3) as u32],
                frame_ms: 1,
                model: "none".into(),
                warnings: 0,
                error: None,
                identity: None,
            })
            .map_err(|e| e.to_string())?;
        writeln!(out, "{seq}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.cmd,
        Cmd::Demo { .. } | Cmd::Count(_) | Cmd::Preview(_) | Cmd::Bench { .. }
    ) {
        // A closed pipe (`nemascope-edge count … | head`) ends these
        // printing commands quietly, as other command-line tools end,
        // instead of a panic on the next print; files they wrote are whole
        // (atomic). The unit and the listener keep SIGPIPE ignored, so a
        // peer that hangs up is an error they handle.
        // SAFETY: sets the default disposition before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let r = match cli.cmd {
        Cmd::Demo {
            frames,
            seed,
            preset,
            model,
            public_key,
            classical,
            calibration_frames,
            out,
        } => {
            if classical {
                demo(frames.max(1), &preset, seed, calibration_frames, out)
            } else {
                let model = model.or_else(|| Some(models_dir().join("synth-worm-egg-cyst")));
                open_model(model, public_key)
                    .and_then(|m| demo_model(&m, frames.max(1), &preset, seed, out))
            }
        }
        Cmd::Count(a) => count(a),
        Cmd::Preview(a) => preview(a),
        Cmd::Bench {
            image,
            size,
            runs,
            model,
            public_key,
            tile,
        } => parse_tile(tile.as_deref())
            .and_then(|tile| bench(image, &size, runs, model, public_key, tile)),
        Cmd::JournalWriter { dir, count } => {
            journal_writer(&dir, count).map_err(nemascope_core::Error::Invalid)
        }
        Cmd::Run { config, until_done } => run(&config, until_done),
        Cmd::Listen {
            port,
            baud,
            out,
            until,
        } => {
            if !nemascope_edge::config::BAUDS.contains(&baud) {
                Err(Error::Invalid(format!(
                    "--baud {baud}: one of {:?}",
                    nemascope_edge::config::BAUDS
                )))
            } else {
                nemascope_edge::listener::listen(&ListenOptions {
                    port,
                    baud,
                    out,
                    until,
                    reopen: std::time::Duration::from_secs(2),
                })
                .map_err(|e| Error::Invalid(e.to_string()))
            }
        }
        Cmd::CheckModel { bundle, public_key } => {
            check_model(&bundle, &public_key).map_err(nemascope_core::Error::Invalid)
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            nemascope_edge::say!("nemascope-edge: {e}");
            ExitCode::FAILURE
        }
    }
}
