//! How well the object verifier's measures could separate objects from
//! debris, on a synthetic run's data where the truth is known: AUC over
//! the validation candidates (a candidate is an object when its centre lies
//! on the class's true mask) of the map's core fraction alone, of the
//! verifier fitted from the labels alone (multiple-instance), and of one
//! fitted with the truth (the ceiling of these measures).
//!
//!   cargo run --release -p nemascope-train --example verifier_ceiling -- BUNDLE PUBLIC_KEY RUN
use std::path::PathBuf;

use nemascope_core::metrics::auc;
use nemascope_count::Model;
use nemascope_train::config::Config;
use nemascope_train::{data, export, verifier};

fn main() -> anyhow::Result<()> {
    let a: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [bundle, public, run] = &a[..] else {
        anyhow::bail!("usage: verifier_ceiling BUNDLE PUBLIC_KEY RUN");
    };
    let model = Model::open(bundle, public)?;
    let cfg = Config::load(&run.join("config.toml"))?;
    let data = data::load(&cfg)?;
    let unit = export::unit_settings(&model);
    let items: Vec<usize> = data.train.iter().chain(&data.val).copied().collect();
    let cands = verifier::candidates(&model, &data, &items, &unit)?;
    let fitted = verifier::fit(
        &model,
        &data,
        cfg.data.crop,
        &cfg.classes(&data.classes)?,
        &unit,
    )?;
    let labelled = |i: usize, c: usize| -> Vec<([f32; 8], bool)> {
        let truth = &data.items[i].native.as_ref().expect("synthetic truth")[c];
        cands[i]
            .iter()
            .filter(|k| k.class == c)
            .map(|k| {
                let (x, y) = (k.centroid.0 as usize, k.centroid.1 as usize);
                (
                    k.features,
                    *truth.get(x.min(truth.width() - 1), y.min(truth.height() - 1)),
                )
            })
            .collect()
    };
    for (c, name) in data.classes.iter().enumerate() {
        let train: Vec<_> = data.train.iter().flat_map(|&i| labelled(i, c)).collect();
        let val: Vec<_> = data.val.iter().flat_map(|&i| labelled(i, c)).collect();
        let (xs, ys): (Vec<[f32; 8]>, Vec<bool>) = train.iter().copied().unzip();
        let sup = verifier::supervised(&xs, &ys);
        let score = |f: &dyn Fn(&[f32; 8]) -> f32| {
            auc(&val.iter().map(|(x, y)| (f(x), *y)).collect::<Vec<_>>())
        };
        let fit = fitted[c].fit.clone();
        println!(
            "{name}: {} val candidates, {} on an object; AUC core fraction {:?}, labels-only verifier {:?}, with the truth {:?}",
            val.len(),
            val.iter().filter(|v| v.1).count(),
            score(&|f| f[4]),
            fit.map(|v| score(&|f| v.score(f))),
            score(&|f| sup.score(f)),
        );
    }
    Ok(())
}
