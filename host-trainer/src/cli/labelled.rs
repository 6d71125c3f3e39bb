//! `labelled`: a folder labelled with `nemascope-label` (its `labels.csv`
//! and tiles, image-level bits only) → teacher → student → signed bundle,
//! one stage after another, each resumed or skipped when already done.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{export, load_config, train, ConfigArgs};
use crate::config::Config;
use crate::distill::DistillOptions;
use crate::train::{State, STATE_FILE};

/// What `labelled` does, from the command line.
pub struct Labelled<'a> {
    pub folder: &'a Path,
    /// A review's corrections (`nemascope-label review --out`), on top.
    pub corrections: Option<&'a Path>,
    /// The same images labelled at half the tile (`data.cells`).
    pub cells: Option<&'a Path>,
    pub config: &'a ConfigArgs,
    pub student: &'a DistillOptions,
    pub key: &'a Path,
    pub out: &'a Path,
    pub precision: &'a str,
    /// Export the teacher itself; no student is distilled.
    pub ship_teacher: bool,
    /// Teachers trained, from `train.seed` on: the one whose labelled
    /// cells prove the fewest count errors is kept.
    pub seeds: usize,
}

/// The training config for a labelled folder: its `labels.csv` as a
/// generic dataset, every image whole at the folder's median size (the
/// tile size the page cut, over `data.bin`), labels per image
/// (`data.crop = 0`); the user's `--config`/`--set` on top.
pub fn config_for(folder: &Path, user: &ConfigArgs) -> Result<Config> {
    let ds = nemascope_core::dataset::generic::read(folder)
        .with_context(|| format!("reading the labels of {}", folder.display()))?;
    if ds.samples.is_empty() {
        bail!(
            "{} has no labelled tiles yet: label some with nemascope-label first",
            folder.display()
        );
    }
    for (c, name) in ds.classes.iter().enumerate() {
        let present = ds.samples.iter().filter(|s| s.present[c]).count();
        if present == 0 || present == ds.samples.len() {
            bail!(
                "class `{name}`: {present} of {} labelled tiles are marked present; weak training needs tiles with and without it",
                ds.samples.len()
            );
        }
    }
    let mut sizes = Vec::with_capacity(ds.samples.len());
    for s in &ds.samples {
        sizes.push(
            image::image_dimensions(&s.image)
                .with_context(|| format!("reading {}", s.image.display()))?,
        );
    }
    let median = |mut v: Vec<u32>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (w, h) = (
        median(sizes.iter().map(|s| s.0).collect()),
        median(sizes.iter().map(|s| s.1).collect()),
    );
    let base = load_config(user)?;
    let multiple = 1u32 << base.model.depth;
    // The working size is that of the images after `data.bin`.
    let bin = base.data.bin.max(1) as u32;
    let round = |v: u32| (v / bin).div_ceil(multiple).max(1) * multiple;
    let root = toml_text(folder);
    let mut set = vec![
        "data.kind=\"generic\"".to_string(),
        format!("data.root=\"{root}\""),
        format!("data.width={}", round(w)),
        format!("data.height={}", round(h)),
        "data.crop=0".to_string(),
    ];
    set.extend(user.set.iter().cloned());
    load_config(&ConfigArgs {
        config: user.config.clone(),
        set,
    })
}

/// Writes `out/labels.csv`: the labels of `folder` with the review's
/// `corrections` on top (`generic::merge`), every path absolute, and
/// `out/reviewed.txt`, the images the review marked (drawn more often,
/// `data.reviewed_repeat`); neither folder is changed. Returns the list's path.
fn with_corrections(folder: &Path, corrections: &Path, out: &Path) -> Result<PathBuf> {
    use nemascope_core::dataset::generic;
    let read = |f: &Path| {
        generic::read(f).with_context(|| format!("reading the labels of {}", f.display()))
    };
    let (base, fix) = (read(folder)?, read(corrections)?);
    let size = |s: &nemascope_core::dataset::Sample| {
        image::image_dimensions(&s.image).with_context(|| format!("reading {}", s.image.display()))
    };
    if let (Some(b), Some(c)) = (base.samples.first(), fix.samples.first()) {
        let (bs, cs) = (size(b)?, size(c)?);
        if bs != cs {
            bail!(
                "the corrections in {} are {}×{} px, the labels in {} {}×{} px: review with the labels' tile size (--labels)",
                corrections.display(), cs.0, cs.1, folder.display(), bs.0, bs.1
            );
        }
    }
    let (mut merged, stats) = generic::merge(&base, &fix)?;
    for s in &mut merged.samples {
        s.image = std::path::absolute(&s.image)
            .with_context(|| format!("resolving {}", s.image.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    generic::write(out, &merged)?;
    let reviewed = std::path::absolute(out.join("reviewed.txt"))
        .with_context(|| format!("resolving {}", out.display()))?;
    let names: String = fix
        .samples
        .iter()
        .filter_map(|s| s.image.file_name())
        .map(|n| format!("{}\n", n.to_string_lossy()))
        .collect();
    nemascope_core::files::write_atomic(&reviewed, names.as_bytes())?;
    eprintln!(
        "corrections from {}: {} confirm a label, {} change one, {} are new tiles ({} rows in {})",
        corrections.display(),
        stats.confirmed,
        stats.changed,
        stats.added,
        merged.samples.len(),
        out.join(generic::LABELS).display()
    );
    Ok(reviewed)
}

/// A path as the inside of a TOML basic string.
fn toml_text(p: &Path) -> String {
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

fn done(run: &Path) -> bool {
    State::load(run).map(|s| s.done).unwrap_or(false)
}

/// Where teacher `k` (0-based) of a `labelled` run is trained.
fn teacher_dir(out: &Path, k: usize) -> PathBuf {
    match k {
        0 => out.join("teacher"),
        _ => out.join(format!("teacher-{}", k + 1)),
    }
}

/// The first of the fewest: which teacher `labelled --seeds` keeps, from
/// each one's count errors per labelled cell.
fn fewest(errors: &[f64]) -> Option<usize> {
    (0..errors.len()).min_by(|&a, &b| errors[a].total_cmp(&errors[b]))
}

/// Runs the three stages into `out/teacher` (and `out/teacher-2`, … with
/// `seeds`), `out/student`, `out/bundle`; the bundle is the student's, or
/// the teacher's where the student lost a class
/// ([`crate::distill::lost_class`]) or `ship_teacher` asks for it.
pub fn labelled(a: Labelled) -> Result<()> {
    let (student, bundle): (PathBuf, PathBuf) = (a.out.join("student"), a.out.join("bundle"));
    if bundle.exists() {
        bail!(
            "{} already holds a bundle; choose another --out",
            bundle.display()
        );
    }
    if a.seeds == 0 {
        bail!("--seeds 0: at least one teacher must be trained");
    }
    let start = Instant::now();
    let stage = |n: usize, what: &str| {
        eprintln!(
            "[{n}/3] {what} ({:.0} min so far)",
            start.elapsed().as_secs_f64() / 60.0
        )
    };
    let teachers: Vec<PathBuf> = (0..a.seeds).map(|k| teacher_dir(a.out, k)).collect();
    // The folder's config, built once (a review's labels are merged then).
    let mut cfg: Option<Config> = None;
    for (k, teacher) in teachers.iter().enumerate() {
        let which = match a.seeds {
            1 => "the teacher".to_string(),
            n => format!("teacher {} of {n}", k + 1),
        };
        if done(teacher) {
            stage(1, &format!("{which} already trained"));
        } else if teacher.join(STATE_FILE).exists() {
            stage(1, &format!("resuming the training of {which}"));
            train::train(teacher, None, true)?;
        } else {
            let base = match cfg.take() {
                Some(c) => c,
                None => {
                    let mut user = a.config.clone();
                    if let Some(cells) = a.cells {
                        user.set
                            .insert(0, format!("data.cells=\"{}\"", toml_text(cells)));
                    }
                    match a.corrections {
                        Some(c) => {
                            let reviewed = with_corrections(a.folder, c, a.out)?;
                            user.set
                                .insert(0, format!("data.reviewed=\"{}\"", toml_text(&reviewed)));
                            config_for(a.out, &user)?
                        }
                        None => config_for(a.folder, &user)?,
                    }
                }
            };
            let mut c = base.clone();
            c.train.seed = base.train.seed + k as u64;
            cfg = Some(base);
            stage(
                1,
                &format!(
                    "training {which} from the image-level labels (seed {})",
                    c.train.seed
                ),
            );
            train::train(teacher, Some(c), false)?;
        }
    }
    let name = a
        .folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let (teacher, notes) = choose_teacher(&teachers, a.precision, &bundle, |what| stage(1, what))?;
    let shipped = if a.ship_teacher {
        stage(2, "no student: the teacher is shipped (--ship-teacher)");
        teacher
    } else {
        if done(&student) {
            stage(2, "student already distilled");
        } else {
            if student.exists() {
                std::fs::remove_dir_all(&student)
                    .with_context(|| format!("clearing an unfinished {}", student.display()))?;
            }
            stage(2, "distilling the student");
            train::distill(teacher, &student, a.student)?;
        }
        &student
    };
    stage(3, "exporting the signed bundle");
    let mut args = export::Args::defaults(
        a.precision,
        name,
        (!a.ship_teacher).then_some(teacher.as_path()),
    );
    args.notes = notes;
    export::export(shipped, a.key, &bundle, args)?;
    eprintln!(
        "bundle {} in {:.0} min: count with `nemascope-edge count --model {} IMAGES…`",
        bundle.display(),
        start.elapsed().as_secs_f64() / 60.0,
        bundle.display()
    );
    Ok(())
}

/// The teacher whose labelled cells prove the fewest count errors, each
/// class at the threshold the labels choose for it, as its bundle would
/// count ([`crate::export::label_errors`]), and the manifest's note of
/// the choice; the only one, unmeasured, when there is one.
fn choose_teacher<'t>(
    teachers: &'t [PathBuf],
    precision: &str,
    bundle: &Path,
    stage: impl Fn(&str),
) -> Result<(&'t PathBuf, Vec<(String, String)>)> {
    if teachers.len() < 2 {
        return Ok((&teachers[0], Vec::new()));
    }
    stage(&format!(
        "choosing among {} teachers by the count errors their labelled cells prove",
        teachers.len()
    ));
    let opts = export::Args::defaults(precision, None, None).options(bundle)?;
    let mut errors = Vec::new();
    let mut lines = Vec::new();
    for t in teachers {
        let seed = Config::load(&t.join(crate::train::CONFIG_FILE))?.train.seed;
        let chosen = crate::export::label_errors(t, &opts)
            .with_context(|| format!("measuring {} on its labels", t.display()))?;
        let e = chosen.iter().map(|c| c.error).sum::<f64>() / chosen.len().max(1) as f64;
        let per_class: Vec<String> = chosen
            .iter()
            .map(|c| format!("{} {:.3} at {:.2}", c.class, c.error, c.threshold))
            .collect();
        let line = format!("seed {seed}: {e:.3} ({})", per_class.join(", "));
        eprintln!("  {}: {line}", t.display());
        errors.push(e);
        lines.push(line);
    }
    let k = fewest(&errors).unwrap_or(0);
    eprintln!("  kept {}", teachers[k].display());
    let note = format!(
        "teacher {} of {}, the fewest count errors per labelled cell (mean over classes, \
         each at the threshold its labels chose): {}",
        k + 1,
        teachers.len(),
        lines.join("; ")
    );
    Ok((&teachers[k], vec![("teacher_chosen".into(), note)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_teacher_with_the_fewest_proven_errors_is_kept_the_first_on_a_tie() {
        assert_eq!(fewest(&[0.167, 0.107, 0.123]), Some(1));
        assert_eq!(fewest(&[0.167, 0.167]), Some(0));
        assert_eq!(fewest(&[]), None);
        assert_eq!(teacher_dir(Path::new("o"), 0), Path::new("o/teacher"));
        assert_eq!(teacher_dir(Path::new("o"), 2), Path::new("o/teacher-3"));
    }
}
