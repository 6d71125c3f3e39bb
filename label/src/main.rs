//! `nemascope-label`: serves the labelling page for a folder of images.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use nemascope_label::server::Server;
use nemascope_label::{Cut, Options, Store};

/// Label a folder of images tile by tile (present/absent per class) in the
/// browser, into the labels.csv that `nemascope-train` reads.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The folder of images (.png, .tif, .jpg); they are only read.
    folder: PathBuf,
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
    /// Write labels.csv and the tiles from the recorded decisions, then
    /// exit without serving (e.g. after a clone, where tiles/ is not kept).
    #[arg(long)]
    write_only: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let run = || -> nemascope_label::Result<()> {
        let cut = args.tile.as_deref().map(Cut::parse).transpose()?;
        let store = Store::open(&Options {
            folder: args.folder.clone(),
            out: args.out.clone(),
            classes: args.classes.clone(),
            cut,
        })?;
        for w in &store.warnings {
            eprintln!("warning: {w}");
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
