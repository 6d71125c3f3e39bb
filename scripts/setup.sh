#!/usr/bin/env bash
# Installs what nemascope needs on a fresh Debian machine, or checks it.
#
#   scripts/setup.sh [TASK]          install what TASK needs and is missing
#   scripts/setup.sh --check [TASK]  install nothing; list what TASK needs
#                                    and is missing, exit 1 if anything is
#
# ./x runs both before every task (install, then check), so CI fails on a
# missing install step instead of passing on whatever its machine has.
#
# Debian packages are judged by what dpkg says is installed, never by
# guessing from file names: `libclang-cpp14` once satisfied a guess at
# libclang while bindgen needs `libclang-dev`, and CI stayed green only
# because the development machines had it.
set -euo pipefail

check=0
if [ "${1:-}" = --check ]; then
    check=1
    shift
fi
task="${1:-}"

# What each Debian package is for (the README lists the same).
#   build-essential         C toolchain: linking, the tch and v4l2 build scripts
#   curl ca-certificates    fetching rustup when Rust is missing
#   git                     the checkout itself, and the trainer's run records
#   gcc-aarch64-linux-gnu   linker for the aarch64 edge build
#   libc6-dev-arm64-cross   the aarch64 C library to link and run against
#   qemu-user               runs the aarch64 tests on this machine
#   python3 python3-venv    the venvs for libtorch and the reference scripts
#   libclang-dev            bindgen (the edge's V4L2 camera feature, built by clippy/test --all-features)
#   util-linux              taskset, for the pinned one-core benchmarks
#   chromium-headless-shell the browser the labelling page's tests drive (label/tests/browser.rs)
base=(build-essential curl ca-certificates git)
case "$task" in
    demo) pkgs=("${base[@]}") ;;
    train | bundles) pkgs=("${base[@]}" python3 python3-venv) ;;
    bench | parity | onnx-check | bench-step) pkgs=("${base[@]}" python3 python3-venv util-linux) ;;
    cross-test) pkgs=("${base[@]}" gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user) ;;
    *) pkgs=("${base[@]}" gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user python3 python3-venv libclang-dev util-linux chromium-headless-shell) ;;
esac
# libtorch (.venv-torch) for the tasks that build the trainer.
case "$task" in
    demo | cross-test | bench | parity | onnx-check) torch=0 ;;
    *) torch=1 ;;
esac
[ "$task" = bench-step ] && NEMASCOPE_TORCH=full

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}
missing_pkgs() {
    local p
    for p in "${pkgs[@]}"; do installed "$p" || echo "$p"; done
}
have_torch() {
    compgen -G ".venv-torch/lib/python3*/site-packages/torch/lib/libtorch_cpu.so" >/dev/null
}

if [ "$check" = 1 ]; then
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    bad=()
    while read -r p; do [ -n "$p" ] && bad+=("Debian package $p (apt-get install $p)"); done < <(missing_pkgs)
    for t in cargo rustc rustup; do command -v "$t" >/dev/null 2>&1 || bad+=("$t (rustup.rs)"); done
    if command -v rustup >/dev/null 2>&1; then
        for c in clippy rustfmt; do
            rustup component list --installed 2>/dev/null | grep -q "^$c" || bad+=("rustup component $c")
        done
        if [ "$task" != demo ] && [ "$task" != train ] && [ "$task" != bundles ]; then
            rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || bad+=("rustup target aarch64-unknown-linux-gnu")
        fi
    fi
    [ "$torch" = 0 ] || have_torch || bad+=("libtorch in .venv-torch (torch==2.13.0)")
    if [ ${#bad[@]} -gt 0 ]; then
        echo "setup --check: missing for '${task:-test}':" >&2
        printf '  %s\n' "${bad[@]}" >&2
        echo "run scripts/setup.sh ${task} (./x does) to install them" >&2
        exit 1
    fi
    echo "setup --check: everything '${task:-test}' needs is installed" >&2
    exit 0
fi

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
mapfile -t need < <(missing_pkgs)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    [ -f "$HOME/.cargo/env" ] || curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if command -v rustup >/dev/null 2>&1; then
    for c in clippy rustfmt; do
        rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
    done
    rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
fi

# libtorch for the host trainer (tch 0.26 pins torch 2.13.0), from PyPI into
# a venv made with Debian's python3 (the package above, not whatever python3
# is first on PATH); tch builds against it through LIBTORCH and the trainer
# finds it through an rpath (host-trainer/build.rs).
# By default only what libtorch's CPU path loads (the torch wheel, the CUDA
# runtime and CUPTI it links, ~1.2 GB, no pip cache): the full CUDA stack is
# ~4.7 GB plus a pip cache as large, which filled CI's disk.
# NEMASCOPE_TORCH=full installs everything (training on a GPU, and the
# Python reference that `bench-step` compares against).
[ "$torch" = 1 ] || exit 0
pip=(.venv-torch/bin/pip install -q --no-cache-dir)
if ! have_torch; then
    echo "setup: installing libtorch (torch==2.13.0, CPU libraries) into .venv-torch" >&2
    rm -rf .venv-torch
    /usr/bin/python3 -m venv .venv-torch
    "${pip[@]}" --no-deps torch==2.13.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
fi
if [ "${NEMASCOPE_TORCH:-}" = full ] && ! .venv-torch/bin/python -c "import torch" >/dev/null 2>&1; then
    echo "setup: installing torch==2.13.0 with CUDA and its Python packages (~4.7 GB)" >&2
    "${pip[@]}" torch==2.13.0
fi
