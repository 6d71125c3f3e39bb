//! `nemascope-train`: train, evaluate, predict and sweep from the command
//! line. Thin: everything it does lives in the library.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use nemascope_core::imageio::{save_gray8, save_mask};
use nemascope_core::Mask;
use nemascope_train::config::{pooling_name, Config};
use nemascope_train::eval;
use nemascope_train::report;
use nemascope_train::train::{self, Trainer, INTERRUPTED};
use nemascope_train::{distill, export};
use tch::nn::{ModuleT, OptimizerConfig};

#[derive(Parser)]
#[command(
    name = "nemascope-train",
    version,
    about = "Train the GWP U-Net from image-level labels, evaluate it, predict masks."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct ConfigArgs {
    /// TOML config; without it the built-in default (BBBC010, weak labels).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one setting, e.g. `--set train.lr=0.001` or
    /// `--set pooling.kind='"gmp"'` (TOML values; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train all stages (or the supervised baseline) into a run folder.
    Train {
        #[command(flatten)]
        config: ConfigArgs,
        /// Run folder (checkpoints, state, results, overlays).
        #[arg(long, default_value = "out/train")]
        out: PathBuf,
        /// Continue the run in --out from its last finished epoch.
        #[arg(long)]
        resume: bool,
    },
    /// Score a run's model on its validation images (or all images).
    Eval {
        #[arg(long)]
        run: PathBuf,
        /// A phase's weights (classify, refine1, …) instead of the final model.
        #[arg(long)]
        weights: Option<String>,
        #[arg(long)]
        all: bool,
        /// Score on the frozen synthetic benchmark (240 frames, light and
        /// dense debris) instead, with voting and the classical floor;
        /// writes benchmark.md and benchmark.json into the run.
        #[arg(long, conflicts_with = "all")]
        benchmark: bool,
    },
    /// Write one mask PNG per input image (non-zero where any class is found).
    Predict {
        #[arg(long)]
        run: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Vote the maps over superpixels before writing.
        #[arg(long)]
        vote: bool,
        /// Also write each class's probability map as `<stem>_<class>_map.png`.
        #[arg(long)]
        maps: bool,
        /// A phase's weights (classify, refine1, …) instead of the final model.
        #[arg(long)]
        weights: Option<String>,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Table I: one weak run per pooling; raw maps, voting, refinement 1 and 2.
    Sweep {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, default_value = "out/sweep")]
        out: PathBuf,
        /// Poolings: gap, gmp, or gwp<r>.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "gap,gwp1,gwp3,gwp5,gwp7,gwp9,gwp11,gwp13,gmp"
        )]
        poolings: Vec<String>,
    },
    /// Seconds per training step of the configured network (stage 1).
    BenchStep {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, default_value_t = 20)]
        steps: usize,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
    },
    /// Train a smaller student U-Net on a finished run's soft maps and
    /// refined masks; writes a run folder of its own.
    Distill {
        /// The teacher run.
        #[arg(long)]
        run: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        student: distill::DistillOptions,
    },
    /// Make an ed25519 key pair for signing bundles: <STEM>.key (keep it)
    /// and <STEM>.pub (configure it on the edge units).
    Keygen {
        #[arg(long, default_value = "nemascope-signing")]
        out: PathBuf,
    },
    /// Export a run as a signed bundle (model.onnx + manifest.json +
    /// manifest.sig); the exported file is scored with tract on the
    /// validation images and the scores go into the manifest.
    Export {
        #[arg(long)]
        run: PathBuf,
        /// Signing key from `keygen`.
        #[arg(long)]
        key: PathBuf,
        /// New bundle folder.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_parser = ["fp32", "int8"], default_value = "fp32")]
        precision: String,
        /// Model input HEIGHTxWIDTH (multiples of 2^depth); default: the
        /// working size rounded up, one tile per image.
        #[arg(long)]
        input: Option<String>,
        /// Training images used to calibrate int8 activation ranges.
        #[arg(long, default_value_t = 16)]
        calibration: usize,
        /// Name shown on the unit's display; default: the bundle folder's name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Print the built-in default config as TOML.
    Config {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

fn load_config(a: &ConfigArgs) -> Result<Config> {
    let cfg = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if a.set.is_empty() {
        return Ok(cfg);
    }
    let mut value: toml::Value = toml::from_str(&cfg.to_toml())?;
    for s in &a.set {
        let (key, raw) = s
            .split_once('=')
            .with_context(|| format!("--set {s}: expected KEY=VALUE"))?;
        let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            // A bare word is a string: `--set data.kind=synth`.
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        let mut slot = &mut value;
        let parts: Vec<&str> = key.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let table = slot
                .as_table_mut()
                .with_context(|| format!("--set {key}: `{part}` is not in a table"))?;
            if i + 1 == parts.len() {
                if !table.contains_key(*part) {
                    bail!("--set {key}: unknown setting `{part}`");
                }
                table.insert(part.to_string(), parsed.clone());
                break;
            }
            slot = table
                .get_mut(*part)
                .with_context(|| format!("--set {key}: unknown section `{part}`"))?;
        }
    }
    Ok(Config::parse(&toml::to_string(&value)?)?)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn install_ctrlc() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step (Ctrl-C again to quit now)");
    });
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Train {
            config,
            out,
            resume,
        } => {
            install_ctrlc();
            let cfg = if resume {
                None
            } else {
                Some(load_config(&config)?)
            };
            if resume && (config.config.is_some() || !config.set.is_empty()) {
                bail!("--resume continues with the run's own config.toml; drop --config/--set");
            }
            train_run(&out, cfg, resume)
        }
        Cmd::Eval {
            run,
            weights,
            benchmark: true,
            ..
        } => {
            let rows = nemascope_train::benchmark::run(&run, weights.as_deref())?;
            let state = train::State::load(&run)?;
            print!(
                "{}",
                nemascope_train::benchmark::markdown(&state.classes, &rows)
            );
            Ok(())
        }
        Cmd::Eval {
            run, weights, all, ..
        } => eval_run(&run, weights.as_deref(), all),
        Cmd::Predict {
            run,
            out,
            vote,
            maps,
            weights,
            images,
        } => predict(&run, &out, vote, maps, weights.as_deref(), &images),
        Cmd::Sweep {
            config,
            out,
            poolings,
        } => {
            install_ctrlc();
            sweep(&load_config(&config)?, &out, &poolings)
        }
        Cmd::BenchStep {
            config,
            steps,
            warmup,
        } => bench_step(&load_config(&config)?, steps, warmup),
        Cmd::Config { config } => {
            print!("{}", load_config(&config)?.to_toml());
            Ok(())
        }
        Cmd::Distill { run, out, student } => {
            install_ctrlc();
            let d = distill::distill(&run, &out, &student)?;
            for (who, (p, m)) in [("teacher", d.teacher), ("student", d.student)] {
                println!(
                    "{who}: {p} parameters, {:.3} G multiply-adds per 384x512 frame",
                    m as f64 / 1e9
                );
            }
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
        Cmd::Keygen { out } => {
            let (s, p) = nemascope_bundle::generate_keys(&out)?;
            println!("signing key {} (keep it private)", s.display());
            println!("public key  {} (configure it on edge units)", p.display());
            Ok(())
        }
        Cmd::Export {
            run,
            key,
            out,
            precision,
            input,
            calibration,
            name,
        } => {
            let key = nemascope_bundle::read_signing_key(&key)?;
            let input = input.map(|s| parse_size(&s)).transpose()?;
            let opts = export::ExportOptions {
                name: name.unwrap_or_else(|| {
                    out.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "model".into())
                }),
                precision: if precision == "int8" {
                    export::Precision::Int8
                } else {
                    export::Precision::Fp32
                },
                input,
                calibration_images: calibration,
            };
            let t = Instant::now();
            let e = export::export_run(&run, &out, &key, &opts)?;
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
            eprintln!("exported and scored in {:.0} s", t.elapsed().as_secs_f64());
            Ok(())
        }
    }
}

fn train_run(out: &Path, cfg: Option<Config>, resume: bool) -> Result<()> {
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

fn eval_run(run: &Path, weights: Option<&str>, all: bool) -> Result<()> {
    let (cfg, state, _vs, net) = train::load_model(run, weights)?;
    let data = nemascope_train::data::load(&cfg)?;
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

fn predict(
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
            let it =
                nemascope_train::data::load_for_prediction(path, cfg.data.width, cfg.data.height)?;
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

/// `384x512` → input size (height × width).
fn parse_size(s: &str) -> Result<nemascope_onnx::InputSize> {
    let (h, w) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("--input {s}: expected HEIGHTxWIDTH, e.g. 384x512"))?;
    Ok(nemascope_onnx::InputSize {
        height: h
            .trim()
            .parse()
            .with_context(|| format!("--input {s}: height"))?,
        width: w
            .trim()
            .parse()
            .with_context(|| format!("--input {s}: width"))?,
    })
}

fn sweep(base: &Config, out: &Path, poolings: &[String]) -> Result<()> {
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

fn bench_step(cfg: &Config, steps: usize, warmup: usize) -> Result<()> {
    if cfg.train.threads > 0 {
        tch::set_num_threads(cfg.train.threads);
    }
    let device = train::device(cfg)?;
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(device);
    let net = nemascope_train::unet::UNet::new(&vs.root(), cfg.unet(1));
    let mut opt = tch::nn::RmsProp::default().build(&vs, cfg.train.lr)?;
    let s = cfg.data.crop.max(1) as i64;
    let b = cfg.train.batch as i64;
    let x = tch::Tensor::randn([b, 1, s, s], (tch::Kind::Float, device));
    let y = tch::Tensor::ones([b, 1], (tch::Kind::Float, device));
    let pooling = cfg.pooling()?;
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        let scores = nemascope_train::pooling::pool(&net.forward_t(&x, true), pooling)
            .clamp(1e-6, 1.0 - 1e-6);
        let loss = scores.binary_cross_entropy::<tch::Tensor>(&y, None, tch::Reduction::Mean);
        opt.backward_step(&loss);
        let _ = loss.double_value(&[]);
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "rust/tch: batch {b} x 1 x {s} x {s}, base {} depth {}, threads {}: median {:.4} s/step (min {:.4}, max {:.4}, {steps} steps)",
        cfg.model.base,
        cfg.model.depth,
        tch::get_num_threads(),
        median,
        times[0],
        times[times.len() - 1]
    );
    Ok(())
}
