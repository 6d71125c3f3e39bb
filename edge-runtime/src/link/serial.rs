//! A serial port that comes and goes: a USB adapter unplugged, a host
//! rebooted, a cable pulled. Opened when due, closed on the first error,
//! and retried every `reopen`; each new failure is logged once. A line
//! that is full (the peer is not reading) is not an error of the port: it
//! stays open, so what is queued drains as soon as the peer reads. Both
//! the unit's link and the host's listener sit on it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serialport::TTYPort;

#[derive(Debug)]
pub struct Port {
    path: PathBuf,
    baud: u32,
    reopen: Duration,
    port: Option<TTYPort>,
    last_try: Option<Instant>,
    down_reason: Option<String>,
}

impl Port {
    pub fn new(path: &Path, baud: u32, reopen: Duration) -> Self {
        Port {
            path: path.to_path_buf(),
            baud,
            reopen,
            port: None,
            last_try: None,
            down_reason: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.port.is_some()
    }

    /// Closes the port after an error; it is tried again after `reopen`.
    pub fn fail(&mut self, why: String) {
        let then = format!("retrying every {:.0} s", self.reopen.as_secs_f64());
        self.note(why, &then);
        self.port = None;
    }

    /// Records why the line is not flowing, logging it only when the
    /// reason is new (a stalled line would otherwise log every round).
    fn note(&mut self, why: String, then: &str) {
        if self.down_reason.as_deref() != Some(&why) {
            crate::say!("serial {}: {why}; {then}", self.path.display());
        }
        self.down_reason = Some(why);
    }

    /// A write failed. A full line (the peer is not reading, or flow
    /// control holds it) keeps the port open: closing it would not empty
    /// the line (a full pty or UART buffer survives a reopen), and the
    /// zero-timeout write right after each reopen would close it again
    /// before the peer could drain it. What was cut off is sent again
    /// from the last acknowledgement. Any other error closes the port.
    pub fn write_failed(&mut self, e: &std::io::Error) {
        use std::io::ErrorKind::{TimedOut, WouldBlock};
        if !matches!(e.kind(), TimedOut | WouldBlock) {
            return self.fail(format!("write: {e}"));
        }
        self.note(
            "write: the line is full (the peer is not reading)".into(),
            "kept open, sending as it drains",
        );
    }

    /// A round went through: the next stall or failure is logged again.
    pub fn flowing(&mut self) {
        if self.port.is_some() {
            self.down_reason = None;
        }
    }

    /// Opens the port if it is closed and a retry is due; true when it
    /// was opened just now (what was in flight may be lost).
    pub fn ensure_open(&mut self, now: Instant) -> bool {
        if self.port.is_some()
            || self
                .last_try
                .is_some_and(|t| now.duration_since(t) < self.reopen)
        {
            return false;
        }
        self.last_try = Some(now);
        match serialport::new(self.path.to_string_lossy(), self.baud)
            .timeout(Duration::ZERO)
            .open_native()
        {
            Ok(p) => {
                crate::say!("serial {}: open at {} baud", self.path.display(), self.baud);
                self.port = Some(p);
                self.down_reason = None;
                true
            }
            Err(e) => {
                self.fail(e.to_string());
                false
            }
        }
    }

    /// Everything waiting to be read (up to 64 KiB: a flood is handled a
    /// piece per round). Empty when closed.
    pub fn read_waiting(&mut self) -> Vec<u8> {
        let mut bytes = Vec::new();
        let Some(port) = self.port.as_mut() else {
            return bytes;
        };
        let mut buf = [0u8; 1024];
        while bytes.len() < 64 * 1024 {
            match port.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    break
                }
                Err(e) => {
                    self.fail(format!("read: {e}"));
                    break;
                }
            }
        }
        bytes
    }

    /// The open port, for writing.
    pub fn writer(&mut self) -> Option<&mut TTYPort> {
        self.port.as_mut()
    }
}
