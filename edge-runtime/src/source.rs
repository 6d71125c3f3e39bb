//! Where the service loop's frames come from: a folder the acquisition
//! software writes into, a fixed list of files, the synthetic generator, or
//! a V4L2 camera (feature `v4l2`). Each frame carries a `source` key that
//! the journal keeps; a source skips keys the journal already holds, so a
//! restart after a crash neither loses nor double-counts a frame.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nemascope_core::imageio::{load_pixels, LoadLimits, Pixels};
use nemascope_core::synth::{generate, SynthConfig};

use crate::inputs::{expand, is_image};

/// One frame to count.
#[derive(Debug, Clone)]
pub struct Frame {
    /// At the file's own depth (16-bit gray stays 2 bytes a pixel).
    pub pixels: Pixels,
    pub sample: String,
    /// Unique key: the file's path under the watched folder, or a camera
    /// or generator frame id.
    pub source: String,
}

/// What a source has now.
#[derive(Debug)]
pub enum Next {
    Frame(Frame),
    /// A frame that cannot be read (named, with why); the source moves on
    /// and does not offer it again unless the file changes.
    Failed {
        source: String,
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
fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.') || n.starts_with('~'))
}

fn read(path: &Path) -> Result<Pixels, String> {
    load_pixels(path, LoadLimits::default()).map_err(|e| e.to_string())
}

/// A file's size and change time: when both stay put for the settle time
/// the writer is done with it.
type Stamp = (u64, Option<SystemTime>);

/// A folder watched by polling (works on every filesystem, including
/// network shares and FAT cards, where inotify does not).
#[derive(Debug)]
pub struct FolderSource {
    root: PathBuf,
    poll: Duration,
    settle: Duration,
    sample: String,
    /// Keys already counted (the journal's) or refused at this stamp.
    done: HashSet<String>,
    failed: BTreeMap<String, Stamp>,
    /// Files seen but not yet settled: stamp and since when unchanged.
    pending: BTreeMap<PathBuf, (Stamp, Instant)>,
    ready: VecDeque<PathBuf>,
    last_scan: Option<Instant>,
}

/// `plot-7/f001.png` for a file in a sample folder, `f001.png` at the top:
/// the `source` a watched folder's frame is journaled under.
fn folder_key(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// Images in the folder and one level of sample folders below it.
fn list_folder(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(top) = std::fs::read_dir(root) else {
        return out;
    };
    for e in top.flatten() {
        let p = e.path();
        if is_hidden(&p) {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => {
                if let Ok(sub) = std::fs::read_dir(&p) {
                    out.extend(
                        sub.flatten()
                            .map(|e| e.path())
                            .filter(|p| !is_hidden(p) && is_image(p) && p.is_file()),
                    );
                }
            }
            Ok(t) if t.is_file() && is_image(&p) => out.push(p),
            _ => {}
        }
    }
    out.sort();
    out
}

/// The keys of the frames in a watched folder now (one listing): which
/// journaled sources could come again.
pub fn folder_keys(root: &Path) -> HashSet<String> {
    list_folder(root)
        .iter()
        .map(|p| folder_key(root, p))
        .collect()
}

impl FolderSource {
    pub fn new(
        root: &Path,
        poll: Duration,
        settle: Duration,
        sample: &str,
        done: HashSet<String>,
    ) -> Self {
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
        }
    }

    fn key(&self, p: &Path) -> String {
        folder_key(&self.root, p)
    }

    fn list(&self) -> Vec<PathBuf> {
        list_folder(&self.root)
    }

    fn scan(&mut self, now: Instant) {
        let mut settled = Vec::new();
        let mut present = HashSet::new();
        let mut listed = HashSet::new();
        for p in self.list() {
            let key = self.key(&p);
            listed.insert(key.clone());
            if self.done.contains(&key) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&p) else {
                continue;
            };
            let stamp = (meta.len(), meta.modified().ok());
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
        self.done.retain(|k| listed.contains(k));
        self.failed.retain(|k, _| listed.contains(k));
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
                .map_or(self.sample.clone(), |n| n.to_string_lossy().into_owned()),
            _ => self.sample.clone(),
        };
        match read(&p) {
            Ok(pixels) => {
                // Counted: the caller journals it; never offered again.
                self.done.insert(key.clone());
                Next::Frame(Frame {
                    pixels,
                    sample,
                    source: key,
                })
            }
            Err(error) => {
                if let Some(s) = stamp {
                    self.failed.insert(key.clone(), s);
                }
                Next::Failed { source: key, error }
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
        done: &HashSet<String>,
    ) -> nemascope_core::Result<Self> {
        let queue = expand(paths, sample)?
            .into_iter()
            .map(|i| (i.path, i.sample))
            .filter(|(p, _)| !done.contains(&p.to_string_lossy().into_owned()))
            .collect();
        Ok(FilesSource { queue })
    }
}

impl FrameSource for FilesSource {
    fn next(&mut self) -> Next {
        let Some((p, sample)) = self.queue.pop_front() else {
            return Next::Finished;
        };
        let source = p.to_string_lossy().into_owned();
        match read(&p) {
            Ok(pixels) => Next::Frame(Frame {
                pixels,
                sample,
                source,
            }),
            Err(error) => Next::Failed { source, error },
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
    done: HashSet<String>,
}

impl SynthSource {
    pub fn new(
        cfg: SynthConfig,
        seed: u64,
        frames: u64,
        interval: Duration,
        sample: &str,
        done: HashSet<String>,
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
            if self.done.contains(&source) {
                self.next += 1;
                continue;
            }
            if !self.pacer.due() {
                return Next::Idle;
            }
            let i = self.next;
            self.next += 1;
            return match generate(&self.cfg, self.seed, i) {
                Ok(f) => Next::Frame(Frame {
                    pixels: Pixels::Float(f.image),
                    sample: self.sample.clone(),
                    source,
                }),
                Err(e) => Next::Failed {
                    source,
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
        let done: HashSet<String> = ["old.png".to_string()].into();
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
        assert!(!s.done.contains("loose.png") && s.done.contains("plot-7/a.png"));
        write(&root.join("loose.png"));
        drain(&mut s);
        std::thread::sleep(settle + Duration::from_millis(50));
        assert_eq!(drain(&mut s), [("bench".into(), "loose.png".into())]);
    }

    #[test]
    fn a_file_still_growing_waits() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.png");
        let settle = Duration::from_millis(200);
        let mut s = FolderSource::new(dir.path(), Duration::ZERO, settle, "s", HashSet::new());
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
        let done: HashSet<String> = ["synth-3-0".to_string()].into();
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
