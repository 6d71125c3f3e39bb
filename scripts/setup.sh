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
# a venv; cargo xtask points LIBTORCH_USE_PYTORCH and LD_LIBRARY_PATH at it.
# Tasks that build nothing of the trainer skip the ~4.7 GB download.
case "${1:-}" in
    demo | cross-test | bench | parity | onnx-check) exit 0 ;;
esac
if ! .venv-torch/bin/python -c "import torch" >/dev/null 2>&1; then
    echo "setup: installing torch==2.13.0 into .venv-torch (large download)" >&2
    python3 -m venv .venv-torch
    .venv-torch/bin/pip install -q torch==2.13.0
fi
