//! `train`, `sweep` and `distill`: runs that write a run folder.

use std::path::Path;

use anyhow::Result;

use crate::config::{pooling_name, Config};
use crate::train::{self, Trainer};
use crate::{distill as distil, eval, report};

/// Trains (or resumes) the run in `out`, then writes its report.
pub fn train(out: &Path, cfg: Option<Config>, resume: bool) -> Result<()> {
    let mut t = Trainer::open(out, cfg, resume)?;
    for b in &t.data.skipped {
        eprintln!("skipped: {b}");
    }
    eprintln!(
        "{} images ({} training, {} validation), classes {:?}, {} parameters",
        t.data.items.len(),
        t.data.train.len(),
        t.data.val.len(),
        t.data.classes,
        t.vs.trainable_variables()
            .iter()
            .map(|v| v.numel())
            .sum::<usize>()
    );
    t.run()?;
    overlays(&t)?;
    report::write(
        out,
        &t.state,
        &format!("nemascope-train run {}", out.display()),
    )?;
    print!("{}", report::markdown(&t.state, "results"));
    eprintln!("results, curves and overlays in {}", out.display());
    Ok(())
}

/// The validation images with the first class's mask outlined.
fn overlays(t: &Trainer) -> Result<()> {
    let dir = t.dir.join("overlays");
    std::fs::create_dir_all(&dir)?;
    for &i in &t.data.val {
        let it = &t.data.items[i];
        let maps = eval::predict_maps(&t.net, &it.input, t.device)?;
        let m = eval::native_mask(&maps[0], it.native_size, t.cfg.vote.threshold)?;
        let img = nemascope_core::imageio::stretched(&it.raw);
        report::overlay(
            &img,
            &m,
            it.native.as_ref().map(|n| &n[0]),
            &dir.join(format!("{}.png", it.id)),
        )?;
    }
    Ok(())
}

/// One run per pooling under `out`, then the table of them.
pub fn sweep(base: &Config, out: &Path, poolings: &[String]) -> Result<()> {
    let mut table = String::from(
        "| pooling | class | AUC (stage 1) | image accuracy | raw maps | voting | refinement 1 | refinement 2 |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut all = serde_json::Map::new();
    for p in poolings {
        let mut cfg = base.clone();
        cfg.pooling = Config::pooling_section(p)?;
        // One pooling for every class: a class's own r would hide the sweep.
        for c in cfg.class.values_mut() {
            c.r = None;
        }
        cfg.train.supervised = false;
        let dir = out.join(p);
        let resume = dir.join(train::STATE_FILE).exists();
        let mut t = Trainer::open(&dir, (!resume).then(|| cfg.clone()), resume)?;
        t.classical = false;
        if !t.state.done {
            eprintln!("sweep: {}", pooling_name(cfg.pooling()?));
            t.run()?;
            report::write(&dir, &t.state, p)?;
        }
        table.push_str(&report::sweep_row(
            &pooling_name(cfg.pooling()?),
            &t.state.classes,
            &t.state.results,
        ));
        all.insert(p.clone(), serde_json::to_value(&t.state.results)?);
        std::fs::write(out.join("sweep.md"), &table)?;
        std::fs::write(out.join("sweep.json"), serde_json::to_vec_pretty(&all)?)?;
    }
    print!("{table}");
    Ok(())
}

/// Distils the run into a smaller student in `out` and says what it scores.
pub fn distill(run: &Path, out: &Path, student: &distil::DistillOptions) -> Result<()> {
    let d = distil::distill(run, out, student)?;
    for (who, (p, m)) in [("teacher", d.teacher), ("student", d.student)] {
        println!(
            "{who}: {p} parameters, {:.3} G multiply-adds per 384x512 frame",
            m as f64 / 1e9
        );
    }
    let classes = train::State::load(out)?.classes;
    println!(
        "student kept: seed {}, against the teacher's maps (Dice, validation images): {}",
        d.seed,
        distil::named(&classes, &d.kept)
    );
    let r = d.result;
    for (c, d) in r.dice.iter().enumerate() {
        println!(
            "student class {c}: validation Dice {}",
            d.map_or("–".into(), |d| format!("{d:.4}"))
        );
    }
    if let Some(m) = r.count_mae {
        println!("student count error {m:.2} per image");
    }
    Ok(())
}
