#!/usr/bin/env bash
# Run HERE (the development machine, which has cargo and crates.io), before scripts/gpu_run.sh on
# the lent GPU machine (which has neither): builds moesim and the GPU test binary with the gating
# kernel compiled to PTX, strips and gzips them into gpu-bin/ (git-ignored, under the device
# tool's 64 MiB carry limit). Then, from the device tool: run(carry=["gpu-bin"], command=
# "scripts/gpu_run.sh all").
set -euo pipefail
cd "$(dirname "$0")/.."
MOESIM_NVCC="$(scripts/install_nvcc.sh)"
export MOESIM_NVCC
target="${CARGO_TARGET_DIR:-target}"
cargo build --bin moesim
test_bin=$(cargo test --no-run --test capture_gpu 2>&1 | sed -n 's/.*Executable tests\/capture_gpu.rs (\(.*\))/\1/p')
[ -x "$test_bin" ] || { echo "gpu_build: capture_gpu test binary not found" >&2; exit 1; }
rm -rf gpu-bin && mkdir -p gpu-bin
cp "$target/debug/moesim" gpu-bin/moesim
cp "$test_bin" gpu-bin/capture_gpu
strip gpu-bin/moesim gpu-bin/capture_gpu
gzip -9 gpu-bin/moesim gpu-bin/capture_gpu
grep -q "moesim_gating_instrumented" <(gzip -dc gpu-bin/moesim.gz | strings) \
  || { echo "gpu_build: the PTX is not embedded in moesim" >&2; exit 1; }
du -sh gpu-bin/*
