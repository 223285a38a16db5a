#!/usr/bin/env python3
"""Converts an SGLang expert-distribution recorder dump (torch `.pt`) to the JSON moesim imports.

SGLang's recorder in `stat` mode (`_StatAccumulator.dump` in sglang/srt/eplb/expert_distribution.py)
saves `torch.save(dict(rank=..., logical_count=..., average_utilization_rate_over_window=...))`
with `logical_count` an int tensor `[buffered steps, layers, logical experts]`. This script keeps
`logical_count` only, as nested lists:

    python3 python/sglang_dump_to_json.py expert_distribution_recorder_1700000000.0.pt loads.json
    moesim trace import loads.json -o loads.parquet --format sglang

moesim sums a 3-D `logical_count` over its steps (`--sum-steps` writes the 2-D sum here instead).
Loading the `.pt` needs torch; the conversion itself works on any dict whose `logical_count` is a
tensor, a NumPy array or nested lists.
"""

import argparse
import json
import os
import sys
import tempfile


def to_json_dump(data, sum_steps=False):
    """The moesim JSON object for a recorder dump `data` (a dict with `logical_count`)."""
    if not isinstance(data, dict) or "logical_count" not in data:
        raise ValueError("not an SGLang expert-distribution dump: no `logical_count` key")
    counts = data["logical_count"]
    if hasattr(counts, "tolist"):
        counts = counts.tolist()
    depth = _depth(counts)
    if depth not in (2, 3):
        raise ValueError(
            f"`logical_count` must be [layers][experts] or [steps][layers][experts], "
            f"got {depth} dimensions"
        )
    for position, value in _cells(counts):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"`logical_count{position}`: {value!r} is not a number")
        if value < 0 or value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"`logical_count{position}`: {value} is not a finite count >= 0")
    if depth == 3 and sum_steps:
        counts = _sum_steps(counts)
    return {"logical_count": counts}


def _depth(value):
    """Nesting depth of a list (0 for a scalar), following first elements."""
    depth = 0
    while isinstance(value, list):
        depth += 1
        if not value:
            break
        value = value[0]
    return depth


def _cells(value, position=""):
    """Every scalar of a nested list, with its `[i][j]...` position."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _cells(item, f"{position}[{index}]")
    else:
        yield position, value


def _sum_steps(steps):
    """`[steps][layers][experts]` summed over the steps; every step must have one shape."""
    total = [list(layer) for layer in steps[0]]
    for index, step in enumerate(steps[1:], start=1):
        if len(step) != len(total) or any(len(a) != len(b) for a, b in zip(step, total)):
            raise ValueError(f"`logical_count[{index}]` differs in shape from step 0")
        for row, layer in zip(total, step):
            for expert, count in enumerate(layer):
                row[expert] += count
    return total


def _write_atomic(path, obj):
    """Writes `obj` as JSON to `path` through a temporary file in the same folder."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(obj, out)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump", help="the recorder's .pt file")
    parser.add_argument("out", help="the JSON file to write")
    parser.add_argument("--sum-steps", action="store_true", help="write [layers][experts]")
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: PLC0415 - only the .pt loading needs it
    except ImportError:
        sys.exit("error: reading a .pt file needs torch (pip install torch)")
    try:
        data = torch.load(args.dump, map_location="cpu", weights_only=True)
        _write_atomic(args.out, to_json_dump(data, args.sum_steps))
    except (OSError, ValueError, RuntimeError) as e:
        sys.exit(f"error: {args.dump}: {e}")


if __name__ == "__main__":
    main()
