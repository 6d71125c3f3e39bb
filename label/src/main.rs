//! `nemascope-label`: serves the labelling page for a folder of images.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nemascope_label::review::{self, ReviewOptions};
use nemascope_label::server::Server;
use nemascope_label::{Cut, Options, Store};

/// Label a folder of images tile by tile (present/absent per class) in the
/// browser, into the labels.csv that `nemascope-train` reads; or review a
/// model's counts and record corrections (`nemascope-label review`).
#[derive(Parser)]
#[command(
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    review: Option<Cmd>,
    /// The folder of images (.png, .tif, .jpg); they are only read.
    #[arg(required = true)]
    folder: Option<PathBuf>,
    /// Classes to decide, comma separated (e.g. `egg` or `egg,worm`);
    /// leave out to resume a session.
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Tile side in pixels, or `whole`; leave out to choose on the page.
    #[arg(long)]
    tile: Option<String>,
    /// Where labels.csv, decisions.csv and tiles/ go [default: FOLDER/nemascope-labels].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Port on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 8765)]
    port: u16,
    /// A labelling of the same images at a larger tile (or whole): every
    /// tile here that lies inside one of its absent tiles is recorded
    /// absent, so only the tiles inside present ones are left to decide.
    #[arg(long, value_name = "COARSE")]
    finer_of: Option<PathBuf>,
    /// Write labels.csv and the tiles from the recorded decisions, then
    /// exit without serving (e.g. after a clone, where tiles/ is not kept).
    #[arg(long)]
    write_only: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Review the results of `nemascope-edge count` beside the frames (and
    /// a lab database's reports) and mark what is wrong, tile by tile or
    /// per image, as labels for the next training run, in a folder of
    /// their own (`nemascope-train labelled LABELS --corrections OUT`).
    Review {
        /// The `--json` that `nemascope-edge count` wrote.
        counts: PathBuf,
        /// Where the corrections go (labels.csv, decisions.csv, tiles/).
        #[arg(long)]
        out: PathBuf,
        /// The `--overlays` folder of the same count.
        #[arg(long)]
        overlays: Option<PathBuf>,
        /// The labelling folder the model was trained from: its labels are
        /// shown and its tile size is used.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Where the counted images are [default: their paths in the JSON].
        #[arg(long)]
        images: Option<PathBuf>,
        /// The lab database to show (`nemascope-edge listen --out lab.sqlite`).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Tile side, or `whole`, when there are no --labels [default: whole].
        #[arg(long)]
        tile: Option<String>,
        #[arg(long, default_value_t = 8765)]
        port: u16,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let run = || -> nemascope_label::Result<()> {
        if let Some(Cmd::Review {
            counts,
            out,
            overlays,
            labels,
            images,
            db,
            tile,
            port,
        }) = &args.review
        {
            let (store, review) = review::open(&ReviewOptions {
                counts: counts.clone(),
                images: images.clone(),
                overlays: overlays.clone(),
                labels: labels.clone(),
                db: db.clone(),
                out: out.clone(),
                cut: tile.as_deref().map(Cut::parse).transpose()?,
            })?;
            eprintln!(
                "reviewing {} counted images; corrections go into {}",
                store.images.len(),
                store.out.display()
            );
            let server = Server::bind(store, *port)?.with_review(review);
            println!(
                "open {} in a browser (Ctrl+C stops; every correction is already saved)",
                server.url()
            );
            server.run();
            return Ok(());
        }
        let folder = args.folder.clone().expect("clap requires the folder");
        let cut = args.tile.as_deref().map(Cut::parse).transpose()?;
        let store = Store::open(&Options {
            folder,
            out: args.out.clone(),
            classes: args.classes.clone(),
            cut,
            images: vec![],
            finer_of: args.finer_of.clone(),
        })?;
        for w in &store.warnings {
            eprintln!("warning: {w}");
        }
        if let Some(coarse) = &args.finer_of {
            eprintln!(
                "{} decisions taken as absent from {} (tiles inside its absent tiles); {} left to decide",
                store.taken_absent,
                coarse.display(),
                store.open_decisions()?
            );
        }
        eprintln!(
            "labelling {} images of {} into {}",
            store.images.len(),
            store.folder.display(),
            store.out.display()
        );
        if args.write_only {
            println!(
                "{} decisions; labels.csv and tiles written in {}",
                store.log.decisions.len(),
                store.out.display()
            );
            return Ok(());
        }
        let server = Server::bind(store, args.port)?;
        println!(
            "open {} in a browser (Ctrl+C stops; every decision is already saved)",
            server.url()
        );
        server.run();
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
