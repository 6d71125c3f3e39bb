//! What a frame's light says, before any model looks at it: a lamp off, a
//! lens cap or an over-exposed frame is flagged rather than counted as a
//! slide without nematodes. The same figures standardise the frame.

use nemascope_core::imageio::{moments, Luma};

/// What a frame's light says, before any model looks at it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    /// Mean and deviation as stored (fractions of the file's full scale):
    /// what counting standardises with.
    pub mean: f64,
    pub std: f64,
    /// The top of the camera's range as a fraction of the file's full
    /// scale: 4095/65535 for a 12-bit camera writing 16-bit files. The
    /// light is judged against it, not against full scale.
    pub top: f64,
    /// Fraction of pixels at the top of the camera's range (≥ 0.995 top).
    pub saturated: f32,
    /// Bright-field light (`camera.bright_field`, `count --bright-field`):
    /// the clear background is meant to sit at the top of the range, so
    /// saturation is judged against what is not background.
    pub bright_field: bool,
}

impl Quality {
    /// Why counts from this frame should not be trusted, if they should
    /// not: no light (lamp off, shutter closed), a blank field (lens cap,
    /// nothing in focus), or an over-exposed one. Deliberately coarse: it
    /// catches a broken acquisition, not a slightly dim slide.
    pub fn problem(&self) -> Option<&'static str> {
        if self.mean < 0.02 * self.top {
            Some("dark frame (lamp off or shutter closed?)")
        } else if self.bright_field && self.over_exposed_bright_field() {
            Some("over-exposed frame (bright-field, and nearly all of it saturated or without contrast)")
        } else if !self.bright_field && self.saturated > 0.25 {
            Some("over-exposed frame (a quarter of the pixels saturated; for bright-field light, set camera.bright_field or --bright-field)")
        } else if self.std < 0.002 * self.top {
            Some("blank frame (nothing in view or far out of focus?)")
        } else {
            None
        }
    }
}

impl Quality {
    /// In bright-field light a background at the top of the range is the
    /// lamp through a clear slide, not over-exposure (NemaQuant's egg
    /// images have 58–83 % of their pixels there and show every egg): the
    /// frame is over-exposed when almost nothing is left below the top, or
    /// what is left has no contrast.
    fn over_exposed_bright_field(&self) -> bool {
        self.saturated > 0.97 || (self.saturated > 0.25 && self.std < 0.02 * self.top)
    }
}

/// Camera depths that write into 16-bit files, smallest first, as far as
/// they can be told from a frame (a 10-bit camera's frames look like a dim
/// 12-bit camera's; give `camera.bit_depth` for one).
const CAMERA_BITS: [u8; 3] = [12, 14, 16];

/// The top of the camera's range as a fraction of the file's full scale.
/// `bits` is the camera's depth when known; otherwise a 16-bit file is
/// taken to come from the smallest usual camera depth (12, 14 or 16 bits)
/// that holds its brightest pixel `max`: BBBC010's 12-bit data sits in
/// 16-bit files, at a mean of 1.5 % of full scale. Never below 12 bits, so
/// a 12-bit camera with its lamp off still reads as dark; a 16-bit camera
/// with its lamp off is caught from the frame only near black (under 80 of
/// 65535), so a unit should be told its camera's depth. 8-bit and float
/// data are judged against full scale.
pub fn light_top(storage_bits: Option<u8>, bits: Option<u8>, max: f64) -> f64 {
    let Some(store) = storage_bits.filter(|&s| s > 8) else {
        return 1.0;
    };
    let full = ((1u64 << store) - 1) as f64;
    let of = |b: u8| ((1u64 << b.min(store)) - 1) as f64 / full;
    match bits {
        Some(b) => of(b),
        None => CAMERA_BITS
            .iter()
            .map(|&b| of(b))
            .find(|&t| max <= t + 0.5 / full)
            .unwrap_or(1.0),
    }
}

/// Mean, deviation and saturated fraction of `frame`: the same two
/// passes `imageio::standardise` makes ([`moments`]), so counting
/// standardises with them and reads the frame no third time. `bits` is
/// the camera's depth if known ([`light_top`]).
pub fn quality<L: Luma + ?Sized>(frame: &L, bits: Option<u8>) -> Quality {
    let mut top = 1.0;
    let m = moments(frame, |max| {
        top = light_top(frame.storage_bits(), bits, max);
        (0.995 * top) as f32
    });
    let n = (frame.width() * frame.height()).max(1) as f64;
    Quality {
        mean: m.mean,
        std: m.std,
        top,
        saturated: (m.at_or_above as f64 / n) as f32,
        bright_field: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nemascope_core::imageio::Pixels;
    use nemascope_core::{Grid, Plane};

    /// A synthetic frame stored as a camera of `bits` bits writes it into
    /// a 16-bit file, each value through `f` (0..1 of the camera's range).
    fn as_camera(bits: u8, f: impl Fn(f32) -> f32) -> Vec<Pixels> {
        use nemascope_core::synth::{generate, SynthConfig};
        let top = ((1u32 << bits) - 1) as f32;
        (0..4)
            .map(|i| {
                let p = generate(&SynthConfig::default(), 99, i).unwrap().image;
                let v = p
                    .data()
                    .iter()
                    .map(|&x| (f(x).clamp(0.0, 1.0) * top).round() as u16)
                    .collect();
                Pixels::Gray16(Grid::from_vec(p.width(), p.height(), v).unwrap())
            })
            .collect()
    }

    #[test]
    fn broken_acquisitions_are_flagged_and_real_frames_are_not() {
        use nemascope_core::synth::{generate, SynthConfig};
        let dark = Plane::filled(64, 48, 0.005);
        assert!(quality(&dark, None).problem().unwrap().contains("dark"));
        let white = Plane::filled(64, 48, 1.0);
        let e = quality(&white, None).problem().unwrap();
        assert!(e.contains("over-exposed"), "{e}");
        let grey = Plane::filled(64, 48, 0.5);
        assert!(quality(&grey, None).problem().unwrap().contains("blank"));
        for i in 0..4 {
            let f = generate(&SynthConfig::default(), 99, i).unwrap();
            let q = quality(&f.image, None);
            assert_eq!(q.problem(), None, "{q:?}");
        }
    }

    /// A bright-field frame: the clear background at full scale over 70 %
    /// of it (as on NemaQuant's egg images), eggs and debris below.
    #[test]
    fn a_bright_field_background_at_full_scale_is_not_over_exposure() {
        let bright = Plane::from_fn(200, 100, |x, y| {
            if (x * 7 + y * 13) % 10 < 7 {
                1.0
            } else {
                0.55 + 0.04 * (x % 9) as f32
            }
        });
        let judged = |p: &Plane, bright_field| {
            let mut q = quality(p, None);
            q.bright_field = bright_field;
            q.problem().unwrap_or("none")
        };
        assert!(judged(&bright, false).contains("--bright-field"));
        assert_eq!(judged(&bright, true), "none");
        // …but washed out: 99 % at the top, or the rest barely below it.
        let washed = Plane::from_fn(200, 100, |x, _| if x < 198 { 1.0 } else { 0.5 });
        assert!(judged(&washed, true).contains("over-exposed"));
        let faint = Plane::from_fn(200, 100, |x, y| if (x + y) % 10 < 7 { 1.0 } else { 0.97 });
        assert!(judged(&faint, true).contains("over-exposed"));
        // Dark and blank frames are judged the same either way.
        assert!(judged(&Plane::filled(64, 48, 0.005), true).contains("dark"));
        assert!(judged(&Plane::filled(64, 48, 0.5), true).contains("blank"));
    }

    #[test]
    fn light_is_judged_against_the_cameras_range_not_the_files() {
        // 12-bit data in 16-bit files (BBBC010's case): a mean of a few
        // percent of full scale is a well-lit frame.
        for bits in [10, 12, 14, 16] {
            for f in as_camera(bits, |x| x) {
                let q = quality(&f, None);
                assert_eq!(q.problem(), None, "{bits} bits: {q:?}");
                assert_eq!(quality(&f, Some(bits)).problem(), None);
            }
        }
        let problem = |f: &Pixels, bits| quality(f, bits).problem().unwrap_or("none");
        for bits in [12, 16] {
            for f in as_camera(bits, |x| x * 0.01) {
                // Lamp off, with the camera's depth given.
                assert!(problem(&f, Some(bits)).contains("dark"), "{bits}");
            }
            // Found from the frame alone: near the black level.
            let black = if bits == 12 { 0.01 } else { 0.0005 };
            for f in as_camera(bits, |x| x * black) {
                assert!(problem(&f, None).contains("dark"), "{bits}");
            }
            for f in as_camera(bits, |x| x * 3.0) {
                let p = problem(&f, Some(bits));
                assert!(p.contains("over-exposed"), "{bits}: {p}");
                assert!(problem(&f, None).contains("over-exposed"), "{bits}");
            }
            for f in as_camera(bits, |_| 0.4) {
                assert!(problem(&f, None).contains("blank"), "{bits}");
            }
        }
    }
}
