//! Seeded synthetic brightfield frames with exact ground truth.
//!
//! A frame is an illumination field (gradient, vignette, slow mottling) that
//! objects attenuate: worms (curved, tapered, textured tubes), eggs (granular
//! ellipses), cysts (large lemon-shaped bodies), and the confusers a soil
//! extract holds: debris (irregular blobs), root-like fibres (long, untapered
//! tubes that look like worms) and air bubbles (rings). Then blur and noise.
//! Masks are the exact visible footprint of each class (drawn before blur),
//! instance counts are the objects placed. The same seed and index always
//! give the same frame.

use std::f32::consts::PI;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::dataset::{generic, Dataset, Sample};
use crate::felzenszwalb::gaussian_blur;
use crate::imageio::{save_gray8, save_labels8, save_mask};
use crate::{Class, Error, Grid, Mask, Plane, Result};

/// How often a class appears in a positive frame and how many at most.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Occurrence {
    pub probability: f32,
    pub max: usize,
}

/// What frames look like.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    pub width: usize,
    pub height: usize,
    /// Pixel size: object sizes are drawn in micrometres.
    pub um_per_px: f32,
    pub worms: Occurrence,
    pub eggs: Occurrence,
    pub cysts: Occurrence,
    /// Ranges (inclusive) of confusers per frame.
    pub debris: (usize, usize),
    pub fibres: (usize, usize),
    pub bubbles: (usize, usize),
    /// Fraction of frames with debris only.
    pub negative_fraction: f32,
    /// Standard deviation of the additive noise (0..1 intensity).
    pub noise: f32,
    /// Gaussian blur sigma range (pixels).
    pub blur: (f32, f32),
    /// Thin translucent juvenile worms (counted as worms).
    pub juveniles: Occurrence,
    /// Fraction of eggs with a coiled juvenile visible inside.
    pub egg_juvenile_fraction: f32,
    /// Egg-sized confusers per frame: sand grains, pollen, spores.
    pub egg_like: (usize, usize),
    /// Cyst-sized confusers per frame: weed seeds of similar density.
    pub seeds: (usize, usize),
    /// Root fragments and xylem vessels per frame (wide, banded tubes).
    pub roots: (usize, usize),
    /// Chance that an egg is put touching an object already placed.
    pub touching: f32,
    /// Chance that an object (counted or not) is out of focus: soft edge,
    /// less contrast.
    pub defocus: f32,
}

/// What a pixel of a frame's confuser map holds (0: no confuser).
pub const CONFUSER_KINDS: [&str; 7] = [
    "none", "debris", "fibre", "bubble", "egg-like", "seed", "root",
];

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            width: 512,
            height: 384,
            um_per_px: 4.0,
            worms: Occurrence {
                probability: 0.75,
                max: 6,
            },
            eggs: Occurrence {
                probability: 0.5,
                max: 6,
            },
            cysts: Occurrence {
                probability: 0.3,
                max: 2,
            },
            debris: (3, 14),
            fibres: (0, 3),
            bubbles: (0, 2),
            negative_fraction: 0.25,
            noise: 0.015,
            blur: (0.5, 1.1),
            juveniles: Occurrence {
                probability: 0.0,
                max: 0,
            },
            egg_juvenile_fraction: 0.0,
            egg_like: (0, 0),
            seeds: (0, 0),
            roots: (0, 0),
            touching: 0.0,
            defocus: 0.0,
        }
    }
}

impl SynthConfig {
    /// A soil or root extract with light debris: the default frame plus
    /// translucent juveniles, eggs holding juveniles, egg-sized grains, the
    /// odd weed seed and root fragment, touching and out-of-focus objects.
    pub fn light() -> SynthConfig {
        SynthConfig {
            debris: (6, 20),
            juveniles: Occurrence {
                probability: 0.15,
                max: 2,
            },
            egg_juvenile_fraction: 0.3,
            egg_like: (2, 8),
            seeds: (0, 1),
            roots: (0, 2),
            touching: 0.2,
            defocus: 0.15,
            ..SynthConfig::default()
        }
    }

    /// Dense debris, as in `wm_0` of the NemaQuant images: grains, root
    /// fragments and xylem everywhere, egg-sized and cyst-sized confusers
    /// in numbers, more noise.
    pub fn dense() -> SynthConfig {
        SynthConfig {
            debris: (30, 80),
            fibres: (2, 6),
            bubbles: (0, 3),
            egg_like: (10, 30),
            seeds: (1, 3),
            roots: (3, 8),
            juveniles: Occurrence {
                probability: 0.25,
                max: 2,
            },
            egg_juvenile_fraction: 0.4,
            touching: 0.3,
            defocus: 0.25,
            noise: 0.02,
            ..SynthConfig::default()
        }
    }

    /// The config of frame `index` under a preset: `classic` (the
    /// default), `light`, `dense`, or `mixed` (even frames light, odd
    /// frames dense), at the given size and pixel size.
    pub fn preset(
        name: &str,
        index: u64,
        width: usize,
        height: usize,
        um_per_px: f32,
    ) -> Result<SynthConfig> {
        let base = match (name, index % 2) {
            ("classic", _) => SynthConfig::default(),
            ("light", _) | ("mixed", 0) => SynthConfig::light(),
            ("dense", _) | ("mixed", _) => SynthConfig::dense(),
            _ => {
                return Err(Error::Invalid(format!(
                    "synthetic preset `{name}`: expected classic, light, dense or mixed"
                )))
            }
        };
        Ok(SynthConfig {
            width,
            height,
            um_per_px,
            ..base
        })
    }
}

/// The frozen benchmark: [`BENCHMARK_FRAMES`] frames of the `mixed` preset
/// from [`BENCHMARK_SEED`] (even frames light debris, odd frames dense).
/// No run trains on it or chooses anything by it; training and validation
/// draw from their own seeds.
pub const BENCHMARK_SEED: u64 = 20_261_202;
pub const BENCHMARK_FRAMES: usize = 240;
pub const BENCHMARK_PRESET: &str = "mixed";

/// One frame and its truth.
#[derive(Debug, Clone)]
pub struct SynthFrame {
    /// Intensities in 0..1.
    pub image: Plane,
    /// Per-class masks in [`Class::ALL`] order.
    pub masks: Vec<Mask>,
    /// Instances per class in [`Class::ALL`] order.
    pub counts: [usize; 3],
    /// Visible instance map (0 = none, i = `instance_class[i-1]`).
    pub instances: Grid<u32>,
    pub instance_class: Vec<Class>,
    /// The confuser under each pixel, as an index into [`CONFUSER_KINDS`]
    /// (under a counted object too): where false positives come from.
    pub confusers: Grid<u8>,
}

impl SynthFrame {
    /// The mask of instance `i` (1-based) as it is visible.
    pub fn instance_mask(&self, i: u32) -> Mask {
        self.instances.map(|&l| l == i)
    }
}

/// Signed-distance footprint of one shape over its bounding box, plus the
/// light it lets through at each pixel.
struct Stamp {
    x0: isize,
    y0: isize,
    w: usize,
    h: usize,
    /// Signed distance to the outline, negative inside.
    sd: Vec<f32>,
    /// Transmission (multiplies the light) inside the shape.
    trans: Vec<f32>,
    /// Width of the edge ramp in pixels (1: in focus).
    soft: f32,
}

impl Stamp {
    fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Stamp {
        let (x0, y0) = (x0.floor() as isize - 2, y0.floor() as isize - 2);
        let (w, h) = (
            (x1.ceil() as isize + 2 - x0).max(1) as usize,
            (y1.ceil() as isize + 2 - y0).max(1) as usize,
        );
        Stamp {
            x0,
            y0,
            w,
            h,
            sd: vec![f32::INFINITY; w * h],
            trans: vec![1.0; w * h],
            soft: 1.0,
        }
    }

    /// Coverage of pixel i (anti-aliased over one pixel).
    fn alpha(&self, i: usize) -> f32 {
        (0.5 - self.sd[i] / self.soft).clamp(0.0, 1.0)
    }
}

/// Deterministic value noise in -1..1 with feature size `scale` pixels.
fn value_noise(x: f32, y: f32, scale: f32, seed: u32) -> f32 {
    let hash = |ix: i32, iy: i32| -> f32 {
        let mut h = (ix as u32).wrapping_mul(0x27d4_eb2d)
            ^ (iy as u32).wrapping_mul(0x1656_67b1)
            ^ seed.wrapping_mul(0x9e37_79b9);
        h ^= h >> 15;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        (h & 0xffff) as f32 / 32767.5 - 1.0
    };
    let (fx, fy) = (x / scale, y / scale);
    let (ix, iy) = (fx.floor() as i32, fy.floor() as i32);
    let (tx, ty) = (fx - ix as f32, fy - iy as f32);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let top = hash(ix, iy) + (hash(ix + 1, iy) - hash(ix, iy)) * sx;
    let bot = hash(ix, iy + 1) + (hash(ix + 1, iy + 1) - hash(ix, iy + 1)) * sx;
    top + (bot - top) * sy
}

/// A smooth random centreline of `len` pixels: curvature follows a sine
/// (the sinusoidal posture of a crawling nematode) plus a slow drift.
fn centreline(rng: &mut ChaCha8Rng, start: (f32, f32), len: f32, amp: f32) -> Vec<(f32, f32)> {
    let step = 1.0;
    let n = (len / step).ceil().max(2.0) as usize;
    let mut a = rng.random_range(0.0..2.0 * PI);
    let wavelength = rng.random_range(60.0..220.0);
    let phase = rng.random_range(0.0..2.0 * PI);
    let drift = rng.random_range(-0.004..0.004);
    let (mut x, mut y) = start;
    let mut pts = Vec::with_capacity(n);
    for i in 0..n {
        pts.push((x, y));
        let s = i as f32 * step;
        a += amp * (2.0 * PI * s / wavelength + phase).sin() + drift;
        x += a.cos() * step;
        y += a.sin() * step;
    }
    // Centre the path on the start point so it stays near where it was put.
    let (mx, my) = pts
        .iter()
        .fold((0.0, 0.0), |(sx, sy), p| (sx + p.0, sy + p.1));
    let (mx, my) = (mx / n as f32 - start.0, my / n as f32 - start.1);
    pts.iter().map(|p| (p.0 - mx, p.1 - my)).collect()
}

/// A tube along `pts` with half-width `radius(t)`, t in 0..1 along it.
fn tube(pts: &[(f32, f32)], radius: impl Fn(f32) -> f32) -> Stamp {
    let rmax = (0..=20)
        .map(|i| radius(i as f32 / 20.0))
        .fold(0.0f32, f32::max);
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x - rmax);
        y0 = y0.min(y - rmax);
        x1 = x1.max(x + rmax);
        y1 = y1.max(y + rmax);
    }
    let mut s = Stamp::new(x0, y0, x1, y1);
    let n = pts.len();
    for (i, &(px, py)) in pts.iter().enumerate() {
        let r = radius(i as f32 / (n - 1) as f32);
        let (lx, ly) = (px - s.x0 as f32, py - s.y0 as f32);
        let (ax, bx) = (
            (lx - r - 1.0).floor().max(0.0) as usize,
            ((lx + r + 2.0).ceil() as usize).min(s.w),
        );
        let (ay, by) = (
            (ly - r - 1.0).floor().max(0.0) as usize,
            ((ly + r + 2.0).ceil() as usize).min(s.h),
        );
        for yy in ay..by {
            for xx in ax..bx {
                let d =
                    ((xx as f32 + 0.5 - lx).powi(2) + (yy as f32 + 0.5 - ly).powi(2)).sqrt() - r;
                let k = yy * s.w + xx;
                if d < s.sd[k] {
                    s.sd[k] = d;
                    // Store the relative depth (0 at the rim, 1 on the axis).
                    s.trans[k] = if r > 0.0 {
                        (-d / r).clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                }
            }
        }
    }
    s
}

/// A star-shaped outline `r(θ)` around (cx, cy), optionally rotated.
fn radial(cx: f32, cy: f32, rmax: f32, r: impl Fn(f32) -> f32) -> Stamp {
    let mut s = Stamp::new(cx - rmax, cy - rmax, cx + rmax, cy + rmax);
    for yy in 0..s.h {
        for xx in 0..s.w {
            let (dx, dy) = (
                s.x0 as f32 + xx as f32 + 0.5 - cx,
                s.y0 as f32 + yy as f32 + 0.5 - cy,
            );
            let d = (dx * dx + dy * dy).sqrt();
            let rt = r(dy.atan2(dx));
            let k = yy * s.w + xx;
            s.sd[k] = d - rt;
            s.trans[k] = if rt > 0.0 {
                (1.0 - d / rt).clamp(0.0, 1.0)
            } else {
                0.0
            };
        }
    }
    s
}

/// A body symmetric about its long axis: half-width `h(u)` for u in -a..a.
fn body(cx: f32, cy: f32, angle: f32, a: f32, h: impl Fn(f32) -> f32) -> Stamp {
    let mut s = Stamp::new(cx - a, cy - a, cx + a, cy + a);
    let (c, sn) = (angle.cos(), angle.sin());
    for yy in 0..s.h {
        for xx in 0..s.w {
            let (dx, dy) = (
                s.x0 as f32 + xx as f32 + 0.5 - cx,
                s.y0 as f32 + yy as f32 + 0.5 - cy,
            );
            let (u, v) = (dx * c + dy * sn, -dx * sn + dy * c);
            let k = yy * s.w + xx;
            let hu = if u.abs() < a { h(u) } else { 0.0 };
            s.sd[k] = if u.abs() <= a {
                v.abs() - hu
            } else {
                u.abs() - a + v.abs()
            };
            let hm = h(0.0).max(1e-3);
            s.trans[k] = ((hu - v.abs()) / hm).clamp(0.0, 1.0);
        }
    }
    s
}

struct Canvas {
    w: usize,
    h: usize,
    light: Vec<f32>,
    owner: Vec<u32>,
    classes: Vec<Class>,
    /// Pixels already taken by a counted object (for placement).
    occupied: Vec<bool>,
    confusers: Vec<u8>,
}

impl Canvas {
    fn inside_fraction(&self, s: &Stamp) -> f32 {
        let (mut inside, mut total) = (0usize, 0usize);
        for yy in 0..s.h {
            for xx in 0..s.w {
                if s.alpha(yy * s.w + xx) >= 0.5 {
                    total += 1;
                    let (x, y) = (s.x0 + xx as isize, s.y0 + yy as isize);
                    inside += (x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h)
                        as usize;
                }
            }
        }
        if total == 0 {
            0.0
        } else {
            inside as f32 / total as f32
        }
    }

    fn overlaps(&self, s: &Stamp, margin: isize) -> bool {
        for yy in 0..s.h {
            for xx in 0..s.w {
                if s.sd[yy * s.w + xx] > margin as f32 {
                    continue;
                }
                let (x, y) = (s.x0 + xx as isize, s.y0 + yy as isize);
                if x >= 0
                    && y >= 0
                    && (x as usize) < self.w
                    && (y as usize) < self.h
                    && self.occupied[y as usize * self.w + x as usize]
                {
                    return true;
                }
            }
        }
        false
    }

    /// Draws a confuser of `kind` (an index into [`CONFUSER_KINDS`]) and
    /// records where it is.
    fn draw_confuser(&mut self, s: &Stamp, kind: u8, tex: impl Fn(f32, f32, f32) -> f32) {
        self.draw(s, None, tex);
        for yy in 0..s.h {
            for xx in 0..s.w {
                let (x, y) = (s.x0 + xx as isize, s.y0 + yy as isize);
                if s.alpha(yy * s.w + xx) >= 0.5
                    && x >= 0
                    && y >= 0
                    && (x as usize) < self.w
                    && (y as usize) < self.h
                {
                    self.confusers[y as usize * self.w + x as usize] = kind;
                }
            }
        }
    }

    /// Attenuates the light by the shape; `tex(x, y, depth)` gives the
    /// transmission. Counted objects become owners of their pixels.
    fn draw(&mut self, s: &Stamp, class: Option<Class>, tex: impl Fn(f32, f32, f32) -> f32) {
        let id = class.map(|c| {
            self.classes.push(c);
            self.classes.len() as u32
        });
        for yy in 0..s.h {
            for xx in 0..s.w {
                let k = yy * s.w + xx;
                let a = s.alpha(k);
                if a <= 0.0 {
                    continue;
                }
                let (x, y) = (s.x0 + xx as isize, s.y0 + yy as isize);
                if x < 0 || y < 0 || x as usize >= self.w || y as usize >= self.h {
                    continue;
                }
                let i = y as usize * self.w + x as usize;
                let t = tex(x as f32, y as f32, s.trans[k]).max(0.0);
                self.light[i] *= 1.0 - a + a * t;
                if a >= 0.5 {
                    self.owner[i] = id.unwrap_or(0);
                    if id.is_some() {
                        self.occupied[i] = true;
                    }
                }
            }
        }
    }
}

/// Generates frame `index` of the set seeded by `seed`.
pub fn generate(cfg: &SynthConfig, seed: u64, index: u64) -> Result<SynthFrame> {
    if cfg.width < 32 || cfg.height < 32 || cfg.width > 8192 || cfg.height > 8192 {
        return Err(Error::Invalid(format!(
            "synthetic frame size {}x{} must be 32..=8192",
            cfg.width, cfg.height
        )));
    }
    if cfg.um_per_px.is_nan()
        || cfg.um_per_px <= 0.0
        || cfg.debris.0 > cfg.debris.1
        || cfg.fibres.0 > cfg.fibres.1
        || cfg.bubbles.0 > cfg.bubbles.1
    {
        return Err(Error::Invalid(
            "synthetic config: bad pixel size or range".into(),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (w, h) = (cfg.width, cfg.height);
    let um = cfg.um_per_px;
    let nseed: u32 = rng.random();

    // Illumination: base level, a gradient, a vignette and slow mottling.
    let base = rng.random_range(0.62..0.85f32);
    let ga = rng.random_range(0.0..2.0 * PI);
    let gs = rng.random_range(0.0..0.25f32);
    let vig = rng.random_range(0.0..0.35f32);
    let (cx, cy, diag) = (
        w as f32 / 2.0,
        h as f32 / 2.0,
        ((w * w + h * h) as f32).sqrt() / 2.0,
    );
    let light: Vec<f32> = (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as f32, (i / w) as f32);
            let (dx, dy) = ((x - cx) / diag, (y - cy) / diag);
            let g = 1.0 + gs * (dx * ga.cos() + dy * ga.sin());
            let v = 1.0 - vig * (dx * dx + dy * dy);
            let m = 1.0
                + 0.04 * value_noise(x, y, 90.0, nseed)
                + 0.015 * value_noise(x, y, 17.0, nseed ^ 7);
            base * g * v * m
        })
        .collect();
    let mut cv = Canvas {
        w,
        h,
        light,
        owner: vec![0; w * h],
        classes: Vec::new(),
        occupied: vec![false; w * h],
        confusers: vec![0; w * h],
    };
    // Out of focus: a wider edge ramp and a fainter body. Draws from the
    // generator only when the config asks for defocus, so frames of the
    // other presets stay as they were.
    let defocus = |rng: &mut ChaCha8Rng, s: &mut Stamp| -> f32 {
        if cfg.defocus > 0.0 && rng.random::<f32>() < cfg.defocus {
            s.soft = rng.random_range(2.0..4.5);
            rng.random_range(0.55..0.8)
        } else {
            1.0
        }
    };
    // Transmission `t` seen at contrast `k` (1: as is).
    let faint = |t: f32, k: f32| 1.0 - (1.0 - t) * k;

    let rand_pos = |rng: &mut ChaCha8Rng, m: f32| {
        (
            rng.random_range(m..(w as f32 - m).max(m + 1.0)),
            rng.random_range(m..(h as f32 - m).max(m + 1.0)),
        )
    };

    // Confusers first, so the counted objects on top are exactly visible.
    for _ in 0..rng.random_range(cfg.bubbles.0..=cfg.bubbles.1) {
        let (bx, by) = rand_pos(&mut rng, 0.0);
        let r = rng.random_range(8.0..40.0f32);
        let th = rng.random_range(1.5..3.0f32);
        let s = radial(bx, by, r + th, |_| r + th);
        let inner = (r - th) / (r + th);
        let ring_t = rng.random_range(0.45..0.65f32);
        let glow = rng.random_range(1.03..1.12f32);
        cv.draw_confuser(
            &s,
            3,
            |_, _, depth| if depth > 1.0 - inner { glow } else { ring_t },
        );
    }
    for _ in 0..rng.random_range(cfg.debris.0..=cfg.debris.1) {
        let (bx, by) = rand_pos(&mut rng, 0.0);
        // Mostly small grains, sometimes large organic clumps.
        let r0 = if rng.random_bool(0.8) {
            rng.random_range(2.0..9.0f32)
        } else {
            rng.random_range(9.0..22.0f32)
        };
        let harm: Vec<(f32, f32)> = (2..6)
            .map(|k| {
                (
                    rng.random_range(0.0..0.3 / k as f32),
                    rng.random_range(0.0..2.0 * PI),
                )
            })
            .collect();
        let s = radial(bx, by, r0 * 1.6, |t| {
            r0 * (1.0
                + harm
                    .iter()
                    .enumerate()
                    .map(|(k, &(a, p))| a * ((k + 2) as f32 * t + p).cos())
                    .sum::<f32>())
        });
        let t0 = rng.random_range(0.25..0.95f32);
        let ts: u32 = rng.random();
        cv.draw_confuser(&s, 1, |x, y, _| t0 + 0.12 * value_noise(x, y, 2.5, ts));
    }
    for _ in 0..rng.random_range(cfg.fibres.0..=cfg.fibres.1) {
        let start = rand_pos(&mut rng, 0.0);
        let len = rng.random_range(120.0..420.0f32);
        let amp = rng.random_range(0.0..0.004);
        let pts = centreline(&mut rng, start, len, amp);
        let r = rng.random_range(1.5..4.5f32);
        let wob: u32 = rng.random();
        // Untapered with blunt, cut ends: the cue that separates fibres from worms.
        let s = tube(&pts, |t| {
            r * (1.0 + 0.15 * value_noise(t * 40.0, 0.0, 1.0, wob))
        });
        let t0 = rng.random_range(0.45..0.75f32);
        let ts: u32 = rng.random();
        cv.draw_confuser(&s, 2, |x, y, d| {
            t0 + 0.1 * value_noise(x, y, 4.0, ts) + 0.05 * d
        });
    }
    let draws = |rng: &mut ChaCha8Rng, (lo, hi): (usize, usize)| {
        if hi == 0 {
            0
        } else {
            rng.random_range(lo..=hi)
        }
    };
    // Root fragments and xylem vessels: short, wide, nearly straight, pale
    // with the dark bands of their wall thickenings.
    for _ in 0..draws(&mut rng, cfg.roots) {
        let start = rand_pos(&mut rng, 0.0);
        let len = rng.random_range(120.0..500.0f32) / um;
        let amp = rng.random_range(0.0..0.002);
        let pts = centreline(&mut rng, start, len, amp);
        let r = rng.random_range(10.0..30.0f32) / um;
        let mut s = tube(&pts, |_| r);
        let k = defocus(&mut rng, &mut s);
        let (first, last) = (pts[0], pts[pts.len() - 1]);
        let a = (last.1 - first.1).atan2(last.0 - first.0);
        let period = rng.random_range(3.0..7.0f32);
        let t0 = rng.random_range(0.75..0.92f32);
        let band = rng.random_range(0.25..0.45f32);
        cv.draw_confuser(&s, 6, |x, y, d| {
            let along = (x * a.cos() + y * a.sin()) / period;
            let wall = if along - along.floor() < 0.3 || d < 0.2 {
                band
            } else {
                0.0
            };
            faint(t0 - wall, k)
        });
    }
    // Egg-sized grains, spores and pollen: mostly irregular grains of an
    // egg's size and darkness, some smooth round spores, a few near-ellipses
    // as granular as an egg.
    for _ in 0..draws(&mut rng, cfg.egg_like) {
        let a = rng.random_range(18.0..60.0f32) / um;
        let (px, py) = rand_pos(&mut rng, a);
        let kind = rng.random_range(0..10);
        let mut s = if kind < 6 {
            let harm: Vec<(f32, f32)> = (2..6)
                .map(|k| {
                    (
                        rng.random_range(0.05..0.35 / k as f32 + 0.05),
                        rng.random_range(0.0..2.0 * PI),
                    )
                })
                .collect();
            let r0 = a * rng.random_range(0.5..0.8f32);
            radial(px, py, r0 * 1.8, |t| {
                r0 * (1.0
                    + harm
                        .iter()
                        .enumerate()
                        .map(|(k, &(h, p))| h * ((k + 2) as f32 * t + p).cos())
                        .sum::<f32>())
            })
        } else {
            let b = a * if kind < 9 {
                rng.random_range(0.8..1.0f32)
            } else {
                rng.random_range(0.6..0.8f32)
            };
            let ang = rng.random_range(0.0..PI);
            body(px, py, ang, a, |u| {
                b * (1.0 - (u / a).powi(2)).max(0.0).sqrt()
            })
        };
        let k = defocus(&mut rng, &mut s);
        let t0 = rng.random_range(0.25..0.75f32);
        let grain = rng.random_range(0.0..0.14f32);
        let ts: u32 = rng.random();
        cv.draw_confuser(&s, 4, |x, y, d| {
            faint(t0 * (0.8 + 0.2 * d) + grain * value_noise(x, y, 1.3, ts), k)
        });
    }
    // Weed seeds: cyst-sized, as dense, oval without the lemon's poles.
    for _ in 0..draws(&mut rng, cfg.seeds) {
        let a = rng.random_range(180.0..380.0f32) / um;
        let b = a * rng.random_range(0.6..0.95f32);
        let (px, py) = rand_pos(&mut rng, a * 0.6);
        let ang = rng.random_range(0.0..PI);
        let mut s = body(px, py, ang, a, |u| {
            b * (1.0 - (u / a).powi(2)).max(0.0).powf(0.5)
        });
        let k = defocus(&mut rng, &mut s);
        let t0 = rng.random_range(0.15..0.4f32);
        let ts: u32 = rng.random();
        cv.draw_confuser(&s, 5, |x, y, d| {
            faint(
                t0 * (0.85 + 0.25 * (1.0 - d)) + 0.07 * value_noise(x, y, 3.0, ts),
                k,
            )
        });
    }

    let negative = rng.random::<f32>() < cfg.negative_fraction;
    let mut counts = [0usize; 3];
    if !negative {
        let mut want = [0usize; 3];
        for (k, occ) in [cfg.worms, cfg.eggs, cfg.cysts].into_iter().enumerate() {
            if occ.max > 0 && rng.random::<f32>() < occ.probability {
                want[k] = rng.random_range(1..=occ.max);
            }
        }
        if want.iter().all(|&n| n == 0) {
            want[0] = 1;
        }
        // Cysts first (largest), then eggs, then worms, which may cross each other.
        for _ in 0..want[2] {
            for _try in 0..40 {
                let a = rng.random_range(200.0..360.0f32) / um; // half length
                let b = a * rng.random_range(0.7..0.9f32);
                let neck = rng.random_range(0.05..0.12f32);
                let (px, py) = rand_pos(&mut rng, a * 0.6);
                let ang = rng.random_range(0.0..PI);
                // Lemon: parabolic flanks give pointed poles, plus a short neck.
                let s = body(px, py, ang, a * (1.0 + neck), |u| {
                    let x = (u / a).abs();
                    if x < 1.0 {
                        b * (1.0 - x * x).powf(0.8) + b * 0.06
                    } else {
                        b * 0.06
                    }
                });
                if cv.inside_fraction(&s) < 0.85 || cv.overlaps(&s, 3) {
                    continue;
                }
                let mut s = s;
                let k = defocus(&mut rng, &mut s);
                let t0 = rng.random_range(0.18..0.32f32);
                let ts: u32 = rng.random();
                cv.draw(&s, Some(Class::Cyst), |x, y, d| {
                    faint(
                        t0 * (0.85 + 0.25 * (1.0 - d)) + 0.07 * value_noise(x, y, 3.0, ts),
                        k,
                    )
                });
                counts[2] += 1;
                break;
            }
        }
        let mut eggs: Vec<(f32, f32)> = Vec::new();
        for _ in 0..want[1] {
            for _try in 0..40 {
                let a = rng.random_range(28.0..55.0f32) / um;
                let b = a * rng.random_range(0.4..0.55f32);
                let touching =
                    cfg.touching > 0.0 && !eggs.is_empty() && rng.random::<f32>() < cfg.touching;
                let (mut px, mut py) = rand_pos(&mut rng, a);
                let ang = rng.random_range(0.0..PI);
                let shape = |px: f32, py: f32| {
                    body(px, py, ang, a, |u| {
                        b * (1.0 - (u / a).powi(2)).max(0.0).sqrt()
                    })
                };
                let mut s = shape(px, py);
                if touching {
                    // Slide out from a placed egg until the two just touch.
                    let (ox, oy) = eggs[rng.random_range(0..eggs.len())];
                    let dir = rng.random_range(0.0..2.0 * PI);
                    let mut d = b * 0.5;
                    loop {
                        (px, py) = (ox + d * dir.cos(), oy + d * dir.sin());
                        s = shape(px, py);
                        if !cv.overlaps(&s, 0) || d > 4.0 * a {
                            break;
                        }
                        d += 0.7;
                    }
                }
                if cv.inside_fraction(&s) < 0.95 || cv.overlaps(&s, if touching { 0 } else { 2 }) {
                    continue;
                }
                let k = defocus(&mut rng, &mut s);
                let coiled = cfg.egg_juvenile_fraction > 0.0
                    && rng.random::<f32>() < cfg.egg_juvenile_fraction;
                let t0 = rng.random_range(0.5..0.68f32);
                let ts: u32 = rng.random();
                let (c, sn) = (ang.cos(), ang.sin());
                cv.draw(&s, Some(Class::Egg), |x, y, d| {
                    let mut t = t0 * (0.8 + 0.2 * d) + 0.14 * value_noise(x, y, 1.3, ts);
                    if coiled {
                        // A juvenile folded inside: a dark sinuous line.
                        let (dx, dy) = (x + 0.5 - px, y + 0.5 - py);
                        let (u, v) = (dx * c + dy * sn, -dx * sn + dy * c);
                        if (v - 0.45 * b * (2.5 * PI * u / a).sin()).abs() < 0.9 {
                            t *= 0.75;
                        }
                    }
                    faint(t, k)
                });
                eggs.push((px, py));
                counts[1] += 1;
                break;
            }
        }
        // Adults, then thin translucent juveniles (J2s), both counted as
        // worms: (length µm, width µm, transmission).
        let adult = ((350.0, 1000.0), (18.0, 34.0), (0.38, 0.58));
        let juvenile = ((250.0, 450.0), (10.0, 16.0), (0.68, 0.85));
        let mut specs = vec![adult; want[0]];
        if cfg.juveniles.max > 0 && rng.random::<f32>() < cfg.juveniles.probability {
            specs.extend(std::iter::repeat_n(
                juvenile,
                rng.random_range(1..=cfg.juveniles.max),
            ));
        }
        for (lens, wids, ts_range) in specs {
            for _try in 0..40 {
                let len = rng.random_range(lens.0..lens.1) / um;
                let wid = rng.random_range(wids.0..wids.1) / um;
                let start = rand_pos(&mut rng, len * 0.3);
                let amp = rng.random_range(0.0..0.035);
                let pts = centreline(&mut rng, start, len, amp);
                // Rounded head, long pointed tail.
                let mut s = tube(&pts, |t| {
                    let head = if t < 0.06 {
                        (0.35 + 0.65 * (t / 0.06).sqrt()).min(1.0)
                    } else {
                        1.0
                    };
                    let tail = if t > 0.72 {
                        1.0 - 0.85 * ((t - 0.72) / 0.28)
                    } else {
                        1.0
                    };
                    wid / 2.0 * head * tail
                });
                // Worms may cross worms but not sit on eggs or cysts.
                let blocked = (0..s.h).any(|yy| {
                    (0..s.w).any(|xx| {
                        let (x, y) = (s.x0 + xx as isize, s.y0 + yy as isize);
                        s.sd[yy * s.w + xx] < 2.0
                            && x >= 0
                            && y >= 0
                            && (x as usize) < w
                            && (y as usize) < h
                            && {
                                let o = cv.owner[y as usize * w + x as usize];
                                o != 0 && cv.classes[o as usize - 1] != Class::Worm
                            }
                    })
                });
                if cv.inside_fraction(&s) < 0.8 || blocked {
                    continue;
                }
                let k = defocus(&mut rng, &mut s);
                let t0 = rng.random_range(ts_range.0..ts_range.1);
                let ts: u32 = rng.random();
                cv.draw(&s, Some(Class::Worm), |x, y, d| {
                    faint(
                        t0 * (0.75 + 0.35 * d) + 0.08 * value_noise(x, y, 2.0, ts),
                        k,
                    )
                });
                counts[0] += 1;
                break;
            }
        }
    }

    // Optics: blur, then sensor noise.
    let sigma = rng.random_range(cfg.blur.0..=cfg.blur.1.max(cfg.blur.0));
    let img = gaussian_blur(&Plane::from_vec(w, h, cv.light)?, sigma);
    let noisy: Vec<f32> = img
        .data()
        .iter()
        .map(|&v| {
            // Box–Muller from two uniforms.
            let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-7), rng.random());
            let n = (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos();
            (v + cfg.noise * n).clamp(0.0, 1.0)
        })
        .collect();
    let instances = Grid::from_vec(w, h, cv.owner)?;
    let confusers = Grid::from_vec(w, h, cv.confusers)?;
    let masks = Class::ALL
        .iter()
        .map(|&c| instances.map(|&o| o != 0 && cv.classes[o as usize - 1] == c))
        .collect();
    Ok(SynthFrame {
        image: Plane::from_vec(w, h, noisy)?,
        masks,
        counts,
        instances,
        instance_class: cv.classes,
        confusers,
    })
}

/// Writes `n` frames to `dir` in the generic layout: `images/`, `masks/`
/// (one PNG per frame and class) and `labels.csv` with presence bits, mask
/// paths and instance counts.
pub fn write_dataset(dir: &Path, cfg: &SynthConfig, seed: u64, n: usize) -> Result<Dataset> {
    write_dataset_with(dir, |_| Ok(cfg.clone()), seed, n)
}

/// [`write_dataset`] with a config per frame (a preset such as `mixed`).
pub fn write_dataset_with(
    dir: &Path,
    cfg: impl Fn(u64) -> Result<SynthConfig>,
    seed: u64,
    n: usize,
) -> Result<Dataset> {
    let (img_dir, mask_dir) = (dir.join("images"), dir.join("masks"));
    for d in [&img_dir, &mask_dir] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let f = generate(&cfg(i as u64)?, seed, i as u64)?;
        let id = format!("synth_{seed}_{i:05}");
        let image = img_dir.join(format!("{id}.png"));
        save_gray8(&f.image, &image)?;
        let mut masks = Vec::new();
        for (c, m) in Class::ALL.iter().zip(&f.masks) {
            let p = mask_dir.join(format!("{id}_{c}.png"));
            save_mask(m, &p)?;
            masks.push(Some(p));
        }
        // Which confuser lies under each pixel (CONFUSER_KINDS), so false
        // positives can be put down to debris, fibres, seeds, ….
        save_labels8(&f.confusers, &mask_dir.join(format!("{id}_confusers.png")))?;
        samples.push(Sample {
            id,
            image,
            present: f.counts.iter().map(|&k| k > 0).collect(),
            masks,
            counts: f.counts.iter().map(|&k| Some(k)).collect(),
        });
    }
    let ds = Dataset {
        classes: Class::ALL.iter().map(|c| c.name().to_string()).collect(),
        samples,
    };
    generic::write(dir, &ds)?;
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::label_components;

    #[test]
    fn same_seed_same_frame_other_seed_other_frame() {
        let cfg = SynthConfig {
            width: 160,
            height: 120,
            ..SynthConfig::default()
        };
        let a = generate(&cfg, 42, 3).unwrap();
        let b = generate(&cfg, 42, 3).unwrap();
        assert_eq!(a.image, b.image);
        assert_eq!(a.masks, b.masks);
        let c = generate(&cfg, 43, 3).unwrap();
        assert_ne!(a.image, c.image);
    }

    #[test]
    fn masks_counts_and_instances_agree() {
        let cfg = SynthConfig::default();
        let mut negatives = 0;
        let mut seen = [0usize; 3];
        for i in 0..24 {
            let f = generate(&cfg, 7, i).unwrap();
            assert!(f.image.data().iter().all(|v| (0.0..=1.0).contains(v)));
            for (k, m) in f.masks.iter().enumerate() {
                assert_eq!(m.count() > 0, f.counts[k] > 0, "frame {i} class {k}");
                seen[k] += f.counts[k];
            }
            negatives += (f.counts.iter().sum::<usize>() == 0) as usize;
            // Every counted instance is visible and its pixels are its class.
            assert_eq!(f.instance_class.len(), f.counts.iter().sum::<usize>());
            for (j, &c) in f.instance_class.iter().enumerate() {
                let m = f.instance_mask(j as u32 + 1);
                assert!(m.count() > 10, "instance {j} of frame {i} barely visible");
                let k = c.index();
                assert!(m
                    .data()
                    .iter()
                    .zip(f.masks[k].data())
                    .all(|(a, b)| !a || *b));
            }
            // Eggs and cysts never touch anything: one component each.
            for k in 1..3 {
                assert_eq!(
                    label_components(&f.masks[k]).count,
                    f.counts[k],
                    "frame {i} class {k}"
                );
            }
        }
        assert!(negatives > 0 && negatives < 24);
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    }

    #[test]
    fn harder_presets_hold_every_confuser_touching_eggs_and_juveniles() {
        let mut kinds = [0usize; CONFUSER_KINDS.len()];
        let (mut touching, mut thin_worms) = (0, 0);
        for i in 0..16 {
            let cfg = SynthConfig::preset("mixed", i, 512, 384, 4.0).unwrap();
            let f = generate(&cfg, 3, i).unwrap();
            for &k in f.confusers.data() {
                kinds[k as usize] += 1;
            }
            // Counted pixels are never confuser-only: masks and the confuser
            // map agree where the object lies on top.
            for k in 0..3 {
                assert_eq!(f.masks[k].count() > 0, f.counts[k] > 0);
            }
            touching += (label_components(&f.masks[1]).count < f.counts[1]) as usize;
            // Juveniles: worm instances under ~16 µm wide (4 px): area/length small.
            for (j, &c) in f.instance_class.iter().enumerate() {
                if c == Class::Worm {
                    let m = f.instance_mask(j as u32 + 1);
                    thin_worms += (m.count() < 450) as usize;
                }
            }
        }
        assert!(kinds[1..].iter().all(|&n| n > 0), "{kinds:?}");
        assert!(touching > 0, "no touching eggs in 16 frames");
        assert!(thin_worms > 0, "no juveniles in 16 frames");
        // Dense frames hold several times the grains and egg-sized
        // confusers of light ones.
        let debris = |p: &str| -> usize {
            (0..6)
                .map(|i| {
                    let f =
                        generate(&SynthConfig::preset(p, i, 512, 384, 4.0).unwrap(), 9, i).unwrap();
                    f.confusers
                        .data()
                        .iter()
                        .filter(|&&k| k == 1 || k == 4)
                        .count()
                })
                .sum()
        };
        let (dense, light) = (debris("dense"), debris("light"));
        assert!(
            dense > 2 * light,
            "confuser pixels: dense {dense}, light {light}"
        );
        assert!(SynthConfig::preset("muddy", 0, 512, 384, 4.0).is_err());
    }

    #[test]
    fn objects_are_darker_than_their_surroundings() {
        let f = (0..)
            .map(|i| generate(&SynthConfig::default(), 1, i).unwrap())
            .find(|f| f.counts[0] > 0)
            .unwrap();
        let fg = Mask::union(&f.masks.iter().collect::<Vec<_>>()).unwrap();
        let (mut a, mut na, mut b, mut nb) = (0.0, 0, 0.0, 0);
        for (&v, &m) in f.image.data().iter().zip(fg.data()) {
            if m {
                a += v;
                na += 1
            } else {
                b += v;
                nb += 1
            }
        }
        assert!(na > 0);
        assert!(a / (na as f32) < 0.85 * b / nb as f32);
        assert!(generate(
            &SynthConfig {
                width: 8,
                ..SynthConfig::default()
            },
            1,
            0
        )
        .is_err());
    }
}
