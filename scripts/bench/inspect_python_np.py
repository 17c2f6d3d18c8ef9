#!/usr/bin/env python3
"""Baseline for `k2pack inspect`, as a user without torch would write it: safetensors.safe_open(f, "np").

Reads the index, opens every shard it names, reads each tensor's dtype and shape from the header (no tensor
data), and sums tensors, elements and bytes. Needs only `safetensors` (and numpy, which its "np" framework
imports); torch is never imported. Time the whole process with hyperfine (docs/BENCHMARKS.md).
"""
import json
import sys

from safetensors import safe_open

BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
         "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}

folder = sys.argv[1]
with open(f"{folder}/model.safetensors.index.json") as f:
    index = json.load(f)
shards = sorted(set(index["weight_map"].values()))
tensors = elements = nbytes = 0
for shard in shards:
    with safe_open(f"{folder}/{shard}", framework="np") as f:
        for name in f.keys():
            s = f.get_slice(name)
            n = 1
            for d in s.get_shape():
                n *= d
            tensors += 1
            elements += n
            nbytes += n * BYTES[s.get_dtype()]
print(f"{len(shards)} shards, {tensors} tensors, {elements} elements, {nbytes} bytes")
