#!/usr/bin/env python3
"""Writes the provenance of a CPU-trained, CPU-captured trace (scripts/cpu_capture.sh train):

    cpu_capture_provenance.py RUN_DIR traces/NAME

RUN_DIR holds train_small_moe.py's train_summary.json; traces/NAME.parquet and
traces/NAME.capture.json were written by `moesim capture --cpu`. Writes traces/NAME.config.json
(the model's transformers config, which `model = "..."` in a scenario reads),
traces/NAME.train_summary.json and traces/NAME.provenance.md.
"""

import datetime
import json
import math
import os
import platform
import subprocess
import sys


def cpu_name():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit(root):
    try:
        out = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    run, prefix = sys.argv[1], sys.argv[2]
    name = os.path.basename(prefix)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    summary = json.load(open(os.path.join(run, "train_summary.json")))
    capture = json.load(open(prefix + ".capture.json"))
    config = summary["config"]
    import numpy
    import transformers

    from transformers import OlmoeConfig

    OlmoeConfig(**{k: v for k, v in config.items() if k not in ("transformers_version",)}
                ).to_json_file(prefix + ".config.json")
    summary["numpy"] = numpy.__version__
    summary["python"] = platform.python_version()
    summary["cpu"] = cpu_name()
    summary["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    summary["moesim_commit"] = git_commit(root)
    summary["corpus"]["roots"] = [os.path.basename(r.rstrip("/")) + " (" + r + ")"
                                  for r in summary["corpus"]["roots"]]
    with open(prefix + ".train_summary.json", "w") as handle:
        json.dump(summary, handle, indent=1)

    held, unigram = summary["held_out_loss_moesim_routing"], summary["unigram_held_out_loss"]
    c = config
    lines = [
        f"# traces/{name}.parquet: a small MoE LM trained and captured on CPU",
        "",
        "**Trained and captured on CPU with the gating kernel's CPU twin** (no GPU was lent):",
        "a small OLMoE-style byte-level language model (transformers' `OlmoeForCausalLM`), trained",
        "from scratch with the settings of `scripts/cpu_capture.sh train` (`scripts/train_small_moe.py --device cpu`).",
        "Its router logits on held-out text were recorded by `python/moesim_capture` (the patch",
        "routing through `moesim capture --cpu`, the kernel's CPU twin, which agrees with the CUDA",
        "kernel bit for bit) and turned into this trace by",
        "",
        "```sh",
        f"moesim capture --cpu --layers-from-dir WORK/train/logits --top-k {c['num_experts_per_tok']} "
        f"--scoring softmax --no-renormalize -o traces/{name}.parquet",
        "```",
        "",
        "Real routing of a real (if small and briefly trained) model: not synthetic.",
        "",
        "## Model",
        "",
        f"- {c['num_hidden_layers']} MoE layers, {c['num_experts']} experts, top-{c['num_experts_per_tok']}"
        f" (softmax, `norm_topk_prob = false`: weights are not renormalized), hidden {c['hidden_size']},"
        f" expert FFN {c['intermediate_size']}, {c['num_attention_heads']} attention head(s),"
        f" vocabulary 256 (bytes), {summary['parameters']:,} parameters, fp32.",
        f"- Router aux loss coefficient {c.get('router_aux_loss_coef')}; config:"
        f" `traces/{name}.config.json` (usable as a scenario's `model`).",
        "",
        "## Data",
        "",
        f"- Text files ({', '.join(summary['corpus']['suffixes'])}) of the machine's Python"
        f" installation: {', '.join(summary['corpus']['roots'])}; {summary['corpus']['files_used']:,}"
        f" files, {summary['corpus']['bytes'] / 1e6:.1f} MB, bytes as tokens.",
        f"- Held out: files with {summary['corpus']['held_out_rule']} (unseen in training).",
        "",
        "## Training",
        "",
        f"- {summary['train_seconds']:.0f} s on {summary['threads']} CPU threads ({summary['cpu']},"
        " shared with other work, `nice -n 19`),"
        f" {summary['steps']} steps of {summary['batch']} x {summary['seq']} bytes"
        f" ({summary['tokens_seen']:,} tokens), AdamW, peak lr {summary['peak_lr']}, cosine.",
        f"- Final training loss {summary['final_train_loss']} nats/byte.",
        "",
        "## Held-out loss (nats per byte)",
        "",
        "| model | loss | bits/byte |",
        "|---|---|---|",
        f"| unigram baseline (training byte frequencies) | {unigram:.4f} | {unigram / math.log(2):.3f} |",
        f"| trained, transformers' routing | {summary['held_out_loss_hf_routing']:.4f} |"
        f" {summary['held_out_loss_hf_routing'] / math.log(2):.3f} |",
        f"| trained, routed by moesim's kernel (CPU twin) | {held:.4f} | {held / math.log(2):.3f} |",
        "",
        f"The model beats the unigram baseline by {unigram - held:.3f} nats/byte"
        f" ({100 * (unigram - held) / unigram:.0f} %).",
        "",
        "## Capture",
        "",
        f"- {capture['num_tokens']:,} held-out tokens x {capture['num_layers']} layers, gating"
        f" \"{capture['gating']}\", engine: {capture['engine']}, {capture['lost_records']} records lost.",
        f"- Per-expert counts: `traces/{name}.capture.json`; training log and settings:"
        f" `traces/{name}.train_summary.json`.",
        "",
        "## Versions and date",
        "",
        f"- torch {summary['torch']}, transformers {transformers.__version__}, numpy"
        f" {numpy.__version__}, Python {summary['python']}, moesim at commit"
        f" {summary['moesim_commit']}.",
        f"- {summary['date']}.",
        "",
    ]
    with open(prefix + ".provenance.md", "w") as handle:
        handle.write("\n".join(lines))
    print(f"wrote {prefix}.provenance.md, {prefix}.config.json, {prefix}.train_summary.json")


if __name__ == "__main__":
    main()
