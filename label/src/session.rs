//! What a labelling session is, as pure data: the units to decide (tiles of
//! a chosen size, or whole images), the ordered log of decisions, and the
//! `labels.csv` that follows from it.
//!
//! The log is the record; `labels.csv` is derived from it (latest decision
//! per unit and class wins, undo drops the last one), so a crash between
//! the two writes is mended by rewriting the table on the next start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nemascope_core::dataset::tiles::origins;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Smallest tile side offered: below it an egg fills the tile and the
/// trainer has no context to learn from.
pub const MIN_TILE: u32 = 32;

/// How images are cut into the units a decision is taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cut {
    /// Square tiles of this side, every `side` pixels plus one flush with
    /// the right and bottom edges (so every tile is whole).
    Tile(u32),
    /// One decision per image and class.
    Whole,
}

impl Cut {
    /// Parses `256` or `whole`.
    pub fn parse(s: &str) -> Result<Cut> {
        if s.eq_ignore_ascii_case("whole") {
            return Ok(Cut::Whole);
        }
        let side: u32 = s.parse().map_err(|_| {
            Error::Input(format!(
                "tile size `{s}`: give a side in pixels (e.g. 256) or `whole`"
            ))
        })?;
        if side < MIN_TILE {
            return Err(Error::Input(format!(
                "tile size {side} px: the smallest is {MIN_TILE} px"
            )));
        }
        Ok(Cut::Tile(side))
    }

    pub fn name(self) -> String {
        match self {
            Cut::Tile(s) => s.to_string(),
            Cut::Whole => "whole".into(),
        }
    }
}

/// An image of the folder, as found at start (its size from the header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    /// File name inside the folder: the key decisions are recorded under.
    pub name: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
}

/// A rectangle of an image that gets one decision per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Unit {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Unit {
    /// Whether `other` lies wholly inside this unit.
    pub fn contains(&self, other: &Unit) -> bool {
        self.x <= other.x
            && self.y <= other.y
            && other.x + other.width <= self.x + self.width
            && other.y + other.height <= self.y + self.height
    }
}

/// The units of an image, row by row; an error names the image when the
/// tile does not fit in it.
pub fn units(image: &ImageInfo, cut: Cut) -> Result<Vec<Unit>> {
    let (w, h) = (image.width, image.height);
    match cut {
        Cut::Whole => Ok(vec![Unit {
            x: 0,
            y: 0,
            width: w,
            height: h,
        }]),
        Cut::Tile(side) => {
            if side > w || side > h {
                let fix = if w.min(h) < MIN_TILE {
                    format!(
                        "tiles are at least {MIN_TILE} px, so label whole images (--tile whole)"
                    )
                } else {
                    format!("choose at most {} px, or whole images", w.min(h))
                };
                return Err(Error::Input(format!(
                    "tile size {side} px is larger than {} ({w}×{h}); {fix}",
                    image.name
                )));
            }
            let (side_u, w_u, h_u) = (side as usize, w as usize, h as usize);
            let xs = origins(w_u, side_u, side_u);
            Ok(origins(h_u, side_u, side_u)
                .into_iter()
                .flat_map(|y| {
                    xs.iter().map(move |&x| Unit {
                        x: x as u32,
                        y: y as u32,
                        width: side,
                        height: side,
                    })
                })
                .collect())
        }
    }
}

/// One present/absent decision, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub image: String,
    pub x: u32,
    pub y: u32,
    pub class: usize,
    pub present: bool,
}

/// Where a decision applies: image name and the unit's corner.
pub type UnitKey = (String, u32, u32);

/// Per unit, one present/absent (or none yet) per class.
pub type Bits = HashMap<UnitKey, Vec<Option<bool>>>;

/// The decided units of `current`, each class left open taken from
/// `defaults` where it has one: a review's correction of one class
/// becomes a whole row (the other classes keep their training label, or
/// the model's answer). Units nobody decided stay out.
pub fn filled(mut current: Bits, defaults: &Bits) -> Bits {
    for (key, bits) in current.iter_mut() {
        if let Some(d) = defaults.get(key) {
            for (b, d) in bits.iter_mut().zip(d) {
                if b.is_none() {
                    *b = *d;
                }
            }
        }
    }
    current
}

/// The ordered decisions of a session over named classes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Log {
    pub classes: Vec<String>,
    pub decisions: Vec<Decision>,
}

const LOG_HEADER: &str = "image,x,y,class,present";

impl Log {
    pub fn new(classes: Vec<String>) -> Log {
        Log {
            classes,
            decisions: Vec::new(),
        }
    }

    /// The latest decision per unit and class.
    pub fn current(&self) -> Bits {
        let mut map: Bits = HashMap::new();
        for d in &self.decisions {
            map.entry((d.image.clone(), d.x, d.y))
                .or_insert_with(|| vec![None; self.classes.len()])[d.class] = Some(d.present);
        }
        map
    }

    /// The log as CSV, one decision a line, oldest first.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(LOG_HEADER);
        s.push('\n');
        for d in &self.decisions {
            s.push_str(&format!(
                "{},{},{},{},{}\n",
                csv_field(&d.image),
                d.x,
                d.y,
                csv_field(&self.classes[d.class]),
                d.present as u8
            ));
        }
        s
    }

    /// Reads a log written by [`Log::to_csv`]; `path` names the file in
    /// errors, which give the line.
    pub fn parse(text: &str, classes: &[String], path: &Path) -> Result<Log> {
        let bad =
            |line: u64, why: String| Error::Input(format!("{} line {line}: {why}", path.display()));
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        let header = rdr
            .headers()
            .map_err(|e| bad(1, e.to_string()))?
            .iter()
            .collect::<Vec<_>>()
            .join(",");
        if header != LOG_HEADER {
            return Err(bad(
                1,
                format!("header `{header}`, expected `{LOG_HEADER}`"),
            ));
        }
        let mut log = Log::new(classes.to_vec());
        for (i, rec) in rdr.records().enumerate() {
            let line = i as u64 + 2;
            let rec = rec.map_err(|e| bad(line, e.to_string()))?;
            if rec.len() != 5 {
                return Err(bad(line, format!("{} fields, expected 5", rec.len())));
            }
            let num = |k: usize| {
                rec[k]
                    .parse::<u32>()
                    .map_err(|_| bad(line, format!("`{}` is not a pixel position", &rec[k])))
            };
            let class = classes.iter().position(|c| c == &rec[3]).ok_or_else(|| {
                bad(
                    line,
                    format!("class `{}` is not one of this session's", &rec[3]),
                )
            })?;
            let present = match &rec[4] {
                "1" => true,
                "0" => false,
                v => return Err(bad(line, format!("`{v}` is not 0 or 1"))),
            };
            log.decisions.push(Decision {
                image: rec[0].to_string(),
                x: num(1)?,
                y: num(2)?,
                class,
                present,
            });
        }
        Ok(log)
    }
}

/// What a coarser labelling of the same images already says about `cut`'s
/// units: a unit lying wholly inside a coarse unit decided absent for a
/// class is absent for it (an absent tile holds no object anywhere), so a
/// second, finer labelling asks only about the rest. Classes are matched
/// by name; a unit that `current` has already decided for a class is left
/// as it is, and nothing follows from a coarse "present".
pub fn implied_absent(
    images: &[ImageInfo],
    cut: Cut,
    classes: &[String],
    current: &Bits,
    coarse: &Log,
    coarse_cut: Cut,
) -> Result<Vec<Decision>> {
    let coarse_bits = coarse.current();
    // Each class of this session as the coarse labelling's, if it has it.
    let in_coarse: Vec<Option<usize>> = classes
        .iter()
        .map(|name| coarse.classes.iter().position(|c| c == name))
        .collect();
    let mut implied = Vec::new();
    for img in images {
        // An image the coarse labelling never decided on implies nothing
        // (and may even be smaller than its tiles).
        if !coarse_bits.keys().any(|(name, _, _)| *name == img.name) {
            continue;
        }
        let coarse_units = units(img, coarse_cut)?;
        // Per class, the coarse units decided absent for it.
        let absent: Vec<Vec<Unit>> = in_coarse
            .iter()
            .map(|k| {
                let Some(k) = *k else { return Vec::new() };
                coarse_units
                    .iter()
                    .filter(|c| {
                        coarse_bits
                            .get(&(img.name.clone(), c.x, c.y))
                            .is_some_and(|b| b[k] == Some(false))
                    })
                    .copied()
                    .collect()
            })
            .collect();
        for u in units(img, cut)? {
            let decided = current.get(&(img.name.clone(), u.x, u.y));
            for (class, absent) in absent.iter().enumerate() {
                let open = decided.is_none_or(|b| b[class].is_none());
                if open && absent.iter().any(|c| c.contains(&u)) {
                    implied.push(Decision {
                        image: img.name.clone(),
                        x: u.x,
                        y: u.y,
                        class,
                        present: false,
                    });
                }
            }
        }
    }
    Ok(implied)
}

/// One decision as the page shows it: `1` present, `0` absent, `.` none.
pub fn mark(b: Option<bool>) -> char {
    match b {
        Some(true) => '1',
        Some(false) => '0',
        None => '.',
    }
}

/// Every unit's decisions in `current` as the page shows them, per image
/// then unit: one [`mark`] per class.
pub fn marks(
    current: &Bits,
    images: &[ImageInfo],
    cut: Cut,
    classes: usize,
) -> Result<Vec<Vec<String>>> {
    images
        .iter()
        .map(|img| {
            Ok(units(img, cut)?
                .iter()
                .map(|u| {
                    let bits = current.get(&(img.name.clone(), u.x, u.y));
                    (0..classes)
                        .map(|c| mark(bits.and_then(|b| b[c])))
                        .collect()
                })
                .collect())
        })
        .collect()
}

/// The file a tile's pixels are written to, relative to the output folder.
pub fn tile_file(image: &str, unit: &Unit) -> String {
    format!("tiles/{image}_x{:04}_y{:04}.png", unit.x, unit.y)
}

/// The trainer's `labels.csv` (docs/data.md, the generic layout): one row
/// per unit of `rows` whose every class is decided, in folder then row
/// order. Tiles point at their files under `tiles/`; whole images at
/// `image_path(name)`.
pub fn labels_csv(
    classes: &[String],
    rows: &Bits,
    images: &[ImageInfo],
    cut: Cut,
    image_path: impl Fn(&ImageInfo) -> String,
) -> Result<String> {
    let current = rows;
    let mut s = String::from("image");
    for c in classes {
        s.push(',');
        s.push_str(&csv_field(c));
    }
    s.push('\n');
    for img in images {
        for u in units(img, cut)? {
            let Some(bits) = current.get(&(img.name.clone(), u.x, u.y)) else {
                continue;
            };
            if bits.iter().any(Option::is_none) {
                continue;
            }
            let path = match cut {
                Cut::Tile(_) => tile_file(&img.name, &u),
                Cut::Whole => image_path(img),
            };
            s.push_str(&csv_field(&path));
            for b in bits {
                s.push_str(if *b == Some(true) { ",1" } else { ",0" });
            }
            s.push('\n');
        }
    }
    Ok(s)
}

/// Quotes a CSV field when it needs it (file names with commas or quotes).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(name: &str, w: u32, h: u32) -> ImageInfo {
        ImageInfo {
            name: name.into(),
            path: PathBuf::from(name),
            width: w,
            height: h,
        }
    }

    #[test]
    fn tiles_cover_the_image_with_a_flush_last_row_and_column() {
        let u = units(&img("a.png", 100, 64), Cut::Tile(40)).unwrap();
        let corners: Vec<(u32, u32)> = u.iter().map(|u| (u.x, u.y)).collect();
        assert_eq!(
            corners,
            vec![(0, 0), (40, 0), (60, 0), (0, 24), (40, 24), (60, 24)]
        );
        assert!(u.iter().all(|u| u.width == 40 && u.height == 40));
        assert_eq!(units(&img("a.png", 100, 64), Cut::Whole).unwrap().len(), 1);
    }

    #[test]
    fn a_tile_larger_than_an_image_names_the_image() {
        let e = units(&img("small.tif", 300, 200), Cut::Tile(256))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("small.tif") && e.contains("300×200") && e.contains("200 px"),
            "{e}"
        );
        let e = units(&img("dot.png", 1, 1), Cut::Tile(256))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--tile whole") && !e.contains("at most 1 px"),
            "{e}"
        );
        assert!(Cut::parse("16").is_err());
        assert!(Cut::parse("big").is_err());
        assert_eq!(Cut::parse("WHOLE").unwrap(), Cut::Whole);
    }

    #[test]
    fn latest_decision_wins_and_only_complete_units_are_rows() {
        let images = [img("b,1.png", 64, 32), img("a.png", 32, 32)];
        let mut log = Log::new(vec!["egg".into(), "worm".into()]);
        let d = |image: &str, x, class, present| Decision {
            image: image.into(),
            x,
            y: 0,
            class,
            present,
        };
        log.decisions = vec![
            d("b,1.png", 32, 0, true),
            d("b,1.png", 32, 1, false),
            d("b,1.png", 0, 0, true),
            d("a.png", 0, 0, false),
            d("a.png", 0, 1, true),
            d("b,1.png", 32, 0, false),
        ];
        let csv = labels_csv(
            &log.classes,
            &log.current(),
            &images,
            Cut::Tile(32),
            |_| unreachable!(),
        )
        .unwrap();
        assert_eq!(
            csv,
            "image,egg,worm\n\"tiles/b,1.png_x0032_y0000.png\",0,0\ntiles/a.png_x0000_y0000.png,0,1\n"
        );
        let whole = labels_csv(
            &log.classes,
            &log.current(),
            &images[1..],
            Cut::Whole,
            |i| format!("../{}", i.name),
        )
        .unwrap();
        assert_eq!(whole, "image,egg,worm\n../a.png,0,1\n");
        // A unit with one class decided is a row once the others have defaults.
        let mut defaults = Bits::new();
        defaults.insert(("b,1.png".into(), 0, 0), vec![Some(false), Some(true)]);
        let rows = filled(log.current(), &defaults);
        let csv = labels_csv(
            &log.classes,
            &rows,
            &images[..1],
            Cut::Tile(32),
            |_| unreachable!(),
        )
        .unwrap();
        assert_eq!(
            csv,
            "image,egg,worm\n\"tiles/b,1.png_x0000_y0000.png\",1,1\n\"tiles/b,1.png_x0032_y0000.png\",0,0\n"
        );
        let back = Log::parse(&log.to_csv(), &log.classes, Path::new("d.csv")).unwrap();
        assert_eq!(back, log);
    }

    #[test]
    fn marks_show_each_unit_and_class_in_row_order() {
        let images = [img("a.png", 64, 32)];
        let mut log = Log::new(vec!["egg".into(), "worm".into()]);
        log.decisions = vec![
            Decision {
                image: "a.png".into(),
                x: 32,
                y: 0,
                class: 1,
                present: true,
            },
            Decision {
                image: "a.png".into(),
                x: 0,
                y: 0,
                class: 0,
                present: false,
            },
        ];
        let m = marks(&log.current(), &images, Cut::Tile(32), 2).unwrap();
        assert_eq!(m, vec![vec!["0.".to_string(), ".1".to_string()]]);
        assert_eq!(mark(None), '.');
    }

    #[test]
    fn a_coarse_absent_tile_makes_the_finer_tiles_inside_it_absent() {
        // 96×64 at 64 px: coarse tiles at x 0 and 32 (flush), one row; at
        // 32 px the fine tiles are x 0, 32, 64 on rows y 0 and 32.
        let images = [img("a.png", 96, 64), img("b.png", 96, 64)];
        let mut coarse = Log::new(vec!["worm".into(), "egg".into()]);
        let d = |image: &str, x, class, present| Decision {
            image: image.into(),
            x,
            y: 0,
            class,
            present,
        };
        coarse.decisions = vec![
            d("a.png", 0, 1, false), // egg absent in x 0..64
            d("a.png", 32, 1, true), // egg present in x 32..96: says nothing
            d("a.png", 32, 0, false),
            d("b.png", 0, 1, true),
            d("b.png", 0, 1, false), // the latest decision counts
        ];
        let classes = vec!["egg".to_string()];
        let mut fine = Log::new(classes.clone());
        fine.decisions.push(Decision {
            image: "a.png".into(),
            x: 0,
            y: 32,
            class: 0,
            present: true,
        });
        let implied = implied_absent(
            &images,
            Cut::Tile(32),
            &classes,
            &fine.current(),
            &coarse,
            Cut::Tile(64),
        )
        .unwrap();
        let got: Vec<(&str, u32, u32, usize, bool)> = implied
            .iter()
            .map(|d| (d.image.as_str(), d.x, d.y, d.class, d.present))
            .collect();
        // a.png (0, 32) was decided by hand and stays; the x 64 tiles lie
        // only in the present coarse tile; worm is not this session's.
        assert_eq!(
            got,
            vec![
                ("a.png", 0, 0, 0, false),
                ("a.png", 32, 0, 0, false),
                ("a.png", 32, 32, 0, false),
                ("b.png", 0, 0, 0, false),
                ("b.png", 32, 0, 0, false),
                ("b.png", 0, 32, 0, false),
                ("b.png", 32, 32, 0, false),
            ]
        );
        // A whole image decided absent makes every tile of it absent.
        let mut whole = Log::new(classes.clone());
        whole.decisions.push(d("b.png", 0, 0, false));
        let implied = implied_absent(
            &images,
            Cut::Tile(32),
            &classes,
            &Bits::new(),
            &whole,
            Cut::Whole,
        )
        .unwrap();
        assert_eq!(implied.len(), 6);
        assert!(implied.iter().all(|d| d.image == "b.png" && !d.present));
    }

    #[test]
    fn a_bad_log_line_is_named() {
        let classes = vec!["egg".to_string()];
        let e = Log::parse(
            "image,x,y,class,present\na.png,0,0,egg,1\na.png,0,0,worm,1\n",
            &classes,
            Path::new("decisions.csv"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("decisions.csv line 3") && e.contains("worm"),
            "{e}"
        );
        let e = Log::parse("x\n", &classes, Path::new("d.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("header"), "{e}");
    }
}
