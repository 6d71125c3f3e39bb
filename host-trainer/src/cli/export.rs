//! `export` and `keygen`: signed bundles.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::export;

/// Writes a signed bundle for a finished run and prints its manifest's
/// scores.
pub fn export(
    run: &Path,
    key: &Path,
    out: &Path,
    precision: &str,
    input: Option<&str>,
    calibration: usize,
    name: Option<String>,
) -> Result<()> {
    let key = nemascope_bundle::read_signing_key(key)?;
    let input = input.map(parse_size).transpose()?;
    let opts = export::ExportOptions {
        name: name.unwrap_or_else(|| {
            out.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into())
        }),
        precision: export::Precision::parse(precision)?,
        input,
        calibration_images: calibration,
    };
    let t = Instant::now();
    let e = export::export_run(run, out, &key, &opts)?;
    let m = &e.bundle.manifest;
    println!(
        "{}: {} input {:?}, sha256 {}",
        out.display(),
        m.precision,
        m.input,
        m.model_sha256
    );
    for (k, v) in &m.metrics {
        println!("  {k} = {v:.4}");
    }
    eprintln!("exported and scored in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// `512x384` → input size: WIDTHxHEIGHT, as every size on the command
/// line is written.
fn parse_size(s: &str) -> Result<nemascope_onnx::InputSize> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("--input {s}: expected WIDTHxHEIGHT, e.g. 512x384"))?;
    Ok(nemascope_onnx::InputSize {
        width: w
            .trim()
            .parse()
            .with_context(|| format!("--input {s}: width"))?,
        height: h
            .trim()
            .parse()
            .with_context(|| format!("--input {s}: height"))?,
    })
}
