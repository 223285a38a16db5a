#!/usr/bin/env bash
# Installs NVIDIA's CUDA 13.0 compiler from PyPI (no GPU needed) and prints the nvcc path, for
# MOESIM_NVCC. All four packages are pinned to 13.0: unpinned, pip pulls a newer NVVM whose PTX
# (ISA 9.5) the CUDA 13.0 drivers on the lent GPUs (580.x) cannot load.
set -euo pipefail
if ! python3 -m pip --version >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip >/dev/null
fi
python3 -m pip install --user --quiet --disable-pip-version-check --break-system-packages \
  "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*" \
  "nvidia-cuda-runtime==13.0.*" >&2 2>/dev/null \
  || python3 -m pip install --user --quiet --disable-pip-version-check \
  "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*" \
  "nvidia-cuda-runtime==13.0.*" >&2
site=$(python3 -c 'import site; print(site.getusersitepackages())')
nvcc="$site/nvidia/cu13/bin/nvcc"
"$nvcc" --version >/dev/null
echo "$nvcc"
