#!/usr/bin/env python3
"""Load one expert-parallel rank's routed-expert weights into memory, two ways, and time it.

    k2pack       python/k2pack_reader on the rank folder a `k2pack shard --ep N` wrote: for every expert stack,
                 `pack.experts(name, first, end)` (a memmap view, one contiguous range) copied with np.array;
                 `--copy`: `pack.experts(..., copy=True)` (pread straight into a new array); `--verify`:
                 `pack.get(name, copy=True, verify=True)` (the same, and the bytes' xxHash64 checked).
    safetensors  what a user without k2pack writes against the Hugging Face shards: the index says which shard
                 holds each expert tensor; `safe_open(shard, framework="np")` and `get_slice(name)[:]` for each
                 of the rank's experts, written into a preallocated [experts, ...] array per module (the
                 stacked buffer a fused MoE kernel takes). BF16 needs `ml_dtypes` (numpy's bfloat16).

Both end with the same bytes in the same arrays (`--check` compares them). Used in docs/BENCHMARKS.md:

    python3 scripts/bench/experts_python.py k2pack RANK_FOLDER [--copy | --verify]
    python3 scripts/bench/experts_python.py safetensors HF_FOLDER --first 0 --end 48
    python3 scripts/bench/experts_python.py check RANK_FOLDER HF_FOLDER
"""

import argparse
import json
import os
import re
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

# Imported before any timer starts: the figures are the loads, not the imports.
import k2pack_reader as k2  # noqa: E402
import ml_dtypes  # noqa: E402,F401  (registers numpy's "bfloat16", which safetensors' numpy path needs for BF16)
from safetensors import safe_open  # noqa: E402


def load_k2pack(folder, copy=False, verify=False):
    pack = k2.open_pack(folder)
    first, end = pack.expert_range
    out = {}
    for info in pack.tensors():
        if not info.is_stack:
            continue
        if verify:  # a rank's stack holds exactly its experts: its checksum covers what is loaded
            out[info.name] = pack.get(info.name, copy=True, verify=True)
        elif copy:
            out[info.name] = pack.experts(info.name, first, end, copy=True)
        else:
            out[info.name] = np.array(pack.experts(info.name, first, end))
    return out


EXPERT = re.compile(r"^(.*\.experts\.)(\d+)(\..*)$")


def load_safetensors(folder, first, end):
    with open(os.path.join(folder, "model.safetensors.index.json")) as handle:
        weight_map = json.load(handle)["weight_map"]
    wanted = {}  # stacked name -> {expert: (shard, name)}
    for name, shard in weight_map.items():
        m = EXPERT.match(name)
        if m and first <= int(m.group(2)) < end:
            wanted.setdefault(m.group(1) + "*" + m.group(3), {})[int(m.group(2))] = (shard, name)
    handles = {}
    out = {}
    for stacked, experts in sorted(wanted.items()):
        buffer = None
        for e in range(first, end):
            shard, name = experts[e]
            if shard not in handles:
                handles[shard] = safe_open(os.path.join(folder, shard), framework="np")
            piece = handles[shard].get_slice(name)[:]
            if buffer is None:
                buffer = np.empty((end - first,) + piece.shape, dtype=piece.dtype)
            buffer[e - first] = piece
        out[stacked] = buffer
    return out


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def report(label, start, cpu_start, arrays):
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
    total = sum(a.nbytes for a in arrays.values())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{label}: {len(arrays)} stacks, {total / 1e9:.3f} GB in {seconds:.3f} s = {total / 1e9 / seconds:.3f} GB/s, "
          f"CPU (user + sys) {cpu:.3f} s, peak RSS {rss:.0f} MB")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["k2pack", "safetensors", "check"])
    p.add_argument("paths", nargs="+")
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--end", type=int, default=48)
    p.add_argument("--copy", action="store_true", help="k2pack: copy=True (pread into new arrays), not view + np.array")
    p.add_argument("--verify", action="store_true", help="k2pack: copy=True and check each stack's xxHash64")
    a = p.parse_args()
    if a.mode == "check":
        first, end = k2.open_pack(a.paths[0]).expert_range
        mine, theirs = load_k2pack(a.paths[0]), load_safetensors(a.paths[1], first, end)
        names = sorted(theirs)
        assert set(mine) == set(theirs), (sorted(set(mine) ^ set(theirs)))[:4]
        for n in names:
            assert mine[n].dtype.itemsize == theirs[n].dtype.itemsize and mine[n].shape == theirs[n].shape, n
            assert mine[n].tobytes() == theirs[n].tobytes(), n
        print(f"identical: {len(names)} stacks of experts {first}..<{end}")
        return
    cpu_start, start = cpu_seconds(), time.perf_counter()
    if a.mode == "k2pack":
        arrays = load_k2pack(a.paths[0], a.copy, a.verify)
        label = "copy=True + xxHash64" if a.verify else "copy=True (pread)" if a.copy else "view + np.array"
        report("k2pack reader, " + label, start, cpu_start, arrays)
    else:
        arrays = load_safetensors(a.paths[0], a.first, a.end)
        report("safetensors get_slice", start, cpu_start, arrays)


if __name__ == "__main__":
    main()
