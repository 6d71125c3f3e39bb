//! Reader for the BBBC010 C. elegans layout (`wells.csv`, `images/`,
//! `masks/`, `worms/`), as laid out in `../shared/data/bbbc010`.

use std::path::{Path, PathBuf};

use super::{Dataset, Sample};
use crate::{Error, Result};

/// One well: its brightfield image, foreground mask and one mask per worm.
#[derive(Debug, Clone, PartialEq)]
pub struct Well {
    pub well: String,
    /// `ampicillin` (alive, curved) or `untreated` (mostly dead, straight).
    pub condition: String,
    pub image: PathBuf,
    pub mask: PathBuf,
    pub worms: Vec<PathBuf>,
    pub worm_count: usize,
}

/// Where the data lives: `$NEMASCOPE_BBBC010`, else `../shared/data/bbbc010`
/// next to the workspace root.
pub fn default_root() -> PathBuf {
    if let Some(p) = std::env::var_os("NEMASCOPE_BBBC010") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/bbbc010")
}

/// Reads `root/wells.csv` and checks that every file it names exists and
/// that each well's worm masks match its `worm_count`.
pub fn open(root: &Path) -> Result<Vec<Well>> {
    let csv_path = root.join("wells.csv");
    let err = |line: Option<u64>, reason: String| Error::Dataset {
        path: csv_path.clone(),
        line,
        reason,
    };
    let mut rdr = csv::Reader::from_path(&csv_path).map_err(|e| err(None, e.to_string()))?;
    let headers = rdr
        .headers()
        .map_err(|e| err(Some(1), e.to_string()))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| err(Some(1), format!("missing column `{name}`")))
    };
    let (cw, cc, ci, cm, cn) = (
        col("well")?,
        col("condition")?,
        col("image")?,
        col("mask")?,
        col("worm_count")?,
    );
    let worm_dir = root.join("worms");
    let mut worm_files: Vec<String> = std::fs::read_dir(&worm_dir)
        .map_err(|e| Error::io(&worm_dir, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".png"))
        .collect();
    worm_files.sort();
    let mut wells = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| err(e.position().map(|p| p.line()), e.to_string()))?;
        let line = rec.position().map(|p| p.line());
        let get = |i: usize| rec.get(i).unwrap_or("").to_string();
        let well = get(cw);
        let worm_count: usize = get(cn)
            .parse()
            .map_err(|_| err(line, format!("worm_count `{}` is not a number", get(cn))))?;
        let prefix = format!("{well}_");
        let worms: Vec<PathBuf> = worm_files
            .iter()
            .filter(|n| n.starts_with(&prefix))
            .map(|n| worm_dir.join(n))
            .collect();
        if worms.len() != worm_count {
            return Err(err(
                line,
                format!(
                    "well {well}: worm_count {worm_count} but {} worm masks",
                    worms.len()
                ),
            ));
        }
        let w = Well {
            image: root.join(get(ci)),
            mask: root.join(get(cm)),
            condition: get(cc),
            well,
            worms,
            worm_count,
        };
        for p in [&w.image, &w.mask] {
            if !p.is_file() {
                return Err(err(line, format!("missing file {}", p.display())));
            }
        }
        wells.push(w);
    }
    if wells.is_empty() {
        return Err(err(None, "no wells".into()));
    }
    Ok(wells)
}

/// The wells as a one-class (`worm`) generic dataset with masks and counts.
pub fn to_dataset(wells: &[Well]) -> Dataset {
    Dataset {
        classes: vec!["worm".into()],
        samples: wells
            .iter()
            .map(|w| Sample {
                id: w.well.clone(),
                image: w.image.clone(),
                present: vec![w.worm_count > 0],
                masks: vec![Some(w.mask.clone())],
                counts: vec![Some(w.worm_count)],
            })
            .collect(),
    }
}
