//! From a trained run to a signed bundle: the tch weights as plain arrays
//! (BatchNorm folded), the ONNX graph (fp32 or int8 calibrated on training
//! images), the exported file scored with tract on the validation images,
//! and the manifest that records all of it.

use std::collections::BTreeMap;
use std::path::Path;

use nemascope_bundle::manifest::{Voting, FLAT_FIELD_STANDARDISE, STANDARDISE};
use nemascope_bundle::{Bundle, Manifest, FORMAT};
use nemascope_core::counting::{AreaCounter, CountSample};
use nemascope_core::objects::Calibration;
use nemascope_core::tiling::edge_window;
use nemascope_core::{Error, Mask, Plane, Result};
use nemascope_count::count::SizeRange;
use nemascope_count::{count_frame, CountSettings, Model};
use nemascope_onnx::{
    export as onnx, graph::encode, BatchNorm, Conv, InputSize, Runner, UNetWeights,
};
use tch::{nn, Device, Kind, Tensor};

use crate::config::{Config, DataKind};
use crate::data::Data;
use crate::eval;
use crate::train::State;
use crate::unet::UNetConfig;
use crate::{thresholds, verifier};

/// Why a run could not be exported, each kind kept apart: a full disk is
/// an I/O error of the bundle, not "invalid input".
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The run, its data or its weights.
    #[error(transparent)]
    Run(#[from] Error),
    /// Writing the ONNX graph or running it with tract.
    #[error("ONNX: {0}")]
    Onnx(#[from] nemascope_onnx::Error),
    /// Writing and signing the bundle.
    #[error(transparent)]
    Bundle(#[from] nemascope_bundle::Error),
    /// Counting an image with the exported model, as a unit would.
    #[error("{image}: {source}")]
    Count {
        image: String,
        source: nemascope_count::CountError,
    },
}

/// Weights problems are the run's; only here an ONNX error means the
/// weights do not form a network.
fn onnx_err(e: nemascope_onnx::Error) -> Error {
    Error::Invalid(e.to_string())
}

type Vars = std::collections::HashMap<String, Tensor>;

fn values(vars: &Vars, name: &str) -> Result<Vec<f32>> {
    let t = vars
        .get(name)
        .ok_or_else(|| Error::Invalid(format!("weights have no `{name}`")))?;
    Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))
        .map_err(|e| Error::Invalid(format!("{name}: {e}")))
}

/// Convolution `name`; a depthwise one has weight `[c, 1, k, k]`.
fn conv(vars: &Vars, name: &str, bias: bool, depthwise: bool) -> Result<Conv> {
    let w = vars
        .get(&format!("{name}.weight"))
        .ok_or_else(|| Error::Invalid(format!("weights have no `{name}.weight`")))?;
    let s: Vec<usize> = w.size().iter().map(|&d| d as usize).collect();
    if s.len() != 4 || s[2] != s[3] {
        return Err(Error::Invalid(format!("{name}: kernel shape {s:?}")));
    }
    let b = if bias {
        values(vars, &format!("{name}.bias"))?
    } else {
        vec![0.0; s[0]]
    };
    let groups = if depthwise { s[0] } else { 1 };
    Conv::grouped(
        s[0],
        s[1] * groups,
        s[2],
        groups,
        values(vars, &format!("{name}.weight"))?,
        b,
    )
    .map_err(onnx_err)
}

/// Convolution `{block}.c{unit}` folded with BatchNorm `{block}.b{unit}`;
/// units named `…d` are depthwise (unet.rs).
fn folded(vars: &Vars, block: &str, unit: &str) -> Result<Conv> {
    let bn = |f: &str| values(vars, &format!("{block}.b{unit}.{f}"));
    let norm = BatchNorm {
        gamma: bn("weight")?,
        beta: bn("bias")?,
        mean: bn("running_mean")?,
        var: bn("running_var")?,
        // tch's batch_norm2d default.
        eps: 1e-5,
    };
    conv(
        vars,
        &format!("{block}.c{unit}"),
        false,
        unit.ends_with('d'),
    )?
    .fold(&norm)
    .map_err(onnx_err)
}

/// The trained network's weights as plain arrays, BatchNorm folded.
pub fn unet_weights(vs: &nn::VarStore, cfg: UNetConfig) -> Result<UNetWeights> {
    let vars = vs.variables();
    let block = |name: String| -> Result<Vec<Conv>> {
        let mut b = Vec::new();
        for i in 1..=2 {
            if vars.contains_key(&format!("{name}.c{i}d.weight")) {
                b.push(folded(&vars, &name, &format!("{i}d"))?);
            }
            b.push(folded(&vars, &name, &i.to_string())?);
        }
        Ok(b)
    };
    let down = (0..=cfg.depth)
        .map(|l| block(format!("down{l}")))
        .collect::<Result<Vec<_>>>()?;
    let up = (0..cfg.depth)
        .rev()
        .map(|l| block(format!("up{l}")))
        .collect::<Result<Vec<_>>>()?;
    let w = UNetWeights {
        depth: cfg.depth,
        down,
        up,
        head: conv(&vars, "head", true, false)?,
    };
    w.check().map_err(onnx_err)?;
    if w.separable() != cfg.separable {
        return Err(Error::Invalid(format!(
            "weights are {}separable but the config says separable = {}",
            if w.separable() { "" } else { "not " },
            cfg.separable
        )));
    }
    Ok(w)
}

/// Working size rounded up to a multiple of `2^depth`: one tile per image.
pub fn default_input(cfg: &Config) -> InputSize {
    let m = 1usize << cfg.model.depth;
    InputSize {
        height: cfg.data.height.div_ceil(m) * m,
        width: cfg.data.width.div_ceil(m) * m,
    }
}

pub use nemascope_onnx::Precision;

/// The ONNX bytes of `w` at `size`; int8 is calibrated on `calibration`
/// (working-size inputs of training images).
pub fn onnx_bytes(
    w: &UNetWeights,
    size: InputSize,
    precision: Precision,
    calibration: &[&Plane],
) -> std::result::Result<Vec<u8>, ExportError> {
    let model = match precision {
        // f16 is the float file, run in half precision by the unit.
        Precision::Fp32 | Precision::F16 => onnx::fp32(w, size, false)?,
        Precision::Int8 => {
            // Calibration tiles are the images edge-padded to the input size
            // (what the unit's tiling feeds for a one-tile image).
            let tiles: Vec<Vec<f32>> = calibration.iter().map(|p| pad_to(p, size)).collect();
            let cal = nemascope_onnx::run::calibrate(w, size, &tiles)?;
            onnx::int8(w, size, &cal)?
        }
    };
    Ok(encode(&model))
}

/// The top-left `size` window of `p`, edge pixels repeated past its end.
fn pad_to(p: &Plane, size: InputSize) -> Vec<f32> {
    let mut out = vec![0f32; size.height * size.width];
    edge_window(
        p.data(),
        [1, p.height(), p.width()],
        (0, 0),
        (size.height, size.width),
        &mut out,
    );
    out
}

/// Per image, each class's mask at the file's size and its count.
pub type ItemCounts = (Vec<Vec<Mask>>, Vec<Vec<Option<usize>>>);

/// Counts `items` of `data` exactly as a unit counts them:
/// `nemascope_count::count_frame` on each file's own pixels at the bundle's
/// pixel size. Returns the masks at the file's size and the counts.
pub fn count_items(
    model: &Model,
    data: &Data,
    items: &[usize],
) -> std::result::Result<ItemCounts, ExportError> {
    let settings = unit_settings(model);
    let (mut masks, mut counts) = (Vec::new(), Vec::new());
    for &i in items {
        let c = count_item(model, &data.items[i], &settings)?;
        masks.push((0..c.masks.len()).map(|k| c.mask(k)).collect());
        counts.push(c.counts.into_iter().map(Some).collect());
    }
    Ok((masks, counts))
}

/// Per class with known counts on the training images, one object's area
/// (pixels at the bundle's size) fitted to the objects `model` itself
/// accepts there, each counting one (no area rule while they are taken,
/// so no piece is dropped as under a quarter of one). The true masks give
/// the truth's area, but a weak map draws its objects thinner or fatter
/// than the truth (the synthetic student's eggs at 0.4 of it, its worms at
/// 1.4): split and dropped by the truth's area, its whole eggs fell as
/// pieces and its single worms counted two. Needs counts, not masks.
/// `model`'s manifest is as given on return.
fn object_areas(
    model: &mut Model,
    data: &Data,
) -> std::result::Result<Vec<(String, f64)>, ExportError> {
    let known: Vec<usize> = data
        .train
        .iter()
        .copied()
        .filter(|&i| data.items[i].counts.iter().any(Option::is_some))
        .collect();
    if known.is_empty() {
        return Ok(Vec::new());
    }
    let areas = std::mem::take(&mut model.manifest.object_area_px);
    let counted = per_object_areas(model, data, &known);
    model.manifest.object_area_px = areas;
    let counted = counted?;
    let um_per_px = unit_settings(model).calibration.um_per_px;
    Ok(data
        .classes
        .iter()
        .enumerate()
        .filter_map(|(c, name)| {
            let samples: Vec<CountSample> = known
                .iter()
                .zip(&counted)
                .filter_map(|(&i, objects)| {
                    Some(CountSample {
                        areas: objects[c].clone(),
                        count: (*data.items[i].counts.get(c)?)?,
                    })
                })
                .collect();
            let area = AreaCounter::fit(&samples).ok()?.reference_area;
            if !plausible_area(name, area, um_per_px) {
                eprintln!(
                    "{name}: one object's area fitted to the model's own objects, \
                     {area:.1} px ({:.0} µm²), is outside the sizes one {name} can have: \
                     its map lights too little of the class to calibrate; the area is not fitted",
                    area * f64::from(um_per_px).powi(2)
                );
                return None;
            }
            Some((name.clone(), area))
        })
        .collect())
}

/// Whether one object of `class` can be `area_px` pixels at `um_per_px`
/// (within its [`SizeRange`], the class's biology). A map that lights too
/// little of a class fits an area below its smallest object: a student
/// whose egg map died fitted 0.7 px, so each blob it kept counted dozens.
fn plausible_area(class: &str, area_px: f64, um_per_px: f32) -> bool {
    SizeRange::new(class, um_per_px, 0.0).holds(area_px)
}

/// Each item's accepted objects' areas per class, in pixels at the
/// bundle's size.
fn per_object_areas(
    model: &Model,
    data: &Data,
    items: &[usize],
) -> std::result::Result<Vec<Vec<Vec<usize>>>, ExportError> {
    let settings = unit_settings(model);
    let px_area = settings.calibration.um_per_px.powi(2);
    items
        .iter()
        .map(|&i| {
            let c = count_item(model, &data.items[i], &settings)?;
            let mut areas = vec![Vec::new(); data.classes.len()];
            for o in &c.objects {
                areas[o.class].push((o.area_um2 / px_area).round() as usize);
            }
            Ok(areas)
        })
        .collect()
}

/// One item counted as a unit would; an error names the image.
fn count_item(
    model: &Model,
    it: &crate::data::Item,
    settings: &CountSettings,
) -> std::result::Result<nemascope_count::Counted, ExportError> {
    count_frame(model, &it.raw, settings).map_err(|source| ExportError::Count {
        image: it.id.clone(),
        source,
    })
}

/// How a unit counts with `model` by default: at the bundle's pixel size.
pub fn unit_settings(model: &Model) -> CountSettings {
    CountSettings {
        calibration: Calibration {
            um_per_px: model
                .manifest
                .um_per_px
                .unwrap_or(Calibration::default().um_per_px),
        },
        ..CountSettings::default()
    }
}

/// What `export` measured of the file it wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    pub bundle: Bundle,
    pub dice: Vec<Option<f64>>,
    pub count_mae: Option<f64>,
    /// For a labelled folder: per source image, per class, the label
    /// checks over all its tiles (training ones included), as counted.
    pub per_image: Vec<(String, Vec<nemascope_core::counting::LabelCheck>)>,
    /// Each class's threshold as the labels chose it (empty when not
    /// chosen).
    pub thresholds: Vec<thresholds::Chosen>,
}

/// Options of one export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub name: String,
    pub precision: Precision,
    pub input: Option<InputSize>,
    pub calibration_images: usize,
    /// Choose each class's threshold and fit the object verifier from the
    /// labels ([`crate::thresholds`], [`crate::verifier`]).
    pub verifier: bool,
    /// The teacher of the run exported, when it is a student: exported
    /// instead if the student lost a class ([`crate::distill::lost_class`]),
    /// since a bundle from it would count next to nothing of that class
    /// (the synthetic student's egg map dies on most seeds,
    /// docs/trainer.md). The manifest says so under `training.shipped`.
    pub teacher: Option<std::path::PathBuf>,
    /// More for the manifest's `training` section, as (key, text): which
    /// seed `labelled --seeds` chose, and why.
    pub notes: Vec<(String, String)>,
}

/// Writes a signed bundle for a finished run, scoring the exported file
/// itself (tract, validation images) for the manifest's metrics.
pub fn export_run(
    run: &Path,
    out: &Path,
    key: &nemascope_bundle::SigningKey,
    opts: &ExportOptions,
) -> std::result::Result<Exported, ExportError> {
    // Loaded once: the student's check and the export read the same images
    // unless the teacher's data differs.
    let first = Config::load(&run.join(crate::train::CONFIG_FILE))?;
    let data = crate::data::load(&first)?;
    let lost = match &opts.teacher {
        Some(t) => crate::distill::lost_class(t, run, &data)?.map(|why| (t.as_path(), why)),
        None => None,
    };
    if let Some((t, why)) = &lost {
        eprintln!(
            "{why}: exporting its teacher {} instead (every class counts, at the teacher's cost)",
            t.display()
        );
    }
    let run = lost.as_ref().map_or(run, |(t, _)| *t);
    let (cfg, data, mut model, bytes) = unit_model(run, &first, data, opts)?;
    if let Some((_, why)) = lost {
        model.manifest.training.insert(
            "shipped".into(),
            format!("the teacher, not its student: {why}"),
        );
    }
    score_and_write(&cfg, &data, model, &bytes, opts.verifier, out, key)
}

/// Each class's threshold as a finished run's labelled cells choose it
/// ([`thresholds::choose`]) and the count errors they prove there, with
/// the network exported as a unit runs it: how `labelled --seeds` tells
/// its teachers apart without masks.
pub fn label_errors(
    run: &Path,
    opts: &ExportOptions,
) -> std::result::Result<Vec<thresholds::Chosen>, ExportError> {
    let first = Config::load(&run.join(crate::train::CONFIG_FILE))?;
    let data = crate::data::load(&first)?;
    let (cfg, data, model, _) = unit_model(run, &first, data, opts)?;
    let classes = cfg.classes(&data.classes)?;
    let unit = unit_settings(&model);
    Ok(thresholds::choose(
        &model,
        &data,
        cfg.data.crop,
        &classes,
        &unit,
    )?)
}

/// A finished run's network as a unit loads it: its config, its data
/// (`data`, loaded for `loaded`, unless the run's own differs), the model
/// with its manifest (object areas fitted, nothing chosen from labels
/// yet) and the ONNX file's bytes.
fn unit_model(
    run: &Path,
    loaded: &Config,
    data: Data,
    opts: &ExportOptions,
) -> std::result::Result<(Config, Data, Model, Vec<u8>), ExportError> {
    let (cfg, state, vs, net) = crate::train::load_model(run, None)?;
    let w = unet_weights(&vs, net.config)?;
    let size = opts.input.unwrap_or_else(|| default_input(&cfg));
    let data = if cfg.data == loaded.data {
        data
    } else {
        crate::data::load(&cfg)?
    };
    let n = opts.calibration_images.clamp(1, data.train.len().max(1));
    let calib: Vec<&Plane> = data
        .train
        .iter()
        .take(n)
        .map(|&i| &data.items[i].input)
        .collect();
    let bytes = onnx_bytes(&w, size, opts.precision, &calib)?;
    let runner = Runner::load_as(&bytes, None, opts.precision)?;
    let mut manifest = manifest(&cfg, &state, &data, &w, size, opts)?;
    // One object's area per class, for counting touching objects.
    let counters = eval::fit_counters(&data, &data.train);
    for (name, c) in data.classes.iter().zip(&counters) {
        if let Some(c) = c {
            manifest
                .object_area_px
                .insert(name.clone(), c.reference_area);
        }
    }
    let model = Model { manifest, runner };
    Ok((cfg, data, model, bytes))
}

/// Chooses each class's threshold and fits a new object verifier for an
/// existing bundle from a run's data (its config's images and labels: the
/// bundle's own training data, or a lab's folder of the same kind), scores
/// it and writes it, signed with `key`, to `out`. The model file is the bundle's, byte for byte.
pub fn refit_verifier(
    bundle: &Path,
    public_key: &nemascope_bundle::VerifyingKey,
    run: &Path,
    out: &Path,
    key: &nemascope_bundle::SigningKey,
) -> std::result::Result<Exported, ExportError> {
    let b = Bundle::open(bundle, public_key)?;
    let cfg = Config::load(&run.join(crate::train::CONFIG_FILE))?;
    let data = crate::data::load(&cfg)?;
    if b.manifest.classes != data.classes {
        return Err(ExportError::Run(Error::Invalid(format!(
            "{} counts {:?}; {}'s data has {:?}",
            bundle.display(),
            b.manifest.classes,
            run.display(),
            data.classes
        ))));
    }
    let bytes = b.model.clone();
    let mut model = Model::from_bundle(b, None)
        .map_err(|e| ExportError::Run(Error::Invalid(format!("{}: {e}", bundle.display()))))?;
    model.manifest.metrics.clear();
    model.manifest.verifiers.clear();
    model.manifest.class_thresholds.clear();
    // The labels they were chosen on may not be the ones it was trained
    // on (finer tiles of the same images, a lab's own folder).
    model.manifest.training.insert(
        "thresholds_from".into(),
        format!(
            "each class's map threshold and object verifier chosen by `nemascope-train verifier` on {} ({} images)",
            data_source(&cfg),
            data.items.len()
        ),
    );
    score_and_write(&cfg, &data, model, &bytes, true, out, key)
}

/// The scores of an exported file are the unit's own counting of it:
/// chooses each class's threshold and fits the object verifier (if asked),
/// counts the validation images (and a synthetic model's frozen
/// benchmark), puts the scores in the manifest and writes the signed
/// bundle.
fn score_and_write(
    cfg: &Config,
    data: &Data,
    mut model: Model,
    bytes: &[u8],
    verify: bool,
    out: &Path,
    key: &nemascope_bundle::SigningKey,
) -> std::result::Result<Exported, ExportError> {
    let mut manifest = model.manifest.clone();
    let mut chosen = Vec::new();
    // Each class's threshold, then the object verifier fitted on this
    // file's own candidates at it, both from the labels alone; their cell
    // errors go into the metrics.
    if verify {
        let classes = cfg.classes(&data.classes)?;
        let unit = unit_settings(&model);
        chosen = thresholds::choose(&model, data, cfg.data.crop, &classes, &unit)?;
        for ch in &chosen {
            let m = &mut manifest.metrics;
            m.insert(
                format!("cell_error_threshold_before_{}", ch.class),
                ch.error_before,
            );
            m.insert(
                format!("cell_error_threshold_chosen_{}", ch.class),
                ch.error,
            );
            if ch.threshold != manifest.threshold {
                manifest
                    .class_thresholds
                    .insert(ch.class.clone(), ch.threshold);
            }
        }
        model.manifest = manifest.clone();
        let fitted = verifier::fit(
            &model,
            data,
            cfg.data.crop,
            &classes,
            &unit_settings(&model),
        )?;
        for f in &fitted {
            let m = &mut manifest.metrics;
            m.insert(format!("val_cell_error_all_{}", f.class), f.error_all);
            m.insert(
                format!("val_cell_error_verified_{}", f.class),
                f.error_verified,
            );
        }
        manifest.verifiers = verifier::verifiers(&fitted);
        model.manifest = manifest.clone();
    }
    // One object's area as this file's masks draw it, from the counts.
    for (name, area) in object_areas(&mut model, data)? {
        let m = &mut manifest.metrics;
        if let Some(&before) = manifest.object_area_px.get(&name) {
            m.insert(format!("object_area_px_true_masks_{name}"), before);
        }
        manifest.object_area_px.insert(name, area);
    }
    model.manifest = manifest.clone();
    let (preds, counts) = count_items(&model, data, &data.val)?;
    let s = eval::score_counted(data, &data.val, &preds, &counts)?;
    let val_checks = eval::label_checks(data, &data.val, &counts);
    let m = &mut manifest.metrics;
    for (c, d) in data.classes.iter().zip(&s.dice) {
        if let Some(d) = d {
            m.insert(format!("val_dice_{c}"), *d);
        }
    }
    if let Some(e) = s.count_mae {
        m.insert("val_count_mae".into(), e);
    }
    // What the image-level labels alone say of the counts (no masks
    // needed): debris counted in absent tiles, objects missed in present
    // ones, per class over the validation tiles.
    for (name, check) in data.classes.iter().zip(val_checks) {
        if let Some(r) = check.counted_in_absent_rate() {
            m.insert(format!("val_counted_in_absent_{name}"), r);
        }
        if let Some(r) = check.nothing_in_present_rate() {
            m.insert(format!("val_nothing_in_present_{name}"), r);
        }
    }
    // A synthetic model also carries its scores on the frozen benchmark.
    if cfg.data.kind == DataKind::Synth {
        let bench = crate::data::with_benchmark(cfg)?;
        let (preds, counts) = count_items(&model, &bench, &bench.val)?;
        let b = eval::score_counted(&bench, &bench.val, &preds, &counts)?;
        for (c, name) in bench.classes.iter().enumerate() {
            if let Some(Some(d)) = b.dice.get(c) {
                m.insert(format!("benchmark_dice_{name}"), *d);
            }
            if let Some(Some(e)) = b.count_mae_per_class.get(c) {
                m.insert(format!("benchmark_count_mae_{name}"), *e);
            }
            if let (Some(&f), Some(&t)) = (b.found.get(c), b.truth.get(c)) {
                if t > 0 {
                    m.insert(
                        format!("benchmark_found_over_true_{name}"),
                        f as f64 / t as f64,
                    );
                }
            }
        }
    }
    // A lab's folder: what its labels say of each image's tiles.
    let per_image = if cfg.data.kind == DataKind::Generic {
        let (_, train_counts) = count_items(&model, data, &data.train)?;
        let items: Vec<usize> = data.train.iter().chain(&data.val).copied().collect();
        let all: Vec<Vec<Option<usize>>> = train_counts.into_iter().chain(counts).collect();
        eval::label_checks_per_image(data, &items, &all)
    } else {
        Vec::new()
    };
    let bundle = Bundle::write(out, manifest, bytes, key)?;
    Ok(Exported {
        bundle,
        dice: s.dice,
        count_mae: s.count_mae,
        per_image,
        thresholds: chosen,
    })
}

/// Where a run's images and labels come from, as the manifest says it.
fn data_source(cfg: &Config) -> String {
    if cfg.data.kind == DataKind::Synth {
        format!(
            "synthetic generator, seed {}, {} frames",
            cfg.data.seed, cfg.data.synth_frames
        )
    } else if cfg.data.root.as_os_str().is_empty() {
        format!("{} (default location)", cfg.data.kind.name())
    } else if cfg.data.cells.as_os_str().is_empty() {
        format!("{} at {}", cfg.data.kind.name(), cfg.data.root.display())
    } else {
        format!(
            "{} at {}, each tile's cells labelled at {}",
            cfg.data.kind.name(),
            cfg.data.root.display(),
            cfg.data.cells.display()
        )
    }
}

fn manifest(
    cfg: &Config,
    state: &State,
    data: &Data,
    w: &UNetWeights,
    size: InputSize,
    opts: &ExportOptions,
) -> Result<Manifest> {
    let mut training = BTreeMap::new();
    let kind = if cfg.train.supervised {
        "fully supervised (true masks)"
    } else {
        "image-level labels only"
    };
    training.insert("supervision".into(), kind.into());
    training.insert("data".into(), data_source(cfg));
    training.insert(
        "images".into(),
        format!(
            "{} training, {} validation (split seed {})",
            data.train.len(),
            data.val.len(),
            cfg.data.seed
        ),
    );
    training.insert(
        "working_size".into(),
        format!("{}x{}", cfg.data.width, cfg.data.height),
    );
    training.insert(
        "stages".into(),
        state
            .results
            .iter()
            .map(|r| r.stage.clone())
            .collect::<Vec<_>>()
            .join(", "),
    );
    training.insert("steps".into(), state.steps.to_string());
    training.extend(opts.notes.iter().cloned());
    training.insert(
        "network".into(),
        format!(
            "U-Net{} depth {} widths {:?}, {} parameters, {:.2} G multiply-adds per 384x512",
            if w.separable() {
                " (depthwise-separable)"
            } else {
                ""
            },
            w.depth,
            w.widths(),
            w.params(),
            w.macs(384, 512) as f64 / 1e9
        ),
    );
    // Pixel scale: the model saw images resized to the working size.
    let pixel_scale = data
        .items
        .first()
        .map(|it| it.input.width() as f32 / it.native_size.0 as f32)
        .unwrap_or(1.0);
    // The squares the training images were flattened with, at the median
    // width (each image's own, `data::Working`, where widths differ).
    let flat_field_px = data
        .median_native_width()
        .and_then(|w| cfg.data.working().flat_field_px(w))
        .map(|px| px as u32);
    Ok(Manifest {
        format: FORMAT,
        name: opts.name.clone(),
        classes: data.classes.clone(),
        input: [w.in_channels(), size.height, size.width],
        pixel_scale,
        normalisation: match flat_field_px {
            Some(_) => FLAT_FIELD_STANDARDISE,
            None => STANDARDISE,
        }
        .into(),
        flat_field_px,
        threshold: cfg.vote.threshold,
        class_thresholds: BTreeMap::new(),
        voting: Some(Voting {
            scale: cfg.vote.scale,
            sigma: cfg.vote.sigma,
            min_size: cfg.vote.min_size,
            rate: cfg.vote.rate,
        }),
        gwp_r: cfg.pooling.r,
        precision: opts.precision.name().into(),
        training,
        metrics: BTreeMap::new(),
        object_area_px: BTreeMap::new(),
        um_per_px: Some(cfg.data.loaded_um_per_px()),
        verifiers: BTreeMap::new(),
        model_sha256: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::plausible_area;

    #[test]
    fn a_fitted_area_must_be_a_size_the_class_can_have() {
        // at 4 µm a pixel an egg is 600–9 000 µm², 37.5–562.5 px
        assert!(plausible_area("egg", 79.0, 4.0));
        assert!(!plausible_area("egg", 0.68, 4.0), "a died egg map's fit");
        assert!(!plausible_area("egg", 600.0, 4.0), "larger than any egg");
        // the same 79 px is 316 µm² at 2 µm: under the smallest egg
        assert!(!plausible_area("egg", 79.0, 2.0));
        // worms are at least 150 × 15 µm, cysts 36 000 µm²; no upper bound
        assert!(plausible_area("worm", 1346.0, 4.0));
        assert!(!plausible_area("worm", 100.0, 4.0));
        assert!(plausible_area("cyst", 16908.0, 4.0));
        assert!(!plausible_area("cyst", 2000.0, 4.0));
        // a class the rules do not know takes any positive area
        assert!(plausible_area("larva", 3.0, 4.0));
    }
}
