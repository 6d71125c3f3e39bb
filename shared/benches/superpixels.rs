//! Superpixel, voting and component timings on one thread.
//! `cargo bench -p nemascope-core --bench superpixels`; the side-by-side
//! with scikit-image is `cargo xtask bench` (docs/superpixels.md).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use nemascope_core::classical::FlatField;
use nemascope_core::dataset::bbbc010;
use nemascope_core::felzenszwalb::{segment, Params};
use nemascope_core::imageio::{load_plane, resize_bilinear, stretch};
use nemascope_core::objects::{basic_stats, label_components, measure};
use nemascope_core::synth::{generate, SynthConfig};
use nemascope_core::voting::vote;

fn bench(c: &mut Criterion) {
    let params = Params::default();
    let image = bbbc010::default_root().join("images/A01.tif");
    match load_plane(&image) {
        Ok(raw) => {
            let full = stretch(&raw, 0.005, 0.995);
            let small = resize_bilinear(&full, 512, 384).unwrap();
            c.bench_function("felzenszwalb bbbc010 A01 384x512", |b| {
                b.iter(|| segment(black_box(&small), &params).unwrap())
            });
            c.bench_function("felzenszwalb bbbc010 A01 520x696", |b| {
                b.iter(|| segment(black_box(&full), &params).unwrap())
            });
        }
        Err(e) => eprintln!("skipping BBBC010 benches: {e}"),
    }

    let frame = generate(&SynthConfig::default(), 1, 0).unwrap();
    let seg = segment(&frame.image, &params).unwrap();
    let mask = FlatField::default().segment(&frame.image).unwrap();
    c.bench_function("felzenszwalb synthetic 384x512", |b| {
        b.iter(|| segment(black_box(&frame.image), &params).unwrap())
    });
    c.bench_function("vote 384x512", |b| {
        b.iter(|| vote(black_box(&seg), black_box(&mask), 0.2).unwrap())
    });
    c.bench_function("components+stats 384x512", |b| {
        b.iter(|| basic_stats(&label_components(black_box(&mask))))
    });
    c.bench_function("vote+components+stats 384x512", |b| {
        b.iter(|| {
            let v = vote(black_box(&seg), black_box(&mask), 0.2).unwrap();
            basic_stats(&label_components(&v))
        })
    });
    c.bench_function("measure (with skeletons) 384x512", |b| {
        b.iter(|| measure(black_box(&mask)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
