//! The unit's commands: `run` (the service), `listen` (the host's end of
//! the serial link) and `check-model`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use nemascope_count::Model;

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
pub fn listen(port: PathBuf, baud: u32, out: PathBuf, until: Option<u64>) -> anyhow::Result<()> {
    if !BAUDS.contains(&baud) {
        bail!("--baud {baud}: one of {BAUDS:?}");
    }
    crate::link::listener::listen(&ListenOptions {
        port,
        baud,
        out,
        until,
        reopen: std::time::Duration::from_secs(2),
    })?;
    Ok(())
}

/// Opens the bundle as a unit would and runs the model once.
pub fn check_model(bundle: &Path, key: &Path) -> anyhow::Result<()> {
    let m = Model::open(bundle, key)?;
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
        "  input {:?}, pixel scale {}, threshold {}",
        mf.input, mf.pixel_scale, mf.threshold
    );
    for (k, v) in &mf.metrics {
        println!("  {k} = {v:.4}");
    }
    println!("  one inference {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    Ok(())
}
