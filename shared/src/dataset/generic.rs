//! The generic layout users fill themselves: a folder with `labels.csv`.
//!
//! ```text
//! image,worm,egg,cyst,worm_mask,egg_mask,cyst_mask,worm_count
//! img/0001.png,1,0,0,masks/0001_worm.png,,,3
//! img/0002.tif,0,0,0,,,,0
//! ```
//!
//! `image` is required. Every other column is a class (values 0 or 1)
//! unless it ends in `_mask` (a mask image path for that class, may be
//! empty) or `_count` (an instance count, may be empty). Paths are relative
//! to the folder of `labels.csv` unless absolute. Errors name the file and
//! line.

use std::path::{Path, PathBuf};

use super::{Dataset, Sample};
use crate::{Error, Result};

/// File name of the label table inside a dataset folder.
pub const LABELS: &str = "labels.csv";

enum Col {
    Image,
    Class(usize),
    Mask(usize),
    Count(usize),
}

/// Reads `dir/labels.csv` (or the CSV file itself when `path` is a file);
/// the first row that cannot be used is the error.
pub fn read(path: &Path) -> Result<Dataset> {
    let rows = read_rows(path)?;
    let samples = rows
        .rows
        .into_iter()
        .map(|r| r.sample)
        .collect::<Result<Vec<_>>>()?;
    Ok(Dataset {
        classes: rows.classes,
        samples,
    })
}

/// A label table read row by row: a malformed row is kept as its error, so
/// a caller can list every bad row at once or go on without them.
#[derive(Debug)]
pub struct Rows {
    /// The table's own path.
    pub csv: PathBuf,
    pub classes: Vec<String>,
    pub rows: Vec<Row>,
}

/// One data row of the table.
#[derive(Debug)]
pub struct Row {
    /// Line in the file (1 is the header).
    pub line: Option<u64>,
    pub sample: Result<Sample>,
}

/// Reads the table like [`read`], keeping each row's own error. Errors in
/// the header, or a file that cannot be read, are still the error.
pub fn read_rows(path: &Path) -> Result<Rows> {
    let csv_path = if path.is_dir() {
        path.join(LABELS)
    } else {
        path.to_path_buf()
    };
    let root = csv_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let err = |line: Option<u64>, reason: String| Error::Dataset {
        path: csv_path.clone(),
        line,
        reason,
    };
    crate::files::check_regular(&csv_path).map_err(|why| err(None, why))?;
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(&csv_path)
        .map_err(|e| err(None, e.to_string()))?;
    let headers = rdr
        .headers()
        .map_err(|e| err(Some(1), e.to_string()))?
        .clone();
    let mut classes: Vec<String> = Vec::new();
    for h in headers.iter() {
        if h != "image" && !h.ends_with("_mask") && !h.ends_with("_count") {
            if h.is_empty() {
                return Err(err(Some(1), "empty column name".into()));
            }
            if classes.iter().any(|c| c == h) {
                return Err(err(Some(1), format!("duplicate class column `{h}`")));
            }
            classes.push(h.to_string());
        }
    }
    if classes.is_empty() {
        return Err(err(
            Some(1),
            "no class columns (expected e.g. `image,worm`)".into(),
        ));
    }
    let class_of = |name: &str| classes.iter().position(|c| c == name);
    let mut cols = Vec::new();
    let mut has_image = false;
    for h in headers.iter() {
        let col = if h == "image" {
            if has_image {
                return Err(err(Some(1), "duplicate `image` column".into()));
            }
            has_image = true;
            Col::Image
        } else if let Some(c) = h.strip_suffix("_mask") {
            Col::Mask(
                class_of(c)
                    .ok_or_else(|| err(Some(1), format!("`{h}` names no class column `{c}`")))?,
            )
        } else if let Some(c) = h.strip_suffix("_count") {
            Col::Count(
                class_of(c)
                    .ok_or_else(|| err(Some(1), format!("`{h}` names no class column `{c}`")))?,
            )
        } else {
            Col::Class(class_of(h).expect("listed above"))
        };
        cols.push(col);
    }
    if !has_image {
        return Err(err(Some(1), "no `image` column".into()));
    }
    let n = classes.len();
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            // A read failure stops everything; a malformed row is that
            // row's problem (the reader goes on with the next).
            Err(e) if e.is_io_error() => return Err(err(None, e.to_string())),
            Err(e) => {
                let line = e.position().map(|p| p.line());
                rows.push(Row {
                    line,
                    sample: Err(err(line, e.to_string())),
                });
                continue;
            }
        };
        let line = rec.position().map(|p| p.line());
        rows.push(Row {
            line,
            sample: parse_row(&rec, &cols, &classes, &root, n).map_err(|r| err(line, r)),
        });
    }
    Ok(Rows {
        csv: csv_path,
        classes,
        rows,
    })
}

/// One data row as a sample, or why it cannot be one.
fn parse_row(
    rec: &csv::StringRecord,
    cols: &[Col],
    classes: &[String],
    root: &Path,
    n: usize,
) -> std::result::Result<Sample, String> {
    let mut s = Sample {
        id: String::new(),
        image: PathBuf::new(),
        present: vec![false; n],
        masks: vec![None; n],
        counts: vec![None; n],
    };
    for (col, val) in cols.iter().zip(rec.iter()) {
        match *col {
            Col::Image => {
                if val.is_empty() {
                    return Err("empty image path".into());
                }
                s.image = resolve(root, val);
                s.id = Path::new(val)
                    .file_stem()
                    .map(|x| x.to_string_lossy().into_owned())
                    .unwrap_or_else(|| val.to_string());
            }
            Col::Class(c) => {
                s.present[c] = match val {
                    "1" => true,
                    "0" => false,
                    other => {
                        return Err(format!(
                            "class `{}` must be 0 or 1, got `{other}`",
                            classes[c]
                        ))
                    }
                }
            }
            Col::Mask(c) => s.masks[c] = (!val.is_empty()).then(|| resolve(root, val)),
            Col::Count(c) => {
                s.counts[c] = if val.is_empty() {
                    None
                } else {
                    Some(val.parse().map_err(|_| {
                        format!("`{}_count` must be a whole number, got `{val}`", classes[c])
                    })?)
                }
            }
        }
    }
    for (c, (&count, &present)) in s.counts.iter().zip(&s.present).enumerate() {
        if let Some(k) = count {
            if (k > 0) != present {
                return Err(format!(
                    "class `{}` is {} but its count is {k}",
                    classes[c], present as u8
                ));
            }
        }
    }
    Ok(s)
}

fn resolve(root: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

/// Writes `dir/labels.csv` for `ds`, with paths relative to `dir` where they
/// lie under it. Mask and count columns are written only if some sample has
/// them.
pub fn write(dir: &Path, ds: &Dataset) -> Result<PathBuf> {
    let path = dir.join(LABELS);
    let e = |x: csv::Error| Error::Dataset {
        path: path.clone(),
        line: None,
        reason: x.to_string(),
    };
    let mut w = csv::Writer::from_path(&path).map_err(e)?;
    let any_mask = ds
        .samples
        .iter()
        .any(|s| s.masks.iter().any(Option::is_some));
    let any_count = ds
        .samples
        .iter()
        .any(|s| s.counts.iter().any(Option::is_some));
    let mut header = vec!["image".to_string()];
    header.extend(ds.classes.iter().cloned());
    if any_mask {
        header.extend(ds.classes.iter().map(|c| format!("{c}_mask")));
    }
    if any_count {
        header.extend(ds.classes.iter().map(|c| format!("{c}_count")));
    }
    w.write_record(&header).map_err(e)?;
    let rel = |p: &Path| {
        p.strip_prefix(dir)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    for s in &ds.samples {
        let mut row = vec![rel(&s.image)];
        row.extend(s.present.iter().map(|&b| (b as u8).to_string()));
        if any_mask {
            row.extend(
                s.masks
                    .iter()
                    .map(|m| m.as_deref().map(rel).unwrap_or_default()),
            );
        }
        if any_count {
            row.extend(
                s.counts
                    .iter()
                    .map(|c| c.map(|k| k.to_string()).unwrap_or_default()),
            );
        }
        w.write_record(&row).map_err(e)?;
    }
    w.flush().map_err(|x| Error::io(&path, x))?;
    Ok(path)
}

/// What [`merge`] did with the corrections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Merged {
    /// Rows whose bits the corrections kept as they were.
    pub confirmed: usize,
    /// Rows whose bits the corrections changed.
    pub changed: usize,
    /// Rows only the corrections have.
    pub added: usize,
}

/// The labels with a review's corrections on top: a correction replaces the
/// row of the same image file (tiles are named after their image and
/// corner, so the same tile has the same name), in place so the seeded
/// split keeps every earlier row on its side; new rows go at the end.
/// Neither input is changed. Image-level bits only: masks and counts of a
/// replaced row go with it.
pub fn merge(base: &Dataset, corrections: &Dataset) -> Result<(Dataset, Merged)> {
    if base.classes != corrections.classes {
        return Err(Error::Invalid(format!(
            "the corrections are for the classes {}, the labels for {}",
            corrections.classes.join(","),
            base.classes.join(",")
        )));
    }
    let key = |s: &Sample| s.image.file_name().map(|n| n.to_owned());
    let mut out = base.clone();
    let mut stats = Merged::default();
    for c in &corrections.samples {
        match out.samples.iter_mut().find(|s| key(s) == key(c)) {
            Some(s) if s.present == c.present => stats.confirmed += 1,
            Some(s) => {
                *s = c.clone();
                stats.changed += 1;
            }
            None => {
                out.samples.push(c.clone());
                stats.added += 1;
            }
        }
    }
    Ok((out, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrections_replace_their_rows_in_place_and_add_new_ones_at_the_end() {
        let ds = |rows: &[(&str, bool)]| Dataset {
            classes: vec!["egg".into()],
            samples: rows
                .iter()
                .map(|&(p, b)| Sample {
                    id: p.into(),
                    image: PathBuf::from(p),
                    present: vec![b],
                    masks: vec![None],
                    counts: vec![None],
                })
                .collect(),
        };
        let base = ds(&[
            ("/l/tiles/a_x0", true),
            ("/l/tiles/a_x1", false),
            ("/l/tiles/b_x0", false),
        ]);
        let fix = ds(&[
            ("/c/tiles/a_x1", true),
            ("/c/tiles/a_x0", true),
            ("/c/tiles/z_x0", false),
        ]);
        let (m, stats) = merge(&base, &fix).unwrap();
        assert_eq!(
            stats,
            Merged {
                confirmed: 1,
                changed: 1,
                added: 1
            }
        );
        let rows: Vec<(String, bool)> = m
            .samples
            .iter()
            .map(|s| (s.image.display().to_string(), s.present[0]))
            .collect();
        assert_eq!(
            rows,
            [
                ("/l/tiles/a_x0".into(), true),
                ("/c/tiles/a_x1".into(), true),
                ("/l/tiles/b_x0".into(), false),
                ("/c/tiles/z_x0".into(), false)
            ]
        );
        let other = Dataset {
            classes: vec!["cyst".into()],
            ..fix
        };
        assert!(merge(&base, &other)
            .unwrap_err()
            .to_string()
            .contains("cyst"));
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("nemascope-generic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reads_classes_masks_counts_and_round_trips() {
        let d = tmpdir("rt");
        std::fs::write(
            d.join(LABELS),
            "image,worm,egg,worm_mask,worm_count\nimg/a.png,1,0,m/a.png,3\n/abs/b.tif,0,1,,0\n",
        )
        .unwrap();
        let ds = read(&d).unwrap();
        assert_eq!(ds.classes, vec!["worm", "egg"]);
        assert_eq!(ds.samples[0].image, d.join("img/a.png"));
        assert_eq!(ds.samples[0].id, "a");
        assert_eq!(ds.samples[0].present, vec![true, false]);
        assert_eq!(ds.samples[0].masks, vec![Some(d.join("m/a.png")), None]);
        assert_eq!(ds.samples[0].counts, vec![Some(3), None]);
        assert_eq!(ds.samples[1].image, PathBuf::from("/abs/b.tif"));
        write(&d, &ds).unwrap();
        assert_eq!(read(&d).unwrap(), ds);
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let d = tmpdir("bad");
        for (body, want) in [
            ("image,worm\na.png,2\n", "line 2"),
            ("image,worm\na.png,1\nb.png,yes\n", "line 3"),
            ("worm\n1\n", "no `image` column"),
            ("image,worm,egg_mask\na.png,1,x\n", "names no class"),
            ("image,worm,worm_count\na.png,0,4\n", "count is 4"),
            ("image,worm,worm_count\na.png,1,-1\n", "whole number"),
        ] {
            std::fs::write(d.join(LABELS), body).unwrap();
            let e = read(&d).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("labels.csv"),
                "{body:?} -> {e}"
            );
        }
        let e = read(&d.join("missing")).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn every_bad_row_is_kept_with_its_line_and_the_rest_read() {
        let d = tmpdir("rows");
        std::fs::write(
            d.join(LABELS),
            "image,worm\na.png,1\nb.png,2\nc.png\n,0\nd.png,0\n",
        )
        .unwrap();
        let rows = read_rows(&d).unwrap();
        let got: Vec<(Option<u64>, std::result::Result<String, String>)> = rows
            .rows
            .iter()
            .map(|r| {
                (
                    r.line,
                    r.sample
                        .as_ref()
                        .map(|s| s.id.clone())
                        .map_err(|e| e.to_string()),
                )
            })
            .collect();
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0], (Some(2), Ok("a".into())));
        assert_eq!(got[4], (Some(6), Ok("d".into())));
        for (i, want) in [
            (1, "must be 0 or 1"),
            (2, "fields"),
            (3, "empty image path"),
        ] {
            let (line, e) = &got[i];
            let e = e.as_ref().unwrap_err();
            assert_eq!(*line, Some(i as u64 + 2));
            assert!(
                e.contains(want) && e.contains(&format!("labels.csv line {}", i + 2)),
                "{e}"
            );
        }
        // The strict reader stops at the first.
        assert!(read(&d).unwrap_err().to_string().contains("line 3"));
    }
}
