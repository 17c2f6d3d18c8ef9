#!/usr/bin/env python3
"""Baseline for `k2pack inspect`: what a user would write with safetensors.safe_open.

Opens every shard named by the index, reads each tensor's dtype and shape from its header, and sums
tensors, elements and bytes. Prints the totals and the wall time (the interpreter's start-up excluded;
time the whole command with hyperfine for the end-to-end figure).
"""
import json
import sys
import time

start = time.perf_counter()
from safetensors import safe_open  # noqa: E402

BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
         "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}

folder = sys.argv[1]
index = json.load(open(f"{folder}/model.safetensors.index.json"))
shards = sorted(set(index["weight_map"].values()))
tensors = elements = nbytes = 0
for shard in shards:
    with safe_open(f"{folder}/{shard}", framework="pt") as f:
        for name in f.keys():
            s = f.get_slice(name)
            shape = s.get_shape()
            n = 1
            for d in shape:
                n *= d
            tensors += 1
            elements += n
            nbytes += n * BYTES[s.get_dtype()]
print(f"{len(shards)} shards, {tensors} tensors, {elements} elements, {nbytes} bytes "
      f"in {time.perf_counter() - start:.2f} s (after interpreter start)")
