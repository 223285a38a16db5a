#!/usr/bin/env bash
# Executes the notebooks in notebooks/ headless, on outputs this build of moesim produces now,
# so that they never rot: a cell that fails fails the script (CI runs it after the regression
# gate). The notebooks' Python environment is a virtual environment made once from the pinned
# notebooks/requirements.txt and kept in .venv-notebooks/ (remade when the requirements change).
#
#   scripts/run_notebooks.sh
#
# MOESIM names the binary; default: target/debug/moesim, which `cargo test` builds.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/moesim_bin.sh
venv=.venv-notebooks
start=$(date +%s)
if ! cmp -s notebooks/requirements.txt "$venv/requirements.txt" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r notebooks/requirements.txt
  cp notebooks/requirements.txt "$venv/requirements.txt"
fi
installed=$(date +%s)

# The inputs: the quickstart's per-placement tables, a serving run and a served sweep.
out="$target/notebooks"
rm -rf "$out"
mkdir -p "$out"
"$moesim" simulate scenarios/quickstart.toml --parquet-dir "$out/sim" >/dev/null
"$moesim" serve notebooks/inputs/serve.toml --out "$out/serve" >/dev/null
"$moesim" sweep notebooks/inputs/sweep.toml -o "$out/sweep.parquet" >/dev/null
produced=$(date +%s)

export MOESIM_ROOT="$PWD"
export MOESIM_TRACE="$PWD/traces/quickstart.parquet"
export MOESIM_SIM_DIR="$PWD/$out/sim"
export MOESIM_REQUESTS="$PWD/$out/serve/requests.parquet"
export MOESIM_SWEEP="$PWD/$out/sweep.parquet"
for notebook in notebooks/*.ipynb; do
  if ! "$venv/bin/jupyter-execute" --timeout=300 "$notebook"; then
    echo "error: $notebook failed" >&2
    exit 1
  fi
done
echo "notebooks: environment in $((installed - start)) s, inputs in $((produced - installed)) s," \
  "executed in $(($(date +%s) - produced)) s"
