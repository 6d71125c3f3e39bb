//! `nemascope-edge bench`: decode-to-counts time and peak memory.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use nemascope_core::imageio::{load_pixels, LoadLimits, Luma};
use nemascope_core::synth::{generate, SynthConfig};
use nemascope_count::{count_frame, CountSettings};

use super::{open_model_tiled, parse_tile};

/// The `bench` command's options.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Image to count (read from its file every run).
    #[arg(long, conflicts_with = "size")]
    pub image: Option<PathBuf>,
    /// Frame size WIDTHxHEIGHT (the paper's camera: 4112x3008).
    #[arg(long, default_value = "512x384")]
    pub size: String,
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long)]
    pub public_key: Option<PathBuf>,
    /// Run the model on WIDTHxHEIGHT tiles instead of its input size
    /// (less memory; see docs/edge.md).
    #[arg(long)]
    pub tile: Option<String>,
    /// Threads counting the frame (tiles side by side, objects measured in
    /// parallel).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
}

/// Peak resident memory (Linux `VmHWM`, MiB) since start or the last [`reset_peak_rss`].
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

/// Times `count_frame` on the frame, read from its file every run as the
/// unit reads it.
pub fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let tile = parse_tile(a.tile.as_deref())?;
    let model = open_model_tiled(a.model, a.public_key, tile)?;
    let (path, temporary) = match a.image {
        Some(p) => (p, false),
        None => (synthetic_png(&a.size)?, true),
    };
    let name = path.clone();
    let reset = reset_peak_rss();
    let before = status_mib("VmRSS:");
    let mut times = Vec::new();
    let mut counts = Vec::new();
    let mut dims = (0, 0);
    let mut result = Ok(());
    for _ in 0..a.runs.max(1) {
        let t = Instant::now();
        let c = load_pixels(&path, LoadLimits::default())
            .map_err(anyhow::Error::from)
            .and_then(|f| {
                let settings = CountSettings {
                    threads: a.threads.into(),
                    ..CountSettings::default()
                };
                let c = count_frame(&model, &f, &settings)
                    .with_context(|| path.display().to_string())?;
                Ok((f, c))
            });
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
        "{} on {} ({}x{}, model input {:?}, {} thread(s)): decode to counts median {:.1} ms (min {:.1}, max {:.1}, {} runs); counts {counts:?}",
        model.manifest.name,
        name.display(),
        dims.0,
        dims.1,
        model.runner.input_shape,
        a.threads,
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
fn synthetic_png(size: &str) -> anyhow::Result<PathBuf> {
    let bad = || anyhow::anyhow!("--size {size}: expected WIDTHxHEIGHT");
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
