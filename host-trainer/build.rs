//! Keeps libtorch's CUDA library linked when CUDA is wanted.
//!
//! Rust links with `--as-needed` and nothing in tch names a symbol of
//! `libtorch_cuda`, so the linker drops it and `tch::Cuda::is_available()`
//! stays false even on a GPU machine. The CPU-only libtorch that
//! scripts/setup.sh installs by default has `libtorch_cuda.so` without the
//! CUDA libraries it loads, so it is linked only on request:
//! `NEMASCOPE_TORCH_CUDA=1`, which `cargo xtask` sets when the full CUDA
//! install (`NEMASCOPE_TORCH=full`) is in `.venv-torch`.

fn main() {
    println!("cargo:rerun-if-env-changed=NEMASCOPE_TORCH_CUDA");
    if std::env::var("NEMASCOPE_TORCH_CUDA").as_deref() == Ok("1") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
