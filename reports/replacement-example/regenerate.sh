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

# The workload switch: DeepSeek-V3 routing fitted to SGLang's recorded expert loads of two
# workloads (third-party data beside the repository, never copied into it), two of the 58 MoE
# layers, 1.5M synthetic tokens each, joined. Everything derived from the data stays under
# target/ (ignored by git).
DATA=${MOESIM_SHARED_DATA:-../shared/data}/deepseek-v3-expert-load
WORK=target/replacement-switch
if [ ! -d "$DATA" ]; then
    echo "notice: $DATA is absent: the workload-switch case (switch/) is not regenerated"
    exit 0
fi
mkdir -p "$WORK"
seed=1
parts=""
for workload in prefill_in500out1500 prefill_in4096; do
    # MoE layers 14 and 43 (0-based; decoder layers 17 and 46, after DeepSeek-V3's 3 dense).
    python3 -c 'import json, sys
rows = json.load(open(sys.argv[1]))["logical_count"]
json.dump({"logical_count": [rows[17], rows[46]]}, open(sys.argv[2], "w"))' \
        "$DATA/$workload.json" "$WORK/$workload.json"
    "$MOESIM" trace fit "$WORK/$workload.json" --model deepseek-v3 -o "$WORK/$workload.toml"
    "$MOESIM" trace synth --params "$WORK/$workload.toml" --tokens 1500000 --seed $seed \
        -o "$WORK/$workload.parquet"
    parts="$parts $WORK/$workload.parquet"
    seed=$((seed + 1))
done
# shellcheck disable=SC2086
"$MOESIM" trace concat $parts -o "$WORK/switch.parquet"
"$MOESIM" serve "$HERE/switch.toml" --compare-replacement --out "$HERE/switch"
trim "$HERE/switch"
