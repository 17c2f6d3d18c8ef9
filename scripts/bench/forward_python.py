#!/usr/bin/env python3
"""Forward-pass speed baseline: transformers (PyTorch CPU, float32) on a small K2-Thinking-style model.

Writes the model (INT4 experts packed by compressed-tensors, like the fixtures but wider) to OUT, a reference dump
OUT/ref.h5 made by scripts/reference/make_reference.py from the same input ids, and times transformers' forward
on those ids with the given thread count. k2pack is then timed on the same folder and ids:

    python scripts/bench/forward_python.py /work/bench/small --threads 2 --tokens 128
    .build/release/k2pack parity /work/bench/small --reference /work/bench/small/ref.h5 --threads 2 --json

Prints one JSON line: tokens, threads, seconds per forward (median of --runs), tokens/s, and the time to load the
model (read, dequantize, build) before the first forward.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
import make_fixtures as mf  # noqa: E402
from make_reference import build_model, make_reference  # noqa: E402

SMALL_DIMS = dict(
    vocab_size=16384, hidden_size=1024, intermediate_size=2816, moe_intermediate_size=256, num_hidden_layers=4,
    num_attention_heads=8, num_key_value_heads=8, q_lora_rank=384, kv_lora_rank=256, qk_nope_head_dim=64,
    qk_rope_head_dim=32, v_head_dim=64, n_routed_experts=64, num_experts_per_tok=8, n_shared_experts=1,
    first_k_dense_replace=1,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import transformers
    transformers.logging.set_verbosity_error()

    if not (a.out / "config.json").exists():
        cfg = mf.hf_config(SMALL_DIMS, mf.KIMI_ROUTING, mf.K2_THINKING_ROPE)
        sd, _ = mf.text_weights(cfg, seed=77)
        sd = mf.quantize_experts(sd, torch.int32)
        config = mf.raw_text_config(SMALL_DIMS, mf.KIMI_ROUTING, mf.K2_THINKING_ROPE, "kimi_k2",
                                    dict(bos_token_id=1, eos_token_id=2), quantized=True)
        mf.save_checkpoint(a.out, sd, None, config)
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, SMALL_DIMS["vocab_size"], (1, a.tokens), generator=g).tolist()
    make_reference(a.out, a.out / "ref.h5", ids=ids, quiet=True)

    t0 = time.perf_counter()
    model, *_ = build_model(a.out, "exact", torch.float32, "cpu", None)
    load = time.perf_counter() - t0
    x = torch.tensor(ids)
    times = []
    with torch.no_grad():
        model(x)  # warm-up
        for _ in range(a.runs):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    s = statistics.median(times)
    print(json.dumps({"tool": "transformers", "version": transformers.__version__, "torch": torch.__version__,
                      "tokens": a.tokens, "threads": a.threads, "seconds": s, "tokens_per_second": a.tokens / s,
                      "load_seconds": load, "load_and_first_forward_seconds": load + times[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
