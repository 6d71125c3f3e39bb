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

use std::io::Write;
use std::time::{Duration, Instant};

use crate::journal::{Entry, Journal, JournalError};
use crate::protocol::{name, Decoder, Message};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("serial write: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

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
}

fn report(e: &Entry) -> Message {
    Message::Report {
        seq: e.seq,
        time_ms: e.record.time_ms,
        sample: name(&e.record.sample),
        counts: e.record.counts,
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
        let mut sent = false;
        while self.next <= journal.last_seq() && self.next <= journal.acked() + self.window {
            let e = journal.get(self.next)?;
            out.write_all(&report(&e).encode())?;
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
                Message::GetStatus => {
                    let status = Message::Status {
                        last_seq: journal.last_seq(),
                        acked_seq: journal.acked(),
                        malformed: self.decoder.malformed,
                        model: name(&self.model),
                        warnings: self.warnings,
                    };
                    out.write_all(&status.encode())?;
                    out.flush()?;
                }
                // Unit-bound messages only; anything else is ignored.
                _ => {}
            }
        }
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
