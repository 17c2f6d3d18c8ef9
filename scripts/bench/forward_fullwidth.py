#!/usr/bin/env python3
"""Full-width forward-pass measurements on a synthetic K2.5 checkpoint (scripts/make_synthetic_k25.py).

1. Decode of one token through one real-size MoE layer (`k2pack parity --layers L..L` from a dumped layer_in of
   one token), as a fraction of the memory bandwidth measured in the same run (numpy reading a 2 GiB array with
   the same thread count), counting the bytes that token must read: attention, router, shared expert and the
   8 chosen experts (INT4 codes + scales).
2. Peak RSS of a whole forward pass (embedding, every layer, lm_head) over a multi-layer full-width checkpoint,
   from a dump holding only input_ids.

    python scripts/bench/forward_fullwidth.py /work/synth/k25-l4 --layer 1 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def bandwidth(threads: int) -> float:
    """GB/s reading a 2 GiB array (sum), best of 5, with `threads` numpy threads (one slice each)."""
    a = np.ones(1 << 28, dtype=np.float64)
    from concurrent.futures import ThreadPoolExecutor
    parts = np.array_split(a, threads)
    best = 0.0
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(5):
            t = time.perf_counter()
            list(pool.map(np.sum, parts))
            best = max(best, a.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def token_bytes(text: dict) -> int:
    """Bytes one token reads in one MoE layer."""
    H, heads = text["hidden_size"], text["num_attention_heads"]
    qa, kva = text["q_lora_rank"], text["kv_lora_rank"]
    nope, rope, v = text["qk_nope_head_dim"], text["qk_rope_head_dim"], text["v_head_dim"]
    inter, E, k = text["moe_intermediate_size"], text["n_routed_experts"], text["num_experts_per_tok"]
    bf16 = 2
    attention = (H * qa + qa * heads * (nope + rope) + H * (kva + rope) + kva * heads * (nope + v) + heads * v * H) * bf16
    norms = (2 * H + qa + kva) * bf16
    router = E * H * bf16 + E * 4
    shared = 3 * H * inter * text["n_shared_experts"] * bf16
    expert = 3 * (H * inter // 2 + H * inter // 32 * bf16)  # INT4 codes + BF16 scales per group of 32
    return attention + norms + router + shared + k * expert


def run(cmd: list[str]) -> tuple[float, int, str]:
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M"] + cmd, capture_output=True, text=True)
    wall, rss = out.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss) * 1024, out.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--layer", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=4, help="tokens of the whole-model RSS run")
    a = ap.parse_args()
    cfg = json.loads((a.model / "config.json").read_text())
    text = cfg.get("text_config", cfg)
    k2pack = str(ROOT / ".build/release/k2pack")
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "k2pack-forward-bench"
    work.mkdir(exist_ok=True)

    # 1. One token through one MoE layer.
    rng = np.random.default_rng(0)
    one = work / "one-token.h5"
    with h5py.File(one, "w") as f:
        f["input_ids"] = np.array([[7]], dtype=np.int64)
        f[f"layers/{a.layer}/layer_in"] = rng.standard_normal((1, 1, text["hidden_size"])).astype(np.float32)
    cmd = [k2pack, "parity", str(a.model), "--reference", str(one), "--layers", f"{a.layer}..{a.layer}",
           "--threads", str(a.threads), "--json", "--quiet"]
    run(cmd)  # warm the page cache
    seconds = []
    for _ in range(3):
        _, _, out = run(cmd)
        seconds.append(json.loads(out)["forward_seconds"])
    t = min(seconds)
    nbytes = token_bytes(text)
    bw = bandwidth(a.threads)
    print(json.dumps({"decode_layer": a.layer, "bytes_read": nbytes, "seconds": t, "gb_per_s": nbytes / t / 1e9,
                      "memory_bandwidth_gb_per_s": bw, "fraction_of_bandwidth": nbytes / t / 1e9 / bw}))

    # 2. Peak RSS of the whole model, streamed layer by layer.
    ids = work / "ids.h5"
    with h5py.File(ids, "w") as f:
        f["input_ids"] = rng.integers(0, text["vocab_size"], (1, a.tokens), dtype=np.int64)
    wall, rss, out = run([k2pack, "parity", str(a.model), "--reference", str(ids), "--threads", str(a.threads), "--json", "--quiet"])
    r = json.loads(out)
    size = sum(p.stat().st_size for p in a.model.glob("*.safetensors"))
    print(json.dumps({"layers": len(r["layers"]), "tokens": a.tokens, "checkpoint_bytes": size, "wall_seconds": wall,
                      "forward_seconds": r["forward_seconds"], "peak_rss_bytes": rss}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
