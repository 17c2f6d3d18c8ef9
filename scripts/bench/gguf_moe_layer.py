#!/usr/bin/env python3
"""Decode of one token through one full-width K2.5 MoE layer stored as GGUF, routed experts in Q4_0 and in Q2_K.

make: writes DIR/moe-Q4_0.gguf and DIR/moe-Q2_K.gguf, each a `deepseek2` model of ONE decoder layer with K2.5's
real shapes and metadata (hidden 7168, 64 heads of MLA with q_lora 1536 / kv_lora 512, moe_intermediate 2048,
384 routed experts, top-8 of them plus one shared expert, sigmoid gating with a correction bias): routed experts
(`ffn_{gate,up,down}_exps`) in the file's type, attention and the shared expert in Q8_0, norms, router and its
bias in F32. Every block holds random codes with finite f16 scales (no holes). `leading_dense_block_count` is 0
(the one layer is the MoE layer) and the vocabulary is 256 tokens (the embedding and the output head are not
what is measured; the head is counted in the bytes, 7 MB). Headers by gguf-py's GGUFWriter; the data are
streamed in chunks, so memory stays small. Q4_0 file 9.7 GB, Q2_K file 5.7 GB.

run: `k2pack parity FILE --reference ONE.h5 --layers 0..0 --json` on one token's dumped `layer_in` (as
decode_kernels.py), per file, timed three ways alternating (best of --runs each, warm page cache):
`K2PACK_KERNELS` unset (the fused ggml-block kernels, AVX2 where the CPU has AVX2/FMA/F16C), `portable` (the
same kernels' portable C path) and `dequantize` (the path before them: each block of rows dequantized to
float32 by GGUFDequantizer, then OpenBLAS). The memory bandwidth is measured in the same run before and after
(numpy summing a 2 GiB array on the same thread count; the better figure), and the bytes that token must read
are counted from the tensors' sizes: attention, norms, router, shared expert, the 8 chosen experts' slabs, the
final norm and head.

    python scripts/bench/gguf_moe_layer.py make /work/bench/gguf-moe
    python scripts/bench/gguf_moe_layer.py run /work/bench/gguf-moe --threads 2 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward_fullwidth import ROOT, bandwidth  # noqa: E402

H, HEADS, QA, KVA, NOPE, ROPE, V = 7168, 64, 1536, 512, 128, 64, 128
INTER, E, TOPK, VOCAB = 2048, 384, 8, 256
TYPES = {"Q4_0": Q.Q4_0, "Q2_K": Q.Q2_K}


def layout(expert_type):
    """(name, numpy shape, type, f16 scale of random blocks) of every tensor, in llama.cpp's order."""
    b = "blk.0."
    return [
        ("token_embd.weight", (VOCAB, H), Q.F32, 0.02),
        (b + "attn_norm.weight", (H,), Q.F32, None), (b + "attn_q_a_norm.weight", (QA,), Q.F32, None),
        (b + "attn_kv_a_norm.weight", (KVA,), Q.F32, None),
        (b + "attn_q_a.weight", (QA, H), Q.Q8_0, 1e-4), (b + "attn_q_b.weight", (HEADS * (NOPE + ROPE), QA), Q.Q8_0, 2e-4),
        (b + "attn_kv_a_mqa.weight", (KVA + ROPE, H), Q.Q8_0, 1e-4), (b + "attn_k_b.weight", (HEADS, KVA, NOPE), Q.Q8_0, 3e-4),
        (b + "attn_v_b.weight", (HEADS, V, KVA), Q.Q8_0, 3e-4), (b + "attn_output.weight", (H, HEADS * V), Q.Q8_0, 1e-4),
        (b + "ffn_norm.weight", (H,), Q.F32, None),
        (b + "ffn_gate_inp.weight", (E, H), Q.F32, 0.01), (b + "exp_probs_b.bias", (E,), Q.F32, 0.0),
        (b + "ffn_gate_exps.weight", (E, INTER, H), expert_type, 2e-3),
        (b + "ffn_up_exps.weight", (E, INTER, H), expert_type, 2e-3),
        (b + "ffn_down_exps.weight", (E, H, INTER), expert_type, 2e-3),
        (b + "ffn_gate_shexp.weight", (INTER, H), Q.Q8_0, 1e-4), (b + "ffn_up_shexp.weight", (INTER, H), Q.Q8_0, 1e-4),
        (b + "ffn_down_shexp.weight", (H, INTER), Q.Q8_0, 1e-4),
        ("output_norm.weight", (H,), Q.F32, None), ("output.weight", (VOCAB, H), Q.F32, 0.02),
    ]


def nbytes(shape, qtype):
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return int(np.prod(shape)) // block * size


def random_blocks(rng, count, qtype, scale):
    """`count` blocks of `qtype`: random codes, f16 scales (d, and Q2_K's dmin) normal · `scale`, all finite."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(count, size), dtype=np.uint8)
    for at in {Q.Q4_0: [0], Q.Q8_0: [0], Q.Q2_K: [80, 82]}[qtype]:
        raw[:, at:at + 2] = (rng.standard_normal(count, dtype=np.float32) * scale).astype(np.float16).view(np.uint8).reshape(count, 2)
    return raw


def write_data(fout, rng, shape, qtype, scale, chunk=1 << 26):
    n = int(np.prod(shape))
    if qtype == Q.F32:
        values = np.ones(n, np.float32) if scale is None else (rng.standard_normal(n, dtype=np.float32) * scale)
        values.tofile(fout)
        return
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = n // block
    per = max(1, chunk // size)
    for start in range(0, blocks, per):
        random_blocks(rng, min(per, blocks - start), qtype, scale).tofile(fout)


def make(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    for label, qtype in TYPES.items():
        path = folder / f"moe-{label}.gguf"
        tensors = layout(qtype)
        w = gguf.GGUFWriter(str(path), arch="deepseek2")
        w.add_name(f"K2.5 one MoE layer, routed experts {label} (synthetic)")
        for k, v in [("block_count", 1), ("context_length", 262144), ("embedding_length", H), ("feed_forward_length", 18432),
                     ("attention.head_count", HEADS), ("attention.head_count_kv", 1), ("expert_count", E),
                     ("expert_used_count", TOPK), ("leading_dense_block_count", 0), ("attention.q_lora_rank", QA),
                     ("attention.kv_lora_rank", KVA), ("attention.key_length", KVA + ROPE), ("attention.value_length", KVA),
                     ("attention.key_length_mla", NOPE + ROPE), ("attention.value_length_mla", V),
                     ("expert_feed_forward_length", INTER), ("expert_shared_count", 1), ("rope.dimension_count", ROPE),
                     ("expert_gating_func", 2), ("expert_group_count", 1), ("expert_group_used_count", 1), ("vocab_size", VOCAB)]:
            w.add_uint32(f"deepseek2.{k}", v)
        w.add_float32("deepseek2.rope.freq_base", 50000.0)
        w.add_float32("deepseek2.attention.layer_norm_rms_epsilon", 1e-5)
        w.add_float32("deepseek2.expert_weights_scale", 2.827)
        w.add_bool("deepseek2.expert_weights_norm", True)
        w.add_string("deepseek2.rope.scaling.type", "yarn")
        w.add_float32("deepseek2.rope.scaling.factor", 64.0)
        w.add_uint32("deepseek2.rope.scaling.original_context_length", 4096)
        w.add_float32("deepseek2.rope.scaling.yarn_log_multiplier", 0.1)
        for name, shape, t, _ in tensors:
            w.add_tensor_info(name, shape, np.dtype(np.float32), nbytes(shape, t), raw_dtype=t)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        fout = w.fout[0]
        rng = np.random.default_rng(20261201)
        align = w.data_alignment
        fout.write(b"\0" * ((-fout.tell()) % align))
        for name, shape, t, scale in tensors:
            write_data(fout, rng, shape, t, scale)
            fout.write(b"\0" * ((-nbytes(shape, t)) % align))
        w.close()
        print(f"{path}: {path.stat().st_size} bytes")


def token_bytes(expert_type) -> int:
    """Bytes one token reads: every tensor of the file but the 376 routed experts it does not choose."""
    total = 0
    for name, shape, t, _ in layout(expert_type):
        if name == "token_embd.weight":
            continue  # parity starts from the dumped layer input
        n = nbytes(shape, t)
        total += n * TOPK // E if "_exps" in name else n
    return total


def forward_seconds(cmd: list[str], kernels: str | None) -> float:
    env = dict(os.environ)
    env.pop("K2PACK_KERNELS", None)
    if kernels is not None:
        env["K2PACK_KERNELS"] = kernels
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode not in (0, 1):  # 1: parity "fails" against a dump without expected values
        raise SystemExit(f"{' '.join(cmd)}: exit {out.returncode}\n{out.stderr}")
    return json.loads(out.stdout)["forward_seconds"]


def run(folder: Path, threads: int, runs: int):
    k2pack = str(ROOT / ".build/release/k2pack")
    one = folder / "one-token.h5"
    with h5py.File(one, "w") as f:
        f["input_ids"] = np.array([[7]], dtype=np.int64)
        f["layers/0/layer_in"] = np.random.default_rng(0).standard_normal((1, 1, H)).astype(np.float32)
    bw = bandwidth(threads)
    result = {"threads": threads, "runs": runs}
    for label, qtype in TYPES.items():
        cmd = [k2pack, "parity", str(folder / f"moe-{label}.gguf"), "--reference", str(one), "--layers", "0..0",
               "--threads", str(threads), "--json", "--quiet"]
        forward_seconds(cmd, None)  # warm the page cache (the same token chooses the same experts every run)
        times: dict[str, list[float]] = {"fused": [], "portable": [], "dequantize": []}
        for _ in range(runs):
            times["fused"].append(forward_seconds(cmd, None))
            times["portable"].append(forward_seconds(cmd, "portable"))
            times["dequantize"].append(forward_seconds(cmd, "dequantize"))
        result[label] = {"bytes_read": token_bytes(qtype), "times": times}
    bw = max(bw, bandwidth(threads))
    result["memory_bandwidth_gb_per_s"] = bw
    for label in TYPES:
        r = result[label]
        for name, ts in r.pop("times").items():
            t = min(ts)
            gbs = r["bytes_read"] / t / 1e9
            r[name] = {"seconds": t, "all_seconds": ts, "gb_per_s": gbs, "fraction_of_bandwidth": gbs / bw}
        r["fused_vs_dequantize"] = r["dequantize"]["seconds"] / r["fused"]["seconds"]
    print(json.dumps(result, indent=1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["make", "run"])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    if a.command == "make":
        make(a.folder)
    else:
        run(a.folder, a.threads, a.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
