//! Runs ONNX models with tract on one fixed input and writes what the
//! reference script (`tests/reference/onnx_check.py`) compares against
//! onnxruntime: `<stem>.input.bin` and `<stem>.tract.bin` (raw f32, little
//! endian) beside each model, and one JSON line per model with tract's
//! median latency.
//!
//! `cargo run --release -p nemascope-onnx --example onnx_io -- [--write-test-models DIR] [--repeat N] MODEL.onnx...`
//!
//! `--write-test-models DIR` first writes `unet_fp32.onnx` and
//! `unet_int8.onnx` (seeded random weights, 64×96) into DIR and adds them.

use std::path::PathBuf;
use std::time::Instant;

use nemascope_onnx::export::{self, InputSize};
use nemascope_onnx::graph::encode;
use nemascope_onnx::run::calibrate;
use nemascope_onnx::{Runner, UNetWeights};

/// A smooth pattern with blobs, standardised to zero mean and unit std.
fn input(c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..c * h * w)
        .map(|i| {
            let (y, x) = (((i / w) % h) as f32, (i % w) as f32);
            (x * 0.05).sin() * (y * 0.07).cos()
                + ((x - w as f32 / 3.0).powi(2) + (y - h as f32 / 2.0).powi(2))
                    .sqrt()
                    .mul_add(-0.05, 1.0)
                    .max(0.0)
        })
        .collect();
    let n = v.len() as f32;
    let mean = v.iter().sum::<f32>() / n;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n)
        .sqrt()
        .max(1e-6);
    v.iter_mut().for_each(|x| *x = (*x - mean) / sd);
    v
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut models: Vec<PathBuf> = Vec::new();
    let mut repeat = 5usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--repeat" => repeat = args.next().ok_or("--repeat N")?.parse()?,
            "--write-test-models" => {
                let dir = PathBuf::from(args.next().ok_or("--write-test-models DIR")?);
                std::fs::create_dir_all(&dir)?;
                let size = InputSize {
                    height: 64,
                    width: 96,
                };
                let net = UNetWeights::random(1, 2, 4, 3, 42);
                let fp = dir.join("unet_fp32.onnx");
                std::fs::write(&fp, encode(&export::fp32(&net, size, false)?))?;
                let cal = calibrate(&net, size, &[input(1, 64, 96)])?;
                let q = dir.join("unet_int8.onnx");
                std::fs::write(&q, encode(&export::int8(&net, size, &cal)?))?;
                models.extend([fp, q]);
            }
            _ => models.push(PathBuf::from(a)),
        }
    }
    if models.is_empty() {
        return Err("no models given".into());
    }
    for m in models {
        let r = Runner::load(&std::fs::read(&m)?)?;
        let [_, c, h, w] = r.input_shape;
        let x = input(c, h, w);
        let y = r.maps(&x)?;
        let mut times = Vec::new();
        for _ in 0..repeat.max(1) {
            let t = Instant::now();
            r.maps(&x)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let stem = m.with_extension("");
        std::fs::write(stem.with_extension("input.bin"), bytes(&x))?;
        std::fs::write(stem.with_extension("tract.bin"), bytes(&y))?;
        println!(
            "{{\"model\": \"{}\", \"input\": [1, {c}, {h}, {w}], \"tract_ms\": {:.2}}}",
            m.display(),
            times[times.len() / 2]
        );
    }
    Ok(())
}
