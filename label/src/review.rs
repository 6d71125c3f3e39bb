//! Review and correct: the results of `nemascope-edge count` (its `--json`
//! and `--overlays`) beside the frames, the labels the model was trained
//! from, and a unit's reports in the lab database; what the technician
//! marks wrong is recorded as image-level labels in a folder of its own
//! (a [`Store`]), which `nemascope-train labelled --corrections` lays over
//! the original labels. Nothing the review reads is ever written.

use std::path::{Path, PathBuf};

use nemascope_reports::counts::CountRun;
use serde_json::{json, Value};

use crate::session::{marks, units, Bits, Cut, Unit};
use crate::store::{read_log, read_settings, Options, Store};
use crate::{Error, Result};

/// What `nemascope-label review` is given.
#[derive(Debug, Clone, Default)]
pub struct ReviewOptions {
    /// `count --json` output.
    pub counts: PathBuf,
    /// Where the counted images are, by file name [default: the paths in
    /// the JSON, from the current folder or the JSON's].
    pub images: Option<PathBuf>,
    /// `count --overlays` output (`<stem>.png`).
    pub overlays: Option<PathBuf>,
    /// The labelling folder the model was trained from: its tile size is
    /// the corrections', and its labels are shown.
    pub labels: Option<PathBuf>,
    /// The lab database (`nemascope-edge listen --out lab.sqlite`).
    pub db: Option<PathBuf>,
    /// Where the corrections go (never the labels' folder).
    pub out: PathBuf,
    /// Tile size when there are no labels [default: whole images].
    pub cut: Option<Cut>,
}

/// An open review: the count run in the order of the store's images.
pub struct Review {
    pub run: CountRun,
    /// Per image: its overlay file, if there is one.
    pub overlays: Vec<Option<PathBuf>>,
    /// The labels the model was trained from, per image and unit
    /// (`"1"`, `"0"`, `"."` per class), when given.
    pub labels: Option<Vec<Vec<String>>>,
    /// The lab database's reports, as shown.
    pub db: Option<Value>,
    /// What the training labels alone say of the counts ([`LabelChecks`]).
    pub checks: Option<LabelChecks>,
}

/// How far a model's counts can be trusted, from a lab's own labels and
/// no masks: per class, the tiles labelled absent where something was
/// counted (debris counted), and the tiles labelled present where nothing
/// was (objects missed); per image and over the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelChecks {
    /// Per image, per class.
    pub images: Vec<Vec<TileCheck>>,
    /// Over every image, per class.
    pub total: Vec<TileCheck>,
}

/// One class's tiles, as labelled and as counted.
pub use nemascope_core::counting::LabelCheck as TileCheck;

impl LabelChecks {
    /// As the page reads it.
    pub fn to_json(&self) -> Value {
        let one = |t: &TileCheck| {
            json!({ "absent": t.absent, "counted_in_absent": t.counted_in_absent,
                    "present": t.present, "nothing_in_present": t.nothing_in_present })
        };
        let row = |r: &[TileCheck]| r.iter().map(one).collect::<Vec<_>>();
        json!({
            "images": self.images.iter().map(|r| row(r)).collect::<Vec<_>>(),
            "total": row(&self.total),
        })
    }
}

/// The model's objects of `class` whose centre lies in `u` (the review
/// page draws the same count on each tile).
fn counted_in(objects: &[nemascope_reports::counts::ObjectReport], class: &str, u: &Unit) -> usize {
    objects
        .iter()
        .filter(|o| {
            o.class == class
                && o.x >= u.x as f32
                && o.x < (u.x + u.width) as f32
                && o.y >= u.y as f32
                && o.y < (u.y + u.height) as f32
        })
        .map(|o| o.count)
        .sum()
}

/// [`LabelChecks`] of a count run against the training labels (`marks`:
/// per image, per unit, one `1`/`0`/`.` per class).
pub fn label_checks(store: &Store, run: &CountRun, marks: &[Vec<String>]) -> Result<LabelChecks> {
    let cut = store.cut().unwrap_or(Cut::Whole);
    let classes = &store.settings.classes;
    let mut total = vec![TileCheck::default(); classes.len()];
    let mut images = Vec::new();
    for ((img, counted), img_marks) in store.images.iter().zip(&run.images).zip(marks) {
        let mut per = vec![TileCheck::default(); classes.len()];
        for (u, m) in units(img, cut)?.iter().zip(img_marks) {
            for (c, (name, label)) in classes.iter().zip(m.chars()).enumerate() {
                if label != '.' {
                    per[c].add(label == '1', counted_in(&counted.objects, name, u));
                }
            }
        }
        total.iter_mut().zip(&per).for_each(|(t, p)| t.merge(p));
        images.push(per);
    }
    Ok(LabelChecks { images, total })
}

/// Reads what the review shows and opens the corrections folder.
pub fn open(opts: &ReviewOptions) -> Result<(Store, Review)> {
    let text = nemascope_core::files::read_text(&opts.counts).map_err(|e| {
        Error::Input(format!(
            "cannot read the count results {} ({e})",
            opts.counts.display()
        ))
    })?;
    let run: CountRun = serde_json::from_str(&text).map_err(|e| {
        Error::Input(format!(
            "{} is not the --json of nemascope-edge count: {e}",
            opts.counts.display()
        ))
    })?;
    if run.images.is_empty() {
        return Err(Error::Input(format!(
            "{} holds no counted images",
            opts.counts.display()
        )));
    }
    let json_dir = opts.counts.parent().unwrap_or(Path::new("."));
    let paths = run
        .images
        .iter()
        .map(|i| find_image(&i.image, opts.images.as_deref(), json_dir))
        .collect::<Result<Vec<_>>>()?;
    let (classes, cut, labelled) = match &opts.labels {
        Some(dir) => {
            let s = read_settings(dir)?.ok_or_else(|| {
                Error::Input(format!(
                    "{} is not a labelling folder (no session.json)",
                    dir.display()
                ))
            })?;
            if s.classes != run.classes {
                return Err(Error::Input(format!(
                    "the labels in {} are for {}, the model counts {}",
                    dir.display(),
                    s.classes.join(","),
                    run.classes.join(",")
                )));
            }
            if same_folder(dir, &opts.out) {
                return Err(Error::Input(
                    "corrections go into a folder of their own, never into the labels' folder: give another --out".into(),
                ));
            }
            let log = read_log(dir, &s.classes)?;
            (s.classes, s.cut.or(opts.cut), Some(log.current()))
        }
        None => (run.classes.clone(), opts.cut, None),
    };
    let folder = paths[0].parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut store = Store::open(&Options {
        folder,
        out: Some(opts.out.clone()),
        classes,
        cut: Some(cut.unwrap_or(Cut::Whole)),
        images: paths,
        finer_of: None,
    })?;
    let defaults = defaults(&store, &run, labelled.as_ref())?;
    store.set_defaults(defaults)?;
    let labels = match (labelled, store.cut()) {
        (Some(current), Some(cut)) => Some(marks(
            &current,
            &store.images,
            cut,
            store.settings.classes.len(),
        )?),
        _ => None,
    };
    let overlays = store
        .images
        .iter()
        .map(|img| {
            let dir = opts.overlays.as_ref()?;
            let stem = Path::new(&img.name).file_stem()?;
            let p = dir.join(stem).with_extension("png");
            p.is_file().then_some(p)
        })
        .collect();
    let db = opts.db.as_deref().map(db_reports).transpose()?;
    let checks = labels
        .as_deref()
        .map(|l| label_checks(&store, &run, l))
        .transpose()?;
    Ok((
        store,
        Review {
            run,
            overlays,
            labels,
            db,
            checks,
        },
    ))
}

impl Review {
    /// What the page shows besides the corrections (the store's state).
    pub fn state(&self) -> Value {
        json!({
            "model": self.run.model,
            "classes": self.run.classes,
            "samples": self.run.samples,
            "images": self.run.images,
            "failed": self.run.failed,
            "overlays": self.overlays.iter().map(Option::is_some).collect::<Vec<_>>(),
            "labels": self.labels,
            "db": self.db,
            "fill": FILL_NOTE,
            "checks": self.checks.as_ref().map(LabelChecks::to_json),
        })
    }
}

/// What a class the technician did not mark on a marked tile is taken as,
/// so that a correction of one class of a multi-class model is a whole
/// training row: the tile's training label where it has one, else the
/// model's answer (something of the class counted in it: present).
fn defaults(store: &Store, run: &CountRun, labelled: Option<&Bits>) -> Result<Bits> {
    let cut = store.cut().unwrap_or(Cut::Whole);
    let classes = &store.settings.classes;
    let mut out = Bits::new();
    for (img, counted) in store.images.iter().zip(&run.images) {
        for u in units(img, cut)? {
            let key = (img.name.clone(), u.x, u.y);
            let label = labelled.and_then(|l| l.get(&key));
            let bits = classes
                .iter()
                .enumerate()
                .map(|(c, name)| {
                    label
                        .and_then(|b| b[c])
                        .or_else(|| Some(counted_in(&counted.objects, name, &u) > 0))
                })
                .collect();
            out.insert(key, bits);
        }
    }
    Ok(out)
}

/// How the page says unmarked classes are filled.
pub const FILL_NOTE: &str = "A marked tile is one training row: the classes you did not mark on it keep its training label, or where it has none, the model's answer (counted there: present).";

fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Finds a counted image: by file name in `images` when given, else at
/// its path from the current folder, else from the JSON's folder.
fn find_image(key: &str, images: Option<&Path>, json_dir: &Path) -> Result<PathBuf> {
    let p = Path::new(key);
    let tries: Vec<PathBuf> = match images {
        Some(dir) => vec![dir.join(p.file_name().unwrap_or(p.as_os_str()))],
        None => vec![p.to_path_buf(), json_dir.join(p)],
    };
    if let Some(found) = tries.iter().find(|t| t.is_file()) {
        return Ok(found.clone());
    }
    if let Some((t, why)) = tries.iter().find_map(|t| {
        nemascope_core::files::check_regular(t)
            .err()
            .map(|why| (t, why))
    }) {
        return Err(Error::Input(format!(
            "the counted image {} {why}",
            t.display()
        )));
    }
    Err(Error::Input(format!(
        "the counted image {key} is not at {}; say where the images are with --images DIR",
        tries
            .iter()
            .map(|t| t.display().to_string())
            .collect::<Vec<_>>()
            .join(" nor ")
    )))
}

/// The lab database as the page shows it: per unit and sample the totals,
/// and every report.
fn db_reports(path: &Path) -> Result<Value> {
    nemascope_core::files::check_regular(path)
        .map_err(|why| Error::Input(format!("the lab database {} {why}", path.display())))?;
    let reports = nemascope_reports::db::read(path, None)
        .map_err(|e| Error::Input(format!("the lab database: {e}")))?;
    let mut samples: Vec<Value> = Vec::new();
    for r in &reports {
        let s = &r.report;
        let found = samples
            .iter_mut()
            .find(|v| v["unit"] == r.unit.as_str() && v["sample"] == s.sample.as_str());
        let v = match found {
            Some(v) => v,
            None => {
                samples.push(json!({ "unit": r.unit, "sample": s.sample, "reports": 0,
                                      "warnings": 0, "counts": {} }));
                samples.last_mut().expect("just pushed")
            }
        };
        v["reports"] = json!(v["reports"].as_u64().unwrap_or(0) + 1);
        v["warnings"] = json!(v["warnings"].as_u64().unwrap_or(0) + u64::from(s.warnings));
        for c in &s.counts {
            let n = v["counts"][&c.class].as_u64().unwrap_or(0) + u64::from(c.count);
            v["counts"][&c.class] = json!(n);
        }
    }
    let rows: Vec<Value> = reports
        .iter()
        .map(|r| {
            let s = &r.report;
            json!({ "unit": r.unit, "seq": s.seq, "sample": s.sample, "time_ms": s.time_ms,
                    "counts": s.counts.iter().map(|c| json!([c.class, c.count])).collect::<Vec<_>>(),
                    "frame_ms": s.frame_ms, "warnings": s.warnings })
        })
        .collect();
    Ok(json!({ "path": path.display().to_string(), "samples": samples, "reports": rows }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nemascope_reports::counts::ImageReport;

    #[test]
    fn a_counted_image_that_is_a_fifo_is_named_as_one_not_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(std::process::Command::new("mkfifo")
            .arg(dir.path().join("a.png"))
            .status()
            .unwrap()
            .success());
        let e = find_image("a.png", Some(dir.path()), dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a FIFO") && !e.contains("is not at"), "{e}");
        let e = find_image("b.png", Some(dir.path()), dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not at"), "{e}");
    }

    fn run(image: &str) -> CountRun {
        CountRun {
            model: "m".into(),
            classes: vec!["egg".into()],
            um_per_px: 1.0,
            images: vec![ImageReport {
                image: image.into(),
                sample: "s".into(),
                counts: vec![0],
                objects: vec![],
                ms: 1.0,
            }],
            samples: vec![],
            failed: vec![],
        }
    }

    fn err(dir: &Path, json: &str, opts: ReviewOptions) -> String {
        let counts = dir.join("counts.json");
        std::fs::write(&counts, json).unwrap();
        open(&ReviewOptions {
            counts,
            out: dir.join("fix"),
            ..opts
        })
        .err()
        .unwrap()
        .to_string()
    }

    #[test]
    fn bad_count_results_and_missing_images_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = err(d, "{\"rows\": 1}", ReviewOptions::default());
        assert!(
            e.contains("is not the --json of nemascope-edge count"),
            "{e}"
        );
        let mut empty = run("x.png");
        empty.images.clear();
        let e = err(
            d,
            &serde_json::to_string(&empty).unwrap(),
            ReviewOptions::default(),
        );
        assert!(e.contains("holds no counted images"), "{e}");
        let one = serde_json::to_string(&run("gone/a.png")).unwrap();
        let e = err(d, &one, ReviewOptions::default());
        assert!(
            e.contains("gone/a.png") && e.contains("--images DIR"),
            "{e}"
        );
        // Found by name with --images; labels for another class refused.
        image::GrayImage::new(64, 64).save(d.join("a.png")).unwrap();
        let labels = d.join("labels");
        std::fs::create_dir_all(&labels).unwrap();
        std::fs::write(
            labels.join("session.json"),
            r#"{"classes":["cyst"],"cut":{"tile":32}}"#,
        )
        .unwrap();
        let e = err(
            d,
            &one,
            ReviewOptions {
                images: Some(d.to_path_buf()),
                labels: Some(labels),
                ..ReviewOptions::default()
            },
        );
        assert!(e.contains("are for cyst, the model counts egg"), "{e}");
    }

    /// Corrections of one class of a multi-class model become rows: the
    /// other classes from the training label, else the model's answer.
    #[test]
    fn one_class_marked_on_a_multi_class_model_is_a_training_row() {
        use nemascope_reports::counts::ObjectReport;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        image::GrayImage::new(64, 32).save(d.join("a.png")).unwrap();
        let obj = |class: &str, x| ObjectReport {
            class: class.into(),
            count: 1,
            area_um2: 1.0,
            length_um: 1.0,
            width_um: 1.0,
            x,
            y: 10.0,
            score: None,
        };
        let mut r = run(&d.join("a.png").display().to_string());
        r.classes = vec!["worm".into(), "egg".into(), "cyst".into()];
        r.images[0].counts = vec![1, 1, 0];
        r.images[0].objects = vec![obj("worm", 40.0), obj("egg", 5.0)];
        let counts = d.join("counts.json");
        std::fs::write(&counts, serde_json::to_string(&r).unwrap()).unwrap();
        // Training labels: the first tile labelled worm absent, egg present.
        let labels = d.join("labels");
        {
            let mut l = Store::open(&Options {
                folder: d.to_path_buf(),
                out: Some(labels.clone()),
                classes: r.classes.clone(),
                cut: Some(Cut::Tile(32)),
                images: vec![],
                finer_of: None,
            })
            .unwrap();
            l.decide(0, 0, 0, false).unwrap();
            l.decide(0, 0, 1, true).unwrap();
        }
        let out = d.join("fix");
        let (mut store, rv) = open(&ReviewOptions {
            counts,
            labels: Some(labels),
            out: out.clone(),
            ..ReviewOptions::default()
        })
        .unwrap();
        assert!(rv.state()["fill"]
            .as_str()
            .unwrap()
            .contains("training label"));
        // The labels' view of the counts: worm labelled absent on tile 0
        // (its worm is in tile 1), egg labelled present there and counted.
        let checks = rv.checks.as_ref().unwrap();
        // (At most one object per tile here, so objects = tiles.)
        let check = |absent, counted_in_absent, present, nothing_in_present| TileCheck {
            absent,
            counted_in_absent,
            objects_in_absent: counted_in_absent,
            present,
            nothing_in_present,
        };
        assert_eq!(
            checks.total,
            vec![check(1, 0, 0, 0), check(0, 0, 1, 0), check(0, 0, 0, 0)]
        );
        // Egg marked absent on both tiles.
        store.decide(0, 0, 1, false).unwrap();
        store.decide(0, 1, 1, false).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("labels.csv")).unwrap(),
            "image,worm,egg,cyst\n\
             tiles/a.png_x0000_y0000.png,0,0,0\n\
             tiles/a.png_x0032_y0000.png,1,0,0\n"
        );
        assert!(out.join("tiles/a.png_x0032_y0000.png").is_file());
        drop(store);
        // Reopened, the rows are the same (the table is rewritten at open).
        let (store, _) = open(&ReviewOptions {
            counts: d.join("counts.json"),
            out: out.clone(),
            cut: Some(Cut::Tile(32)),
            ..ReviewOptions::default()
        })
        .unwrap();
        assert_eq!(store.rows().len(), 2);
    }
}
