//! The frozen synthetic benchmark (`nemascope_core::synth::BENCHMARK_*`):
//! a run's model, with and without voting, and the classical floor, scored
//! per class on the light-debris half, the dense-debris half and all of it.
//! No run trains on these frames or chooses anything by them.

use std::path::Path;

use nemascope_core::metrics::dice;
use nemascope_core::{Error, Mask, Result};
use serde::Serialize;

use crate::data::{self, Data};
use crate::eval::{self, SegScores};
use crate::train;

/// One method on one half.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub method: String,
    /// `light`, `dense` or `all`.
    pub half: String,
    pub frames: usize,
    pub scores: SegScores,
    /// Dice of worm ∪ egg (the paper's "nematode"), images holding either.
    pub nematode_dice: Option<f64>,
}

/// Mean Dice of the union of classes `union` over the images whose truth
/// holds any of them.
pub fn union_dice(
    data: &Data,
    items: &[usize],
    preds: &[Vec<Mask>],
    union: &[usize],
) -> Result<Option<f64>> {
    let (mut sum, mut n) = (0.0, 0usize);
    for (&i, pred) in items.iter().zip(preds) {
        let truth = data.items[i]
            .native
            .as_ref()
            .ok_or_else(|| Error::Invalid("benchmark frame without masks".into()))?;
        let merge = |ms: &[Mask]| Mask::union(&union.iter().map(|&c| &ms[c]).collect::<Vec<_>>());
        let (Some(p), Some(t)) = (merge(pred), merge(truth)) else {
            continue;
        };
        if t.count() > 0 {
            sum += dice(&p, &t)?;
            n += 1;
        }
    }
    Ok((n > 0).then(|| sum / n as f64))
}

/// Scores `run` (its final model, or the phase `weights`) on the benchmark
/// at the run's working size; writes `benchmark.json` and `benchmark.md`
/// into the run folder and returns the rows.
pub fn run(run: &Path, weights: Option<&str>) -> Result<Vec<Row>> {
    let (cfg, state, _vs, net) = train::load_model(run, weights)?;
    let data = data::with_benchmark(&cfg)?;
    let device = train::device(&cfg)?;
    let counters = eval::fit_counters(&data, &data.train);
    let vote = cfg.vote_params();
    let (mut raw, mut voted) = (Vec::new(), Vec::new());
    for &i in &data.val {
        let it = &data.items[i];
        let maps = eval::predict_maps(&net, &it.input, device)?;
        raw.push(eval::native_masks(it, &maps, vote.threshold)?);
        voted.push(eval::voted_native(it, &maps, &vote, None)?);
    }
    let (ff, classical) = eval::classical(&data, &data.train, &data.val)?;
    let union: Vec<usize> = ["worm", "egg"]
        .iter()
        .filter_map(|n| state.classes.iter().position(|c| c == n))
        .collect();
    let mut rows = Vec::new();
    let methods = [
        (
            format!("classical floor (ratio {:.3}, worms only)", ff.dark_ratio),
            classical,
        ),
        ("model".to_string(), raw),
        ("model + voting".to_string(), voted),
    ];
    for (method, preds) in &methods {
        for (half, parity) in [("light", Some(0)), ("dense", Some(1)), ("all", None)] {
            // Frames alternate light (even) and dense (odd).
            let pick: Vec<usize> = (0..data.val.len())
                .filter(|k| parity.is_none_or(|p| k % 2 == p))
                .collect();
            let items: Vec<usize> = pick.iter().map(|&k| data.val[k]).collect();
            let preds: Vec<Vec<Mask>> = pick.iter().map(|&k| preds[k].clone()).collect();
            rows.push(Row {
                method: method.clone(),
                half: half.into(),
                frames: items.len(),
                scores: eval::score(&data, &items, &preds, &counters)?,
                nematode_dice: if union.len() == 2 {
                    union_dice(&data, &items, &preds, &union)?
                } else {
                    None
                },
            });
        }
    }
    let json = serde_json::to_vec_pretty(&rows).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(run.join("benchmark.json"), json).map_err(|e| Error::io(run, e))?;
    std::fs::write(run.join("benchmark.md"), markdown(&state.classes, &rows))
        .map_err(|e| Error::io(run, e))?;
    Ok(rows)
}

/// The rows as a Markdown table, one line per method, half and class.
pub fn markdown(classes: &[String], rows: &[Row]) -> String {
    let f = |v: Option<f64>, d: usize| v.map_or("–".into(), |v| format!("{v:.d$}"));
    let mut s = String::from(
        "| method | half | class | Dice | count error / frame | found / true | nematode Dice |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        for (c, name) in classes.iter().enumerate() {
            let ft = crate::report::found_true(&r.scores.found, &r.scores.truth, c);
            s.push_str(&format!(
                "| {} | {} ({}) | {name} | {} | {} | {ft} | {} |\n",
                r.method,
                r.half,
                r.frames,
                f(r.scores.dice.get(c).copied().flatten(), 3),
                f(r.scores.count_mae_per_class.get(c).copied().flatten(), 2),
                if c == 0 {
                    f(r.nematode_dice, 3)
                } else {
                    String::new()
                },
            ));
        }
    }
    s
}
