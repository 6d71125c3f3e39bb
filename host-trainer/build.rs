//! Links the trainer so that its binary finds libtorch by itself, and keeps
//! libtorch's CUDA library linked when CUDA is wanted.
//!
//! - An rpath to the `lib` folder of the libtorch it was built against
//!   (`LIBTORCH`, set by `cargo xtask` to `.venv-torch`'s torch): without it
//!   `target/release/nemascope-train` only starts with `LD_LIBRARY_PATH` set.
//!   `$ORIGIN` comes first, so a copy beside its libraries runs too.
//! - Rust links with `--as-needed` and nothing in tch names a symbol of
//!   `libtorch_cuda`, so the linker drops it and `tch::Cuda::is_available()`
//!   stays false even on a GPU machine. The CPU-only libtorch that
//!   scripts/setup.sh installs by default has `libtorch_cuda.so` without the
//!   CUDA libraries it loads, so it is linked only on request:
//!   `NEMASCOPE_TORCH_CUDA=1`, which `cargo xtask` sets when the full CUDA
//!   install (`NEMASCOPE_TORCH=full`) is in `.venv-torch`.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=NEMASCOPE_TORCH_CUDA");
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
    if let Some(libtorch) = std::env::var_os("LIBTORCH") {
        let lib = std::path::Path::new(&libtorch).join("lib");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
    if std::env::var("NEMASCOPE_TORCH_CUDA").as_deref() == Ok("1") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
