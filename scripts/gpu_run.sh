#!/usr/bin/env bash
# Issue 5's GPU run on a lent H100/H200 (no cargo, no network there). Build first, HERE:
#   scripts/gpu_build.sh                      # -> gpu-bin/{moesim,capture_gpu}.gz with the PTX
# then on the GPU machine (device tool: carry=["gpu-bin"]), one stage per call (10-minute limit):
#   scripts/gpu_run.sh test       # GPU tests: kernel vs CPU twin bit for bit, ring overflow
#   scripts/gpu_run.sh overhead   # instrumented vs plain kernel -> reports/gpu-<gpu>/capture_overhead.json
#   scripts/gpu_run.sh model      # train a small MoE LM (TRAIN_SECONDS, default 300), capture its
#                                 # held-out routing -> traces/<name>.parquet + provenance
#   scripts/gpu_run.sh profile    # moesim profile / calibrate / validate -> reports/gpu-<gpu>/
#   scripts/gpu_run.sh compare    # trace stats vs switch-base and DeepSeek -> routing_comparison.md
#                                 # (needs ../shared/data or MOESIM_SHARED_DATA: run it back here,
#                                 #  with GPU=h100 and MOESIM=target/debug/moesim)
#   scripts/gpu_run.sh all        # test, overhead, model, profile, and compare when data is there
# Results land in reports/gpu-<gpu>/ and traces/, ready to commit. Under the device tool, each
# stage also copies what it wrote into $OUT (same relative paths), the only files that come back:
# copy them from the reply's files_at into the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
stage="${1:-all}"
work="${WORK:-/tmp/moesim-gpu-work}"
name="${TRACE_NAME:-small-moe-olmoe-8x32-top4}"
mkdir -p "$work"

moesim_bin() {
  if [ -n "${MOESIM:-}" ]; then echo "$MOESIM"; return; fi
  local bin=/tmp/moesim-gpu-bin
  if [ ! -x "$bin/moesim" ]; then
    [ -f gpu-bin/moesim.gz ] || { echo "gpu_run: gpu-bin/ missing: run scripts/gpu_build.sh and carry gpu-bin" >&2; exit 1; }
    mkdir -p "$bin"
    for f in gpu-bin/*.gz; do gzip -dc "$f" > "$bin/$(basename "$f" .gz)"; chmod +x "$bin/$(basename "$f" .gz)"; done
  fi
  echo "$bin/moesim"
}
moesim() { "$(moesim_bin)" "$@"; }

gpu_slug() {
  if [ -n "${GPU:-}" ]; then echo "$GPU"; return; fi
  local gpu_name
  gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  echo "$gpu_name" | tr 'A-Z' 'a-z' | grep -oE 'gb200|b200|h200|h100|a100|l40s' | head -1 \
    || echo "$gpu_name" | tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9-'
}

# Copies the given repository paths into $OUT (when the device tool set it), keeping their paths.
publish() {
  [ -n "${OUT:-}" ] || return 0
  cp -r --parents "$@" "$OUT/"
}

machine_json() {
  python3 - <<'PY'
import json, subprocess, datetime
q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                   capture_output=True, text=True).stdout.strip().split("\n")[0].split(", ")
print(json.dumps({"gpu": q[0], "driver": q[1],
                  "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}))
PY
}

stage_test() {
  local out="reports/gpu-$(gpu_slug)"
  mkdir -p "$out"
  moesim_bin >/dev/null
  set -o pipefail
  local status=0
  /tmp/moesim-gpu-bin/capture_gpu --include-ignored --test-threads=1 2>&1 | tee "$out/capture_gpu_tests.log" || status=$?
  publish "$out/capture_gpu_tests.log"
  return "$status"
}

stage_overhead() {
  local out="reports/gpu-$(gpu_slug)"
  mkdir -p "$out"
  # Three router shapes, 65,536 tokens each: Mixtral (8 experts, top-2), OLMoE (64, top-8),
  # DeepSeek-V3 (256, sigmoid, top-8 of 4 groups of 8, with a score-correction bias).
  python3 - "$work" <<'PY'
import sys, numpy as np
work, rng = sys.argv[1], np.random.default_rng(0)
for experts in (8, 64, 256):
    np.save(f"{work}/overhead_{experts}.npy", rng.normal(0, 2, (65536, experts)).astype(np.float32))
np.save(f"{work}/overhead_bias.npy", rng.normal(0, 0.05, 256).astype(np.float32))
PY
  moesim capture --logits "$work/overhead_8.npy" --top-k 2 -o "$work/oh8.parquet" --overhead-json "$work/oh8.json"
  moesim capture --logits "$work/overhead_64.npy" --top-k 8 --no-renormalize -o "$work/oh64.parquet" --overhead-json "$work/oh64.json"
  moesim capture --logits "$work/overhead_256.npy" --top-k 8 --scoring sigmoid --groups 8 --top-groups 4 \
    --bias "$work/overhead_bias.npy" -o "$work/oh256.parquet" --overhead-json "$work/oh256.json"
  machine_json > "$work/machine.json"
  python3 - "$work" "$out/capture_overhead.json" <<'PY'
import json, sys
work, out = sys.argv[1], sys.argv[2]
machine = json.load(open(f"{work}/machine.json"))
cases = [json.load(open(f"{work}/oh{e}.json")) for e in (8, 64, 256)]
report = dict(machine, kernel="src/capture/kernels/gating.cu (moesim_gating vs moesim_gating_instrumented)",
              method="CUDA events around back-to-back launches, 7 alternating rounds per kernel, median",
              target_percent=5.0, max_overhead_percent=max(c["overhead_percent"] for c in cases), cases=cases)
json.dump(report, open(out, "w"), indent=1)
print(json.dumps({c["gating"]: round(c["overhead_percent"], 2) for c in cases}))
PY
  publish "$out/capture_overhead.json"
}

stage_model() {
  local out="reports/gpu-$(gpu_slug)"
  mkdir -p "$out" traces
  PYTHONUNBUFFERED=1 python3 scripts/train_small_moe.py --work "$work" --seconds "${TRAIN_SECONDS:-300}"
  moesim capture --layers-from-dir "$work/logits" --top-k 4 --scoring softmax --no-renormalize \
    -o "traces/$name.parquet"
  cp "$work/train_summary.json" "$out/small_moe_train_summary.json"
  machine_json > "$work/machine.json"
  python3 - "$work" "$name" <<'PY'
import json, sys
work, name = sys.argv[1], sys.argv[2]
s, m = json.load(open(f"{work}/train_summary.json")), json.load(open(f"{work}/machine.json"))
side = json.load(open(f"traces/{name}.capture.json"))
c = s["config"]
lines = [
    f"# {name}: routing captured from a small MoE LM trained from scratch", "",
    f"- Captured: {m['date']} on {m['gpu']} (driver {m['driver']}), torch {s['torch']}, through moesim's instrumented",
    "  gating kernel (`moesim capture --layers-from-dir`, ring buffer drained asynchronously; "
    f"lost records: {side['lost_records']}).",
    f"- Model: {s['model']}; {s['parameters']:,} parameters; {c['num_hidden_layers']} layers, hidden {c['hidden_size']},"
    f" {c['num_experts']} experts, top-{c['num_experts_per_tok']}, softmax, not renormalized (OLMoE style),"
    f" byte vocabulary (256), sequence {c['max_position_embeddings']}; aux loss coefficient {c['router_aux_loss_coef']}.",
    f"- Training: {s['steps']} steps ({s['tokens_seen']:,} tokens, {s['train_seconds']} s), AdamW 1e-3 cosine,"
    f" bf16 autocast; final train loss {s['final_train_loss']} nats/byte.",
    f"- Held-out loss {s['held_out_loss_moesim_routing']} nats/byte with moesim's kernel routing vs"
    f" {s['held_out_loss_hf_routing']} with transformers' own routing ({s['held_out_bits_per_byte']} bits/byte).",
    f"- Corpus: {s['corpus']['files_used']} files ({s['corpus']['bytes']:,} bytes) of {', '.join(s['corpus']['suffixes'])}"
    f" under {', '.join(s['corpus']['roots'])}; held out: files with {s['corpus']['held_out_rule']}.",
    f"- Trace: {s['captured_tokens']:,} held-out tokens x {c['num_hidden_layers']} MoE layers; per-expert kernel counters in"
    f" `{name}.capture.json`. Regenerate: `scripts/gpu_run.sh model` (see scripts/gpu_run.sh).",
]
open(f"traces/{name}.provenance.md", "w").write("\n".join(lines) + "\n")
PY
  ls -la "traces/$name".*
  publish "traces/$name.parquet" "traces/$name.capture.json" "traces/$name.provenance.md" \
    "$out/small_moe_train_summary.json"
}

stage_profile() {
  local out="reports/gpu-$(gpu_slug)"
  mkdir -p "$out"
  moesim profile --out "$out/profile"
  moesim calibrate --measurements "$out/profile/measurements.parquet" -o "$out/profile/calibration.toml"
  moesim validate --measurements "$out/profile/measurements.parquet" \
    --calibration "$out/profile/calibration.toml" -o "$out/validation"
  publish "$out/profile" "$out/validation"
}

stage_compare() {
  local data="${MOESIM_SHARED_DATA:-../shared/data}"
  local out="reports/gpu-$(gpu_slug)"
  [ -d "$data/switch-top1" ] || { echo "gpu_run compare: no shared data at $data (set MOESIM_SHARED_DATA)" >&2; return 1; }
  mkdir -p "$out"
  moesim trace stats "traces/$name.parquet" --json > "$work/stats_captured.json"
  for e in 8 32 128; do
    moesim trace stats "$data/switch-top1/switch-base-$e.trace.npy" --json > "$work/stats_switch$e.json"
  done
  moesim trace stats "$data/deepseek-v3-expert-load/prefill_in1024.json" --json > "$work/stats_deepseek.json"
  python3 - "$work" "$out/routing_comparison.md" "$name" <<'PY'
import json, sys
work, out, name = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [(f"captured: {name}", "stats_captured"), ("switch-base-8 (ExFlow)", "stats_switch8"),
        ("switch-base-32 (ExFlow)", "stats_switch32"), ("switch-base-128 (ExFlow)", "stats_switch128"),
        ("DeepSeek-V3 prefill_in1024 (SGLang loads)", "stats_deepseek")]
def mean(layers, key):
    vals = [l[key] for l in layers if l.get(key) is not None]
    return f"{sum(vals) / len(vals):.3f}" if vals else "n/a"
lines = ["# Routing of the captured small MoE vs real traces", "",
         "Means over MoE layers of `moesim trace stats --json` (regenerate: `scripts/gpu_run.sh compare`).", "",
         "| trace | experts | top-k | tokens | max/mean | CV | Gini | entropy (norm.) | affinity top-1 | affinity top-4 |",
         "|---|---|---|---|---|---|---|---|---|---|"]
for label, file in rows:
    s = json.load(open(f"{work}/{file}.json"))
    layers = [l for l in s["layers"] if l.get("entries", 1)]
    lines.append(f"| {label} | {s['num_experts']} | {s['top_k'] or 'n/a'} | {s['num_tokens'] or 'aggregate'} | "
                 f"{mean(layers, 'max_mean')} | {mean(layers, 'cv')} | {mean(layers, 'gini')} | "
                 f"{mean(layers, 'entropy_norm')} | {mean(layers, 'affinity_top1')} | {mean(layers, 'affinity_top4')} |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
}

case "$stage" in
  test) stage_test ;;
  overhead) stage_overhead ;;
  model) stage_model ;;
  profile) stage_profile ;;
  compare) stage_compare ;;
  all)
    stage_test
    stage_overhead
    stage_model
    stage_profile
    if [ -d "${MOESIM_SHARED_DATA:-../shared/data}/switch-top1" ]; then stage_compare
    else echo "gpu_run: shared data not here; run 'GPU=$(gpu_slug) scripts/gpu_run.sh compare' where it is" >&2; fi
    ;;
  *) echo "usage: scripts/gpu_run.sh test|overhead|model|profile|compare|all" >&2; exit 2 ;;
esac
