//! The serial protocol between a unit and the lab's host, version 2.
//!
//! Every message is one frame: `COBS(body) 0x00`, where
//! `body = version (1) | kind | payload | CRC-32 (LE) of everything before`.
//! COBS keeps 0x00 out of the body, so a receiver that joins mid-stream or
//! sees line noise resynchronises at the next 0x00; the CRC and the version
//! catch the rest. Integers are little-endian, strings are a length byte and
//! UTF-8. Buffers are fixed (`heapless`): no allocation on this path, and a
//! frame longer than [`MAX_BODY`] is dropped, never grown into.
//!
//! Messages:
//! - unit → host: `Report` (one journal record), `Heartbeat`, `Status`;
//! - host → unit: `Ack`/`Nack` of a report, `GetStatus`, `ResendFrom`.
//!
//! Version 2 reports carry each class's name with its count (a model may
//! count any classes, up to [`MAX_CLASSES`]); version 1 carried worms,
//! eggs and cysts only. A frame of another version is refused as a whole
//! and remembered ([`Decoder::peer_version`]) so each end can say which
//! side to update, never read as garbage.

use heapless::{String, Vec};

/// Protocol version carried in every frame.
pub const VERSION: u8 = 2;
/// Longest body (version to CRC) a frame may carry.
pub const MAX_BODY: usize = 256;
/// Longest frame on the wire: COBS overhead and the 0x00 delimiter.
pub const MAX_WIRE: usize = MAX_BODY + MAX_BODY / 254 + 2;
/// Longest sample id or model name.
pub const MAX_NAME: usize = 32;

/// A short name (sample id, model name), cut at [`MAX_NAME`] bytes on a
/// character boundary.
pub type Name = String<MAX_NAME>;

/// Most classes a report carries.
pub const MAX_CLASSES: usize = 8;
/// Longest class name on the wire.
pub const MAX_CLASS_NAME: usize = 16;

/// A class name as the wire carries it.
pub type ClassName = String<MAX_CLASS_NAME>;
/// Each class's name and count, in the model's order.
pub type ClassCounts = Vec<(ClassName, u32), MAX_CLASSES>;

/// Makes a [`Name`] from any string, cutting what does not fit.
pub fn name(s: &str) -> Name {
    cut(s)
}

fn cut<const N: usize>(s: &str) -> String<N> {
    let mut n = String::new();
    for ch in s.chars() {
        if n.push(ch).is_err() {
            break;
        }
    }
    n
}

/// Why a model's classes cannot be reported over the link.
pub fn check_classes(classes: &[std::string::String]) -> Result<(), std::string::String> {
    if classes.len() > MAX_CLASSES {
        return Err(format!(
            "{} classes; the serial protocol reports at most {MAX_CLASSES}",
            classes.len()
        ));
    }
    match classes.iter().find(|c| c.len() > MAX_CLASS_NAME) {
        Some(c) => Err(format!(
            "class name `{c}` is longer than the serial protocol's {MAX_CLASS_NAME} bytes"
        )),
        None => Ok(()),
    }
}

/// A report's class counts from a journal record's (names cut and classes
/// beyond [`MAX_CLASSES`] left out: a unit refuses such models up front,
/// [`check_classes`]).
pub fn class_counts<'a>(pairs: impl IntoIterator<Item = (&'a str, u32)>) -> ClassCounts {
    let mut v = ClassCounts::new();
    for (c, n) in pairs {
        if v.push((cut(c), n)).is_err() {
            break;
        }
    }
    v
}

/// One message.
// A report holds its class counts inline (about 200 bytes): boxing them
// would put an allocation on the path this module keeps free of them.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// One counted frame, as journaled.
    Report {
        seq: u64,
        /// Milliseconds since the Unix epoch when the frame was counted.
        time_ms: u64,
        sample: Name,
        /// Each class's name and count, in the model's order.
        counts: ClassCounts,
        /// Decode-to-counts time.
        frame_ms: u32,
        /// Bit flags of warnings (see [`warn`]).
        warnings: u8,
    },
    /// Sent while idle so the host knows the unit is alive.
    Heartbeat {
        uptime_s: u32,
        last_seq: u64,
    },
    /// The answer to `GetStatus`.
    Status {
        last_seq: u64,
        acked_seq: u64,
        /// Frames the unit's decoder dropped as malformed since start,
        /// and acknowledgements of reports it never sent.
        malformed: u32,
        model: Name,
        warnings: u8,
    },
    /// The host stored every report up to and including `seq`.
    Ack {
        seq: u64,
    },
    /// The host could not store report `seq` (`reason` is free for the
    /// host's own codes); the unit sends it again.
    Nack {
        seq: u64,
        reason: u8,
    },
    GetStatus,
    /// Send every journaled report from `seq` on again.
    ResendFrom {
        seq: u64,
    },
}

/// Warning bits of `Report` and `Status`.
pub mod warn {
    /// The frame was dark, saturated or out of focus.
    pub const FRAME_QUALITY: u8 = 1;
    /// The model bundle could not be loaded; the unit runs its previous one.
    pub const MODEL: u8 = 2;
    /// The journal's disk is nearly full.
    pub const DISK: u8 = 4;
    /// Reports are waiting for an acknowledgement.
    pub const BACKLOG: u8 = 8;
    /// The frame could not be read or counted (the unit's log and journal
    /// say why): its counts are zero and mean nothing.
    pub const NOT_COUNTED: u8 = 16;
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame longer than {MAX_WIRE} bytes")]
    TooLong,
    #[error("COBS decoding failed")]
    Cobs,
    #[error("CRC mismatch")]
    Crc,
    #[error("the other end speaks serial protocol version {0}, this end version {VERSION}: update the older one")]
    Version(u8),
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("payload of the wrong length")]
    Length,
    #[error("name is not UTF-8 or too long")]
    Name,
    #[error("more than {MAX_CLASSES} classes")]
    Classes,
}

const REPORT: u8 = 1;
const HEARTBEAT: u8 = 2;
const STATUS: u8 = 3;
const ACK: u8 = 4;
const NACK: u8 = 5;
const GET_STATUS: u8 = 6;
const RESEND_FROM: u8 = 7;

type Body = Vec<u8, MAX_BODY>;

fn put(b: &mut Body, bytes: &[u8]) {
    // Every message's largest body is below MAX_BODY (names are bounded),
    // checked by a test over the largest of each kind.
    b.extend_from_slice(bytes)
        .expect("message bodies fit MAX_BODY");
}

fn put_name(b: &mut Body, n: &str) {
    put(b, &[n.len() as u8]);
    put(b, n.as_bytes());
}

impl Message {
    fn kind(&self) -> u8 {
        match self {
            Message::Report { .. } => REPORT,
            Message::Heartbeat { .. } => HEARTBEAT,
            Message::Status { .. } => STATUS,
            Message::Ack { .. } => ACK,
            Message::Nack { .. } => NACK,
            Message::GetStatus => GET_STATUS,
            Message::ResendFrom { .. } => RESEND_FROM,
        }
    }

    /// The frame for this message, 0x00 delimiter included.
    pub fn encode(&self) -> Vec<u8, MAX_WIRE> {
        let mut b = Body::new();
        put(&mut b, &[VERSION, self.kind()]);
        match self {
            Message::Report {
                seq,
                time_ms,
                sample,
                counts,
                frame_ms,
                warnings,
            } => {
                put(&mut b, &seq.to_le_bytes());
                put(&mut b, &time_ms.to_le_bytes());
                put_name(&mut b, sample);
                put(&mut b, &[counts.len() as u8]);
                for (c, n) in counts {
                    put_name(&mut b, c);
                    put(&mut b, &n.to_le_bytes());
                }
                put(&mut b, &frame_ms.to_le_bytes());
                put(&mut b, &[*warnings]);
            }
            Message::Heartbeat { uptime_s, last_seq } => {
                put(&mut b, &uptime_s.to_le_bytes());
                put(&mut b, &last_seq.to_le_bytes());
            }
            Message::Status {
                last_seq,
                acked_seq,
                malformed,
                model,
                warnings,
            } => {
                put(&mut b, &last_seq.to_le_bytes());
                put(&mut b, &acked_seq.to_le_bytes());
                put(&mut b, &malformed.to_le_bytes());
                put_name(&mut b, model);
                put(&mut b, &[*warnings]);
            }
            Message::Ack { seq } | Message::ResendFrom { seq } => put(&mut b, &seq.to_le_bytes()),
            Message::Nack { seq, reason } => {
                put(&mut b, &seq.to_le_bytes());
                put(&mut b, &[*reason]);
            }
            Message::GetStatus => {}
        }
        let crc = crc32fast::hash(&b);
        put(&mut b, &crc.to_le_bytes());
        let mut wire = Vec::<u8, MAX_WIRE>::new();
        wire.resize(MAX_WIRE, 0).expect("MAX_WIRE");
        let n = cobs::encode(&b, &mut wire);
        wire.truncate(n);
        wire.push(0).expect("room for the delimiter");
        wire
    }

    /// Parses one COBS-decoded body.
    pub fn parse(body: &[u8]) -> Result<Message, FrameError> {
        if body.len() < 6 {
            return Err(FrameError::Length);
        }
        let (data, crc) = body.split_at(body.len() - 4);
        if crc32fast::hash(data).to_le_bytes() != crc {
            return Err(FrameError::Crc);
        }
        if data[0] != VERSION {
            return Err(FrameError::Version(data[0]));
        }
        let mut r = Reader(&data[2..]);
        let m = match data[1] {
            REPORT => Message::Report {
                seq: r.u64()?,
                time_ms: r.u64()?,
                sample: r.name()?,
                counts: {
                    let n = r.u8()? as usize;
                    if n > MAX_CLASSES {
                        return Err(FrameError::Classes);
                    }
                    let mut v = ClassCounts::new();
                    for _ in 0..n {
                        let c = r.short_name::<MAX_CLASS_NAME>()?;
                        v.push((c, r.u32()?)).map_err(|_| FrameError::Classes)?;
                    }
                    v
                },
                frame_ms: r.u32()?,
                warnings: r.u8()?,
            },
            HEARTBEAT => Message::Heartbeat {
                uptime_s: r.u32()?,
                last_seq: r.u64()?,
            },
            STATUS => Message::Status {
                last_seq: r.u64()?,
                acked_seq: r.u64()?,
                malformed: r.u32()?,
                model: r.name()?,
                warnings: r.u8()?,
            },
            ACK => Message::Ack { seq: r.u64()? },
            NACK => Message::Nack {
                seq: r.u64()?,
                reason: r.u8()?,
            },
            GET_STATUS => Message::GetStatus,
            RESEND_FROM => Message::ResendFrom { seq: r.u64()? },
            k => return Err(FrameError::Kind(k)),
        };
        if !r.0.is_empty() {
            return Err(FrameError::Length);
        }
        Ok(m)
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        if self.0.len() < N {
            return Err(FrameError::Length);
        }
        let (a, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(a.try_into().expect("length checked"))
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn name(&mut self) -> Result<Name, FrameError> {
        self.short_name::<MAX_NAME>()
    }
    fn short_name<const N: usize>(&mut self) -> Result<String<N>, FrameError> {
        let n = self.u8()? as usize;
        if n > N || self.0.len() < n {
            return Err(FrameError::Name);
        }
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        let s = core::str::from_utf8(s).map_err(|_| FrameError::Name)?;
        String::try_from(s).map_err(|_| FrameError::Name)
    }
}

/// Splits a byte stream into messages. Malformed frames (bad COBS, CRC,
/// version, kind, length, or longer than [`MAX_WIRE`]) are counted in
/// `malformed` and dropped; decoding goes on at the next 0x00.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8, MAX_WIRE>,
    /// The current frame outgrew the buffer: drop bytes until 0x00.
    overflow: bool,
    pub malformed: u32,
    pub last_error: Option<FrameError>,
    /// The version of the last frame refused for speaking another one:
    /// the peer is older or newer, and one side needs updating.
    pub peer_version: Option<u8>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one byte; returns a message when it completed a valid frame.
    pub fn push(&mut self, byte: u8) -> Option<Message> {
        if byte != 0 {
            if !self.overflow && self.buf.push(byte).is_err() {
                self.overflow = true;
            }
            return None;
        }
        let result = if self.overflow {
            Err(FrameError::TooLong)
        } else if self.buf.is_empty() {
            // Back-to-back delimiters (a sender's wake-up 0x00): no frame.
            self.buf.clear();
            return None;
        } else {
            match cobs::decode_in_place(&mut self.buf) {
                Ok(n) => Message::parse(&self.buf[..n]),
                Err(_) => Err(FrameError::Cobs),
            }
        };
        self.buf.clear();
        self.overflow = false;
        match result {
            Ok(m) => Some(m),
            Err(e) => {
                self.malformed = self.malformed.saturating_add(1);
                self.last_error = Some(e);
                if let FrameError::Version(v) = e {
                    self.peer_version = Some(v);
                }
                None
            }
        }
    }

    /// Feeds many bytes, calling `on` for each message they complete.
    pub fn feed(&mut self, bytes: &[u8], mut on: impl FnMut(Message)) {
        for &b in bytes {
            if let Some(m) = self.push(b) {
                on(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> [Message; 7] {
        [
            Message::Report {
                seq: u64::MAX,
                time_ms: 1_764_000_000_000,
                // Longest name, with multi-byte characters.
                sample: name("échantillon-2026-11-26-ß-0000000042"),
                // The most classes, each name the longest.
                counts: class_counts(
                    (0..MAX_CLASSES as u32).map(|i| ("ß".repeat(8).leak() as &str, u32::MAX - i)),
                ),
                frame_ms: 118,
                warnings: warn::FRAME_QUALITY | warn::BACKLOG,
            },
            Message::Heartbeat {
                uptime_s: 86_400,
                last_seq: 12,
            },
            Message::Status {
                last_seq: 12,
                acked_seq: 10,
                malformed: 3,
                model: name(&"x".repeat(40)),
                warnings: 0,
            },
            Message::Ack { seq: 0 },
            Message::Nack { seq: 5, reason: 2 },
            Message::GetStatus,
            Message::ResendFrom { seq: 1 << 40 },
        ]
    }

    #[test]
    fn names_are_cut_on_character_boundaries() {
        let n = name(&"é".repeat(20));
        assert_eq!(n.len(), 32);
        assert_eq!(n.chars().count(), 16);
    }

    #[test]
    fn every_message_round_trips_and_frames_hold_one_zero() {
        let mut d = Decoder::new();
        for m in all() {
            let wire = m.encode();
            assert!(wire.len() <= MAX_WIRE);
            assert_eq!(wire.iter().filter(|&&b| b == 0).count(), 1);
            assert_eq!(wire.last(), Some(&0));
            let mut got = None;
            d.feed(&wire, |x| got = Some(x));
            assert_eq!(got.as_ref(), Some(&m));
        }
        assert_eq!(d.malformed, 0);
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let m = &all()[0];
        let wire = m.encode();
        for i in 0..wire.len() - 1 {
            for bit in 0..8 {
                let mut w = wire.clone();
                w[i] ^= 1 << bit;
                let mut d = Decoder::new();
                let mut got = std::vec::Vec::new();
                d.feed(&w, |x| got.push(x));
                // A flip may create a 0x00 (splitting the frame) or break
                // COBS, the CRC or the layout: never a wrong message.
                assert!(got.is_empty(), "byte {i} bit {bit} gave {got:?}");
                assert!(d.malformed >= 1);
            }
        }
    }

    #[test]
    fn garbage_is_counted_and_the_next_frame_still_decodes() {
        let mut d = Decoder::new();
        let mut got = std::vec::Vec::new();
        // Line noise, an overlong run, then a good frame.
        d.feed(&[0x55, 0x13, 0x00, 0x02, 0xff, 0x00], |m| got.push(m));
        d.feed(&[0x41; 1000], |m| got.push(m));
        d.feed(&[0x00], |m| got.push(m));
        assert_eq!(d.last_error, Some(FrameError::TooLong));
        d.feed(&Message::Ack { seq: 9 }.encode(), |m| got.push(m));
        assert_eq!(got, [Message::Ack { seq: 9 }]);
        assert_eq!(d.malformed, 3);
        // Empty frames between delimiters are not errors.
        d.feed(&[0, 0, 0], |m| got.push(m));
        assert_eq!(d.malformed, 3);
    }

    /// A version 1 report, byte for byte as a unit before classes were
    /// named sent it: refused as a whole, and the decoder says which
    /// version the peer speaks.
    #[test]
    fn a_version_1_peer_is_refused_and_named() {
        let mut body = std::vec![1u8, REPORT];
        body.extend_from_slice(&7u64.to_le_bytes());
        body.extend_from_slice(&1_764_000_000_000u64.to_le_bytes());
        body.extend_from_slice(&[6]);
        body.extend_from_slice(b"plot-1");
        for c in [3u32, 1, 0, 50] {
            body.extend_from_slice(&c.to_le_bytes());
        }
        body.push(0);
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        let mut wire = std::vec![0u8; body.len() + 4];
        let n = cobs::encode(&body, &mut wire);
        wire.truncate(n);
        wire.push(0);
        let mut d = Decoder::new();
        let mut got = std::vec::Vec::new();
        d.feed(&wire, |m| got.push(m));
        assert!(got.is_empty());
        assert_eq!(d.peer_version, Some(1));
        let e = d.last_error.unwrap().to_string();
        assert!(e.contains("version 1") && e.contains("version 2"), "{e}");
    }

    #[test]
    fn class_lists_that_do_not_fit_are_named() {
        let c = |v: &[&str]| {
            v.iter()
                .map(|s| s.to_string())
                .collect::<std::vec::Vec<_>>()
        };
        assert!(check_classes(&c(&["worm", "egg", "cyst", "juvenile"])).is_ok());
        let e = check_classes(&c(&["a"; 9])).unwrap_err();
        assert!(e.contains("at most 8"), "{e}");
        let e = check_classes(&c(&["a-very-long-class-name"])).unwrap_err();
        assert!(e.contains("16 bytes"), "{e}");
        // Too many classes on the wire is a malformed frame.
        let mut body = std::vec![VERSION, REPORT];
        body.extend_from_slice(&[0; 16]);
        body.extend_from_slice(&[0, 9]);
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(Message::parse(&body), Err(FrameError::Classes));
    }

    #[test]
    fn other_versions_and_kinds_are_refused() {
        for (version, kind, want) in [
            (1, ACK, FrameError::Version(1)),
            (3, ACK, FrameError::Version(3)),
            (VERSION, 99, FrameError::Kind(99)),
        ] {
            let mut body = std::vec![version, kind];
            body.extend_from_slice(&7u64.to_le_bytes());
            let crc = crc32fast::hash(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            assert_eq!(Message::parse(&body), Err(want));
        }
        // Right CRC, trailing byte: a length error, not a message.
        let mut body = std::vec![VERSION, GET_STATUS, 1];
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(Message::parse(&body), Err(FrameError::Length));
    }
}
