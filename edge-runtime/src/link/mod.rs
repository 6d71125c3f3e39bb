//! The report link over the serial port: what the unit sends and when, and
//! the host side that stores each report exactly once.
//!
//! The unit sends journaled reports in order, at most `window` ahead of the
//! last acknowledgement. The host acknowledges the highest report it has
//! stored in order; a report it already has is acknowledged again, not
//! stored again; a gap makes it ask `ResendFrom` the first missing one.
//! When no acknowledgement comes for `resend_after`, or the link was down,
//! the unit starts again after the last acknowledged report. Both sides go
//! through the protocol's [`Decoder`]: garbage on the line is counted and
//! dropped. Transport-agnostic (any `Write` + bytes in), so the same code
//! runs over a UART, a pseudo-terminal or a test buffer.

pub use nemascope_reports::db;
pub mod listener;
pub mod protocol;
pub mod serial;

use std::io::Write;
use std::time::{Duration, Instant};

use crate::journal::{Entry, Journal, JournalError};
use crate::link::protocol::{class_counts, name, Decoder, Message};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("serial write: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Shortest time between two answers to `GetStatus`.
pub const STATUS_EVERY: Duration = Duration::from_millis(250);

/// The unit's side.
#[derive(Debug)]
pub struct UnitLink {
    /// Next sequence number to send.
    next: u64,
    /// When the oldest unacknowledged report was sent.
    waiting_since: Option<Instant>,
    last_sent: Instant,
    started: Instant,
    pub decoder: Decoder,
    pub window: u64,
    pub resend_after: Duration,
    pub heartbeat_every: Duration,
    pub model: String,
    pub warnings: u8,
    /// When a valid message last came from the host.
    pub last_heard: Option<Instant>,
    /// Highest sequence number sent since start.
    sent: u64,
    /// A `GetStatus` came and is not answered yet, and when the last
    /// answer went: requests are answered at most every
    /// [`STATUS_EVERY`], so a peer asking thousands of times a second
    /// cannot fill the line with answers and crowd out the reports.
    status_due: bool,
    last_status: Option<Instant>,
    /// Acknowledgements of reports this unit has not sent (a confused or
    /// hostile peer, or line noise that passed the CRC): ignored, because
    /// honouring one would mark reports delivered that the host never got.
    pub refused_acks: u32,
}

fn report(e: &Entry) -> Message {
    Message::Report {
        seq: e.seq,
        time_ms: e.record.time_ms,
        sample: name(&e.record.sample),
        counts: class_counts(e.record.class_counts()),
        frame_ms: e.record.frame_ms,
        warnings: e.record.warnings,
    }
}

impl UnitLink {
    /// Starts after the journal's last acknowledged report.
    pub fn new(journal: &Journal, model: &str, now: Instant) -> Self {
        UnitLink {
            next: journal.acked() + 1,
            waiting_since: None,
            last_sent: now,
            started: now,
            decoder: Decoder::new(),
            window: 8,
            resend_after: Duration::from_secs(5),
            heartbeat_every: Duration::from_secs(10),
            model: model.into(),
            warnings: 0,
            last_heard: None,
            sent: journal.acked(),
            status_due: false,
            last_status: None,
            refused_acks: 0,
        }
    }

    /// The port was reopened: whatever was in flight may be lost, so send
    /// again from the first unacknowledged report.
    pub fn reconnected(&mut self, journal: &Journal) {
        self.next = journal.acked() + 1;
        self.waiting_since = None;
    }

    /// Sends what is due at `now`: reports within the window, a resend
    /// after a silent `resend_after`, a heartbeat when idle.
    pub fn poll(
        &mut self,
        journal: &mut Journal,
        now: Instant,
        out: &mut dyn Write,
    ) -> Result<(), LinkError> {
        if let Some(t) = self.waiting_since {
            if now.duration_since(t) >= self.resend_after {
                self.next = journal.acked() + 1;
                self.waiting_since = None;
            }
        }
        self.answer_status(journal, now, out)?;
        let mut sent = false;
        while self.next <= journal.last_seq() && self.next <= journal.acked() + self.window {
            let e = journal.get(self.next)?;
            out.write_all(&report(&e).encode())?;
            self.sent = self.sent.max(self.next);
            self.next += 1;
            sent = true;
        }
        if sent {
            self.waiting_since.get_or_insert(now);
            self.last_sent = now;
        } else if now.duration_since(self.last_sent) >= self.heartbeat_every {
            let m = Message::Heartbeat {
                uptime_s: now.duration_since(self.started).as_secs() as u32,
                last_seq: journal.last_seq(),
            };
            out.write_all(&m.encode())?;
            self.last_sent = now;
        }
        out.flush()?;
        Ok(())
    }

    /// Handles bytes from the host.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        journal: &mut Journal,
        now: Instant,
        out: &mut dyn Write,
    ) -> Result<(), LinkError> {
        let mut msgs = Vec::new();
        self.decoder.feed(bytes, |m| msgs.push(m));
        if !msgs.is_empty() {
            self.last_heard = Some(now);
        }
        for m in msgs {
            match m {
                Message::Ack { seq } if seq > self.sent => self.refused_acks += 1,
                Message::Ack { seq } => {
                    let before = journal.acked();
                    journal.ack(seq)?;
                    if journal.acked() > before {
                        // Progress: the clock restarts for what is left.
                        self.waiting_since = (journal.acked() < self.next - 1).then_some(now);
                    }
                    self.next = self.next.max(journal.acked() + 1);
                }
                // Honoured even below the last acknowledgement: a host
                // that lost its store may fetch again what it had.
                Message::Nack { seq, .. } | Message::ResendFrom { seq } => {
                    self.next = seq.clamp(1, journal.last_seq() + 1);
                }
                Message::GetStatus => self.status_due = true,
                // Unit-bound messages only; anything else is ignored.
                _ => {}
            }
        }
        self.answer_status(journal, now, out)
    }

    /// Sends the status if one was asked for and none went in the last
    /// [`STATUS_EVERY`].
    fn answer_status(
        &mut self,
        journal: &Journal,
        now: Instant,
        out: &mut dyn Write,
    ) -> Result<(), LinkError> {
        let recent = self
            .last_status
            .is_some_and(|t| now.duration_since(t) < STATUS_EVERY);
        if !self.status_due || recent {
            return Ok(());
        }
        let status = Message::Status {
            last_seq: journal.last_seq(),
            acked_seq: journal.acked(),
            malformed: self.decoder.malformed.saturating_add(self.refused_acks),
            model: name(&self.model),
            warnings: self.warnings,
        };
        out.write_all(&status.encode())?;
        out.flush()?;
        self.status_due = false;
        self.last_status = Some(now);
        Ok(())
    }

    /// Reports sent and not yet acknowledged.
    pub fn in_flight(&self, journal: &Journal) -> u64 {
        (self.next - 1).saturating_sub(journal.acked())
    }
}

/// The host's side: stores reports in sequence order, each once.
#[derive(Debug, Default)]
pub struct HostLink {
    pub decoder: Decoder,
    /// Highest report stored in order.
    pub stored: u64,
    pub duplicates: u64,
    pub last_heartbeat: Option<(u32, u64)>,
    pub last_status: Option<Message>,
}

impl HostLink {
    /// Starts after the reports the host already holds.
    pub fn new(stored: u64) -> Self {
        HostLink {
            stored,
            ..Default::default()
        }
    }

    /// Handles bytes from the unit; `store` gets each new report in order
    /// and says whether it was stored (false: a Nack goes back).
    pub fn receive(
        &mut self,
        bytes: &[u8],
        out: &mut dyn Write,
        mut store: impl FnMut(&Message) -> bool,
    ) -> std::io::Result<()> {
        let mut msgs = Vec::new();
        self.decoder.feed(bytes, |m| msgs.push(m));
        for m in msgs {
            let reply = match &m {
                Message::Report { seq, .. } => {
                    let seq = *seq;
                    if seq <= self.stored {
                        self.duplicates += 1;
                        Some(Message::Ack { seq: self.stored })
                    } else if seq == self.stored + 1 {
                        if store(&m) {
                            self.stored = seq;
                            Some(Message::Ack { seq })
                        } else {
                            Some(Message::Nack { seq, reason: 1 })
                        }
                    } else {
                        Some(Message::ResendFrom {
                            seq: self.stored + 1,
                        })
                    }
                }
                Message::Heartbeat { uptime_s, last_seq } => {
                    self.last_heartbeat = Some((*uptime_s, *last_seq));
                    // The unit holds reports this host lacks: ask for them.
                    (*last_seq > self.stored).then_some(Message::ResendFrom {
                        seq: self.stored + 1,
                    })
                }
                Message::Status { .. } => {
                    self.last_status = Some(m.clone());
                    None
                }
                _ => None,
            };
            if let Some(r) = reply {
                out.write_all(&r.encode())?;
            }
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Record;

    fn journal_of(n: u32) -> (tempfile::TempDir, Journal) {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path()).unwrap();
        for i in 1..=n {
            j.append(&Record {
                time_ms: i as u64,
                sample: "s".into(),
                source: format!("f{i}"),
                classes: vec!["worm".into()],
                counts: vec![i],
                frame_ms: 1,
                model: "m".into(),
                warnings: 0,
                error: None,
                identity: None,
            })
            .unwrap();
        }
        (d, j)
    }

    #[test]
    fn acks_of_reports_never_sent_are_refused() {
        let (_d, mut j) = journal_of(5);
        let now = Instant::now();
        let mut link = UnitLink::new(&j, "m", now);
        let mut wire = Vec::new();
        let ack = |seq| Message::Ack { seq }.encode().to_vec();
        // Before anything is sent, no ack counts.
        link.receive(&ack(2), &mut j, now, &mut wire).unwrap();
        assert_eq!((j.acked(), link.refused_acks), (0, 1));
        link.poll(&mut j, now, &mut wire).unwrap();
        assert_eq!(link.in_flight(&j), 5);
        // A forged (or noise-made) ack far ahead is refused ...
        link.receive(&ack(1_000_000), &mut j, now, &mut wire)
            .unwrap();
        assert_eq!((j.acked(), link.refused_acks), (0, 2));
        // ... a real one is taken.
        link.receive(&ack(3), &mut j, now, &mut wire).unwrap();
        assert_eq!(j.acked(), 3);
        // After a restart, acks above the last one are taken again only
        // once those reports have been sent again.
        let mut link = UnitLink::new(&j, "m", now);
        link.receive(&ack(5), &mut j, now, &mut wire).unwrap();
        assert_eq!((j.acked(), link.refused_acks), (3, 1));
        link.poll(&mut j, now, &mut wire).unwrap();
        link.receive(&ack(5), &mut j, now, &mut wire).unwrap();
        assert_eq!(j.acked(), 5);
    }

    #[test]
    fn a_storm_of_status_requests_gets_one_answer_per_interval() {
        let (_d, mut j) = journal_of(0);
        let t0 = Instant::now();
        let mut link = UnitLink::new(&j, "m", t0);
        let storm: Vec<u8> = (0..500).flat_map(|_| Message::GetStatus.encode()).collect();
        let answers = |wire: &[u8]| {
            let mut d = Decoder::new();
            let mut n = 0;
            d.feed(wire, |m| n += matches!(m, Message::Status { .. }) as usize);
            n
        };
        let mut wire = Vec::new();
        link.receive(&storm, &mut j, t0, &mut wire).unwrap();
        link.receive(&storm, &mut j, t0, &mut wire).unwrap();
        link.poll(&mut j, t0, &mut wire).unwrap();
        assert_eq!(answers(&wire), 1);
        // The one asked for meanwhile goes when the interval is over.
        let later = t0 + STATUS_EVERY;
        link.poll(&mut j, later, &mut wire).unwrap();
        assert_eq!(answers(&wire), 2);
        link.poll(&mut j, later + STATUS_EVERY, &mut wire).unwrap();
        assert_eq!(answers(&wire), 2, "nothing asked, nothing sent");
    }
}
