"""What a user without k2pack would write to cut a checkpoint into tensor-parallel rank files: for every source
shard and every rank, slice each tensor with safetensors' lazy `get_slice` (columns on the output dimension, rows
on the input dimension, by name) and `save_file` the rank's piece. Used as the Python baseline for `k2pack shard`
in docs/BENCHMARKS.md; it follows the same rules as the architecture manifest for DeepSeek-V3 / K2.5 names.

    python scripts/bench/shard_python.py CHECKPOINT OUT --tp 8
"""
import argparse
import json
import os
import re

from safetensors import safe_open
from safetensors.torch import save_file

# Output-dimension splits (heads, MLP intermediate, vocabulary) and input-dimension splits, by name.
COLUMN = re.compile(r"(q_b_proj|kv_b_proj|gate_proj|up_proj)\.(weight|weight_packed|weight_scale)$|(embed_tokens|lm_head)\.weight$")
ROW = re.compile(r"(o_proj|down_proj)\.(weight|weight_packed|weight_scale)$")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--tp", type=int, default=8)
    a = p.parse_args()
    index = json.load(open(os.path.join(a.checkpoint, "model.safetensors.index.json")))
    shards = sorted(set(index["weight_map"].values()))
    for r in range(a.tp):
        os.makedirs(os.path.join(a.out, f"rank-{r:04d}"), exist_ok=True)
    for shard in shards:
        with safe_open(os.path.join(a.checkpoint, shard), "pt") as f:
            for r in range(a.tp):
                piece = {}
                for name in f.keys():
                    s = f.get_slice(name)
                    shape = s.get_shape()
                    if COLUMN.search(name) and "vision_tower" not in name and len(shape) >= 1:
                        n = shape[0] // a.tp
                        piece[name] = s[r * n:(r + 1) * n].contiguous()
                    elif ROW.search(name) and "vision_tower" not in name and len(shape) == 2:
                        n = shape[1] // a.tp
                        piece[name] = s[:, r * n:(r + 1) * n].contiguous()
                    else:
                        piece[name] = f.get_tensor(name)
                save_file(piece, os.path.join(a.out, f"rank-{r:04d}", shard))
                del piece


if __name__ == "__main__":
    main()
