//! Where the service loop's frames come from: a folder the acquisition
//! software writes into, a fixed list of files, the synthetic generator, or
//! a V4L2 camera (feature `v4l2`). Each frame carries a `source` key that
//! the journal keeps; a source skips keys the journal already holds, so a
//! restart after a crash neither loses nor double-counts a frame.

#[cfg(feature = "v4l2")]
pub mod camera;
pub mod inputs;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nemascope_core::imageio::{load_pixels, LoadLimits, Pixels};
use nemascope_core::synth::{generate, SynthConfig};

use crate::frames::inputs::{expand, is_image, path_key};
use crate::journal::Sources;

/// One frame to count, as a source acquired it (the decoded pixels and
/// where they came from).
#[derive(Debug, Clone)]
pub struct Acquired {
    /// At the file's own depth (16-bit gray stays 2 bytes a pixel).
    pub pixels: Pixels,
    pub sample: String,
    /// Unique key: the file's path under the watched folder, or a camera
    /// or generator frame id.
    pub source: String,
    /// A file's size and change time when it was read ([`identity`]).
    pub identity: Option<String>,
}

/// What a source has now.
#[derive(Debug)]
pub enum Next {
    Frame(Acquired),
    /// A frame that cannot be read (named, with why); the source moves on
    /// and does not offer it again unless the file changes.
    Failed {
        source: String,
        sample: String,
        identity: Option<String>,
        error: String,
    },
    /// Nothing ready yet; ask again later.
    Idle,
    /// Nothing will ever come (a list or generator that is used up).
    Finished,
}

pub trait FrameSource {
    fn next(&mut self) -> Next;
}

/// At most one frame every `interval` (generators and cameras).
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    last: Option<Instant>,
}

impl Pacer {
    pub fn new(interval: Duration) -> Self {
        Pacer {
            interval,
            last: None,
        }
    }

    /// Whether a frame is due now; if so the clock restarts.
    pub fn due(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.interval)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// Acquisition software often writes `.name.tmp` or `~name` and renames.
/// Judged on the name's bytes: a name that is not UTF-8 is not hidden.
fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .map(|n| n.as_bytes())
        .is_none_or(|n| n.starts_with(b".") || n.starts_with(b"~"))
}

/// A file's identity from its [`Stamp`]: size and modification time in
/// nanoseconds. Not the inode, which FAT cards and network shares renumber
/// across mounts (every frame would count again after a reboot).
pub fn identity(stamp: &Stamp) -> String {
    let ns = stamp
        .1
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or_else(|| "?".into(), |d| d.as_nanos().to_string());
    format!("{}:{ns}", stamp.0)
}

fn stamp_of(meta: &std::fs::Metadata) -> Stamp {
    (meta.len(), meta.modified().ok())
}

fn read(path: &Path) -> Result<Pixels, String> {
    load_pixels(path, LoadLimits::default()).map_err(|e| e.to_string())
}

/// A file's size and change time: when both stay put for the settle time
/// the writer is done with it.
pub type Stamp = (u64, Option<SystemTime>);

/// A folder watched by polling (works on every filesystem, including
/// network shares and FAT cards, where inotify does not).
#[derive(Debug)]
pub struct FolderSource {
    root: PathBuf,
    poll: Duration,
    settle: Duration,
    sample: String,
    /// Keys already counted or refused, with the identity of the file that
    /// was (the journal's at start); refused reads by stamp.
    done: Sources,
    failed: BTreeMap<String, Stamp>,
    /// Files seen but not yet settled: stamp and since when unchanged.
    pending: BTreeMap<PathBuf, (Stamp, Instant)>,
    ready: VecDeque<PathBuf>,
    last_scan: Option<Instant>,
    /// The folder could not be read at the last scan (said once).
    unreadable: bool,
    /// Sample folders that could not be read at the last scan.
    unreadable_subs: HashSet<PathBuf>,
}

/// `plot-7/f001.png` for a file in a sample folder, `f001.png` at the top:
/// the `source` a watched folder's frame is journaled under.
fn folder_key(root: &Path, p: &Path) -> String {
    path_key(p.strip_prefix(root).unwrap_or(p))
}

/// What one look at a watched folder found.
#[derive(Debug, Default)]
struct Listing {
    /// Images in the folder and one level of sample folders below it.
    files: Vec<PathBuf>,
    /// Sample folders that could not be read, each with why: what was
    /// counted in them is not forgotten, and the unit says so.
    unreadable: BTreeMap<PathBuf, String>,
}

/// Lists a watched folder; an error when the folder itself cannot be read
/// (a card pulled, a share gone).
fn list_folder(root: &Path) -> std::io::Result<Listing> {
    let mut out = Listing::default();
    let top = std::fs::read_dir(root)?;
    for e in top.flatten() {
        let p = e.path();
        if is_hidden(&p) {
            continue;
        }
        // Links are followed: a linked sample folder or frame counts like
        // any other. An image name that cannot be followed is listed all
        // the same, so it is refused by name when read, not lost.
        let dir = match e.file_type() {
            Ok(t) if t.is_symlink() => std::fs::metadata(&p).map(|m| m.is_dir()),
            Ok(t) => Ok(t.is_dir()),
            Err(e) => Err(e),
        };
        match dir {
            Ok(true) => match std::fs::read_dir(&p) {
                Ok(sub) => out.files.extend(
                    sub.flatten()
                        .map(|e| e.path())
                        .filter(|p| !is_hidden(p) && is_image(p) && !p.is_dir()),
                ),
                Err(e) => {
                    out.unreadable.insert(p, e.to_string());
                }
            },
            _ if is_image(&p) => out.files.push(p),
            Ok(false) => {}
            Err(e) => {
                out.unreadable.insert(p, e.to_string());
            }
        }
    }
    out.files.sort();
    Ok(out)
}

/// The frames in a watched folder now (one listing), for deciding which
/// journaled sources could come again.
#[derive(Debug, Default)]
pub struct FolderKeys {
    files: HashSet<String>,
    /// `plot-7/` for each sample folder that cannot be read now.
    away: Vec<String>,
}

impl FolderKeys {
    /// Whether a frame journaled under `key` could be offered again: its
    /// file is there, or in a folder that cannot be read now.
    pub fn could_come_again(&self, key: &str) -> bool {
        self.files.contains(key) || self.away.iter().any(|a| key.starts_with(a.as_str()))
    }
}

/// The [`FolderKeys`] of `root` now.
pub fn folder_keys(root: &Path) -> FolderKeys {
    let l = list_folder(root).unwrap_or_default();
    FolderKeys {
        files: l.files.iter().map(|p| folder_key(root, p)).collect(),
        away: l
            .unreadable
            .keys()
            .map(|d| folder_key(root, d) + "/")
            .collect(),
    }
}

impl FolderSource {
    pub fn new(root: &Path, poll: Duration, settle: Duration, sample: &str, done: Sources) -> Self {
        FolderSource {
            root: root.to_path_buf(),
            poll,
            settle,
            sample: sample.into(),
            done,
            failed: BTreeMap::new(),
            pending: BTreeMap::new(),
            ready: VecDeque::new(),
            last_scan: None,
            unreadable: false,
            unreadable_subs: HashSet::new(),
        }
    }

    fn key(&self, p: &Path) -> String {
        folder_key(&self.root, p)
    }

    /// The folder's listing; when it, or a sample folder in it, cannot be
    /// read the unit says so once (and again when it is back): nothing in
    /// it is counted meanwhile, and nothing counted in it is forgotten.
    fn list(&mut self) -> Option<Listing> {
        let listed = list_folder(&self.root);
        match (&listed, self.unreadable) {
            (Err(e), false) => crate::say!(
                "source: cannot read the watched folder {} ({e}); nothing is counted until it is back",
                self.root.display()
            ),
            (Ok(_), true) => crate::say!("source: {} can be read again", self.root.display()),
            _ => {}
        }
        self.unreadable = listed.is_err();
        let l = listed.ok()?;
        for (d, why) in &l.unreadable {
            if !self.unreadable_subs.contains(d) {
                crate::say!(
                    "source: cannot read the sample folder {} ({why}); its frames are not counted until it can be",
                    d.display()
                );
            }
        }
        for d in &self.unreadable_subs {
            if !l.unreadable.contains_key(d) && d.is_dir() {
                crate::say!("source: {} can be read again", d.display());
            }
        }
        self.unreadable_subs = l.unreadable.keys().cloned().collect();
        Some(l)
    }

    fn scan(&mut self, now: Instant) {
        // Nothing is forgotten while the folder is away.
        let Some(listing) = self.list() else {
            return;
        };
        let away = FolderKeys {
            files: HashSet::new(),
            away: listing
                .unreadable
                .keys()
                .map(|d| folder_key(&self.root, d) + "/")
                .collect(),
        };
        let mut settled = Vec::new();
        let mut present = HashSet::new();
        let mut listed = HashSet::new();
        for p in listing.files {
            let key = self.key(&p);
            listed.insert(key.clone());
            // A link that cannot be followed gets an empty stamp: it
            // settles, is read and refused by name.
            let stamp = std::fs::metadata(&p).map_or((0, None), |m| stamp_of(&m));
            // Counted, unless the file under that name was replaced since
            // (`mv new.tif B10.tif`: another size or change time).
            let counted = self
                .done
                .get(&key)
                .map(|id| id.as_ref().is_none_or(|id| *id == identity(&stamp)));
            if counted == Some(true) {
                continue;
            }
            if self.failed.get(&key) == Some(&stamp) {
                continue;
            }
            present.insert(p.clone());
            match self.pending.get(&p) {
                Some((s, since)) if *s == stamp => {
                    if now.duration_since(*since) >= self.settle && !self.ready.contains(&p) {
                        settled.push((stamp.1, p.clone()));
                    }
                }
                _ => {
                    self.pending.insert(p.clone(), (stamp, now));
                }
            }
        }
        // Files that went away before they settled are forgotten, and so
        // are counted or failed ones that went away: what is held stays as
        // small as the folder, and a new frame under an old name counts.
        self.pending.retain(|p, _| present.contains(p));
        let kept = |k: &String| listed.contains(k) || away.could_come_again(k);
        self.done.retain(|k, _| kept(k));
        self.failed.retain(|k, _| kept(k));
        // Oldest first: counted in the order they were taken.
        settled.sort();
        self.ready.extend(settled.into_iter().map(|(_, p)| p));
    }
}

impl FrameSource for FolderSource {
    fn next(&mut self) -> Next {
        let now = Instant::now();
        if self.ready.is_empty()
            && self
                .last_scan
                .is_none_or(|t| now.duration_since(t) >= self.poll)
        {
            self.last_scan = Some(now);
            self.scan(now);
        }
        let Some(p) = self.ready.pop_front() else {
            return Next::Idle;
        };
        let key = self.key(&p);
        let stamp = self.pending.remove(&p).map(|(s, _)| s);
        let sample = match p.parent() {
            Some(d) if d != self.root => d
                .file_name()
                .map_or(self.sample.clone(), |n| path_key(Path::new(n))),
            _ => self.sample.clone(),
        };
        let id = stamp.as_ref().map(identity);
        match read(&p) {
            Ok(pixels) => {
                // Counted (or refused by the counter): the caller journals
                // it; not offered again unless the file is replaced.
                self.done.insert(key.clone(), id.clone());
                Next::Frame(Acquired {
                    pixels,
                    sample,
                    source: key,
                    identity: id,
                })
            }
            Err(error) => {
                if let Some(s) = stamp {
                    self.failed.insert(key.clone(), s);
                }
                Next::Failed {
                    source: key,
                    sample,
                    identity: id,
                    error,
                }
            }
        }
    }
}

/// A fixed list of files and folders (as `count` takes them), each counted
/// once; those the journal holds are skipped.
#[derive(Debug)]
pub struct FilesSource {
    queue: VecDeque<(PathBuf, String)>,
}

impl FilesSource {
    pub fn new(
        paths: &[PathBuf],
        sample: Option<&str>,
        done: &Sources,
    ) -> nemascope_core::Result<Self> {
        let queue = expand(paths, sample)?
            .into_iter()
            .map(|i| (i.path, i.sample))
            .filter(|(p, _)| !done.contains_key(&path_key(p)))
            .collect();
        Ok(FilesSource { queue })
    }
}

impl FrameSource for FilesSource {
    fn next(&mut self) -> Next {
        let Some((p, sample)) = self.queue.pop_front() else {
            return Next::Finished;
        };
        let source = path_key(&p);
        let identity = std::fs::metadata(&p).ok().map(|m| identity(&stamp_of(&m)));
        match read(&p) {
            Ok(pixels) => Next::Frame(Acquired {
                pixels,
                sample,
                source,
                identity,
            }),
            Err(error) => Next::Failed {
                source,
                sample,
                identity,
                error,
            },
        }
    }
}

/// Seeded synthetic frames, one every `interval`.
#[derive(Debug)]
pub struct SynthSource {
    cfg: SynthConfig,
    seed: u64,
    next: u64,
    frames: u64,
    pacer: Pacer,
    sample: String,
    done: Sources,
}

impl SynthSource {
    pub fn new(
        cfg: SynthConfig,
        seed: u64,
        frames: u64,
        interval: Duration,
        sample: &str,
        done: Sources,
    ) -> Self {
        SynthSource {
            cfg,
            seed,
            next: 0,
            frames,
            pacer: Pacer::new(interval),
            sample: sample.into(),
            done,
        }
    }
}

impl FrameSource for SynthSource {
    fn next(&mut self) -> Next {
        loop {
            if self.next >= self.frames {
                return Next::Finished;
            }
            let source = format!("synth-{}-{}", self.seed, self.next);
            if self.done.contains_key(&source) {
                self.next += 1;
                continue;
            }
            if !self.pacer.due() {
                return Next::Idle;
            }
            let i = self.next;
            self.next += 1;
            return match generate(&self.cfg, self.seed, i) {
                Ok(f) => Next::Frame(Acquired {
                    pixels: Pixels::Float(f.image),
                    sample: self.sample.clone(),
                    source,
                    identity: None,
                }),
                Err(e) => Next::Failed {
                    source,
                    sample: self.sample.clone(),
                    identity: None,
                    error: e.to_string(),
                },
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nemascope_core::imageio::save_gray8;

    fn write(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let plane = nemascope_core::Plane::from_vec(8, 8, vec![0.5; 64]).unwrap();
        save_gray8(&plane, p).unwrap();
    }

    fn drain(s: &mut FolderSource) -> Vec<(String, String)> {
        let mut out = Vec::new();
        loop {
            match s.next() {
                Next::Frame(f) => out.push((f.sample, f.source)),
                Next::Failed { source, .. } => out.push(("FAILED".into(), source)),
                Next::Idle | Next::Finished => return out,
            }
        }
    }

    #[test]
    fn folder_gives_settled_images_once_with_their_sample() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(&root.join("plot-7/a.png"));
        write(&root.join("loose.png"));
        write(&root.join("plot-7/.b.png")); // being written under a hidden name
        std::fs::write(root.join("plot-7/notes.txt"), "x").unwrap();
        std::fs::write(root.join("broken.png"), b"\x89PNG\r\n").unwrap();
        let done: Sources = [("old.png".to_string(), None)].into();
        write(&root.join("old.png")); // journaled before a restart
        let settle = Duration::from_millis(150);
        let mut s = FolderSource::new(root, Duration::ZERO, settle, "bench", done);
        // First sight: not settled yet.
        assert!(drain(&mut s).is_empty());
        std::thread::sleep(settle + Duration::from_millis(50));
        let mut got = drain(&mut s);
        got.sort();
        assert_eq!(
            got,
            [
                ("FAILED".into(), "broken.png".into()),
                ("bench".into(), "loose.png".into()),
                ("plot-7".into(), "plot-7/a.png".into()),
            ]
        );
        // Nothing is offered twice; the broken file is not retried while
        // unchanged, and is once it is rewritten.
        std::thread::sleep(settle + Duration::from_millis(50));
        assert!(drain(&mut s).is_empty());
        write(&root.join("broken.png"));
        drain(&mut s);
        std::thread::sleep(settle + Duration::from_millis(50));
        assert_eq!(drain(&mut s), [("bench".into(), "broken.png".into())]);
        // A counted frame that went away is forgotten; a new one under its
        // name is a new frame.
        std::fs::remove_file(root.join("loose.png")).unwrap();
        drain(&mut s);
        assert!(!s.done.contains_key("loose.png") && s.done.contains_key("plot-7/a.png"));
        write(&root.join("loose.png"));
        drain(&mut s);
        std::thread::sleep(settle + Duration::from_millis(50));
        assert_eq!(drain(&mut s), [("bench".into(), "loose.png".into())]);
    }

    #[test]
    fn names_that_are_not_utf8_are_counted_under_keys_of_their_own() {
        use std::ffi::OsStr;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Two names that `to_string_lossy` would both make `f�.png`, and a
        // sample folder whose name is not UTF-8 either.
        let a = root.join(OsStr::from_bytes(b"f\xff.png"));
        let b = root.join(OsStr::from_bytes(b"f\xfe.png"));
        let c = root.join(OsStr::from_bytes(b"plot-\xe9")).join("g.png");
        for p in [&a, &b, &c] {
            write(p);
        }
        let settle = Duration::from_millis(50);
        let mut s = FolderSource::new(root, Duration::ZERO, settle, "s", Sources::new());
        drain(&mut s);
        std::thread::sleep(settle + Duration::from_millis(50));
        let mut got = drain(&mut s);
        got.sort();
        assert_eq!(
            got,
            [
                ("plot-\\xe9".into(), "plot-\\xe9/g.png".into()),
                ("s".into(), "f\\xfe.png".into()),
                ("s".into(), "f\\xff.png".into()),
            ]
        );
        assert_eq!(
            path_key(Path::new("a\\b")),
            "a\\\\b",
            "backslashes escaped too"
        );
        assert_eq!(folder_keys(root).files.len(), 3);
    }

    #[test]
    fn a_file_replaced_under_a_counted_name_is_a_new_frame() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let settle = Duration::from_millis(50);
        let wait = || std::thread::sleep(settle + Duration::from_millis(50));
        write(&root.join("B10.png"));
        let mut s = FolderSource::new(root, Duration::ZERO, settle, "s", Sources::new());
        drain(&mut s);
        wait();
        assert_eq!(drain(&mut s), [("s".into(), "B10.png".into())]);
        // `mv new.png B10.png`: another file (another size and time).
        let new = root.join(".new.png");
        let plane = nemascope_core::Plane::from_vec(9, 9, vec![0.25; 81]).unwrap();
        save_gray8(&plane, &new).unwrap();
        std::fs::rename(&new, root.join("B10.png")).unwrap();
        drain(&mut s);
        wait();
        let next = loop {
            match s.next() {
                Next::Frame(f) => break f,
                Next::Idle => std::thread::sleep(Duration::from_millis(10)),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(next.source, "B10.png");
        let id = next.identity.clone().expect("a file has an identity");
        wait();
        assert!(drain(&mut s).is_empty(), "and only once");
        // After a restart: the journal's identity decides.
        let restarted = |journaled: Option<String>| {
            let done: Sources = [("B10.png".to_string(), journaled)].into();
            let mut s = FolderSource::new(root, Duration::ZERO, settle, "s", done);
            drain(&mut s);
            wait();
            drain(&mut s)
        };
        assert!(restarted(Some(id)).is_empty(), "the same file");
        assert!(
            restarted(None).is_empty(),
            "a record from before identities"
        );
        let other = restarted(Some("1:2".into()));
        assert_eq!(
            other,
            [("s".into(), "B10.png".into())],
            "replaced while down"
        );
    }

    #[test]
    fn links_are_followed_and_a_folder_away_forgets_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("in"), dir.path().join("elsewhere"));
        write(&outside.join("plot-l/b.png"));
        std::fs::create_dir_all(&root).unwrap();
        std::os::unix::fs::symlink(outside.join("plot-l"), root.join("plot-l")).unwrap();
        std::os::unix::fs::symlink(outside.join("gone.png"), root.join("x.png")).unwrap();
        let settle = Duration::from_millis(50);
        let wait = || std::thread::sleep(settle + Duration::from_millis(50));
        let mut s = FolderSource::new(&root, Duration::ZERO, settle, "s", Sources::new());
        drain(&mut s);
        wait();
        let mut got = drain(&mut s);
        got.sort();
        assert_eq!(
            got,
            [
                ("FAILED".into(), "x.png".into()),
                ("plot-l".into(), "plot-l/b.png".into())
            ],
            "a linked folder is read; a dangling link is refused by name"
        );
        // The linked folder goes away (a share dropped) and comes back:
        // what was counted in it is not counted again.
        std::fs::rename(outside.join("plot-l"), outside.join("moved")).unwrap();
        drain(&mut s);
        assert!(s.unreadable_subs.contains(&root.join("plot-l")));
        assert!(s.done.contains_key("plot-l/b.png"), "remembered while away");
        assert!(folder_keys(&root).could_come_again("plot-l/b.png"));
        std::fs::rename(outside.join("moved"), outside.join("plot-l")).unwrap();
        drain(&mut s);
        wait();
        assert!(drain(&mut s).is_empty());
        // The whole folder away: nothing is forgotten either.
        std::fs::rename(&root, dir.path().join("away")).unwrap();
        drain(&mut s);
        assert!(s.unreadable && s.done.contains_key("plot-l/b.png"));
    }

    #[test]
    fn a_file_still_growing_waits() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.png");
        let settle = Duration::from_millis(200);
        let mut s = FolderSource::new(dir.path(), Duration::ZERO, settle, "s", Sources::new());
        std::fs::write(&p, b"\x89PNG").unwrap();
        drain(&mut s);
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(100));
            // The writer is still appending: the clock restarts.
            append_byte(&p);
            assert!(drain(&mut s).is_empty());
        }
    }

    fn append_byte(p: &Path) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
        f.write_all(b"\0").unwrap();
    }

    #[test]
    fn synth_skips_what_the_journal_holds_and_finishes() {
        let done: Sources = [("synth-3-0".to_string(), None)].into();
        let cfg = SynthConfig {
            width: 64,
            height: 64,
            ..SynthConfig::default()
        };
        let mut s = SynthSource::new(cfg, 3, 2, Duration::ZERO, "x", done);
        match s.next() {
            Next::Frame(f) => assert_eq!(f.source, "synth-3-1"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.next(), Next::Finished));
    }
}
