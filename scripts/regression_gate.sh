#!/usr/bin/env bash
# The regression gate: runs the quickstart and the switch-base-128 replay (a real ExFlow trace,
# read from ../shared/data; skipped with a notice without it) with a built moesim and compares
# each summary.json with the committed baseline in reports/baseline/<scenario>/ under
# reports/baseline/thresholds.toml, printing the Markdown comparison. Exit 1 when a metric
# regressed past its threshold, 2 on bad input.
#
#   scripts/regression_gate.sh            compare (CI runs it after `cargo test`)
#   scripts/regression_gate.sh --update   rewrite the baseline from this build's runs
#
# MOESIM names the binary; default: target/debug/moesim, which `cargo test` builds.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/moesim_bin.sh
update=false
case "${1:-}" in
  "") ;;
  --update) update=true ;;
  *) echo "error: unknown argument \`$1\` (expected nothing or --update)" >&2; exit 2 ;;
esac
status=0
for scenario in quickstart switch-base-128-replay; do
  if [ "$scenario" != quickstart ] && [ ! -d ../shared/data ]; then
    echo "notice: ../shared/data not found; the regression gate skips $scenario" >&2
    continue
  fi
  start=$(date +%s%N)
  out="$target/regression/$scenario"
  "$moesim" run "scenarios/$scenario.toml" --out "$out" >/dev/null
  baseline="reports/baseline/$scenario"
  if $update; then
    mkdir -p "$baseline"
    cp "$out/summary.json" "$baseline/summary.json"
    echo "updated $baseline/summary.json"
    continue
  fi
  rc=0
  "$moesim" compare "$baseline" "$out" --thresholds reports/baseline/thresholds.toml || rc=$?
  [ "$rc" -gt "$status" ] && status=$rc
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf 'regression gate: %s run and compared in %d.%03d s\n\n' "$scenario" $((ms / 1000)) $((ms % 1000))
done
exit "$status"
