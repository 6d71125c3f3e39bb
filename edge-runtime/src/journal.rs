//! The journal: every count result is appended here, with its sequence
//! number, and made durable (fsync) before it is shown or sent. After a
//! crash or power cut at any moment no result is lost or duplicated: a torn
//! last record is cut off when the journal is opened again, and sequence
//! numbers continue from the last whole record.
//!
//! File layout (`journal.bin`): an 8-byte magic, then records of
//! `len u32 | crc32 u32 | payload` (little-endian), the payload being
//! `seq u64 | JSON of the Record`. The highest sequence number the serial
//! peer acknowledged is kept beside it in `acked` (written atomically).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"NEMJRNL1";
/// No record is this long; a larger length field means damage.
const MAX_RECORD: usize = 1 << 20;
const HEADER: usize = 8;

/// One counted frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Sample the frame belongs to (folder name, barcode, operator's id).
    pub sample: String,
    /// Where the frame came from (file name, camera frame number).
    pub source: String,
    /// The counting model's classes, in its order (records written before
    /// classes were journaled counted worms, eggs and cysts).
    #[serde(default = "three_classes")]
    pub classes: Vec<String>,
    /// Objects per class, in `classes` order.
    pub counts: Vec<u32>,
    pub frame_ms: u32,
    /// Name of the model bundle that counted it.
    pub model: String,
    /// Warning bits (`protocol::warn`); `NOT_COUNTED` for a frame that
    /// was refused (its counts are zero and mean nothing).
    pub warnings: u8,
    /// Why the frame was refused (it could not be read or counted): it is
    /// journaled all the same, so it is never retried in a loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The file's identity when it was read (size and change time): a
    /// file replaced under a name already counted is a new frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// The classes of records journaled before records named theirs.
fn three_classes() -> Vec<String> {
    ["worm", "egg", "cyst"].map(String::from).to_vec()
}

impl Record {
    /// Each class with its count, in the model's order.
    pub fn class_counts(&self) -> impl Iterator<Item = (&str, u32)> {
        self.classes
            .iter()
            .map(String::as_str)
            .zip(self.counts.iter().copied())
    }
}

/// Each journaled source with the identity of the frame last journaled
/// under it (`None` for sources that have none, and for records written
/// before identities were).
pub type Sources = HashMap<String, Option<String>>;

/// Milliseconds since the Unix epoch (a record's `time_ms`).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A record with the sequence number the journal gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub record: Record,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("journal {0}: not a nemascope journal (wrong magic); it was left untouched")]
    NotAJournal(PathBuf),
    #[error("journal record {seq}: {msg}")]
    Record { seq: u64, msg: String },
}

type Result<T> = std::result::Result<T, JournalError>;

/// What opening found and mended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of a torn last record that were cut off.
    pub torn_bytes: u64,
    /// Where a damaged journal was copied before its undamaged prefix was
    /// kept (damage before the end, not a torn write).
    pub damaged_copy: Option<PathBuf>,
}

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: File,
    /// Start offset of each record; entry `i` holds sequence number `i + 1`.
    offsets: Vec<u64>,
    end: u64,
    acked: u64,
    /// The sources of the records found at open (those kept).
    sources: Sources,
    pub recovery: Recovery,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// [`nemascope_core::files::write_atomic`] (old or new content after a
/// crash, never a mix) with the journal's error.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    nemascope_core::files::write_atomic(path, bytes).map_err(|e| match e {
        nemascope_core::Error::Io { path, source } => JournalError::Io { path, source },
        other => JournalError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

fn sync_dir(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Just the `source` of a record, read while scanning.
#[derive(Deserialize)]
struct SourceOf<'a> {
    #[serde(borrow)]
    source: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    identity: Option<std::borrow::Cow<'a, str>>,
}

/// Walks the records of the `len`-byte file after the magic, reading it
/// in pieces (a journal grows for months; it is never held whole): the
/// offsets of the whole records, where the last whole one ends, and the
/// sources `keep` wants kept.
fn scan(
    file: &mut File,
    len: u64,
    keep: &mut dyn FnMut(&str) -> bool,
) -> std::io::Result<(Vec<u64>, u64, Sources)> {
    file.seek(SeekFrom::Start(HEADER as u64))?;
    let mut r = BufReader::with_capacity(64 << 10, file);
    let (mut offsets, mut sources) = (Vec::new(), Sources::new());
    let mut at = HEADER as u64;
    let mut payload = Vec::new();
    while at + 8 <= len {
        let mut head = [0u8; 8];
        r.read_exact(&mut head)?;
        let n = u32::from_le_bytes(head[..4].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4"));
        if !(8..=MAX_RECORD).contains(&n) || at + 8 + n as u64 > len {
            break;
        }
        payload.resize(n, 0);
        r.read_exact(&mut payload)?;
        let seq = u64::from_le_bytes(payload[..8].try_into().expect("8"));
        if crc32fast::hash(&payload) != crc || seq != offsets.len() as u64 + 1 {
            break;
        }
        // A record whose JSON does not read is kept (its CRC is good) and
        // refused by `get` when it is sent; it just marks no source done.
        if let Ok(s) = serde_json::from_slice::<SourceOf>(&payload[8..]) {
            if keep(&s.source) {
                // Later records win: the identity last counted.
                let id = s.identity.map(|i| i.into_owned());
                sources.insert(s.source.into_owned(), id);
            }
        }
        offsets.push(at);
        at += 8 + n as u64;
    }
    Ok((offsets, at, sources))
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, cutting off a torn last
    /// record. Damage before the end (a bad record followed by more data)
    /// is not silently dropped: the whole file is first copied to
    /// `journal.bin.damaged-<n>`, then the undamaged prefix is kept.
    pub fn open(dir: &Path) -> Result<Journal> {
        Self::open_keeping(dir, &mut |_| true)
    }

    /// [`Journal::open`], keeping in [`Journal::sources`] only the sources
    /// `keep` asks for: a unit keeps those of frames still waiting in its
    /// folder, so what it holds does not grow with months of records.
    pub fn open_keeping(dir: &Path, keep: &mut dyn FnMut(&str) -> bool) -> Result<Journal> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("journal.bin");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        let mut len = file.metadata().map_err(io(&path))?.len();
        let mut recovery = Recovery::default();
        let mut magic = Vec::with_capacity(HEADER);
        (&mut file)
            .take(HEADER as u64)
            .read_to_end(&mut magic)
            .map_err(io(&path))?;
        if magic.len() < HEADER {
            if !MAGIC.starts_with(&magic) {
                return Err(JournalError::NotAJournal(path));
            }
            // New, or torn while its magic was written.
            file.set_len(0).map_err(io(&path))?;
            file.seek(SeekFrom::Start(0)).map_err(io(&path))?;
            file.write_all(MAGIC).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
            sync_dir(&path)?;
            len = HEADER as u64;
        } else if magic[..] != MAGIC[..] {
            return Err(JournalError::NotAJournal(path));
        }
        let (offsets, end, sources) = scan(&mut file, len, keep).map_err(io(&path))?;
        if end < len {
            let rest = len - end;
            // A torn append leaves at most one partial record at the end;
            // anything longer than the longest record is damage.
            let torn = rest < 8 + MAX_RECORD as u64 && {
                let mut tail = Vec::with_capacity(rest as usize);
                file.seek(SeekFrom::Start(end)).map_err(io(&path))?;
                file.read_to_end(&mut tail).map_err(io(&path))?;
                Self::is_torn_tail(&tail)
            };
            if !torn {
                let copy = (0..)
                    .map(|n| dir.join(format!("journal.bin.damaged-{n}")))
                    .find(|p| !p.exists())
                    .expect("a free name");
                std::fs::copy(&path, &copy).map_err(io(&copy))?;
                File::open(&copy)
                    .and_then(|f| f.sync_all())
                    .map_err(io(&copy))?;
                recovery.damaged_copy = Some(copy);
            }
            recovery.torn_bytes = rest;
            file.set_len(end).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        let acked = match std::fs::read_to_string(dir.join("acked")) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(&dir.join("acked"))(e)),
        };
        let mut j = Journal {
            dir: dir.to_path_buf(),
            file,
            offsets,
            end,
            acked: 0,
            sources,
            recovery,
        };
        // An acknowledgement never runs ahead of what is on disk.
        j.acked = acked.min(j.last_seq());
        Ok(j)
    }

    /// Whether `tail` (bytes after the last whole record) is what an
    /// interrupted append leaves: a record header whose length runs past
    /// the end, or fewer bytes than a header.
    fn is_torn_tail(tail: &[u8]) -> bool {
        if tail.len() < 8 {
            return true;
        }
        let len = u32::from_le_bytes(tail[..4].try_into().expect("4")) as usize;
        (8..=MAX_RECORD).contains(&len) && 8 + len > tail.len()
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("journal.bin")
    }

    /// Sequence number of the last record (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.offsets.len() as u64
    }

    /// Highest sequence number the serial peer acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Appends `record` and makes it durable; returns its sequence number.
    /// On a failed write (a full disk) the journal is cut back to where it
    /// was, so no partial record stays behind.
    pub fn append(&mut self, record: &Record) -> Result<u64> {
        let seq = self.last_seq() + 1;
        let mut payload = seq.to_le_bytes().to_vec();
        serde_json::to_writer(&mut payload, record).expect("records serialise");
        if payload.len() > MAX_RECORD {
            return Err(JournalError::Record {
                seq,
                msg: format!(
                    "{} bytes is over the {MAX_RECORD}-byte limit",
                    payload.len()
                ),
            });
        }
        let mut buf = Vec::with_capacity(8 + payload.len());
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        buf.extend_from_slice(&payload);
        let path = self.path();
        let write = (|| {
            self.file.seek(SeekFrom::Start(self.end))?;
            self.file.write_all(&buf)?;
            self.file.sync_data()
        })();
        if let Err(e) = write {
            // Best effort: the next open cuts a torn record anyway.
            let _ = self.file.set_len(self.end);
            return Err(io(&path)(e));
        }
        self.offsets.push(self.end);
        self.end += buf.len() as u64;
        Ok(seq)
    }

    /// The record with sequence number `seq`.
    pub fn get(&mut self, seq: u64) -> Result<Entry> {
        let i = seq
            .checked_sub(1)
            .filter(|&i| i < self.last_seq())
            .ok_or_else(|| JournalError::Record {
                seq,
                msg: format!("not in the journal (1..={})", self.last_seq()),
            })? as usize;
        let start = self.offsets[i];
        let stop = self.offsets.get(i + 1).copied().unwrap_or(self.end);
        let mut buf = vec![0u8; (stop - start) as usize];
        let path = self.path();
        self.file
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(io(&path))?;
        let record = serde_json::from_slice(&buf[16..]).map_err(|e| JournalError::Record {
            seq,
            msg: e.to_string(),
        })?;
        Ok(Entry { seq, record })
    }

    /// The sources of the records found at open (those `keep` kept):
    /// frames already counted, which a restarted unit must not count
    /// again. Records appended since are not added: the source that gave
    /// them keeps its own list.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// [`Journal::sources`], handed over (the journal needs them no more).
    pub fn take_sources(&mut self) -> Sources {
        std::mem::take(&mut self.sources)
    }

    /// Records from `seq` on (for a resend).
    pub fn from(&mut self, seq: u64) -> Result<Vec<Entry>> {
        (seq.max(1)..=self.last_seq())
            .map(|s| self.get(s))
            .collect()
    }

    /// Records the peer acknowledged everything up to `seq`. Acks beyond
    /// the last record, or behind the current one, change nothing.
    pub fn ack(&mut self, seq: u64) -> Result<()> {
        let seq = seq.min(self.last_seq());
        if seq <= self.acked {
            return Ok(());
        }
        write_atomic(&self.dir.join("acked"), format!("{seq}\n").as_bytes())?;
        self.acked = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u32) -> Record {
        Record {
            time_ms: 1_764_000_000_000 + i as u64,
            sample: "soil-7".into(),
            source: format!("frame{i:04}.png"),
            classes: three_classes(),
            counts: vec![i, 2 * i, 0],
            frame_ms: 60,
            model: "synth-worm-egg-cyst".into(),
            warnings: 0,
            error: None,
            identity: None,
        }
    }

    #[test]
    fn appends_survive_reopening_and_seqs_continue() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path()).unwrap();
        assert_eq!(j.last_seq(), 0);
        for i in 1..=5 {
            assert_eq!(j.append(&rec(i)).unwrap(), i as u64);
        }
        j.ack(3).unwrap();
        drop(j);
        let mut j = Journal::open(d.path()).unwrap();
        assert_eq!((j.last_seq(), j.acked()), (5, 3));
        assert_eq!(j.recovery, Recovery::default());
        let names = |n: u32| (1..=n).map(|i| (rec(i).source, None)).collect::<Sources>();
        assert_eq!(j.sources(), &names(5), "read back while scanning");
        assert_eq!(j.append(&rec(6)).unwrap(), 6);
        drop(j);
        // Only the sources asked for are kept.
        let j = Journal::open_keeping(d.path(), &mut |s| s.ends_with("6.png")).unwrap();
        assert_eq!(j.sources(), &[(rec(6).source, None)].into());
        let mut j = Journal::open(d.path()).unwrap();
        let all = j.from(4).unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5, 6]);
        assert_eq!(all[2].record, rec(6));
        assert!(j.get(7).is_err() && j.get(0).is_err());
        // acks never go back nor past the end
        j.ack(2).unwrap();
        j.ack(99).unwrap();
        assert_eq!(j.acked(), 6);
    }

    #[test]
    fn refusals_and_identities_are_kept_and_the_last_identity_wins() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path()).unwrap();
        let with = |id: &str, error: Option<&str>| Record {
            identity: Some(id.into()),
            error: error.map(str::to_owned),
            ..rec(1)
        };
        j.append(&with("10:1", Some("cannot decode"))).unwrap();
        j.append(&with("12:2", None)).unwrap();
        j.append(&rec(2)).unwrap();
        drop(j);
        let mut j = Journal::open(d.path()).unwrap();
        let want: Sources = [
            (rec(1).source, Some("12:2".to_string())),
            (rec(2).source, None),
        ]
        .into();
        assert_eq!(j.sources(), &want);
        let first = j.get(1).unwrap().record;
        assert_eq!(first.error.as_deref(), Some("cannot decode"));
        // Records without the new fields read as before.
        let text = serde_json::to_string(&rec(3)).unwrap();
        assert!(
            !text.contains("identity") && !text.contains("error"),
            "{text}"
        );
    }

    #[test]
    fn records_keep_any_classes_and_old_records_read_as_worm_egg_cyst() {
        let old = r#"{"time_ms":1,"sample":"s","source":"f","counts":[4,5,6],"frame_ms":2,"model":"m","warnings":0}"#;
        let r: Record = serde_json::from_str(old).unwrap();
        assert_eq!(
            r.class_counts().collect::<Vec<_>>(),
            [("worm", 4), ("egg", 5), ("cyst", 6)]
        );
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path()).unwrap();
        let four = Record {
            classes: ["worm", "egg", "cyst", "juvenile"]
                .map(String::from)
                .to_vec(),
            counts: vec![1, 2, 3, 4],
            ..rec(1)
        };
        j.append(&four).unwrap();
        drop(j);
        let mut j = Journal::open(d.path()).unwrap();
        assert_eq!(j.get(1).unwrap().record, four);
    }

    #[test]
    fn a_torn_last_record_is_cut_at_every_byte() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path()).unwrap();
        for i in 1..=3 {
            j.append(&rec(i)).unwrap();
        }
        let full = std::fs::read(j.path()).unwrap();
        let third = j.offsets[2] as usize;
        drop(j);
        // A power cut after any prefix of the third record's bytes.
        for cut in third..full.len() {
            let d2 = tempfile::tempdir().unwrap();
            std::fs::write(d2.path().join("journal.bin"), &full[..cut]).unwrap();
            let mut j = Journal::open(d2.path()).unwrap();
            assert_eq!(j.last_seq(), 2, "cut at {cut}");
            assert_eq!(j.recovery.torn_bytes, (cut - third) as u64);
            assert_eq!(j.recovery.damaged_copy, None);
            assert_eq!(j.append(&rec(9)).unwrap(), 3);
            drop(j);
            let mut j = Journal::open(d2.path()).unwrap();
            assert_eq!(j.get(3).unwrap().record, rec(9));
        }
    }

    #[test]
    fn damage_before_the_end_is_copied_aside_not_dropped() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path()).unwrap();
        for i in 1..=4 {
            j.append(&rec(i)).unwrap();
        }
        let mut bytes = std::fs::read(j.path()).unwrap();
        let second = j.offsets[1] as usize;
        drop(j);
        bytes[second + 20] ^= 0x40; // bit rot inside record 2
        std::fs::write(d.path().join("journal.bin"), &bytes).unwrap();
        let j = Journal::open(d.path()).unwrap();
        assert_eq!(j.last_seq(), 1);
        assert_eq!(j.sources().len(), 1, "only the kept record's source");
        let copy = j.recovery.damaged_copy.clone().expect("copied aside");
        assert_eq!(std::fs::read(copy).unwrap(), bytes);
    }

    #[test]
    fn a_foreign_file_is_refused_and_left_alone() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("journal.bin"), b"hello, this is not it").unwrap();
        let e = Journal::open(d.path()).unwrap_err();
        assert!(e.to_string().contains("not a nemascope journal"), "{e}");
        assert_eq!(
            std::fs::read(d.path().join("journal.bin")).unwrap(),
            b"hello, this is not it"
        );
    }
}
