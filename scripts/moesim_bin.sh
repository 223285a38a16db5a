# Sourced by the scripts that run a built moesim (regression_gate.sh, run_notebooks.sh): sets
# `target` (CARGO_TARGET_DIR or target) and `moesim` (MOESIM, default $target/debug/moesim,
# which `cargo test` builds), and exits 2 when that binary is missing.
target="${CARGO_TARGET_DIR:-target}"
moesim="${MOESIM:-$target/debug/moesim}"
if [ ! -x "$moesim" ]; then
  echo "error: $moesim not found: run \`cargo test\` first, or set MOESIM to a moesim binary" >&2
  exit 2
fi
