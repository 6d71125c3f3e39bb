//! The `nemascope-train` commands. `main.rs` parses the command line and
//! dispatches here; each command's work is in a submodule, and everything
//! it does lives in the library. Errors get their context here only.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::distill;
use crate::train::INTERRUPTED;

mod bench;
mod eval;
mod export;
mod labelled;
mod train;

#[derive(Parser)]
#[command(
    name = "nemascope-train",
    version,
    about = "Train the GWP U-Net from image-level labels, evaluate it, predict masks."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(clap::Args, Clone)]
pub struct ConfigArgs {
    /// TOML config; without it the built-in default (BBBC010, weak labels).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one setting, e.g. `--set train.lr=0.001` or
    /// `--set pooling.kind='"gmp"'` (TOML values; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// A signed bundle, the key it is signed with now, and where it goes
/// signed with a new key.
#[derive(clap::Args, Clone)]
pub struct Resigning {
    /// The bundle to start from.
    #[arg(long)]
    pub bundle: PathBuf,
    /// The key the bundle is signed with (`.pub`).
    #[arg(long)]
    pub public_key: PathBuf,
    /// Signing key for the new bundle.
    #[arg(long)]
    pub key: PathBuf,
    /// New bundle folder.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Subcommand)]
pub enum Cmd {
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
        /// Instead, how well this run (a student) keeps TEACHER's maps on
        /// the validation images: Dice per class of the teacher's map at
        /// the vote threshold with the student's at its best threshold.
        /// Needs no masks; a class near 0 has died.
        #[arg(long, conflicts_with_all = ["all", "benchmark", "weights"])]
        teacher: Option<PathBuf>,
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
        /// The form the unit runs: fp32, int8 (integer convolutions in the
        /// file) or f16 (the float file run in half precision by tract);
        /// docs/edge.md says which to ship on which board.
        #[arg(long, value_parser = nemascope_onnx::Precision::NAMES, default_value = "fp32")]
        precision: String,
        /// Model input WIDTHxHEIGHT (multiples of 2^depth), as the edge's
        /// `--tile` and `--size` are written; default: the working size
        /// rounded up, one tile per image.
        #[arg(long)]
        input: Option<String>,
        /// Training images used to calibrate int8 activation ranges.
        #[arg(long, default_value_t = 16)]
        calibration: usize,
        /// Name shown on the unit's display; default: the bundle folder's name.
        #[arg(long)]
        name: Option<String>,
        /// Leave out what is fitted from the labels by default
        /// (docs/counting.md): each class's map threshold (the config's
        /// `vote.threshold` for all) and the object verifier (every
        /// candidate object counts).
        #[arg(long)]
        no_verifier: bool,
        /// The teacher of the student `--run`: exported instead when the
        /// student's map of a class keeps next to none of the teacher's,
        /// so the bundle counts every class (at the teacher's cost); the
        /// manifest says so under `training.shipped`.
        #[arg(long)]
        teacher: Option<PathBuf>,
    },
    /// Choose each class's map threshold and fit a new object verifier for
    /// an existing bundle from a run's data (its config.toml's images and
    /// labels), score it and write the bundle, re-signed, to a new folder;
    /// the model file is unchanged.
    Verifier {
        #[command(flatten)]
        bundle: Resigning,
        /// A run whose config names the data (e.g. the bundle's teacher).
        #[arg(long)]
        run: PathBuf,
    },
    /// Sign a bundle you trust (checked with its own public key) with your
    /// key, into a new folder: manifest and model unchanged.
    Resign {
        #[command(flatten)]
        bundle: Resigning,
    },
    /// Train from a folder labelled with nemascope-label (its labels.csv
    /// and tiles, present/absent bits only): the teacher through every
    /// weak stage, the student, and the signed bundle, into
    /// OUT/teacher, OUT/student and OUT/bundle. Run again to resume.
    /// --steps, --base, … are the student's (as for `distill`).
    Labelled {
        /// The labelling folder (nemascope-label's --out: labels.csv, tiles/).
        folder: PathBuf,
        /// A review's corrections (nemascope-label review --out) to train
        /// with: each replaces the label of its tile, new tiles are added.
        #[arg(long)]
        corrections: Option<PathBuf>,
        /// The same images labelled at half the tile (nemascope-label
        /// --tile): each tile then trains as its 2x2 cells, and thresholds
        /// are chosen per cell (data.cells).
        #[arg(long)]
        cells: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
        /// Signing key from `keygen`.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The bundle's form (as for `export`).
        #[arg(long, value_parser = nemascope_onnx::Precision::NAMES, default_value = "fp32")]
        precision: String,
        /// Ship the teacher, not a distilled student: no distillation, a
        /// bundle with 4× the student's multiply-adds (≈ 2× the seconds a
        /// frame on this machine's CPU) that counted the NemaQuant eggs
        /// better on four of five runs (docs/labelling.md).
        #[arg(long)]
        ship_teacher: bool,
        /// Teachers to train, from train.seed on (each one run's time); the
        /// one whose labelled tiles prove the fewest count errors is kept.
        /// On the NemaQuant eggs a teacher's count varies by seed (MAE 4.3
        /// to 9.0) and the labels ranked them as the eye counts did
        /// (docs/labelling.md).
        #[arg(long, default_value_t = 1)]
        seeds: usize,
        #[command(flatten)]
        student: distill::DistillOptions,
    },
    /// Print the built-in default config as TOML.
    Config {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

pub fn load_config(a: &ConfigArgs) -> Result<Config> {
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

/// Ctrl-C stops after the current step (a second one quits now).
fn install_ctrlc() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step (Ctrl-C again to quit now)");
    });
}

impl Cmd {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        match self {
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
                train::train(&out, cfg, resume)
            }
            Cmd::Eval {
                run,
                teacher: Some(teacher),
                ..
            } => eval::agreement(&teacher, &run),
            Cmd::Eval {
                run,
                weights,
                benchmark: true,
                ..
            } => eval::benchmark(&run, weights.as_deref()),
            Cmd::Eval {
                run, weights, all, ..
            } => eval::eval(&run, weights.as_deref(), all),
            Cmd::Predict {
                run,
                out,
                vote,
                maps,
                weights,
                images,
            } => eval::predict(&run, &out, vote, maps, weights.as_deref(), &images),
            Cmd::Sweep {
                config,
                out,
                poolings,
            } => {
                install_ctrlc();
                train::sweep(&load_config(&config)?, &out, &poolings)
            }
            Cmd::BenchStep {
                config,
                steps,
                warmup,
            } => bench::bench_step(&load_config(&config)?, steps, warmup),
            Cmd::Labelled {
                folder,
                corrections,
                cells,
                config,
                key,
                out,
                precision,
                ship_teacher,
                seeds,
                student,
            } => {
                install_ctrlc();
                labelled::labelled(labelled::Labelled {
                    ship_teacher,
                    seeds,
                    folder: &folder,
                    corrections: corrections.as_deref(),
                    cells: cells.as_deref(),
                    config: &config,
                    student: &student,
                    key: &key,
                    out: &out,
                    precision: &precision,
                })
            }
            Cmd::Verifier { bundle: b, run } => {
                export::refit(&b.bundle, &b.public_key, &run, &b.key, &b.out)
            }
            Cmd::Resign { bundle: b } => export::resign(&b.bundle, &b.public_key, &b.key, &b.out),
            Cmd::Config { config } => {
                print!("{}", load_config(&config)?.to_toml());
                Ok(())
            }
            Cmd::Distill { run, out, student } => {
                install_ctrlc();
                train::distill(&run, &out, &student)
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
                no_verifier,
                teacher,
            } => export::export(
                &run,
                &key,
                &out,
                export::Args {
                    precision: &precision,
                    input: input.as_deref(),
                    calibration,
                    name,
                    verifier: !no_verifier,
                    teacher: teacher.as_deref(),
                    notes: Vec::new(),
                },
            ),
        }
    }
}
