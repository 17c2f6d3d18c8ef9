#!/usr/bin/env python3
"""`k2pack inspect` of a full-size synthetic K2.5 GGUF against gguf-py's GGUFReader.

    python scripts/bench/gguf_inspect.py make OUT_PREFIX      # writes OUT_PREFIX-0000N-of-00008.gguf (sparse)
    python scripts/bench/gguf_inspect.py read PART            # GGUFReader over every part, the same sums

make: the deepseek2 layout of Kimi K2.5 as llama.cpp stores it (1096 tensors: 3 global, 13 in the dense layer 0,
18 in each of 60 MoE layers; shapes from docs of the format, ../shared/reference/gguf.md) with an
Unsloth-UD-Q2_K_XL-like mix of types (routed experts Q2_K, attention and shared experts Q4_K, attn_k_b Q8_0
(ne[0] = 128 is not a whole K block), output Q6_K, norms and router F32), K2.5's metadata and a tokenizer of
163,840 tokens and 163,328 merges, split into 8 parts like the real file. Headers are written by gguf-py's
GGUFWriter; the data sections are holes (each file is truncated up to its full length), so ~375 GB take a few MB.

read: what a user would write with gguf-py: GGUFReader on each part (it parses every key and tensor info and
maps the data), then tensors, elements and bytes summed by type. Prints the totals and the wall time.
"""

import os
import sys
import time

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q


def layout():
    """(name, numpy shape, type) of every K2.5 tensor, in llama.cpp's order."""
    H, V, L, E = 7168, 163840, 61, 384
    out = [("token_embd.weight", (V, H), Q.Q4_K)]
    for i in range(L):
        b = f"blk.{i}."
        t = [(b + "attn_norm.weight", (H,), Q.F32), (b + "attn_q_a_norm.weight", (1536,), Q.F32),
             (b + "attn_kv_a_norm.weight", (512,), Q.F32), (b + "attn_q_a.weight", (1536, H), Q.Q4_K),
             (b + "attn_q_b.weight", (12288, 1536), Q.Q4_K), (b + "attn_kv_a_mqa.weight", (576, H), Q.Q4_K),
             (b + "attn_k_b.weight", (64, 512, 128), Q.Q8_0), (b + "attn_v_b.weight", (64, 128, 512), Q.Q4_K),
             (b + "attn_output.weight", (H, 8192), Q.Q4_K), (b + "ffn_norm.weight", (H,), Q.F32)]
        if i == 0:
            t += [(b + "ffn_gate.weight", (18432, H), Q.Q4_K), (b + "ffn_up.weight", (18432, H), Q.Q4_K),
                  (b + "ffn_down.weight", (H, 18432), Q.Q6_K)]
        else:
            t += [(b + "ffn_gate_inp.weight", (E, H), Q.F32), (b + "exp_probs_b.bias", (E,), Q.F32),
                  (b + "ffn_gate_exps.weight", (E, 2048, H), Q.Q2_K), (b + "ffn_up_exps.weight", (E, 2048, H), Q.Q2_K),
                  (b + "ffn_down_exps.weight", (E, H, 2048), Q.Q3_K), (b + "ffn_gate_shexp.weight", (2048, H), Q.Q4_K),
                  (b + "ffn_up_shexp.weight", (2048, H), Q.Q4_K), (b + "ffn_down_shexp.weight", (H, 2048), Q.Q4_K)]
        out += t
    out += [("output_norm.weight", (H,), Q.F32), ("output.weight", (V, H), Q.Q6_K)]
    assert len(out) == 1096, len(out)
    return out


def nbytes(shape, qtype):
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n = 1
    for d in shape:
        n *= d
    return n // block * size


def make(prefix):
    tensors = layout()
    total = sum(nbytes(s, q) for _, s, q in tensors)
    w = gguf.GGUFWriter(prefix + ".gguf", arch="deepseek2", split_max_size=total * 11 // 80)
    w.add_name("Kimi-K2.5 synthetic layout")
    for k, v in [("block_count", 61), ("context_length", 262144), ("embedding_length", 7168), ("feed_forward_length", 18432),
                 ("attention.head_count", 64), ("attention.head_count_kv", 1), ("expert_count", 384),
                 ("expert_used_count", 8), ("leading_dense_block_count", 1), ("attention.q_lora_rank", 1536),
                 ("attention.kv_lora_rank", 512), ("attention.key_length", 576), ("attention.value_length", 512),
                 ("attention.key_length_mla", 192), ("attention.value_length_mla", 128),
                 ("expert_feed_forward_length", 2048), ("expert_shared_count", 1), ("rope.dimension_count", 64),
                 ("expert_gating_func", 2), ("vocab_size", 163840)]:
        w.add_uint32(f"deepseek2.{k}", v)
    w.add_float32("deepseek2.rope.freq_base", 50000.0)
    w.add_float32("deepseek2.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_float32("deepseek2.expert_weights_scale", 2.827)
    w.add_bool("deepseek2.expert_weights_norm", True)
    w.add_string("deepseek2.rope.scaling.type", "yarn")
    w.add_float32("deepseek2.rope.scaling.factor", 64.0)
    w.add_uint32("deepseek2.rope.scaling.original_context_length", 4096)
    w.add_float32("deepseek2.rope.scaling.yarn_log_multiplier", 0.1)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "kimi-k2")
    w.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(163840)])
    w.add_array("tokenizer.ggml.token_type", [1] * 163840)
    w.add_array("tokenizer.ggml.merges", [f"t{i} k{i}" for i in range(163328)])
    for name, shape, qtype in tensors:
        w.add_tensor_info(name, shape, np.dtype(np.float32), nbytes(shape, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    # Data sections as holes: each part padded to the alignment, then extended to its full length.
    for fout, part in zip(w.fout, w.tensors):
        pad = (-fout.tell()) % w.data_alignment
        size = sum((ti.nbytes + (-ti.nbytes) % w.data_alignment) for ti in part.values())
        fout.truncate(fout.tell() + pad + size)
    w.close()
    print(f"{len(tensors)} tensors, {total} tensor bytes, {len(w.tensors)} parts")


def read(path):
    start = time.perf_counter()
    folder, name = os.path.split(path)
    prefix = name[: -len("-00001-of-00008.gguf")]
    parts = sorted(os.path.join(folder, p) for p in os.listdir(folder or ".") if p.startswith(prefix + "-0"))
    tensors = elements = size = 0
    by_type = {}
    for p in parts:
        r = gguf.GGUFReader(p)
        for t in r.tensors:
            tensors += 1
            elements += int(t.n_elements)
            size += int(t.n_bytes)
            by_type[t.tensor_type.name] = by_type.get(t.tensor_type.name, 0) + int(t.n_bytes)
    print(f"{len(parts)} parts, {tensors} tensors, {elements} elements, {size} bytes, {len(by_type)} types "
          f"in {time.perf_counter() - start:.2f} s (after interpreter start)")


if __name__ == "__main__":
    {"make": make, "read": read}[sys.argv[1]](sys.argv[2])
