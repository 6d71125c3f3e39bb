//! The `nemascope-edge` commands: each module parses nothing and does one
//! command's work; `main.rs` parses the command line and dispatches here.
//! Library errors keep their types; context is added only at this level.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use nemascope_count::Model;

pub mod bench;
pub mod count;
pub mod demo;
pub mod preview;
pub mod unit;

#[derive(Parser)]
#[command(
    name = "nemascope-edge",
    version,
    about = "Count nematodes in microscope frames"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// The built-in default: seeded synthetic frames (a seed no model was
    /// trained on) counted by the shipped worm/egg/cyst model bundle, the
    /// path the unit runs, scored against their exact truth.
    Demo(demo::DemoArgs),
    /// Count the objects of every class in images with a signed model
    /// bundle: per-image and per-sample counts (a folder is a sample), and
    /// optionally masks, overlays, CSV and JSON.
    Count(count::CountArgs),
    /// Render the unit's screen to a PNG, as the panel would show it.
    Preview(preview::PreviewArgs),
    /// Time decode-to-counts on an image file, or a seeded synthetic frame
    /// of the given size (16-bit PNG in memory), and report the peak
    /// resident memory: run it pinned to one core (`taskset -c 0`) to
    /// measure one core.
    Bench(bench::BenchArgs),
    /// The unit's service: count frames from the configured source,
    /// journal each result, show it on the panel and report it over the
    /// serial link (hardware/edge.toml; hardware/nemascope-edge.service).
    Run {
        /// The unit's configuration file.
        #[arg(long, default_value = "/etc/nemascope/edge.toml")]
        config: PathBuf,
        /// Stop once the source is used up and every report is
        /// acknowledged (a list of files, synthetic frames); a watched
        /// folder or camera runs for ever.
        #[arg(long)]
        until_done: bool,
    },
    /// The host's end of the serial link: store every report the unit
    /// sends, once, in a JSON-lines file (durable before acknowledged).
    Listen {
        /// Serial port to the unit (e.g. /dev/ttyUSB0).
        #[arg(long)]
        port: PathBuf,
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
        /// Report file (`.jsonl`), or the lab's database (`.sqlite`,
        /// `.sqlite3`, `.db`) that several listeners share; reopened
        /// where it stopped.
        #[arg(long)]
        out: PathBuf,
        /// The unit's name in a database (default: the port's file name).
        #[arg(long)]
        unit: Option<String>,
        /// Stop once report number N is stored.
        #[arg(long)]
        until: Option<u64>,
    },
    /// Every unit's reports in the lab's database as CSV (one row per
    /// report, a column per class), for a spreadsheet.
    Reports {
        /// The database `listen --out` writes.
        db: PathBuf,
        /// Only this sample's reports.
        #[arg(long)]
        sample: Option<String>,
        /// Write here (atomically) instead of to stdout.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Check a model bundle: signature under the public key, model hash,
    /// manifest values, and that tract loads and runs the model.
    CheckModel {
        bundle: PathBuf,
        /// The unit's configured public key (hex, from `nemascope-train keygen`).
        #[arg(long)]
        public_key: PathBuf,
    },
}

impl Cmd {
    /// Commands that print to a terminal or pipe and end on a closed one
    /// (`| head`), as other command-line tools do. The unit and the
    /// listener keep SIGPIPE ignored, so a peer that hangs up is an error
    /// they handle.
    pub fn ends_on_closed_pipe(&self) -> bool {
        matches!(
            self,
            Cmd::Demo(_) | Cmd::Count(_) | Cmd::Preview(_) | Cmd::Bench(_)
        )
    }

    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Cmd::Demo(a) => demo::demo(a),
            Cmd::Count(a) => count::count(a),
            Cmd::Preview(a) => preview::preview(a),
            Cmd::Bench(a) => bench::bench(a),
            Cmd::Run { config, until_done } => unit::run(&config, until_done),
            Cmd::Listen {
                port,
                baud,
                out,
                unit,
                until,
            } => unit::listen(port, baud, out, unit, until),
            Cmd::Reports { db, sample, csv } => {
                unit::reports(&db, sample.as_deref(), csv.as_deref())
            }
            Cmd::CheckModel { bundle, public_key } => unit::check_model(&bundle, &public_key),
        }
    }
}

/// Where the shipped bundles are: `NEMASCOPE_MODELS`, else the source
/// tree's `models/` (a unit's install sets the variable; hardware/).
pub fn models_dir() -> PathBuf {
    std::env::var_os("NEMASCOPE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../models")))
}

/// The bundle in `model` under `public_key`, each defaulting to the
/// shipped BBBC010 worm model and the shipped development key.
pub fn open_model(model: Option<PathBuf>, public_key: Option<PathBuf>) -> anyhow::Result<Model> {
    open_model_tiled(model, public_key, None)
}

/// [`open_model`] with the plan made for `tile` (`[H, W]`).
pub fn open_model_tiled(
    model: Option<PathBuf>,
    public_key: Option<PathBuf>,
    tile: Option<[usize; 2]>,
) -> anyhow::Result<Model> {
    let (dir, key) = bundle_paths(model, public_key);
    Ok(Model::open_tiled(&dir, &key, tile)?)
}

/// The bundle folder and public key, defaulting to the shipped BBBC010
/// worm model and development key.
pub fn bundle_paths(model: Option<PathBuf>, public_key: Option<PathBuf>) -> (PathBuf, PathBuf) {
    (
        model.unwrap_or_else(|| models_dir().join("bbbc010-worm")),
        public_key.unwrap_or_else(|| models_dir().join("nemascope-dev.pub")),
    )
}

/// `--tile WIDTHxHEIGHT` as `[H, W]`.
pub fn parse_tile(tile: Option<&str>) -> anyhow::Result<Option<[usize; 2]>> {
    tile.map(|t| crate::config::parse_tile(t).map_err(|e| anyhow::anyhow!("--tile {e}")))
        .transpose()
}
