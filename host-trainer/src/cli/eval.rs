//! `eval` and `predict`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nemascope_core::imageio::{save_gray8, save_mask};
use nemascope_core::Mask;

use crate::eval;
use crate::train;

/// Scores on the frozen synthetic benchmark, as a table.
pub fn benchmark(run: &Path, weights: Option<&str>) -> Result<()> {
    let rows = crate::benchmark::run(run, weights)?;
    let state = train::State::load(run)?;
    print!("{}", crate::benchmark::markdown(&state.classes, &rows));
    Ok(())
}

/// How well `student` keeps `teacher`'s maps, per class.
pub fn agreement(teacher: &Path, student: &Path) -> Result<()> {
    let cfg = crate::config::Config::load(&teacher.join(train::CONFIG_FILE))?;
    let data = crate::data::load(&cfg)?;
    let kept = crate::distill::agreement_of(teacher, student, &data)?;
    let state = train::State::load(student)?;
    println!(
        "against the teacher's maps (Dice, validation images): {}",
        crate::distill::named(&state.classes, &kept)
    );
    Ok(())
}

/// Scores the validation (or every) image and writes `eval.json`.
pub fn eval(run: &Path, weights: Option<&str>, all: bool) -> Result<()> {
    let (cfg, state, _vs, net) = train::load_model(run, weights)?;
    let data = crate::data::load(&cfg)?;
    let items: Vec<usize> = if all {
        (0..data.items.len()).collect()
    } else {
        data.val.clone()
    };
    let device = train::device(&cfg)?;
    let mut preds = Vec::new();
    for &i in &items {
        let it = &data.items[i];
        let maps = eval::predict_maps(&net, &it.input, device)?;
        preds.push(eval::native_masks(it, &maps, cfg.vote.threshold)?);
    }
    let counters = eval::fit_counters(&data, &data.train);
    let s = eval::score(&data, &items, &preds, &counters)?;
    for (c, d) in state.classes.iter().zip(&s.dice) {
        println!(
            "{c}: mean Dice {} over {} images with objects",
            d.map_or("–".into(), |d| format!("{d:.4}")),
            s.per_image
                .iter()
                .filter(|r| r.first().copied().flatten().is_some())
                .count()
        );
    }
    if let Some(mae) = s.count_mae {
        println!("count error {mae:.2} per image");
        for (id, p, t) in &s.counts {
            println!("  {id}: {p} counted, {t} true");
        }
    }
    std::fs::write(run.join("eval.json"), serde_json::to_vec_pretty(&s)?)?;
    Ok(())
}

/// Masks (and maps) of any images.
pub fn predict(
    run: &Path,
    out: &Path,
    vote: bool,
    write_maps: bool,
    weights: Option<&str>,
    images: &[PathBuf],
) -> Result<()> {
    let (cfg, state, _vs, net) = train::load_model(run, weights)?;
    let device = train::device(&cfg)?;
    std::fs::create_dir_all(out)?;
    let (mut ok, mut failed) = (0, 0);
    for path in images {
        let res = (|| -> Result<()> {
            let it = crate::data::load_for_prediction(path, &cfg.data.working())?;
            let maps = eval::predict_maps(&net, &it.input, device)?;
            if write_maps {
                for (m, c) in maps.iter().zip(&state.classes) {
                    save_gray8(m, &out.join(format!("{}_{c}_map.png", it.id)))?;
                }
            }
            let masks: Vec<Mask> = if vote {
                eval::voted_native(&it, &maps, &cfg.vote_params(), None)?
            } else {
                eval::native_masks(&it, &maps, cfg.vote.threshold)?
            };
            let refs: Vec<&Mask> = masks.iter().collect();
            let any = Mask::union(&refs).context("no classes")?;
            let target = out.join(format!("{}.png", it.id));
            save_mask(&any, &target)?;
            Ok(())
        })();
        match res {
            Ok(()) => ok += 1,
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e:#}", path.display());
            }
        }
    }
    eprintln!("{ok} masks written to {}, {failed} failed", out.display());
    if failed > 0 {
        bail!("{failed} of {} images failed", images.len());
    }
    Ok(())
}
