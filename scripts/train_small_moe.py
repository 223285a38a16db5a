#!/usr/bin/env python3
"""Train a small OLMoE-style MoE language model from scratch on text found on this machine, then
capture its routing on held-out text through moesim's gating kernel.

Runs on the lent GPU (scripts/gpu_run.sh model): PyTorch, transformers 5.x and CuPy come from the
machine's image; nothing is downloaded. With `--device cpu` (scripts/cpu_capture.sh) it trains in
fp32 on the CPU and routes the held-out capture through the kernel's CPU twin
(`moesim capture --cpu`, found as $MOESIM). Writes into --work:
  train_summary.json   config, steps, losses, corpus, timings
  logits/layer_XX.npy  held-out router logits, [tokens, experts] float32, one file per MoE layer
The routing trace itself is then made by `moesim capture --layers-from-dir WORK/logits`, which
runs the instrumented kernel on those logits.

Tokens are bytes (vocabulary 256): no tokenizer has to be fetched, and the text is real (the
installed Python standard library and packages: sources, docs, READMEs). Files are split into
train and held-out by a hash of their path, so held-out text is unseen.
"""

import argparse
import dataclasses
import json
import math
import os
import sys
import sysconfig
import time
import zlib

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from moesim_capture import LogitsRecorder, patch_model, router_spec  # noqa: E402
from moesim_capture.twin import CpuTwinKernel  # noqa: E402

SUFFIXES = (".py", ".md", ".rst", ".txt")


def corpus_files():
    """Text files under the stdlib and site-packages folders, in a fixed order."""
    roots = sorted({sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib")})
    files = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                if name.endswith(SUFFIXES):
                    files.append(os.path.join(folder, name))
    return roots, sorted(set(files))


def load_corpus(max_bytes):
    """(train bytes, held-out bytes, description): one file in 20 (by path hash) is held out."""
    roots, files = corpus_files()
    train, held, used, total = [], [], 0, 0
    for path in files:
        if total >= max_bytes:
            break
        try:
            with open(path, "rb") as handle:
                data = handle.read(1 << 20)
        except OSError:
            continue
        if not data:
            continue
        (held if zlib.crc32(path.encode()) % 20 == 0 else train).append(data)
        used += 1
        total += len(data)
    join = lambda parts: np.frombuffer(b"\n\n".join(parts), dtype=np.uint8)  # noqa: E731
    description = {
        "roots": roots,
        "files_used": used,
        "bytes": total,
        "held_out_rule": "crc32(path) % 20 == 0",
        "suffixes": list(SUFFIXES),
    }
    return join(train), join(held), description


def batches(data, batch, seq, generator):
    """Random `[batch, seq]` windows of `data`, forever."""
    tensor = torch.from_numpy(data.astype(np.int64))
    while True:
        starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=generator)
        yield torch.stack([tensor[s : s + seq] for s in starts.tolist()])


def held_out_windows(data, seq, count):
    """The first `count` consecutive `[seq]` windows of the held-out text."""
    count = min(count, len(data) // seq)
    return torch.from_numpy(data[: count * seq].astype(np.int64)).view(count, seq)


def unigram_loss(train, held):
    """Cross-entropy (nats per byte) of the held-out bytes under the training bytes' unigram
    distribution (add-one smoothed): the loss a model that ignores context gets."""
    counts = np.bincount(train, minlength=256).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    return float(-log_p[held].mean())


def mean_loss(model, windows, batch, device):
    """Mean next-byte cross-entropy (nats) over `windows`, fp32, no grad."""
    losses = []
    with torch.no_grad():
        for start in range(0, len(windows), batch):
            ids = windows[start : start + batch].to(device)
            losses.append(model(input_ids=ids, labels=ids).loss.float().item())
    return sum(losses) / len(losses)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", required=True)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--experts", type=int, default=32)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--corpus-mb", type=float, default=64.0)
    parser.add_argument("--capture-tokens", type=int, default=16384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import OlmoeConfig, OlmoeForCausalLM

    torch.manual_seed(args.seed)
    train, held, corpus = load_corpus(int(args.corpus_mb * (1 << 20)))
    config = OlmoeConfig(
        vocab_size=256,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 2,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64),
        num_key_value_heads=max(1, args.hidden // 64),
        max_position_embeddings=args.seq,
        num_experts=args.experts,
        num_experts_per_tok=args.top_k,
        norm_topk_prob=False,
        output_router_logits=True,
        router_aux_loss_coef=0.01,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=0,
        use_cache=False,
    )
    model = OlmoeForCausalLM(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = args.warmup
    generator = torch.Generator().manual_seed(args.seed)
    stream = batches(train, args.batch, args.seq, generator)
    log, step, start = [], 0, time.time()
    model.train()
    while time.time() - start < args.seconds:
        progress = min(1.0, (time.time() - start) / args.seconds)
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        ids = next(stream).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(input_ids=ids, labels=ids)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 50 == 0:
            entry = {"step": step, "loss": round(out.loss.item(), 4), "s": round(time.time() - start, 1)}
            log.append(entry)
            print(json.dumps(entry), flush=True)
    train_seconds = time.time() - start

    model.eval()
    model.config.output_router_logits = False  # held-out losses are pure next-byte cross-entropy
    windows = held_out_windows(held, args.seq, args.capture_tokens // args.seq)
    held_loss_hf = mean_loss(model, windows, args.batch, device)
    recorder = LogitsRecorder()
    kernel = CpuTwinKernel() if device.type == "cpu" else None  # None: the CUDA kernel
    capture_start = time.time()
    patched = patch_model(model, recorder, use_kernel=True, kernel=kernel)
    held_loss_moesim = mean_loss(model, windows, args.batch, device)
    capture_seconds = time.time() - capture_start
    unigram = unigram_loss(train, held)
    logits_dir = os.path.join(args.work, "logits")
    paths = recorder.save(logits_dir)
    spec = next(router_spec(m) for m in model.modules() if router_spec(m) is not None)

    summary = {
        "model": "OlmoeForCausalLM (transformers), trained from scratch",
        "config": {k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))},
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": step,
        "peak_lr": args.lr,
        "train_seconds": round(train_seconds, 1),
        "tokens_seen": step * args.batch * args.seq,
        "final_train_loss": log[-1]["loss"] if log else None,
        "held_out_loss_hf_routing": round(held_loss_hf, 4),
        "held_out_loss_moesim_routing": round(held_loss_moesim, 4),
        "held_out_bits_per_byte": round(held_loss_moesim / math.log(2), 4),
        "unigram_held_out_loss": round(unigram, 4),
        "capture_seconds": round(capture_seconds, 1),
        "capture_engine": "CUDA gating kernel" if kernel is None else "gating kernel's CPU twin",
        "captured_tokens": int(windows.numel()),
        "patched_routers": patched,
        "capture_spec": dataclasses.asdict(spec),
        "corpus": corpus,
        "loss_log": log,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "transformers": __import__("transformers").__version__,
        "batch": args.batch,
        "seq": args.seq,
        "logits_files": [os.path.basename(p) for p in paths],
    }
    with open(os.path.join(args.work, "train_summary.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    print(json.dumps({k: summary[k] for k in ("steps", "final_train_loss", "held_out_loss_hf_routing",
                                               "held_out_loss_moesim_routing", "unigram_held_out_loss",
                                               "captured_tokens")}))


if __name__ == "__main__":
    main()
