//! The training driver: stage 1 (classification through global pooling),
//! stage 2 (superpixel voting of the maps) and stage 3 (refinement rounds
//! with Dice loss), or the fully supervised baseline, with a checkpoint and
//! state file after every epoch so a crash or Ctrl-C loses at most the
//! current epoch.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use nemascope_core::counting::{AreaCounter, LabelCheck};
use nemascope_core::imageio::{load_mask, save_mask};
use nemascope_core::metrics::mean_dice_positive;
use nemascope_core::{Error, Mask, Plane, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::config::{ClassSettings, Config, DeviceKind};
use crate::data::{self, grid_regions, known_absent, make_batch, region_present, Data, Labelled};
use crate::eval::{self, SegScores};
use crate::pooling::pool_cells;
use crate::stages::{dice_loss_of, voted_masks};
use crate::unet::UNet;
use crate::verifier::cells;
use rand::Rng;

/// Set by the Ctrl-C handler; checked between steps.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// One phase of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Classify,
    Refine(usize),
    Supervised,
}

impl Phase {
    pub fn name(self) -> String {
        match self {
            Phase::Classify => "classify".into(),
            Phase::Refine(k) => format!("refine{k}"),
            Phase::Supervised => "supervised".into(),
        }
    }
}

/// The phases a config asks for.
pub fn phases(cfg: &Config) -> Vec<Phase> {
    if cfg.train.supervised {
        vec![Phase::Supervised]
    } else {
        std::iter::once(Phase::Classify)
            .chain((1..=cfg.train.rounds).map(Phase::Refine))
            .collect()
    }
}

fn epochs(cfg: &Config, p: Phase) -> usize {
    match p {
        Phase::Classify => cfg.train.classify_epochs,
        Phase::Refine(_) => cfg.train.refine_epochs,
        // The same number of steps as the weak run.
        Phase::Supervised => cfg.train.classify_epochs + cfg.train.rounds * cfg.train.refine_epochs,
    }
}

/// The learning rate of epoch `epoch` of a phase of `n` epochs: cosine
/// from `train.lr` down to `train.lr × train.lr_final`.
pub fn lr_at(cfg: &Config, epoch: usize, n: usize) -> f64 {
    let t = &cfg.train;
    let done = epoch as f64 / (n.max(2) - 1) as f64;
    let f = t.lr_final
        + (1.0 - t.lr_final) * 0.5 * (1.0 + (std::f64::consts::PI * done.min(1.0)).cos());
    t.lr * f
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochLog {
    pub phase: String,
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub seconds: f64,
}

/// Scores of one way of segmenting the validation images.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageResult {
    /// `classical`, `raw maps`, `voting`, `refine k`, `supervised`.
    pub stage: String,
    pub dice: Vec<Option<f64>>,
    pub per_image: Vec<Vec<Option<f64>>>,
    /// Image-level accuracy of the pooled maps on validation regions.
    pub accuracy: Option<f64>,
    pub count_mae: Option<f64>,
    pub counts: Vec<(String, usize, usize)>,
    /// Dice of the voted training masks against the truth (what the
    /// refinement round learned from), where known: the first class.
    pub target_dice: Option<f64>,
    /// The same per class.
    #[serde(default)]
    pub target_dice_per_class: Vec<Option<f64>>,
    /// Per class, over the validation cells with a label: AUC of the pooled
    /// score, and recall and precision of "present" at 0.5.
    #[serde(default)]
    pub auc: Vec<Option<f64>>,
    #[serde(default)]
    pub recall: Vec<Option<f64>>,
    #[serde(default)]
    pub precision: Vec<Option<f64>>,
    /// Per class: count error per image, objects found and true in all.
    #[serde(default)]
    pub count_mae_per_class: Vec<Option<f64>>,
    #[serde(default)]
    pub found: Vec<usize>,
    #[serde(default)]
    pub truth: Vec<usize>,
    /// Per class, what the validation cells' labels alone say of the maps
    /// at the vote threshold (`eval::cell_checks`): absent cells with
    /// something counted, present cells with nothing, and the count errors
    /// they prove per cell (`LabelCheck::proven_errors`).
    #[serde(default)]
    pub absent_counted: Vec<Option<f64>>,
    #[serde(default)]
    pub present_empty: Vec<Option<f64>>,
    #[serde(default)]
    pub label_errors: Vec<Option<f64>>,
}

/// What survives a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Class names, in model-output order.
    pub classes: Vec<String>,
    /// Index of the phase in progress.
    pub phase: usize,
    /// Epochs finished in that phase.
    pub epoch: usize,
    pub best_val: Option<f64>,
    pub history: Vec<EpochLog>,
    pub results: Vec<StageResult>,
    /// Training seconds and steps so far (all phases).
    pub seconds: f64,
    pub steps: usize,
    pub done: bool,
    /// Weights after the last finished epoch, and the phase's best so far
    /// (`ckpt-<n>.safetensors`). A checkpoint file is written and synced
    /// under a new name before the state that names it, so a run killed at
    /// any moment resumes from weights that match its state exactly.
    #[serde(default)]
    pub last: Option<String>,
    #[serde(default)]
    pub best: Option<String>,
    /// Dataset rows left out (`data.bad_rows = "skip"`), where and why.
    #[serde(default)]
    pub skipped: Vec<String>,
    /// The finished stage whose weights are the model (`classify`,
    /// `refine1`, …) and its validation AUC (mean over classes).
    #[serde(default)]
    pub kept: Option<String>,
    #[serde(default)]
    pub kept_auc: Option<f64>,
    /// What the labels said of the kept stage, per class: a refinement
    /// round worse on any class by more than `train.keep_margin` is not
    /// kept ([`Judged::worse_than`]).
    #[serde(default)]
    pub kept_judged: Judged,
}

impl State {
    /// Reads `dir/state.json`.
    pub fn load(dir: &Path) -> Result<State> {
        let path = dir.join(STATE_FILE);
        let text = nemascope_core::files::read_text(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Dataset {
            path: path.clone(),
            line: Some(e.line() as u64),
            reason: e.to_string(),
        })
    }
}

pub const CONFIG_FILE: &str = "config.toml";
pub const STATE_FILE: &str = "state.json";
/// Checkpoints of runs started before checkpoints were named in the state.
const LEGACY_LAST: &str = "last.safetensors";
const LEGACY_BEST: &str = "best.safetensors";
/// The final model: best of the last phase.
pub const MODEL: &str = "model.safetensors";

/// The device a config names; `cuda` must exist.
pub fn device(cfg: &Config) -> Result<Device> {
    match cfg.train.device {
        DeviceKind::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceKind::Cuda => Err(Error::Invalid(
            "train.device = cuda but libtorch sees no CUDA device".into(),
        )),
        DeviceKind::Cpu => Ok(Device::Cpu),
    }
}

/// A run directory with its model, data and state.
pub struct Trainer {
    pub cfg: Config,
    pub dir: PathBuf,
    pub data: Data,
    pub device: Device,
    pub vs: nn::VarStore,
    pub net: UNet,
    pub state: State,
    /// The labelled tiles (or whole images) of the training and validation
    /// images.
    pub train_regions: Vec<Labelled>,
    pub val: Vec<Labelled>,
    /// Each class's cell, sliver threshold and pooling.
    pub settings: Vec<ClassSettings>,
    /// Per class, the training regions holding it (balanced sampling).
    positives: Vec<Vec<usize>>,
    /// The training regions with a cell labelled absent, and per training
    /// region the highest pooled score of its absent cells when last seen
    /// in stage 1 (hard-negative sampling; ½ until seen).
    negatives: Vec<usize>,
    hardness: Vec<f32>,
    counters: Vec<Option<AreaCounter>>,
    /// Log one line per epoch to stderr.
    pub verbose: bool,
    /// Score the classical baseline before training (sweeps skip it).
    pub classical: bool,
    /// Stop (as a crash would) after this many epochs in this process;
    /// tests use it to check resuming.
    pub stop_after: Option<usize>,
}

pub(crate) fn torch_err(e: tch::TchError) -> Error {
    Error::Invalid(format!("libtorch: {e}"))
}

/// Checkpoints, configs and states are written durably (fsync + rename).
pub(crate) use nemascope_core::files::write_atomic;

/// Writes weights to `path` durably (the temporary file keeps the
/// extension: libtorch picks the format from it).
pub(crate) fn save_weights(vs: &nn::VarStore, path: &Path) -> Result<()> {
    nemascope_core::files::replace_with(path, |tmp| vs.save(tmp).map_err(torch_err))
}

impl Trainer {
    /// Starts a new run in `dir` (refused if it already holds one) or, with
    /// `resume`, continues the run there from its last checkpoint.
    pub fn open(dir: &Path, cfg: Option<Config>, resume: bool) -> Result<Trainer> {
        let state_path = dir.join(STATE_FILE);
        let (cfg, state) = if resume {
            (Config::load(&dir.join(CONFIG_FILE))?, State::load(dir)?)
        } else {
            if state_path.exists() {
                return Err(Error::Invalid(format!(
                    "{} already holds a run; pass --resume to continue it or choose another --out",
                    dir.display()
                )));
            }
            let cfg = cfg.unwrap_or_default();
            cfg.validate()?;
            (cfg, State::default())
        };
        if cfg.train.threads > 0 {
            tch::set_num_threads(cfg.train.threads);
        }
        let device = device(&cfg)?;
        let data = data::load(&cfg)?;
        // Tiles and superpixels at the objects' scale; the run's config.toml
        // holds the derived values, so a resumed run derives nothing new.
        let cfg =
            cfg.for_objects(data.working_um_per_px(cfg.data.loaded_um_per_px(), cfg.data.width))?;
        if !resume {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            write_atomic(&dir.join(CONFIG_FILE), cfg.to_toml().as_bytes())?;
        }
        let mut state = state;
        if state.classes.is_empty() {
            state.classes = data.classes.clone();
            state.skipped = data.skipped.clone();
        } else if state.classes != data.classes {
            return Err(Error::Invalid(format!(
                "the run was trained on classes {:?}, the data now has {:?}",
                state.classes, data.classes
            )));
        } else if state.skipped != data.skipped {
            // Other rows now would train the rest of the run on other
            // images than its first part.
            return Err(Error::Invalid(format!(
                "the dataset changed since this run started: it skipped {} row(s), now {} \
                 would be skipped{}; mend the rows or start a new run",
                state.skipped.len(),
                data.skipped.len(),
                data.skipped
                    .iter()
                    .filter(|b| !state.skipped.contains(b))
                    .map(|b| format!("\n  new: {b}"))
                    .collect::<String>()
            )));
        }
        tch::manual_seed(cfg.train.seed as i64);
        let mut vs = nn::VarStore::new(device);
        let net = UNet::new(&vs.root(), cfg.unet(data.classes.len()));
        if resume {
            match &state.last {
                Some(name) => vs.load(dir.join(name)).map_err(torch_err)?,
                None if state.epoch + state.phase > 0 => {
                    vs.load(dir.join(LEGACY_LAST)).map_err(torch_err)?
                }
                None => {}
            }
        }
        let crop = cfg.data.crop;
        let settings = cfg.classes(&data.classes)?;
        let mut train_regions = grid_regions(&data, &data.train, crop, cfg.stride(), &settings)?;
        // What a review marked (the model's mistakes) is drawn more often.
        let marked: Vec<Labelled> = train_regions
            .iter()
            .filter(|(r, _)| data.reviewed.binary_search(&r.item).is_ok())
            .cloned()
            .collect();
        for _ in 1..cfg.data.reviewed_repeat.max(1) {
            train_regions.extend(marked.iter().cloned());
        }
        let val = grid_regions(&data, &data.val, crop, crop, &settings)?;
        if train_regions.is_empty() || val.is_empty() {
            return Err(Error::Invalid(
                "no labelled tiles: lower data.min_pixels or data.crop".into(),
            ));
        }
        let counters = eval::fit_counters(&data, &data.train);
        let positives = positives_of(&train_regions, data.classes.len());
        let negatives: Vec<usize> = (0..train_regions.len())
            .filter(|&k| {
                train_regions[k]
                    .1
                    .iter()
                    .flatten()
                    .any(|l| *l == Some(false))
            })
            .collect();
        let hardness = vec![0.5; train_regions.len()];
        Ok(Trainer {
            cfg,
            dir: dir.to_path_buf(),
            negatives,
            hardness,
            data,
            device,
            vs,
            net,
            state,
            train_regions,
            val,
            settings,
            positives,
            counters,
            verbose: true,
            classical: true,
            stop_after: None,
        })
    }

    fn save_state(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.state).expect("state serialises");
        write_atomic(&self.dir.join(STATE_FILE), &json)
    }

    fn save_weights(&self, name: &str) -> Result<()> {
        save_weights(&self.vs, &self.dir.join(name))
    }

    /// Removes checkpoint files the state no longer names (superseded
    /// ones, and any a killed process wrote before its state).
    fn prune_checkpoints(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let named = [&self.state.last, &self.state.best]
                .iter()
                .any(|n| n.as_deref() == Some(name.as_str()));
            // ckpt-<n>, or one a kill left half-written (`.ckpt-<n>…tmp…`).
            let stale = name.starts_with("ckpt-") || name.starts_with(".ckpt-");
            if stale && !named {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Runs (or continues) every phase to the end.
    pub fn run(&mut self) -> Result<()> {
        let phases = phases(&self.cfg);
        let mut epochs_here = 0;
        if self.classical
            && self.state.phase == 0
            && self.state.epoch == 0
            && self.state.results.is_empty()
        {
            let (ff, preds) = eval::classical(&self.data, &self.data.train, &self.data.val)?;
            let s = eval::score(&self.data, &self.data.val, &preds, &self.counters)?;
            let bg = if ff.median_radius > 0 {
                format!("median r={}", ff.median_radius)
            } else {
                format!("blocks {}", ff.block)
            };
            self.state.results.push(result(
                &format!("classical ({bg}, ratio {:.3})", ff.dark_ratio),
                s,
                None,
                Vec::new(),
            ));
            self.save_state()?;
        }
        while self.state.phase < phases.len() {
            let phase = phases[self.state.phase];
            let targets = self.targets(phase)?;
            let mut opt = nn::RmsProp::default()
                .build(&self.vs, self.cfg.train.lr)
                .map_err(torch_err)?;
            while self.state.epoch < epochs(&self.cfg, phase) {
                opt.set_lr(lr_at(&self.cfg, self.state.epoch, epochs(&self.cfg, phase)));
                let log = self.epoch(phase, targets.as_deref(), &mut opt)?;
                let best = self.state.best_val.is_none_or(|b| log.val_loss < b);
                let ckpt = format!("ckpt-{:04}.safetensors", self.state.history.len() + 1);
                self.save_weights(&ckpt)?;
                if best {
                    self.state.best_val = Some(log.val_loss);
                    self.state.best = Some(ckpt.clone());
                }
                self.state.last = Some(ckpt);
                if self.verbose {
                    eprintln!(
                        "{} epoch {}/{}: train loss {:.4}, val loss {:.4}{} ({:.0} s)",
                        log.phase,
                        log.epoch + 1,
                        epochs(&self.cfg, phase),
                        log.train_loss,
                        log.val_loss,
                        if best { " (best)" } else { "" },
                        log.seconds
                    );
                }
                self.state.seconds += log.seconds;
                self.state.steps += self.cfg.train.steps_per_epoch;
                self.state.history.push(log);
                self.state.epoch += 1;
                self.save_state()?;
                self.prune_checkpoints();
                epochs_here += 1;
                if INTERRUPTED.load(Ordering::SeqCst) || self.stop_after == Some(epochs_here) {
                    return Err(interrupted(&self.dir));
                }
            }
            if let Some(best) = &self.state.best {
                self.vs.load(self.dir.join(best)).map_err(torch_err)?;
            }
            let now = self.finish_phase(phase, targets.as_deref())?;
            self.save_weights(&format!("{}.safetensors", phase.name()))?;
            let fell = match (phase, &self.state.kept) {
                (Phase::Refine(_), Some(stage)) => now
                    .worse_than(
                        &self.state.kept_judged,
                        self.cfg.train.keep_margin,
                        &self.data.classes,
                    )
                    .map(|why| (why, stage.clone())),
                _ => None,
            };
            if let Some((why, stage)) = fell {
                // The round fell below the kept stage on the labels alone:
                // the kept weights stay the model and refinement stops.
                let note = format!(" (not kept: {why} {stage})");
                if let Some(r) = self.state.results.last_mut() {
                    r.stage.push_str(&note);
                }
                if self.verbose {
                    eprintln!("{}{note}; {stage} stays the model", phase.name());
                }
                self.vs
                    .load(self.dir.join(format!("{stage}.safetensors")))
                    .map_err(torch_err)?;
                self.state.phase = phases.len() - 1;
            } else {
                self.state.kept = Some(phase.name());
                self.state.kept_auc = now.mean_auc().or(self.state.kept_auc);
                self.state.kept_judged = now;
            }
            self.save_weights(MODEL)?;
            // The next phase starts from this phase's best.
            self.state.last = self.state.best.take().or(self.state.last.take());
            self.state.phase += 1;
            self.state.epoch = 0;
            self.state.best_val = None;
            self.save_state()?;
            self.prune_checkpoints();
        }
        self.state.done = true;
        self.save_state()
    }

    /// Mask targets of a phase: none for classification, the truth for the
    /// supervised baseline, and for refinement round k the maps of the
    /// newest network voted over superpixels (made once at the start of the
    /// round and kept on disk, so a resumed round learns the same masks).
    fn targets(&mut self, phase: Phase) -> Result<Option<Vec<Option<Vec<Mask>>>>> {
        match phase {
            Phase::Classify => Ok(None),
            Phase::Supervised => Ok(Some(
                self.data.items.iter().map(|i| i.truth.clone()).collect(),
            )),
            Phase::Refine(k) => {
                let dir = self.dir.join("masks").join(format!("refine{k}"));
                let classes = self.data.classes.clone();
                let file = |id: &str, c: &str| dir.join(format!("{id}_{c}.png"));
                let complete = dir.join("complete");
                let mut out = Vec::with_capacity(self.data.items.len());
                // Seeded refinement also keeps, per class, where the target
                // is known (`…_known.png`), after the voted masks.
                let seeded = self.cfg.train.seeded;
                let known = |id: &str, c: &str| dir.join(format!("{id}_{c}_known.png"));
                if complete.exists() {
                    for it in &self.data.items {
                        let mut ms = classes
                            .iter()
                            .map(|c| load_mask(&file(&it.id, c)))
                            .collect::<Result<Vec<_>>>()?;
                        if seeded {
                            for c in &classes {
                                ms.push(load_mask(&known(&it.id, c))?);
                            }
                        }
                        out.push(Some(ms));
                    }
                    return Ok(Some(out));
                }
                std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                let bar = self.bar(self.data.items.len(), &format!("voting for refine{k}"));
                let vote = self.cfg.vote_params();
                let regions: Vec<Labelled> = self
                    .train_regions
                    .iter()
                    .chain(&self.val)
                    .cloned()
                    .collect();
                for (i, it) in self.data.items.iter().enumerate() {
                    let maps = eval::predict_maps(&self.net, &it.input, self.device)?;
                    let mut absent = known_absent(&self.data, i, &regions);
                    if self.cfg.data.crop == 0 {
                        // Whole-image labels: absent classes get empty masks.
                        let (w, h) = (it.input.width(), it.input.height());
                        for (a, &present) in absent.iter_mut().zip(&it.present) {
                            if !present {
                                *a = Mask::filled(w, h, true);
                            }
                        }
                    }
                    let mut ms = voted_masks(&it.stretched, &maps, &absent, &vote)?;
                    for (c, m) in ms.iter().enumerate() {
                        save_mask(m, &file(&it.id, &classes[c]))?;
                    }
                    if seeded {
                        let t = &self.cfg.train;
                        for c in 0..classes.len() {
                            let k =
                                seed_known(&maps[c], &ms[c], &absent[c], t.seed_low, t.seed_high)?;
                            save_mask(&k, &known(&it.id, &classes[c]))?;
                            ms.push(k);
                        }
                    }
                    out.push(Some(ms));
                    bar.inc(1);
                }
                bar.finish_and_clear();
                write_atomic(&complete, b"")?;
                Ok(Some(out))
            }
        }
    }

    fn bar(&self, len: usize, what: &str) -> ProgressBar {
        let bar = ProgressBar::new(len as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed} < {eta})",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        bar
    }

    /// One epoch: `steps_per_epoch` steps on random augmented regions, then
    /// the validation loss.
    fn epoch(
        &mut self,
        phase: Phase,
        targets: Option<&[Option<Vec<Mask>>]>,
        opt: &mut nn::Optimizer,
    ) -> Result<EpochLog> {
        let t = &self.cfg.train;
        let start = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(
            t.seed ^ ((self.state.phase as u64) << 32) ^ ((self.state.epoch as u64 + 1) * 0x9e37),
        );
        let bar = self.bar(
            t.steps_per_epoch,
            &format!("{} epoch {}", phase.name(), self.state.epoch + 1),
        );
        let mut sum = 0.0;
        for step in 0..t.steps_per_epoch {
            if INTERRUPTED.load(Ordering::SeqCst) {
                bar.abandon();
                return Err(interrupted(&self.dir));
            }
            let hard = if phase == Phase::Classify {
                t.hard_negatives
            } else {
                0.0
            };
            let drawn: Vec<usize> = (0..t.batch).map(|k| self.draw(k, hard, &mut rng)).collect();
            let regions: Vec<Labelled> = drawn
                .iter()
                .map(|&k| self.train_regions[k].clone())
                .collect();
            let b = make_batch(
                &self.data,
                &regions,
                targets,
                Some((&self.cfg.augment, &mut rng)),
            )?;
            let (loss, seen) = self.loss(phase, &b, true)?;
            // Hardness is only read by hard-negative draws.
            if let Some(seen) = seen.filter(|_| hard > 0.0) {
                if let Ok(v) = Vec::<f32>::try_from(&seen.detach().to_device(Device::Cpu)) {
                    for (&k, h) in drawn.iter().zip(v) {
                        self.hardness[k] = h;
                    }
                }
            }
            opt.backward_step(&loss);
            let l = loss.double_value(&[]);
            if !l.is_finite() {
                return Err(Error::Invalid(format!(
                    "{} loss became {l} at step {step}; lower train.lr",
                    phase.name()
                )));
            }
            sum += l;
            bar.inc(1);
            bar.set_message(format!("loss {:.4}", sum / (step + 1) as f64));
        }
        bar.finish_and_clear();
        let val_loss = self.val_loss(phase, targets)?;
        Ok(EpochLog {
            phase: phase.name(),
            epoch: self.state.epoch,
            train_loss: sum / t.steps_per_epoch as f64,
            val_loss,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// The phase's loss on a batch and, in stage 1, each region's highest
    /// pooled score over its absent cells (its hardness as a negative).
    fn loss(&self, phase: Phase, b: &data::Batch, train: bool) -> Result<(Tensor, Option<Tensor>)> {
        let maps = self.net.forward_t(&b.x.to_device(self.device), train);
        Ok(match phase {
            Phase::Classify => {
                let (loss, hard) = cell_bce(
                    &maps,
                    b,
                    &self.settings,
                    self.cfg.train.balance_bce,
                    self.device,
                );
                (loss, Some(hard))
            }
            Phase::Refine(_) if self.cfg.train.seeded => {
                let m = b
                    .masks
                    .as_ref()
                    .ok_or_else(|| Error::Invalid("no mask targets".into()))?
                    .to_device(self.device);
                let c = self.data.classes.len() as i64;
                let (target, known) = (m.narrow(1, 0, c), m.narrow(1, c, c));
                let (cells, _) = cell_bce(
                    &maps,
                    b,
                    &self.settings,
                    self.cfg.train.balance_bce,
                    self.device,
                );
                (seeded_bce(&maps, &target, &known) + cells, None)
            }
            _ => {
                let m = b
                    .masks
                    .as_ref()
                    .ok_or_else(|| Error::Invalid("no mask targets".into()))?
                    .to_device(self.device);
                let dice = dice_loss_of(self.cfg.train.dice, &maps, &m);
                let loss = match self.cfg.train.pixel_bce {
                    w if w > 0.0 => {
                        let p = maps.clamp(1e-6, 1.0 - 1e-6);
                        dice + p.binary_cross_entropy::<Tensor>(&m, None, tch::Reduction::Mean) * w
                    }
                    _ => dice,
                };
                (loss, None)
            }
        })
    }

    /// The phase's loss on the fixed validation regions (weak targets in
    /// the weak phases: nothing here looks at true masks unless supervised).
    fn val_loss(&self, phase: Phase, targets: Option<&[Option<Vec<Mask>>]>) -> Result<f64> {
        let (mut sum, mut n) = (0.0, 0usize);
        for chunk in self.val.chunks(self.cfg.train.batch.max(1)) {
            let b = make_batch(&self.data, chunk, targets, None)?;
            let (l, _) = tch::no_grad(|| self.loss(phase, &b, false))?;
            sum += l.to_kind(Kind::Double).double_value(&[]) * chunk.len() as f64;
            n += chunk.len();
        }
        Ok(sum / n.max(1) as f64)
    }

    /// Scores the phase's best network on the validation images; returns
    /// the mean over classes of its pooled scores' AUC on the validation
    /// cells (labels alone), where every class has one.
    fn finish_phase(
        &mut self,
        phase: Phase,
        targets: Option<&[Option<Vec<Mask>>]>,
    ) -> Result<Judged> {
        let val = self.data.val.clone();
        let vote = self.cfg.vote_params();
        let mut raw = Vec::new();
        let mut voted = Vec::new();
        for &i in &val {
            let it = &self.data.items[i];
            let maps = eval::predict_maps(&self.net, &it.input, self.device)?;
            raw.push(eval::native_masks(it, &maps, vote.threshold)?);
            if phase == Phase::Classify {
                let absent = known_absent(&self.data, i, &self.val);
                voted.push(eval::voted_native(it, &maps, &vote, Some(&absent))?);
            }
        }
        let cls = eval::cell_scores(
            &self.net,
            &self.data,
            &self.val,
            &self.settings,
            self.cfg.train.batch,
            self.device,
        )?;
        let target_dice = match (phase, targets) {
            (Phase::Refine(_), Some(t)) => self.target_dice(t)?,
            _ => Vec::new(),
        };
        let s = eval::score(&self.data, &val, &raw, &self.counters)?;
        let name = match phase {
            Phase::Classify => "raw maps".to_string(),
            Phase::Refine(k) => format!("refine {k}"),
            Phase::Supervised => "supervised".into(),
        };
        let min_area: Vec<usize> = self
            .settings
            .iter()
            .map(|c| native_area(&self.data, &val, c.min_pixels))
            .collect();
        let checks = eval::cell_checks(&cells(&self.data, &self.val), &val, &raw, &min_area);
        let judged = Judged {
            auc: cls.auc.clone(),
            errors: checks
                .iter()
                .map(|c| (c.absent + c.present > 0).then(|| c.proven_errors()))
                .collect(),
        };
        let mut r = result(&name, s, Some(&cls), target_dice);
        r.absent_counted = checks
            .iter()
            .map(LabelCheck::counted_in_absent_rate)
            .collect();
        r.present_empty = checks
            .iter()
            .map(LabelCheck::nothing_in_present_rate)
            .collect();
        r.label_errors = judged.errors.clone();
        self.state.results.push(r);
        if phase == Phase::Classify {
            let s = eval::score(&self.data, &val, &voted, &self.counters)?;
            self.state
                .results
                .push(result("voting", s, Some(&cls), Vec::new()));
        }
        Ok(judged)
    }

    /// Per class, Dice of the training targets against the true masks over
    /// images with objects: how good the masks a round learns from are.
    fn target_dice(&self, targets: &[Option<Vec<Mask>>]) -> Result<Vec<Option<f64>>> {
        (0..self.data.classes.len())
            .map(|c| {
                let pairs: Vec<(Mask, Mask)> = self
                    .data
                    .train
                    .iter()
                    .filter_map(|&i| {
                        let truth = self.data.items[i].truth.as_ref()?;
                        Some((targets[i].as_ref()?[c].clone(), truth[c].clone()))
                    })
                    .collect();
                mean_dice_positive(&pairs)
            })
            .collect()
    }

    /// The training region for batch slot `k`: with `train.balance`, slot
    /// k mod (C+1) < C draws among the regions holding class k mod (C+1)
    /// (a rare class is in every batch), the rest uniformly, or, with
    /// probability `hard`, the hardest of a few random regions with an
    /// absent cell ([`hardest`]).
    fn draw(&self, k: usize, hard: f64, rng: &mut impl Rng) -> usize {
        match class_draw(&self.positives, self.cfg.train.balance, k, rng) {
            Some(r) => r,
            None if hard > 0.0 && !self.negatives.is_empty() && rng.random_bool(hard) => {
                hardest(&self.negatives, &self.hardness, HARD_POOL, rng)
            }
            None => rng.random_range(0..self.train_regions.len()),
        }
    }
}

/// Per class, the regions holding it (present in some cell).
pub(crate) fn positives_of(regions: &[Labelled], classes: usize) -> Vec<Vec<usize>> {
    (0..classes)
        .map(|c| {
            (0..regions.len())
                .filter(|&k| region_present(&regions[k].1, c) == Some(true))
                .collect()
        })
        .collect()
}

/// Balanced sampling (`train.balance`): batch slot `k` mod (C+1) < C draws
/// among the regions holding class `k` mod (C+1), so a rare class is in
/// every batch; `None` leaves the slot to the caller (the last of every
/// C+1 slots, a class no region holds, or balance off).
pub(crate) fn class_draw(
    positives: &[Vec<usize>],
    balance: bool,
    k: usize,
    rng: &mut impl Rng,
) -> Option<usize> {
    let pos = positives.get(k % (positives.len() + 1))?;
    (balance && !pos.is_empty()).then(|| pos[rng.random_range(0..pos.len())])
}

/// Regions a hard negative is chosen among.
const HARD_POOL: usize = 8;

/// Of `pool` regions drawn at random from `candidates`, the one with the
/// highest `hardness` (a tournament: hard negatives come often, none is
/// drawn every step, and no sort of every region is needed).
pub fn hardest(candidates: &[usize], hardness: &[f32], pool: usize, rng: &mut impl Rng) -> usize {
    (0..pool.max(1))
        .map(|_| candidates[rng.random_range(0..candidates.len())])
        .fold(None, |best: Option<usize>, k| match best {
            Some(b) if hardness[b] >= hardness[k] => Some(b),
            _ => Some(k),
        })
        .unwrap_or(candidates[0])
}

/// What the validation labels alone say of a stage, per class: the pooled
/// scores' AUC and the count errors the cells prove per cell.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Judged {
    pub auc: Vec<Option<f64>>,
    pub errors: Vec<Option<f64>>,
}

impl Judged {
    /// Why this stage is worse than `kept` on some class (`classes` name
    /// them), if it is:
    /// - more proven count errors per cell than the kept stage's plus
    ///   `margin` (it counts more debris, or misses more): what a lab's
    ///   counts suffer from;
    /// - or a collapsed map: a pooled-score AUC that lost half its lead
    ///   over chance ([`auc_collapsed`]). A map lit everywhere can prove
    ///   few count errors (one object per frame), which the AUC catches.
    ///
    /// Per class, because the network is shared: a round that helps worms
    /// while the egg map collapses would teach the student a collapsed egg
    /// map. A measure missing on either side is not compared; a margin of
    /// 1 keeps every round.
    pub fn worse_than(&self, kept: &Judged, margin: f64, classes: &[String]) -> Option<String> {
        if margin >= 1.0 {
            return None;
        }
        let name = |c: usize| classes.get(c).map_or("?", String::as_str);
        let pairs = |a: &[Option<f64>], b: &[Option<f64>]| -> Vec<(usize, f64, f64)> {
            a.iter()
                .zip(b)
                .enumerate()
                .filter_map(|(c, (x, y))| Some((c, (*x)?, (*y)?)))
                .collect()
        };
        if let Some((c, e, k)) = pairs(&self.errors, &kept.errors)
            .into_iter()
            .find(|&(_, e, k)| e > k + margin)
        {
            return Some(format!(
                "{} count errors per cell {e:.3} > {k:.3} of",
                name(c)
            ));
        }
        pairs(&self.auc, &kept.auc)
            .into_iter()
            .find(|&(_, a, k)| auc_collapsed(a, k))
            .map(|(c, a, k)| format!("{} AUC {a:.3} collapsed from {k:.3} of", name(c)))
    }

    /// The AUC's mean over classes, when every class has one.
    pub fn mean_auc(&self) -> Option<f64> {
        let a: Vec<f64> = self.auc.iter().copied().collect::<Option<_>>()?;
        (!a.is_empty()).then(|| a.iter().sum::<f64>() / a.len() as f64)
    }
}

/// A class's sliver size `min_pixels` (working pixels) in the file's own
/// pixels, as the first of `items` is stored (every item of a set shares
/// one scale).
fn native_area(data: &Data, items: &[usize], min_pixels: usize) -> usize {
    let Some(it) = items.first().map(|&i| &data.items[i]) else {
        return min_pixels;
    };
    let scale = (it.native_size.0 * it.native_size.1) as f64
        / (it.input.width() * it.input.height()).max(1) as f64;
    (min_pixels as f64 * scale).round() as usize
}

/// Whether a pooled-score AUC `auc` lost more than half of the kept
/// stage's lead over chance (`kept` − ½): the map no longer tells present
/// cells from absent ones. A refinement round that sharpens the maps
/// lowers the pooled scores' AUC somewhat while the counts improve (2×
/// budget synthetic run, round 1: AUC 0.899 / 0.938 / 0.907 → 0.870 /
/// 0.870 / 0.804, proven errors down on every class); a collapse takes it
/// to chance or below (the real eggs' Dice round: 0.938 → 0.400).
pub fn auc_collapsed(auc: f64, kept: f64) -> bool {
    auc - 0.5 < (kept - 0.5) / 2.0
}

/// Stage 1's loss: per class, the map pooled over that class's cells and
/// scored with BCE against the cell labels (unlabelled cells weigh 0),
/// averaged over the labelled cells, then over the classes. With one cell
/// per class and every cell labelled this is the plain BCE of the pooled
/// scores.
///
/// With `balanced`, a class's positive and negative cells each carry half
/// the weight (whichever the batch holds).
///
/// Also returns, per batch region `[B]`, the highest pooled score of any
/// class over the cells labelled absent (0 where none is): how much debris
/// there the network takes for an object.
pub fn cell_bce(
    maps: &Tensor,
    b: &data::Batch,
    settings: &[ClassSettings],
    balanced: bool,
    device: Device,
) -> (Tensor, Tensor) {
    let mut total = Tensor::zeros([], (Kind::Float, device));
    let mut hardest = Tensor::zeros([maps.size()[0]], (Kind::Float, device));
    for (c, s) in settings.iter().enumerate() {
        let scores =
            pool_cells(&maps.select(1, c as i64), s.cell, s.pooling).clamp(1e-6, 1.0 - 1e-6);
        let y = b.labels[c].to_device(device);
        let w = b.weights[c].to_device(device);
        let absent = w.gt(0.0).logical_and(&y.le(0.0)).to_kind(Kind::Float);
        hardest = hardest.maximum(&(scores.detach() * absent).amax([1], false));
        let w = if balanced {
            let pos = &w * &y;
            let neg = &w - &pos;
            &pos / pos.sum(Kind::Float).clamp_min(1.0) + &neg / neg.sum(Kind::Float).clamp_min(1.0)
        } else {
            &w / w.sum(Kind::Float).clamp_min(1.0)
        };
        total += scores.binary_cross_entropy::<&Tensor>(&y, Some(&w), tch::Reduction::Sum);
    }
    (total / settings.len().max(1) as f64, hardest)
}

/// Where a seeded refinement's target is known: pixels the vote marked
/// whose map is at least `high` (objects), pixels it did not mark whose
/// map is at most `low` and every pixel known absent (background); the
/// band between is left to the network.
pub fn seed_known(map: &Plane, voted: &Mask, absent: &Mask, low: f64, high: f64) -> Result<Mask> {
    map.check_same_size(voted, "seed_known")?;
    map.check_same_size(absent, "seed_known")?;
    let (low, high) = (low as f32, high as f32);
    let data = map
        .data()
        .iter()
        .zip(voted.data().iter().zip(absent.data()))
        .map(|(&p, (&v, &a))| a || (v && p >= high) || (!v && p <= low))
        .collect();
    Mask::from_vec(map.width(), map.height(), data)
}

/// Pixel BCE of `maps` against `target` over the `known` pixels only,
/// objects and background weighing half each per class (an object is a
/// few hundred pixels among a tile's thousands), averaged over classes.
pub fn seeded_bce(maps: &Tensor, target: &Tensor, known: &Tensor) -> Tensor {
    let p = maps.clamp(1e-6, 1.0 - 1e-6);
    let (ln_p, ln_q) = (p.log(), p.neg().log1p());
    let bce = -(target * ln_p + (target.neg() + 1.0) * ln_q);
    let pos = known * target;
    let neg = known - &pos;
    let dims: &[i64] = &[0, 2, 3];
    let side = |w: &Tensor| {
        (&bce * w).sum_dim_intlist(dims, false, Kind::Float)
            / w.sum_dim_intlist(dims, false, Kind::Float).clamp_min(1.0)
    };
    ((side(&pos) + side(&neg)) * 0.5).mean(Kind::Float)
}

/// A stage's scores as the state and reports keep them.
pub fn result(
    stage: &str,
    s: SegScores,
    cls: Option<&eval::CellScores>,
    target_dice: Vec<Option<f64>>,
) -> StageResult {
    StageResult {
        stage: stage.into(),
        dice: s.dice,
        per_image: s.per_image,
        accuracy: cls.map(|c| c.accuracy),
        count_mae: s.count_mae,
        counts: s.counts,
        target_dice: target_dice.first().copied().flatten(),
        target_dice_per_class: target_dice,
        auc: cls.map(|c| c.auc.clone()).unwrap_or_default(),
        recall: cls.map(|c| c.recall.clone()).unwrap_or_default(),
        precision: cls.map(|c| c.precision.clone()).unwrap_or_default(),
        count_mae_per_class: s.count_mae_per_class,
        found: s.found,
        truth: s.truth,
        absent_counted: Vec::new(),
        present_empty: Vec::new(),
        label_errors: Vec::new(),
    }
}

fn interrupted(dir: &Path) -> Error {
    Error::Invalid(format!(
        "interrupted; the last finished epoch is saved: continue with `nemascope-train train --resume --out {}`",
        dir.display()
    ))
}

/// Loads a finished (or checkpointed) run's network for prediction.
/// `weights` names a phase's file (`classify`, `refine1`, …) or, when
/// `None`, the final model (else the newest checkpoint).
pub fn load_model(
    dir: &Path,
    weights: Option<&str>,
) -> Result<(Config, State, nn::VarStore, UNet)> {
    let cfg = Config::load(&dir.join(CONFIG_FILE))?;
    let state = State::load(dir)?;
    let classes = state.classes.len();
    let device = device(&cfg)?;
    let mut vs = nn::VarStore::new(device);
    let net = UNet::new(&vs.root(), cfg.unet(classes));
    let path = match weights {
        Some(w) => {
            let p = dir.join(format!("{w}.safetensors"));
            if !p.exists() {
                return Err(Error::Invalid(format!("{}: no such weights", p.display())));
            }
            p
        }
        None => [Some(MODEL), state.best.as_deref(), state.last.as_deref()]
            .into_iter()
            .flatten()
            .chain([LEGACY_BEST, LEGACY_LAST])
            .map(|n| dir.join(n))
            .find(|p| p.exists())
            .ok_or_else(|| Error::Invalid(format!("{}: no model weights", dir.display())))?,
    };
    vs.load(&path).map_err(torch_err)?;
    Ok((cfg, state, vs, net))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_negatives_are_the_hardest_of_a_random_pool() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let candidates: Vec<usize> = (0..100).collect();
        let hardness: Vec<f32> = (0..100).map(|k| if k == 7 { 0.9 } else { 0.1 }).collect();
        let draws: Vec<usize> = (0..2000)
            .map(|_| hardest(&candidates, &hardness, 8, &mut rng))
            .collect();
        // The one hard region wins every pool it is in (1 − 0.99⁸ ≈ 7.7 %),
        // far above its uniform share (1 %); the others still come.
        let sevens = draws.iter().filter(|&&k| k == 7).count() as f64 / 2000.0;
        assert!((0.05..0.11).contains(&sevens), "{sevens}");
        let distinct: std::collections::BTreeSet<usize> = draws.into_iter().collect();
        assert!(distinct.len() > 90);
        // A pool of one is a uniform draw.
        assert!((0..50).any(|_| hardest(&candidates, &hardness, 1, &mut rng) != 7));
    }

    #[test]
    fn balanced_slots_draw_each_class_and_leave_the_rest_to_the_caller() {
        use rand::Rng;
        // Two classes: class 1 only in region 3; region 2 holds neither.
        let positives = vec![vec![0, 1], vec![3]];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for k in 0..30 {
            let r = class_draw(&positives, true, k, &mut rng);
            match k % 3 {
                0 => assert!(matches!(r, Some(0 | 1)), "slot {k}: {r:?}"),
                1 => assert_eq!(r, Some(3), "slot {k}"),
                _ => assert_eq!(r, None, "slot {k}"),
            }
        }
        // Balance off, or a class no region holds: every slot is the
        // caller's, and the generator is left untouched (runs without
        // balance draw as before).
        let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(5), ChaCha8Rng::seed_from_u64(5));
        assert!((0..9).all(|k| class_draw(&positives, false, k, &mut a).is_none()));
        assert_eq!(class_draw(&[vec![], vec![3]], true, 0, &mut a), None);
        assert_eq!(a.random::<u64>(), b.random::<u64>());
    }

    #[test]
    fn an_auc_collapses_when_it_loses_half_its_lead_over_chance() {
        assert!(!auc_collapsed(0.804, 0.907));
        assert!(!auc_collapsed(0.72, 0.94));
        assert!(auc_collapsed(0.70, 0.94));
        assert!(auc_collapsed(0.400, 0.938));
    }

    #[test]
    fn a_round_worse_on_any_class_is_not_kept_even_if_better_on_the_others() {
        let classes = ["worm".to_string(), "egg".to_string()];
        let kept = Judged {
            auc: vec![Some(0.90), Some(0.80)],
            errors: vec![Some(0.20), Some(0.10)],
        };
        let judge = |auc: [Option<f64>; 2], errors: [Option<f64>; 2]| {
            Judged {
                auc: auc.to_vec(),
                errors: errors.to_vec(),
            }
            .worse_than(&kept, 0.02, &classes)
        };
        assert_eq!(
            judge([Some(0.89), Some(0.81)], [Some(0.21), Some(0.05)]),
            None
        );
        // Better worms, more egg debris (the mean of the errors is lower).
        let why = judge([Some(0.95), Some(0.85)], [Some(0.05), Some(0.15)]).expect("eggs worse");
        assert!(
            why.starts_with("egg count errors per cell 0.150 > 0.100"),
            "{why}"
        );
        // Fewer errors with a somewhat lower AUC: kept; a collapsed AUC not.
        assert_eq!(
            judge([Some(0.85), Some(0.70)], [Some(0.05), Some(0.05)]),
            None
        );
        let why = judge([Some(0.95), Some(0.60)], [Some(0.05), Some(0.05)]).expect("egg AUC");
        assert!(
            why.starts_with("egg AUC 0.600 collapsed from 0.800"),
            "{why}"
        );
        // A measure one side lacks is not compared.
        assert_eq!(judge([None, Some(0.80)], [Some(0.21), None]), None);
        let everything = Judged {
            auc: vec![Some(0.1); 2],
            errors: vec![Some(9.0); 2],
        };
        assert_eq!(everything.worse_than(&kept, 1.0, &classes), None);
        assert!((kept.mean_auc().unwrap() - 0.85).abs() < 1e-12);
    }

    #[test]
    fn seeds_are_the_confident_pixels_and_absent_cells() {
        let map = Plane::from_vec(5, 1, vec![0.1, 0.3, 0.6, 0.9, 0.4]).unwrap();
        let voted = Mask::from_vec(5, 1, vec![false, true, true, false, false]).unwrap();
        let absent = Mask::from_vec(5, 1, vec![false, false, false, true, false]).unwrap();
        let k = seed_known(&map, &voted, &absent, 0.25, 0.5).unwrap();
        // low unvoted: known; voted but unsure: not; voted and sure: known;
        // absent: known whatever the map; unvoted in the band: not.
        assert_eq!(k.data(), &[true, false, true, true, false]);
        assert!(seed_known(&map, &Mask::filled(4, 1, false), &absent, 0.25, 0.5).is_err());
    }

    #[test]
    fn seeded_bce_weighs_only_known_pixels_each_side_half() {
        let t = |v: &[f32]| Tensor::from_slice(v).reshape([1, 1, 1, v.len() as i64]);
        let target = t(&[1.0, 0.0, 0.0, 0.0, 1.0]);
        let known = t(&[1.0, 1.0, 1.0, 1.0, 0.0]);
        let right = t(&[0.99, 0.01, 0.01, 0.01, 0.0]);
        let loss = |m: &Tensor| seeded_bce(m, &target, &known).double_value(&[]);
        assert!(loss(&right) < 0.02, "{}", loss(&right));
        // The ignored pixel (target 1, unknown) changes nothing.
        let ignored = t(&[0.99, 0.01, 0.01, 0.01, 0.7]);
        assert!((loss(&ignored) - loss(&right)).abs() < 1e-9);
        // Missing the one object costs as much as wrongly lighting all
        // three background pixels: each side weighs half.
        let missed = t(&[0.01, 0.01, 0.01, 0.01, 0.0]);
        let lit = t(&[0.99, 0.99, 0.99, 0.99, 0.0]);
        assert!(
            (loss(&missed) - loss(&lit)).abs() < 1e-6,
            "{} {}",
            loss(&missed),
            loss(&lit)
        );
    }
}
