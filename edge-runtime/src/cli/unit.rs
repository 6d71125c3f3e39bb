//! The unit's commands: `run` (the service), `listen` (the host's end of
//! the serial link) and `check-model`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use nemascope_bundle::Bundle;
use nemascope_core::imageio::standardise;
use nemascope_core::synth::{generate, SynthConfig};
use nemascope_count::{Model, ModelError};
use nemascope_onnx::{Precision, Runner};

use crate::config::{parse_tile, Config, BAUDS};
use crate::link::listener::ListenOptions;
use crate::model::ModelWatch;
use crate::service::Service;

use super::bundle_paths;

/// The service loop on the configured unit.
pub fn run(config: &Path, until_done: bool) -> anyhow::Result<()> {
    crate::trust::check(config, "config").map_err(|e| anyhow!(e))?;
    let cfg = Config::load(config)?;
    let tile = cfg
        .count
        .tile
        .as_deref()
        .map(|t| parse_tile(t).map_err(|e| anyhow!("count.tile {e}")))
        .transpose()?;
    let (dir, key) = bundle_paths(cfg.model.bundle.clone(), cfg.model.public_key.clone());
    crate::trust::check(&key, "public key").map_err(|e| anyhow!(e))?;
    let (watch, model) = ModelWatch::open(
        &dir,
        &key,
        tile,
        &cfg.journal.dir.join("model-last-good"),
        std::time::Duration::from_secs(cfg.model.check_s),
    )?;
    if let Some(why) = &watch.refused {
        say!(
            "model: {} refused: {why}; running the last accepted bundle, {}",
            dir.display(),
            model.manifest.name
        );
    }
    say!(
        "nemascope-edge {}: model {} ({}), journal {}",
        env!("CARGO_PKG_VERSION"),
        model.manifest.name,
        model.manifest.classes.join("/"),
        cfg.journal.dir.display()
    );
    Service::open(&cfg, model, Some(watch))?.run(until_done);
    Ok(())
}

/// Stores every report the unit sends, once.
pub fn listen(
    port: PathBuf,
    baud: u32,
    out: PathBuf,
    unit: Option<String>,
    until: Option<u64>,
) -> anyhow::Result<()> {
    if !BAUDS.contains(&baud) {
        bail!("--baud {baud}: one of {BAUDS:?}");
    }
    crate::link::listener::listen(&ListenOptions {
        port,
        baud,
        out,
        unit,
        until,
        reopen: std::time::Duration::from_secs(2),
    })?;
    Ok(())
}

/// Writes the database's reports (of one sample, or all) as CSV for a
/// spreadsheet, to `csv` or stdout.
pub fn reports(db: &Path, sample: Option<&str>, csv: Option<&Path>) -> anyhow::Result<()> {
    let rows = crate::link::db::read(db, sample)?;
    let bytes = crate::link::db::csv(&rows);
    match csv {
        Some(p) => nemascope_core::files::write_atomic(p, &bytes)?,
        None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)?,
    }
    Ok(())
}

/// Opens the bundle as a unit would and runs the model once.
pub fn check_model(bundle: &Path, key: &Path) -> anyhow::Result<()> {
    // Opened as `Model::open` does, keeping an f16 bundle's file for the
    // comparison with fp32 below.
    let key = nemascope_bundle::read_public_key(key).map_err(ModelError::Key)?;
    let b = Bundle::open(bundle, &key).map_err(ModelError::Bundle)?;
    let float_file = (b.manifest.precision == Precision::F16.name()).then(|| b.model.clone());
    let m = Model::from_bundle(b, None)?;
    let t = Instant::now();
    let input = vec![0f32; m.runner.input_len()];
    m.runner.maps(&input).context("bundle refused")?;
    let mf = &m.manifest;
    println!("{}: accepted", bundle.display());
    println!(
        "  name {}, {} model, classes {:?}",
        mf.name, mf.precision, mf.classes
    );
    println!(
        "  input {:?}, pixel scale {}, thresholds {:?}",
        mf.input,
        mf.pixel_scale,
        mf.thresholds()
    );
    for (k, v) in &mf.metrics {
        println!("  {k} = {v:.4}");
    }
    println!("  one inference {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    if let Some(bytes) = float_file {
        f16_against_fp32(&m, &bytes)?;
    }
    Ok(())
}

/// An f16 bundle's maps against the same file run in fp32, on a seeded
/// synthetic frame of the model's input size: refused if more than 1 % of
/// pixels change class (this core's half precision is not good enough for
/// the model).
fn f16_against_fp32(m: &Model, float_file: &[u8]) -> anyhow::Result<()> {
    let fp32 = Runner::load_as(float_file, None, Precision::Fp32)?;
    let [_, _, h, w] = m.runner.input_shape;
    let cfg = SynthConfig::preset("mixed", 1, w, h, 4.0)?;
    let mut frame = generate(&cfg, 2026, 1)?.image;
    standardise(&mut frame);
    let (half, full) = (m.runner.maps(frame.data())?, fp32.maps(frame.data())?);
    // Maps are class after class; each class is cut at its own threshold.
    let t = m.manifest.thresholds();
    let per_class = h * w;
    let max = half
        .iter()
        .zip(&full)
        .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
    let changed = half
        .iter()
        .zip(&full)
        .enumerate()
        .filter(|(i, (x, y))| {
            let t = t[(i / per_class).min(t.len() - 1)];
            (**x >= t) != (**y >= t)
        })
        .count() as f64
        / full.len() as f64;
    println!(
        "  f16 against fp32 on a synthetic frame: max |difference| {max:.4}, {:.3} % of pixels change class",
        changed * 100.0
    );
    if changed > 0.01 {
        bail!(
            "bundle refused: in f16 {:.2} % of pixels change class against fp32 (more than 1 %)",
            changed * 100.0
        );
    }
    Ok(())
}
