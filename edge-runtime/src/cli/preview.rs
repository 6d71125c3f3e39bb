//! `nemascope-edge preview`: the unit's screen rendered to a PNG.

use std::path::PathBuf;

use anyhow::bail;

use crate::config::PanelKind;
use crate::report::check_free;
use crate::screen::{ClassRow, LinkState, Screen};

/// The `preview` command's options: what the screen shows.
#[derive(clap::Args)]
pub struct PreviewArgs {
    /// PNG to write (refused if it exists, unless --overwrite).
    #[arg(long)]
    pub out: PathBuf,
    /// `color` (240×320 ST7789) or `mono` (128×64 SSD1306).
    #[arg(long, default_value = "color")]
    pub panel: String,
    /// Each panel pixel as N×N PNG pixels, for viewing.
    #[arg(long, default_value_t = 2)]
    pub scale: u32,
    #[arg(long, default_value = "plot-7")]
    pub sample: String,
    #[arg(long, default_value = "worm,egg,cyst")]
    pub classes: String,
    /// The sample's running totals, one per class.
    #[arg(long, default_value = "12,3,0")]
    pub counts: String,
    /// The last frame's counts, one per class.
    #[arg(long, default_value = "2,1,0")]
    pub frame_counts: String,
    /// Frames of the sample counted so far.
    #[arg(long, default_value_t = 4)]
    pub frames: u32,
    #[arg(long, default_value_t = 51)]
    pub frame_ms: u32,
    #[arg(long, default_value = "bbbc010-worm-student")]
    pub model: String,
    /// `up`, `down`, `off`, or the number of unsent reports.
    #[arg(long, default_value = "up")]
    pub link: String,
    /// Warning bits (1 frame quality, 2 model, 4 disk, 8 backlog).
    #[arg(long, default_value_t = 0)]
    pub warnings: u8,
    #[arg(long)]
    pub overwrite: bool,
}

/// Renders the screen the options describe.
pub fn preview(a: PreviewArgs) -> anyhow::Result<()> {
    let classes: Vec<&str> = a.classes.split(',').map(str::trim).collect();
    let numbers = |opt: &str, text: &str| {
        text.split(',')
            .map(|c| c.trim().parse::<u32>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| anyhow::anyhow!("--{opt} {text}: expected numbers like 12,3,0"))
    };
    let counts = numbers("counts", &a.counts)?;
    let frame_counts = numbers("frame-counts", &a.frame_counts)?;
    if counts.len() != classes.len() || frame_counts.len() != classes.len() {
        bail!(
            "{} classes but {} counts and {} frame counts",
            classes.len(),
            counts.len(),
            frame_counts.len()
        );
    }
    let link = match a.link.as_str() {
        "up" => LinkState::Up,
        "down" => LinkState::Down,
        "off" => LinkState::Off,
        n => LinkState::Backlog(
            n.parse()
                .map_err(|_| anyhow::anyhow!("--link {n}: expected up, down, off or a number"))?,
        ),
    };
    if !(1..=8).contains(&a.scale) {
        bail!("--scale {}: 1 to 8", a.scale);
    }
    check_free(&a.out, a.overwrite)?;
    let screen = Screen {
        sample: a.sample,
        frames: a.frames,
        counts: classes
            .iter()
            .zip(counts.iter().zip(&frame_counts))
            .map(|(c, (&total, &frame))| ClassRow {
                class: c.to_string(),
                total,
                frame,
            })
            .collect(),
        frame_ms: a.frame_ms,
        model: a.model,
        link,
        warnings: a.warnings,
    };
    let kind = match a.panel.as_str() {
        "color" => PanelKind::Color,
        "mono" => PanelKind::Mono,
        p => bail!("--panel {p}: expected color or mono"),
    };
    let img = crate::screen::panels::render(&screen, kind, a.scale);
    let (w, h) = (img.width(), img.height());
    img.save(&a.out)
        .map_err(|e| nemascope_core::Error::image(&a.out, e))?;
    println!(
        "{}: {}x{} preview of the {} panel",
        a.out.display(),
        w,
        h,
        a.panel
    );
    Ok(())
}
