//! The unit's service loop (`nemascope-edge run`): frames from the
//! configured source → count → journal (durable) → screen → serial link.
//! One thread, one frame at a time: a result is journaled before it is
//! shown or sent, and the source skips what the journal holds, so a crash,
//! a power cut or a `systemctl restart` at any moment loses and repeats
//! nothing. A serial port that is missing or fails is reopened every
//! `reopen_s`; reports it missed are sent again from the last
//! acknowledgement. A panel that fails is logged and counting goes on.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nemascope_core::objects::Calibration;
use nemascope_core::synth::SynthConfig;

use crate::config::{Config, SerialConfig, SourceConfig};
use crate::frames::inputs::path_key;
use crate::frames::{FilesSource, FolderSource, FrameSource, Next, SynthSource};
use crate::journal::{now_ms, Journal, JournalError, Record, Sources};
use crate::link::protocol::warn;
use crate::link::serial::Port;
use crate::link::{LinkError, UnitLink};
use crate::model::ModelWatch;
use crate::screen::panels::{self, Panel};
use crate::screen::{ClassRow, LinkState, Screen};
use nemascope_count::{count_frame, pixel_size, CountSettings, Model};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("source: {0}")]
    Source(String),
    #[error(transparent)]
    Panel(#[from] panels::PanelError),
}

/// Free bytes for an unprivileged writer on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

/// The serial port and the unit's side of the link over it.
pub struct SerialLink {
    port: Port,
    heartbeat_s: u64,
    resend_s: u64,
    journal_error: Option<String>,
    /// The other protocol version a peer was last heard speaking (said
    /// once in the log).
    told_version: Option<u8>,
    pub unit: UnitLink,
}

impl SerialLink {
    pub fn new(cfg: &SerialConfig, journal: &Journal, model: &str) -> Self {
        let mut unit = UnitLink::new(journal, model, Instant::now());
        unit.window = cfg.window;
        unit.resend_after = Duration::from_secs(cfg.resend_s);
        unit.heartbeat_every = Duration::from_secs(cfg.heartbeat_s);
        SerialLink {
            port: Port::new(&cfg.port, cfg.baud, Duration::from_secs(cfg.reopen_s)),
            heartbeat_s: cfg.heartbeat_s,
            resend_s: cfg.resend_s,
            journal_error: None,
            told_version: None,
            unit,
        }
    }

    /// Opens the port when due, then exchanges what is waiting. A port
    /// failure closes the port; a journal failure (an acknowledgement that
    /// cannot be saved on a full disk) is logged and tried again: at worst
    /// the host is sent a report it has, which it does not store twice.
    pub fn service(&mut self, journal: &mut Journal, now: Instant) {
        if self.port.ensure_open(now) {
            self.unit.reconnected(journal);
        }
        let bytes = self.port.read_waiting();
        let Some(w) = self.port.writer() else {
            return;
        };
        let result = self
            .unit
            .receive(&bytes, journal, now, w)
            .and_then(|_| self.unit.poll(journal, now, w));
        let peer = self.unit.decoder.peer_version;
        if peer != self.told_version {
            self.told_version = peer;
            if let Some(v) = peer {
                crate::say!(
                    "serial link: {}; nothing is delivered until both speak the same",
                    crate::link::protocol::FrameError::Version(v)
                );
            }
        }
        match result {
            Ok(()) => {
                self.journal_error = None;
                self.port.flowing();
            }
            Err(LinkError::Journal(e)) => {
                let e = e.to_string();
                if self.journal_error.as_ref() != Some(&e) {
                    crate::say!("serial link: {e}; retrying");
                }
                self.journal_error = Some(e);
            }
            Err(LinkError::Io(e)) => self.port.write_failed(&e),
        }
    }

    /// What the screen shows: down when the port is closed or the host has
    /// been silent for three heartbeats, else the reports not yet acked.
    pub fn state(&self, journal: &Journal, now: Instant) -> LinkState {
        let silent = Duration::from_secs(3 * self.heartbeat_s.max(self.resend_s));
        let heard = self
            .unit
            .last_heard
            .is_some_and(|t| now.duration_since(t) < silent);
        let unacked = journal.last_seq() - journal.acked();
        if !self.port.is_open() || !heard {
            LinkState::Down
        } else if unacked > 0 {
            LinkState::Backlog(unacked)
        } else {
            LinkState::Up
        }
    }
}

/// What a panic while counting said, as an error.
fn panicked(p: Box<dyn std::any::Any + Send>) -> nemascope_count::CountError {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    nemascope_count::CountError::Panicked(what)
}

/// The screen after a restart: the last sample's running totals and last
/// frame's counts, read back from the journal (the source of truth) and
/// matched to the screen's classes by name.
fn restore(screen: &mut Screen, journal: &mut Journal) -> Result<(), JournalError> {
    let last = journal.last_seq();
    if last == 0 {
        return Ok(());
    }
    let newest = journal.get(last)?.record;
    let mut newest_counted = true;
    for seq in (1..=last).rev() {
        let r = journal.get(seq)?.record;
        if r.sample != newest.sample {
            break;
        }
        if r.error.is_some() {
            continue;
        }
        screen.frames += 1;
        for (class, n) in r.class_counts() {
            if let Some(row) = screen.counts.iter_mut().find(|row| row.class == class) {
                row.total = row.total.saturating_add(n);
                if newest_counted {
                    row.frame = n;
                }
            }
        }
        newest_counted = false;
    }
    screen.sample = newest.sample;
    screen.frame_ms = newest.frame_ms;
    Ok(())
}

/// Makes the configured source, skipping the frames in `done`.
pub fn open_source(
    cfg: &SourceConfig,
    done: Sources,
) -> Result<Box<dyn FrameSource>, ServiceError> {
    Ok(match cfg {
        SourceConfig::Folder {
            path,
            poll_ms,
            settle_ms,
            sample,
        } => {
            if !path.is_dir() {
                return Err(ServiceError::Source(format!(
                    "{}: the watched folder does not exist",
                    path.display()
                )));
            }
            Box::new(FolderSource::new(
                path,
                Duration::from_millis(*poll_ms),
                Duration::from_millis(*settle_ms),
                sample,
                done,
            ))
        }
        SourceConfig::Files { paths, sample } => Box::new(
            FilesSource::new(paths, sample.as_deref(), &done)
                .map_err(|e| ServiceError::Source(e.to_string()))?,
        ),
        SourceConfig::Synth {
            seed,
            frames,
            width,
            height,
            interval_ms,
            sample,
        } => Box::new(SynthSource::new(
            SynthConfig {
                width: *width,
                height: *height,
                ..SynthConfig::default()
            },
            *seed,
            *frames,
            Duration::from_millis(*interval_ms),
            sample,
            done,
        )),
        #[cfg(feature = "v4l2")]
        SourceConfig::V4l2 {
            device,
            width,
            height,
            interval_ms,
            sample,
        } => Box::new(
            crate::frames::camera::V4l2Source::open(
                device,
                *width,
                *height,
                Duration::from_millis(*interval_ms),
                sample,
            )
            .map_err(ServiceError::Source)?,
        ),
        #[cfg(not(feature = "v4l2"))]
        SourceConfig::V4l2 { .. } => {
            return Err(ServiceError::Source(
                "this build has no V4L2 camera support (build with --features v4l2)".into(),
            ))
        }
    })
}

/// A counted frame waiting for the journal.
#[derive(Debug)]
struct Pending {
    record: Record,
}

/// How a step went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A frame was counted and journaled under this sequence number.
    Counted(u64),
    /// A frame could not be read or counted: journaled under this
    /// sequence number as refused, and the loop goes on.
    Refused(u64),
    /// Nothing to count now.
    Idle,
    /// The source is used up.
    Finished,
    /// Too little disk for the journal, or a write to it failed: nothing
    /// is counted until there is room.
    DiskFull,
}

/// The running unit.
pub struct Service {
    pub model: Model,
    /// The configured bundle, watched for a replacement.
    watch: Option<ModelWatch>,
    pub settings: CountSettings,
    /// `camera.um_per_px`; `None` measures at each model's own.
    um_per_px: Option<f32>,
    pub journal: Journal,
    source: Box<dyn FrameSource>,
    panel: Box<dyn Panel>,
    panel_failed: bool,
    pub link: Option<SerialLink>,
    /// Warnings about the last counted frame (its light).
    frame_warnings: u8,
    /// A result the journal refused (full disk), tried again each second.
    pending: Option<Pending>,
    last_retry: Option<Instant>,
    pending_logged: bool,
    /// Whether the unit said it stopped for lack of free space.
    disk_low_logged: bool,
    min_free: u64,
    journal_dir: PathBuf,
    pub screen: Screen,
}

impl Service {
    /// Opens everything the config names. The model must verify; a panel
    /// that cannot be opened is an error (the unit's screen is how a
    /// technician knows it works); a serial port may come later.
    pub fn open(
        cfg: &Config,
        model: Model,
        watch: Option<ModelWatch>,
    ) -> Result<Service, ServiceError> {
        // Of the sources already counted, only those that could come again
        // are worth remembering: a frame still in the folder or the list.
        let mut keep: Box<dyn FnMut(&str) -> bool> = match &cfg.source {
            SourceConfig::Folder { path, .. } => {
                let present = crate::frames::folder_keys(path);
                Box::new(move |s: &str| present.could_come_again(s))
            }
            SourceConfig::Files { paths, .. } => {
                // The files the list names now, folders expanded (the keys
                // the source gives).
                let listed: HashSet<String> = crate::frames::inputs::expand(paths, None)
                    .unwrap_or_default()
                    .iter()
                    .map(|i| path_key(&i.path))
                    .collect();
                Box::new(move |s: &str| listed.contains(s))
            }
            _ => Box::new(|_: &str| true),
        };
        let mut journal = Journal::open_keeping(&cfg.journal.dir, &mut *keep)?;
        let r = &journal.recovery;
        if r.torn_bytes > 0 {
            crate::say!("journal: cut a torn last record ({} bytes)", r.torn_bytes);
        }
        if let Some(copy) = &r.damaged_copy {
            crate::say!(
                "journal: damage found; the whole file was kept as {}",
                copy.display()
            );
        }
        let done = journal.take_sources();
        let source = open_source(&cfg.source, done)?;
        let panel = panels::open(&cfg.display)?;
        let name = model.manifest.name.clone();
        let link = cfg
            .serial
            .as_ref()
            .map(|s| SerialLink::new(s, &journal, &name));
        let classes = model.manifest.classes.clone();
        let settings = CountSettings {
            vote: cfg.count.vote,
            min_area_um2: cfg.count.min_area_um2,
            bit_depth: cfg.camera.bit_depth,
            bright_field: cfg.camera.bright_field,
            threads: cfg.count.threads,
            ..CountSettings::default()
        };
        let mut screen = Screen {
            sample: "waiting for frames".into(),
            frames: 0,
            counts: classes.iter().map(|c| ClassRow::new(c)).collect(),
            frame_ms: 0,
            model: name,
            link: if link.is_some() {
                LinkState::Down
            } else {
                LinkState::Off
            },
            warnings: 0,
        };
        // After a restart the screen shows the sample's totals again.
        restore(&mut screen, &mut journal)?;
        let mut s = Service {
            um_per_px: cfg.camera.um_per_px,
            model,
            watch,
            settings,
            journal,
            source,
            panel,
            panel_failed: false,
            frame_warnings: 0,
            pending: None,
            last_retry: None,
            pending_logged: false,
            disk_low_logged: false,
            link,
            min_free: cfg.journal.min_free_mb * 1024 * 1024,
            journal_dir: cfg.journal.dir.clone(),
            screen,
        };
        s.set_scale();
        s.show();
        Ok(s)
    }

    /// Measures at the configured pixel size, else at the model's own,
    /// and says which (and when the configured one is far from the
    /// model's).
    fn set_scale(&mut self) {
        let px = pixel_size(self.um_per_px, &self.model.manifest);
        crate::say!("measuring at {} µm per pixel ({})", px.um_per_px, px.from);
        if let Some(w) = &px.warning {
            crate::say!("camera.um_per_px: warning: {w}");
        }
        self.settings.calibration = Calibration {
            um_per_px: px.um_per_px,
        };
    }

    fn show(&mut self) {
        match self.panel.show(&self.screen) {
            Ok(()) => self.panel_failed = false,
            Err(e) => {
                if !self.panel_failed {
                    crate::say!("{e}; counting goes on");
                }
                self.panel_failed = true;
            }
        }
    }

    /// A new bundle passed every check: it counts from the next frame on.
    fn swap_model(&mut self, model: Model) {
        let name = model.manifest.name.clone();
        crate::say!("model: now {name} ({})", model.manifest.classes.join("/"));
        // The sample goes on: classes both models count keep their totals.
        let old = std::mem::take(&mut self.screen.counts);
        self.screen.counts = model
            .manifest
            .classes
            .iter()
            .map(|c| {
                old.iter()
                    .find(|r| &r.class == c)
                    .cloned()
                    .unwrap_or_else(|| ClassRow::new(c))
            })
            .collect();
        self.screen.model = name.clone();
        if let Some(l) = &mut self.link {
            l.unit.model = name;
        }
        self.model = model;
        self.set_scale();
        self.show();
    }

    /// Journals a counted frame, durable before it is shown or sent. When
    /// the journal cannot take it (a full disk), the result is kept and
    /// tried again every second; if the unit stops meanwhile, the frame
    /// was never journaled and is counted again after the restart.
    fn commit(&mut self, p: Pending) -> Step {
        self.last_retry = Some(Instant::now());
        match self.journal.append(&p.record) {
            Ok(seq) => {
                if self.pending_logged {
                    crate::say!("journal: written again");
                    self.pending_logged = false;
                }
                let r = &p.record;
                match &r.error {
                    None => crate::say!(
                        "#{seq} {} / {}: {:?} in {} ms",
                        r.sample,
                        r.source,
                        r.counts,
                        r.frame_ms
                    ),
                    Some(e) => crate::say!(
                        "#{seq} {} / {}: not counted, journaled as refused: {e}",
                        r.sample,
                        r.source
                    ),
                }
                self.show_record(p.record);
                Step::Counted(seq)
            }
            Err(e) => {
                if !self.pending_logged {
                    crate::say!(
                        "journal: cannot write ({e}); {} is kept and written when there is room, nothing new is counted",
                        p.record.source
                    );
                    self.pending_logged = true;
                }
                self.pending = Some(p);
                Step::DiskFull
            }
        }
    }

    /// A journaled record on the screen: a new sample starts its totals
    /// from zero; a refused frame leaves the counts as they were (with
    /// NOT COUNTED beside them).
    fn show_record(&mut self, r: Record) {
        if r.sample != self.screen.sample {
            self.screen.frames = 0;
            for row in &mut self.screen.counts {
                row.total = 0;
                row.frame = 0;
            }
        }
        self.screen.sample = r.sample;
        self.screen.frame_ms = r.frame_ms;
        if r.error.is_some() {
            return;
        }
        self.screen.frames += 1;
        for (row, n) in self.screen.counts.iter_mut().zip(&r.counts) {
            row.total = row.total.saturating_add(*n);
            row.frame = *n;
        }
    }

    /// Journals a frame that could not be read or counted as refused
    /// (counts zero, `NOT_COUNTED`, the reason kept): it is reported like
    /// any frame, so the host sees it, and a restarted unit does not try
    /// it again unless its file is replaced.
    fn refuse(
        &mut self,
        sample: String,
        source: String,
        identity: Option<String>,
        error: String,
        warnings: u8,
    ) -> Step {
        self.frame_warnings = warn::NOT_COUNTED;
        let record = Record {
            time_ms: now_ms(),
            sample,
            source,
            classes: self.model.manifest.classes.clone(),
            counts: vec![0; self.model.manifest.classes.len()],
            frame_ms: 0,
            model: self.model.manifest.name.clone(),
            warnings: warnings | warn::NOT_COUNTED,
            error: Some(error),
            identity,
        };
        match self.commit(Pending { record }) {
            Step::Counted(seq) => Step::Refused(seq),
            other => other,
        }
    }

    /// One turn of the loop: take up a new bundle, serve the link, then
    /// count (or retry journaling) one frame unless the disk is too full,
    /// and show the result.
    pub fn step(&mut self) -> Step {
        let now = Instant::now();
        self.poll_model(now);
        if let Some(l) = &mut self.link {
            l.service(&mut self.journal, now);
        }
        let disk_low = self.disk_low();
        let mut warnings = if disk_low { warn::DISK } else { 0 };
        if self.watch.as_ref().is_some_and(|w| w.refused.is_some()) {
            warnings |= warn::MODEL;
        }
        let step = if disk_low {
            Step::DiskFull
        } else if let Some(p) = self.pending.take() {
            self.retry(p, now)
        } else {
            self.count_next(warnings)
        };
        if self.pending.is_some() {
            warnings |= warn::DISK;
        }
        // The last frame's light stays on the screen until the next frame.
        warnings |= self.frame_warnings;
        self.update_link_and_screen(&step, warnings);
        step
    }

    /// A bundle that changed on disk: taken up if it passes every check.
    fn poll_model(&mut self, now: Instant) {
        match self.watch.as_mut().and_then(|w| w.poll(now)) {
            Some(Ok(m)) => self.swap_model(m),
            Some(Err(why)) => crate::say!(
                "model: the new bundle was refused: {why}; still counting with {}",
                self.model.manifest.name
            ),
            None => {}
        }
    }

    /// Whether the journal's disk is under `journal.min_free_mb`; a unit
    /// that stops counting says why, once, and when it goes on.
    fn disk_low(&mut self) -> bool {
        let free = free_bytes(&self.journal_dir);
        let low = free.is_some_and(|f| f < self.min_free);
        if low != self.disk_low_logged {
            match free.filter(|_| low) {
                Some(f) => crate::say!(
                    "journal: {} has {} MiB free, under journal.min_free_mb = {}: nothing is counted until there is room",
                    self.journal_dir.display(),
                    f >> 20,
                    self.min_free >> 20
                ),
                None => crate::say!("journal: room again, counting goes on"),
            }
            self.disk_low_logged = low;
        }
        low
    }

    /// A result the journal could not take yet, tried again each second:
    /// nothing new is counted until it is written.
    fn retry(&mut self, p: Pending, now: Instant) -> Step {
        if self
            .last_retry
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.pending = Some(p);
            Step::DiskFull
        } else {
            self.commit(p)
        }
    }

    /// Counts the source's next frame and journals it (or journals why it
    /// could not be counted).
    fn count_next(&mut self, warnings: u8) -> Step {
        let t0 = Instant::now();
        let f = match self.source.next() {
            Next::Frame(f) => f,
            Next::Failed {
                source,
                sample,
                identity,
                error,
            } => return self.refuse(sample, source, identity, error, warnings),
            Next::Idle => return Step::Idle,
            Next::Finished => return Step::Finished,
        };
        // A frame that makes counting panic is refused like one that
        // cannot be read: one file must never put the unit in a crash loop.
        let counted = std::panic::catch_unwind(AssertUnwindSafe(|| {
            count_frame(&self.model, &f.pixels, &self.settings)
        }))
        .unwrap_or_else(|p| Err(panicked(p)));
        let frame_ms = t0.elapsed().as_millis().min(u32::MAX as u128) as u32;
        let c = match counted {
            Ok(c) => c,
            Err(e) => return self.refuse(f.sample, f.source, f.identity, e.to_string(), warnings),
        };
        // Shown until the next frame is counted.
        self.frame_warnings = match c.quality.problem() {
            Some(p) => {
                crate::say!("{}: {p}", f.source);
                warn::FRAME_QUALITY
            }
            None => 0,
        };
        let record = Record {
            time_ms: now_ms(),
            sample: f.sample,
            source: f.source,
            classes: self.model.manifest.classes.clone(),
            counts: c
                .counts
                .iter()
                .map(|&n| n.min(u32::MAX as usize) as u32)
                .collect(),
            frame_ms,
            model: self.model.manifest.name.clone(),
            warnings: warnings | self.frame_warnings,
            error: None,
            identity: f.identity,
        };
        self.commit(Pending { record })
    }

    /// Sends a new result at once, tells the link the unit's warnings, and
    /// redraws the screen when something on it changed.
    fn update_link_and_screen(&mut self, step: &Step, mut warnings: u8) {
        let fresh = matches!(step, Step::Counted(_) | Step::Refused(_));
        if let Some(l) = &mut self.link {
            if fresh {
                // Sent now rather than on the next step.
                l.service(&mut self.journal, Instant::now());
            }
            let state = l.state(&self.journal, Instant::now());
            if state == LinkState::Down && self.journal.last_seq() > self.journal.acked() {
                warnings |= warn::BACKLOG;
            }
            l.unit.warnings = warnings;
            self.screen.link = state;
        }
        let changed = self.screen.warnings != warnings;
        self.screen.warnings = warnings;
        if fresh || changed {
            self.show();
        }
    }

    /// Whether every journaled report reached the host (or there is no link).
    pub fn all_sent(&self) -> bool {
        self.link.is_none() || self.journal.acked() == self.journal.last_seq()
    }

    /// Runs until the source is used up and, with a link, every report is
    /// acknowledged (`until_done`), or for ever.
    pub fn run(&mut self, until_done: bool) {
        let mut last_link_state = self.screen.link;
        loop {
            let step = self.step();
            if self.screen.link != last_link_state {
                last_link_state = self.screen.link;
                self.show();
            }
            match step {
                Step::Counted(_) | Step::Refused(_) => {}
                Step::Finished if until_done && self.all_sent() => return,
                Step::Idle | Step::Finished | Step::DiskFull => {
                    std::thread::sleep(Duration::from_millis(if step == Step::DiskFull {
                        1000
                    } else {
                        20
                    }))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal record of one frame of `sample`.
    fn record(sample: &str, classes: &[&str], counts: Vec<u32>, error: Option<&str>) -> Record {
        Record {
            time_ms: 1,
            sample: sample.into(),
            source: "f".into(),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            counts,
            frame_ms: 40,
            model: "m".into(),
            warnings: 0,
            error: error.map(String::from),
            identity: None,
        }
    }

    /// After a restart the screen holds the last sample's totals over its
    /// counted frames (a refused one adds nothing), matched by class name;
    /// a class the old records did not count starts at zero.
    #[test]
    fn a_restart_restores_the_samples_running_totals() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path()).unwrap();
        let rec = |sample: &str, counts: Vec<u32>, error: Option<&str>| {
            record(sample, &["worm", "egg", "cyst"], counts, error)
        };
        j.append(&rec("a", vec![9, 9, 9], None)).unwrap();
        j.append(&rec("b", vec![1, 2, 0], None)).unwrap();
        j.append(&rec("b", vec![0, 0, 0], Some("unreadable")))
            .unwrap();
        j.append(&rec("b", vec![3, 0, 1], None)).unwrap();
        let mut screen = Screen {
            sample: String::new(),
            frames: 0,
            counts: ["egg", "worm", "juvenile"]
                .iter()
                .map(|c| ClassRow::new(c))
                .collect(),
            frame_ms: 0,
            model: "m".into(),
            link: LinkState::Off,
            warnings: 0,
        };
        restore(&mut screen, &mut j).unwrap();
        assert_eq!(screen.sample, "b");
        assert_eq!(screen.frames, 2);
        let rows: Vec<(&str, u32, u32)> = screen
            .counts
            .iter()
            .map(|r| (r.class.as_str(), r.total, r.frame))
            .collect();
        assert_eq!(rows, [("egg", 2, 0), ("worm", 4, 3), ("juvenile", 0, 0)]);
    }

    /// A host that stops reading fills the line. The port stays open (a
    /// full line survives a reopen, and the write right after each reopen
    /// would close it again before a host could drain it), and once the
    /// host reads, the report arrives whole.
    #[test]
    #[cfg_attr(
        target_arch = "aarch64",
        ignore = "qemu-user cannot set a baud rate; the same code runs natively"
    )]
    fn a_full_line_keeps_the_port_open_until_the_host_reads() {
        use serialport::{SerialPort, TTYPort};
        use std::io::{Read, Write};
        let (mut host, slave) = TTYPort::pair().unwrap();
        let path = PathBuf::from(slave.name().unwrap());
        drop(slave);
        // Bytes the host never read, up to the line's limit.
        let mut filler = serialport::new(path.to_string_lossy(), 115_200)
            .timeout(Duration::ZERO)
            .open_native()
            .unwrap();
        // The kernel moves bytes on between its buffers a little later, so
        // the line is full only once writes fail for a while.
        let mut full_since = Instant::now();
        while full_since.elapsed() < Duration::from_millis(100) {
            if filler.write(&[0x55; 1024]).is_ok() {
                full_since = Instant::now();
            }
        }
        drop(filler); // what it wrote stays on the line
        let d = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(d.path()).unwrap();
        journal
            .append(&record("a", &["egg"], vec![7], None))
            .unwrap();
        let cfg = SerialConfig {
            port: path,
            baud: 115_200,
            window: 4,
            resend_s: 1,
            heartbeat_s: 1,
            reopen_s: 1,
        };
        let mut link = SerialLink::new(&cfg, &journal, "m");
        link.service(&mut journal, Instant::now());
        assert!(link.port.is_open(), "a full line closed the port");
        host.set_timeout(Duration::from_millis(20)).unwrap();
        let (mut decoder, mut got) = (crate::link::protocol::Decoder::default(), Vec::new());
        let t0 = Instant::now();
        while got.is_empty() && t0.elapsed() < Duration::from_secs(5) {
            link.service(&mut journal, Instant::now());
            let mut buf = [0u8; 4096];
            if let Ok(n) = host.read(&mut buf) {
                decoder.feed(&buf[..n], |m| {
                    if let crate::link::protocol::Message::Report { seq, .. } = m {
                        got.push(seq);
                    }
                });
            }
        }
        assert_eq!(got.first(), Some(&1), "the report once the host read");
    }

    #[test]
    fn free_space_is_read() {
        let f = free_bytes(Path::new(".")).unwrap();
        assert!(f > 0);
        assert_eq!(free_bytes(Path::new("/no/such/folder/here")), None);
    }
}
