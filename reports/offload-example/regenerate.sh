#!/bin/sh
# Regenerates this report from the repository root:
#   sh reports/offload-example/regenerate.sh        (MOESIM=path/to/moesim to use another binary)
# Synthetic traces of each model's shape come from the generator (seeded, into a temporary
# folder); `moesim offload` runs on-demand and prefetch at every cache size, once per eviction
# policy, the prefetches chosen by the oracle (Pre-gated MoE's pre-gate knows the next layer's
# experts), and with the transition predictor fitted on the trace's first half (LRU and
# prediction-driven eviction).
set -e
MOESIM=${MOESIM:-target/release/moesim}
HERE=reports/offload-example
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

"$MOESIM" trace synth --experts 8 --layers 32 --top-k 2 --tokens 4000 --affinity 0.6 --seed 7 \
    -o "$TMP/mixtral.parquet"
"$MOESIM" trace synth --experts 60 --layers 24 --top-k 4 --tokens 4000 --affinity 0.6 --seed 7 \
    -o "$TMP/qwen.parquet"

# run MODEL TRACE CACHES EVICTION PREDICTOR FOLDER
run() {
    "$MOESIM" offload "$TMP/$2.parquet" --model "$1" --cluster rtx4090-host --cache "$3" \
        --eviction "$4" --predictor "$5" --steps 200 --out "$HERE/$1/$6"
}
for eviction in lru lfu predicted; do
    run mixtral-8x7b mixtral 1,2,4,6,8 "$eviction" oracle "$eviction"
    run qwen1.5-moe-a2.7b qwen 4,8,16,32,48,60 "$eviction" oracle "$eviction"
done
for eviction in lru predicted; do
    run mixtral-8x7b mixtral 1,2,4,6,8 "$eviction" transition "$eviction-transition"
    run qwen1.5-moe-a2.7b qwen 4,8,16,32,48,60 "$eviction" transition "$eviction-transition"
done
