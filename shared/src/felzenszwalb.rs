//! Felzenszwalb–Huttenlocher graph segmentation (IJCV 2004), the superpixels
//! behind the paper's voting step.
//!
//! Semantics follow scikit-image's `felzenszwalb` for a single-channel image
//! whose intensities are in 0..1 (what `img_as_float` gives): Gaussian
//! pre-smoothing with `sigma` (scipy `reflect` borders, truncate 4), an
//! 8-connected grid graph with |Δintensity| weights, the merge test
//! `w < min(Int(A) + k/|A|, Int(B) + k/|B|)` with `k = scale / 255`, then
//! merging of segments under `min_size`, labels numbered by first appearance
//! in raster order. With the same input it returns the same labels as
//! scikit-image up to the order of equal-weight edges.
//!
//! Speed: each edge is one u64 (weight bits above, edge id below; weights
//! are non-negative, so their IEEE bits order like the weights), sorted
//! exactly. Quantising weights into 16-bit buckets was tried first and
//! changes the result measurably, because FH is sensitive to the order of
//! near-equal weights. Sorting is the cost on a memory-bound machine, so
//! edges are cut into weight bands and, before each band is sorted, the
//! edges whose ends are already joined are dropped (they would be skipped). The forest uses union by size with path halving and
//! keeps each root's merge threshold `Int + k/|C|`, so the hot loop has no
//! division; a flattening pass shortens the finds of the min-size sweep.
//!
//! Intensity scaling: `scale` is in units of the 0..1 intensity range
//! multiplied by 255. Multiplying every intensity by `a` multiplies every
//! weight by `a`, which is the same as dividing `scale` by `a`. A 16-bit image
//! whose values span only `lo..hi` therefore needs `scale × (hi−lo)/65535`
//! in scikit-image on the raw file to match `scale` here on the image
//! stretched to 0..1 (see `imageio::stretch` and docs/superpixels.md).

use crate::{Error, Grid, Plane, Result};

/// Parameters, named and defaulted as in the paper and scikit-image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Observation scale `k × 255`; larger means larger segments.
    pub scale: f32,
    /// Gaussian pre-smoothing; 0 disables it.
    pub sigma: f32,
    /// Segments smaller than this are merged into a neighbour.
    pub min_size: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            scale: 100.0,
            sigma: 0.8,
            min_size: 20,
        }
    }
}

/// A label map (0..count) and the number of segments.
#[derive(Debug, Clone, PartialEq)]
pub struct Segmentation {
    pub labels: Grid<u32>,
    pub count: usize,
}

impl Segmentation {
    /// Pixels per segment.
    pub fn sizes(&self) -> Vec<u32> {
        let mut s = vec![0u32; self.count];
        for &l in self.labels.data() {
            s[l as usize] += 1;
        }
        s
    }
}

/// Segments `plane` (intensities expected in 0..1).
pub fn segment(plane: &Plane, params: &Params) -> Result<Segmentation> {
    if plane.is_empty() {
        return Err(Error::Invalid("felzenszwalb: empty image".into()));
    }
    if plane.len() >= (u32::MAX / 4) as usize {
        return Err(Error::Invalid("felzenszwalb: image too large".into()));
    }
    let valid = |v: f32| v.is_finite() && v >= 0.0;
    if !valid(params.scale) || !valid(params.sigma) {
        return Err(Error::Invalid(format!(
            "felzenszwalb: scale and sigma must be finite and ≥ 0 (got {}, {})",
            params.scale, params.sigma
        )));
    }
    let smooth = gaussian_blur(plane, params.sigma);
    let (w, h) = (plane.width(), plane.height());
    let img = smooth.data();
    let n = w * h;

    // Edge id = pixel * 4 + direction; neighbours: right, down, down-right,
    // up-right. Each edge is packed as (weight bits << 32 | id): weights are
    // non-negative, so their IEEE bits order like the weights themselves.
    let offsets: [isize; 4] = [1, w as isize, w as isize + 1, 1 - w as isize];
    let ends = |item: u64| {
        let e = item as u32;
        let p = e >> 2;
        (p, (p as isize + offsets[(e & 3) as usize]) as u32)
    };
    let k = params.scale / 255.0;
    let mut forest = Forest::new(n, k);
    // Edges in weight order, band by band. An edge whose ends are already
    // joined when its band starts would be skipped anyway (components only
    // grow), so it is dropped before the sort: most edges are, and the sort
    // is what costs. The result is the same as sorting every edge.
    let (edges, bounds) = banded_edges(img, w, h);
    let mut live: Vec<u64> = Vec::with_capacity(edges.len());
    for band in bounds.windows(2) {
        let start = live.len();
        for &item in &edges[band[0]..band[1]] {
            let (p, q) = ends(item);
            // Fast path: neighbours often hang off the same parent.
            if forest.parent[p as usize] != forest.parent[q as usize]
                && forest.find(p) != forest.find(q)
            {
                live.push(item);
            }
        }
        // Pattern-defeating quicksort on whole words (weight, then edge id).
        live[start..].sort_unstable();
        for i in start..live.len() {
            // Sorted edges visit pixels at random: ask for the parents of an
            // edge a few steps ahead so their loads overlap this one's work.
            if let Some(&ahead) = live.get(i + PREFETCH_DISTANCE) {
                let (p, q) = ends(ahead);
                prefetch(&forest.parent, p as usize);
                prefetch(&forest.parent, q as usize);
            }
            let item = live[i];
            let (p, q) = ends(item);
            let a = forest.find(p);
            let b = forest.find(q);
            if a == b {
                continue;
            }
            let we = f32::from_bits((item >> 32) as u32);
            let (sa, sb) = (forest.set[a as usize], forest.set[b as usize]);
            if we < sa.thr.min(sb.thr) {
                forest.union(a, b, sa, sb, we + k / (sa.size + sb.size) as f32);
            }
        }
    }
    let min = params.min_size.min(u32::MAX as usize) as u32;
    if min > 1 && (0..n).any(|i| forest.parent[i] == i as u32 && forest.set[i].size < min) {
        // Point every pixel at its root so the second sweep's finds are short.
        for p in 0..n as u32 {
            let r = forest.find(p);
            forest.parent[p as usize] = r;
        }
        // Edges dropped above join one segment and are skipped here too.
        for &item in &live {
            let (p, q) = ends(item);
            let a = forest.find(p);
            let b = forest.find(q);
            if a == b {
                continue;
            }
            let (sa, sb) = (forest.set[a as usize], forest.set[b as usize]);
            if sa.size < min || sb.size < min {
                forest.union(a, b, sa, sb, 0.0);
            }
        }
    }

    // Number segments by first appearance in raster order (as scikit-image).
    let mut label_of_root = vec![u32::MAX; n];
    let mut labels = Vec::with_capacity(n);
    let mut count = 0u32;
    for p in 0..n {
        let r = forest.find(p as u32) as usize;
        if label_of_root[r] == u32::MAX {
            label_of_root[r] = count;
            count += 1;
        }
        labels.push(label_of_root[r]);
    }
    Ok(Segmentation {
        labels: Grid::from_vec(w, h, labels)?,
        count: count as usize,
    })
}

/// How many edges ahead the merge loop prefetches.
const PREFETCH_DISTANCE: usize = 8;

/// Hints the CPU to load `v[i]` into cache (a no-op off x86-64).
#[inline(always)]
fn prefetch(v: &[u32], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(x) = v.get(i) {
        // SAFETY: `x` is a valid reference; a prefetch has no side effects.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                x as *const u32 as *const i8,
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (v, i);
}

/// Number of weight bands the edges are split into.
const BANDS: usize = 32;

/// All edges grouped into bands of increasing weight (about equal in size,
/// cut on the top 12 bits of the weight), each band in generation order,
/// which keeps the filtering finds close to sequential; and the band
/// boundaries. Weights are computed twice (histogram, then placement) rather
/// than stored and copied: cheaper on a memory-bound machine.
fn banded_edges(img: &[f32], w: usize, h: usize) -> (Vec<u64>, Vec<usize>) {
    const TOP: u32 = 12;
    let prefix = |x: u64| (x >> (64 - TOP)) as usize;
    let mut hist = vec![0usize; 1 << TOP];
    let mut total = 0usize;
    visit_edges(img, w, h, |x| {
        hist[prefix(x)] += 1;
        total += 1;
    });
    let per_band = total.div_ceil(BANDS).max(1);
    let mut band_of = vec![0u8; 1 << TOP];
    let mut bounds = vec![0usize; BANDS + 1];
    let (mut band, mut acc) = (0usize, 0usize);
    for (b, &c) in band_of.iter_mut().zip(&hist) {
        *b = band as u8;
        acc += c;
        bounds[band + 1] = acc;
        if acc >= per_band * (band + 1) && band + 1 < BANDS {
            band += 1;
            bounds[band + 1] = acc;
        }
    }
    // Fewer edges than bands (frames of a few pixels): the bands never
    // reached are empty and end where the last one does, not at 0.
    for b in &mut bounds[band + 1..] {
        *b = acc;
    }
    let mut next = bounds.clone();
    let mut out = vec![0u64; total];
    visit_edges(img, w, h, |x| {
        let b = band_of[prefix(x)] as usize;
        out[next[b]] = x;
        next[b] += 1;
    });
    (out, bounds)
}

/// Calls `f` with every edge of the 8-connected grid as (weight bits << 32
/// | pixel·4 + direction), direction by direction (the order scikit-image
/// stacks them in), each row as a slice walk.
#[inline(always)]
fn visit_edges(img: &[f32], w: usize, h: usize, mut f: impl FnMut(u64)) {
    let pack = |a: f32, b: f32, p: usize, d: u64| {
        (((a - b).abs().to_bits() as u64) << 32) | ((p as u64) << 2 | d)
    };
    for y in 0..h {
        let r = &img[y * w..(y + 1) * w];
        r.iter()
            .zip(&r[1..])
            .enumerate()
            .for_each(|(x, (&a, &b))| f(pack(a, b, y * w + x, 0)));
    }
    for y in 0..h.saturating_sub(1) {
        let (r, s) = (&img[y * w..(y + 1) * w], &img[(y + 1) * w..(y + 2) * w]);
        r.iter()
            .zip(s)
            .enumerate()
            .for_each(|(x, (&a, &b))| f(pack(a, b, y * w + x, 1)));
    }
    for y in 0..h.saturating_sub(1) {
        let (r, s) = (&img[y * w..(y + 1) * w], &img[(y + 1) * w..(y + 2) * w]);
        r.iter()
            .zip(&s[1..])
            .enumerate()
            .for_each(|(x, (&a, &b))| f(pack(a, b, y * w + x, 2)));
    }
    for y in 1..h {
        let (r, s) = (&img[y * w..(y + 1) * w], &img[(y - 1) * w..y * w]);
        r.iter()
            .zip(&s[1..])
            .enumerate()
            .for_each(|(x, (&a, &b))| f(pack(a, b, y * w + x, 3)));
    }
}

/// Size and merge threshold `Int(C) + k/|C|` of a segment (valid at roots).
#[derive(Clone, Copy)]
struct Set {
    size: u32,
    thr: f32,
}

/// Union–find with union by size and path halving.
struct Forest {
    parent: Vec<u32>,
    set: Vec<Set>,
}

impl Forest {
    fn new(n: usize, k: f32) -> Self {
        Forest {
            parent: (0..n as u32).collect(),
            set: vec![Set { size: 1, thr: k }; n],
        }
    }

    #[inline]
    fn find(&mut self, mut x: u32) -> u32 {
        let parent = self.parent.as_mut_slice();
        assert!((x as usize) < parent.len());
        loop {
            // SAFETY: `x` starts in bounds (checked above) and every stored
            // parent is a pixel index < n (set in `new` and `union` from
            // indices that came out of `find`), so all reads and writes are
            // in bounds. This loop is the hot path; the checks cost ~20 %.
            unsafe {
                let p = *parent.get_unchecked(x as usize);
                if p == x {
                    return x;
                }
                let gp = *parent.get_unchecked(p as usize);
                *parent.get_unchecked_mut(x as usize) = gp;
                x = gp;
            }
        }
    }

    /// Joins roots `a` and `b` (whose sets are `sa`, `sb`) under the larger.
    #[inline]
    fn union(&mut self, a: u32, b: u32, sa: Set, sb: Set, thr: f32) {
        let (big, small) = if sa.size >= sb.size { (a, b) } else { (b, a) };
        self.parent[small as usize] = big;
        self.set[big as usize] = Set {
            size: sa.size + sb.size,
            thr,
        };
    }
}

/// Separable Gaussian blur matching `scipy.ndimage.gaussian_filter`
/// (mode `reflect`, truncate 4.0).
pub fn gaussian_blur(plane: &Plane, sigma: f32) -> Plane {
    if sigma <= 0.0 || plane.is_empty() {
        return plane.clone();
    }
    let radius = (4.0 * sigma as f64 + 0.5) as usize;
    let mut kernel: Vec<f64> = (0..=2 * radius)
        .map(|i| {
            let x = i as f64 - radius as f64;
            (-0.5 * x * x / (sigma as f64 * sigma as f64)).exp()
        })
        .collect();
    let sum: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|v| *v /= sum);
    let kernel: Vec<f32> = kernel.into_iter().map(|v| v as f32).collect();
    let (w, h) = (plane.width(), plane.height());
    let reflect = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let period = 2 * n;
        let mut m = i.rem_euclid(period);
        if m >= n {
            m = period - 1 - m;
        }
        m as usize
    };
    // Horizontal pass: pad each row by reflection, then accumulate one
    // kernel tap at a time (vectorises).
    let mut tmp = vec![0f32; w * h];
    let mut line = vec![0f32; w + 2 * radius];
    for y in 0..h {
        let row = plane.row(y);
        line[radius..radius + w].copy_from_slice(row);
        for i in 0..radius {
            line[i] = row[reflect(i as isize - radius as isize, w)];
            line[radius + w + i] = row[reflect((w + i) as isize, w)];
        }
        let dst = &mut tmp[y * w..(y + 1) * w];
        for (j, &kv) in kernel.iter().enumerate() {
            for (d, &l) in dst.iter_mut().zip(&line[j..j + w]) {
                *d += kv * l;
            }
        }
    }
    // Vertical pass, row by row for cache friendliness.
    let mut out = vec![0f32; w * h];
    for y in 0..h {
        let dst = &mut out[y * w..(y + 1) * w];
        for (j, kv) in kernel.iter().enumerate() {
            let sy = reflect(y as isize + j as isize - radius as isize, h);
            let src = &tmp[sy * w..(sy + 1) * w];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += kv * s;
            }
        }
    }
    Plane::from_vec(w, h, out).expect("same size")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mosaic of constant rectangles with well separated intensities.
    fn mosaic() -> (Plane, Grid<u32>) {
        let (w, h) = (60, 40);
        let truth = Grid::from_fn(w, h, |x, y| {
            let cx = if x < 20 {
                0
            } else if x < 45 {
                1
            } else {
                2
            };
            let cy = if y < 15 { 0 } else { 1 };
            (cy * 3 + cx) as u32
        });
        let levels = [0.1, 0.5, 0.9, 0.3, 0.7, 0.0];
        let plane = truth.map(|&l| levels[l as usize]);
        (plane, truth)
    }

    #[test]
    fn recovers_piecewise_constant_regions_exactly() {
        let (plane, truth) = mosaic();
        for (scale, min_size) in [(1.0, 1), (10.0, 5), (50.0, 20)] {
            let s = segment(
                &plane,
                &Params {
                    scale,
                    sigma: 0.0,
                    min_size,
                },
            )
            .unwrap();
            assert_eq!(s.count, 6, "scale {scale}");
            assert_eq!(s.labels, truth, "scale {scale}");
        }
    }

    #[test]
    fn constant_image_is_one_segment_and_huge_scale_merges_all() {
        let flat = Plane::filled(17, 9, 0.5);
        let s = segment(&flat, &Params::default()).unwrap();
        assert_eq!(s.count, 1);
        let (plane, _) = mosaic();
        let s = segment(
            &plane,
            &Params {
                scale: 1e9,
                sigma: 0.0,
                min_size: 1,
            },
        )
        .unwrap();
        assert_eq!(s.count, 1);
    }

    #[test]
    fn min_size_is_respected() {
        // Tie-free pseudo-random noise.
        let noise = Plane::from_fn(50, 50, |x, y| {
            let mut h = (x as u32).wrapping_mul(0x9e37_79b9) ^ (y as u32).wrapping_mul(0x85eb_ca6b);
            h ^= h >> 15;
            h = h.wrapping_mul(0x2c1b_3c6d);
            h ^= h >> 12;
            (h >> 8) as f32 / (1u32 << 24) as f32
        });
        let s = segment(
            &noise,
            &Params {
                scale: 1.0,
                sigma: 0.0,
                min_size: 30,
            },
        )
        .unwrap();
        assert!(s.sizes().iter().all(|&n| n >= 30), "{:?}", s.sizes());
        assert!(s.count > 5 && s.count <= 2500 / 30, "{}", s.count);
        let none = segment(
            &noise,
            &Params {
                scale: 1.0,
                sigma: 0.0,
                min_size: 1,
            },
        )
        .unwrap();
        assert!(none.count > s.count);
    }

    #[test]
    fn frames_of_a_few_pixels_segment() {
        // Fewer edges than weight bands once panicked ("slice index starts
        // at 11 but ends at 0"); every label must still be a segment.
        let mut seed = 7u32;
        for h in 1..=9 {
            for w in 1..=9 {
                let data = (0..w * h)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        (seed >> 16) as f32 / 65_536.0
                    })
                    .collect();
                let p = Plane::from_vec(w, h, data).unwrap();
                let s = segment(&p, &Params::default()).unwrap();
                let mut seen = vec![false; s.count];
                for &l in s.labels.data() {
                    seen[l as usize] = true;
                }
                assert!(s.count >= 1 && seen.iter().all(|&b| b), "{w}x{h}");
            }
        }
    }

    #[test]
    fn rejects_bad_parameters() {
        let p = Plane::filled(4, 4, 0.0);
        assert!(segment(
            &p,
            &Params {
                scale: f32::NAN,
                ..Params::default()
            }
        )
        .is_err());
        assert!(segment(
            &p,
            &Params {
                sigma: -1.0,
                ..Params::default()
            }
        )
        .is_err());
        let empty = Plane::from_vec(0, 0, vec![]).unwrap();
        assert!(segment(&empty, &Params::default()).is_err());
    }

    #[test]
    fn gaussian_matches_scipy_reference() {
        // scipy.ndimage.gaussian_filter([[0,0,1,0,0]], sigma=[0, 1]) (one row of
        // a 5x1 image): reflect borders, truncate 4.
        let p = Plane::from_vec(5, 1, vec![0.0, 0.0, 1.0, 0.0, 0.0]).unwrap();
        let b = gaussian_blur(&p, 1.0);
        let want = [0.05842299, 0.24210528, 0.39894347, 0.24210528, 0.05842299];
        for (g, w) in b.data().iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{:?}", b.data());
        }
    }
}
