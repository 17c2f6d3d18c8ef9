#!/usr/bin/env python3
"""transformers' side of the full-width vision benchmark (docs/BENCHMARKS.md, "The vision tower").

Builds transformers 5.23's Kimi K2.5 vision tower and projector (Kimi_K25VisionModel, Kimi_K25MultimodalProjection)
from a checkpoint's config.json (vision keys translated to transformers' names), loads the checkpoint's
vision_tower.* / mm_projector.* tensors in float32 with transformers' own renames, wqkv split and q/k RoPE
permutation (the mapping make_vision_reference.py checks against from_pretrained on the fixture), runs one image of
the given size (random normalized pixels, one entry of grid (1, H/14, W/14)) and prints the CPU time of the tower
and projector and the peak RSS. With --dump it writes the input and the projector's output (and the final norm's)
as a vision dump, so `k2pack parity MODEL --reference DUMP` times our pass on the same input and compares it.

Usage:
    python scripts/bench/vision_python.py MODEL_DIR [--image 448x448] [--threads 2] [--dump bench.h5]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import transformers
from safetensors import safe_open
from transformers import Kimi_K25Config
from transformers.models.kimi_k25.modeling_kimi_k25 import Kimi_K25MultimodalProjection, Kimi_K25VisionModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
from make_vision_reference import VISION_NAMES  # noqa: E402


# The checkpoint's block modules under transformers' names (norm0/1 -> norm1/2, fc0/1 -> fc1/2, wo -> attn.proj).
RENAMES = {"norm0": "norm1", "norm1": "norm2", "wo": "attn.proj", "mlp.fc0": "mlp.fc1", "mlp.fc1": "mlp.fc2"}


def converted(model_dir: Path, layers: int, heads: int, width: int) -> dict:
    """The checkpoint's vision tensors under transformers' names (conversion_mapping.py's kimi_k25 entry)."""
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())["weight_map"]
    hd = width // heads
    perm = torch.tensor([2 * j + s for s in range(2) for j in range(hd // 2)])
    tower, projector = {}, {}
    for name, shard in sorted(index.items()):
        if not (name.startswith("vision_tower.") or name.startswith("mm_projector.")):
            continue
        with safe_open(model_dir / shard, "pt") as f:
            t = f.get_tensor(name).to(torch.float32)
        if name.startswith("mm_projector."):
            key = name[len("mm_projector."):].replace("proj.0", "in_proj").replace("proj.2", "out_proj")
            projector[key] = t
            continue
        key = name[len("vision_tower."):]
        if key.startswith("patch_embed.pos_emb.weight"):
            tower["patch_embed.pos_emb.position_embeddings"] = t
            continue
        key = key.replace("encoder.final_layernorm", "final_layernorm").replace("encoder.blocks.", "layers.")
        parts = key.split(".")
        if len(parts) > 2 and parts[0] == "layers":
            b, rest = parts[1], ".".join(parts[2:])
            if rest.startswith("wqkv."):
                kind = rest.split(".")[1]
                for i, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                    chunk = t[i * width:(i + 1) * width]
                    if i < 2:
                        chunk = chunk.view(heads, hd, *chunk.shape[1:])[:, perm].reshape(chunk.shape)
                    tower[f"layers.{b}.attn.{proj}.{kind}"] = chunk
                continue
            module, kind = rest.rsplit(".", 1)
            rest = f"{RENAMES[module]}.{kind}"
            key = f"layers.{b}.{rest}"
        tower[key] = t
    return tower, projector


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--image", default="448x448")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dump", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    raw = json.loads((args.model_dir / "config.json").read_text())
    v = raw["vision_config"]
    vision = {ours: v[theirs] for theirs, ours in VISION_NAMES.items()}
    text = {"hidden_size": v["text_hidden_size"], "num_hidden_layers": 1, "vocab_size": 256}
    cfg = Kimi_K25Config(text_config=text, vision_config=vision, projection_hidden_size=v["mm_hidden_size"],
                         projection_layer_norm_eps=v.get("projector_ln_eps", 1e-5))
    t0 = time.time()
    tower = Kimi_K25VisionModel._from_config(cfg.vision_config, dtype=torch.float32).eval()
    projector = Kimi_K25MultimodalProjection(cfg).to(torch.float32).eval()
    tw, pw = converted(args.model_dir, v["vt_num_hidden_layers"], v["vt_num_attention_heads"], v["vt_hidden_size"])
    tower.load_state_dict(tw, strict=True)
    projector.load_state_dict(pw, strict=True)
    del tw, pw
    load = time.time() - t0

    h, w = (int(x) for x in args.image.split("x"))
    p = v["patch_size"]
    grid = torch.tensor([[1, h // p, w // p]])
    n = (h // p) * (w // p)
    pixels = (torch.rand((n, 3, p, p), generator=torch.Generator().manual_seed(11)) * 2 - 1).to(torch.float32)
    with torch.no_grad():
        t0 = time.process_time()
        w0 = time.time()
        out = tower(pixels, grid_thw=grid)
        tokens = projector(out.pooler_output).squeeze(1)
        cpu, wall = time.process_time() - t0, time.time() - w0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, {args.threads} threads: "
          f"{n} patches -> {tokens.shape[0]} tokens x {tokens.shape[1]}; load {load:.1f} s; "
          f"tower + projector {wall:.2f} s wall, {cpu:.2f} s CPU; peak RSS {rss:.0f} MiB")
    if args.dump:
        with h5py.File(args.dump, "w") as f:
            g = f.require_group("bench")
            g.create_dataset("pixel_values", data=pixels.numpy(), track_times=False)
            g.create_dataset("grid_thws", data=grid.numpy().astype(np.int64), track_times=False)
            g.create_dataset("final_layernorm_out", data=out.last_hidden_state.numpy(), track_times=False)
            g.create_dataset("projector_out", data=tokens.numpy(), track_times=False)
        print(f"wrote {args.dump}:/bench")
    return 0


if __name__ == "__main__":
    sys.exit(main())
