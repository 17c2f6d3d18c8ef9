#!/usr/bin/env python3
"""Baseline for `k2pack convert`: the same repack written the way a user would in Python.

For every shard: read each tensor with safetensors.safe_open; stack each layer's routed experts expert-major
(torch.stack over `mlp.experts.E.<proj>.<part>`); write one safetensors file per source shard with
safetensors.torch.save_file. Bit-exact like k2pack (the INT4 words and BF16 scales are not touched).
"""
import json
import re
import sys
import time
from collections import defaultdict

import torch
from safetensors import safe_open
from safetensors.torch import save_file

src, out = sys.argv[1], sys.argv[2]
start = time.perf_counter()
index = json.load(open(f"{src}/model.safetensors.index.json"))
expert = re.compile(r"^(.*\.mlp\.experts)\.(\d+)\.(.*)$")
total = 0
import os
os.makedirs(out, exist_ok=True)
for shard in sorted(set(index["weight_map"].values())):
    tensors, stacks = {}, defaultdict(dict)
    with safe_open(f"{src}/{shard}", framework="pt") as f:
        for name in f.keys():
            t = f.get_tensor(name)
            total += t.numel() * t.element_size()
            m = expert.match(name)
            if m:
                stacks[f"{m.group(1)}.*.{m.group(3)}"][int(m.group(2))] = t
            else:
                tensors[name] = t
    for name, members in stacks.items():
        tensors[name] = torch.stack([members[e] for e in sorted(members)])
    save_file(tensors, f"{out}/{shard}", metadata={"format": "pt"})
    del tensors, stacks
print(f"{total} bytes in {time.perf_counter() - start:.2f} s")
