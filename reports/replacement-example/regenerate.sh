#!/bin/sh
# Regenerates this report from the repository root: serves scenario.toml with each re-placement
# policy (never, periodic, triggered, all synchronous; periodic asynchronous) into its own
# folder, keeping the report, the summary and the charts over time.
#   sh reports/replacement-example/regenerate.sh [path/to/moesim]
set -e
MOESIM=${1:-target/release/moesim}
HERE=reports/replacement-example
for run in never:sync periodic:sync triggered:sync periodic:async; do
    policy=${run%:*}
    mode=${run#*:}
    name=$policy
    [ "$mode" = async ] && name=$policy-async
    sed -e "s/^policy = .*/policy = \"$policy\"/" -e "s/^mode = .*/mode = \"$mode\"/" \
        "$HERE/scenario.toml" > "$HERE/$name.toml"
    rm -rf "$HERE/$name"
    "$MOESIM" serve "$HERE/$name.toml" --out "$HERE/$name"
    rm "$HERE/$name.toml"
    (cd "$HERE/$name" && rm -f requests.parquet index.html latency_* queue.* throughput.* ./*.svg)
done
