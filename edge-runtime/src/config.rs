//! The unit's configuration (`/etc/nemascope/edge.toml`, hardware/): which
//! model, where frames come from, where the journal lives, the serial port
//! and the panel. Read once at start; every value is checked here, so a
//! typo or an out-of-range number stops the unit with a message naming the
//! key, before anything is counted. Relative paths are relative to the
//! config file's folder.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration was refused; the message names the file and key.
#[derive(Debug, thiserror::Error)]
#[error("config {path}: {msg}")]
pub struct ConfigError {
    pub path: PathBuf,
    pub msg: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub camera: CameraConfig,
    #[serde(default)]
    pub count: CountConfig,
    pub source: SourceConfig,
    pub journal: JournalConfig,
    /// No `[serial]` table: no link, results stay in the journal.
    #[serde(default)]
    pub serial: Option<SerialConfig>,
    #[serde(default)]
    pub display: DisplayConfig,
}

/// The signed bundle and the key it must verify under; both default to
/// the shipped BBBC010 model and development key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub bundle: Option<PathBuf>,
    pub public_key: Option<PathBuf>,
    /// How often (s) the running unit looks for a new bundle in `bundle`.
    #[serde(default = "default_check_s")]
    pub check_s: u64,
}

fn default_check_s() -> u64 {
    10
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            bundle: None,
            public_key: None,
            check_s: default_check_s(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Pixel size in the sample plane, for areas and lengths in µm.
    /// (default: the bundle's, the scale its model was trained at).
    #[serde(default)]
    pub um_per_px: Option<f32>,
    /// Bits per pixel the camera delivers (8 to 16), which the light
    /// checks judge against; default: found from each frame (a 12-bit
    /// camera writing 16-bit files is told apart, count.rs `light_top`).
    #[serde(default)]
    pub bit_depth: Option<u8>,
    /// Bright-field light: the clear background sits at the top of the
    /// camera's range, which the light check then does not call
    /// over-exposed (default: false).
    #[serde(default)]
    pub bright_field: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountConfig {
    /// Components smaller than this (µm²) are not counted.
    #[serde(default)]
    pub min_area_um2: f32,
    /// Superpixel voting of the maps (off: the network alone segments).
    #[serde(default)]
    pub vote: bool,
    /// Run the model on `WIDTHxHEIGHT` tiles instead of the bundle's input
    /// size: tract's memory follows the tile's area (docs/edge.md).
    #[serde(default)]
    pub tile: Option<String>,
    /// Threads counting a frame: tiles run side by side and objects are
    /// measured in parallel (default 1; the board's cores, docs/edge.md).
    #[serde(default = "one")]
    pub threads: usize,
}

fn one() -> usize {
    1
}

impl Default for CountConfig {
    fn default() -> Self {
        CountConfig {
            min_area_um2: 0.0,
            vote: false,
            tile: None,
            threads: one(),
        }
    }
}

/// `WIDTHxHEIGHT` (each 32 to 4096) as `[H, W]`.
pub fn parse_tile(t: &str) -> Result<[usize; 2], String> {
    let bad = || format!("= \"{t}\": expected WIDTHxHEIGHT, each 32 to 4096");
    let (w, h) = t.split_once('x').ok_or_else(bad)?;
    let (w, h): (usize, usize) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if !(32..=4096).contains(&w) || !(32..=4096).contains(&h) {
        return Err(bad());
    }
    Ok([h, w])
}

/// Where frames come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// A folder the acquisition software writes into. Each sub-folder is a
    /// sample; images directly inside take `sample`. A file is read once it
    /// has not changed for `settle_ms` (so half-written files are not).
    Folder {
        path: PathBuf,
        #[serde(default = "default_poll_ms")]
        poll_ms: u64,
        #[serde(default = "default_settle_ms")]
        settle_ms: u64,
        #[serde(default = "default_sample")]
        sample: String,
    },
    /// A fixed list of image files or folders, counted once.
    Files {
        paths: Vec<PathBuf>,
        sample: Option<String>,
    },
    /// Seeded synthetic frames (a unit with no camera attached: bench
    /// and display checks).
    Synth {
        #[serde(default)]
        seed: u64,
        #[serde(default = "default_synth_frames")]
        frames: u64,
        #[serde(default = "default_width")]
        width: usize,
        #[serde(default = "default_height")]
        height: usize,
        #[serde(default)]
        interval_ms: u64,
        #[serde(default = "default_synth_sample")]
        sample: String,
    },
    /// A V4L2 camera (build with `--features v4l2`): one grey frame every
    /// `interval_ms`.
    V4l2 {
        #[serde(default = "default_video")]
        device: PathBuf,
        width: u32,
        height: u32,
        #[serde(default = "default_interval_ms")]
        interval_ms: u64,
        #[serde(default = "default_sample")]
        sample: String,
    },
}

fn default_poll_ms() -> u64 {
    500
}
fn default_settle_ms() -> u64 {
    1000
}
fn default_sample() -> String {
    "unnamed".into()
}
fn default_synth_sample() -> String {
    "synthetic".into()
}
fn default_synth_frames() -> u64 {
    24
}
fn default_width() -> usize {
    512
}
fn default_height() -> usize {
    384
}
fn default_video() -> PathBuf {
    "/dev/video0".into()
}
fn default_interval_ms() -> u64 {
    5000
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    pub dir: PathBuf,
    /// Below this much free space on the journal's disk the unit warns
    /// (DISK on the screen and in reports) and stops counting rather than
    /// lose results.
    #[serde(default = "default_min_free_mb")]
    pub min_free_mb: u64,
}

fn default_min_free_mb() -> u64 {
    64
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    /// e.g. `/dev/ttyAMA0`, or the udev name `/dev/nemascope-link`.
    pub port: PathBuf,
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Reports sent ahead of the host's acknowledgement.
    #[serde(default = "default_window")]
    pub window: u64,
    #[serde(default = "default_resend_s")]
    pub resend_s: u64,
    #[serde(default = "default_heartbeat_s")]
    pub heartbeat_s: u64,
    /// How often a missing or failed port is tried again.
    #[serde(default = "default_reopen_s")]
    pub reopen_s: u64,
}

fn default_baud() -> u32 {
    115_200
}
fn default_window() -> u64 {
    8
}
fn default_resend_s() -> u64 {
    5
}
fn default_heartbeat_s() -> u64 {
    10
}
fn default_reopen_s() -> u64 {
    2
}

/// The largest `count.min_area_um2`: 1 mm², above any nematode or cyst.
pub const MAX_MIN_AREA_UM2: f32 = 1_000_000.0;
/// The largest `journal.min_free_mb`: 64 GiB, more than a unit's card.
pub const MAX_MIN_FREE_MB: u64 = 65_536;

/// Baud rates a UART and `termios` agree on.
pub const BAUDS: [u32; 8] = [
    9_600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 921_600,
];

/// Which panel shows the counts.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DisplayConfig {
    #[default]
    None,
    /// The screen written as a PNG after every frame (headless units,
    /// remote viewing, tests).
    Png {
        path: PathBuf,
        #[serde(default)]
        panel: PanelKind,
        #[serde(default = "default_scale")]
        scale: u32,
    },
    /// A Linux framebuffer (`/dev/fb0`, or an fbtft panel's `/dev/fb1`),
    /// 16-bit RGB565; its size is read from sysfs.
    Framebuffer {
        #[serde(default = "default_fb")]
        device: PathBuf,
    },
    /// A 240×320 ST7789 over SPI (build with `--features st7789`).
    St7789 {
        #[serde(default = "default_spi")]
        spi: PathBuf,
        #[serde(default = "default_gpiochip")]
        gpiochip: PathBuf,
        /// GPIO line of the data/command pin.
        dc: u32,
        /// GPIO line of the reset pin.
        reset: u32,
        #[serde(default = "default_spi_hz")]
        spi_hz: u32,
    },
    /// A 128×64 SSD1306 over I²C (build with `--features ssd1306`).
    Ssd1306 {
        #[serde(default = "default_i2c")]
        i2c: PathBuf,
        #[serde(default = "default_i2c_address")]
        address: u8,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PanelKind {
    /// 240×320 colour.
    #[default]
    Color,
    /// 128×64 monochrome.
    Mono,
}

fn default_scale() -> u32 {
    1
}
fn default_fb() -> PathBuf {
    "/dev/fb0".into()
}
fn default_spi() -> PathBuf {
    "/dev/spidev0.0".into()
}
fn default_gpiochip() -> PathBuf {
    "/dev/gpiochip0".into()
}
fn default_spi_hz() -> u32 {
    32_000_000
}
fn default_i2c() -> PathBuf {
    "/dev/i2c-1".into()
}
fn default_i2c_address() -> u8 {
    0x3c
}

impl Config {
    /// Reads, parses and checks `path`; relative paths in it are made
    /// relative to its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |msg: String| ConfigError {
            path: path.to_path_buf(),
            msg,
        };
        let text = nemascope_core::files::read_text(path).map_err(|e| err(e.to_string()))?;
        let mut c = Config::parse(&text).map_err(err)?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.resolve(base);
        c.check_outputs().map_err(err)?;
        Ok(c)
    }

    /// What the unit writes must not be what it reads: a screen PNG in the
    /// watched folder would be counted as a frame, and its next screen
    /// again, for ever.
    fn check_outputs(&self) -> Result<(), String> {
        let DisplayConfig::Png { path: png, .. } = &self.display else {
            return Ok(());
        };
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let png = abs(png);
        let read: Vec<PathBuf> = match &self.source {
            SourceConfig::Folder { path, .. } => vec![abs(path)],
            SourceConfig::Files { paths, .. } => paths.iter().map(|p| abs(p)).collect(),
            SourceConfig::Synth { .. } | SourceConfig::V4l2 { .. } => vec![],
        };
        match read.iter().find(|r| png.starts_with(r)) {
            Some(r) => Err(format!(
                "display.path {} is inside {}, which the unit counts frames from: it would count its own screen",
                png.display(),
                r.display()
            )),
            None => Ok(()),
        }
    }

    /// Parses and checks TOML text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        c.validate()?;
        Ok(c)
    }

    fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.model.bundle.as_mut().map(fix);
        self.model.public_key.as_mut().map(fix);
        match &mut self.source {
            SourceConfig::Folder { path, .. } => fix(path),
            SourceConfig::Files { paths, .. } => paths.iter_mut().for_each(fix),
            SourceConfig::Synth { .. } | SourceConfig::V4l2 { .. } => {}
        }
        fix(&mut self.journal.dir);
        if let DisplayConfig::Png { path, .. } = &mut self.display {
            fix(path);
        }
    }

    /// Range checks serde cannot express; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        fn check(
            ok: bool,
            key: &str,
            value: impl std::fmt::Display,
            want: &str,
        ) -> Result<(), String> {
            if ok {
                Ok(())
            } else {
                Err(format!("{key} = {value}: {want}"))
            }
        }
        let check_size = |w: u64, h: u64| {
            check((64..=8192).contains(&w), "source.width", w, "64 to 8192")?;
            check((64..=8192).contains(&h), "source.height", h, "64 to 8192")
        };
        let cs = self.model.check_s;
        check((1..=3600).contains(&cs), "model.check_s", cs, "1 to 3600")?;
        if let Some(um) = self.camera.um_per_px {
            check(
                nemascope_bundle::manifest::valid_um_per_px(um),
                "camera.um_per_px",
                um,
                "must be above 0 and at most 1000 (µm per pixel)",
            )?;
        }
        if let Some(b) = self.camera.bit_depth {
            check((8..=16).contains(&b), "camera.bit_depth", b, "8 to 16")?;
        }
        let min = self.count.min_area_um2;
        check(
            min.is_finite() && (0.0..=MAX_MIN_AREA_UM2).contains(&min),
            "count.min_area_um2",
            min,
            "0 to 1000000 (µm²; a cyst is under 500000)",
        )?;
        let mf = self.journal.min_free_mb;
        check(
            mf <= MAX_MIN_FREE_MB,
            "journal.min_free_mb",
            mf,
            "0 to 65536 (MiB)",
        )?;
        let th = self.count.threads;
        check((1..=64).contains(&th), "count.threads", th, "1 to 64")?;
        if let Some(t) = &self.count.tile {
            parse_tile(t).map_err(|e| format!("count.tile {e}"))?;
        }
        match &self.source {
            SourceConfig::Folder {
                path,
                poll_ms,
                settle_ms,
                sample,
            } => {
                check(
                    !path.as_os_str().is_empty(),
                    "source.path",
                    "\"\"",
                    "must name a folder",
                )?;
                check(
                    (10..=60_000).contains(poll_ms),
                    "source.poll_ms",
                    poll_ms,
                    "10 to 60000",
                )?;
                check(
                    *settle_ms <= 600_000,
                    "source.settle_ms",
                    settle_ms,
                    "at most 600000",
                )?;
                check(
                    !sample.trim().is_empty(),
                    "source.sample",
                    "\"\"",
                    "must not be empty",
                )?;
            }
            SourceConfig::Files { paths, .. } => {
                check(
                    !paths.is_empty(),
                    "source.paths",
                    "[]",
                    "must list at least one file or folder",
                )?;
            }
            SourceConfig::Synth {
                frames,
                width,
                height,
                interval_ms,
                ..
            } => {
                check(
                    (1..=1_000_000_000).contains(frames),
                    "source.frames",
                    frames,
                    "1 to 1000000000",
                )?;
                check_size(*width as u64, *height as u64)?;
                check(
                    *interval_ms <= 3_600_000,
                    "source.interval_ms",
                    interval_ms,
                    "at most 3600000",
                )?;
            }
            SourceConfig::V4l2 {
                width,
                height,
                interval_ms,
                ..
            } => {
                check_size(*width as u64, *height as u64)?;
                check(
                    (100..=3_600_000).contains(interval_ms),
                    "source.interval_ms",
                    interval_ms,
                    "100 to 3600000",
                )?;
            }
        }
        check(
            !self.journal.dir.as_os_str().is_empty(),
            "journal.dir",
            "\"\"",
            "must name a folder",
        )?;
        if let Some(s) = &self.serial {
            check(
                BAUDS.contains(&s.baud),
                "serial.baud",
                s.baud,
                &format!("one of {BAUDS:?}"),
            )?;
            check(
                (1..=64).contains(&s.window),
                "serial.window",
                s.window,
                "1 to 64",
            )?;
            check(
                (1..=600).contains(&s.resend_s),
                "serial.resend_s",
                s.resend_s,
                "1 to 600",
            )?;
            check(
                (1..=3600).contains(&s.heartbeat_s),
                "serial.heartbeat_s",
                s.heartbeat_s,
                "1 to 3600",
            )?;
            check(
                (1..=600).contains(&s.reopen_s),
                "serial.reopen_s",
                s.reopen_s,
                "1 to 600",
            )?;
        }
        match &self.display {
            DisplayConfig::Png { scale, .. } => {
                check((1..=8).contains(scale), "display.scale", scale, "1 to 8")?
            }
            DisplayConfig::St7789 { spi_hz, .. } => check(
                (100_000..=80_000_000).contains(spi_hz),
                "display.spi_hz",
                spi_hz,
                "100000 to 80000000",
            )?,
            DisplayConfig::Ssd1306 { address, .. } => check(
                (0x08..=0x77).contains(address),
                "display.address",
                format!("{address:#x}"),
                "a 7-bit I²C address, 0x08 to 0x77 (an SSD1306 is 0x3c or 0x3d)",
            )?,
            DisplayConfig::None | DisplayConfig::Framebuffer { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[source]\nkind = \"folder\"\npath = \"in\"\n[journal]\ndir = \"j\"\n";

    #[test]
    fn shortest_config_takes_the_defaults() {
        let c = Config::parse(MIN).unwrap();
        assert_eq!(c.camera.um_per_px, None, "the bundle's scale");
        assert_eq!(c.camera.bit_depth, None, "found from each frame");
        assert_eq!(c.serial, None);
        assert_eq!(c.display, DisplayConfig::None);
        assert_eq!(
            c.source,
            SourceConfig::Folder {
                path: "in".into(),
                poll_ms: 500,
                settle_ms: 1000,
                sample: "unnamed".into()
            }
        );
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("edge.toml");
        std::fs::write(&p, MIN).unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.journal.dir, dir.path().join("j"));
    }

    fn refused(text: &str) -> String {
        Config::parse(text).expect_err(text)
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let e = refused(&format!(
            "{MIN}[serial]\nport = \"/dev/ttyS0\"\nbaud = 115201\n"
        ));
        assert!(e.contains("serial.baud = 115201"), "{e}");
        let e = refused(&format!("{MIN}[camera]\num_per_px = -1.0\n"));
        assert!(e.contains("camera.um_per_px"), "{e}");
        let e = refused(&format!("{MIN}[camera]\num_per_px = nan\n"));
        assert!(e.contains("camera.um_per_px"), "{e}");
        let e = refused(&format!(
            "{MIN}[display]\nkind = \"ssd1306\"\naddress = 200\n"
        ));
        assert!(e.contains("display.address = 0xc8"), "{e}");
        let e = refused(&format!(
            "{MIN}[display]\nkind = \"png\"\npath = \"s.png\"\nscale = 0\n"
        ));
        assert!(e.contains("display.scale"), "{e}");
        let e = refused(&format!("{MIN}[count]\nthreads = 0\n"));
        assert!(e.contains("count.threads"), "{e}");
        let e = refused(&format!("{MIN}[count]\ntile = \"352\"\n"));
        assert!(e.contains("count.tile = \"352\""), "{e}");
        assert_eq!(parse_tile("352x256"), Ok([256, 352]));
        let e = refused("[source]\nkind = \"synth\"\nwidth = 10\n[journal]\ndir = \"j\"\n");
        assert!(e.contains("source.width = 10"), "{e}");
    }

    #[test]
    fn every_number_has_a_bound_that_the_error_names() {
        // Values that once stalled a unit without a word (a huge
        // min_free_mb: DISK FULL for ever) or counted nothing.
        for (table, key, value, range) in [
            ("journal", "min_free_mb", "99999999999", "0 to 65536"),
            ("count", "min_area_um2", "1e12", "0 to 1000000"),
            ("count", "min_area_um2", "-1.0", "0 to 1000000"),
            ("camera", "bit_depth", "24", "8 to 16"),
            ("camera", "bit_depth", "4", "8 to 16"),
            ("model", "check_s", "0", "1 to 3600"),
        ] {
            let text = if table == "journal" {
                format!("[source]\nkind = \"folder\"\npath = \"in\"\n[journal]\ndir = \"j\"\n{key} = {value}\n")
            } else {
                format!("{MIN}[{table}]\n{key} = {value}\n")
            };
            let e = refused(&text);
            assert!(
                e.contains(&format!("{table}.{key}")) && e.contains(range),
                "{e}"
            );
        }
        let e =
            refused("[source]\nkind = \"synth\"\nframes = 99999999999\n[journal]\ndir = \"j\"\n");
        assert!(e.contains("source.frames"), "{e}");
        // Out of the type's range: toml's own message names the key.
        let e = refused(&format!("{MIN}[camera]\nbit_depth = 300\n"));
        assert!(e.contains("bit_depth"), "{e}");
        let ok = format!("{MIN}[camera]\nbit_depth = 12\num_per_px = 2.5\n");
        let c = Config::parse(&ok).unwrap();
        assert_eq!(
            (c.camera.bit_depth, c.camera.um_per_px),
            (Some(12), Some(2.5))
        );
    }

    #[test]
    fn typos_missing_tables_and_wrong_types_are_refused() {
        // A misspelt key is an error, not a silently ignored setting.
        let e = refused(&format!(
            "{MIN}[serial]\nport = \"/dev/ttyS0\"\nbaudrate = 9600\n"
        ));
        assert!(e.contains("baudrate"), "{e}");
        let e = refused("[source]\nkind = \"folder\"\npath = \"in\"\n");
        assert!(e.contains("journal"), "{e}");
        let e = refused("[source]\nkind = \"webcam\"\n[journal]\ndir = \"j\"\n");
        assert!(e.contains("webcam"), "{e}");
        let e = refused(&format!("{MIN}[camera]\num_per_px = \"four\"\n"));
        assert!(e.contains("um_per_px") || e.contains("float"), "{e}");
        let e = refused("[source\n");
        assert!(!e.is_empty());
    }

    #[test]
    fn a_screen_written_where_frames_are_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("edge.toml");
        for (source, bad) in [
            ("kind = \"folder\"\npath = \"in\"", true),
            ("kind = \"files\"\npaths = [\"in\"]", true),
            ("kind = \"folder\"\npath = \"other\"", false),
        ] {
            let text = format!(
                "[source]\n{source}\n[journal]\ndir = \"j\"\n[display]\nkind = \"png\"\npath = \"in/screen.png\"\n"
            );
            std::fs::write(&p, text).unwrap();
            match Config::load(&p) {
                Err(e) if bad => assert!(e.to_string().contains("its own screen"), "{e}"),
                Ok(_) if !bad => {}
                other => panic!("{source}: {other:?}"),
            }
        }
    }

    #[test]
    fn shipped_example_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hardware/edge.toml");
        let c = Config::load(&p).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.serial.is_some());
    }
}
