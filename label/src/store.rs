//! A labelling folder on disk: the images (read only, never changed), and
//! in the output folder `session.json` (tile size, classes),
//! `decisions.csv` (every decision in order, the record), `labels.csv`
//! (derived, the trainer's table) and `tiles/` (each labelled tile's
//! pixels at the source bit depth, luma as the trainer reads them).
//!
//! Every file is replaced atomically (`nemascope_core::files`) before a
//! decision is acknowledged, and a lock on `.lock` keeps a second server
//! off the same output folder.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use nemascope_core::files::{replace_with, write_atomic};
use nemascope_core::imageio::{load_image, save_gray};
use serde::{Deserialize, Serialize};

use crate::display::{self, Cache};
use crate::session::{
    filled, implied_absent, labels_csv, tile_file, units, Bits, Cut, Decision, ImageInfo, Log, Unit,
};
use crate::{Error, Result};

/// The extensions read as images (what the trainer and the unit decode).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "tif", "tiff", "jpg", "jpeg"];

/// Output folder inside the image folder when `--out` is not given.
pub const DEFAULT_OUT: &str = "nemascope-labels";

/// How a session is opened (the command line's options).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub folder: PathBuf,
    /// Default: `folder/nemascope-labels`.
    pub out: Option<PathBuf>,
    /// Classes to label; empty: those of the session being resumed.
    pub classes: Vec<String>,
    /// Tile size; `None`: the session's, or chosen on the page.
    pub cut: Option<Cut>,
    /// The images, when not every image of `folder` (a review's counted
    /// images, in their order); their file names must differ.
    pub images: Vec<PathBuf>,
    /// A labelling of the same images at a larger tile: its absent tiles
    /// are taken as decided here (`session::implied_absent`).
    pub finer_of: Option<PathBuf>,
}

/// What `session.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub classes: Vec<String>,
    /// `None` until chosen (on the page or with `--tile`).
    pub cut: Option<Cut>,
}

/// An open labelling folder.
pub struct Store {
    pub folder: PathBuf,
    pub out: PathBuf,
    pub images: Vec<ImageInfo>,
    pub settings: Settings,
    pub log: Log,
    /// Said once at start: decisions about images no longer in the folder.
    pub warnings: Vec<String>,
    _lock: File,
    /// The last image decoded, shared with the page's pixel requests.
    pub decoded: Cache,
    /// Decisions taken from `Options::finer_of` when opened.
    pub taken_absent: usize,
    /// What a class nobody decided on a decided unit is taken as (a
    /// review's: the training label, else the model's answer); empty when
    /// labelling, where a row needs every class decided.
    defaults: Bits,
}

impl Store {
    /// Opens (or resumes) labelling of `opts.folder`.
    pub fn open(opts: &Options) -> Result<Store> {
        let folder = opts.folder.clone();
        let images = if opts.images.is_empty() {
            scan(&folder)?
        } else {
            describe(opts.images.clone(), &folder)?
        };
        let out = opts.out.clone().unwrap_or_else(|| folder.join(DEFAULT_OUT));
        let made = !out.exists();
        let opened = Store::open_in(opts, folder, images, out.clone());
        if opened.is_err() && made {
            // Refused at start: leave no folder holding only `.lock` behind.
            let _ = std::fs::remove_file(out.join(".lock"));
            let _ = std::fs::remove_dir(&out);
        }
        opened
    }

    fn open_in(
        opts: &Options,
        folder: PathBuf,
        images: Vec<ImageInfo>,
        out: PathBuf,
    ) -> Result<Store> {
        std::fs::create_dir_all(&out).map_err(|e| {
            Error::Input(format!(
                "cannot create the output folder {} ({e}); give another with --out",
                out.display()
            ))
        })?;
        let lock_path = out.join(".lock");
        let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Busy(format!(
                    "{} is already being labelled by another nemascope-label; close that one first",
                    out.display()
                )))
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let saved = read_settings(&out)?;
        let classes = match (&saved, opts.classes.is_empty()) {
            (None, true) => {
                return Err(Error::Input(
                    "name the classes to label, e.g. --classes egg (or egg,worm)".into(),
                ))
            }
            (None, false) => check_classes(&opts.classes)?,
            (Some(s), true) => s.classes.clone(),
            (Some(s), false) if s.classes == opts.classes => s.classes.clone(),
            (Some(s), false) => {
                return Err(Error::Input(format!(
                    "{} is labelled for the classes {}, not {}: leave out --classes to go on, or give a new --out",
                    out.display(),
                    s.classes.join(","),
                    opts.classes.join(",")
                )))
            }
        };
        let log = read_log(&out, &classes)?;
        let saved_cut = saved.as_ref().and_then(|s| s.cut);
        let cut = match (saved_cut, opts.cut) {
            (Some(s), Some(c)) if s != c && !log.decisions.is_empty() => {
                return Err(Error::Input(format!(
                    "{} is labelled with tile size {}, not {}: leave out --tile to go on, or give a new --out",
                    out.display(),
                    s.name(),
                    c.name()
                )))
            }
            (s, c) => c.or(s),
        };
        if let Some(cut) = cut {
            for img in &images {
                units(img, cut)?;
            }
        }
        // Checked before anything is written, so a refusal leaves no folder.
        let coarse = opts
            .finer_of
            .as_deref()
            .map(|c| coarser_labelling(c, &out, cut, &classes))
            .transpose()?;
        let mut missing: Vec<&str> = log
            .decisions
            .iter()
            .map(|d| d.image.as_str())
            .filter(|n| !images.iter().any(|i| i.name == *n))
            .collect();
        missing.sort();
        missing.dedup();
        let warnings = missing
            .iter()
            .map(|n| {
                format!("decisions about {n}, which is no longer in the folder, stay in decisions.csv but not in labels.csv")
            })
            .collect();
        let mut store = Store {
            folder,
            out,
            images,
            settings: Settings { classes, cut },
            log,
            warnings,
            _lock: lock,
            decoded: Cache::default(),
            taken_absent: 0,
            defaults: Bits::new(),
        };
        if saved.as_ref() != Some(&store.settings) {
            store.save_settings()?;
        }
        if cut.is_some() {
            // Mends a stop between the writes of the last decision.
            store.write_tables(0..store.images.len())?;
        }
        if let Some((log, coarse_cut)) = coarse {
            store.taken_absent = store.take_absent(&log, coarse_cut)?;
        }
        Ok(store)
    }

    /// Sets what undecided classes of a decided unit are taken as, and
    /// rewrites the table with it.
    pub fn set_defaults(&mut self, defaults: Bits) -> Result<()> {
        self.defaults = defaults;
        if self.cut().is_some() {
            self.write_tables(0..self.images.len())?;
        }
        Ok(())
    }

    /// The rows `labels.csv` is made from: the decisions, undecided classes
    /// of a decided unit filled from the defaults.
    pub fn rows(&self) -> Bits {
        filled(self.log.current(), &self.defaults)
    }

    /// The tile size, once chosen.
    pub fn cut(&self) -> Option<Cut> {
        self.settings.cut
    }

    /// Chooses the tile size; refused once anything is decided, since the
    /// decisions belong to the tiles they were taken on.
    pub fn set_cut(&mut self, cut: Cut) -> Result<()> {
        if self.settings.cut == Some(cut) {
            return Ok(());
        }
        if !self.log.decisions.is_empty() {
            return Err(Error::Input(format!(
                "{} decisions are recorded on tiles of {}: the size can no longer change (label into a new --out folder for another size)",
                self.log.decisions.len(),
                self.settings.cut.map(Cut::name).unwrap_or_default()
            )));
        }
        for img in &self.images {
            units(img, cut)?;
        }
        self.settings.cut = Some(cut);
        self.save_settings()?;
        self.write_tables(0..self.images.len())
    }

    /// The units of image `i` under the chosen cut.
    pub fn units(&self, i: usize) -> Result<Vec<Unit>> {
        let cut = self.require_cut()?;
        let img = self
            .images
            .get(i)
            .ok_or_else(|| Error::Input(format!("there is no image {i}")))?;
        units(img, cut)
    }

    /// Records a decision on unit `u` of image `i` and writes every file
    /// before returning; on a failure the decision is not kept.
    pub fn decide(&mut self, i: usize, u: usize, class: usize, present: bool) -> Result<()> {
        let unit = *self
            .units(i)?
            .get(u)
            .ok_or_else(|| Error::Input(format!("image {i} has no tile {u}")))?;
        if class >= self.settings.classes.len() {
            return Err(Error::Input(format!("there is no class {class}")));
        }
        self.log.decisions.push(Decision {
            image: self.images[i].name.clone(),
            x: unit.x,
            y: unit.y,
            class,
            present,
        });
        // Only this image's tiles can have become complete.
        let written = self.write_tables(i..i + 1);
        if written.is_err() {
            self.log.decisions.pop();
        }
        written
    }

    /// Records as absent every unit that the coarse labelling (the same
    /// images at a larger tile, or whole) already has absent
    /// ([`implied_absent`]) and writes the tables: a finer labelling then
    /// asks only about the units inside present ones. Returns how many
    /// decisions it added; units decided here before are kept as they are.
    fn take_absent(&mut self, coarse: &Log, coarse_cut: Cut) -> Result<usize> {
        let cut = self.require_cut()?;
        let implied = implied_absent(
            &self.images,
            cut,
            &self.settings.classes,
            &self.log.current(),
            coarse,
            coarse_cut,
        )?;
        if implied.is_empty() {
            return Ok(0);
        }
        let (before, added) = (self.log.decisions.len(), implied.len());
        self.log.decisions.extend(implied);
        if let Err(e) = self.write_tables(0..self.images.len()) {
            self.log.decisions.truncate(before);
            return Err(e);
        }
        Ok(added)
    }

    /// Decisions still open: units times classes, less those decided.
    pub fn open_decisions(&self) -> Result<usize> {
        let Some(cut) = self.cut() else {
            return Ok(0);
        };
        let current = self.log.current();
        let mut open = 0;
        for img in &self.images {
            for u in units(img, cut)? {
                let decided = current
                    .get(&(img.name.clone(), u.x, u.y))
                    .map_or(0, |b| b.iter().filter(|b| b.is_some()).count());
                open += self.settings.classes.len() - decided;
            }
        }
        Ok(open)
    }

    /// Takes back the last decision (also one from before a restart).
    pub fn undo(&mut self) -> Result<Decision> {
        let last = self
            .log
            .decisions
            .pop()
            .ok_or_else(|| Error::Input("nothing to undo".into()))?;
        if let Err(e) = self.write_tables(0..self.images.len()) {
            self.log.decisions.push(last);
            return Err(e);
        }
        Ok(last)
    }

    /// Writes what follows from the log: the missing tile files of the
    /// images in `tiles_of`, `labels.csv`, then `decisions.csv` (a stop
    /// between the two is mended at start).
    fn write_tables(&mut self, tiles_of: std::ops::Range<usize>) -> Result<()> {
        let cut = self.require_cut()?;
        if let Cut::Tile(_) = cut {
            self.write_tile_files(cut, tiles_of)?;
        }
        let out = self.out.clone();
        let folder = self.folder.clone();
        let rows = self.rows();
        let table = labels_csv(&self.settings.classes, &rows, &self.images, cut, |img| {
            image_path(&folder, &out, img)
        })?;
        write_atomic(&self.out.join("labels.csv"), table.as_bytes())?;
        write_atomic(
            &self.out.join("decisions.csv"),
            self.log.to_csv().as_bytes(),
        )?;
        Ok(())
    }

    /// Writes the pixels of every fully decided tile of the images in
    /// `images` that has no file yet, and removes those of tiles no longer
    /// fully decided (undone).
    fn write_tile_files(&mut self, cut: Cut, images: std::ops::Range<usize>) -> Result<()> {
        let current = self.rows();
        for i in images {
            for unit in units(&self.images[i], cut)? {
                let key = (self.images[i].name.clone(), unit.x, unit.y);
                let complete = current
                    .get(&key)
                    .is_some_and(|bits| bits.iter().all(Option::is_some));
                let path = self.out.join(tile_file(&self.images[i].name, &unit));
                if !complete {
                    // Undone: its pixels are no longer a row's.
                    match std::fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(Error::io(&path, e))
                        }
                        _ => continue,
                    }
                }
                if path.exists() {
                    continue;
                }
                std::fs::create_dir_all(self.out.join("tiles"))
                    .map_err(|e| Error::io(self.out.join("tiles"), e))?;
                let img = &self.images[i];
                let crop = self.decoded.get(&img.path)?.crop_frame(
                    unit.x,
                    unit.y,
                    unit.width,
                    unit.height,
                    &img.path,
                )?;
                let depth = crop.bit_depth.min(16);
                replace_with(&path, |tmp| save_gray(&crop.plane, depth, tmp))?;
            }
        }
        Ok(())
    }

    fn require_cut(&self) -> Result<Cut> {
        self.settings
            .cut
            .ok_or_else(|| Error::Input("choose a tile size first".into()))
    }

    fn save_settings(&self) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.settings)
            .map_err(|e| Error::Input(format!("session settings: {e}")))?;
        write_atomic(&self.out.join("session.json"), text.as_bytes())?;
        Ok(())
    }
}

/// The decisions and tile size of the labelling folder `coarse`, refused
/// unless it is a labelling of some of `classes` at a larger tile than
/// `cut` (or whole images), other than the folder `out` itself.
fn coarser_labelling(
    coarse: &Path,
    out: &Path,
    cut: Option<Cut>,
    classes: &[String],
) -> Result<(Log, Cut)> {
    let side = match cut {
        Some(Cut::Tile(side)) => side,
        Some(Cut::Whole) => {
            return Err(Error::Input(
                "whole images cannot be labelled finer than another labelling: give --tile".into(),
            ))
        }
        None => return Err(Error::Input(
            "--finer-of needs this labelling's tile size: give --tile (e.g. half the coarse one)"
                .into(),
        )),
    };
    if let (Ok(a), Ok(b)) = (coarse.canonicalize(), out.canonicalize()) {
        if a == b {
            return Err(Error::Input(format!(
                "--finer-of {} is this labelling's own folder: name the coarser one",
                coarse.display()
            )));
        }
    }
    let settings = read_settings(coarse)?.ok_or_else(|| {
        Error::Input(format!(
            "{} is not a labelling folder (it has no session.json)",
            coarse.display()
        ))
    })?;
    let coarse_cut = settings
        .cut
        .ok_or_else(|| Error::Input(format!("{} has no tile size chosen yet", coarse.display())))?;
    if let Cut::Tile(c) = coarse_cut {
        if c <= side {
            return Err(Error::Input(format!(
                "{} is labelled at {c} px tiles, not coarser than this labelling's {side} px",
                coarse.display()
            )));
        }
    }
    if !classes.iter().any(|c| settings.classes.contains(c)) {
        return Err(Error::Input(format!(
            "{} is labelled for {}, none of this labelling's classes ({})",
            coarse.display(),
            settings.classes.join(","),
            classes.join(",")
        )));
    }
    Ok((read_log(coarse, &settings.classes)?, coarse_cut))
}

/// The settings of the labelling folder `out`, if it has any (read only).
pub fn read_settings(out: &Path) -> Result<Option<Settings>> {
    let path = out.join("session.json");
    match nemascope_core::files::read_text(&path) {
        Ok(text) => {
            Ok(Some(serde_json::from_str(&text).map_err(|e| {
                Error::Input(format!("{}: {e}", path.display()))
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// The decisions recorded in the labelling folder `out` (read only).
pub fn read_log(out: &Path, classes: &[String]) -> Result<Log> {
    let path = out.join("decisions.csv");
    match nemascope_core::files::read_text(&path) {
        Ok(text) => Log::parse(&text, classes, &path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Log::new(classes.to_vec())),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// A whole image's path in `labels.csv`: relative when the output folder
/// sits in the image folder (the default), else absolute.
fn image_path(folder: &Path, out: &Path, img: &ImageInfo) -> String {
    if out.parent() == Some(folder) && img.path == folder.join(&img.name) {
        format!("../{}", img.name)
    } else {
        let abs = std::path::absolute(&img.path).unwrap_or_else(|_| img.path.clone());
        abs.display().to_string()
    }
}

/// Class names the generic layout can hold as columns.
fn check_classes(classes: &[String]) -> Result<Vec<String>> {
    for (k, c) in classes.iter().enumerate() {
        let reserved = c == "image" || c.ends_with("_mask") || c.ends_with("_count");
        if c.is_empty()
            || reserved
            || !c
                .chars()
                .all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '-')
        {
            return Err(Error::Input(format!(
                "class name `{c}`: use letters, digits, `_` or `-` (not `image`, nor ending in _mask or _count)"
            )));
        }
        if classes[..k].contains(c) {
            return Err(Error::Input(format!("class `{c}` is named twice")));
        }
    }
    Ok(classes.to_vec())
}

/// The images of `folder` (not its subfolders), by name; every file that
/// looks like an image but whose header does not read is listed at once.
pub fn scan(folder: &Path) -> Result<Vec<ImageInfo>> {
    let entries = std::fs::read_dir(folder).map_err(|e| {
        Error::Input(format!(
            "cannot read the image folder {} ({e})",
            folder.display()
        ))
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(folder, e))?.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if is_image && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(Error::Input(format!(
            "no images in {} (looked for .{} files)",
            folder.display(),
            IMAGE_EXTENSIONS.join(", .")
        )));
    }
    describe(paths, folder)
}

/// The images at `paths`, named by file name. Each is decoded once here,
/// with the limits `count` uses (`display::limits`), so an image the page
/// could not show or the unit would refuse (a decompression bomb, a header
/// that lies about its size, a truncated file, a FIFO) stops the session
/// before it starts; every one that does not read is listed at once.
/// `place` names where they are in the message.
pub fn describe(paths: Vec<PathBuf>, place: &Path) -> Result<Vec<ImageInfo>> {
    let mut images: Vec<ImageInfo> = Vec::new();
    for path in &paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if images.iter().any(|i| i.name == name) {
            return Err(Error::Input(format!(
                "two images are named {name}; review one sample (folder) at a time"
            )));
        }
        images.push(ImageInfo {
            name,
            path: path.clone(),
            width: 0,
            height: 0,
        });
    }
    // Decoded side by side, one image a thread at a time.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = images.len().div_ceil(threads).max(1);
    let bad: Vec<String> = std::thread::scope(|scope| {
        let jobs: Vec<_> = images
            .chunks_mut(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut bad = Vec::new();
                    for img in part {
                        match load_image(&img.path, display::limits()) {
                            Ok(d) => (img.width, img.height) = (d.width(), d.height()),
                            Err(e) => bad.push(format!("  {}: {}", img.name, short(&e, &img.path))),
                        }
                    }
                    bad
                })
            })
            .collect();
        jobs.into_iter()
            .flat_map(|j| {
                j.join()
                    .unwrap_or_else(|_| vec!["  (a decoder failed)".into()])
            })
            .collect()
    });
    if !bad.is_empty() {
        return Err(Error::Input(format!(
            "{} image(s) in {} cannot be read; move them out of the folder or replace them:\n{}",
            bad.len(),
            place.display(),
            bad.join("\n")
        )));
    }
    Ok(images)
}

/// An image error without the path the list already names.
fn short(e: &nemascope_core::Error, path: &Path) -> String {
    match e {
        nemascope_core::Error::Image { reason, .. } => reason.clone(),
        other => other
            .to_string()
            .replace(&format!("{}: ", path.display()), ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(n: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for k in 0..n {
            let img = image::GrayImage::from_fn(96, 64, |x, y| {
                image::Luma([(x * 2 + y + k as u32) as u8])
            });
            img.save(dir.path().join(format!("f{k}.png"))).unwrap();
        }
        dir
    }

    fn opts(dir: &Path, cut: Option<Cut>) -> Options {
        Options {
            folder: dir.to_path_buf(),
            out: None,
            classes: vec!["egg".into()],
            cut,
            images: vec![],
            finer_of: None,
        }
    }

    #[test]
    fn decisions_survive_a_restart_and_undo_reaches_before_it() {
        let dir = folder(2);
        let mut s = Store::open(&opts(dir.path(), Some(Cut::Tile(32)))).unwrap();
        assert_eq!(s.units(0).unwrap().len(), 6);
        s.decide(0, 0, 0, true).unwrap();
        s.decide(0, 1, 0, false).unwrap();
        drop(s);
        let mut s = Store::open(&Options {
            classes: vec![],
            cut: None,
            ..opts(dir.path(), None)
        })
        .unwrap();
        assert_eq!(s.cut(), Some(Cut::Tile(32)));
        let out = dir.path().join(DEFAULT_OUT);
        assert!(out.join("tiles/f0.png_x0032_y0000.png").is_file());
        assert_eq!(s.undo().unwrap().x, 32);
        assert!(
            !out.join("tiles/f0.png_x0032_y0000.png").exists(),
            "an undone tile's file goes with it"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("labels.csv")).unwrap(),
            "image,egg\ntiles/f0.png_x0000_y0000.png,1\n"
        );
        let tile = image::open(out.join("tiles/f0.png_x0000_y0000.png")).unwrap();
        assert_eq!((tile.width(), tile.height()), (32, 32));
        assert_eq!(tile.to_luma8().get_pixel(3, 2).0[0], 8);
        assert!(s
            .set_cut(Cut::Tile(48))
            .unwrap_err()
            .to_string()
            .contains("no longer change"));
    }

    #[test]
    fn a_second_server_on_the_folder_is_refused() {
        let dir = folder(1);
        let _first = Store::open(&opts(dir.path(), None)).unwrap();
        let e = Store::open(&opts(dir.path(), None)).err().unwrap();
        assert!(matches!(e, Error::Busy(_)), "{e}");
    }

    #[test]
    fn bad_folders_are_named() {
        let empty = tempfile::tempdir().unwrap();
        let e = Store::open(&opts(empty.path(), None))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no images"), "{e}");
        let dir = folder(1);
        std::fs::write(dir.path().join("broken.png"), b"not a png").unwrap();
        let e = Store::open(&opts(dir.path(), None))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("broken.png") && e.contains("1 image(s)"), "{e}");
        std::fs::remove_file(dir.path().join("broken.png")).unwrap();
        let e = Store::open(&opts(dir.path(), Some(Cut::Tile(80))))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("larger than f0.png (96×64)"), "{e}");
        assert!(
            !dir.path().join(DEFAULT_OUT).exists(),
            "a refused start leaves no output folder"
        );
        let e = Store::open(&Options {
            classes: vec!["egg_count".into()],
            ..opts(dir.path(), None)
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("egg_count"), "{e}");
    }

    /// A PNG of `w`×`h` that is all header: what a decompression bomb or a
    /// broken upload looks like to a reader of headers only.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = |kind: &[u8], data: &[u8]| {
            v.extend((data.len() as u32).to_be_bytes());
            let mut c = kind.to_vec();
            c.extend(data);
            v.extend(&c);
            v.extend(crc32fast::hash(&c).to_be_bytes());
        };
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 0, 0, 0, 0]);
        chunk(b"IHDR", &ihdr);
        chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]);
        chunk(b"IEND", &[]);
        v
    }

    /// A little-endian TIFF header for an 8-bit gray `w`×`h` image whose
    /// pixels are not there.
    fn tiff_header(w: u32, h: u32) -> Vec<u8> {
        let mut v = b"II*\0".to_vec();
        v.extend(8u32.to_le_bytes());
        let entries: [(u16, u16, u32); 8] = [
            (256, 4, w),
            (257, 4, h),
            (258, 3, 8),
            (259, 3, 1),
            (262, 3, 1),
            (273, 4, 200),
            (278, 4, h),
            (279, 4, w * h),
        ];
        v.extend((entries.len() as u16).to_le_bytes());
        for (tag, kind, value) in entries {
            v.extend(tag.to_le_bytes());
            v.extend(kind.to_le_bytes());
            v.extend(1u32.to_le_bytes());
            v.extend(value.to_le_bytes());
        }
        v.extend(0u32.to_le_bytes());
        v
    }

    /// Images that only their headers would let in are refused at start,
    /// each by name, with the words `count` uses.
    #[test]
    fn bombs_lying_headers_and_fifos_are_refused_before_the_session_starts() {
        let dir = folder(1);
        let d = dir.path();
        std::fs::write(d.join("bomb.png"), png_header(60_000, 60_000)).unwrap();
        std::fs::write(d.join("liar.png"), png_header(4000, 3000)).unwrap();
        std::fs::write(d.join("liar.tif"), tiff_header(16_000, 16_000)).unwrap();
        #[cfg(unix)]
        assert!(std::process::Command::new("mkfifo")
            .arg(d.join("pipe.png"))
            .status()
            .unwrap()
            .success());
        let e = Store::open(&opts(d, None)).err().unwrap().to_string();
        assert!(e.contains("3 image(s)"), "{e}");
        assert!(
            e.contains("bomb.png: too large for the configured limits"),
            "{e}"
        );
        assert!(e.contains("liar.png: cannot decode"), "{e}");
        assert!(e.contains("liar.tif: "), "{e}");
        assert!(!d.join(DEFAULT_OUT).exists(), "nothing written: {e}");
        // A FIFO named as an image (a review's counted image) is refused by name.
        let e = describe(vec![d.join("pipe.png")], d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pipe.png: is a FIFO"), "{e}");
    }
}
