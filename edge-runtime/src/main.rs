//! `nemascope-edge`: count nematodes in microscope frames.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use nemascope_core::counting::mean_abs_error;
use nemascope_core::imageio::{save_gray8, save_mask};
use nemascope_core::metrics::{dice, mean_dice_positive};
use nemascope_core::synth::{generate, SynthConfig};
use nemascope_core::{Class, Mask, Result};
use nemascope_edge::journal::{Journal, Record};
use nemascope_edge::model::Model;
use nemascope_edge::pipeline::Pipeline;

#[derive(Parser)]
#[command(
    name = "nemascope-edge",
    version,
    about = "Count nematodes in microscope frames"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The built-in default: seeded synthetic frames through segmentation,
    /// superpixel voting and counting, scored against their exact truth.
    Demo {
        #[arg(long, default_value_t = 24)]
        frames: usize,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Frames (other seed) whose truth calibrates the per-object areas.
        #[arg(long, default_value_t = 16)]
        calibration_frames: usize,
        /// Write each frame, its truth and the found masks here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Append `count` made-up records to the journal in DIR as fast as it
    /// can, printing each sequence number once it is durable (the journal's
    /// kill test drives this; hidden from help).
    #[command(hide = true)]
    JournalWriter {
        dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
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

fn check_model(bundle: &std::path::Path, key: &std::path::Path) -> std::result::Result<(), String> {
    let m = Model::open(bundle, key).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let input = vec![0f32; m.runner.input_len()];
    m.runner
        .maps(&input)
        .map_err(|e| format!("bundle refused: {e}"))?;
    let mf = &m.manifest;
    println!("{}: accepted", bundle.display());
    println!(
        "  name {}, {} model, classes {:?}",
        mf.name, mf.precision, mf.classes
    );
    println!(
        "  input {:?}, pixel scale {}, threshold {}",
        mf.input, mf.pixel_scale, mf.threshold
    );
    for (k, v) in &mf.metrics {
        println!("  {k} = {v:.4}");
    }
    println!("  one inference {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    Ok(())
}

fn demo(frames: usize, seed: u64, calibration_frames: usize, out: Option<PathBuf>) -> Result<()> {
    let cfg = SynthConfig::default();
    let mut pipe = Pipeline::default();
    let calib: Vec<(Vec<Mask>, [usize; 3])> = (0..calibration_frames as u64)
        .map(|i| generate(&cfg, seed.wrapping_add(1_000_000), i).map(|f| (f.masks, f.counts)))
        .collect::<Result<_>>()?;
    pipe.calibrate(&calib)?;
    println!(
        "nemascope demo: {frames} synthetic {}x{} frames, seed {seed}",
        cfg.width, cfg.height
    );
    println!("segmenter: classical flat-field threshold (stand-in until a trained model ships)");
    println!();
    println!("| frame | worms true/found | eggs true/found | cysts true/found | Dice voted fg | Dice classified | ms |");
    println!("|---|---|---|---|---|---|---|");
    let (mut truth, mut found) = ([vec![], vec![], vec![]], [vec![], vec![], vec![]]);
    let mut pairs = Vec::new();
    let mut classified_pairs = Vec::new();
    let mut times = Vec::new();
    for i in 0..frames as u64 {
        let f = generate(&cfg, seed, i)?;
        let t = Instant::now();
        let r = pipe.process(&f.image)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        times.push(ms);
        let true_fg = Mask::union(&f.masks.iter().collect::<Vec<_>>()).expect("3 classes");
        let d = dice(&r.foreground, &true_fg)?;
        let classified = Mask::union(&r.masks.iter().collect::<Vec<_>>()).expect("3 classes");
        let dc = dice(&classified, &true_fg)?;
        let has_objects = true_fg.count() > 0;
        let score = |v: f64| {
            if has_objects {
                format!("{v:.3}")
            } else {
                "–".to_string()
            }
        };
        for k in 0..3 {
            truth[k].push(f.counts[k]);
            found[k].push(r.counts[k]);
        }
        println!(
            "| {i} | {}/{} | {}/{} | {}/{} | {} | {} | {ms:.1} |",
            f.counts[0],
            r.counts[0],
            f.counts[1],
            r.counts[1],
            f.counts[2],
            r.counts[2],
            score(d),
            score(dc)
        );
        if let Some(dir) = &out {
            let id = format!("frame_{i:03}");
            save_gray8(&f.image, &dir.join(format!("{id}.png")))?;
            save_mask(&true_fg, &dir.join(format!("{id}_truth.png")))?;
            save_mask(&r.foreground, &dir.join(format!("{id}_found.png")))?;
        }
        classified_pairs.push((classified, true_fg.clone()));
        pairs.push((r.foreground, true_fg));
    }
    println!();
    println!("| class | true total | found total | mean abs count error per frame |");
    println!("|---|---|---|---|");
    for (k, c) in Class::ALL.iter().enumerate() {
        println!(
            "| {c} | {} | {} | {:.2} |",
            truth[k].iter().sum::<usize>(),
            found[k].iter().sum::<usize>(),
            mean_abs_error(&found[k], &truth[k])
        );
    }
    times.sort_by(f64::total_cmp);
    println!();
    println!(
        "mean Dice over frames with objects: voted foreground {:.3}, classified objects {:.3}; median frame time {:.1} ms",
        mean_dice_positive(&pairs)?.unwrap_or(f64::NAN),
        mean_dice_positive(&classified_pairs)?.unwrap_or(f64::NAN),
        times[times.len() / 2]
    );
    Ok(())
}

fn journal_writer(dir: &std::path::Path, count: u64) -> std::result::Result<(), String> {
    use std::io::Write;
    let mut j = Journal::open(dir).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    for i in 0..count {
        let seq = j
            .append(&Record {
                time_ms: i,
                sample: "kill-test".into(),
                source: format!("frame{i}"),
                counts: [i as u32, (i % 7) as u32, (i % 3) as u32],
                frame_ms: 1,
                model: "none".into(),
                warnings: 0,
            })
            .map_err(|e| e.to_string())?;
        writeln!(out, "{seq}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Demo {
            frames,
            seed,
            calibration_frames,
            out,
        } => demo(frames.max(1), seed, calibration_frames, out),
        Cmd::JournalWriter { dir, count } => {
            journal_writer(&dir, count).map_err(nemascope_core::Error::Invalid)
        }
        Cmd::CheckModel { bundle, public_key } => {
            check_model(&bundle, &public_key).map_err(nemascope_core::Error::Invalid)
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nemascope-edge: {e}");
            ExitCode::FAILURE
        }
    }
}
