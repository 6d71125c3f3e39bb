//! The tasks behind `./x`, one function each, and the helpers they share.

use std::path::{Path, PathBuf};
use std::process::Command;

const AARCH64: &str = "aarch64-unknown-linux-gnu";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("+ {cmd:?}");
    let st = cmd
        .current_dir(root())
        .status()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({st})"))
    }
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// cargo, with libtorch from `.venv-torch` (made by scripts/setup.sh) when
/// it is there: tch builds against the `torch` package's libraries
/// (`LIBTORCH`, no Python import, so the CPU-only install works) and its
/// programs find `torch/lib` through `LD_LIBRARY_PATH`.
pub fn cargo() -> Command {
    with_torch(Command::new(cargo_bin()))
}

/// `cmd` with the libtorch environment described at [`cargo`].
fn with_torch(mut cmd: Command) -> Command {
    if let Some(torch) = torch_dir() {
        let ld = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
        // The full install has the CUDA libraries beside torch (host-trainer/build.rs).
        let cuda = torch.join("../nvidia/cudnn/lib").exists();
        cmd.env("LIBTORCH", &torch)
            .env("NEMASCOPE_TORCH_CUDA", if cuda { "1" } else { "0" })
            .env("LIBTORCH_CXX11_ABI", "1")
            .env_remove("LIBTORCH_USE_PYTORCH")
            .env(
                "LD_LIBRARY_PATH",
                format!("{}:{ld}", torch.join("lib").display()),
            );
    }
    cmd
}

/// The `torch` package inside `.venv-torch`, if its libtorch is there.
pub fn torch_dir() -> Option<PathBuf> {
    let lib = root().join(".venv-torch/lib");
    std::fs::read_dir(lib)
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages/torch"))
        .find(|t| t.join("lib/libtorch_cpu.so").exists())
}

fn have(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A Python venv with the reference packages, made on first use.
pub fn venv() -> Result<PathBuf, String> {
    let dir = root().join(".venv");
    let py = dir.join("bin/python");
    if !py.exists() {
        // Debian's python3 (scripts/setup.sh installs it), not whichever
        // python3 is first on PATH.
        let python = if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        run(Command::new(python).args(["-m", "venv"]).arg(&dir))?;
    }
    let ok = Command::new(&py)
        .args(["-c", "import skimage, tifffile, PIL"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        run(Command::new(&py).args([
            "-m",
            "pip",
            "install",
            "-q",
            "scikit-image==0.26.0",
            "tifffile",
            "pillow",
        ]))?;
    }
    Ok(py)
}

/// The reference venv with `packages` installed unless `check` (Python)
/// already runs.
fn venv_with(check: &str, packages: &[&str]) -> Result<PathBuf, String> {
    let py = venv()?;
    let ok = Command::new(&py)
        .args(["-c", check])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        run(Command::new(&py)
            .args(["-m", "pip", "install", "-q"])
            .args(packages))?;
    }
    Ok(py)
}

/// The reference venv with the ONNX checker and onnxruntime added.
fn onnx_venv() -> Result<PathBuf, String> {
    venv_with("import onnx, onnxruntime", &["onnx", "onnxruntime"])
}

/// The reference venv with OpenCV's contrib modules added (`ximgproc`,
/// the graph segmentation the Felzenszwalb bench compares with).
fn bench_venv() -> Result<PathBuf, String> {
    venv_with(
        "import cv2; cv2.ximgproc.segmentation",
        &["opencv-contrib-python-headless"],
    )
}

/// `onnx-check [MODEL.onnx...]`: seeded test models plus the given ones,
/// run by tract on core 0 (`onnx_io`), then checked and timed with
/// onnxruntime on the same core.
pub fn onnx_check(models: &[String]) -> Result<(), String> {
    let py = onnx_venv()?;
    let dir = root().join("out/onnx-check");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "nemascope-onnx",
        "--example",
        "onnx_io",
    ]))?;
    let mut files = vec![
        dir.join("unet_fp32.onnx").display().to_string(),
        dir.join("unet_int8.onnx").display().to_string(),
    ];
    // Given models are copied next to the test models: onnx_io writes its
    // input/output files beside each model and a bundle stays untouched.
    for (i, m) in models.iter().enumerate() {
        let name = Path::new(m)
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("model{i}"));
        let dst = dir.join(format!("{name}.onnx"));
        std::fs::copy(m, &dst).map_err(|e| format!("{m}: {e}"))?;
        files.push(dst.display().to_string());
    }
    let out = Command::new("taskset")
        .args(["-c", "0"])
        .arg(root().join("target/release/examples/onnx_io"))
        .args(["--repeat", "7", "--write-test-models"])
        .arg(&dir)
        .args(&files[2..])
        .current_dir(root())
        .output()
        .map_err(|e| format!("onnx_io: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "onnx_io failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let json = dir.join("tract.jsonl");
    std::fs::write(&json, &out.stdout).map_err(|e| format!("{}: {e}", json.display()))?;
    run(Command::new("taskset")
        .args(["-c", "0"])
        .arg(&py)
        .arg("tests/reference/onnx_check.py")
        .arg("--tract-json")
        .arg(&json)
        .args(&files))
}

/// A shipped bundle made from a training config: the teacher trained from
/// `config`, its distilled student (base 4, depth 4, 2 000 steps: the
/// defaults; dense), exported fp32 (tract runs int8 far slower,
/// docs/models.md) with thresholds and verifiers from the labels, or the
/// teacher instead if the student lost a class (`export --teacher`).
struct Distilled {
    config: &'static str,
    teacher: &'static str,
    student: &'static str,
    bundle: &'static str,
    name: &'static str,
}

const DISTILLED: [Distilled; 2] = [
    // dense: the separable student of the same teacher scored 0.857
    // against 0.871 (docs/models.md)
    Distilled {
        config: "host-trainer/configs/bbbc010-2x.toml",
        teacher: "out/train-bbbc010",
        student: "out/student-bbbc010",
        bundle: "models/bbbc010-worm",
        name: "bbbc010-worm-student",
    },
    Distilled {
        config: "host-trainer/configs/synth-weak-2x.toml",
        teacher: "out/synth-hard-2x",
        student: "out/student-hard-2x",
        bundle: "models/synth-worm-egg-cyst",
        name: "synth-worm-egg-cyst",
    },
];

/// The NemaQuant egg bundle's recipe (docs/labelling.md, "Cells"): the
/// teacher itself, trained from the project's tile labels at 256 px with
/// their 128 px cells, at 4 µm a pixel, the default seed (7).
const EGG_LABELS: [&str; 2] = [
    "docs/labelling/nemaquant-egg",
    "docs/labelling/nemaquant-egg-128",
];
const EGG_RUN: &str = "out/labelled-nemaquant-egg";
const EGG_BUNDLE: &str = "models/nemaquant-egg";
const EGG_SETTINGS: [&str; 7] = [
    "data.bin=2",
    "data.um_per_px=2.0",
    "data.object_um=40",
    "train.rounds=2",
    "train.classify_epochs=8",
    "train.refine_epochs=6",
    "train.threads=1",
];

/// `bundles --key KEY`: rebuilds the three shipped bundles into `models/`,
/// each only if its folder is absent: the BBBC010 worm and the synthetic
/// worm/egg/cyst students ([`DISTILLED`]) and the NemaQuant egg teacher
/// ([`EGG_SETTINGS`]; its tiles are written from `../shared/data/nemaquant`
/// first if absent). Finished runs under `out/` are kept.
pub fn bundles(args: &[String]) -> Result<(), String> {
    let key = match args {
        [flag, key] if flag == "--key" => key.clone(),
        _ => return Err("usage: cargo xtask bundles --key SIGNING.key (make one with `cargo xtask train keygen --out keys/lab`)".into()),
    };
    torch_dir().ok_or("libtorch not found in .venv-torch: run scripts/setup.sh")?;
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "nemascope-train",
        "-p",
        "nemascope-label",
    ]))?;
    let train = |a: &[&str]| {
        run(with_torch(Command::new(root().join("target/release/nemascope-train"))).args(a))
    };
    let done = |dir: &str| root().join(dir).join("state.json").exists();
    let kept = |bundle: &str| {
        let there = root().join(bundle).exists();
        if there {
            eprintln!("{bundle} exists: kept");
        }
        there
    };
    for d in &DISTILLED {
        if kept(d.bundle) {
            continue;
        }
        // A training run writes state.json at its first epoch, so a folder
        // that holds one may be unfinished: resume it (a finished run only
        // redraws its report). `distill` writes state.json once, when done.
        if done(d.teacher) {
            train(&["train", "--resume", "--out", d.teacher])?;
        } else {
            train(&["train", "--out", d.teacher, "--config", d.config])?;
        }
        if !done(d.student) {
            train(&["distill", "--run", d.teacher, "--out", d.student])?;
        }
        train(&[
            "export",
            "--run",
            d.student,
            "--key",
            &key,
            "--out",
            d.bundle,
            "--precision",
            "fp32",
            "--name",
            d.name,
            "--teacher",
            d.teacher,
        ])?;
    }
    if kept(EGG_BUNDLE) {
        return Ok(());
    }
    for labels in EGG_LABELS {
        if !root().join(labels).join("tiles").exists() {
            run(
                Command::new(root().join("target/release/nemascope-label")).args([
                    "../shared/data/nemaquant",
                    "--out",
                    labels,
                    "--write-only",
                ]),
            )?;
        }
    }
    // `labelled` resumes an unfinished run and refuses a finished one (it
    // holds a bundle): that bundle is the one to copy.
    let built = root().join(EGG_RUN).join("bundle");
    if !built.exists() {
        let mut a = vec![
            "labelled",
            EGG_LABELS[0],
            "--cells",
            EGG_LABELS[1],
            "--key",
            &key,
            "--out",
            EGG_RUN,
            "--steps",
            "1000",
            "--ship-teacher",
        ];
        for s in EGG_SETTINGS {
            a.extend(["--set", s]);
        }
        train(&a)?;
    }
    copy_dir(&built, &root().join(EGG_BUNDLE))
}

/// Copies the files of folder `from` into a new folder `to`.
fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for e in entries {
        let e = e.map_err(|e| format!("{}: {e}", from.display()))?;
        std::fs::copy(e.path(), to.join(e.file_name()))
            .map_err(|err| format!("{}: {err}", e.path().display()))?;
    }
    Ok(())
}

/// The release `nemascope-data` the reference script drives.
fn build_data_cli() -> Result<(), String> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "nemascope-core",
        "--features",
        "cli",
    ]))
}

/// What goes onto a board: `nemascope-edge` built for `target` (default
/// aarch64) in release, its debug info (line tables) moved into
/// `nemascope-edge.debug` beside it for symbolising crash reports, and the
/// binary stripped with a GNU debuglink to that file, in
/// `target/<target>/dist/`. `features` are passed on (e.g. `st7789`).
pub fn dist(args: &[String]) -> Result<(), String> {
    let mut target = AARCH64.to_string();
    let mut features = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--target" => target = it.next().ok_or("--target needs a value")?.clone(),
            "--features" => features.push(it.next().ok_or("--features needs a value")?.clone()),
            other => return Err(format!("dist: unknown argument `{other}`")),
        }
    }
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "nemascope-edge",
        "--target",
        &target,
    ]);
    for f in &features {
        build.args(["--features", f]);
    }
    run(&mut build)?;
    // binutils for the target: `aarch64-linux-gnu-objcopy`, or the host's.
    let prefix = match target.as_str() {
        AARCH64 => "aarch64-linux-gnu-",
        _ => "",
    };
    let tool = |t: &str| format!("{prefix}{t}");
    let built = root()
        .join("target")
        .join(&target)
        .join("release/nemascope-edge");
    let dir = root().join("target").join(&target).join("dist");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (bin, debug) = (dir.join("nemascope-edge"), dir.join("nemascope-edge.debug"));
    run(Command::new(tool("objcopy"))
        .arg("--only-keep-debug")
        .arg(&built)
        .arg(&debug))?;
    run(Command::new(tool("objcopy"))
        .args(["--strip-all", "--add-gnu-debuglink"])
        .arg(&debug)
        .arg(&built)
        .arg(&bin))?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    println!(
        "{}: {:.1} MB (debug info beside it: {}, {:.1} MB; as built {:.1} MB)",
        bin.display(),
        size(&bin),
        debug.display(),
        size(&debug),
        size(&built)
    );
    Ok(())
}

pub fn cross_test() -> Result<(), String> {
    for bin in ["aarch64-linux-gnu-gcc", "qemu-aarch64"] {
        if !have(bin) {
            return Err(format!("{bin} not found: run scripts/setup.sh (Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)"));
        }
    }
    run(Command::new("rustup").args(["target", "add", AARCH64]))?;
    // Linker and qemu runner come from .cargo/config.toml. Doc-tests are not
    // run for a cross target, so `--tests` leaves them out explicitly. The
    // edge crate's tests start its own binary, and the journal kill test
    // its own test binary again: without binfmt that needs the emulator
    // named, hence NEMASCOPE_TEST_RUNNER.
    run(cargo()
        .env(
            "NEMASCOPE_TEST_RUNNER",
            "qemu-aarch64 -L /usr/aarch64-linux-gnu",
        )
        .args([
            "test",
            "-p",
            "nemascope-core",
            "-p",
            "nemascope-onnx",
            "-p",
            "nemascope-count",
            "-p",
            "nemascope-edge",
            "--target",
            AARCH64,
            "--tests",
        ]))
}

/// The main job on its built-in default.
pub fn demo(args: &[String]) -> Result<(), String> {
    run(cargo()
        .args(["run", "--release", "-p", "nemascope-edge", "--", "demo"])
        .args(args))
}

/// Everything CI checks: fmt, clippy, the workspace's tests, then the
/// aarch64 tests under qemu.
pub fn test() -> Result<(), String> {
    torch_dir()
        .ok_or_else(|| {
            "libtorch not found in .venv-torch: run scripts/setup.sh (or ./x test)".to_string()
        })
        .and_then(|_| run(cargo().args(["fmt", "--all", "--check"])))
        .and_then(|_| {
            run(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ]))
        })
        .and_then(|_| run(cargo().args(["test", "--workspace", "--all-features"])))
        .and_then(|_| cross_test())
}

/// The host trainer, release build; no arguments: the default weak run.
pub fn train(args: &[String]) -> Result<(), String> {
    torch_dir()
        .ok_or_else(|| "libtorch not found in .venv-torch: run ./x train".to_string())
        .and_then(|_| {
            let rest: Vec<&str> = if !args.is_empty() {
                args.iter().map(String::as_str).collect()
            } else {
                vec!["train", "--out", "out/train-bbbc010"]
            };
            run(cargo()
                .args(["run", "--release", "-p", "nemascope-train", "--"])
                .args(rest))
        })
}

/// Seconds per training step, Rust/tch against PyTorch.
pub fn bench_step() -> Result<(), String> {
    torch_dir()
        .ok_or_else(|| "libtorch not found in .venv-torch: run ./x bench-step".to_string())
        .and_then(|_| {
            run(cargo().args(["build", "--release", "-p", "nemascope-train"]))?;
            for _ in 0..2 {
                run(cargo()
                    .args(["run", "--release", "-q", "-p", "nemascope-train", "--"])
                    .args(["bench-step", "--steps", "20"]))?;
                run(Command::new(root().join(".venv-torch/bin/python")).args([
                    "tests/reference/unet_step.py",
                    "--steps",
                    "20",
                ]))?;
            }
            Ok(())
        })
}

/// Felzenszwalb against scikit-image and OpenCV, the criterion benches, the
/// unit's frames ([`edge_bench`]) and tract against onnxruntime
/// (docs/edge.md, "Speed").
pub fn bench() -> Result<(), String> {
    bench_venv().and_then(|py| {
        build_data_cli()?;
        run(Command::new("taskset")
            .args(["-c", "0"])
            .arg(&py)
            .args(["tests/reference/superpixels.py", "bench"]))?;
        run(Command::new("taskset")
            .args(["-c", "0"])
            .arg(cargo_bin())
            .args(["bench", "-p", "nemascope-core", "--bench", "superpixels"]))
    })?;
    edge_bench()?;
    // Model only: tract against onnxruntime on the shipped files.
    onnx_check(&[
        "models/bbbc010-worm/model.onnx".into(),
        "models/synth-worm-egg-cyst/model.onnx".into(),
    ])
}

/// The unit's decode → counts for each shipped bundle: a BBBC010 well and
/// a 512×384 synthetic frame on one core, and the paper's 4112×3008 camera
/// frame on one core and on two (docs/edge.md).
fn edge_bench() -> Result<(), String> {
    run(cargo().args(["build", "--release", "-p", "nemascope-edge"]))?;
    let bin = root().join("target/release/nemascope-edge");
    let well = root().join("../shared/data/bbbc010/images/A01.tif");
    let well = well.display().to_string();
    let camera = ["--size", "4112x3008", "--tile", "352x256", "--runs", "3"];
    // (frame arguments, threads); threads run on as many pinned cores.
    let mut rows: Vec<(&[&str], usize)> = Vec::new();
    let well_args = ["--image", well.as_str()];
    if Path::new(&well).exists() {
        rows.push((&well_args, 1));
    }
    rows.extend([(&["--size", "512x384"][..], 1), (&camera, 1), (&camera, 2)]);
    for bundle in ["models/bbbc010-worm", "models/synth-worm-egg-cyst"] {
        for (frame, threads) in &rows {
            run(Command::new("taskset")
                .args(["-c", &format!("0-{}", threads - 1)])
                .arg(&bin)
                .arg("bench")
                .args([
                    "--model",
                    bundle,
                    "--public-key",
                    "models/nemascope-dev.pub",
                ])
                .args(*frame)
                .args(["--threads", &threads.to_string()])
                .current_dir(root()))?;
        }
    }
    Ok(())
}

/// nemascope against scikit-image's Felzenszwalb on every BBBC010 well.
pub fn parity(args: &[String]) -> Result<(), String> {
    venv().and_then(|py| {
        build_data_cli()?;
        run(Command::new(&py)
            .args(["tests/reference/superpixels.py", "parity"])
            .args(args))
    })
}
