#!/bin/sh
# Regenerates this report from the repository root (after `cargo build --release`):
#   sh reports/speculation-example/regenerate.sh
# 1. switch-base-128's real routing (the shared ExFlow trace) on three interconnects;
# 2. DeepSeek-V3 decoding on a trace drawn from the generator fitted on SGLang's recorded
#    DeepSeek-V3 expert loads. The fitted parameters and the trace are derived from the shared
#    third-party data, so they are written under target/ (git-ignored), never committed.
# Either part is skipped with a notice when its shared data is absent.
set -e
MOESIM=${MOESIM:-target/release/moesim}
HERE=reports/speculation-example
DATA=../shared/data
WORK=target/speculation-example

if [ -f "$DATA/switch-top1/switch-base-128.trace.npy" ]; then
    "$MOESIM" speculate scenarios/switch-base-128-speculation.toml \
        --clusters dgx-h100,pcie-l40s,hgx-h800x4 --out "$HERE/switch-base-128"
else
    echo "notice: $DATA/switch-top1 is absent; skipping switch-base-128"
fi

LOADS=$DATA/deepseek-v3-expert-load/decode_in1000out1000.json
if [ -f "$LOADS" ]; then
    mkdir -p "$WORK"
    "$MOESIM" trace fit "$LOADS" --model deepseek-v3 -o "$WORK/deepseek-v3-decode.fit.toml"
    "$MOESIM" trace synth --params "$WORK/deepseek-v3-decode.fit.toml" --tokens 4096 --seed 1 \
        -o "$WORK/deepseek-v3-decode.parquet"
    "$MOESIM" speculate scenarios/deepseek-v3-speculation.toml \
        --clusters hgx-h200,hgx-h800x4 --accuracies 0,0.05,0.1,0.2,0.4,0.6,0.8,1 \
        --out "$HERE/deepseek-v3"
else
    echo "notice: $LOADS is absent; skipping DeepSeek-V3"
fi
