#!/bin/sh
# Regenerates this report from the repository root:
#   MOESIM=path/to/moesim sh reports/replacement-example/regenerate.sh
# Serves light.toml and heavy.toml with every re-placement variant (`moesim serve
# --compare-replacement`: never, periodic, triggered synchronously; periodic and triggered
# asynchronously), each into its folder, keeping per variant the report, the summary, the
# per-second table and the charts over time. Then the workload switch on real DeepSeek-V3
# loads, when the shared data is beside the repository (skipped with a notice otherwise).
set -e
MOESIM=${MOESIM:-target/release/moesim}
HERE=reports/replacement-example

# Drops what the comparison does not need from a comparison folder (the requests table, the
# web pages, the latency, queue and throughput charts, the SVG copies).
trim() {
    rm -f "$1"/*.svg
    for run in "$1"/*/; do
        (cd "$run" && rm -f requests.parquet index.html latency_* queue.* throughput.* ./*.svg)
    done
}

for case in light heavy; do
    "$MOESIM" serve "$HERE/$case.toml" --compare-replacement --out "$HERE/$case"
    trim "$HERE/$case"
done
