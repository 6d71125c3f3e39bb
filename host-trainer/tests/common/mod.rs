//! What the trainer's integration tests share.

use nemascope_train::config::Config;

/// A run small enough for CI: 24 synthetic 128×96 frames (three classes),
/// whole-image labels, a depth-2 base-4 U-Net, a few 8-step epochs.
pub fn tiny_config() -> Config {
    let mut c = Config::default();
    c.data.kind = nemascope_train::config::DataKind::Synth;
    c.data.width = 128;
    c.data.height = 96;
    c.data.crop = 0;
    c.data.synth_frames = 24;
    c.data.val_fraction = 0.25;
    c.model.base = 4;
    c.model.depth = 2;
    c.train.lr = 3e-3;
    c.train.batch = 4;
    c.train.steps_per_epoch = 8;
    c.train.classify_epochs = 3;
    c.train.refine_epochs = 1;
    c.train.rounds = 2;
    c.train.threads = 1;
    c
}
