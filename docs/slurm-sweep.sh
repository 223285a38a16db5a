#!/usr/bin/env bash
# A moesim sweep as a Slurm job array: array task i runs shard i of n (`--shard i/n`, the points
# whose index mod n is i) into its own slice table, and a dependent job merges the slices into
# exactly the table one unsharded run writes.
#
#   docs/slurm-sweep.sh sweep.toml results.parquet [SHARDS]       submit (default 8 shards)
#
# Inside Slurm the same script runs each step: with SLURM_ARRAY_TASK_ID set it runs that shard,
# with MOESIM_SWEEP_MERGE=1 it merges. Outside Slurm, set the variables yourself to run a step by
# hand (tests/it/sweep.rs runs every shard this way and checks the merge byte for byte):
#   SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_COUNT=8 docs/slurm-sweep.sh sweep.toml results.parquet
#   MOESIM_SWEEP_MERGE=1 SLURM_ARRAY_TASK_COUNT=8 docs/slurm-sweep.sh sweep.toml results.parquet
#
# MOESIM names the binary (default: moesim on PATH); slices go to <results>.slices/. Each task
# uses the CPUs Slurm gives it (rayon sizes its pool from them).
#SBATCH --job-name=moesim-sweep
#SBATCH --cpus-per-task=8
#SBATCH --time=02:00:00
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "error: usage: $0 SWEEP.toml RESULTS.parquet [SHARDS]" >&2
  exit 2
fi
spec=$1
results=$2
moesim=${MOESIM:-moesim}
slices="$results.slices"

# The slice table of shard `i`.
slice() { echo "$slices/part-$1.parquet"; }

if [ "${MOESIM_SWEEP_MERGE:-0}" = 1 ]; then
  count=${SLURM_ARRAY_TASK_COUNT:?the merge step needs SLURM_ARRAY_TASK_COUNT}
  parts=()
  for ((i = 0; i < count; i++)); do parts+=("$(slice "$i")"); done
  exec "$moesim" sweep merge -o "$results" "${parts[@]}"
fi

if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
  count=${SLURM_ARRAY_TASK_COUNT:?an array task needs SLURM_ARRAY_TASK_COUNT}
  mkdir -p "$slices"
  exec "$moesim" sweep "$spec" -o "$(slice "$SLURM_ARRAY_TASK_ID")" \
    --shard "$SLURM_ARRAY_TASK_ID/$count"
fi

# Not inside an array task: submit the array and the merge that waits for all of it.
shards=${3:-8}
array=$(sbatch --parsable --array="0-$((shards - 1))" --export=ALL "$0" "$spec" "$results")
sbatch --dependency="afterok:$array" --export=ALL,MOESIM_SWEEP_MERGE=1,SLURM_ARRAY_TASK_COUNT="$shards" \
  --cpus-per-task=1 "$0" "$spec" "$results"
echo "submitted array job $array ($shards shards) and its merge"
