//! The training configuration, read from TOML. Every field has a default, so
//! a config file holds only what differs; unknown keys are refused so a typo
//! never silently trains with a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nemascope_core::felzenszwalb::Params;
use nemascope_core::pooling::Pooling;
use nemascope_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::unet::UNetConfig;
use nemascope_core::voting::VoteParams;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub pooling: PoolingConfig,
    pub train: TrainConfig,
    pub vote: VoteConfig,
    pub augment: AugmentConfig,
    /// Per-class settings by class name (`[class.egg]`); a class not named
    /// here uses the data and pooling sections' values.
    pub class: BTreeMap<String, ClassConfig>,
}

/// What one class may set apart from the others: objects whose areas differ
/// 70× (an egg in a 96-px tile is 1.8 % of it, a cyst is larger than the
/// tile) cannot share one tile size, one sliver threshold and one r.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassConfig {
    /// Side of the square cells this class is labelled and pooled at; it
    /// divides `data.crop` (0: the whole crop, as without this section).
    pub cell: usize,
    /// Pixels of the class for "present" in a cell (0: `data.min_pixels`);
    /// a cell with fewer but some is left unlabelled for this class only.
    pub min_pixels: usize,
    /// This class's GWP r (unset: `pooling.r`).
    pub r: Option<f32>,
}

/// Width in working pixels of the objects the built-in tile and superpixel
/// settings were tuned on (BBBC010 worms: median 9.1 px, 2·area/perimeter
/// over 200 worm masks).
pub const REFERENCE_OBJECT_PX: f32 = 9.0;

/// One class's resolved settings (see [`Config::classes`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassSettings {
    /// Cell side in pixels; 0 with whole-image labels (`data.crop = 0`).
    pub cell: usize,
    pub min_pixels: usize,
    pub pooling: Pooling,
}

/// Which data set layout `data.root` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    /// The Broad's C. elegans wells with their worm masks.
    Bbbc010,
    /// A `labels.csv` layout (docs/data.md).
    Generic,
    /// The seeded generator, with exact truth.
    Synth,
}

impl DataKind {
    pub fn name(self) -> &'static str {
        match self {
            DataKind::Bbbc010 => "bbbc010",
            DataKind::Generic => "generic",
            DataKind::Synth => "synth",
        }
    }
}

/// What to do with a data set row that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadRows {
    /// Stop before training, listing every such row.
    Refuse,
    /// Train without them, listing them.
    Skip,
}

/// Where libtorch trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Cpu,
    Cuda,
}

/// How the Dice loss of the refinement (and supervised) phases sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiceKind {
    /// Per tile and class, then averaged (the paper's form; the default).
    #[default]
    PerTile,
    /// Per class over the batch.
    Batch,
}

/// The global pooling of stage 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolingKind {
    Gap,
    Gmp,
    Gwp,
}

/// Where images come from and how they become training inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `bbbc010`, `generic` (a `labels.csv` layout) or `synth`.
    pub kind: DataKind,
    /// Dataset folder; empty means the BBBC010 default location.
    pub root: PathBuf,
    /// Working size: every image is resized to it (the paper: 512×384).
    pub width: usize,
    pub height: usize,
    /// Fraction of images (wells) held out for validation.
    pub val_fraction: f64,
    pub seed: u64,
    /// Side of the square tiles stage 1 trains on, labelled from the masks
    /// as a person labelling a tile grid would (present ≥ `min_pixels`,
    /// absent = 0, slivers in between skipped); 0 trains on whole images
    /// with their own labels (needed when there are no masks).
    pub crop: usize,
    /// Step between tiles of the labelled grid (0 = ¾ of `crop`).
    pub stride: usize,
    pub min_pixels: usize,
    /// Frames generated when `kind = "synth"`.
    pub synth_frames: usize,
    /// The generator's preset: `classic`, `light`, `dense` or `mixed`
    /// (even frames light debris, odd frames dense).
    pub synth_preset: String,
    /// A row whose image, mask or labels cannot be used: `refuse` stops
    /// before training and lists every such row; `skip` trains without
    /// them, listing them in the log, `state.json` and `results.md`.
    pub bad_rows: BadRows,
    /// With `skip`: the most rows (as a fraction of the table) that may
    /// be skipped; more means something larger is wrong (a share not
    /// mounted, the wrong folder), and the run is refused.
    pub max_bad_fraction: f64,
    /// The images' pixel size in the sample plane (µm), at their own
    /// resolution. The exported bundle carries it, so `count` and a unit
    /// measure at the scale the model was trained at unless told
    /// otherwise (BBBC010 and the generator: 4 µm).
    pub um_per_px: f32,
    /// Width of the thinnest object to find (a worm's body, an egg's short
    /// axis), in µm; 0: not stated. With `um_per_px` it gives the objects'
    /// width in working pixels, and the tile, sliver threshold and
    /// superpixel settings left at their built-in values are scaled from
    /// the ones tuned on BBBC010's ~9-px-wide worms ([`Config::for_objects`]).
    pub object_um: f32,
    /// Average each `bin`×`bin` block of the files' pixels and masks on
    /// load (1: as they are): the set as a camera with `bin`× coarser
    /// pixels would see it, to try a method at another scale (BBBC010 at ½
    /// and ⅓). The images then have `bin × um_per_px` µm pixels.
    pub bin: usize,
    /// Side of the cells every class without its own `[class.X] cell` is
    /// labelled and pooled at; it divides `crop` (0: the whole crop).
    pub cell: usize,
    /// A folder of the same images labelled at tiles of half this
    /// folder's side (`nemascope-label --tile`), generic data with
    /// `crop = 0` only: each tile is then labelled and pooled as its 2×2
    /// cells, the finer tiles' labels, so the maps learn where in the tile
    /// the object is (a network trained on the small tiles alone sees too
    /// little around them). Empty: whole-tile labels.
    pub cells: PathBuf,
    /// A file naming, one per line, the images (by file name) a review
    /// marked because the model got them wrong (`labelled --corrections`
    /// writes it); empty: none.
    pub reviewed: PathBuf,
    /// How many times as often stage 1 draws a reviewed training image's
    /// regions as any other's: the model's own mistakes weigh more.
    pub reviewed_repeat: usize,
    /// Side of the squares (µm) whose medians give each image's lamp, which
    /// it is divided by before standardising (`nemascope_core::flatfield`;
    /// 0: off). Several objects wide: a lamp's fall-off spans the field.
    /// The bundle records it, so `count` corrects its frames the same way.
    pub flat_field_um: f32,
}

impl DataConfig {
    /// The pixel size of the images as loaded (after `bin`), in µm.
    pub fn loaded_um_per_px(&self) -> f32 {
        self.um_per_px * self.bin as f32
    }

    /// How loaded images become the network's input.
    pub fn working(&self) -> crate::data::Working {
        crate::data::Working {
            width: self.width,
            height: self.height,
            um_per_px: self.loaded_um_per_px(),
            flat_field_um: self.flat_field_um,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub base: i64,
    pub depth: usize,
    /// Depthwise-separable 3×3 convolutions (small students).
    pub separable: bool,
}

/// `gap`, `gmp` or `gwp` with its `r`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolingConfig {
    pub kind: PoolingKind,
    pub r: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Train on the true masks with Dice loss (the fully supervised
    /// baseline) instead of stages 1–3; same network and step budget.
    pub supervised: bool,
    pub lr: f64,
    pub batch: usize,
    pub steps_per_epoch: usize,
    pub classify_epochs: usize,
    pub refine_epochs: usize,
    /// Refinement rounds (stage 3).
    pub rounds: usize,
    /// `cpu` or `cuda`.
    pub device: DeviceKind,
    /// libtorch threads; 0 keeps libtorch's choice.
    pub threads: i32,
    pub seed: u64,
    /// Dice loss form: `per-tile` (per tile and class, the paper's) or
    /// `batch` (per class over the batch; needed with several classes that
    /// most tiles lack, see `stages::dice_loss`).
    pub dice: DiceKind,
    /// Draw each batch so every class has positive regions in it (a
    /// quarter of the slots each with three classes, the rest uniform);
    /// uniform sampling gives ~1 egg tile per batch of 16 on the synthetic
    /// frames.
    pub balance: bool,
    /// In stage 1's loss, give a class's labelled positive cells and its
    /// negative cells half the weight each: a class in 5 % of the cells is
    /// otherwise best served by a map that is low everywhere.
    pub balance_bce: bool,
    /// Weight of a pixel-wise BCE added to the Dice loss of the refinement
    /// (and supervised) phases: Dice alone gives almost no gradient on
    /// batches without the class.
    pub pixel_bce: f64,
    /// Learning rate at the end of each phase as a fraction of `lr`
    /// (cosine decay by epoch; 1 keeps it constant, as the BBBC010 runs do).
    pub lr_final: f64,
    /// A refinement round is kept when, on the validation cells' labels
    /// alone, no class's proven count errors per cell exceed the kept
    /// stage's plus this margin and no class's pooled-score AUC collapsed
    /// (`train::Judged::worse_than`); otherwise the kept stage stays the
    /// teacher and refinement stops, so a collapsed round never teaches
    /// the student. 1 keeps every round.
    pub keep_margin: f64,
    /// Stage 1's hard negatives: this fraction of the batch slots not
    /// reserved for a class draw, among a few random training regions
    /// with a cell labelled absent, the one whose absent cells the network
    /// last scored highest (debris it takes for an object), instead of a
    /// region at random. 0 draws uniformly.
    pub hard_negatives: f64,
    /// Refinement learns from confident pixels only instead of Dice on
    /// whole voted masks: voted pixels whose map is at least
    /// `seed_high` are objects, unvoted ones at most `seed_low` and every
    /// pixel of a cell labelled absent are background, the band between
    /// is ignored (balanced pixel BCE), and stage 1's cell loss stays on
    /// so the pooled scores keep telling present from absent.
    pub seeded: bool,
    pub seed_low: f64,
    pub seed_high: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoteConfig {
    pub threshold: f32,
    pub rate: f32,
    pub scale: f32,
    pub sigma: f32,
    pub min_size: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    pub flips: bool,
    pub rot90: bool,
    /// Added offset drawn from ±brightness (in standard deviations).
    pub brightness: f32,
    /// Gain drawn from 1 ± contrast.
    pub contrast: f32,
    /// Half the crops are seen as a camera with up to this many times
    /// coarser pixels records them, enlarged back as `count` enlarges such
    /// a frame (1: off). A model that has only seen its own pixel size
    /// counts a coarser camera's blurred frames short: the egg teacher
    /// counted 25 % fewer eggs in the nine images binned to 8 µm.
    pub resolution: f32,
    /// Each crop zoomed by a factor drawn from 1 ± scale (0: off; at most
    /// 0.5), mirrored at its edges: objects of every size within that
    /// range. Needs one label per region (labelled folders, whole images).
    pub scale: f32,
}

// The defaults are the BBBC010 weak run that `nemascope-train train` does
// with no arguments; docs/trainer.md says where and why they differ from
// the paper's.
impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            kind: DataKind::Bbbc010,
            root: PathBuf::new(),
            // BBBC010's own size: its worms are ~8 px wide, and at the
            // paper's 512×384 superpixels can no longer follow them.
            width: 696,
            height: 520,
            val_fraction: 0.1,
            seed: 7,
            crop: 96,
            stride: 48,
            min_pixels: 60,
            synth_frames: 128,
            synth_preset: "classic".into(),
            bad_rows: BadRows::Refuse,
            max_bad_fraction: 0.1,
            um_per_px: 4.0,
            // BBBC010's worms: ~9 px at 4 µm (so its own defaults, unscaled).
            object_um: 36.0,
            bin: 1,
            cell: 0,
            cells: PathBuf::new(),
            reviewed: PathBuf::new(),
            reviewed_repeat: 3,
            flat_field_um: 0.0,
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            base: 8,
            depth: 4,
            separable: false,
        }
    }
}

impl Default for PoolingConfig {
    fn default() -> Self {
        PoolingConfig {
            kind: PoolingKind::Gwp,
            // The sweep's best on BBBC010 at stage 1 (inside the paper's 5–9).
            r: 9.0,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            supervised: false,
            // The paper's 1e-4 is too slow for a 30-minute CPU budget.
            lr: 1e-3,
            batch: 16,
            steps_per_epoch: 100,
            classify_epochs: 12,
            // Rounds long enough to converge (5-epoch rounds plateaued at 0.839).
            refine_epochs: 8,
            rounds: 3,
            device: DeviceKind::Cpu,
            threads: 0,
            seed: 7,
            dice: DiceKind::PerTile,
            balance: false,
            balance_bce: false,
            pixel_bce: 0.0,
            lr_final: 1.0,
            keep_margin: 0.02,
            hard_negatives: 0.0,
            seeded: false,
            seed_low: 0.25,
            seed_high: 0.5,
        }
    }
}

impl Default for VoteConfig {
    fn default() -> Self {
        VoteConfig {
            threshold: 0.5,
            // These maps over-cover thin worms: at the paper's 20 % the
            // background beside them is voted in; 80 % made the best targets
            // on training wells (0.770 against 0.749 at 50 %).
            rate: 0.8,
            // Finer superpixels than the paper's scale 100 / sigma 0.8 /
            // min_size 20, which merge 8-px worms into the background.
            scale: 25.0,
            sigma: 0.5,
            min_size: 10,
        }
    }
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            flips: true,
            rot90: true,
            brightness: 0.1,
            contrast: 0.1,
            resolution: 1.0,
            scale: 0.0,
        }
    }
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = nemascope_core::files::read_text(path).map_err(|e| Error::io(path, e))?;
        Config::parse(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| Error::Invalid(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// Refuses values that would train nothing or crash later (names
    /// that are not one of a setting's values are refused on parsing).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        let d = &self.data;
        nemascope_core::synth::SynthConfig::preset(&d.synth_preset, 0, 64, 64, 4.0)?;
        if !(0.0..1.0).contains(&d.max_bad_fraction) {
            return bad(format!(
                "data.max_bad_fraction {} must be in [0, 1)",
                d.max_bad_fraction
            ));
        }
        if !(d.object_um.is_finite() && (0.0..=10_000.0).contains(&d.object_um)) {
            return bad(format!(
                "data.object_um {} must be in 0..=10000 (µm; 0 = not stated)",
                d.object_um
            ));
        }
        if !(d.flat_field_um.is_finite() && (0.0..=100_000.0).contains(&d.flat_field_um)) {
            return bad(format!(
                "data.flat_field_um {} must be in 0..=100000 (µm; 0 = off)",
                d.flat_field_um
            ));
        }
        if d.bin == 0 || d.bin > 16 || (d.bin > 1 && d.kind == DataKind::Synth) {
            return bad(format!(
                "data.bin {} must be in 1..=16 (synthetic frames: set data.um_per_px instead)",
                d.bin
            ));
        }
        if !nemascope_bundle::manifest::valid_um_per_px(d.loaded_um_per_px()) {
            return bad(format!(
                "data.um_per_px {} must be above 0 and at most 1000 (µm per pixel)",
                d.um_per_px
            ));
        }
        let multiple = 1usize << self.model.depth;
        if d.width == 0 || d.height == 0 || d.width > 4096 || d.height > 4096 {
            return bad(format!(
                "data.width/height {}x{} out of 1..=4096",
                d.width, d.height
            ));
        }
        if d.crop > 0 && (d.crop > d.width.min(d.height) || d.crop % multiple != 0) {
            return bad(format!(
                "data.crop {} must fit {}x{} and be a multiple of 2^depth = {multiple}",
                d.crop, d.width, d.height
            ));
        }
        if d.crop == 0 && (d.width % multiple != 0 || d.height % multiple != 0) {
            return bad(format!(
                "data.width/height {}x{} must be multiples of 2^depth = {multiple} when crop = 0",
                d.width, d.height
            ));
        }
        if !(0.0..1.0).contains(&d.val_fraction) || d.val_fraction == 0.0 {
            return bad(format!(
                "data.val_fraction {} must be in (0, 1)",
                d.val_fraction
            ));
        }
        if d.crop > 0 && d.min_pixels == 0 {
            return bad("data.min_pixels must be > 0".into());
        }
        if self.model.base < 1 || self.model.base > 256 || self.model.depth > 6 {
            return bad(format!(
                "model.base {} (1..=256) / model.depth {} (0..=6)",
                self.model.base, self.model.depth
            ));
        }
        self.pooling()?;
        let t = &self.train;
        if !(t.lr.is_finite() && t.lr > 0.0) || t.batch == 0 || t.steps_per_epoch == 0 {
            return bad("train.lr, train.batch and train.steps_per_epoch must be > 0".into());
        }
        let v = &self.vote;
        if !(0.0..=1.0).contains(&v.threshold) || !(0.0..=1.0).contains(&v.rate) {
            return bad("vote.threshold and vote.rate must be in 0..=1".into());
        }
        if !(v.scale > 0.0 && v.sigma >= 0.0) {
            return bad("vote.scale must be > 0 and vote.sigma ≥ 0".into());
        }
        if !(0.0 <= t.seed_low && t.seed_low < t.seed_high && t.seed_high <= 1.0) {
            return bad(format!(
                "train.seed_low {} and train.seed_high {} must be 0 ≤ low < high ≤ 1",
                t.seed_low, t.seed_high
            ));
        }
        if !(0.0..=1.0).contains(&t.hard_negatives) {
            return bad(format!(
                "train.hard_negatives {} must be in [0, 1]",
                t.hard_negatives
            ));
        }
        if !(0.0..=1.0).contains(&t.keep_margin) {
            return bad(format!(
                "train.keep_margin {} must be in [0, 1]",
                t.keep_margin
            ));
        }
        if !(t.lr_final > 0.0 && t.lr_final <= 1.0) {
            return bad(format!("train.lr_final {} must be in (0, 1]", t.lr_final));
        }
        if !(t.pixel_bce.is_finite() && t.pixel_bce >= 0.0) {
            return bad(format!("train.pixel_bce {} must be ≥ 0", t.pixel_bce));
        }
        if d.crop > 0 && d.cell > 0 && (d.cell > d.crop || d.crop % d.cell != 0) {
            return bad(format!(
                "data.cell {} must divide data.crop {}",
                d.cell, d.crop
            ));
        }
        for (name, c) in &self.class {
            if d.crop > 0 && c.cell > 0 && (c.cell > d.crop || d.crop % c.cell != 0) {
                return bad(format!(
                    "class.{name}.cell {} must divide data.crop {}",
                    c.cell, d.crop
                ));
            }
            if c.r.is_some_and(|r| !(r.is_finite() && r >= 0.0)) {
                return bad(format!("class.{name}.r must be ≥ 0"));
            }
        }
        let a = &self.augment;
        if !(0.0..=1.0).contains(&a.brightness) || !(0.0..1.0).contains(&a.contrast) {
            return bad("augment.brightness in 0..=1, augment.contrast in 0..1".into());
        }
        if !(1.0..=4.0).contains(&a.resolution) {
            return bad(format!(
                "augment.resolution {} must be in 1..=4 (1: off; the largest factor a crop's \
                 pixels are coarsened by)",
                a.resolution
            ));
        }
        if !(0.0..=0.5).contains(&a.scale) {
            return bad(format!(
                "augment.scale {} must be in 0..=0.5 (0: off; crops are zoomed by 1 ± scale)",
                a.scale
            ));
        }
        Ok(())
    }

    /// `gap`, `gmp` or `gwp<r>` (as the sweep names them) as a pooling
    /// section; checked by [`Config::pooling`] like one read from TOML.
    pub fn pooling_section(name: &str) -> Result<PoolingConfig> {
        let (kind, r) = match name {
            "gap" => (PoolingKind::Gap, 0.0),
            "gmp" => (PoolingKind::Gmp, 0.0),
            _ => (
                PoolingKind::Gwp,
                name.strip_prefix("gwp")
                    .and_then(|r| r.parse().ok())
                    .ok_or_else(|| {
                        Error::Invalid(format!("pooling `{name}`: expected gap, gmp or gwp<r>"))
                    })?,
            ),
        };
        let p = PoolingConfig { kind, r };
        Config {
            pooling: p.clone(),
            ..Config::default()
        }
        .pooling()?;
        Ok(p)
    }

    pub fn pooling(&self) -> Result<Pooling> {
        match self.pooling.kind {
            PoolingKind::Gap => Ok(Pooling::Gap),
            PoolingKind::Gmp => Ok(Pooling::Gmp),
            PoolingKind::Gwp if self.pooling.r.is_finite() && self.pooling.r >= 0.0 => {
                Ok(Pooling::Gwp { r: self.pooling.r })
            }
            PoolingKind::Gwp => Err(Error::Invalid(format!(
                "pooling.r {} must be ≥ 0",
                self.pooling.r
            ))),
        }
    }

    /// Each class's cell, sliver threshold and pooling, in `classes`
    /// order; a `[class.NAME]` section naming no class of the data is
    /// refused (a typo would silently train with the defaults).
    pub fn classes(&self, classes: &[String]) -> Result<Vec<ClassSettings>> {
        if let Some(name) = self.class.keys().find(|k| !classes.contains(k)) {
            return Err(Error::Invalid(format!(
                "[class.{name}]: the data has no class `{name}` (its classes: {})",
                classes.join(", ")
            )));
        }
        let pooling = self.pooling()?;
        let settings: Vec<ClassSettings> = classes
            .iter()
            .map(|name| {
                let c = self.class.get(name).cloned().unwrap_or_default();
                ClassSettings {
                    cell: match (self.data.crop, c.cell, self.data.cell) {
                        // Whole tiles, as 2×2 cells where a finer labelling gives them.
                        (0, _, _) if !self.data.cells.as_os_str().is_empty() => self.data.width / 2,
                        (0, _, _) => 0,
                        (crop, 0, 0) => crop,
                        (_, 0, cell) => cell,
                        (_, cell, _) => cell,
                    },
                    min_pixels: if c.min_pixels > 0 {
                        c.min_pixels
                    } else {
                        self.data.min_pixels
                    },
                    pooling: match (pooling, c.r) {
                        (Pooling::Gwp { .. }, Some(r)) => Pooling::Gwp { r },
                        (p, _) => p,
                    },
                }
            })
            .collect();
        // Said before any data is read or step taken, not at the first batch.
        let region = if self.data.crop == 0 {
            self.data.width
        } else {
            self.data.crop
        };
        if self.augment.scale > 0.0 && settings.iter().any(|s| s.cell > 0 && s.cell < region) {
            return Err(Error::Invalid(format!(
                "augment.scale zooms whole regions, so it needs one label per region; \
                 here classes are labelled per cell smaller than the {region} px region \
                 (data.cells, data.cell or a [class] cell): set augment.scale = 0"
            )));
        }
        Ok(settings)
    }

    /// The config at the objects' scale: `working_um_per_px` is the pixel
    /// size after resizing to `data.width`. The built-in tile (96 px, step
    /// 48), sliver threshold (60 px) and superpixel scale (25, min size 10)
    /// were tuned on objects [`REFERENCE_OBJECT_PX`] wide; objects `s`
    /// times as wide get tiles `s`× as large (so an object fills the same
    /// share of a tile and GWP's r and the voting rate still fit), the
    /// sliver threshold `s²`×, and superpixels `s²`× as large when `s > 1`
    /// (Felzenszwalb's threshold is per pixel of a segment). Smaller objects
    /// keep the tuned crop, labelled per smaller cell, and one refinement
    /// round.
    /// Only fields still at their built-in value are derived, so a value set
    /// in the config wins; without `object_um` nothing changes.
    pub fn for_objects(&self, working_um_per_px: f32) -> Result<Config> {
        let d = &self.data;
        if d.object_um == 0.0 {
            return Ok(self.clone());
        }
        if !(working_um_per_px.is_finite() && working_um_per_px > 0.0) {
            return Err(Error::Invalid(format!(
                "working pixel size {working_um_per_px} µm must be above 0"
            )));
        }
        let s = (d.object_um / working_um_per_px / REFERENCE_OBJECT_PX) as f64;
        let (dd, dv) = (DataConfig::default(), VoteConfig::default());
        let mut out = self.clone();
        let multiple = 1usize << self.model.depth;
        let side = d.width.min(d.height) / multiple * multiple;
        if d.crop == dd.crop && d.cell == dd.cell {
            let tile = ((dd.crop as f64 * s / multiple as f64).round() as usize * multiple)
                .clamp((2 * multiple).min(side), side.max(multiple));
            let crop = dd.crop.div_ceil(tile) * tile;
            if tile >= dd.crop || crop > side {
                out.data.crop = tile;
                if d.stride == dd.stride {
                    out.data.stride = (tile / 2).max(1);
                }
            } else {
                // Smaller objects: labels and pooling per smaller cell, but
                // crops as large as tuned, so refinement still trains on
                // context like the whole frames it segments (32-px crops
                // made it collapse on BBBC010 at ⅓: 0.57 voted → 0.26).
                out.data.crop = crop;
                out.data.cell = tile;
                // Later rounds shrank these objects' masks (each vote drops
                // border superpixels): on BBBC010 at ½ and ⅓ the first
                // round was the best (0.809 / 0.830, third 0.646 / 0.698).
                if self.train.rounds == TrainConfig::default().rounds {
                    out.train.rounds = 1;
                }
            }
        }
        let area = |v: usize, floor: usize| ((v as f64 * s * s).round() as usize).max(floor);
        if d.min_pixels == dd.min_pixels {
            out.data.min_pixels = area(dd.min_pixels, 4);
        }
        // Superpixels grow with larger objects but never shrink below the
        // tuned ones: a segment needs pixels enough to average the noise,
        // and on BBBC010 at ⅓ superpixels scaled down to min_size 2 voted
        // noise in (Dice 0.26 against 0.61 unscaled, docs/trainer.md).
        let up = s.max(1.0);
        if self.vote.scale == dv.scale {
            out.vote.scale = (dv.scale as f64 * up * up) as f32;
        }
        if self.vote.min_size == dv.min_size {
            out.vote.min_size = (dv.min_size as f64 * up * up).round() as usize;
        }
        out.validate()?;
        Ok(out)
    }

    /// The tile-grid step.
    pub fn stride(&self) -> usize {
        if self.data.stride > 0 {
            self.data.stride
        } else {
            (self.data.crop * 3 / 4).max(1)
        }
    }

    pub fn vote_params(&self) -> VoteParams {
        VoteParams {
            threshold: self.vote.threshold,
            rate: self.vote.rate,
            superpixels: Params {
                scale: self.vote.scale,
                sigma: self.vote.sigma,
                min_size: self.vote.min_size,
            },
        }
    }

    pub fn unet(&self, classes: usize) -> UNetConfig {
        UNetConfig {
            in_channels: 1,
            classes: classes as i64,
            base: self.model.base,
            depth: self.model.depth,
            separable: self.model.separable,
        }
    }
}

/// A short name for a pooling, used in tables and file names.
pub fn pooling_name(p: Pooling) -> String {
    match p {
        Pooling::Gap => "GAP".into(),
        Pooling::Gmp => "GMP".into(),
        Pooling::Gwp { r } => format!("GWP r={r}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_size_scales_tiles_and_superpixels_but_never_a_set_value() {
        let d = Config::default();
        // BBBC010 at its own 4 µm: the tuned values themselves.
        assert_eq!(d.for_objects(4.0).unwrap(), d);
        // Half the resolution: objects half as wide.
        let h = d.for_objects(8.0).unwrap();
        assert_eq!(
            (h.data.crop, h.data.cell, h.data.stride, h.data.min_pixels),
            (96, 48, 48, 15)
        );
        assert_eq!((h.vote.scale, h.vote.min_size), (25.0, 10), "never finer");
        assert_eq!((h.vote.rate, h.pooling.r), (d.vote.rate, d.pooling.r));
        // A third: 32-px cells inside the tuned 96-px crops, one round.
        let t = d.for_objects(12.0).unwrap();
        assert_eq!((t.data.crop, t.data.cell, t.data.min_pixels), (96, 32, 7));
        assert_eq!((t.train.rounds, d.train.rounds), (1, 3));
        let names = ["worm".to_string()];
        assert_eq!(t.classes(&names).unwrap()[0].cell, 32);
        // ⅔: 64-px cells, so the crop grows to a multiple of them.
        let t = d.for_objects(6.0).unwrap();
        assert_eq!((t.data.crop, t.data.cell), (128, 64));
        // Twice as wide: larger tiles, but never larger than the image.
        let w = d.for_objects(2.0).unwrap();
        assert_eq!((w.data.crop, w.data.min_pixels), (192, 240));
        assert_eq!((w.vote.scale, w.vote.min_size), (100.0, 40));
        let w = d.for_objects(0.5).unwrap();
        assert_eq!(w.data.crop, 512);
        // What the config sets itself is kept; resuming derives nothing new.
        let own = Config::parse(
            "[data]
crop = 64
[vote]
scale = 30.0
",
        )
        .unwrap();
        let o = own.for_objects(8.0).unwrap();
        assert_eq!(
            (o.data.crop, o.vote.scale, o.data.min_pixels),
            (64, 30.0, 15)
        );
        assert_eq!(h.for_objects(8.0).unwrap(), h);
        // Not stated: nothing derived; a bad size is refused.
        let none = Config::parse(
            "[data]
object_um = 0.0
",
        )
        .unwrap();
        assert_eq!(none.for_objects(12.0).unwrap(), none);
        assert!(d.for_objects(0.0).is_err());
        assert!(Config::parse(
            "[data]
object_um = -1.0
"
        )
        .is_err());
        let e = Config::parse("[data]\nflat_field_um = -5.0\n").unwrap_err();
        assert!(e.to_string().contains("data.flat_field_um"), "{e}");
    }

    #[test]
    fn sweep_names_parse_to_pooling_sections() {
        assert_eq!(Config::pooling_section("gwp9").unwrap().r, 9.0);
        assert_eq!(
            Config::pooling_section("gmp").unwrap().kind,
            PoolingKind::Gmp
        );
        assert!(Config::pooling_section("gwp-1").is_err());
        assert!(Config::pooling_section("max").is_err());
    }

    #[test]
    fn class_sections_resolve_per_class_and_typos_are_refused() {
        let c = Config::parse(
            "[data]\ncrop = 192\nmin_pixels = 60\n[pooling]\nr = 5.0\n\
             [class.egg]\ncell = 64\nmin_pixels = 40\nr = 13.0\n",
        )
        .unwrap();
        let names: Vec<String> = ["worm", "egg", "cyst"].map(String::from).to_vec();
        let s = c.classes(&names).unwrap();
        assert_eq!(
            (s[0].cell, s[0].min_pixels, s[0].pooling),
            (192, 60, Pooling::Gwp { r: 5.0 })
        );
        assert_eq!(
            (s[1].cell, s[1].min_pixels, s[1].pooling),
            (64, 40, Pooling::Gwp { r: 13.0 })
        );
        assert_eq!(Config::parse(&c.to_toml()).unwrap(), c);
        let e = c.classes(&names[..1]).unwrap_err();
        assert!(e.to_string().contains("class.egg"), "{e}");
        // Zoomed crops need one label per region: refused with cells.
        let mut z = c.clone();
        z.augment.scale = 0.1;
        let e = z.classes(&names).unwrap_err();
        assert!(e.to_string().contains("augment.scale"), "{e}");
        z.class.clear();
        assert!(z.classes(&names).is_ok(), "one label per 192 px crop");
    }

    #[test]
    fn defaults_round_trip_and_typos_are_refused() {
        let c = Config::default();
        assert_eq!(Config::parse(&c.to_toml()).unwrap(), c);
        assert_eq!(Config::parse("").unwrap(), c);
        let e = Config::parse("[train]\nlearning_rate = 0.1\n").unwrap_err();
        assert!(e.to_string().contains("learning_rate"), "{e}");
        let e = Config::parse("[pooling]\nkind = \"gwp\"\nr = -1.0\n").unwrap_err();
        assert!(e.to_string().contains("pooling.r"), "{e}");
        let e = Config::parse("[data]\ncrop = 100\n").unwrap_err();
        assert!(e.to_string().contains("multiple"), "{e}");
        let e = Config::parse("[data]\nval_fraction = 0.0\n").unwrap_err();
        assert!(e.to_string().contains("val_fraction"), "{e}");
        let e = Config::parse("[data]\ncrop = 96\n[class.egg]\ncell = 40\n").unwrap_err();
        assert!(e.to_string().contains("class.egg.cell"), "{e}");
        let e = Config::parse("[augment]\nresolution = 0.5\n").unwrap_err();
        assert!(e.to_string().contains("augment.resolution"), "{e}");
        let e = Config::parse("[train]\ndevice = \"tpu\"\n").unwrap_err();
        assert!(e.to_string().contains("tpu"), "{e}");
        // Each setting with named values is a typed enum: a wrong name is
        // refused on parsing, naming the values it may take.
        for (text, want) in [
            ("[data]\nkind = \"bbbc01\"\n", "bbbc010"),
            ("[data]\nbad_rows = \"ignore\"\n", "skip"),
            ("[train]\ndice = \"per_tile\"\n", "per-tile"),
            ("[pooling]\nkind = \"max\"\n", "gmp"),
        ] {
            let e = Config::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        let c = Config::parse("[data]\nkind = \"synth\"\n[train]\ndice = \"batch\"\n").unwrap();
        assert_eq!(
            (c.data.kind, c.train.dice),
            (DataKind::Synth, DiceKind::Batch)
        );
    }
}
