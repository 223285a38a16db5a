#!/usr/bin/env bash
# The capture path on real transformers code, without a GPU (issue 22). One command:
#
#   scripts/cpu_capture.sh [all|venv|check|train]     (default: all)
#
#   venv   a virtual environment with pinned torch + transformers (torch's CPU index first, PyPI
#          if that index is unreachable); prints the download size and time. Reused when it
#          already has the pinned versions.
#   check  step 1: tiny Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeek-V3 (and DeepSeek-V2
#          greedy) models from transformers' own classes, one forward with the patch on, routed
#          by the kernel's CPU twin; prints the table `python -m moesim_capture.check` makes and
#          fails unless every router matches.
#   train  step 2: trains a small OLMoE-style byte-level LM on the CPU for TRAIN_SECONDS on the
#          machine's Python sources and docs, captures its held-out routing with
#          `moesim capture --cpu --layers-from-dir`, writes traces/$NAME.{parquet,capture.json,
#          config.json,train_summary.json,provenance.md} and prints `moesim trace stats`.
#
# Environment: MOESIM (the binary; default $CARGO_TARGET_DIR or target, release then debug),
# MOESIM_CAPTURE_VENV (default ~/.cache/moesim-capture/venv), MOESIM_CAPTURE_DOWNLOADS
# (default ~/.cache/moesim-capture/downloads), MOESIM_CAPTURE_WORK (default
# ~/.cache/moesim-capture/work), TRAIN_SECONDS (720), THREADS (2), NAME (cpu-olmoe-small).
# Everything heavy runs under `nice -n 19`. Nothing is written into the repository except the
# trace files of `train`.
set -euo pipefail

TORCH_VERSION=2.15.0
TRANSFORMERS_VERSION=5.25.0
NUMPY_VERSION=2.4.6

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/moesim-capture"
venv="${MOESIM_CAPTURE_VENV:-$cache/venv}"
downloads="${MOESIM_CAPTURE_DOWNLOADS:-$cache/downloads}"
work="${MOESIM_CAPTURE_WORK:-$cache/work}"
name="${NAME:-cpu-olmoe-small}"
threads="${THREADS:-2}"
train_seconds="${TRAIN_SECONDS:-720}"
stage="${1:-all}"
py="$venv/bin/python"

find_moesim() {
  if [ -n "${MOESIM:-}" ]; then echo "$MOESIM"; return; fi
  local target="${CARGO_TARGET_DIR:-$root/target}"
  for profile in release debug; do
    if [ -x "$target/$profile/moesim" ]; then echo "$target/$profile/moesim"; return; fi
  done
  echo "error: no moesim binary: set MOESIM or build it (cargo test --release builds" \
    "target/release/moesim)" >&2
  exit 1
}

venv_ready() {
  [ -x "$py" ] && "$py" - "$TORCH_VERSION" "$TRANSFORMERS_VERSION" <<'EOF' 2>/dev/null
import sys, torch, transformers
sys.exit(0 if torch.__version__.split("+")[0] == sys.argv[1]
         and transformers.__version__ == sys.argv[2] else 1)
EOF
}

make_venv() {
  if venv_ready; then
    echo "venv $venv: torch $TORCH_VERSION, transformers $TRANSFORMERS_VERSION (already there)"
    return
  fi
  mkdir -p "$downloads"
  nice -n 19 python3 -m venv "$venv"
  local start=$SECONDS before after source
  before=$(du -sb "$downloads" | cut -f1)
  # torch's CPU-only wheels (~200 MB) first; PyPI's Linux torch pulls the CUDA runtime wheels
  # (~2.8 GB in all), which import fine on a CPU-only machine.
  if nice -n 19 "$venv/bin/pip" download --timeout 15 --retries 0 -d "$downloads" \
      --index-url https://download.pytorch.org/whl/cpu "torch==$TORCH_VERSION+cpu" >/dev/null 2>&1; then
    source="https://download.pytorch.org/whl/cpu (CPU-only build)"
    torch_req="torch==$TORCH_VERSION+cpu"
  else
    echo "download.pytorch.org unreachable: torch from PyPI (with its CUDA runtime wheels)"
    nice -n 19 "$venv/bin/pip" download -d "$downloads" "torch==$TORCH_VERSION" >/dev/null
    source="PyPI"
    torch_req="torch==$TORCH_VERSION"
  fi
  nice -n 19 "$venv/bin/pip" download -d "$downloads" "transformers==$TRANSFORMERS_VERSION" \
    "numpy==$NUMPY_VERSION" >/dev/null
  after=$(du -sb "$downloads" | cut -f1)
  echo "downloaded $(( (after - before) / 1000000 )) MB in $(( SECONDS - start )) s" \
    "(torch from $source)"
  start=$SECONDS
  nice -n 19 "$venv/bin/pip" install -q --no-index --find-links "$downloads" "$torch_req" \
    "transformers==$TRANSFORMERS_VERSION" "numpy==$NUMPY_VERSION"
  echo "installed into $venv in $(( SECONDS - start )) s"
}

check() {
  local moesim
  moesim="$(find_moesim)"
  mkdir -p "$work"
  (cd "$root/python" && nice -n 19 "$py" -m moesim_capture.check --moesim "$moesim" \
    --json "$work/check.json") 2>&1 | grep -v -i "warning" | tee "$work/check.md"
  grep -q "^ALL MATCH" "$work/check.md"
}

train() {
  local moesim run
  moesim="$(find_moesim)"
  run="$work/train"
  rm -rf "$run"
  mkdir -p "$run"
  echo "training for $train_seconds s on $threads threads (log: $run/log.txt)"
  MOESIM="$moesim" nice -n 19 "$py" "$root/scripts/train_small_moe.py" --work "$run" \
    --device cpu --threads "$threads" --seconds "$train_seconds" --layers 4 --experts 16 \
    --top-k 4 --hidden 64 --seq 128 --batch 16 --corpus-mb 16 --capture-tokens 4096 \
    --warmup 20 --lr 3e-3 2>&1 | grep -v -i "warning" | tee "$run/log.txt"
  cd "$root"
  # OLMoE as trained: softmax top-4 of 16, norm_topk_prob = false.
  nice -n 19 "$moesim" capture --cpu --layers-from-dir "$run/logits" --top-k 4 \
    --scoring softmax --no-renormalize -o "traces/$name.parquet"
  nice -n 19 "$moesim" trace validate "traces/$name.parquet" --num-experts 16
  "$py" "$root/scripts/cpu_capture_provenance.py" "$run" "traces/$name"
  nice -n 19 "$moesim" trace stats "traces/$name.parquet"
}

case "$stage" in
  venv) make_venv ;;
  check) make_venv; check ;;
  train) make_venv; train ;;
  all) make_venv; check; train ;;
  *) echo "usage: $0 [all|venv|check|train]" >&2; exit 2 ;;
esac
