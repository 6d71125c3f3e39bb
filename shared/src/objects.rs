//! Objects: 8-connected components of a mask and the shape measures that
//! tell a worm (long, thin) from an egg (small ellipse) or a cyst (large,
//! round-ish), for models that give one map for all of them.

use crate::{BitMask, Class, Grid, Mask};

/// Inclusive-exclusive pixel rectangle `x0..x1, y0..y1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BBox {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl BBox {
    pub fn width(&self) -> usize {
        self.x1 - self.x0
    }
    pub fn height(&self) -> usize {
        self.y1 - self.y0
    }
}

/// One connected component and its measures, in pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Label in the component map (1-based; 0 is background).
    pub label: u32,
    pub area: usize,
    pub bbox: BBox,
    /// Centre of mass (x, y).
    pub centroid: (f32, f32),
    /// Length along the body: longest path through the skeleton plus the
    /// two half-widths the thinning removes at the ends.
    pub length: f32,
    /// Mean width, `area / length`.
    pub width: f32,
    /// `length / width`: ≈1 for discs, ≈2–3 for eggs, ≫5 for worms.
    pub elongation: f32,
}

impl Object {
    /// No pixels yet: the box is empty (`x0 > x1`) until pixels are added.
    fn empty(label: u32) -> Object {
        Object {
            label,
            area: 0,
            bbox: BBox {
                x0: usize::MAX,
                y0: usize::MAX,
                x1: 0,
                y1: 0,
            },
            centroid: (0.0, 0.0),
            length: 0.0,
            width: 0.0,
            elongation: 0.0,
        }
    }
}

/// A component label map (0 = background, 1..=count) and the count.
#[derive(Debug, Clone, PartialEq)]
pub struct Components {
    pub labels: Grid<u32>,
    pub count: usize,
}

/// Labels the 8-connected components of `mask`, numbered 1.. in raster
/// order of their first pixel. Two passes with a union–find over
/// provisional labels.
pub fn label_components(mask: &Mask) -> Components {
    let (w, h) = (mask.width(), mask.height());
    let m = mask.data();
    let mut labels = vec![0u32; w * h];
    let mut parent: Vec<u32> = vec![0];
    fn find(parent: &mut [u32], mut x: u32) -> u32 {
        while parent[x as usize] != x {
            let g = parent[parent[x as usize] as usize];
            parent[x as usize] = g;
            x = g;
        }
        x
    }
    fn unite(parent: &mut [u32], a: u32, b: u32) -> u32 {
        let (ra, rb) = (find(parent, a), find(parent, b));
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi as usize] = lo;
        lo
    }
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if !m[i] {
                continue;
            }
            // Already-visited neighbours: W, NW, N, NE.
            let mut cur = 0u32;
            let mut take = |l: u32, parent: &mut Vec<u32>| {
                if l != 0 {
                    cur = if cur == 0 { l } else { unite(parent, cur, l) };
                }
            };
            if x > 0 {
                take(labels[i - 1], &mut parent);
            }
            if y > 0 {
                let up = i - w;
                if x > 0 {
                    take(labels[up - 1], &mut parent);
                }
                take(labels[up], &mut parent);
                if x + 1 < w {
                    take(labels[up + 1], &mut parent);
                }
            }
            if cur == 0 {
                cur = parent.len() as u32;
                parent.push(cur);
            }
            labels[i] = cur;
        }
    }
    // Flatten to consecutive labels in raster order of first appearance.
    let mut final_of = vec![0u32; parent.len()];
    let mut count = 0u32;
    for l in labels.iter_mut() {
        if *l != 0 {
            let r = find(&mut parent, *l) as usize;
            if final_of[r] == 0 {
                count += 1;
                final_of[r] = count;
            }
            *l = final_of[r];
        }
    }
    Components {
        labels: Grid::from_vec(w, h, labels).expect("same size"),
        count: count as usize,
    }
}

/// Area, bounding box and centroid of every component, without the
/// skeleton (cheap: one pass).
pub fn basic_stats(c: &Components) -> Vec<Object> {
    let w = c.labels.width();
    let mut objs: Vec<Object> = (1..=c.count as u32).map(Object::empty).collect();
    let mut sums = vec![(0f64, 0f64); c.count];
    for (i, &l) in c.labels.data().iter().enumerate() {
        if l == 0 {
            continue;
        }
        let (x, y) = (i % w, i / w);
        let o = &mut objs[l as usize - 1];
        o.area += 1;
        o.bbox.x0 = o.bbox.x0.min(x);
        o.bbox.y0 = o.bbox.y0.min(y);
        o.bbox.x1 = o.bbox.x1.max(x + 1);
        o.bbox.y1 = o.bbox.y1.max(y + 1);
        let s = &mut sums[l as usize - 1];
        s.0 += x as f64;
        s.1 += y as f64;
    }
    for (o, s) in objs.iter_mut().zip(sums) {
        o.centroid = ((s.0 / o.area as f64) as f32, (s.1 / o.area as f64) as f32);
    }
    objs
}

/// Components of `mask` with all shape measures.
pub fn measure(mask: &Mask) -> (Components, Vec<Object>) {
    let comps = label_components(mask);
    let mut objs = basic_stats(&comps);
    for o in objs.iter_mut() {
        let b = o.bbox;
        // Crop with one pixel of background around it for the thinning.
        let mut crop = BitMask::new(b.width() + 2, b.height() + 2);
        for y in 0..b.height() {
            for x in 0..b.width() {
                if *comps.labels.get(b.x0 + x, b.y0 + y) == o.label {
                    crop.set(x + 1, y + 1, true);
                }
            }
        }
        set_shape(o, crop);
    }
    (comps, objs)
}

/// Length, width and elongation of `o` from `crop`, its pixels alone in its
/// bounding box with one pixel of background around it. The crop is a bit
/// per pixel and the path search holds the skeleton alone, so a component
/// as large as the frame costs a few bits a pixel, not a float.
fn set_shape(o: &mut Object, mut crop: BitMask) {
    thin(&mut crop);
    let path = skeleton_path(&crop) as f64;
    let area = o.area as f64;
    // A tube of length L and width W thins to a path of about L − W, so
    // solve W² + path·W = area for W, then L = path + W.
    let width = (-path + (path * path + 4.0 * area).sqrt()) / 2.0;
    let length = path + width;
    o.width = width as f32;
    o.length = length as f32;
    o.elongation = if width > 0.0 {
        (length / width) as f32
    } else {
        0.0
    };
}

/// The objects of a bit-packed mask, equal to [`measure`]'s (same
/// numbering, areas, boxes, centroids and shapes) without its per-pixel
/// label map: components are found as 8-connected runs with a union–find,
/// and each is measured from its own crop. Memory follows the number of
/// runs, not the frame's size.
pub fn measure_bits(mask: &BitMask) -> Vec<Object> {
    measure_bits_with(mask, 1, |_| true)
}

/// As [`measure_bits`], only the components whose area (pixels) `keep`
/// accepts, their shapes measured on `threads` threads (the same objects
/// whatever the number). Shapes cost most; a frame full of debris has
/// thousands of specks a counter drops by area alone, so they are dropped
/// before their shapes are measured.
pub fn measure_bits_with(
    mask: &BitMask,
    threads: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<Object> {
    measure_bits_each(mask, threads, keep, |_, _| ())
        .into_iter()
        .map(|(o, ())| o)
        .collect()
}

/// As [`measure_bits_with`], each kept object paired with what `visit`
/// makes of its pixels: `visit(bbox, crop)` gets the object's own pixels
/// (no neighbour's) as a crop of its box with a one-pixel empty border,
/// so crop pixel (x, y) is frame pixel (bbox.x0 + x − 1, bbox.y0 + y − 1).
pub fn measure_bits_each<T: Send>(
    mask: &BitMask,
    threads: usize,
    keep: impl Fn(usize) -> bool,
    visit: impl Fn(BBox, &BitMask) -> T + Sync,
) -> Vec<(Object, T)> {
    // Runs (y, x0, x1) in raster order; row_start[y] indexes the first.
    let mut runs: Vec<(u32, u32, u32)> = Vec::new();
    let mut row_start = Vec::with_capacity(mask.height() + 1);
    for y in 0..mask.height() {
        row_start.push(runs.len());
        mask.runs(y, |a, b| runs.push((y as u32, a as u32, b as u32)));
    }
    row_start.push(runs.len());
    let mut parent: Vec<u32> = (0..runs.len() as u32).collect();
    fn find(parent: &mut [u32], mut x: u32) -> u32 {
        while parent[x as usize] != x {
            let g = parent[parent[x as usize] as usize];
            parent[x as usize] = g;
            x = g;
        }
        x
    }
    for y in 1..mask.height() {
        let (prev, cur) = (
            row_start[y - 1]..row_start[y],
            row_start[y]..row_start[y + 1],
        );
        let mut p = prev.start;
        for c in cur {
            let (_, c0, c1) = runs[c];
            // Previous-row runs ending left of this one's diagonal neighbour
            // cannot touch it or any later one.
            while p < prev.end && runs[p].2 < c0 {
                p += 1;
            }
            let mut q = p;
            // 8-connected: touching, overlapping or diagonal (ends exclusive).
            while q < prev.end && runs[q].1 <= c1 {
                let (a, b) = (find(&mut parent, q as u32), find(&mut parent, c as u32));
                if a != b {
                    parent[a.max(b) as usize] = a.min(b);
                }
                q += 1;
            }
        }
    }
    // Components numbered in raster order of their first pixel, which is
    // in their first run.
    let mut id_of_root = vec![u32::MAX; runs.len()];
    let mut comp_of_run = Vec::with_capacity(runs.len());
    let mut objs: Vec<Object> = Vec::new();
    let mut sums: Vec<(f64, f64)> = Vec::new();
    for (i, &(y, x0, x1)) in runs.iter().enumerate() {
        let r = find(&mut parent, i as u32) as usize;
        if id_of_root[r] == u32::MAX {
            id_of_root[r] = objs.len() as u32;
            objs.push(Object::empty(objs.len() as u32 + 1));
            sums.push((0.0, 0.0));
        }
        let k = id_of_root[r] as usize;
        comp_of_run.push(k as u32);
        let (y, x0, x1) = (y as usize, x0 as usize, x1 as usize);
        let o = &mut objs[k];
        let n = x1 - x0;
        o.area += n;
        o.bbox.x0 = o.bbox.x0.min(x0);
        o.bbox.y0 = o.bbox.y0.min(y);
        o.bbox.x1 = o.bbox.x1.max(x1);
        o.bbox.y1 = o.bbox.y1.max(y + 1);
        // Σx over x0..x1 and Σy, exact in f64.
        sums[k].0 += ((x0 + x1 - 1) * n) as f64 / 2.0;
        sums[k].1 += (y * n) as f64;
    }
    drop(parent);
    // Each component's runs, grouped (a counting sort by component).
    let mut first = vec![0usize; objs.len() + 1];
    for &k in &comp_of_run {
        first[k as usize + 1] += 1;
    }
    for k in 0..objs.len() {
        first[k + 1] += first[k];
    }
    let mut next = first.clone();
    let mut order = vec![0u32; runs.len()];
    for (i, &k) in comp_of_run.iter().enumerate() {
        order[next[k as usize]] = i as u32;
        next[k as usize] += 1;
    }
    let shape = |k: usize, o: &mut Object| -> T {
        let s = sums[k];
        o.centroid = ((s.0 / o.area as f64) as f32, (s.1 / o.area as f64) as f32);
        let b = o.bbox;
        let mut crop = BitMask::new(b.width() + 2, b.height() + 2);
        for &i in &order[first[k]..first[k + 1]] {
            let (y, x0, x1) = runs[i as usize];
            for x in x0 as usize..x1 as usize {
                crop.set(x - b.x0 + 1, y as usize - b.y0 + 1, true);
            }
        }
        let seen = visit(b, &crop);
        set_shape(o, crop);
        seen
    };
    // Each kept object with its component index (into `sums`, `first`)
    // and, once measured, what `visit` made of it.
    let mut kept: Vec<(usize, Object, Option<T>)> = objs
        .into_iter()
        .enumerate()
        .filter(|(_, o)| keep(o.area))
        .map(|(k, o)| (k, o, None))
        .collect();
    let threads = threads.clamp(1, kept.len().max(1));
    if threads == 1 {
        kept.iter_mut()
            .for_each(|(k, o, t)| *t = Some(shape(*k, o)));
    } else {
        // Interleaved, so one thread does not get all of a frame's large
        // objects when they cluster in raster order.
        let mut parts: Vec<Vec<&mut (usize, Object, Option<T>)>> =
            (0..threads).map(|_| Vec::new()).collect();
        for (i, ko) in kept.iter_mut().enumerate() {
            parts[i % threads].push(ko);
        }
        let shape = &shape;
        let mine = parts.swap_remove(0);
        std::thread::scope(|s| {
            for part in parts {
                s.spawn(move || {
                    part.into_iter()
                        .for_each(|(k, o, t)| *t = Some(shape(*k, o)))
                });
            }
            mine.into_iter()
                .for_each(|(k, o, t)| *t = Some(shape(*k, o)));
        });
    }
    kept.into_iter()
        .filter_map(|(_, o, t)| Some((o, t?)))
        .collect()
}

/// Zhang–Suen thinning to a one-pixel-wide, 8-connected skeleton.
pub fn skeletonize(mask: &Mask) -> Mask {
    let mut bits = BitMask::from_mask(mask);
    thin(&mut bits);
    bits.to_mask()
}

/// Zhang–Suen thinning in place (masks narrower or shorter than 3 pixels
/// are left as they are; the border is never removed).
///
/// Each sub-iteration judges only the pixels whose neighbourhood changed
/// since it last judged them: whether a pixel goes depends on its eight
/// neighbours alone, and an interior pixel (all eight set) never goes. The
/// result equals the textbook full scan, while the work follows the pixels
/// removed rather than the bounding box times the number of iterations (on
/// a camera frame's thousands of objects the full scan was most of the
/// counting time, docs/edge.md).
fn thin(img: &mut BitMask) {
    let (w, h) = (img.width(), img.height());
    if w < 3 || h < 3 {
        return;
    }
    // P2..P9 clockwise from north, as bits 0..7.
    const AROUND: [(isize, isize); 8] = [
        (0, -1),
        (1, -1),
        (1, 0),
        (1, 1),
        (0, 1),
        (-1, 1),
        (-1, 0),
        (-1, -1),
    ];
    let code = |img: &BitMask, x: usize, y: usize| {
        AROUND.iter().enumerate().fold(0u8, |c, (k, &(dx, dy))| {
            let on = img.get((x as isize + dx) as usize, (y as isize + dy) as usize);
            c | (u8::from(on) << k)
        })
    };
    let interior = |x: usize, y: usize| x >= 1 && x < w - 1 && y >= 1 && y < h - 1;
    // Per sub-iteration, the pixels whose neighbourhood changed since that
    // sub-iteration last judged them (at first: every boundary pixel).
    let mut flagged = [BitMask::new(w, h), BitMask::new(w, h)];
    let mut queued: [Vec<(u32, u32)>; 2] = [Vec::new(), Vec::new()];
    // Queues (x, y) for both sub-iterations, once each.
    let flag = |flagged: &mut [BitMask; 2], queued: &mut [Vec<(u32, u32)>; 2], x, y| {
        for (f, q) in flagged.iter_mut().zip(queued.iter_mut()) {
            if !f.get(x, y) {
                f.set(x, y, true);
                q.push((x as u32, y as u32));
            }
        }
    };
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            if img.get(x, y) && code(img, x, y) != 0xff {
                flag(&mut flagged, &mut queued, x, y);
            }
        }
    }
    static TABLES: std::sync::OnceLock<[[bool; 256]; 2]> = std::sync::OnceLock::new();
    let tables = TABLES.get_or_init(|| [thinning_table(0), thinning_table(1)]);
    let mut to_clear = Vec::new();
    let mut judged = Vec::new();
    loop {
        let mut changed = false;
        for (s, table) in tables.iter().enumerate() {
            std::mem::swap(&mut judged, &mut queued[s]);
            to_clear.clear();
            for &(x, y) in &judged {
                let (x, y) = (x as usize, y as usize);
                flagged[s].set(x, y, false);
                if img.get(x, y) && table[code(img, x, y) as usize] {
                    to_clear.push((x, y));
                }
            }
            judged.clear();
            for &(x, y) in &to_clear {
                img.set(x, y, false);
            }
            for &(x, y) in &to_clear {
                for &(dx, dy) in &AROUND {
                    let (nx, ny) = ((x as isize + dx) as usize, (y as isize + dy) as usize);
                    if img.get(nx, ny) && interior(nx, ny) {
                        flag(&mut flagged, &mut queued, nx, ny);
                    }
                }
            }
            changed |= !to_clear.is_empty();
        }
        if !changed {
            break;
        }
    }
}

/// Which 8-neighbourhoods (bit k = P(k+2), clockwise from north) Zhang–Suen
/// removes in sub-iteration `step`.
fn thinning_table(step: usize) -> [bool; 256] {
    let mut t = [false; 256];
    for (c, out) in t.iter_mut().enumerate() {
        let p: [u8; 8] = std::array::from_fn(|k| (c >> k) as u8 & 1);
        let b: u8 = p.iter().sum();
        let a = (0..8).filter(|&k| p[k] == 0 && p[(k + 1) % 8] == 1).count();
        let ok = if step == 0 {
            p[0] * p[2] * p[4] == 0 && p[2] * p[4] * p[6] == 0
        } else {
            p[0] * p[2] * p[6] == 0 && p[0] * p[4] * p[6] == 0
        };
        *out = (2..=6).contains(&b) && a == 1 && ok;
    }
    t
}

/// Longest shortest path (steps 1 and √2) through the skeleton, found by a
/// double sweep: exact on trees, which worm skeletons nearly are.
pub fn longest_path(skel: &Mask) -> f32 {
    skeleton_path(&BitMask::from_mask(skel))
}

fn skeleton_path(skel: &BitMask) -> f32 {
    // The skeleton's pixels in raster order, each row's first in
    // `row_start`; distances are kept for them alone.
    let h = skel.height();
    let mut pixels: Vec<(u32, u32)> = Vec::new();
    let mut row_start = Vec::with_capacity(h + 1);
    for y in 0..h {
        row_start.push(pixels.len());
        skel.runs(y, |a, b| {
            pixels.extend((a..b).map(|x| (x as u32, y as u32)))
        });
    }
    row_start.push(pixels.len());
    if pixels.is_empty() {
        return 0.0;
    }
    let sk = Skeleton { pixels, row_start };
    let (far, _) = sk.farthest(0);
    sk.farthest(far).1
}

/// A skeleton's pixels `(x, y)` in raster order and where each row starts.
struct Skeleton {
    pixels: Vec<(u32, u32)>,
    row_start: Vec<usize>,
}

impl Skeleton {
    /// The skeleton pixels next to pixel `k`, with the step to each.
    fn neighbours(&self, k: usize, mut each: impl FnMut(usize, f32)) {
        let (x, y) = self.pixels[k];
        let rows = y.saturating_sub(1) as usize..(y as usize + 2).min(self.row_start.len() - 1);
        for ny in rows {
            let row = &self.pixels[self.row_start[ny]..self.row_start[ny + 1]];
            // The first pixel at or right of x − 1, then up to x + 1.
            let from = row.partition_point(|&(px, _)| px + 1 < x);
            for (i, &(nx, _)) in row[from..].iter().enumerate() {
                if nx > x + 1 {
                    break;
                }
                if nx == x && ny == y as usize {
                    continue;
                }
                let step = if nx != x && ny != y as usize {
                    std::f32::consts::SQRT_2
                } else {
                    1.0
                };
                each(self.row_start[ny] + from + i, step);
            }
        }
    }

    /// The pixel (index into `pixels`) farthest from `pixels[start]` along
    /// the skeleton, and its distance.
    fn farthest(&self, start: usize) -> (usize, f32) {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let mut dist = vec![f32::INFINITY; self.pixels.len()];
        let mut heap = BinaryHeap::new();
        dist[start] = 0.0;
        // Distances scaled to integers so the heap needs no float ordering.
        heap.push(Reverse((0u64, start)));
        let mut best = (start, 0f32);
        while let Some(Reverse((d, k))) = heap.pop() {
            let d = d as f32 / 1000.0;
            if d > dist[k] + 1e-3 {
                continue;
            }
            if d > best.1 {
                best = (k, d);
            }
            self.neighbours(k, |j, step| {
                let nd = d + step;
                if nd + 1e-4 < dist[j] {
                    dist[j] = nd;
                    heap.push(Reverse(((nd * 1000.0).round() as u64, j)));
                }
            });
        }
        best
    }
}

/// Pixel size, so rules and reports can speak micrometres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    pub um_per_px: f32,
}

impl Default for Calibration {
    /// The synthetic generator's default optics (4 µm per pixel).
    fn default() -> Self {
        Calibration { um_per_px: 4.0 }
    }
}

/// Shape rules that tell worms, eggs and cysts apart by size and form.
/// Defaults follow plant-parasitic nematodes: juveniles and adults 0.3–1.5 mm
/// long and 15–40 µm wide (touching worms stay that wide: area/length);
/// eggs about 50–120 × 20–50 µm, elliptical; cysts 0.3–0.8 mm, lemon-shaped
/// to round, far wider than any worm. Round soil grains of egg size are the
/// commonest confuser, hence the minimum egg elongation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapeRules {
    /// Objects at least this elongated and long are worms.
    pub worm_min_elongation: f32,
    pub worm_min_length_um: f32,
    /// Compact objects in this area and elongation range are eggs.
    pub egg_min_area_um2: f32,
    pub egg_max_area_um2: f32,
    pub egg_min_elongation: f32,
    pub egg_max_elongation: f32,
    /// Objects at least this large and this wide are cysts.
    pub cyst_min_area_um2: f32,
    pub cyst_min_width_um: f32,
}

impl Default for ShapeRules {
    fn default() -> Self {
        ShapeRules {
            worm_min_elongation: 5.0,
            worm_min_length_um: 150.0,
            egg_min_area_um2: 600.0,
            egg_max_area_um2: 9_000.0,
            egg_min_elongation: 1.3,
            egg_max_elongation: 4.0,
            cyst_min_area_um2: 36_000.0,
            cyst_min_width_um: 100.0,
        }
    }
}

impl ShapeRules {
    /// The class an object's shape says, or `None` for debris-like or
    /// in-between shapes.
    pub fn classify(&self, o: &Object, cal: Calibration) -> Option<Class> {
        let um = cal.um_per_px;
        let area = o.area as f32 * um * um;
        if area >= self.cyst_min_area_um2 && o.width * um >= self.cyst_min_width_um {
            Some(Class::Cyst)
        } else if o.elongation >= self.worm_min_elongation
            && o.length * um >= self.worm_min_length_um
        {
            Some(Class::Worm)
        } else if (self.egg_min_area_um2..=self.egg_max_area_um2).contains(&area)
            && (self.egg_min_elongation..=self.egg_max_elongation).contains(&o.elongation)
        {
            Some(Class::Egg)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mask_from(rows: &[&str]) -> Mask {
        let w = rows[0].len();
        Mask::from_fn(w, rows.len(), |x, y| rows[y].as_bytes()[x] == b'#')
    }

    #[test]
    fn eight_connectivity_joins_diagonals() {
        let m = mask_from(&["#...#", ".#..#", "..#..", ".....", "##..#"]);
        let c = label_components(&m);
        // The diagonal is one object (corners touch), the right column is
        // another (two pixels from the diagonal), then two at the bottom.
        assert_eq!(c.count, 4);
        assert_eq!(c.labels.row(0), &[1, 0, 0, 0, 2]);
        assert_eq!(c.labels.row(2), &[0, 0, 1, 0, 0]);
        assert_eq!(c.labels.row(4), &[3, 3, 0, 0, 4]);
    }

    #[test]
    fn u_shape_merges_into_one_label() {
        let m = mask_from(&["#...#", "#...#", "#####"]);
        let c = label_components(&m);
        assert_eq!(c.count, 1);
        let s = basic_stats(&c);
        assert_eq!(s[0].area, 9);
        assert_eq!(
            s[0].bbox,
            BBox {
                x0: 0,
                y0: 0,
                x1: 5,
                y1: 3
            }
        );
    }

    #[test]
    fn rectangle_length_and_width_are_recovered() {
        // 80 × 6 bar: length ≈ 80, width ≈ 6.
        let m = Mask::from_fn(100, 20, |x, y| {
            (10..90).contains(&x) && (7..13).contains(&y)
        });
        let (_, objs) = measure(&m);
        assert_eq!(objs.len(), 1);
        let o = &objs[0];
        assert!((o.length - 80.0).abs() < 4.0, "{o:?}");
        assert!((o.width - 6.0).abs() < 0.5, "{o:?}");
        assert!(o.elongation > 12.0);
    }

    #[test]
    fn disc_is_not_elongated_and_rules_tell_classes_apart() {
        let disc = Mask::from_fn(200, 200, |x, y| {
            let (dx, dy) = (x as f32 - 100.0, y as f32 - 100.0);
            dx * dx + dy * dy <= 55.0 * 55.0
        });
        let (_, objs) = measure(&disc);
        assert!(objs[0].elongation < 1.5, "{:?}", objs[0]);
        let cal = Calibration { um_per_px: 4.0 };
        let rules = ShapeRules::default();
        assert_eq!(rules.classify(&objs[0], cal), Some(Class::Cyst));
        // Egg: 20 × 9 px ellipse at 4 µm/px = 80 × 36 µm.
        let egg = Mask::from_fn(40, 30, |x, y| {
            let (dx, dy) = ((x as f32 - 20.0) / 10.0, (y as f32 - 15.0) / 4.5);
            dx * dx + dy * dy <= 1.0
        });
        let (_, e) = measure(&egg);
        assert_eq!(rules.classify(&e[0], cal), Some(Class::Egg), "{:?}", e[0]);
        // Worm: a curved band 6 px wide, ~150 px long.
        let worm = Mask::from_fn(200, 120, |x, y| {
            let xc = x as f32;
            let yc = 60.0 + 30.0 * (xc / 30.0).sin();
            (20.0..170.0).contains(&xc) && (y as f32 - yc).abs() <= 3.0
        });
        let (_, wo) = measure(&worm);
        assert_eq!(wo.len(), 1);
        assert_eq!(
            rules.classify(&wo[0], cal),
            Some(Class::Worm),
            "{:?}",
            wo[0]
        );
        // A round grain of egg size is not an egg.
        let grain = Mask::from_fn(40, 30, |x, y| {
            let (dx, dy) = (x as f32 - 20.0, y as f32 - 15.0);
            dx * dx + dy * dy <= 7.0 * 7.0
        });
        let (_, g) = measure(&grain);
        assert_eq!(rules.classify(&g[0], cal), None, "{:?}", g[0]);
        // Debris speck: too small for anything.
        let speck = Mask::from_fn(10, 10, |x, y| (4..7).contains(&x) && (4..7).contains(&y));
        let (_, s) = measure(&speck);
        assert_eq!(rules.classify(&s[0], cal), None);
    }

    proptest! {
        /// Component labels partition the foreground; every label is
        /// 8-connected internally and no two labels touch.
        #[test]
        fn components_partition_foreground(w in 1usize..16, h in 1usize..16, seed in any::<u64>()) {
            let mut s = seed | 1;
            let mut next = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s };
            let m = Mask::from_vec(w, h, (0..w * h).map(|_| next() % 5 < 2).collect()).unwrap();
            let c = label_components(&m);
            let stats = basic_stats(&c);
            prop_assert_eq!(stats.iter().map(|o| o.area).sum::<usize>(), m.count());
            for y in 0..h {
                for x in 0..w {
                    let l = *c.labels.get(x, y);
                    prop_assert_eq!(l != 0, *m.get(x, y));
                    prop_assert!(l as usize <= c.count);
                    for (dx, dy) in [(1isize, 0isize), (0, 1), (1, 1), (-1, 1)] {
                        let (nx, ny) = (x as isize + dx, y as isize + dy);
                        if nx >= 0 && ny >= 0 && (nx as usize) < w && (ny as usize) < h {
                            let l2 = *c.labels.get(nx as usize, ny as usize);
                            if l != 0 && l2 != 0 { prop_assert_eq!(l, l2); }
                        }
                    }
                }
            }
            // Every label is one piece: a flood fill from its first pixel
            // reaches its whole area.
            for o in &stats {
                let start = c.labels.data().iter().position(|&l| l == o.label).unwrap();
                let mut seen = vec![false; w * h];
                let mut stack = vec![start];
                seen[start] = true;
                let mut n = 0;
                while let Some(i) = stack.pop() {
                    n += 1;
                    let (x, y) = ((i % w) as isize, (i / w) as isize);
                    for dy in -1..=1 { for dx in -1..=1 {
                        let (nx, ny) = (x + dx, y + dy);
                        if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize { continue; }
                        let j = ny as usize * w + nx as usize;
                        if !seen[j] && c.labels.data()[j] == o.label { seen[j] = true; stack.push(j); }
                    }}
                }
                prop_assert_eq!(n, o.area);
            }
        }
    }

    /// The textbook Zhang–Suen: every pixel of the box, every sub-iteration.
    fn skeletonize_full_scan(mask: &Mask) -> Mask {
        let (w, h) = (mask.width(), mask.height());
        let mut img: Vec<u8> = mask.data().iter().map(|&v| v as u8).collect();
        if w < 3 || h < 3 {
            return mask.clone();
        }
        let mut to_clear = Vec::new();
        loop {
            let mut changed = false;
            for step in 0..2 {
                to_clear.clear();
                for y in 1..h - 1 {
                    for x in 1..w - 1 {
                        let i = y * w + x;
                        if img[i] == 0 {
                            continue;
                        }
                        // P2..P9 clockwise from north.
                        let p = [
                            img[i - w],
                            img[i - w + 1],
                            img[i + 1],
                            img[i + w + 1],
                            img[i + w],
                            img[i + w - 1],
                            img[i - 1],
                            img[i - w - 1],
                        ];
                        let b: u8 = p.iter().sum();
                        if !(2..=6).contains(&b) {
                            continue;
                        }
                        let a = (0..8).filter(|&k| p[k] == 0 && p[(k + 1) % 8] == 1).count();
                        if a != 1 {
                            continue;
                        }
                        let ok = if step == 0 {
                            p[0] * p[2] * p[4] == 0 && p[2] * p[4] * p[6] == 0
                        } else {
                            p[0] * p[2] * p[6] == 0 && p[0] * p[4] * p[6] == 0
                        };
                        if ok {
                            to_clear.push(i);
                        }
                    }
                }
                for &i in &to_clear {
                    img[i] = 0;
                }
                changed |= !to_clear.is_empty();
            }
            if !changed {
                break;
            }
        }
        Mask::from_vec(w, h, img.into_iter().map(|v| v != 0).collect()).expect("same size")
    }

    #[test]
    fn skeleton_equals_the_full_scan() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..60 {
            let (w, h) = (1 + rand() as usize % 70, 1 + rand() as usize % 50);
            let density = rand() % 100;
            let mut m = Mask::from_fn(w, h, |_, _| rand() % 100 < density);
            // Thick discs and strokes, so thinning takes many iterations.
            for _ in 0..2 {
                let (cx, cy, r) = (rand() as usize % w, rand() as usize % h, rand() % 15);
                for y in 0..h {
                    for x in 0..w {
                        let (dx, dy) = (x as i64 - cx as i64, y as i64 - cy as i64);
                        if (dx * dx + dy * dy) as u64 <= r * r {
                            m.set(x, y, true);
                        }
                    }
                }
            }
            assert_eq!(
                skeletonize(&m),
                skeletonize_full_scan(&m),
                "case {case}: {w}x{h}"
            );
        }
    }

    /// The path search as it was, over the whole crop.
    fn longest_path_dense(skel: &Mask) -> f32 {
        let Some(start) = skel.data().iter().position(|&v| v) else {
            return 0.0;
        };
        let (far, _) = farthest_dense(skel, start);
        farthest_dense(skel, far).1
    }

    fn farthest_dense(skel: &Mask, start: usize) -> (usize, f32) {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let (w, h) = (skel.width() as isize, skel.height() as isize);
        let mut dist = vec![f32::INFINITY; skel.len()];
        let mut heap = BinaryHeap::new();
        dist[start] = 0.0;
        // Distances scaled to integers so the heap needs no float ordering.
        heap.push(Reverse((0u64, start)));
        let mut best = (start, 0f32);
        while let Some(Reverse((d, i))) = heap.pop() {
            let d = d as f32 / 1000.0;
            if d > dist[i] + 1e-3 {
                continue;
            }
            if d > best.1 {
                best = (i, d);
            }
            let (x, y) = ((i as isize) % w, (i as isize) / w);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    if dx == 0 && dy == 0 {
                        continue;
                    }
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w || ny >= h {
                        continue;
                    }
                    let j = (ny * w + nx) as usize;
                    if !skel.data()[j] {
                        continue;
                    }
                    let step = if dx != 0 && dy != 0 {
                        std::f32::consts::SQRT_2
                    } else {
                        1.0
                    };
                    let nd = d + step;
                    if nd + 1e-4 < dist[j] {
                        dist[j] = nd;
                        heap.push(Reverse(((nd * 1000.0).round() as u64, j)));
                    }
                }
            }
        }
        best
    }

    #[test]
    fn path_over_skeleton_pixels_equals_the_dense_search() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..60 {
            let (w, h) = (1 + rand() as usize % 60, 1 + rand() as usize % 40);
            let density = rand() % 100;
            let m = Mask::from_fn(w, h, |_, _| rand() % 100 < density);
            let skel = skeletonize(&m);
            assert_eq!(
                longest_path(&skel),
                longest_path_dense(&skel),
                "case {case}"
            );
            assert_eq!(
                longest_path(&m),
                longest_path_dense(&m),
                "case {case}, unthinned"
            );
        }
    }

    #[test]
    fn measure_bits_equals_measure() {
        // Random blobs, lines and specks, including ones touching only at a
        // corner and runs crossing 64-bit word edges.
        let mut seed = 0x1234_5678_9abc_def1u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..40 {
            let (w, h) = (1 + rand() as usize % 150, 1 + rand() as usize % 90);
            let density = rand() % 100;
            let mut m = Mask::from_fn(w, h, |_, _| rand() % 100 < density / 2);
            // A few worm-like strokes.
            for _ in 0..3 {
                let (mut x, mut y) = (rand() as usize % w, rand() as usize % h);
                for _ in 0..40 {
                    m.set(x, y, true);
                    x = (x + rand() as usize % 3 + w - 1) % w;
                    y = (y + rand() as usize % 3 + h - 1) % h;
                }
            }
            let (_, want) = measure(&m);
            let got = measure_bits(&BitMask::from_mask(&m));
            assert_eq!(got, want, "case {case}: {w}x{h}");
            let par = measure_bits_with(&BitMask::from_mask(&m), 1 + case % 4, |_| true);
            assert_eq!(par, want, "case {case}: {w}x{h}, threads");
            // Dropping components by area keeps the others as they were.
            let big = measure_bits_with(&BitMask::from_mask(&m), 1 + case % 3, |a| a >= 5);
            let want_big: Vec<Object> = want.iter().filter(|o| o.area >= 5).cloned().collect();
            assert_eq!(big, want_big, "case {case}: {w}x{h}, kept by area");
        }
        assert!(measure_bits(&BitMask::new(0, 0)).is_empty());
        assert!(measure_bits(&BitMask::new(5, 5)).is_empty());
    }
}
