//! `export` and `keygen`: signed bundles.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::export;

/// The command line's export options, as given.
pub struct Args<'a> {
    pub precision: &'a str,
    pub input: Option<&'a str>,
    pub calibration: usize,
    pub name: Option<String>,
    pub verifier: bool,
    /// The run's teacher, exported instead if the student lost a class.
    pub teacher: Option<&'a Path>,
    /// More for the manifest's `training` section, as (key, text).
    pub notes: Vec<(String, String)>,
}

impl<'a> Args<'a> {
    /// The defaults `labelled` exports with (`teacher`: of the student
    /// exported, if it is one).
    pub fn defaults(
        precision: &'a str,
        name: Option<String>,
        teacher: Option<&'a Path>,
    ) -> Args<'a> {
        Args {
            precision,
            input: None,
            calibration: 16,
            name,
            verifier: true,
            teacher,
            notes: Vec::new(),
        }
    }

    /// The options of an export into `out`.
    pub fn options(self, out: &Path) -> Result<export::ExportOptions> {
        Ok(export::ExportOptions {
            name: self.name.unwrap_or_else(|| {
                out.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "model".into())
            }),
            precision: export::Precision::parse(self.precision)?,
            input: self.input.map(parse_size).transpose()?,
            calibration_images: self.calibration,
            verifier: self.verifier,
            teacher: self.teacher.map(Path::to_path_buf),
            notes: self.notes,
        })
    }
}

/// Writes a signed bundle for a finished run and prints its manifest's
/// scores.
pub fn export(run: &Path, key: &Path, out: &Path, a: Args<'_>) -> Result<()> {
    let key = nemascope_bundle::read_signing_key(key)?;
    let opts = a.options(out)?;
    let t = Instant::now();
    let e = export::export_run(run, out, &key, &opts)?;
    print_exported(out, &e);
    eprintln!("exported and scored in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// Fits a new object verifier for an existing bundle from a run's data
/// and writes the bundle again, signed, to `out`.
pub fn refit(bundle: &Path, public_key: &Path, run: &Path, key: &Path, out: &Path) -> Result<()> {
    let public = nemascope_bundle::read_public_key(public_key)?;
    let key = nemascope_bundle::read_signing_key(key)?;
    let t = Instant::now();
    let e = export::refit_verifier(bundle, &public, run, out, &key)?;
    print_exported(out, &e);
    eprintln!(
        "verifier fitted and scored in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Checks `bundle` with `public_key` and writes it to `out` signed with
/// `key`, manifest and model unchanged.
pub fn resign(bundle: &Path, public_key: &Path, key: &Path, out: &Path) -> Result<()> {
    let public = nemascope_bundle::read_public_key(public_key)?;
    let key = nemascope_bundle::read_signing_key(key)?;
    let b = nemascope_bundle::Bundle::open(bundle, &public)?;
    nemascope_bundle::Bundle::write(out, b.manifest, &b.model, &key)?;
    println!("{} signed anew into {}", bundle.display(), out.display());
    Ok(())
}

/// The written bundle, its manifest's scores and the per-image checks.
fn print_exported(out: &Path, e: &export::Exported) {
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
    for ch in &e.thresholds {
        let (absent, present) = ch
            .curve
            .first()
            .map_or((0, 0), |(_, c)| (c.absent, c.present));
        let fewest = match ch.fewest {
            Some(t) if (t - ch.threshold).abs() > 1e-6 => {
                format!(" (fewer errors at {t:.2}, but only through objects split or merged there)")
            }
            _ => String::new(),
        };
        println!(
            "{}: map threshold {:.2}{fewest}, chosen on {} labelled cells ({absent} absent, \
             {present} present); at each level, objects counted in absent cells and present \
             cells with nothing counted:",
            ch.class, ch.threshold, ch.cells
        );
        let line: Vec<String> = ch
            .curve
            .iter()
            .map(|(t, c)| format!("{t:.2}: {} {}", c.objects_in_absent, c.nothing_in_present))
            .collect();
        println!("  {}", line.join(" | "));
    }
    if !e.per_image.is_empty() {
        println!(
            "checks from the labels, per image (all its tiles, training ones included):\n  \
             image / class: tiles labelled absent with something counted; labelled present with nothing counted"
        );
        for (image, checks) in &e.per_image {
            for (class, c) in m.classes.iter().zip(checks) {
                println!(
                    "  {image} / {class}: {} of {} absent; {} of {} present",
                    c.counted_in_absent, c.absent, c.nothing_in_present, c.present
                );
            }
        }
    }
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
