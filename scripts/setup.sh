#!/usr/bin/env bash
# Installs what nemascope needs on a fresh Debian machine. Idempotent: it
# only installs what is missing. Called by ./x before every task, with the
# task's name as $1.
set -euo pipefail

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
# The edge runtime's V4L2 camera feature generates its bindings with libclang.
compgen -G "/usr/lib/llvm-*/lib/libclang*.so*" >/dev/null || compgen -G "/usr/lib/*/libclang*.so*" >/dev/null || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    [ -f "$HOME/.cargo/env" ] || curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
    rustup target list --installed | grep -q aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
fi

# libtorch for the host trainer (tch 0.26 pins torch 2.13.0), from PyPI into
# a venv; cargo xtask points LIBTORCH and LD_LIBRARY_PATH at its torch/lib.
# By default only what libtorch's CPU path loads (the torch wheel, the CUDA
# runtime and CUPTI it links, ~1.2 GB, no pip cache): the full CUDA stack is
# ~4.7 GB plus a pip cache as large, which filled CI's disk.
# NEMASCOPE_TORCH=full installs everything (training on a GPU, and the
# Python reference that `bench-step` compares against).
# Tasks that build nothing of the trainer skip it.
case "${1:-}" in
    demo | cross-test | bench | parity | onnx-check) exit 0 ;;
    bench-step) NEMASCOPE_TORCH=full ;;
esac
pip=(.venv-torch/bin/pip install -q --no-cache-dir)
if ! ls .venv-torch/lib/python3*/site-packages/torch/lib/libtorch_cpu.so >/dev/null 2>&1; then
    echo "setup: installing libtorch (torch==2.13.0, CPU libraries) into .venv-torch" >&2
    python3 -m venv .venv-torch
    "${pip[@]}" --no-deps torch==2.13.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
fi
if [ "${NEMASCOPE_TORCH:-}" = full ] && ! .venv-torch/bin/python -c "import torch" >/dev/null 2>&1; then
    echo "setup: installing torch==2.13.0 with CUDA and its Python packages (~4.7 GB)" >&2
    "${pip[@]}" torch==2.13.0
fi
