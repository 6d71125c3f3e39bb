//! The host's end of the serial link (`nemascope-edge listen`): every
//! report the unit sends is appended to a JSON-lines file and made durable
//! (fsync) before it is acknowledged, so the unit forgets nothing the host
//! does not hold. On start the file says where the host is: the last whole
//! line's sequence number; a torn last line (the host lost power while
//! writing it) is cut off, and the unit sends that report again.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::journal::now_ms;
use crate::link::protocol::Message;
use crate::link::serial::Port;
use crate::link::HostLink;
use nemascope_reports::db::{is_database, ReportDb};

pub use nemascope_reports::{ClassCount, StoredReport};

/// The record of report `m` received at `received_ms`.
pub fn stored_report(m: &Message, received_ms: u64) -> StoredReport {
    let Message::Report {
        seq,
        time_ms,
        sample,
        counts,
        frame_ms,
        warnings,
    } = m
    else {
        unreachable!("only reports are stored");
    };
    StoredReport {
        seq: *seq,
        time_ms: *time_ms,
        sample: sample.to_string(),
        counts: counts
            .iter()
            .map(|(c, n)| ClassCount {
                class: c.to_string(),
                count: *n,
            })
            .collect(),
        frame_ms: *frame_ms,
        warnings: *warnings,
        received_ms,
    }
}

/// What any line of a report file holds, whatever version wrote it
/// (version 1 wrote `worms`, `eggs` and `cysts` fields): enough to resume.
#[derive(Deserialize)]
struct Line {
    seq: u64,
    #[allow(dead_code)]
    time_ms: u64,
    #[allow(dead_code)]
    sample: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] nemascope_reports::DbError),
    #[error("{path} line {line}: {msg}; not a report file this listener wrote, left untouched")]
    Foreign {
        path: PathBuf,
        line: usize,
        msg: String,
    },
}

/// The host's report file.
#[derive(Debug)]
pub struct ReportStore {
    path: PathBuf,
    file: File,
    /// Highest sequence number stored (0: none).
    pub stored: u64,
    /// Bytes of a torn last line cut off on open.
    pub torn_bytes: u64,
}

impl ReportStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        // A FIFO or device would block the first read with no message.
        nemascope_core::files::check_regular(path)
            .map_err(|why| io(std::io::Error::new(std::io::ErrorKind::InvalidInput, why)))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io)?;
        // Whole lines end in '\n'; what follows the last one is torn.
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut stored = 0;
        for (i, line) in text[..whole].split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let foreign = |msg: String| StoreError::Foreign {
                path: path.to_path_buf(),
                line: i + 1,
                msg,
            };
            let r: Line = serde_json::from_slice(line).map_err(|e| foreign(e.to_string()))?;
            if r.seq != stored + 1 {
                return Err(foreign(format!("sequence {} after {stored}", r.seq)));
            }
            stored = r.seq;
        }
        let torn_bytes = (text.len() - whole) as u64;
        if torn_bytes > 0 {
            file.set_len(whole as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(ReportStore {
            path: path.to_path_buf(),
            file,
            stored,
            torn_bytes,
        })
    }

    /// Appends report `m` (the next in sequence) durably.
    pub fn append(&mut self, m: &Message, received_ms: u64) -> Result<StoredReport, StoreError> {
        let r = stored_report(m, received_ms);
        let mut line = serde_json::to_vec(&r).expect("reports serialise");
        line.push(b'\n');
        let end = self
            .file
            .seek(SeekFrom::End(0))
            .map_err(|source| StoreError::Io {
                path: self.path.clone(),
                source,
            })?;
        let write = self
            .file
            .write_all(&line)
            .and_then(|_| self.file.sync_data());
        if let Err(source) = write {
            // A full disk: no half line stays behind, and no ack goes out.
            let _ = self.file.set_len(end);
            return Err(StoreError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.stored = r.seq;
        Ok(r)
    }
}

/// Where a listener keeps reports: a JSON-lines file of its own, or the
/// lab's SQLite database shared with the other units' listeners.
enum Sink {
    File(ReportStore),
    Db(ReportDb),
}

impl Sink {
    fn stored(&self) -> u64 {
        match self {
            Sink::File(s) => s.stored,
            Sink::Db(d) => d.stored,
        }
    }

    fn append(&mut self, m: &Message, received_ms: u64) -> Result<StoredReport, StoreError> {
        match self {
            Sink::File(s) => s.append(m, received_ms),
            Sink::Db(d) => Ok(d.append(stored_report(m, received_ms))?),
        }
    }
}

/// What `listen` does.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    pub port: PathBuf,
    pub baud: u32,
    /// A `.jsonl` file, or a `.sqlite`/`.sqlite3`/`.db` database.
    pub out: PathBuf,
    /// The unit's name in a database (default: the port's file name).
    pub unit: Option<String>,
    /// Stop once this report is stored (tests, one-off collection).
    pub until: Option<u64>,
    pub reopen: Duration,
}

/// Receives reports into `o.out` until `o.until` (or for ever), printing
/// one line per stored report and the unit's status when it changes.
pub fn listen(o: &ListenOptions) -> Result<(), StoreError> {
    let mut store = if is_database(&o.out) {
        let unit = o.unit.clone().unwrap_or_else(|| {
            o.port
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let db = ReportDb::open(&o.out, &unit)?;
        crate::say!(
            "{}: unit {unit}, {} reports held",
            o.out.display(),
            db.stored
        );
        Sink::Db(db)
    } else {
        let file = ReportStore::open(&o.out)?;
        if file.torn_bytes > 0 {
            crate::say!(
                "{}: cut a torn last line ({} bytes); the unit sends it again",
                o.out.display(),
                file.torn_bytes
            );
        }
        crate::say!("{}: {} reports held", o.out.display(), file.stored);
        Sink::File(file)
    };
    let mut host = HostLink::new(store.stored());
    let mut port = Port::new(&o.port, o.baud, o.reopen);
    let mut last_status = None;
    let mut told_version = None;
    loop {
        if o.until.is_some_and(|u| host.stored >= u) {
            return Ok(());
        }
        let now = Instant::now();
        if port.ensure_open(now) {
            // Ask at once for what this host lacks, and who is there.
            let hello = [
                Message::ResendFrom {
                    seq: host.stored + 1,
                },
                Message::GetStatus,
            ];
            let w = port.writer().expect("just opened");
            let sent = hello
                .iter()
                .try_for_each(|m| std::io::Write::write_all(w, &m.encode()));
            if let Err(e) = sent {
                port.write_failed(&e);
            }
        }
        let bytes = port.read_waiting();
        let Some(w) = port.writer().filter(|_| !bytes.is_empty()) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let mut failure = None;
        let r = host.receive(&bytes, w, |m| match store.append(m, now_ms()) {
            Ok(r) => {
                // Stored already: a closed stdout must not stop the ack.
                use std::io::Write as _;
                let counts: Vec<String> = r
                    .counts
                    .iter()
                    .map(|c| format!("{} {}", c.class, c.count))
                    .collect();
                let _ = writeln!(
                    std::io::stdout(),
                    "#{} {} {} ({} ms)",
                    r.seq,
                    r.sample,
                    counts.join(" "),
                    r.frame_ms
                );
                true
            }
            Err(e) => {
                // Not acknowledged: the unit keeps it and sends it again.
                failure = Some(e);
                false
            }
        });
        if host.decoder.peer_version != told_version {
            told_version = host.decoder.peer_version;
            if let Some(v) = told_version {
                crate::say!(
                    "{}: {}; nothing is stored until both speak the same",
                    o.port.display(),
                    crate::link::protocol::FrameError::Version(v)
                );
            }
        }
        if let Some(e) = failure {
            crate::say!("{e}; report not acknowledged");
            std::thread::sleep(Duration::from_millis(500));
        }
        match r {
            Ok(()) => port.flowing(),
            Err(e) => port.write_failed(&e),
        }
        if host.last_status != last_status {
            if let Some(Message::Status {
                last_seq,
                acked_seq,
                malformed,
                model,
                warnings,
            }) = &host.last_status
            {
                crate::say!(
                    "unit: model {model}, {last_seq} journaled, {acked_seq} acknowledged, {malformed} malformed frames dropped, warnings {warnings:#04b}"
                );
            }
            last_status = host.last_status.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::protocol::{class_counts, name};

    fn report(seq: u64) -> Message {
        Message::Report {
            seq,
            time_ms: 1_764_000_000_000 + seq,
            sample: name("plot-1"),
            counts: class_counts([("worm", seq as u32), ("egg", 1), ("cyst", 0)]),
            frame_ms: 50,
            warnings: 0,
        }
    }

    /// `open` on a path, given 10 s: a store that waits on a FIFO fails.
    fn open_within_10s<T: Send + 'static, E: ToString + Send + 'static>(
        open: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(open().map_err(|e| e.to_string()));
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("opening the store blocked")
    }

    #[test]
    fn a_fifo_or_folder_as_the_store_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let mkfifo = |p: &Path| {
            let made = std::process::Command::new("mkfifo").arg(p).status();
            assert!(made.unwrap().success());
        };
        let fifo = dir.path().join("reports.jsonl");
        mkfifo(&fifo);
        let p = fifo.clone();
        let e = open_within_10s(move || ReportStore::open(&p).map(|_| ())).unwrap_err();
        assert!(
            e.contains("is a FIFO") && e.contains("not a regular file"),
            "{e}"
        );
        let db = dir.path().join("lab.sqlite");
        mkfifo(&db);
        let e = open_within_10s(move || ReportDb::open(&db, "unit-1").map(|_| ())).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let folder = dir.path().to_path_buf();
        let e = open_within_10s(move || ReportStore::open(&folder).map(|_| ())).unwrap_err();
        assert!(e.contains("a folder") || e.contains("directory"), "{e}");
    }

    #[test]
    fn reports_survive_reopen_and_a_torn_last_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("reports.jsonl");
        let mut s = ReportStore::open(&p).unwrap();
        for seq in 1..=3 {
            s.append(&report(seq), 7).unwrap();
        }
        drop(s);
        let whole = std::fs::read(&p).unwrap();
        // Power lost in the middle of writing report 4.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"seq":4,"time_ms":17640"#).unwrap();
        drop(f);
        let s = ReportStore::open(&p).unwrap();
        assert_eq!(s.stored, 3);
        assert_eq!(s.torn_bytes, 24);
        assert_eq!(std::fs::read(&p).unwrap(), whole);
        let lines: Vec<StoredReport> = whole
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(lines[2].count("worm"), 3);
    }

    #[test]
    fn a_file_version_1_wrote_is_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("reports.jsonl");
        let old = r#"{"seq":1,"time_ms":5,"sample":"s","worms":1,"eggs":2,"cysts":3,"frame_ms":9,"warnings":0,"received_ms":6}"#;
        std::fs::write(&p, format!("{old}\n")).unwrap();
        let mut s = ReportStore::open(&p).unwrap();
        assert_eq!(s.stored, 1);
        s.append(&report(2), 7).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with(old), "{text}");
        assert!(
            text.contains(r#""counts":[{"class":"worm","count":2}"#),
            "{text}"
        );
    }

    #[test]
    fn a_file_it_did_not_write_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notes.txt");
        std::fs::write(&p, "shopping list\n").unwrap();
        let e = ReportStore::open(&p).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "shopping list\n");
    }
}
